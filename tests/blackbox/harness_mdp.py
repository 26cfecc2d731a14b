# SPDX-License-Identifier: Apache-2.0
"""Black-box harness, Majordomo 0.1 (RFC 7/MDP): MdpClient (over REQ, or DEALER with the empty
delimiter added) with its MdpReply, and MdpWorker, an MDP worker on a DEALER in a background
thread (RFC 7 heartbeats, optional re-registration) with its MdpJob.
"""


import zmq

from harness_sockets import WorkerThread, make_socket
from harness_wire import MDPC, MDPW, M_DISCONNECT, M_HEARTBEAT, M_READY, M_REPLY, M_REQUEST, b_, frames_of, now, short


class MdpReply:
    def __init__(self, service, body, frames):
        self.service, self.body, self.frames = service, body, frames

    def __repr__(self):
        return "MdpReply(service=%r, body=%r)" % (self.service, short(self.body))


class MdpClient:
    """MDP/Client 0.1 over REQ (strict request-reply) or DEALER (adds the empty delimiter itself)."""

    def __init__(self, ctx, endpoint, kind="req"):
        self.ctx, self.endpoint, self.kind = ctx, endpoint, kind
        self.sock = None
        self._open()

    def _open(self):
        if self.sock is not None:
            self.sock.close(0)
        self.sock = make_socket(self.ctx, zmq.REQ if self.kind == "req" else zmq.DEALER, self.endpoint)

    def send(self, service, body):
        f = [MDPC, b_(service)] + frames_of(body)
        if self.kind == "dealer":
            f = [b""] + f
        self.sock.send_multipart(f)

    def recv(self, timeout=10.0):
        if not self.sock.poll(int(timeout * 1000), zmq.POLLIN):
            if self.kind == "req":
                self._open()  # a REQ socket is stuck after a lost reply (Lazy Pirate)
            return None
        m = self.sock.recv_multipart()
        f = m
        if self.kind == "dealer":
            if not f or f[0] != b"":
                raise AssertionError("MDP reply to DEALER lacks the empty delimiter: %r" % (short(m),))
            f = f[1:]
        if len(f) < 3 or f[0] != MDPC:
            raise AssertionError("malformed MDP client reply: %r" % (short(m),))
        return MdpReply(f[1], list(f[2:]), m)

    def request(self, service, body, timeout=10.0):
        self.send(service, body)
        r = self.recv(timeout)
        if r is None:
            raise AssertionError("MDP %s client: no reply within %.1fs for %r" % (self.kind, timeout, service))
        return r

    def close(self):
        if self.sock is not None:
            self.sock.close(0)
            self.sock = None


class MdpJob:
    def __init__(self, address, body, t):
        self.address, self.body, self.t = address, body, t

    def __repr__(self):
        return "MdpJob(%r, %r)" % (self.address, short(self.body))


class MdpWorker(WorkerThread):
    """MDP/Worker 0.1 on a DEALER, in a background thread. Sends HEARTBEAT every hb_ms after READY.
    With reregister: after a DISCONNECT, a new socket and READY on it (as the zguide's mdwrkapi
    does), and (RFC 7) reconnect + READY after `liveness` intervals without any message from the
    broker."""

    _n = 0

    def __init__(self, ctx, endpoint, service, hb_ms=200, mode="echo", send_heartbeats=True,
                 reregister=False, send_ready=True, reply_prefix=b"", liveness=3):
        super().__init__("MDP worker")
        MdpWorker._n += 1
        self.liveness = liveness
        self.reconnects = []
        self._reconnect_now = False
        self.ctx, self.endpoint, self.service = ctx, endpoint, b_(service)
        self.hb_ms = hb_ms
        self.mode = mode
        self.send_heartbeats = send_heartbeats
        self.reregister = reregister
        self.auto_ready = send_ready
        self.reply_prefix = reply_prefix
        self.heartbeats_in = []
        self.ready_sent = False

    def send_ready(self, service=None):
        self.send([b"", MDPW, M_READY, b_(service) if service is not None else self.service])

    def reply(self, job, body):
        self.send([b"", MDPW, M_REPLY, job.address, b""] + frames_of(body))

    def wait_disconnect(self, timeout=5.0):
        return self.disconnect_evt.wait(timeout)

    def _run(self):
        s = make_socket(self.ctx, zmq.DEALER, self.endpoint)
        next_hb = None
        last_rx = now()
        try:
            if self.auto_ready:
                s.send_multipart([b"", MDPW, M_READY, self.service])
                self.ready_sent = True
                next_hb = now() + self.hb_ms / 1000.0
            for _ in range(10 ** 8):
                if self._halt.is_set():
                    break
                for f in self._send_queued(s):
                    if len(f) >= 3 and f[2] == M_READY:
                        self.ready_sent = True
                        if next_hb is None:
                            next_hb = now() + self.hb_ms / 1000.0
                t = now()
                if self.send_heartbeats and next_hb is not None and t >= next_hb:
                    s.send_multipart([b"", MDPW, M_HEARTBEAT])
                    next_hb = t + self.hb_ms / 1000.0
                # RFC 7: the broker is dead after `liveness` silent intervals: reconnect, READY again
                if self.reregister and self.ready_sent and t - last_rx > self.liveness * self.hb_ms / 1000.0:
                    self.reconnects.append(t)
                    s.close(0)
                    s = None
                    self._halt.wait(1.0)
                    if self._halt.is_set():
                        break
                    s = make_socket(self.ctx, zmq.DEALER, self.endpoint)
                    s.send_multipart([b"", MDPW, M_READY, self.service])
                    last_rx = now()
                    next_hb = last_rx + self.hb_ms / 1000.0
                    continue
                if s.poll(10, zmq.POLLIN):
                    for _ in range(1000):
                        try:
                            m = s.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        last_rx = now()
                        self._on_msg(m, s)
                        if self._reconnect_now:
                            break
                if self._reconnect_now:
                    # What the old socket still holds (more DISCONNECTs answering heartbeats the
                    # broker queued up while it was away) goes with it: READY is sent once per socket.
                    self._reconnect_now = False
                    s.close(0)
                    s = make_socket(self.ctx, zmq.DEALER, self.endpoint)
                    s.send_multipart([b"", MDPW, M_READY, self.service])
                    next_hb = now() + self.hb_ms / 1000.0
        finally:
            if s is not None:
                s.close(0)

    def _on_msg(self, m, s):
        t = now()
        if len(m) < 3 or m[0] != b"" or m[1] != MDPW:
            self.unknown.append((t, m))
            return
        cmd = m[2]
        if cmd == M_REQUEST:
            if len(m) < 5 or m[4] != b"":
                self.unknown.append((t, m))
                return
            job = MdpJob(m[3], list(m[5:]), t)
            self.jobs.append(job)
            self.job_q.put(job)
            res = None
            if self.mode == "echo":
                res = [self.reply_prefix + f if i == 0 else f for i, f in enumerate(job.body)]
            elif callable(self.mode):
                res = self.mode(job)
            if res is not None:
                s.send_multipart([b"", MDPW, M_REPLY, job.address, b""] + frames_of(res))
        elif cmd == M_HEARTBEAT:
            self.heartbeats_in.append(t)
        elif cmd == M_DISCONNECT:
            self.disconnects.append((t, m))
            self.disconnect_evt.set()
            if self.reregister:  # as the reference mdwrkapi: a new socket, then READY on it
                self._reconnect_now = True
        else:
            self.unknown.append((t, m))
