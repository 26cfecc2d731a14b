# SPDX-License-Identifier: Apache-2.0
"""Black-box harness, client-side sockets: make_socket() (a connected zmq socket with the
harness's options), RawPeer (a bare DEALER for arbitrary frames), and NativeClient, the S0/1
client on a DEALER that pipelines by request-id, with its Reply and parse_client_reply().
"""

import queue
import threading

import zmq

from harness_wire import C_HDR, C_PING, C_REPLY, C_REQUEST, b_, du16, du64, frames_of, now, short, u8, u32, u64


def make_socket(ctx, kind, endpoint, identity=None):
    s = ctx.socket(kind)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.RCVHWM, 100000)
    s.setsockopt(zmq.SNDHWM, 100000)
    if identity is not None:
        s.setsockopt(zmq.IDENTITY, identity)
    s.connect(endpoint)
    return s


class RawPeer:
    """A bare DEALER connected to an endpoint: send any frames, receive with timeouts."""

    def __init__(self, ctx, endpoint, kind=zmq.DEALER):
        self.sock = make_socket(ctx, kind, endpoint)

    def send(self, frames):
        self.sock.send_multipart([b_(f) for f in frames])

    def recv(self, timeout=5.0):
        if self.sock.poll(int(max(0, timeout) * 1000), zmq.POLLIN):
            return self.sock.recv_multipart()
        return None

    def recv_all(self, timeout=0.5, limit=100000):
        """Everything that arrives within timeout seconds (bounded count)."""
        out = []
        deadline = now() + timeout
        while len(out) < limit:
            left = deadline - now()
            if left <= 0:
                break
            m = self.recv(left)
            if m is None:
                break
            out.append(m)
        return out

    def close(self):
        try:
            self.sock.close(0)
        except Exception:
            pass


class Reply:
    def __init__(self, rid, status, message, body, frames, t):
        self.rid, self.status, self.message, self.body, self.frames, self.t = rid, status, message, body, frames, t

    def __repr__(self):
        return "Reply(rid=%r, status=%r, message=%r, body=%r)" % (self.rid, self.status, self.message,
                                                                    short(self.body))


def parse_client_reply(frames, t=None):
    """Parse a broker → native client REPLY. Raises AssertionError if malformed."""
    if (len(frames) < 6 or frames[0] != b"" or frames[1] != C_HDR or frames[2] != u8(C_REPLY)
            or len(frames[3]) != 8 or len(frames[4]) != 2):
        raise AssertionError("malformed S0C1 REPLY from broker: %r" % (short(frames),))
    return Reply(du64(frames[3]), du16(frames[4]), frames[5], list(frames[6:]), frames, t or now())


class NativeClient(RawPeer):
    """S0/1 client over DEALER; pipelining by request-id."""

    _next_id = 1

    def __init__(self, ctx, endpoint):
        super().__init__(ctx, endpoint)
        self.backlog = {}  # rid -> [Reply]
        self.other = []  # non-REPLY messages (PONG, ...)
        self.sent_at = {}

    def new_rid(self):
        rid = NativeClient._next_id
        NativeClient._next_id += 1
        return rid

    def send_request(self, service, body=b"", timeout_ms=0, rid=None):
        if rid is None:
            rid = self.new_rid()
        self.sent_at[rid] = now()
        self.send([b"", C_HDR, u8(C_REQUEST), u64(rid), b_(service), u32(timeout_ms)] + frames_of(body))
        return rid

    def _recv_one(self, timeout):
        m = self.recv(timeout)
        if m is None:
            return None
        t = now()
        if len(m) >= 3 and m[0] == b"" and m[1] == C_HDR and m[2] == u8(C_REPLY):
            r = parse_client_reply(m, t)
            self.backlog.setdefault(r.rid, []).append(r)
            return r
        self.other.append((t, m))
        return m

    def recv_reply(self, timeout=5.0):
        """Next REPLY (any id) arriving within timeout, removed from the backlog; None if none."""
        for rid in list(self.backlog):
            if self.backlog[rid]:
                r = self.backlog[rid].pop(0)
                if not self.backlog[rid]:
                    del self.backlog[rid]
                return r
        deadline = now() + timeout
        for _ in range(100000):
            left = deadline - now()
            if left <= 0:
                return None
            m = self._recv_one(left)
            if m is None:
                return None
            if isinstance(m, Reply):
                lst = self.backlog[m.rid]
                lst.remove(m)
                if not lst:
                    del self.backlog[m.rid]
                return m
        return None

    def get_reply(self, rid, timeout=5.0):
        """The REPLY for rid (others are kept in the backlog); None on timeout."""
        deadline = now() + timeout
        for _ in range(100000):
            lst = self.backlog.get(rid)
            if lst:
                r = lst.pop(0)
                if not lst:
                    del self.backlog[rid]
                return r
            left = deadline - now()
            if left <= 0:
                return None
            if self._recv_one(left) is None:
                return None
        return None

    def request(self, service, body=b"", timeout_ms=0, wait=10.0):
        rid = self.send_request(service, body, timeout_ms)
        r = self.get_reply(rid, wait)
        if r is None:
            raise AssertionError("no REPLY within %.1fs for request to %r" % (wait, service))
        return r

    def collect(self, n, timeout=10.0):
        """Up to n replies (any ids) within timeout."""
        out = []
        deadline = now() + timeout
        while len(out) < n:
            left = deadline - now()
            if left <= 0:
                break
            r = self.recv_reply(left)
            if r is None:
                break
            out.append(r)
        return out

    def drain_replies(self, timeout=0.5):
        """All replies (backlog + new) within timeout."""
        return self.collect(1000000, timeout)

    def ping(self, payload=(), timeout=5.0):
        self.send([b"", C_HDR, u8(C_PING)] + frames_of(payload))
        deadline = now() + timeout
        for _ in range(10000):
            left = deadline - now()
            if left <= 0:
                return None
            m = self._recv_one(left)
            if m is None:
                return None
            if not isinstance(m, Reply):
                self.other.remove(self.other[-1])
                return m
        return None


class WorkerThread(threading.Thread):
    """What the test workers (NativeWorker, MdpWorker) share: a daemon thread that owns its
    sockets and runs `_run()`, frames to send queued from any thread, jobs handed over through a
    queue, DISCONNECTs recorded, and an exception in the thread kept for check()."""

    def __init__(self, label):
        super().__init__(daemon=True)
        self.label = label
        self.jobs = []
        self.job_q = queue.Queue()
        self.disconnects = []
        self.disconnect_evt = threading.Event()
        self.unknown = []  # messages it could not parse
        self.error = None
        self._out = queue.Queue()
        self._halt = threading.Event()

    def send(self, frames):
        self._out.put([b_(f) for f in frames])

    def next_job(self, timeout=5.0):
        try:
            return self.job_q.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return None

    def stop(self):
        self._halt.set()
        if self.is_alive():
            self.join(5.0)

    def check(self):
        if self.error:
            raise AssertionError("%s thread failed: %s" % (self.label, self.error))

    def run(self):
        try:
            self._run()
        except Exception as e:  # pragma: no cover - reported via check()
            import traceback
            self.error = "%r\n%s" % (e, traceback.format_exc())

    def _send_queued(self, sock):
        """Sends what other threads queued (up to 10,000 messages); returns them."""
        sent = []
        for _ in range(10000):
            try:
                f = self._out.get_nowait()
            except queue.Empty:
                break
            sock.send_multipart(f)
            sent.append(f)
        return sent
