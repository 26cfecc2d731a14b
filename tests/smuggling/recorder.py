# SPDX-License-Identifier: Apache-2.0
"""Shared helpers of the request-smuggling suite (tests/smuggling/).

Written from /tmp/http_rules.md (the front door's rules, to become docs/http.md), docs/http.md and
RFC 9110/9112, not from the gateway's code.

Contents:
  * Recorder: a small HTTP/1.1 app on 127.0.0.1 (a thread) that records the exact bytes and the
    parsed form (method, target, version, header fields, body) of every request it receives and
    answers each with 200 and a body naming what it saw. It frames requests by Content-Length or
    chunked, keeps connections alive unless told `Connection: close`.
  * GatewayStack: one `scale0 broker` + `scale0 gateway` + two sidecars (`scale0 worker --http`),
    one per service (`app.local`, `admin.internal`), each in front of its own Recorder. One stack
    per process (gateway_stack()), shared by every test module, killed at exit.
  * NginxStack: nginx in front of its own Recorder (for the oracle).
  * send_raw(): one fresh TCP connection, the raw bytes, every answer read until close or a short
    quiet time (bounded), parsed.

Every wait is bounded.
"""

import atexit
import os
import re
import select
import shutil
import socket
import sys
import tempfile
import threading
import itertools
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BLACKBOX = os.path.join(os.path.dirname(HERE), "blackbox")
if BLACKBOX not in sys.path:
    sys.path.insert(0, BLACKBOX)

import harness  # noqa: E402  (tests/blackbox/harness.py: Proc, Broker, Gateway, free_port)

NGINX = os.environ.get("SMUGGLE_NGINX", "/usr/sbin/nginx")
APP_HOST = "app.local"
ADMIN_SERVICE = "admin.internal"
TUNNEL_HOST = "tunnel.local"
MAX_BODY = 4096      # --max-body of the gateway, client_max_body_size of nginx
MAX_HEADER = 8192    # --max-header of the gateway


def now():
    return time.monotonic()


# ---------------------------------------------------------------------------------------------
# The recording app
# ---------------------------------------------------------------------------------------------
class Fields:
    """Field lookup over `self.headers`, a list of (name, value) in order."""

    def get_all(self, name):
        n = name.lower()
        return [v for k, v in self.headers if k.lower() == n]

    def get(self, name, default=None):
        v = self.get_all(name)
        return v[0] if v else default


class Recorded(Fields):
    """One request as the app received it."""

    def __init__(self, method, target, version, headers, body, raw, conn_id):
        self.method, self.target, self.version = method, target, version
        self.headers = headers  # [(name, value)] as received (str, latin-1), in order
        self.body = body        # de-chunked
        self.raw = raw          # the exact bytes of the request (head + body as framed)
        self.conn_id = conn_id
        self.service = None     # set by the recorder: which app saw it
        self.seq = 0            # global arrival order (all recorders)

    def __repr__(self):
        return "<%s%s %s %s headers=%r body=%r>" % (
            (self.service + ": ") if self.service else "", self.method, self.target, self.version,
            self.headers, self.body[:80])


_SEQ = itertools.count(1)
_SEQ_LOCK = threading.Lock()


class _BadRequest(Exception):
    pass


class Recorder:
    """A recording HTTP/1.1 app on 127.0.0.1:<free port>, served by threads."""

    def __init__(self, name):
        self.name = name
        self.lock = threading.Lock()
        self.requests = []       # Recorded, in arrival order
        self.errors = []         # (conn_id, text, raw bytes) of what it could not parse
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.stopped = False
        self._conn_seq = 0
        self._conns = []
        self.thread = threading.Thread(target=self._accept_loop, name="recorder-" + name, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def clear(self):
        with self.lock:
            self.requests = []
            self.errors = []

    def snapshot(self):
        with self.lock:
            return list(self.requests), list(self.errors)

    def stop(self):
        self.stopped = True
        try:
            self.sock.close()
        except OSError:
            pass
        for c in list(self._conns):
            try:
                c.close()
            except OSError:
                pass

    def _accept_loop(self):
        while not self.stopped:
            try:
                r, _, _ = select.select([self.sock], [], [], 0.2)
            except (OSError, ValueError):
                return
            if not r:
                continue
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self._conn_seq += 1
            self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn, self._conn_seq), daemon=True).start()

    # --- parsing ---
    def _serve(self, conn, cid):
        buf = b""
        try:
            conn.settimeout(30.0)
            for _ in range(100000):
                if self.stopped:
                    return
                try:
                    req, buf, close = self._read_request(conn, buf, cid)
                except _BadRequest as e:
                    with self.lock:
                        self.errors.append((cid, str(e), buf[:2000]))
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    return
                if req is None:
                    return  # EOF between requests
                req.service = self.name
                with _SEQ_LOCK:
                    req.seq = next(_SEQ)
                with self.lock:
                    self.requests.append(req)
                text = ("%s saw %s %s\n" % (self.name, req.method, req.target)).encode("latin-1", "replace")
                if req.method == "CONNECT":
                    text = b""
                head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n" % len(text)
                if close:
                    head += b"Connection: close\r\n"
                conn.sendall(head + b"\r\n" + text)
                if close:
                    return
        except (OSError, socket.timeout):
            return
        finally:
            try:
                conn.close()
            except OSError:
                pass
            try:
                self._conns.remove(conn)
            except ValueError:
                pass

    @staticmethod
    def _fill(conn, buf):
        chunk = conn.recv(65536)
        if not chunk:
            raise EOFError()
        return buf + chunk

    def _read_request(self, conn, buf, cid):
        try:
            for _ in range(100000):
                if b"\r\n\r\n" in buf:
                    break
                if len(buf) > 1 << 20:
                    raise _BadRequest("header over 1 MiB")
                buf = self._fill(conn, buf)
        except EOFError:
            if buf:
                raise _BadRequest("EOF inside a request head")
            return None, b"", True
        head, rest = buf.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3:
            raise _BadRequest("bad request line %r" % lines[0])
        method, target, version = (p.decode("latin-1") for p in parts)
        headers = []
        for ln in lines[1:]:
            k, sep, v = ln.partition(b":")
            if not sep:
                raise _BadRequest("bad field line %r" % ln)
            headers.append((k.decode("latin-1"), v.strip(b" \t").decode("latin-1")))
        lower = [(k.lower(), v) for k, v in headers]
        te = [v for k, v in lower if k == "transfer-encoding"]
        cl = [v for k, v in lower if k == "content-length"]
        conn_tokens = ",".join(v for k, v in lower if k == "connection").lower()
        close = "close" in [t.strip() for t in conn_tokens.split(",")] or version == "HTTP/1.0"
        try:
            if te:
                if te[-1].strip().lower() != "chunked" or cl:
                    raise _BadRequest("Transfer-Encoding %r (with Content-Length %r)" % (te, cl))
                body = b""
                pos = 0
                data = rest
                for _ in range(100000):
                    while b"\r\n" not in data[pos:]:
                        data = self._fill(conn, data)
                    eol = data.index(b"\r\n", pos)
                    size_text = data[pos:eol].split(b";")[0].strip()
                    if not re.match(rb"^[0-9A-Fa-f]+$", size_text):
                        raise _BadRequest("bad chunk size %r" % size_text)
                    size = int(size_text, 16)
                    pos = eol + 2
                    if size == 0:
                        # trailer section up to an empty line
                        for _ in range(10000):
                            while b"\r\n" not in data[pos:]:
                                data = self._fill(conn, data)
                            eol = data.index(b"\r\n", pos)
                            line = data[pos:eol]
                            pos = eol + 2
                            if not line:
                                break
                        break
                    while len(data) < pos + size + 2:
                        data = self._fill(conn, data)
                    body += data[pos:pos + size]
                    if data[pos + size:pos + size + 2] != b"\r\n":
                        raise _BadRequest("no CRLF after chunk data")
                    pos += size + 2
                raw = head + b"\r\n\r\n" + data[:pos]
                rest = data[pos:]
            else:
                if len(set(v.strip() for v in cl)) > 1 or (cl and not re.match(r"^[0-9]+$", cl[0].strip())):
                    raise _BadRequest("Content-Length %r" % cl)
                n = int(cl[0]) if cl else 0
                while len(rest) < n:
                    rest = self._fill(conn, rest)
                body, rest = rest[:n], rest[n:]
                raw = head + b"\r\n\r\n" + body
        except EOFError:
            raise _BadRequest("EOF inside a body")
        return Recorded(method, target, version, headers, body, raw, cid), rest, close


# ---------------------------------------------------------------------------------------------
# A raw client
# ---------------------------------------------------------------------------------------------
class Answer(Fields):
    def __init__(self, version, status, reason, headers, body, raw):
        self.version, self.status, self.reason, self.headers, self.body, self.raw = \
            version, status, reason, headers, body, raw


    def __repr__(self):
        return "<%d %s %r body=%r>" % (self.status, self.reason, self.headers, self.body[:120])


class Exchange:
    """What one raw connection got: final answers (in order), interim 1xx answers, whether the
    server closed (EOF or reset) within the time allowed, unparsed trailing bytes."""

    def __init__(self):
        self.answers = []
        self.interim = []
        self.closed = False
        self.reset = False
        self.leftover = b""
        self.raw = b""
        self.elapsed = 0.0
        self.send_error = None

    @property
    def statuses(self):
        return [a.status for a in self.answers]

    def __repr__(self):
        return ("Exchange(statuses=%r, interim=%r, closed=%r, leftover=%r, %.2fs)"
                % (self.statuses, [a.status for a in self.interim], self.closed, self.leftover[:100],
                   self.elapsed))


def _parse_answers(buf, final_eof):
    """Parse as many whole responses from buf as possible. Returns (answers, rest)."""
    out = []
    for _ in range(1000):
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            break
        head = buf[:end]
        lines = head.split(b"\r\n")
        m = re.match(rb"^(HTTP/\d\.\d) (\d{3})(?: (.*))?$", lines[0])
        if not m:
            break
        headers = []
        for ln in lines[1:]:
            k, _, v = ln.partition(b":")
            headers.append((k.decode("latin-1"), v.strip().decode("latin-1")))
        status = int(m.group(2))
        a = Answer(m.group(1).decode(), status, (m.group(3) or b"").decode("latin-1"), headers, b"", b"")
        pos = end + 4
        te = (a.get("Transfer-Encoding") or "").lower()
        cl = a.get("Content-Length")
        if 100 <= status < 200 or status in (204, 304):
            body_end = pos
        elif "chunked" in te:
            body = b""
            p = pos
            ok = False
            for _ in range(100000):
                eol = buf.find(b"\r\n", p)
                if eol < 0:
                    break
                try:
                    size = int(buf[p:eol].split(b";")[0].strip() or b"x", 16)
                except ValueError:
                    break
                p = eol + 2
                if size == 0:
                    t = buf.find(b"\r\n\r\n", p - 2)
                    if t < 0:
                        break
                    p = t + 4
                    ok = True
                    break
                if len(buf) < p + size + 2:
                    break
                body += buf[p:p + size]
                p += size + 2
            if not ok:
                break
            a.body = body
            body_end = p
        elif cl is not None and cl.strip().isdigit():
            n = int(cl)
            if len(buf) < pos + n:
                break
            a.body = buf[pos:pos + n]
            body_end = pos + n
        else:
            if not final_eof:
                break  # close-delimited: only whole at EOF
            a.body = buf[pos:]
            body_end = len(buf)
        a.raw = buf[:body_end]
        out.append(a)
        buf = buf[body_end:]
    return out, buf


def send_raw(addr, data, total=1.5, quiet=0.2, first_wait=None):
    """One fresh connection to addr ("host:port"): send data, read until the server closes, or
    `quiet` seconds without a byte once at least one final answer is whole, or `total` seconds.
    Returns an Exchange."""
    host, port = addr.rsplit(":", 1)
    ex = Exchange()
    t0 = now()
    deadline = t0 + total
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(min(total, 2.0))
    try:
        s.connect((host, int(port)))
        try:
            s.sendall(data)
        except OSError as e:
            ex.send_error = repr(e)
        s.setblocking(False)
        buf = b""
        last = now()
        for _ in range(100000):
            t = now()
            if t >= deadline:
                break
            finals = [a for a in _parse_answers(buf, False)[0] if not (100 <= a.status < 200)]
            wait = deadline - t
            if finals:
                wait = min(wait, last + quiet - t)
                if wait <= 0:
                    break
            r, _, _ = select.select([s], [], [], wait)
            if not r:
                if finals:
                    break
                continue
            try:
                chunk = s.recv(1 << 16)
            except BlockingIOError:
                continue
            except ConnectionResetError:
                ex.closed = ex.reset = True
                break
            if not chunk:
                ex.closed = True
                break
            buf += chunk
            last = now()
        ex.raw = buf
        answers, rest = _parse_answers(buf, ex.closed)
        for a in answers:
            (ex.interim if 100 <= a.status < 200 else ex.answers).append(a)
        ex.leftover = rest
    finally:
        try:
            s.close()
        except OSError:
            pass
    ex.elapsed = now() - t0
    return ex


def http_get(addr, host, target, extra=b"", total=3.0):
    """One simple request with Connection: close; returns the Exchange."""
    req = (b"GET " + target.encode() + b" HTTP/1.1\r\nHost: " + host.encode() + b"\r\n" + extra
           + b"Connection: close\r\n\r\n")
    return send_raw(addr, req, total=total, quiet=total)


# ---------------------------------------------------------------------------------------------
# The gateway stack
# ---------------------------------------------------------------------------------------------
BARRIER = "/__barrier__"


class StackError(Exception):
    pass


class _Base:
    """Common to both stacks: recorders by service, barrier, clearing."""

    recorders = {}

    def clear(self):
        for r in self.recorders.values():
            r.clear()

    def barrier(self):
        """Wait until every request sent before now has reached (or never will reach) the apps:
        one marked request per app, through the front door, each answered."""
        time.sleep(0.03)
        for host, target in self.barrier_targets():
            http_get(self.addr, host, target, extra=b"X-Barrier: 1\r\n", total=2.0)

    def seen(self):
        """Every request the apps recorded since clear(), barrier requests left out, and the
        recorders' parse errors."""
        reqs, errs = [], []
        for r in self.recorders.values():
            rq, er = r.snapshot()
            reqs += [q for q in rq if not q.target.startswith(BARRIER) and not q.get_all("X-Barrier")]
            errs += er
        reqs.sort(key=lambda q: q.seq)
        return reqs, errs


class GatewayStack(_Base):
    def __init__(self):
        self.recorders = {APP_HOST: Recorder(APP_HOST), ADMIN_SERVICE: Recorder(ADMIN_SERVICE)}
        self.broker = None
        self.gateway = None
        self.workers = []
        self.connect_route = False
        self.addr = None

    def routes(self, with_connect):
        r = ["host=%s,prefix=/admin,service=%s" % (APP_HOST, ADMIN_SERVICE)]
        if with_connect:
            r.append("host=%s,connect=yes,service=%s" % (TUNNEL_HOST, APP_HOST))
        return r

    def start(self):
        if not harness.binary_available():
            raise StackError("scale0 binary not found at %s (set SCALE0_BIN)" % harness.BIN)
        self.broker = harness.Broker(heartbeat_interval=500, no_worker_timeout=150).start()
        opts = dict(default_service=APP_HOST, max_body=MAX_BODY, max_header=MAX_HEADER, timeout=5000,
                    header_timeout=5000, body_timeout=5000)
        # rule 15: a route with connect=yes. A binary that does not know the key refuses the rule;
        # then run without it (the CONNECT-tunnel vector fails, as it should).
        for with_connect in (True, False):
            g = harness.Gateway(self.broker.frontend, self.routes(with_connect), **opts)
            try:
                g.start()
                self.gateway = g
                self.connect_route = with_connect
                break
            except harness.BrokerStartError as e:
                g.cleanup()
                if not with_connect:
                    raise StackError(str(e))
        self.addr = self.gateway.listen
        for service, rec in self.recorders.items():
            self.workers.append(harness.Proc([harness.BIN, "worker", "--service", service, "--http", rec.url,
                                              "--broker", self.broker.backend, "--name", "sidecar-" + service,
                                              "--concurrency", "1", "--health-interval", "5000"]))
        # both services answer through the gateway
        deadline = now() + 15.0
        for host, target in self.barrier_targets():
            for _ in range(1000):
                ex = http_get(self.addr, host, target, extra=b"X-Barrier: 1\r\n", total=1.0)
                if ex.statuses == [200]:
                    break
                if now() > deadline:
                    raise StackError("service behind %s %s never answered 200 (last %r)\n%s"
                                     % (host, target, ex, self.stderr_text()))
                time.sleep(0.1)
        self.clear()
        return self

    def barrier_targets(self):
        return [(APP_HOST, BARRIER), (APP_HOST, "/admin" + BARRIER)]

    def stderr_text(self):
        out = []
        if self.gateway:
            out.append("--- gateway ---\n" + self.gateway.stderr_text()[-4000:])
        for service, w in zip(self.recorders, self.workers):
            out.append("--- sidecar %s ---\n%s" % (service, w.stderr_text()[-2000:]))
        if self.broker:
            out.append("--- broker ---\n" + self.broker.stderr_text()[-2000:])
        return "\n".join(out)

    def alive(self):
        return (self.gateway is not None and self.gateway.alive() and self.broker.alive()
                and all(w.alive() for w in self.workers))

    def stop(self):
        for w in self.workers:
            w.terminate(2.0)
            w.cleanup()
        self.workers = []
        if self.gateway:
            self.gateway.kill()
            self.gateway.cleanup()
            self.gateway = None
        if self.broker:
            self.broker.kill()
            self.broker.cleanup()
            self.broker = None
        for r in self.recorders.values():
            r.stop()


_STACK = None
_STACK_ERROR = None
_STACK_LOCK = threading.Lock()


def gateway_stack():
    """The one GatewayStack of this process (started on first use, stopped at exit). Raises
    StackError when it cannot start."""
    global _STACK, _STACK_ERROR
    with _STACK_LOCK:
        if _STACK is None and _STACK_ERROR is None:
            st = GatewayStack()
            try:
                _STACK = st.start()
                atexit.register(st.stop)
            except Exception as e:  # noqa: BLE001
                st.stop()
                _STACK_ERROR = e
        if _STACK_ERROR is not None:
            raise StackError("cannot start the gateway stack: %s" % _STACK_ERROR)
        return _STACK


# ---------------------------------------------------------------------------------------------
# nginx
# ---------------------------------------------------------------------------------------------
NGINX_CONF = """
master_process off;
daemon off;
user root;
worker_processes 1;
error_log {dir}/error.log info;
pid {dir}/nginx.pid;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    client_max_body_size {max_body};
    large_client_header_buffers 4 {max_header};
    keepalive_timeout 5s;
    # like the gateway's host routing: only the hosts with an app behind them are served; the
    # others have "no worker" (503). No Host (HTTP/1.0) or an empty one: the default service.
    map $host $known_host {{
        default 0;
        "" 1;
        "app.local" 1;
        "admin.internal" 1;
    }}
    server {{
        listen 127.0.0.1:{port};
        server_name "";
        location / {{
            if ($known_host = 0) {{
                return 503;
            }}
            proxy_pass http://127.0.0.1:{app_port};
            proxy_http_version 1.1;
            proxy_set_header Host $http_host;
        }}
    }}
}}
"""


def nginx_available():
    return os.path.isfile(NGINX) and os.access(NGINX, os.X_OK)


class NginxStack(_Base):
    """nginx (one process, master_process off) on a free port, proxying everything to one
    Recorder. Nothing is routed: the oracle counts requests."""

    def __init__(self):
        self.recorders = {"nginx-app": Recorder("nginx-app")}
        self.dir = tempfile.mkdtemp(prefix="scale0-smuggle-nginx-")
        self.proc = None
        self.addr = None

    def start(self):
        port = harness.free_port()
        with open(os.path.join(self.dir, "nginx.conf"), "w") as f:
            f.write(NGINX_CONF.format(dir=self.dir, port=port, app_port=self.recorders["nginx-app"].port,
                                      max_body=MAX_BODY, max_header="8k"))
        # `daemon off` is in the file; -g would repeat it (nginx refuses duplicates)
        self.proc = harness.Proc([NGINX, "-p", self.dir, "-c", os.path.join(self.dir, "nginx.conf")])
        self.addr = "127.0.0.1:%d" % port
        deadline = now() + 10.0
        for _ in range(1000):
            try:
                ex = http_get(self.addr, APP_HOST, BARRIER, extra=b"X-Barrier: 1\r\n", total=1.0)
            except OSError as e:  # not listening yet
                ex = e
            if isinstance(ex, Exchange) and ex.statuses == [200]:
                break
            if now() > deadline or not self.proc.alive():
                raise StackError("nginx did not answer (rc=%r): %r\n%s" % (self.proc.poll(), ex, self.stderr_text()))
            time.sleep(0.05)
        self.clear()
        return self

    def barrier_targets(self):
        return [(APP_HOST, BARRIER)]

    def stderr_text(self):
        text = self.proc.stderr_text() if self.proc else ""
        try:
            with open(os.path.join(self.dir, "error.log"), "rb") as f:
                text += f.read()[-4000:].decode("utf-8", "replace")
        except OSError:
            pass
        return text

    def stop(self):
        if self.proc:
            self.proc.terminate(3.0)
            self.proc.cleanup()
            self.proc = None
        for r in self.recorders.values():
            r.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
