# SPDX-License-Identifier: Apache-2.0
"""Processes for the fault-ledger chaos suite: a real `scale0 broker`, real `scale0 worker --exec`
processes, the per-request job script they run, and a network namespace with a veth pair.

Written from docs/protocol.md, docs/operations.md and docs/exec-worker.md only (black box).
Every process is started in its own process group and remembered; `kill_all()` (registered with
atexit) SIGKILLs each remembered group by its id, so a failing run leaves nothing behind.
"""

import atexit
import http.client
import os
import re
import select
import shutil
import signal
import subprocess
import threading
import time

BIN = os.environ.get("SCALE0_BIN") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                                   "..", "build", "dev", "apps", "scale0", "scale0")

_started = []          # every Proc ever started (each the leader of its own process group)
_cleanups = []         # extra cleanup callables (network namespace), run in reverse order


def now():
    return time.monotonic()


def kill_all():
    for p in list(_started):
        p.kill()
    while _cleanups:
        fn = _cleanups.pop()
        try:
            fn()
        except Exception as e:  # cleanup must go on
            print("cleanup error: %r" % (e,), flush=True)


atexit.register(kill_all)


class Proc:
    """A child process, leader of its own process group, stderr kept in a file."""

    def __init__(self, args, errpath, stdout=False):
        self.args = [str(a) for a in args]
        self.errpath = errpath
        self.errfile = open(errpath, "ab")
        self.p = subprocess.Popen(self.args, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE if stdout else subprocess.DEVNULL,
                                  stderr=self.errfile, start_new_session=True)
        self.pid = self.p.pid
        _started.append(self)

    def alive(self):
        return self.p.poll() is None

    def signal(self, sig):
        """Signal the process itself (not its group): SIGSTOP/SIGCONT/SIGTERM/SIGKILL."""
        if self.p.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def wait(self, timeout):
        try:
            return self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self):
        """SIGKILL the whole group we created (also wakes a stopped process) and reap."""
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        if self.p.stdout:
            try:
                self.p.stdout.close()
            except Exception:
                pass
        try:
            self.errfile.close()
        except Exception:
            pass
        if self in _started:
            _started.remove(self)

    def rss_kib(self):
        try:
            with open("/proc/%d/status" % self.pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return None

    def stderr_tail(self, n=4000):
        try:
            with open(self.errpath, "rb") as f:
                return f.read()[-n:].decode("utf-8", "replace")
        except OSError:
            return ""


READY = re.compile(r"^ready frontend=(\S+) backend=(\S+) heartbeat=(\S+)(?: peer=\S+)?(?: metrics=(\S+))?")


class Broker:
    """`scale0 broker` with ports chosen by the system on first start ('*'), the same ports on restart."""

    def __init__(self, workdir, name="broker", heartbeat_interval=250, liveness=3, frontend_host="127.0.0.1",
                 backend_host="127.0.0.1", extra=()):
        self.workdir = workdir
        self.name = name
        self.heartbeat_interval = heartbeat_interval
        self.liveness = liveness
        self.fh, self.bh = frontend_host, backend_host
        self.extra = [str(x) for x in extra]
        self.frontend = self.backend = self.heartbeat = self.metrics = None
        self.proc = None
        self.starts = 0

    def _args(self):
        fe = self.frontend or "tcp://%s:*" % self.fh
        be = self.backend or "tcp://%s:*" % self.bh
        hb = self.heartbeat or "tcp://%s:*" % self.bh
        me = self.metrics or "127.0.0.1:0"
        return [BIN, "broker", "--frontend", fe, "--backend", be, "--heartbeat", hb, "--metrics-listen", me,
                "--peer-listen", "tcp://127.0.0.1:*",  # never the default 5558 (docs/family.md)
                "--heartbeat-interval", self.heartbeat_interval, "--liveness", self.liveness,
                "--log-level", "info"] + self.extra + self._insecure()

    def _insecure(self):
        """A host other than loopback is a veth address in the partition phase's own network
        namespace pair: protected mode would refuse it without CURVE (not what this suite tests)."""
        local = ("127.0.0.1", "localhost", "::1", "[::1]")
        return [] if self.fh in local and self.bh in local else ["--insecure"]

    def start(self, timeout=10.0):
        """Start (or restart on the ports of the first start). Returns when the ready line is printed."""
        self.starts += 1
        args = self._args()
        deadline = now() + timeout
        while True:
            proc = Proc(args, os.path.join(self.workdir, "%s.stderr" % self.name), stdout=True)
            line = self._ready_line(proc, deadline)
            if line:
                break
            proc.kill()
            # a restart on the same ports may race the old sockets' release: retry within the deadline
            if self.frontend is None or now() > deadline:
                raise RuntimeError("broker did not start: %s\n%s" % (" ".join(map(str, args)), proc.stderr_tail()))
            time.sleep(0.1)
        m = READY.match(line)
        if not m:
            proc.kill()
            raise RuntimeError("unexpected ready line %r" % line)
        self.frontend, self.backend, self.heartbeat, self.metrics = m.groups()
        self.proc = proc
        threading.Thread(target=self._drain_stdout, args=(proc,), daemon=True).start()
        return self

    @staticmethod
    def _ready_line(proc, deadline):
        fd = proc.p.stdout.fileno()
        buf = b""
        while now() < deadline:
            r, _, _ = select.select([fd], [], [], 0.05)
            if r:
                chunk = os.read(fd, 4096)
                if not chunk:
                    return None
                buf += chunk
                if b"\n" in buf:
                    return buf.split(b"\n", 1)[0].decode("utf-8", "replace")
            elif proc.p.poll() is not None:
                return None
        return None

    @staticmethod
    def _drain_stdout(proc):
        try:
            while proc.p.stdout.read(4096):
                pass
        except Exception:
            pass

    @property
    def pid(self):
        return self.proc.pid

    def kill9(self):
        """SIGKILL the broker and reap it; returns the time the process was gone."""
        self.proc.signal(signal.SIGKILL)
        self.proc.wait(10)
        t = now()
        self.proc.kill()
        return t

    def stop(self):
        if self.proc:
            self.proc.kill()

    # ---- observation over HTTP (metrics listener) ----
    def http_get(self, path, timeout=1.0):
        host, port = self.metrics.rsplit(":", 1)
        c = http.client.HTTPConnection(host, int(port), timeout=timeout)
        try:
            c.request("GET", path)
            r = c.getresponse()
            return r.status, r.read().decode("utf-8", "replace")
        finally:
            c.close()

    def metric_values(self, timeout=1.0):
        """{'name{labels}': value} from /metrics; {} when it does not answer."""
        try:
            status, text = self.http_get("/metrics", timeout)
        except Exception:
            return {}
        out = {}
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            try:
                k, v = line.rsplit(" ", 1)
                out[k] = float(v)
            except ValueError:
                pass
        return out

    def workers(self, service, m=None):
        m = self.metric_values() if m is None else m
        v = m.get('scale0_workers{service="%s"}' % service)
        return None if v is None else int(v)


# The job every exec worker runs: argv = LOG NAME; stdin = the request body, whose first line is the
# request's token ending in '-<seconds to sleep>'. It appends "<token> <worker name>" to the worker's own
# execution log *before* doing the work (an execution that started counts, even if the worker is then
# killed), sleeps, and answers the token. Only shell builtins and /bin/sleep: cheap enough to fork
# ~150 times a second on a shared 2-core machine.
JOB_SH = r"""IFS= read -r tok || true
printf '%s %s\n' "$tok" "$2" >> "$1"
sleep "${tok##*-}"
printf '%s' "$tok"
"""


def asan_instrumented():
    """Whether the binary is built with AddressSanitizer (its runtime's strings are in it or it links libasan)."""
    import mmap
    try:
        with open(BIN, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            return m.find(b"AddressSanitizer") >= 0 or m.find(b"libasan.so") >= 0
    except (OSError, ValueError):
        return False


def write_job_script(workdir):
    path = os.path.join(workdir, "job.sh")
    with open(path, "w") as f:
        f.write(JOB_SH)
    return path


class Worker:
    """`scale0 worker --exec` (the C++ worker library) serving one service, with its own execution log.
    batches=False starts it with `--no-batches`."""

    def __init__(self, workdir, broker_ep, name, service, idempotent, concurrency=3, netns=None, batches=True):
        self.name = name
        self.service = service
        self.idempotent = idempotent
        self.log = os.path.join(workdir, "exec-%s.log" % name)
        job = os.path.join(workdir, "job.sh")
        args = [BIN, "worker", "--broker", broker_ep, "--service", service, "--name", name,
                "--concurrency", concurrency, "--exec", "/bin/sh %s %s %s" % (job, self.log, name),
                "--exec-timeout", 10000]
        if idempotent:
            args.append("--idempotent")
        if not batches:
            args.append("--no-batches")    # one message per request and reply (docs/protocol.md, "Batches")
        if netns:
            args = ["ip", "netns", "exec", netns] + args   # ip execs the worker itself: same pid
        self.proc = Proc(args, os.path.join(workdir, "worker-%s.stderr" % name))

    def signal(self, sig):
        self.proc.signal(sig)

    def alive(self):
        return self.proc.alive()

    def kill(self):
        self.proc.kill()


def read_exec_logs(workdir):
    """{token: [worker name, ...]} over every execution log of the directory."""
    seen = {}
    for fn in sorted(os.listdir(workdir)):
        if not (fn.startswith("exec-") and fn.endswith(".log")):
            continue
        with open(os.path.join(workdir, fn), "rb") as f:
            for line in f.read().decode("utf-8", "replace").splitlines():
                parts = line.rsplit(" ", 1)
                if len(parts) == 2:
                    seen.setdefault(parts[0], []).append(parts[1])
    return seen


# ---------------------------------------------------------------------------------------------
# Network namespace with a veth pair, for the silent partition.
# Address range owned by this suite: 10.203.0.0/16. Each run takes one /30 of it, derived from its
# pid, and refuses to start if any address of that /30 is already configured on the host.
# ---------------------------------------------------------------------------------------------
def _ip(*args, check=True):
    r = subprocess.run(["ip"] + [str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=10)
    if check and r.returncode != 0:
        raise RuntimeError("ip %s: %s" % (" ".join(map(str, args)), r.stderr.decode().strip()))
    return r


class Netns:
    """A namespace with one veth pair: `host_if` (host_addr) in the root namespace, `ns_if` (ns_addr) inside."""

    def __init__(self):
        pid = os.getpid()
        self.name = "s0chaos%d" % pid
        self.host_if = "s0c%dh" % (pid % 10**7)
        self.ns_if = "s0c%dn" % (pid % 10**7)
        a, b = (pid >> 6) & 255, (pid & 63) * 4
        self.net = "10.203.%d.%d/30" % (a, b)
        self.host_addr = "10.203.%d.%d" % (a, b + 1)
        self.ns_addr = "10.203.%d.%d" % (a, b + 2)
        self.created = False
        self.route = False

    @staticmethod
    def unavailable():
        """Why the partition cannot run here, or None."""
        if os.geteuid() != 0:
            return "not root (network namespaces need CAP_NET_ADMIN)"
        if not shutil.which("ip"):
            return "iproute2 'ip' not found"
        return None

    def setup(self):
        used = _ip("-o", "addr", "show").stdout.decode() + _ip("-o", "route", "show").stdout.decode()
        base = self.net.split("/")[0].rsplit(".", 1)
        mine = ["%s.%d" % (base[0], int(base[1]) + i) for i in range(4)]
        if any(re.search(r"(?<![\d.])%s(?![\d])" % re.escape(a), used) for a in mine):
            raise RuntimeError("address range %s already in use on this host" % self.net)
        _cleanups.append(self.teardown)
        _ip("netns", "add", self.name)
        self.created = True
        _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if, "netns", self.name)
        _ip("addr", "add", self.host_addr + "/30", "dev", self.host_if)
        _ip("link", "set", self.host_if, "up")
        _ip("-n", self.name, "addr", "add", self.ns_addr + "/30", "dev", self.ns_if)
        _ip("-n", self.name, "link", "set", self.ns_if, "up")
        _ip("-n", self.name, "link", "set", "lo", "up")
        # While the link is down, its connected route is gone and packets to the namespace would follow
        # the default route off this machine: a blackhole route (used only then, higher metric) keeps
        # them here. It drops silently: nothing is sent back to the broker either way.
        _ip("route", "add", "blackhole", self.net, "metric", 4242)
        self.route = True

    def link_down(self):
        _ip("link", "set", self.host_if, "down")

    def teardown(self):
        if self.route:
            _ip("route", "del", "blackhole", self.net, "metric", 4242, check=False)
            self.route = False
        if self.created:
            _ip("link", "del", self.host_if, check=False)   # deletes the pair
            _ip("netns", "del", self.name, check=False)
            self.created = False
