# SPDX-License-Identifier: Apache-2.0
"""Black-box test harness for Scale0.

Written only from docs/protocol.md (S0/1 + Majordomo interop), docs/http.md (the gateway and the
HTTP encoding) and the ZeroMQ RFC 7/MDP and 8/MMI.
Nothing here knows how the broker is implemented.

Contents:
  * free_port(), Broker (start / stop / kill a `scale0 broker`), Scale0Worker (a `scale0 worker`
    process), run_cli() for `scale0 request` and friends;
  * NativeClient: S0/1 client on a DEALER, pipelining by request-id;
  * NativeWorker: S0/1 worker in a background thread (READY, WELCOME, SUB to the PUB heartbeat,
    HEARTBEAT, REPLY, DISCONNECT, STOPPING), scriptable per test;
  * RawPeer: a bare DEALER for sending arbitrary frames;
  * MdpClient (REQ or DEALER) and MdpWorker (DEALER, RFC 7 heartbeats);
  * Gateway (a `scale0 gateway`), HttpWorker (native S0/1 worker speaking the HTTP encoding of
    docs/http.md, driven by X-Test-* request fields), RawHttp (a hand-driven HTTP connection);
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

HERE = os.path.dirname(os.path.abspath(__file__))
# CTest passes the binary it built ($<TARGET_FILE:scale0_cli>); by hand, the dev build of this
# checkout.
BIN = os.environ.get("SCALE0_BIN") or os.path.join(HERE, "..", "..", "build", "dev", "apps", "scale0",
                                                   "scale0")
PYTHON = "/usr/bin/python3"
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


READY_RE = re.compile(rb"^ready frontend=(\S+) backend=(\S+) heartbeat=(\S+)(?: peer=(\S+))?(?: metrics=(\S+))?\s*$")


class BrokerStartError(Exception):
    pass


class Broker:
    """A `scale0 broker` process. Ports are picked here (explicit 127.0.0.1 endpoints)."""

    def __init__(self, heartbeat_interval=200, liveness=3, no_worker_timeout=None,
                 request_timeout=None, max_queue=None, max_frames=None, max_message_bytes=None,
                 max_client_inflight=None, idempotent=None, extra=(), ports=None, heartbeat_bind=None,
                 peer_port=None):
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
        # The family's peer ROUTER (docs/family.md): a port of its own, never the default 5558, so
        # brokers run side by side; kept across restarts.
        self.peer_port = peer_port
        self._auto_peer = peer_port is None
        self.proc = None
        self.ready_line = None
        self.procs = []  # every Proc ever started by this object (restarts)
        self.ready_peer = None
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
        return a + self.peer_args() + self.extra

    def peer_args(self):
        """--peer-listen on a free port unless the test gives its own."""
        if any(x == "--peer-listen" for x in self.extra):
            return []
        if self.peer_port is None:
            self.peer_port = free_port()
        return ["--peer-listen", ep(self.peer_port)]

    @property
    def peer(self):
        return self.ready_peer or (ep(self.peer_port) if self.peer_port else None)

    def start(self, timeout=15.0):
        attempts = 1 if self.fixed_ports else 3
        last = None
        for _ in range(attempts):
            if not self.fixed_ports:
                self.ports = (free_port(), free_port(), free_port())
                if len(set(self.ports)) != 3:
                    continue
                if self._auto_peer:
                    self.peer_port = None  # a new one with the others
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
        self.ready_peer = m.group(4).decode() if m.group(4) else None
        self.metrics = m.group(5).decode() if m.group(5) else None

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


def first_line(proc, timeout=15.0):
    """The first line a Proc started with capture_stdout=True prints (a server's ready line),
    without its newline; whatever came by then when it ends or the time is up."""
    fd = proc.p.stdout.fileno()
    buf = b""
    deadline = now() + timeout
    while b"\n" not in buf and now() < deadline:
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            buf += chunk
    return buf.split(b"\n")[0]


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
def str8(s):
    """A packed str8 (1-byte length, then the bytes)."""
    s = b_(s)
    return u8(len(s)) + s


def str16(s):
    """A packed str16 (2-byte length, then the bytes)."""
    s = b_(s)
    return u16(len(s)) + s


class PackedReader:
    """Reads packed S0/2 and S0P1 fields (docs/protocol.md, docs/family.md), failing the test on a
    short frame."""

    def __init__(self, data):
        self.data, self.at = data, 0

    def take(self, n):
        if self.at + n > len(self.data):
            raise AssertionError("short packed frame: %r" % (self.data,))
        v = self.data[self.at:self.at + n]
        self.at += n
        return v

    def u8(self):
        return self.take(1)[0]

    def u16(self):
        return du16(self.take(2))

    def u32(self):
        return du32(self.take(4))

    def u64(self):
        return du64(self.take(8))

    def str8(self):
        return self.take(self.u8())

    def str16(self):
        return self.take(self.u16())

    def done(self):
        return self.at == len(self.data)


def scrape(broker):
    """/metrics of a broker as {series (with its labels): value}."""
    import urllib.request
    with urllib.request.urlopen("http://%s/metrics" % broker.metrics, timeout=5) as r:
        text = r.read().decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def family_status(broker, timeout_ms=3000):
    """`scale0 status --json` of a broker (through its frontend), parsed."""
    r = run_cli(["status", "--broker", broker.frontend, "--json", "--timeout", str(timeout_ms)], timeout=20)
    if r.returncode != 0:
        raise AssertionError("scale0 status of %s failed: %r" % (broker.frontend, r.stderr))
    return json.loads(r.stdout.decode())


def peers_of(st):
    """The family table of a status document, by peer endpoint."""
    return {p["endpoint"]: p for p in st["family"]["peers"]}


def wait_until(what, check, timeout, every=0.1):
    """Polls check() until it returns something true; returns (value, seconds). An AssertionError
    from check() counts as not yet; at the timeout, AssertionError with the last result."""
    t0 = now()
    last = None
    for _ in range(100000):
        try:
            last = check()
        except AssertionError as e:
            last = e
        if last and not isinstance(last, AssertionError):
            return last, now() - t0
        if now() - t0 > timeout:
            break
        time.sleep(every)
    raise AssertionError("%s not within %.1f s (last: %r)" % (what, timeout, last))


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

    def _stop_peers(self):
        """Stops the test's peer threads and closes its sockets (each at most once)."""
        threads, self._threads = self._threads, []
        sockets, self._sockets = self._sockets, []
        for t in threads:
            try:
                t.stop()
            except Exception:
                pass
        for s in sockets:
            try:
                s.close()
            except Exception:
                pass

    def _destroy_ctx(self):
        self._stop_peers()
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
        # Bounded by time and by count. A worker that starts late (seconds under ASan) must not
        # find the rounds used up by one that started early: a round that finds no new name
        # waits 20 ms before the next.
        for _ in range(2000):
            if seen >= want or now() - t0 > timeout:
                break
            before = len(seen)
            rids = [c.send_request(service, b"warmup", timeout_ms=int(timeout * 1000))
                    for _ in range(window or len(want))]
            for rid in rids:
                r = c.get_reply(rid, max(0.5, timeout - (now() - t0)) + 2)
                if r is not None:
                    replies.append(r)
                    if r.status == 200:
                        seen.add(r.message)
            if len(seen) == before and not seen >= want:
                time.sleep(0.02)
        if not seen >= want:
            self.fail("workers %r of service %r not all serving within %.1fs (seen %r, last replies %r)"
                      % (want, service, timeout, seen, replies[-3:]))
        return replies

    # --- HTTP (docs/http.md) ---
    def start_gateway(self, broker_or_ep, routes=(), **kw):
        """A `scale0 gateway` to the broker's frontend (see Gateway for the arguments)."""
        endpoint = broker_or_ep.frontend if isinstance(broker_or_ep, Broker) else broker_or_ep
        g = Gateway(endpoint, routes, **kw)
        self.addCleanup(self._cleanup_gateway, g)
        g.start()
        return g

    def _cleanup_gateway(self, g):
        failed = self._failed()
        g.kill()
        if VERBOSE or failed:
            text = g.stderr_text()
            if text:
                sys.stderr.write("\n----- gateway stderr (%s) -----\n%s\n-----\n" % (self.id(), text[-6000:]))
        g.cleanup()

    def http_worker(self, broker_or_ep, services, wait=True, **kw):
        """An HttpWorker (native S0/1, HTTP encoding) for services."""
        endpoint = broker_or_ep.backend if isinstance(broker_or_ep, Broker) else broker_or_ep
        w = HttpWorker(self.ctx, endpoint, services, **kw)
        self._threads.append(w)
        w.start()
        if wait:
            w.wait_welcome(10.0)
        return w

    def raw_http(self, gateway_or_addr, **kw):
        """A RawHttp connection to the gateway, closed at cleanup."""
        addr = gateway_or_addr.listen if isinstance(gateway_or_addr, Gateway) else gateway_or_addr
        c = RawHttp(addr, **kw)
        self.addCleanup(c.close)
        return c

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


# ---------------------------------------------------------------------------------------------
# HTTP through Scale0 (docs/http.md): `scale0 gateway`, the HTTP encoding, an HTTP worker
# ---------------------------------------------------------------------------------------------
GATEWAY_READY_RE = re.compile(rb"^ready listen=(\S+) broker=(\S+)(?: metrics=(\S+))?\s*$")


def _opt_flags(opts):
    """{"max_body": 10} -> ["--max-body", "10"] (None values skipped)."""
    out = []
    for k, v in opts.items():
        if v is None:
            continue
        out += ["--" + k.replace("_", "-"), str(v)]
    return out


class Gateway:
    """A `scale0 gateway` process on a free loopback port (`--listen 127.0.0.1:0`).

    routes: list of rule strings (each becomes `--route RULE`); opts: option=value (underscores
    become dashes, e.g. max_body=1000 -> --max-body 1000); config: path of a TOML file (then only
    `--config FILE` and `extra` are passed)."""

    def __init__(self, broker_ep, routes=(), extra=(), config=None, listen="127.0.0.1:0",
                 metrics_listen="127.0.0.1:0", **opts):
        self.broker_ep = broker_ep
        self.routes = list(routes)
        self.extra = list(extra)
        self.config = config
        self.listen_arg = listen
        self.metrics_listen = metrics_listen
        self.opts = opts
        self.proc = None
        self.procs = []
        self.ready_line = None
        self.listen = None  # "HOST:PORT" from the ready line
        self.metrics = None
        self._drain = None

    def args(self):
        if self.config is not None:
            return [BIN, "gateway", "--config", self.config] + self.extra
        a = [BIN, "gateway", "--listen", self.listen_arg, "--broker", self.broker_ep]
        if self.metrics_listen is not None:
            a += ["--metrics-listen", self.metrics_listen]
        for r in self.routes:
            a += ["--route", r]
        return a + _opt_flags(self.opts) + self.extra

    @property
    def host(self):
        return self.listen.rsplit(":", 1)[0]

    @property
    def port(self):
        return int(self.listen.rsplit(":", 1)[1])

    def start(self, timeout=15.0):
        if not binary_available():
            raise BrokerStartError("scale0 binary not found at %s (set SCALE0_BIN)" % BIN)
        proc = Proc(self.args(), capture_stdout=True)
        self.procs.append(proc)
        self.proc = proc
        fd = proc.p.stdout.fileno()
        buf = b""
        line = None
        deadline = now() + timeout
        while now() < deadline:
            r, _, _ = select.select([fd], [], [], 0.1)
            if r:
                chunk = os.read(fd, 4096)
                if not chunk:
                    break
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
            raise BrokerStartError("gateway did not print its ready line (rc=%r, args=%r)\nstdout=%r\nstderr:\n%s"
                                   % (rc, self.args(), buf, err))
        self.ready_line = line.decode("utf-8", "replace")
        m = GATEWAY_READY_RE.match(line)
        if not m:
            proc.kill()
            raise BrokerStartError("unexpected gateway ready line %r (docs/http.md: "
                                   "`ready listen=HOST:PORT broker=EP [metrics=HOST:PORT]`)" % (line,))
        self.listen = m.group(1).decode()
        self.ready_broker = m.group(2).decode()
        self.metrics = m.group(3).decode() if m.group(3) else None

        def drain(stream=proc.p.stdout):
            try:
                while stream.read(4096):
                    pass
            except Exception:
                pass

        self._drain = threading.Thread(target=drain, daemon=True)
        self._drain.start()
        return self

    def alive(self):
        return self.proc is not None and self.proc.alive()

    def kill(self):
        if self.proc:
            self.proc.kill()

    def stop(self, timeout=10.0):
        return self.proc.terminate(timeout) if self.proc else None

    def stderr_text(self):
        return "\n".join(p.stderr_text() for p in self.procs)

    def cleanup(self):
        for p in self.procs:
            p.cleanup()


# --- the HTTP encoding ---------------------------------------------------------------------------
TOKEN_RE = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
ENC_REQUEST_LINE_RE = re.compile(rb"^([!#$%&'*+\-.^_`|~0-9A-Za-z]+) (\S+) HTTP/1\.1$")
ENC_FIELD_RE = re.compile(rb"^([!#$%&'*+\-.^_`|~0-9A-Za-z]+):(?: (.*)|)$")


class EncodingError(Exception):
    pass


class HttpRequestEnc:
    """A parsed HTTP request encoding (docs/http.md, "The HTTP encoding (version 1)")."""

    def __init__(self, method, target, headers, body, raw):
        self.method, self.target, self.headers, self.body, self.raw = method, target, headers, body, raw

    def get_all(self, name):
        n = name.lower()
        return [v for k, v in self.headers if k.lower() == n]

    def get(self, name, default=None):
        v = self.get_all(name)
        return v[0] if v else default

    def names(self):
        return [k for k, _ in self.headers]

    def __repr__(self):
        return "HttpRequestEnc(%s %s, %r, body %d bytes)" % (self.method, self.target, self.headers, len(self.body))


def parse_http_request_encoding(frames):
    """Strict parse of a REQUEST body: exactly one frame, `METHOD SP target SP HTTP/1.1 CRLF`,
    `name: value CRLF` fields, exactly one Content-Length equal to the body size, no
    Transfer-Encoding. Raises EncodingError naming what is wrong."""
    if len(frames) != 1:
        raise EncodingError("the REQUEST body must be exactly one frame, got %d" % len(frames))
    raw = frames[0]
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        raise EncodingError("no CRLF CRLF ending the header block: %r" % raw[:200])
    head, body = raw[:end], raw[end + 4:]
    lines = head.split(b"\r\n")
    m = ENC_REQUEST_LINE_RE.match(lines[0])
    if not m:
        raise EncodingError("bad request line %r" % lines[0])
    headers = []
    for ln in lines[1:]:
        if b"\n" in ln or b"\r" in ln:
            raise EncodingError("bare CR or LF in field line %r" % ln)
        fm = ENC_FIELD_RE.match(ln)
        if not fm:
            raise EncodingError("bad field line %r (want `name: value`)" % ln)
        headers.append((fm.group(1).decode("latin-1"), (fm.group(2) or b"").decode("latin-1")))
    cls = [v for k, v in headers if k.lower() == "content-length"]
    if len(cls) != 1:
        raise EncodingError("want exactly one Content-Length, got %r" % cls)
    if not re.match(r"^[0-9]+$", cls[0]) or int(cls[0]) != len(body):
        raise EncodingError("Content-Length %r but the body has %d bytes" % (cls[0], len(body)))
    if any(k.lower() == "transfer-encoding" for k, _ in headers):
        raise EncodingError("Transfer-Encoding in the encoding: the body must be de-chunked")
    return HttpRequestEnc(m.group(1).decode("latin-1"), m.group(2).decode("latin-1"), headers, body, raw)


REASONS = {100: "Continue", 200: "OK", 201: "Created", 204: "No Content", 301: "Moved Permanently",
           400: "Bad Request", 404: "Not Found", 408: "Request Timeout", 413: "Content Too Large",
           418: "I'm a teapot", 429: "Too Many Requests", 431: "Request Header Fields Too Large",
           500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
           504: "Gateway Timeout"}


def encode_http_response(status=200, headers=(), body=b"", content_length=True, chunked=False, reason=None):
    """An HTTP response encoding (bytes). headers: [(name, value)]."""
    body = b_(body)
    out = [b"HTTP/1.1 %d %s\r\n" % (status, b_(reason if reason is not None else REASONS.get(status, "Status")))]
    for k, v in headers:
        out.append(b_(k) + b": " + b_(v) + b"\r\n")
    if chunked:
        out.append(b"Transfer-Encoding: chunked\r\n\r\n")
        step = max(1, len(body) // 3 or 1)
        for i in range(0, len(body), step):
            piece = body[i:i + step]
            out.append(b"%x\r\n" % len(piece) + piece + b"\r\n")
        out.append(b"0\r\n\r\n")
        return b"".join(out)
    if content_length:
        out.append(b"Content-Length: %d\r\n" % len(body))
    out.append(b"\r\n")
    return b"".join(out) + body


def body_pattern(n):
    """n deterministic bytes (for large bodies)."""
    unit = bytes(range(256))
    return (unit * (n // 256 + 1))[:n]


def split_frames(data, n):
    n = max(1, int(n))
    if n == 1 or len(data) < n:
        return [data]
    step = len(data) // n
    return [data[i * step:(i + 1) * step] if i < n - 1 else data[i * step:] for i in range(n)]


class HttpWorker(NativeWorker):
    """A native S0/1 worker that speaks the HTTP encoding.

    Every REQUEST body is parsed strictly (parse_http_request_encoding); a request that breaks the
    encoding is recorded in `encoding_errors` and answered with HTTP 599 whose body says why. The
    parsed requests are in `http_requests` (with .job). The default answer is 200 with a JSON body:
    {method, target, headers: [[name, value]...], body (latin-1 text, when <= 64 KiB), body_len,
    body_sha256, service, timeout_ms, frames, worker}.

    Hooks, as request header fields (so any HTTP client can drive them):
      X-Test-Delay: ms         answer after ms (other requests are served meanwhile)
      X-Test-Hold: 1           do not answer; the test answers with reply_http(req, ...) or lets it expire
      X-Test-Status: code      HTTP status of the answer (X-Test-Reason: the reason phrase)
      X-Test-Header: N: v      add a response field (repeatable, in order)
      X-Test-Body: text        the answer's body (instead of the JSON)
      X-Test-Size: n           the answer's body is n pattern bytes (body_pattern)
      X-Test-No-Length: 1      answer without Content-Length (body = rest of the reply)
      X-Test-Chunked: 1        answer with Transfer-Encoding: chunked
      X-Test-Frames: n         split the reply body over n frames
      X-Test-Head-Body: omit   for HEAD: send the header block only (with the Content-Length of the body)
      X-Test-Malformed: kind   an answer that is not a well-formed response
                               (garbage | empty | short-body | bad-status | no-end)
      X-Test-S0-Status: code   answer with this S0/1 status (not 200) and a message, no body
      X-Test-Die: 1            die holding the request: close the socket, no DISCONNECT, no heartbeats
    `handler` (callable(req) -> None or (status, message, frames)) overrides everything."""

    def __init__(self, ctx, endpoint, services, concurrency=16, handler=None, **kw):
        super().__init__(ctx, endpoint, services, concurrency=concurrency, mode=self._on_job, **kw)
        self.handler = handler
        self.http_requests = []
        self.http_q = queue.Queue()
        self.encoding_errors = []
        self.died = threading.Event()
        self._timers = []

    # replies -------------------------------------------------------------------------------------
    def reply_http(self, req, status=200, headers=(), body=b"", **kw):
        self.reply(req.job, 200, b"", [encode_http_response(status, headers, body, **kw)])

    def next_http(self, timeout=5.0):
        try:
            return self.http_q.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return None

    def stop(self):
        for t in self._timers:
            t.cancel()
        super().stop()

    def check(self):
        super().check()
        if self.encoding_errors:
            raise AssertionError("requests broke the HTTP encoding: %r" % (self.encoding_errors[:3],))

    def echo_json(self, req):
        j = req.job
        return {
            "method": req.method, "target": req.target,
            "headers": [[k, v] for k, v in req.headers],
            "body": req.body.decode("latin-1") if len(req.body) <= 65536 else None,
            "body_len": len(req.body),
            "body_sha256": __import__("hashlib").sha256(req.body).hexdigest(),
            "service": j.service.decode("latin-1"), "timeout_ms": j.timeout_ms,
            "frames": len(j.body), "worker": self.wname.decode("latin-1"),
        }

    def _on_job(self, job):
        try:
            req = parse_http_request_encoding(job.body)
        except EncodingError as e:
            self.encoding_errors.append((str(e), short(job.body)))
            return (200, self.wname, [encode_http_response(599, [("Content-Type", "text/plain")],
                                                           ("encoding error: %s" % e).encode(), reason="Bad Encoding")])
        req.job = job
        self.http_requests.append(req)
        self.http_q.put(req)
        if self.handler is not None:
            return self.handler(req)
        if req.get("X-Test-Die"):
            self.died.set()
            self.send_heartbeats = False
            self._halt.set()  # the thread closes its socket: no REPLY, no DISCONNECT
            return None
        if req.get("X-Test-Hold"):
            return None
        if req.get("X-Test-S0-Status"):
            return (int(req.get("X-Test-S0-Status")), b"worker failed on purpose", [])
        frames = self.build_answer(req)
        delay = req.get("X-Test-Delay")
        if delay:
            t = threading.Timer(int(delay) / 1000.0, lambda: self.reply(job, 200, self.wname, frames))
            t.daemon = True
            self._timers.append(t)
            t.start()
            return None
        return (200, self.wname, frames)

    def build_answer(self, req):
        mal = req.get("X-Test-Malformed")
        if mal:
            data = {
                "garbage": b"this is not an HTTP response\r\n\r\n",
                "empty": b"",
                "short-body": b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly a few bytes",
                "bad-status": b"HTTP/1.1 abc Nope\r\nContent-Length: 0\r\n\r\n",
                "no-end": b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n",
                "interim": b"HTTP/1.1 100 Continue\r\n\r\n",
                "switching": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n",
            }[mal]
            return [data] if data else []
        status = int(req.get("X-Test-Status", "200"))
        headers = []
        for h in req.get_all("X-Test-Header"):
            k, _, v = h.partition(":")
            headers.append((k.strip(), v.strip()))
        if req.get("X-Test-Body") is not None:
            body = req.get("X-Test-Body").encode("latin-1")
        elif req.get("X-Test-Size"):
            body = body_pattern(int(req.get("X-Test-Size")))
        else:
            body = json.dumps(self.echo_json(req)).encode()
            headers.append(("Content-Type", "application/json"))
        omit_body = req.method == "HEAD" and req.get("X-Test-Head-Body") == "omit"
        if omit_body:
            head = encode_http_response(status, headers + [("Content-Length", str(len(body)))], b"",
                                        content_length=False, reason=req.get("X-Test-Reason"))
            data = head
        else:
            data = encode_http_response(status, headers, body,
                                        content_length=not req.get("X-Test-No-Length"),
                                        chunked=bool(req.get("X-Test-Chunked")),
                                        reason=req.get("X-Test-Reason"))
        return split_frames(data, req.get("X-Test-Frames", "1"))


# --- HTTP client side --------------------------------------------------------------------------
class HttpResponse:
    def __init__(self, version, status, reason, headers, body, raw_head):
        self.version, self.status, self.reason, self.headers, self.body = version, status, reason, headers, body
        self.raw_head = raw_head

    def get_all(self, name):
        n = name.lower()
        return [v for k, v in self.headers if k.lower() == n]

    def get(self, name, default=None):
        v = self.get_all(name)
        return v[0] if v else default

    def json(self):
        try:
            return json.loads(self.body.decode("utf-8"))
        except ValueError:
            raise AssertionError("expected the HttpWorker's JSON echo, got %r" % (self,))

    def __repr__(self):
        return "HttpResponse(%s %d %s, %r, body=%r)" % (self.version, self.status, self.reason, self.headers,
                                                       self.body[:200])


class ConnectionClosed(Exception):
    pass


class RawHttp:
    """A raw TCP connection for hand-written requests (pipelining, slow or malformed clients).
    Every read is bounded by a deadline."""

    def __init__(self, addr, timeout=5.0, rcvbuf=None):
        host, port = addr.rsplit(":", 1)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((host, int(port)))
        self.buf = b""
        self.eof = False
        self.reset = False

    def send(self, data):
        self.sock.sendall(b_(data))

    def try_send(self, data):
        """send, returning False instead of raising when the peer has closed."""
        try:
            self.sock.sendall(b_(data))
            return True
        except OSError:
            return False

    def _fill(self, deadline):
        left = deadline - now()
        if left <= 0:
            raise socket.timeout("no data before the deadline")
        r, _, _ = select.select([self.sock], [], [], left)
        if not r:
            raise socket.timeout("no data before the deadline")
        try:
            chunk = self.sock.recv(1 << 20)
        except ConnectionResetError:
            self.reset = True
            chunk = b""
        if not chunk:
            self.eof = True
            raise ConnectionClosed("connection closed (%s) with %d bytes unparsed: %r"
                                   % ("reset" if self.reset else "EOF", len(self.buf), self.buf[:200]))
        self.buf += chunk

    def read_response(self, timeout=5.0, head_only=False):
        """One response (a 1xx interim response is returned on its own). head_only: the response
        to a HEAD (no body whatever its Content-Length)."""
        deadline = now() + timeout
        for _ in range(100000):
            if b"\r\n\r\n" in self.buf:
                break
            self._fill(deadline)
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        m = re.match(rb"^(HTTP/\d\.\d) (\d{3})(?: (.*))?$", lines[0])
        if not m:
            raise AssertionError("bad status line %r" % lines[0])
        version, status, reason = m.group(1).decode(), int(m.group(2)), (m.group(3) or b"").decode("latin-1")
        headers = []
        for ln in lines[1:]:
            k, sep, v = ln.partition(b":")
            if not sep:
                raise AssertionError("bad response field line %r" % ln)
            headers.append((k.decode("latin-1"), v.strip().decode("latin-1")))
        resp = HttpResponse(version, status, reason, headers, b"", head + b"\r\n\r\n")
        if head_only or 100 <= status < 200 or status in (204, 304):
            return resp
        te = resp.get("Transfer-Encoding")
        cl = resp.get("Content-Length")
        if te and "chunked" in te.lower():
            body = b""
            for _ in range(1000000):
                for _ in range(100000):
                    if b"\r\n" in self.buf:
                        break
                    self._fill(deadline)
                size_line, self.buf = self.buf.split(b"\r\n", 1)
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    for _ in range(100000):
                        if b"\r\n\r\n" in b"\r\n" + self.buf:
                            break
                        self._fill(deadline)
                    idx = (b"\r\n" + self.buf).find(b"\r\n\r\n")
                    self.buf = (b"\r\n" + self.buf)[idx + 4:]
                    break
                for _ in range(100000):
                    if len(self.buf) >= size + 2:
                        break
                    self._fill(deadline)
                body += self.buf[:size]
                self.buf = self.buf[size + 2:]
            resp.body = body
        elif cl is not None:
            n = int(cl)
            for _ in range(1000000):
                if len(self.buf) >= n:
                    break
                self._fill(deadline)
            resp.body, self.buf = self.buf[:n], self.buf[n:]
        else:
            # no length: body until EOF
            for _ in range(1000000):
                try:
                    self._fill(deadline)
                except ConnectionClosed:
                    break
            resp.body, self.buf = self.buf, b""
        return resp

    def read_final(self, timeout=5.0, head_only=False):
        """The next non-1xx response (1xx ones are skipped)."""
        deadline = now() + timeout
        for _ in range(10):
            r = self.read_response(max(0.01, deadline - now()), head_only)
            if r.status >= 200:
                return r
        raise AssertionError("too many interim responses")

    def wait_closed(self, timeout=3.0):
        """True if the peer closes (EOF or reset) within timeout; the bytes read meanwhile stay in buf."""
        deadline = now() + timeout
        for _ in range(100000):
            if self.eof:
                return True
            try:
                self._fill(deadline)
            except ConnectionClosed:
                return True
            except socket.timeout:
                return False
        return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def http_request_bytes(method, target, headers=(), body=None, version="HTTP/1.1"):
    """A request in wire format; adds Content-Length when body is given and headers lack one."""
    out = [b"%s %s %s\r\n" % (b_(method), b_(target), b_(version))]
    names = [b_(k).lower() for k, _ in headers]
    for k, v in headers:
        out.append(b_(k) + b": " + b_(v) + b"\r\n")
    if body is not None and b"content-length" not in names and b"transfer-encoding" not in names:
        out.append(b"Content-Length: %d\r\n" % len(b_(body)))
    out.append(b"\r\n")
    return b"".join(out) + (b_(body) if body is not None else b"")


def chunked(data, sizes=(7, 100, 1)):
    """data in chunked transfer coding, chunk sizes cycling through sizes."""
    out = []
    i = 0
    k = 0
    while i < len(data):
        n = sizes[k % len(sizes)]
        k += 1
        piece = data[i:i + n]
        out.append(b"%x\r\n" % len(piece) + piece + b"\r\n")
        i += n
    out.append(b"0\r\n\r\n")
    return b"".join(out)


def http_call(addr, method, target, host=None, headers=(), body=None, timeout=10.0):
    """One request on a fresh http.client connection; (HttpResponse, conn closed?)."""
    import http.client
    h, p = addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(h, int(p), timeout=timeout)
    try:
        conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        if host is not None:
            conn.putheader("Host", host)
        for k, v in headers:
            conn.putheader(k, v)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        r = conn.getresponse()
        data = r.read()
        return HttpResponse("HTTP/%d.%d" % divmod(r.version, 10), r.status, r.reason, r.getheaders(), data, b"")
    finally:
        conn.close()
