# SPDX-License-Identifier: Apache-2.0
"""Black-box harness, the native S0/1 worker: NativeWorker, a worker in a background thread
(READY, WELCOME, SUB to the PUB heartbeat, HEARTBEAT, REPLY, DISCONNECT, STOPPING) scriptable per
test, with the Job and Welcome it parses, and parse_disconnect() for a DISCONNECT seen elsewhere.
"""

import re
import threading

import zmq

from harness_sockets import WorkerThread, make_socket
from harness_wire import (H_HDR, W_DISCONNECT, W_HDR, W_HEARTBEAT, W_READY, W_REPLY, W_REQUEST, W_STOPPING,
                          W_WELCOME, b_, du16, du32, du64, frames_of, now, short, u8, u16, u32, u64)


class Job:
    def __init__(self, job_raw, service, timeout_ms, body, t):
        self.job_raw, self.service, self.timeout_ms, self.body, self.t = job_raw, service, timeout_ms, body, t
        self.job_id = du64(job_raw)

    def __repr__(self):
        return "Job(%d, %r, %d, %r)" % (self.job_id, self.service, self.timeout_ms, short(self.body))


class Welcome:
    def __init__(self, frames):
        if (len(frames) != 7 or len(frames[3]) != 4 or len(frames[4]) != 4 or len(frames[6]) != 8):
            raise AssertionError("malformed WELCOME: %r" % (short(frames),))
        self.heartbeat_ms = du32(frames[3])
        self.liveness = du32(frames[4])
        self.endpoint = frames[5].decode()
        self.broker_id = du64(frames[6])
        self.frames = frames

    def connect_endpoint(self):
        """The PUB endpoint to connect to: host `*`/`0.0.0.0` means the host we reached the broker at."""
        m = re.match(r"^(\w+)://([^:]+|\[[^\]]+\]):(\d+)$", self.endpoint)
        if not m:
            return self.endpoint
        host = m.group(2)
        if host in ("*", "0.0.0.0"):
            host = "127.0.0.1"
        return "%s://%s:%s" % (m.group(1), host, m.group(3))


class NativeWorker(WorkerThread):
    """An S0/1 worker driven by a background thread.

    mode: "echo" (reply 200, message=name, body=request body), "hold" (never reply by itself), or a
    callable(job) returning None (don't reply now) or (status, message, body).
    Public methods are thread-safe (they queue frames for the worker thread to send).
    """

    _n = 0

    def __init__(self, ctx, endpoint, services, concurrency=1, heartbeat_ms=0, flags=0, mode="echo",
                 send_heartbeats=True, subscribe=True, reregister=False, name=None, send_ready=True,
                 hb_every_ms=None):
        NativeWorker._n += 1
        self.ctx = ctx
        self.endpoint = endpoint
        self.services = [b_(s) for s in frames_of(services)]
        self.concurrency = concurrency
        self.req_heartbeat_ms = heartbeat_ms
        self.flags = flags
        self.mode = mode
        self.send_heartbeats = send_heartbeats
        self.subscribe = subscribe
        self.reregister = reregister
        self.wname = b_(name) if name else b"pyworker-%d" % NativeWorker._n
        super().__init__("worker thread %r" % self.wname)
        self.auto_ready = send_ready
        self.hb_every_ms = hb_every_ms

        self.welcome = None
        self.welcomes = []
        self.welcome_evt = threading.Event()
        # self.disconnects: (t, status or None, message or None, frames)
        self.stoppings = []
        self.stopping_evt = threading.Event()
        self.pubs = []  # (t, broker_id, seq, frames)
        self.bad_pubs = []
        self.sent_heartbeats = []
        self.registrations = 0
        self.reconnects = []  # times the worker gave up on a silent broker and reconnected
        self._active = None  # the WELCOME of the current registration

        self._lock = threading.Lock()
        self._sub_endpoint = None

    # ---- public API (thread-safe) ----
    def ready_frames(self):
        return [b"", W_HDR, u8(W_READY), u32(self.concurrency), u32(self.req_heartbeat_ms),
                u8(self.flags)] + self.services

    def send_ready(self):
        self.send(self.ready_frames())

    def reply(self, job, status=200, message=b"", body=()):
        raw = job.job_raw if isinstance(job, Job) else u64(job)
        self.send([b"", W_HDR, u8(W_REPLY), raw, u16(status), b_(message)] + frames_of(body))

    def send_heartbeat(self):
        self.send([b"", W_HDR, u8(W_HEARTBEAT)])

    def send_stopping(self):
        self.send([b"", W_HDR, u8(W_STOPPING)])

    def send_disconnect(self, status=None, message=b""):
        f = [b"", W_HDR, u8(W_DISCONNECT)]
        if status is not None:
            f += [u16(status), b_(message)]
        self.send(f)

    def leave(self, status=None, message=b""):
        """Stop heartbeating and send DISCONNECT, as a real worker leaving would."""
        self.send_heartbeats = False
        self.send_disconnect(status, message)

    def wait_welcome(self, timeout=10.0):
        if not self.welcome_evt.wait(timeout):
            raise AssertionError("worker %r got no WELCOME within %.1fs (disconnects=%r, unknown=%r, error=%r)"
                                 % (self.wname, timeout, self.disconnects, self.unknown[:3], self.error))
        return self.welcome

    def jobs_within(self, timeout):
        """Drain jobs arriving within timeout (bounded)."""
        out = []
        deadline = now() + timeout
        for _ in range(100000):
            left = deadline - now()
            if left <= 0:
                break
            j = self.next_job(left)
            if j is None:
                break
            out.append(j)
        return out

    def wait_disconnect(self, timeout=5.0):
        if not self.disconnect_evt.wait(timeout):
            return None
        return self.disconnects[0]

    # ---- thread ----
    def _run(self):
        dealer = make_socket(self.ctx, zmq.DEALER, self.endpoint)
        sub = None
        poller = zmq.Poller()
        poller.register(dealer, zmq.POLLIN)
        next_hb = None
        self._last_rx = now()
        backoff = 1.0
        try:
            if self.auto_ready:
                dealer.send_multipart(self.ready_frames())
            for _ in range(10 ** 8):
                if self._halt.is_set():
                    break
                # outgoing
                self._send_queued(dealer)
                # heartbeats
                t = now()
                active = self._active
                if active is not None and self.send_heartbeats:
                    interval = (self.hb_every_ms or active.heartbeat_ms) / 1000.0
                    if next_hb is None:
                        next_hb = t + interval
                    elif t >= next_hb:
                        dealer.send_multipart([b"", W_HDR, u8(W_HEARTBEAT)])
                        self.sent_heartbeats.append(t)
                        next_hb = t + interval
                # broker silent for liveness intervals: reconnect with backoff (only if reregister)
                if (self.reregister and active is not None
                        and t - self._last_rx > active.liveness * active.heartbeat_ms / 1000.0):
                    self.reconnects.append(t)
                    poller.unregister(dealer)
                    dealer.close(0)
                    if sub is not None:
                        poller.unregister(sub)
                        sub.close(0)
                        sub = None
                    self._active = None
                    next_hb = None
                    self._halt.wait(backoff)
                    backoff = min(backoff * 2, 32.0)
                    if self._halt.is_set():
                        dealer = None
                        break
                    dealer = make_socket(self.ctx, zmq.DEALER, self.endpoint)
                    poller.register(dealer, zmq.POLLIN)
                    self._last_rx = now()
                    dealer.send_multipart(self.ready_frames())
                    continue
                timeout_ms = 10
                if next_hb is not None and self.send_heartbeats:
                    timeout_ms = max(0, min(timeout_ms, int((next_hb - now()) * 1000)))
                events = dict(poller.poll(timeout_ms))
                if dealer in events:
                    for _ in range(1000):
                        try:
                            m = dealer.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        self._last_rx = now()
                        self._on_router(m, dealer)
                        if self._active is not None:
                            backoff = 1.0
                if sub is not None and sub in events:
                    for _ in range(1000):
                        try:
                            m = sub.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        self._last_rx = now()
                        self._on_pub(m, dealer)
                # connect SUB after WELCOME
                if self.subscribe and self._active is not None and sub is None:
                    sub = self.ctx.socket(zmq.SUB)
                    sub.setsockopt(zmq.LINGER, 0)
                    sub.setsockopt(zmq.SUBSCRIBE, H_HDR)
                    self._sub_endpoint = self._active.connect_endpoint()
                    sub.connect(self._sub_endpoint)
                    poller.register(sub, zmq.POLLIN)
        finally:
            if dealer is not None:
                dealer.close(0)
            if sub is not None:
                sub.close(0)

    def _on_pub(self, m, dealer):
        t = now()
        if len(m) == 3 and m[0] == H_HDR and len(m[1]) == 8 and len(m[2]) == 8:
            bid, seq = du64(m[1]), du64(m[2])
            prev = self.pubs[-1][1] if self.pubs else None
            self.pubs.append((t, bid, seq, m))
            if prev is not None and bid != prev and self.reregister and self._active is not None \
                    and self._active.broker_id != bid:
                self.welcome_evt.clear()
                self._active = None
                dealer.send_multipart(self.ready_frames())
        else:
            self.bad_pubs.append((t, m))

    def _on_router(self, m, dealer):
        t = now()
        if len(m) < 3 or m[0] != b"" or m[1] != W_HDR or len(m[2]) != 1:
            self.unknown.append((t, m))
            return
        cmd = m[2][0]
        if cmd == W_WELCOME:
            w = Welcome(m)
            self.welcome = w
            self._active = w
            self.welcomes.append((t, w))
            self.registrations += 1
            self.welcome_evt.set()
        elif cmd == W_REQUEST:
            if len(m) < 6 or len(m[3]) != 8 or len(m[5]) != 4:
                self.unknown.append((t, m))
                return
            job = Job(m[3], m[4], du32(m[5]), list(m[6:]), t)
            self.jobs.append(job)
            self.job_q.put(job)
            res = None
            if self.mode == "echo":
                res = (200, self.wname, job.body)
            elif callable(self.mode):
                res = self.mode(job)
            if res is not None:
                status, message, body = res
                dealer.send_multipart([b"", W_HDR, u8(W_REPLY), job.job_raw, u16(status), b_(message)]
                                      + frames_of(body))
        elif cmd == W_DISCONNECT:
            status = message = None
            if len(m) >= 5 and len(m[3]) == 2:
                status, message = du16(m[3]), m[4]
            self.disconnects.append((t, status, message, m))
            self.disconnect_evt.set()
            if self.reregister:
                self.welcome_evt.clear()
                self._active = None
                dealer.send_multipart(self.ready_frames())
        elif cmd == W_STOPPING:
            self.stoppings.append((t, m))
            self.stopping_evt.set()
        else:
            self.unknown.append((t, m))


def parse_disconnect(m):
    """(status, message) of a native DISCONNECT (status None if absent); None if not a DISCONNECT."""
    if m is None or len(m) < 3 or m[0] != b"" or m[1] != W_HDR or m[2] != u8(W_DISCONNECT):
        return None
    if len(m) >= 5 and len(m[3]) == 2:
        return du16(m[3]), m[4]
    return None, None
