"""Black-box test harness for Scale0.

Written only from docs/protocol.md (S0/1 + Majordomo interop) and the ZeroMQ RFC 7/MDP and 8/MMI.
Nothing here knows how the broker is implemented.

Contents:
  * free_port(), Broker (start / stop / kill a `scale0 broker`), Scale0Worker (a `scale0 worker`
    process), run_cli() for `scale0 request` and friends;
  * NativeClient: S0/1 client on a DEALER, pipelining by request-id;
  * NativeWorker: S0/1 worker in a background thread (READY, WELCOME, SUB to the PUB heartbeat,
    HEARTBEAT, REPLY, DISCONNECT, STOPPING), scriptable per test;
  * RawPeer: a bare DEALER for sending arbitrary frames;
  * MdpClient (REQ or DEALER) and MdpWorker (DEALER, RFC 7 heartbeats);
  * Scale0TestCase: a unittest.TestCase base class that cleans everything up, even on failure.

Every wait is bounded in time and every loop in count.
"""

import atexit
import json
import os
import queue
import random
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import zmq

BIN = os.environ.get("SCALE0_BIN", "/work/main/build/dev/apps/scale0/scale0")
PYTHON = "/usr/bin/python3"
HERE = os.path.dirname(os.path.abspath(__file__))
VERBOSE = os.environ.get("SCALE0_TEST_VERBOSE", "") not in ("", "0")

# ---------------------------------------------------------------------------------------------
# Protocol constants (docs/protocol.md)
# ---------------------------------------------------------------------------------------------
C_HDR = b"S0C1"
W_HDR = b"S0W1"
H_HDR = b"S0H1"
MDPC = b"MDPC01"
MDPW = b"MDPW01"

# client commands
C_REQUEST = 0x01
C_REPLY = 0x02
C_PING = 0x03
C_PONG = 0x04

# worker commands
W_READY = 0x01
W_REQUEST = 0x02
W_REPLY = 0x03
W_HEARTBEAT = 0x04
W_DISCONNECT = 0x05
W_WELCOME = 0x06
W_STOPPING = 0x07

# MDP worker commands
M_READY = b"\x01"
M_REQUEST = b"\x02"
M_REPLY = b"\x03"
M_HEARTBEAT = b"\x04"
M_DISCONNECT = b"\x05"


def u8(v):
    return struct.pack(">B", v)


def u16(v):
    return struct.pack(">H", v)


def u32(v):
    return struct.pack(">I", v)


def u64(v):
    return struct.pack(">Q", v)


def du16(b):
    return struct.unpack(">H", b)[0]


def du32(b):
    return struct.unpack(">I", b)[0]


def du64(b):
    return struct.unpack(">Q", b)[0]


def b_(x):
    if isinstance(x, bytes):
        return x
    if isinstance(x, str):
        return x.encode()
    raise TypeError("expected bytes or str, got %r" % (x,))


def frames_of(body):
    """Normalise a body argument (bytes, str, or list of them) to a list of bytes frames."""
    if body is None:
        return []
    if isinstance(body, (bytes, str)):
        return [b_(body)]
    return [b_(f) for f in body]


def now():
    return time.monotonic()


def short(frames, limit=8):
    out = []
    for f in frames[:limit]:
        out.append(f if len(f) <= 40 else f[:40] + b"...(%d)" % len(f))
    if len(frames) > limit:
        out.append(b"...(%d frames)" % len(frames))
    return out


# ---------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------
_ALL_PROCS = []


def _kill_all_procs():
    for p in list(_ALL_PROCS):
        try:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=5)
        except Exception:
            pass


atexit.register(_kill_all_procs)


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def ep(port):
    return "tcp://127.0.0.1:%d" % port


def binary_available():
    return os.path.isfile(BIN) and os.access(BIN, os.X_OK)


class Proc:
    """A subprocess with stderr captured to a temp file; always killable."""

    def __init__(self, args, stdin=None, capture_stdout=False, cwd=None):
        self.args = [str(a) for a in args]
        self.errfile = tempfile.NamedTemporaryFile(prefix="scale0-bb-", suffix=".stderr", delete=False)
        self.p = subprocess.Popen(
            self.args,
            stdin=subprocess.DEVNULL if stdin is None else stdin,
            stdout=subprocess.PIPE if capture_stdout else subprocess.DEVNULL,
            stderr=self.errfile,
            start_new_session=True,
            cwd=cwd,
        )
        _ALL_PROCS.append(self.p)

    @property
    def pid(self):
        return self.p.pid

    def poll(self):
        return self.p.poll()

    def alive(self):
        return self.p.poll() is None

    def signal(self, sig):
        if self.p.poll() is None:
            try:
                self.p.send_signal(sig)
            except ProcessLookupError:
                pass

    def wait(self, timeout):
        try:
            return self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self):
        """SIGKILL and reap. Idempotent."""
        if self.p.poll() is None:
            try:
                self.p.kill()
            except ProcessLookupError:
                pass
        try:
            self.p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        if self.p in _ALL_PROCS:
            _ALL_PROCS.remove(self.p)

    def terminate(self, timeout=10.0):
        """SIGTERM, wait, SIGKILL if still running. Returns the exit code seen after SIGTERM
        (None if it had to be killed)."""
        rc = None
        if self.p.poll() is None:
            self.signal(signal.SIGTERM)
            rc = self.wait(timeout)
        else:
            rc = self.p.returncode
        if self.p.poll() is None:
            self.kill()
            return None
        if self.p in _ALL_PROCS:
            _ALL_PROCS.remove(self.p)
        return rc

    def stderr_text(self, tail=20000):
        try:
            with open(self.errfile.name, "rb") as f:
                data = f.read()
            return data[-tail:].decode("utf-8", "replace")
        except OSError:
            return ""

    def cleanup(self):
        self.kill()
        try:
            for stream in (self.p.stdout,):
                if stream:
                    stream.close()
        except Exception:
            pass
        try:
            self.errfile.close()
            os.unlink(self.errfile.name)
        except OSError:
            pass


READY_RE = re.compile(rb"^ready frontend=(\S+) backend=(\S+) heartbeat=(\S+)(?: metrics=(\S+))?\s*$")


class BrokerStartError(Exception):
    pass


class Broker:
    """A `scale0 broker` process. Ports are picked here (explicit 127.0.0.1 endpoints)."""

    def __init__(self, heartbeat_interval=200, liveness=3, no_worker_timeout=None,
                 request_timeout=None, max_queue=None, max_frames=None, max_message_bytes=None,
                 max_client_inflight=None, idempotent=None, extra=(), ports=None, heartbeat_bind=None):
        self.opts = dict(heartbeat_interval=heartbeat_interval, liveness=liveness,
                         no_worker_timeout=no_worker_timeout, request_timeout=request_timeout,
                         max_queue=max_queue, max_frames=max_frames,
                         max_message_bytes=max_message_bytes,
                         max_client_inflight=max_client_inflight, idempotent=idempotent)
        self.heartbeat_interval = heartbeat_interval
        self.liveness = liveness
        self.extra = list(extra)
        self.fixed_ports = ports
        self.heartbeat_bind = heartbeat_bind  # e.g. "tcp://*:%d" to bind the PUB socket on all hosts
        self.ports = ports
        self.proc = None
        self.ready_line = None
        self.procs = []  # every Proc ever started by this object (restarts)
        self._drain = None

    # endpoints
    @property
    def frontend(self):
        return ep(self.ports[0])

    @property
    def backend(self):
        return ep(self.ports[1])

    @property
    def heartbeat(self):
        return ep(self.ports[2])

    def args(self):
        a = [BIN, "broker", "--frontend", self.frontend, "--backend", self.backend,
             "--heartbeat", (self.heartbeat_bind % self.ports[2]) if self.heartbeat_bind else self.heartbeat]
        o = self.opts
        if o["heartbeat_interval"] is not None:
            a += ["--heartbeat-interval", str(o["heartbeat_interval"])]
        if o["liveness"] is not None:
            a += ["--liveness", str(o["liveness"])]
        if o["no_worker_timeout"] is not None:
            a += ["--no-worker-timeout", str(o["no_worker_timeout"])]
        if o["request_timeout"] is not None:
            a += ["--request-timeout", str(o["request_timeout"])]
        if o["max_queue"] is not None:
            a += ["--max-queue", str(o["max_queue"])]
        if o["max_frames"] is not None:
            a += ["--max-frames", str(o["max_frames"])]
        if o["max_message_bytes"] is not None:
            a += ["--max-message-bytes", str(o["max_message_bytes"])]
        if o["max_client_inflight"] is not None:
            a += ["--max-client-inflight", str(o["max_client_inflight"])]
        if o["idempotent"]:
            a += ["--idempotent", ",".join(o["idempotent"])]
        if not any(x == "--metrics-listen" for x in self.extra):
            a += ["--metrics-listen", "127.0.0.1:0"]  # never the default port: brokers run side by side
        return a + self.extra

    def start(self, timeout=15.0):
        attempts = 1 if self.fixed_ports else 3
        last = None
        for _ in range(attempts):
            if not self.fixed_ports:
                self.ports = (free_port(), free_port(), free_port())
                if len(set(self.ports)) != 3:
                    continue
            try:
                self._launch(timeout)
                return self
            except BrokerStartError as e:
                last = e
                if self.fixed_ports:
                    break
        raise last if last else BrokerStartError("could not start broker")

    def restart(self, timeout=15.0):
        """Start again on the same ports (after kill/stop)."""
        assert self.ports is not None
        self._launch(timeout)
        return self

    def _launch(self, timeout):
        if not binary_available():
            raise BrokerStartError("scale0 binary not found at %s (set SCALE0_BIN)" % BIN)
        proc = Proc(self.args(), capture_stdout=True)
        self.procs.append(proc)
        self.proc = proc
        fd = proc.p.stdout.fileno()
        buf = b""
        deadline = now() + timeout
        line = None
        while now() < deadline:
            r, _, _ = select.select([fd], [], [], 0.1)
            if r:
                chunk = os.read(fd, 4096)
                if not chunk:
                    break  # EOF: exited
                buf += chunk
                if b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    break
            elif proc.poll() is not None:
                break
        if line is None:
            rc = proc.poll()
            err = proc.stderr_text()
            proc.kill()
            raise BrokerStartError("broker did not print its ready line (rc=%r, args=%r)\nstdout=%r\nstderr:\n%s"
                                   % (rc, self.args(), buf, err))
        self.ready_line = line.decode("utf-8", "replace")
        m = READY_RE.match(line)
        if not m:
            proc.kill()
            raise BrokerStartError("unexpected ready line %r" % (line,))
        self.ready_endpoints = tuple(x.decode() for x in m.groups()[:3])
        self.metrics = m.group(4).decode() if m.group(4) else None

        def drain(stream=proc.p.stdout):
            try:
                while stream.read(4096):
                    pass
            except Exception:
                pass

        self._drain = threading.Thread(target=drain, daemon=True)
        self._drain.start()

    def alive(self):
        return self.proc is not None and self.proc.alive()

    def kill(self):
        if self.proc:
            self.proc.kill()

    def stop(self, timeout=10.0):
        """SIGTERM; returns exit code (None if it had to be SIGKILLed)."""
        if not self.proc:
            return None
        return self.proc.terminate(timeout)

    def stderr_text(self):
        return "\n".join(p.stderr_text() for p in self.procs)

    def cleanup(self):
        for p in self.procs:
            p.cleanup()


class Scale0Worker:
    """A `scale0 worker --echo` process."""

    def __init__(self, broker_ep, services, name=None, delay=None, concurrency=None,
                 idempotent=False, echo=True, extra=()):
        a = [BIN, "worker", "--service", ",".join(frames_of_str(services))]
        if echo:
            a.append("--echo")
        if broker_ep:
            a += ["--broker", broker_ep]
        if concurrency is not None:
            a += ["--concurrency", str(concurrency)]
        if idempotent:
            a.append("--idempotent")
        if delay is not None:
            a += ["--delay", str(delay)]
        if name is not None:
            a += ["--name", name]
        a += list(extra)
        self.wname = name
        self.proc = Proc(a)

    def alive(self):
        return self.proc.alive()

    def kill(self):
        self.proc.kill()

    def sigkill(self):
        """SIGKILL without waiting for anything else."""
        self.proc.signal(signal.SIGKILL)
        self.proc.wait(10)

    def cleanup(self):
        self.proc.cleanup()


def frames_of_str(services):
    if isinstance(services, (str, bytes)):
        services = [services]
    return [s.decode() if isinstance(s, bytes) else s for s in services]


def run_cli(args, input=None, timeout=30.0):
    """Run the scale0 binary with args; returns CompletedProcess (bytes stdout/stderr)."""
    cmd = [BIN] + [str(a) for a in args]
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    _ALL_PROCS.append(p)
    try:
        out, err = p.communicate(input=input, timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate(timeout=10)
        raise AssertionError("command %r did not finish within %.1fs; stderr=%r" % (cmd, timeout, err))
    finally:
        if p in _ALL_PROCS:
            _ALL_PROCS.remove(p)
    return subprocess.CompletedProcess(cmd, p.returncode, out, err)


# ---------------------------------------------------------------------------------------------
# Sockets
# ---------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------
# Native S0/1 worker
# ---------------------------------------------------------------------------------------------
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


class NativeWorker(threading.Thread):
    """An S0/1 worker driven by a background thread.

    mode: "echo" (reply 200, message=name, body=request body), "hold" (never reply by itself), or a
    callable(job) returning None (don't reply now) or (status, message, body).
    Public methods are thread-safe (they queue frames for the worker thread to send).
    """

    _n = 0

    def __init__(self, ctx, endpoint, services, concurrency=1, heartbeat_ms=0, flags=0, mode="echo",
                 send_heartbeats=True, subscribe=True, reregister=False, name=None, send_ready=True,
                 hb_every_ms=None):
        super().__init__(daemon=True)
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
        self.auto_ready = send_ready
        self.hb_every_ms = hb_every_ms

        self.welcome = None
        self.welcomes = []
        self.welcome_evt = threading.Event()
        self.jobs = []
        self.job_q = queue.Queue()
        self.disconnects = []  # (t, status or None, message or None, frames)
        self.disconnect_evt = threading.Event()
        self.stoppings = []
        self.stopping_evt = threading.Event()
        self.pubs = []  # (t, broker_id, seq, frames)
        self.bad_pubs = []
        self.unknown = []  # unparsed ROUTER messages
        self.sent_heartbeats = []
        self.error = None
        self.registrations = 0
        self.reconnects = []  # times the worker gave up on a silent broker and reconnected
        self._active = None  # the WELCOME of the current registration

        self._out = queue.Queue()
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self._sub_endpoint = None

    # ---- public API (thread-safe) ----
    def ready_frames(self):
        return [b"", W_HDR, u8(W_READY), u32(self.concurrency), u32(self.req_heartbeat_ms),
                u8(self.flags)] + self.services

    def send(self, frames):
        self._out.put([b_(f) for f in frames])

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

    def next_job(self, timeout=5.0):
        try:
            return self.job_q.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return None

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

    def stop(self):
        self._halt.set()
        if self.is_alive():
            self.join(5.0)

    def check(self):
        if self.error:
            raise AssertionError("worker thread %r failed: %s" % (self.wname, self.error))

    # ---- thread ----
    def run(self):
        try:
            self._run()
        except Exception as e:  # pragma: no cover - reported via check()
            import traceback
            self.error = "%r\n%s" % (e, traceback.format_exc())

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
                for _ in range(10000):
                    try:
                        f = self._out.get_nowait()
                    except queue.Empty:
                        break
                    dealer.send_multipart(f)
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


# ---------------------------------------------------------------------------------------------
# Majordomo 0.1 (RFC 7/MDP)
# ---------------------------------------------------------------------------------------------
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


class MdpWorker(threading.Thread):
    """MDP/Worker 0.1 on a DEALER, in a background thread. Sends HEARTBEAT every hb_ms after READY.
    With reregister: READY again after a DISCONNECT, and (RFC 7) reconnect + READY after `liveness`
    intervals without any message from the broker."""

    _n = 0

    def __init__(self, ctx, endpoint, service, hb_ms=200, mode="echo", send_heartbeats=True,
                 reregister=False, send_ready=True, reply_prefix=b"", liveness=3):
        super().__init__(daemon=True)
        MdpWorker._n += 1
        self.liveness = liveness
        self.reconnects = []
        self.ctx, self.endpoint, self.service = ctx, endpoint, b_(service)
        self.hb_ms = hb_ms
        self.mode = mode
        self.send_heartbeats = send_heartbeats
        self.reregister = reregister
        self.auto_ready = send_ready
        self.reply_prefix = reply_prefix
        self.jobs = []
        self.job_q = queue.Queue()
        self.heartbeats_in = []
        self.disconnects = []
        self.disconnect_evt = threading.Event()
        self.unknown = []
        self.error = None
        self.ready_sent = False
        self._out = queue.Queue()
        self._halt = threading.Event()

    def send(self, frames):
        self._out.put([b_(f) for f in frames])

    def send_ready(self, service=None):
        self.send([b"", MDPW, M_READY, b_(service) if service is not None else self.service])

    def reply(self, job, body):
        self.send([b"", MDPW, M_REPLY, job.address, b""] + frames_of(body))

    def next_job(self, timeout=5.0):
        try:
            return self.job_q.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return None

    def wait_disconnect(self, timeout=5.0):
        return self.disconnect_evt.wait(timeout)

    def stop(self):
        self._halt.set()
        if self.is_alive():
            self.join(5.0)

    def check(self):
        if self.error:
            raise AssertionError("MDP worker thread failed: %s" % self.error)

    def run(self):
        try:
            self._run()
        except Exception as e:  # pragma: no cover
            import traceback
            self.error = "%r\n%s" % (e, traceback.format_exc())

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
                for _ in range(10000):
                    try:
                        f = self._out.get_nowait()
                    except queue.Empty:
                        break
                    s.send_multipart(f)
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
            if self.reregister:
                s.send_multipart([b"", MDPW, M_READY, self.service])
        else:
            self.unknown.append((t, m))


# ---------------------------------------------------------------------------------------------
# Status JSON helpers
# ---------------------------------------------------------------------------------------------
def flatten(obj, prefix=""):
    """Flatten JSON to {dotted.path: value} (list indices become path parts)."""
    out = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(flatten(v, "%s.%s" % (prefix, k) if prefix else str(k)))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.update(flatten(v, "%s.%d" % (prefix, i) if prefix else str(i)))
    else:
        out[prefix] = obj
    return out


def counter_sum(status_json, suffix):
    """Sum of the numeric leaves whose flattened path ends with suffix; None if there is none."""
    vals = [v for k, v in flatten(status_json).items()
            if (k == suffix or k.endswith("." + suffix)) and isinstance(v, (int, float))
            and not isinstance(v, bool)]
    return sum(vals) if vals else None


def service_workers(status_json, name):
    """Number of workers the status JSON lists for service name (protocol.md: "services (workers,
    idle slots, queue depth, counters)"). Accepts services as a list of objects with a name, or an
    object keyed by name; workers as a count or a list. None if the service is not listed."""
    services = status_json.get("services") if isinstance(status_json, dict) else None
    entry = None
    if isinstance(services, dict):
        entry = services.get(name)
    elif isinstance(services, list):
        for e in services:
            if isinstance(e, dict) and (e.get("name") == name or e.get("service") == name):
                entry = e
                break
    if entry is None:
        return None
    w = entry.get("workers") if isinstance(entry, dict) else None
    if isinstance(w, list):
        return len(w)
    if isinstance(w, int) and not isinstance(w, bool):
        return w
    raise AssertionError("service %r in scale0.status has no worker count: %r" % (name, entry))


# ---------------------------------------------------------------------------------------------
# Test case base
# ---------------------------------------------------------------------------------------------
class Scale0TestCase(unittest.TestCase):
    """Base class: a zmq context, helpers to start brokers/workers, cleanup on any outcome."""

    def setUp(self):
        if not binary_available():
            self.skipTest("scale0 binary not found at %s (set SCALE0_BIN)" % BIN)
        self.ctx = zmq.Context()
        self.addCleanup(self._destroy_ctx)
        self._brokers = []
        self._threads = []
        self._sockets = []

    def _destroy_ctx(self):
        for t in self._threads:
            try:
                t.stop()
            except Exception:
                pass
        for s in self._sockets:
            try:
                s.close()
            except Exception:
                pass
        self.ctx.destroy(linger=0)

    # --- brokers ---
    def start_broker(self, **kw):
        b = Broker(**kw)
        self.addCleanup(self._cleanup_broker, b)
        b.start()
        self._brokers.append(b)
        return b

    def _cleanup_broker(self, b):
        failed = self._failed()
        b.kill()
        if VERBOSE or failed:
            text = b.stderr_text()
            if text:
                sys.stderr.write("\n----- broker stderr (%s) -----\n%s\n-----\n" % (self.id(), text[-6000:]))
        b.cleanup()

    def _failed(self):
        """True if this test has already recorded a failure or error (best effort)."""
        outcome = getattr(self, "_outcome", None)
        result = getattr(outcome, "result", None)
        try:
            return any(t is self for t, _ in list(result.failures) + list(result.errors))
        except Exception:
            return False

    # --- workers ---
    def native_worker(self, broker_or_ep, services, wait=True, **kw):
        endpoint = broker_or_ep.backend if isinstance(broker_or_ep, Broker) else broker_or_ep
        w = NativeWorker(self.ctx, endpoint, services, **kw)
        self._threads.append(w)
        w.start()
        if wait:
            w.wait_welcome(10.0)
        return w

    def mdp_worker(self, broker_or_ep, service, **kw):
        endpoint = broker_or_ep.backend if isinstance(broker_or_ep, Broker) else broker_or_ep
        w = MdpWorker(self.ctx, endpoint, service, **kw)
        self._threads.append(w)
        w.start()
        return w

    def scale0_worker(self, broker_or_ep, services, **kw):
        endpoint = broker_or_ep.backend if isinstance(broker_or_ep, Broker) else broker_or_ep
        w = Scale0Worker(endpoint, services, **kw)
        self.addCleanup(w.cleanup)
        return w

    # --- clients ---
    def client(self, broker_or_ep):
        endpoint = broker_or_ep.frontend if isinstance(broker_or_ep, Broker) else broker_or_ep
        c = NativeClient(self.ctx, endpoint)
        self._sockets.append(c)
        return c

    def raw(self, endpoint):
        r = RawPeer(self.ctx, endpoint)
        self._sockets.append(r)
        return r

    def mdp_client(self, broker_or_ep, kind="req"):
        endpoint = broker_or_ep.frontend if isinstance(broker_or_ep, Broker) else broker_or_ep
        c = MdpClient(self.ctx, endpoint, kind)
        self._sockets.append(c)
        return c

    # --- queries ---
    def mmi_service(self, broker, service, client=None):
        c = client or self.client(broker)
        r = c.request("mmi.service", [b_(service)], wait=10.0)
        self.assertEqual(r.status, 200, "mmi.service should answer with status 200: %r" % (r,))
        self.assertEqual(len(r.body), 1, "mmi.service body should be one frame: %r" % (r,))
        return r.body[0]

    def wait_mmi(self, broker, service, expect=b"200", timeout=10.0, client=None):
        """Poll mmi.service until it answers expect; returns the elapsed seconds."""
        c = client or self.client(broker)
        t0 = now()
        last = None
        for _ in range(1000):
            last = self.mmi_service(broker, service, c)
            if last == expect:
                return now() - t0
            if now() - t0 > timeout:
                break
            time.sleep(0.05)
        self.fail("mmi.service %r did not become %r within %.1fs (last %r)" % (service, expect, timeout, last))

    def status_json(self, broker, client=None):
        c = client or self.client(broker)
        r = c.request("scale0.status", [], wait=10.0)
        self.assertEqual(r.status, 200, "scale0.status should answer 200: %r" % (r,))
        self.assertGreaterEqual(len(r.body), 1, "scale0.status should have a JSON body")
        try:
            return json.loads(r.body[0].decode("utf-8"))
        except ValueError as e:
            self.fail("scale0.status body is not JSON (%s): %r" % (e, r.body[0][:300]))

    def wait_names(self, broker, service, names, timeout=20.0, window=None, client=None):
        """Send pipelined echo requests until every worker name in names has answered.
        Proves those `scale0 worker` processes are registered. Returns the replies seen."""
        c = client or self.client(broker)
        want = set(b_(n) for n in names)
        seen = set()
        replies = []
        t0 = now()
        for _ in range(200):
            if seen >= want or now() - t0 > timeout:
                break
            rids = [c.send_request(service, b"warmup", timeout_ms=int(timeout * 1000))
                    for _ in range(window or len(want))]
            for rid in rids:
                r = c.get_reply(rid, max(0.5, timeout - (now() - t0)) + 2)
                if r is not None:
                    replies.append(r)
                    if r.status == 200:
                        seen.add(r.message)
        if not seen >= want:
            self.fail("workers %r of service %r not all serving within %.1fs (seen %r, last replies %r)"
                      % (want, service, timeout, seen, replies[-3:]))
        return replies

    def assertAlive(self, broker):
        self.assertTrue(broker.alive(), "broker process died (rc=%r); stderr tail:\n%s"
                        % (broker.proc.poll(), broker.stderr_text()[-3000:]))

    def assertServes(self, broker, service=b"sanity", endpoint=None):
        """The broker answers a normal request end to end (registers a fresh echo worker)."""
        self.assertAlive(broker)
        w = self.native_worker(endpoint or broker.backend, [service], mode="echo")
        c = self.client(broker)
        r = c.request(service, [b"still", b"alive"], timeout_ms=5000, wait=10.0)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, [b"still", b"alive"])
        w.stop()
