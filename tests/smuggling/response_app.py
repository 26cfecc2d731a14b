# SPDX-License-Identifier: Apache-2.0
"""A scripted HTTP/1.1 app for the response-path tests (test_response_path.py).

It listens on 127.0.0.1 (port 0: a free one) and, for every request it reads (framed by
Content-Length: the sidecar always sends one), answers with the raw bytes the test chose for that
request's path. It records every request with the id of the connection it came on, so a test can
tell whether the sidecar reused a connection after a given answer.

    app = ScriptedApp().start()
    app.script("/v/te-cl", b"HTTP/1.1 200 OK\\r\\n...", close=False)
    ...
    app.requests          # [Seen], in arrival order
    app.stop()

A path without a script gets `200 OK` with the body `ok:<path>` (its own path, so an answer that
belongs to another request is recognisable). Run as a program (`response_app.py [PORT]`) it serves
only those default answers and prints `ready PORT`.

Everything is bounded: each connection thread waits at most `idle` seconds for a request.
"""

import socket
import sys
import threading
import time


class Seen:
    """One request the app read."""

    def __init__(self, conn_id, index, method, target, headers, body, t):
        self.conn_id, self.index = conn_id, index  # index: 0 for the first request on the connection
        self.method, self.target, self.headers, self.body, self.t = method, target, headers, body, t

    @property
    def path(self):
        return self.target.split("?", 1)[0]

    def get(self, name, default=None):
        n = name.lower()
        for k, v in self.headers:
            if k.lower() == n:
                return v
        return default

    def __repr__(self):
        return "Seen(conn=%d#%d %s %s)" % (self.conn_id, self.index, self.method, self.target)


class Script:
    """What to answer: raw bytes (or callable(Seen) -> bytes), sent in `pieces` writes `gap` s apart;
    close: close the connection after writing (shutdown of the write side first, so the peer
    reads everything, then EOF)."""

    def __init__(self, raw, close=False, pieces=1, gap=0.0):
        self.raw, self.close, self.pieces, self.gap = raw, close, pieces, gap


def default_answer(seen):
    body = ("ok:%s" % seen.path).encode("latin-1")
    return (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % len(body)) + body


class ScriptedApp:
    def __init__(self, port=0, idle=30.0, max_head=1 << 20):
        self.port = port
        self.idle = idle
        self.max_head = max_head
        self.table = {}
        self.requests = []
        self.errors = []
        self.connections = 0  # accepted so far (health probes included)
        self.closed = set()  # ids of connections the peer closed (EOF seen by the app)
        self._lock = threading.Lock()
        self._cv = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._sock = None
        self._conns = []

    # --- the test's side ---------------------------------------------------------------------
    def script(self, path, raw, close=False, pieces=1, gap=0.0):
        with self._lock:
            self.table[path] = Script(raw, close, pieces, gap)

    def seen(self, path):
        """The requests for path, in arrival order."""
        with self._lock:
            return [s for s in self.requests if s.path == path]

    def wait_seen(self, path, timeout=2.0):
        """The first request for path, waiting up to timeout; None if it did not come."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                for s in self.requests:
                    if s.path == path:
                        return s
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cv.wait(left)

    def wait_closed(self, conn_id, timeout=2.0):
        """True once the app saw the peer close connection conn_id (within timeout)."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while conn_id not in self.closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(left)
            return True

    # --- server ------------------------------------------------------------------------------
    def start(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(64)
        s.settimeout(0.2)
        self._sock = s
        self.port = s.getsockname()[1]
        t = threading.Thread(target=self._accept_loop, daemon=True)
        t.start()
        return self

    def stop(self):
        self._stop.set()
        try:
            self._sock.close()
        except OSError:
            pass
        for c in list(self._conns):
            try:
                c.close()
            except OSError:
                pass

    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                c, _ = self._sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
                cid = self.connections
                self._conns.append(c)
            threading.Thread(target=self._serve, args=(c, cid), daemon=True).start()

    def _read_request(self, c, buf):
        """(method, target, headers, body, rest) or None at EOF / timeout before a whole request."""
        deadline = time.monotonic() + self.idle
        while b"\r\n\r\n" not in buf:
            if len(buf) > self.max_head or time.monotonic() > deadline or self._stop.is_set():
                return None
            try:
                chunk = c.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                return None
            buf += chunk
        head, buf = buf.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3:
            raise ValueError("bad request line %r" % lines[0])
        headers = []
        for ln in lines[1:]:
            k, sep, v = ln.partition(b":")
            if not sep:
                raise ValueError("bad field line %r" % ln)
            headers.append((k.decode("latin-1"), v.strip().decode("latin-1")))
        cls = [v for k, v in headers if k.lower() == "content-length"]
        if any(k.lower() == "transfer-encoding" for k, _ in headers):
            raise ValueError("the sidecar sent Transfer-Encoding: %r" % (headers,))
        n = int(cls[0]) if cls else 0
        while len(buf) < n:
            if time.monotonic() > deadline or self._stop.is_set():
                return None
            try:
                chunk = c.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                return None
            buf += chunk
        return (parts[0].decode("latin-1"), parts[1].decode("latin-1"), headers, buf[:n], buf[n:])

    def _serve(self, c, cid):
        c.settimeout(0.2)
        buf = b""
        index = 0
        try:
            while not self._stop.is_set():
                try:
                    r = self._read_request(c, buf)
                except ValueError as e:
                    self.errors.append((cid, str(e)))
                    return
                if r is None:
                    return
                method, target, headers, body, buf = r
                seen = Seen(cid, index, method, target, headers, body, time.monotonic())
                index += 1
                with self._cv:
                    self.requests.append(seen)
                    sc = self.table.get(seen.path)
                    self._cv.notify_all()
                raw = default_answer(seen) if sc is None else (sc.raw(seen) if callable(sc.raw) else sc.raw)
                pieces = 1 if sc is None else max(1, sc.pieces)
                step = max(1, -(-len(raw) // pieces))
                for i in range(0, max(1, len(raw)), step):
                    if i and sc.gap:
                        time.sleep(sc.gap)
                    c.sendall(raw[i:i + step])
                if sc is not None and sc.close:
                    c.shutdown(socket.SHUT_WR)
                    return
        except OSError:
            return
        finally:
            try:
                c.close()
            except OSError:
                pass
            with self._cv:
                self.closed.add(cid)
                self._cv.notify_all()


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    app = ScriptedApp(port).start()
    print("ready %d" % app.port, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        app.stop()


if __name__ == "__main__":
    main()
