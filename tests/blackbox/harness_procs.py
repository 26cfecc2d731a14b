# SPDX-License-Identifier: Apache-2.0
"""Black-box harness, processes: where the scale0 binary is (BIN, from $SCALE0_BIN or this
checkout's dev build), HERE, PYTHON and VERBOSE; the one list of every child process still
running (killed at exit); free_port()/ep(); Proc (a subprocess with its stderr in a temp file);
Broker (a `scale0 broker` and its ready line), Scale0Worker (a `scale0 worker`), first_line() and
run_cli() for the CLI's one-shot commands.
"""

import atexit
import os
import re
import select
import signal
import socket
import subprocess
import tempfile
import threading

from harness_wire import now


HERE = os.path.dirname(os.path.abspath(__file__))
# CTest passes the binary it built ($<TARGET_FILE:scale0_cli>); by hand, the dev build of this
# checkout.
BIN = os.environ.get("SCALE0_BIN") or os.path.join(HERE, "..", "..", "build", "dev", "apps", "scale0",
                                                   "scale0")
PYTHON = "/usr/bin/python3"
VERBOSE = os.environ.get("SCALE0_TEST_VERBOSE", "") not in ("", "0")


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
        m, self.ready_line = await_ready(proc, "broker", READY_RE, self.args(), timeout)
        self.ready_endpoints = tuple(x.decode() for x in m.groups()[:3])
        self.ready_peer = m.group(4).decode() if m.group(4) else None
        self.metrics = m.group(5).decode() if m.group(5) else None

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


def read_ready_line(proc, timeout=15.0):
    """The first line a Proc started with capture_stdout=True prints (a server's ready line):
    (line without its newline, what came after it), or (None, what came) when the process ends
    or the time is up first."""
    fd = proc.p.stdout.fileno()
    buf = b""
    deadline = now() + timeout
    while now() < deadline:
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            chunk = os.read(fd, 4096)
            if not chunk:
                break  # EOF: exited
            buf += chunk
            if b"\n" in buf:
                line, rest = buf.split(b"\n", 1)
                return line, rest
        elif proc.poll() is not None:
            break
    return None, buf


def drain_stdout(proc):
    """Reads and drops what `proc` prints after its ready line (so a full pipe never blocks it),
    on a daemon thread; returns the thread."""
    def drain(stream=proc.p.stdout):
        try:
            while stream.read(4096):
                pass
        except Exception:
            pass

    t = threading.Thread(target=drain, daemon=True)
    t.start()
    return t


def await_ready(proc, what, ready_re, args, timeout=15.0, expected=""):
    """The match of `ready_re` against the ready line of a server just started (a Proc with
    capture_stdout=True), its stdout drained from then on. Kills the process and raises
    BrokerStartError (with its exit status, output and stderr) when no line comes in time or the
    line does not match. Returns (match, line as text)."""
    line, buf = read_ready_line(proc, timeout)
    if line is None:
        rc = proc.poll()
        err = proc.stderr_text()
        proc.kill()
        raise BrokerStartError("%s did not print its ready line (rc=%r, args=%r)\nstdout=%r\nstderr:\n%s"
                               % (what, rc, args, buf, err))
    m = ready_re.match(line)
    if not m:
        proc.kill()
        raise BrokerStartError("unexpected %s ready line %r%s" % (what, line, expected))
    drain_stdout(proc)
    return m, line.decode("utf-8", "replace")


def first_line(proc, timeout=15.0):
    """The ready line, or whatever came before the process ended or the time was up."""
    line, rest = read_ready_line(proc, timeout)
    return rest if line is None else line


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
