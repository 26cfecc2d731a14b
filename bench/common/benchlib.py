# SPDX-License-Identifier: Apache-2.0
"""What the benchmark drivers bench/compare/run and bench/http/run share: the processes they start
(all killed on exit, however a script ends), loopback ports, waiting, CPU ticks from /proc, the
load generator's run (its CPU from wait4), `scale0 status` and `scale0 broker`, apt-get, the
figures' formats and the report's header. The drivers find this file by their own path
(bench/common/, beside bench/compare/ and bench/http/)."""

import atexit
import datetime
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLK_TCK = os.sysconf("SC_CLK_TCK")

# ---------------------------------------------------------------------------------------------
# processes: everything started is killed on exit, however the script ends


class Procs:
    """The server-side processes of a run, each in a session of its own with its output in a log
    in LOGDIR, and the load generator running now (client), if any.

    sigint: name prefixes stopped with SIGINT (every other process with SIGTERM); clean: the exit
    statuses of a clean stop; not_ours: name prefixes whose exit status is not looked at;
    kill_group: a process still there 3 s after the signal is killed with its process group (its
    children) rather than alone."""

    def __init__(self, logdir, sigint=(), clean=(0, -signal.SIGTERM), not_ours=(), kill_group=False):
        self.logdir = logdir
        self.procs = []  # (name, Popen, logfile)
        self.started = 0
        self.client = None  # the load generator running now, if any
        self.sigint = tuple(sigint)
        self.clean = tuple(clean)
        self.not_ours = tuple(not_ours)
        self.kill_group = kill_group

    def start(self, name, argv, cwd=None):
        self.started += 1
        log = os.path.join(self.logdir, f"{name}-{self.started}.log")
        f = open(log, "wb")
        p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True, cwd=cwd)
        f.close()
        self.procs.append((name, p, log))
        return p, log

    def stop(self, procs=None):
        """Stops PROCS (default: all); returns (name, status, log) of those that did not stop
        cleanly (a crash, a sanitizer report, a hang killed after 3 s): worth a look."""
        targets = self.procs if procs is None else [t for t in self.procs if t[1] in procs]
        for name, p, _ in targets:
            if p.poll() is None:
                try:
                    p.send_signal(signal.SIGINT if name.startswith(self.sigint) else signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 3
        for _, p, _ in targets:
            try:
                p.wait(timeout=max(0.05, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                if self.kill_group:
                    try:
                        os.killpg(p.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                else:
                    p.kill()
                p.wait()
        self.procs = [t for t in self.procs if t not in targets]
        return [(name, p.returncode, log) for name, p, log in targets
                if p.returncode not in self.clean and not name.startswith(self.not_ours)]

    def stop_since(self, first):
        """Stops the processes started since there were FIRST; returns the tails of their logs."""
        started = [p for _, p, _ in self.procs[first:]]
        logs = "\n".join(f"  {name}:\n{tail(log)}" for name, _, log in self.procs[first:])
        self.stop(started)
        return logs

    def check_alive(self, procs):
        for name, p, log in self.procs:
            if p in procs and p.poll() is not None:
                raise ServerDied(f"{name} exited with {p.returncode}", tail(log))

    def cleanup(self, *_):
        if self.client is not None and self.client.returncode is None:
            try:
                self.client.kill()
            except ProcessLookupError:
                pass
        self.stop()

    def install_cleanup(self):
        """Everything is stopped at exit, and on SIGTERM, SIGINT, SIGHUP (exit 128 + signal)."""
        atexit.register(self.cleanup)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, _frame):
        self.cleanup()
        sys.exit(128 + signum)


class ServerDied(RuntimeError):
    def __init__(self, what, log):
        super().__init__(f"{what}:\n{log}")
        self.what = what


def report_exits(bad, notes, prog):
    """Notes (and prints) the processes of Procs.stop() that did not stop cleanly."""
    for name, code, log in bad:
        notes.append(f"{name} ended with status {code} when stopped")
        print(f"{prog}: warning: {name} ended with status {code} when stopped:\n{tail(log)}",
              flush=True)


def tail(path, n=15):
    try:
        with open(path, "rb") as f:
            lines = f.read().decode(errors="replace").splitlines()
        return "\n".join("    " + line for line in lines[-n:])
    except OSError:
        return "    (no log)"


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred, timeout, what, procs=()):
    """Polls PRED until true; RuntimeError after TIMEOUT s, or as soon as one of PROCS exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(f"{what}: a process exited with {p.returncode}")
        time.sleep(0.02)
    raise RuntimeError(f"timed out waiting for {what}")


def port_open(port):
    def pred():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            return False

    return pred


def proc_stat(pid):
    """The fields of /proc/PID/stat after the command name (field 3 on), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def cpu_ticks(pid):
    try:
        st = proc_stat(pid)
        return int(st[11]) + int(st[12])  # utime, stime (fields 14, 15 of stat)
    except (TypeError, IndexError, ValueError):
        return 0


def wait_client(client, t0, limit):
    """Waits for the load generator CLIENT, started at time.monotonic() T0, and kills it once
    LIMIT seconds have passed; returns (wait status, rusage, timed out)."""
    timed_out = False
    while True:
        pid, status, usage = os.wait4(client.pid, os.WNOHANG)
        if pid == client.pid:
            break
        if time.monotonic() - t0 > limit:
            timed_out = True
            client.kill()
            _, status, usage = os.wait4(client.pid, 0)
            break
        time.sleep(0.01)
    return status, usage, timed_out


# ---------------------------------------------------------------------------------------------
# scale0: the binary, its status, its broker


def resolve_binaries(args):
    """args.scale0 made absolute (default BUILD_DIR/apps/scale0/scale0); args.bin(NAME): the
    program NAME of --bin-dir (default BUILD_DIR/bench)."""
    args.scale0 = os.path.abspath(args.scale0 or os.path.join(args.build_dir, "apps", "scale0",
                                                              "scale0"))
    bin_dir = os.path.abspath(args.bin_dir or os.path.join(args.build_dir, "bench"))
    args.bin = lambda name: os.path.join(bin_dir, name)


def build_release(prog):
    """cmake --preset release && cmake --build --preset release in ROOT; False when one fails."""
    print(f"{prog}: building release (cmake --preset release && cmake --build --preset release)",
          flush=True)
    for cmd in (["cmake", "--preset", "release"], ["cmake", "--build", "--preset", "release"]):
        r = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL if cmd[1] == "--preset" else None)
        if r.returncode != 0:
            print(f"{prog}: {' '.join(cmd)} failed", file=sys.stderr)
            return False
    return True


def executables_present(prog, exes):
    """False (and a message) when one of EXES is not an executable."""
    for exe in exes:
        if not os.access(exe, os.X_OK):
            print(f"{prog}: missing {exe} (build first, or give --build-dir / --scale0 / --bin-dir)",
                  file=sys.stderr)
            return False
    return True


def scale0_has(scale0, command, flag):
    """`scale0 COMMAND --help` succeeds and lists FLAG: this build has the command."""
    try:
        r = subprocess.run([scale0, command, "--help"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0 and flag in r.stdout


def scale0_status(scale0, frontend, status_args=()):
    """`scale0 status --json` of the broker at FRONTEND, parsed; None when it does not answer."""
    try:
        r = subprocess.run([scale0, "status", "--json", "--broker", frontend, "--timeout",
                            "500"] + list(status_args), capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        return None
    if r.returncode != 0:
        return None
    try:
        return json.loads(r.stdout)
    except ValueError:
        return None


def scale0_workers_ready(scale0, frontend, service, n, status_args=()):
    def pred():
        status = scale0_status(scale0, frontend, status_args)
        if status is None:
            return False
        services = status.get("services", [])
        return any(s.get("name") == service and s.get("workers") == n for s in services)

    return pred


def start_scale0_broker(procs, scale0, name, extra=(), watch=False):
    """`scale0 broker` on three free loopback ports, started as NAME; waits until its frontend
    takes connections (watch: fails as soon as it exits). Returns (Popen, frontend, backend)."""
    fp, bp, hp = free_port(), free_port(), free_port()
    frontend, backend = f"tcp://127.0.0.1:{fp}", f"tcp://127.0.0.1:{bp}"
    broker, _ = procs.start(name, [
        scale0, "broker", "--frontend", frontend, "--backend", backend,
        "--heartbeat", f"tcp://127.0.0.1:{hp}", "--metrics-listen", "", "--peer-listen", "",
        "--log-level", "warn"] + list(extra))
    wait_for(port_open(fp), 10, "the scale0 broker", [broker] if watch else ())
    return broker, frontend, backend


# ---------------------------------------------------------------------------------------------
# the tools: found, or installed with apt-get (as root or with passwordless sudo)


def find_programs(names):
    """The paths of all the programs NAMES (PATH, /usr/sbin, /usr/bin), or None."""
    found = []
    for n in names:
        cands = [shutil.which(n), f"/usr/sbin/{n}", f"/usr/bin/{n}"]
        hit = next((c for c in cands if c and os.access(c, os.X_OK)), None)
        if hit is None:
            return None
        found.append(hit)
    return found


def apt_install(package, lookup):
    """apt-get install PACKAGE (again after apt-get update when it fails), quietly; returns what
    LOOKUP() finds after a step, or None."""
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "install", "-y", "-qq", package], ["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", package]):
        subprocess.run(sudo + cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        found = lookup()
        if found is not None:
            return found
    return None


# ---------------------------------------------------------------------------------------------
# summary and report


def med_range(values):
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "n": len(values)}


def fmt_rate(v):
    if v is None:
        return "–"
    if v >= 100000:
        return f"{v / 1000:.0f}k"
    if v >= 10000:
        return f"{v / 1000:.1f}k"
    return f"{v:.0f}"


def fmt_us(v):
    if v >= 10000:
        return f"{v / 1000:.1f} ms"
    if v >= 1000:
        return f"{v / 1000:.2f} ms"
    return f"{v:.0f} µs"


def fmt_ratio(v):
    return f"{v:.2f}×"


def fmt_mr(mr, fmt):
    if mr is None:
        return "–"
    if mr["n"] == 1:
        return fmt(mr["median"])
    return f"{fmt(mr['median'])} ({fmt(mr['min'])}–{fmt(mr['max'])})"


def git_commit():
    try:
        r = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                           text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return r.stdout.strip() + (" (with local changes)" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def run_meta(script):
    """The first fields of a report's meta: date, machine, commit and the command (SCRIPT, as
    bench/NAME/run, with this run's arguments)."""
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": f"{platform.node()}, {os.cpu_count()} cores, Linux {platform.release()}",
        "commit": git_commit(),
        "command": " ".join([script] + sys.argv[1:]),
    }


def meta_lines(meta):
    """The markdown list under a report's title: when, machine, commit, command, settings, notes."""
    return ([f"- when: {meta['date']}  \n- machine: {meta['machine']}  \n- commit: {meta['commit']}  ",
             f"- command: `{meta['command']}`  ",
             f"- settings: {meta['settings']}  "]
            + [f"- note: {note}  " for note in meta["notes"]]
            + [""])


def write_results(results_dir, stem, md, report):
    """RESULTS_DIR/STEM.md (the markdown MD) and STEM.json (REPORT)."""
    os.makedirs(results_dir, exist_ok=True)
    with open(os.path.join(results_dir, f"{stem}.md"), "w") as f:
        f.write(md + "\n")
    with open(os.path.join(results_dir, f"{stem}.json"), "w") as f:
        json.dump(report, f, indent=1)
        f.write("\n")
