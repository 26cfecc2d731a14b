# SPDX-License-Identifier: Apache-2.0
"""A family of brokers across network namespaces (docs/family.md), against the real binary. Root only.

Each broker runs in a network namespace of its own, joined to the others by a veth pair to a bridge
that lives in one more namespace (the "switch"): nothing is added to the machine's own namespace.
Addresses come from 10.213.0.0/24, the range this file owns (the bridge has none; A is .2, B .3,
C .4). Servers listen only inside those namespaces: on their address, on 127.0.0.1, or on a
wildcard, which there covers nothing else. Every
broker uses the same ports (5555 frontend, 5556 backend, 5557 heartbeat, 5558 peer) on its own
address, and `--insecure` (a non-loopback peer port has no CURVE yet: docs/family.md, Security).

  1. A peer name that resolves to several addresses: A's namespace has a hosts file
     (/etc/netns/<ns>/hosts, which `ip netns exec` bind-mounts over /etc/hosts) mapping
     brokers.scale0.test to B's and C's addresses; A is started with
     `--peer tcp://brokers.scale0.test:5558` and nothing else. B and C bind wildcards and give
     `--advertise-*`. A's `scale0 status --json` (run in A's namespace) shows the name resolved to
     both addresses and B and C alive; B and C see A and each other (gossip); a request at A for a
     service only a worker on C serves is answered through A (forwarding).
  2. A silent partition: A (no workers), B and C each with a plain and an idempotent worker
     (`scale0 worker --echo --delay 300`) in their own namespaces; an S0/2 client written here from
     docs/protocol.md runs in A's namespace and sends steadily (one request every 25 ms, services
     alternating, deadline 1 s each), keeping a ledger by request id. C's port on the bridge is set
     down (no FIN, no RST: netem is not used). A must show C lost within liveness x interval + 1 s,
     every request sent after that is answered 200 by B, every request answers exactly once (what C
     held: 502 "peer broker lost while holding the request", a re-dispatch via B for the idempotent
     service, or 504 at its deadline), and after the link is set up again A and C see each other
     alive within 5 s. Last (so that the ledger is checked whatever happens), A must send C work
     again within 12 s of seeing it alive (a peer blocked by a refused forward waits for its next
     STATE, and a full STATE goes every 10 s). The requests A had forwarded into the partition that
     reach C once it heals are counted and printed (not asserted).
  3. (with 1) The name is resolved again: A starts with the name on B only; the hosts file is
     rewritten to name C only; at the next resolution (30 s) A links to C, its configured endpoints
     are C's, and B stays alive but no longer configured.

Rules kept: root and iproute2 or the tests are skipped (with the reason); a lock file serialises
runs; leftovers of a crashed run (our namespace names, our hosts directory) are removed first; a
range already used anywhere on the machine skips the tests; namespaces (with their links and the
bridge), processes and hosts files are removed at the end, whatever happens (also at exit and on
SIGTERM). Every wait is bounded; the file takes about 45 s (30 s of it waiting for test 3's
re-resolution; up to 12 s more when C is not used again after the heal).

The client runs as `ip netns exec <A> /usr/bin/python3 <this file> --netns-client ...` and reports
its ledger as JSON lines (times are CLOCK_MONOTONIC, shared by every process of the machine).
"""

import atexit
import errno
import fcntl
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import unittest

import zmq

from harness import (BIN, binary_available, drain_stdout, now, peers_of, Proc, PYTHON, read_ready_line, VERBOSE,
                     wait_until)
# ------------------------------------------------------------------------------------------------
# The network this file owns
# ------------------------------------------------------------------------------------------------
PREFIX = "10.213.0."
NET = PREFIX + "0/24"
NS_SWITCH = "s0nt-br"
BRIDGE = "s0nt-br0"
NODES = {"a": PREFIX + "2", "b": PREFIX + "3", "c": PREFIX + "4"}
NS = {k: "s0nt-" + k for k in NODES}                 # namespace of each broker
PORT_IF = {k: "s0nt-p" + k for k in NODES}            # its veth end on the bridge (switch namespace)
NS_IF = "s0nt0"                                       # its veth end inside its own namespace
ALL_NS = [NS_SWITCH] + [NS[k] for k in sorted(NODES)]
NETNS_ETC = "/etc/netns"
LOCK_FILE = "/run/lock/scale0-netns-tests.lock"
NAME = "brokers.scale0.test"

FRONT, BACK, HBEAT, PEER = 5555, 5556, 5557, 5558
HB_MS = 200
LIVENESS = 3
LOSS_BOUND_S = LIVENESS * HB_MS / 1000.0 + 1.0        # 0.6 s + 1 s
LOST_MSG = "peer broker lost while holding the request"
WORKER_DELAY_MS = 300
DEADLINE_MS = 1000
SEND_EVERY_MS = 25
HEAL_BOUND_S = 5.0      # "within a few seconds": reconnecting after a silent partition (ARP, SYNs)


def ep(node, port):
    return "tcp://%s:%d" % (NODES[node], port)


# ------------------------------------------------------------------------------------------------
# ip(8)
# ------------------------------------------------------------------------------------------------
def ip(*args, check=True, timeout=10):
    r = subprocess.run(["ip"] + [str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError("ip %s: %s" % (" ".join(map(str, args)), r.stderr.decode().strip()))
    return r


def netns_list():
    r = ip("netns", "list", check=False)
    return [line.split()[0] for line in r.stdout.decode().splitlines() if line.strip()]


def netns_pids(ns):
    r = ip("netns", "pids", ns, check=False)
    return [int(x) for x in r.stdout.decode().split() if x.isdigit()]


def unavailable():
    """Why these tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces need CAP_SYS_ADMIN and CAP_NET_ADMIN)"
    if not shutil.which("ip"):
        return "iproute2 'ip' not found"
    if not binary_available():
        return "scale0 binary not found at %s (set SCALE0_BIN)" % BIN
    return None


def range_users():
    """Where 10.213.0.0/24 is already used on this machine (addresses or routes, the machine's
    namespace and every named one but ours); [] if nowhere."""
    pat = re.compile(r"(?<![\d.])10\.213\.0\.\d+")
    found = []
    places = [(None, "the machine's namespace")] + [(n, "namespace %s" % n) for n in netns_list() if n not in ALL_NS]
    for ns, where in places:
        pre = ["-n", ns] if ns else []
        for what in (("-o", "addr", "show"), ("route", "show", "table", "all")):
            out = ip(*(pre + list(what)), check=False).stdout.decode()
            for line in out.splitlines():
                if pat.search(line):
                    found.append("%s: %s" % (where, line.strip()[:160]))
    return found


# ------------------------------------------------------------------------------------------------
# The topology: namespaces, veth pairs, bridge, hosts files. Module-wide, removed at exit too.
# ------------------------------------------------------------------------------------------------
class Topology:
    def __init__(self):
        self.procs = []          # Proc objects started in our namespaces
        self.made_etc_netns = False
        self.hosts_dirs = []

    @staticmethod
    def remove_leftovers():
        """Our namespace names and hosts directories, from this or a crashed earlier run."""
        names = set(netns_list())
        for ns in ALL_NS:
            if ns in names:
                for pid in netns_pids(ns):   # processes inside our namespaces are ours
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        deadline = now() + 5
        for ns in ALL_NS:
            if ns in names:
                while netns_pids(ns) and now() < deadline:
                    time.sleep(0.05)
                ip("netns", "del", ns, check=False)
        for ns in ALL_NS:
            d = os.path.join(NETNS_ETC, ns)
            if os.path.isdir(d):
                shutil.rmtree(d, ignore_errors=True)
                try:
                    os.rmdir(NETNS_ETC)     # only if empty: a crashed run may have made it
                except OSError:
                    pass

    def build(self, hosts=None):
        """hosts: {namespace key: text of its /etc/hosts}."""
        ip("netns", "add", NS_SWITCH)
        ip("-n", NS_SWITCH, "link", "set", "lo", "up")
        ip("-n", NS_SWITCH, "link", "add", BRIDGE, "type", "bridge")
        ip("-n", NS_SWITCH, "link", "set", BRIDGE, "up")
        for k, addr in sorted(NODES.items()):
            ns = NS[k]
            ip("netns", "add", ns)
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", NS_SWITCH, "link", "add", PORT_IF[k], "type", "veth", "peer", "name", NS_IF, "netns", ns)
            ip("-n", NS_SWITCH, "link", "set", PORT_IF[k], "master", BRIDGE)
            ip("-n", NS_SWITCH, "link", "set", PORT_IF[k], "up")
            ip("-n", ns, "addr", "add", addr + "/24", "dev", NS_IF)
            ip("-n", ns, "link", "set", NS_IF, "up")
        for k, text in (hosts or {}).items():
            if not os.path.isdir(NETNS_ETC):
                os.makedirs(NETNS_ETC)
                self.made_etc_netns = True
            d = os.path.join(NETNS_ETC, NS[k])
            os.makedirs(d, exist_ok=True)
            self.hosts_dirs.append(d)
            with open(os.path.join(d, "hosts"), "w") as f:
                f.write(text)

    def start(self, node, args, capture_stdout=False, stdin=None):
        """A process in node's namespace (`ip netns exec` execs it: same pid)."""
        p = Proc(["ip", "netns", "exec", NS[node]] + [str(a) for a in args], capture_stdout=capture_stdout,
                 stdin=stdin)
        self.procs.append(p)
        return p

    def run(self, node, args, timeout=10.0):
        """Runs a command in node's namespace to completion: CompletedProcess (bytes)."""
        cmd = ["ip", "netns", "exec", NS[node]] + [str(a) for a in args]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                             start_new_session=True)
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate(timeout=5)
            raise AssertionError("%r did not finish within %.1f s; stderr=%r" % (cmd, timeout, err[-2000:]))
        return subprocess.CompletedProcess(cmd, p.returncode, out, err)

    def link(self, node, up):
        ip("-n", NS_SWITCH, "link", "set", PORT_IF[node], "up" if up else "down")

    def kill_procs(self):
        procs, self.procs = self.procs, []
        for p in procs:
            p.kill()
        for p in procs:
            p.cleanup()

    def teardown(self):
        self.kill_procs()
        for ns in ALL_NS:
            for pid in netns_pids(ns):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for ns in reversed(ALL_NS):
            ip("netns", "del", ns, check=False)      # its links go with it: veth pairs, the bridge
        for d in self.hosts_dirs:
            shutil.rmtree(d, ignore_errors=True)
        self.hosts_dirs = []
        if self.made_etc_netns:
            try:
                os.rmdir(NETNS_ETC)
            except OSError:
                pass
            self.made_etc_netns = False


_lock_fd = None
_topology = None
_why_not = None


def _teardown_all():
    global _topology
    if _topology is not None:
        try:
            _topology.teardown()
        finally:
            _topology = None
    else:
        # a topology half-built before an exception
        if _lock_fd is not None:
            Topology.remove_leftovers()


def _on_sigterm(signum, frame):
    _teardown_all()
    raise SystemExit(128 + signum)


def acquire_lock(timeout=45.0):
    """One run at a time on this machine (the names and the range are fixed)."""
    global _lock_fd
    os.makedirs(os.path.dirname(LOCK_FILE), exist_ok=True)
    fd = os.open(LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = now() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            _lock_fd = fd
            return None
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                os.close(fd)
                return "cannot lock %s: %s" % (LOCK_FILE, e)
        if now() > deadline:
            os.close(fd)
            return "another run holds %s for more than %.0f s" % (LOCK_FILE, timeout)
        time.sleep(0.2)


def release_lock():
    global _lock_fd
    if _lock_fd is not None:
        try:
            fcntl.flock(_lock_fd, fcntl.LOCK_UN)
            os.close(_lock_fd)
        finally:
            _lock_fd = None


_old_sigterm = None


def setUpModule():
    global _why_not, _old_sigterm
    _why_not = unavailable()
    if _why_not:
        return
    _why_not = acquire_lock()
    if _why_not:
        return
    atexit.register(_teardown_all)
    _old_sigterm = signal.signal(signal.SIGTERM, _on_sigterm)
    Topology.remove_leftovers()
    used = range_users()
    if used:
        _why_not = "address range %s already in use on this machine: %s" % (NET, "; ".join(used[:3]))
        return
    # can this machine make namespaces and bridges at all?
    try:
        ip("netns", "add", NS_SWITCH)
        ip("-n", NS_SWITCH, "link", "add", BRIDGE, "type", "bridge")
    except Exception as e:
        _why_not = "cannot create a network namespace with a bridge here: %s" % e
    finally:
        Topology.remove_leftovers()


def tearDownModule():
    _teardown_all()
    if _old_sigterm is not None:
        signal.signal(signal.SIGTERM, _old_sigterm)
    release_lock()


# ------------------------------------------------------------------------------------------------
# Brokers and workers in namespaces
# ------------------------------------------------------------------------------------------------
READY_RE = re.compile(rb"^ready frontend=(\S+) backend=(\S+) heartbeat=(\S+)(?: peer=(\S+))?(?: metrics=(\S+))?\s*$")


class NsBroker:
    def __init__(self, topo, node, wildcard=False, peers=(), extra=()):
        self.topo, self.node = topo, node
        host = "*" if wildcard else NODES[node]
        a = [BIN, "broker",
             "--frontend", "tcp://%s:%d" % (host, FRONT), "--backend", "tcp://%s:%d" % (host, BACK),
             "--heartbeat", "tcp://%s:%d" % (host, HBEAT), "--peer-listen", "tcp://%s:%d" % (host, PEER),
             "--metrics-listen", "127.0.0.1:9555", "--insecure",
             "--heartbeat-interval", HB_MS, "--liveness", LIVENESS, "--no-worker-timeout", 1000]
        if wildcard:
            a += ["--advertise-frontend", ep(node, FRONT), "--advertise-backend", ep(node, BACK),
                  "--advertise-peer", ep(node, PEER)]
        for p in peers:
            a += ["--peer", p]
        self.args = a + list(extra)
        self.proc = None
        self.ready_line = None

    @property
    def frontend(self):
        return ep(self.node, FRONT)

    @property
    def backend(self):
        return ep(self.node, BACK)

    @property
    def peer(self):
        return ep(self.node, PEER)

    def start(self, timeout=10.0):
        self.proc = self.topo.start(self.node, self.args, capture_stdout=True)
        line, buf = read_ready_line(self.proc, timeout)
        if line is None or not READY_RE.match(line):
            raise AssertionError("broker %s did not start (rc=%r, args=%r)\nstdout=%r\nstderr:\n%s"
                                 % (self.node.upper(), self.proc.poll(), self.args, line or buf,
                                    self.proc.stderr_text()))
        self.ready_line = line.decode()
        drain_stdout(self.proc)
        return self

    def alive(self):
        return self.proc is not None and self.proc.alive()

    def status(self, timeout_ms=1000):
        """`scale0 status --json`, run in this broker's namespace."""
        r = self.topo.run(self.node, [BIN, "status", "--broker", self.frontend, "--json",
                                      "--timeout", timeout_ms], timeout=timeout_ms / 1000.0 + 10)
        if r.returncode != 0:
            raise AssertionError("scale0 status of %s failed (rc %d): %r"
                                 % (self.node.upper(), r.returncode, r.stderr[-500:]))
        return json.loads(r.stdout.decode())

    def stderr_text(self):
        return self.proc.stderr_text() if self.proc else ""






class NetnsCase(unittest.TestCase):
    hosts = None   # {node: hosts file text}

    def setUp(self):
        if _why_not:
            self.skipTest(_why_not)
        global _topology
        Topology.remove_leftovers()
        _topology = self.topo = Topology()
        self.addCleanup(self._teardown)
        t0 = now()
        self.topo.build(self.hosts)
        self.brokers = {}
        if VERBOSE:
            print("\n  topology built in %.2f s" % (now() - t0))

    def _teardown(self):
        global _topology
        failed = self._failed()
        for k, b in sorted(self.brokers.items()):
            if failed or VERBOSE:
                text = b.stderr_text()
                if text:
                    sys.stderr.write("\n----- broker %s stderr (%s) -----\n%s\n-----\n"
                                     % (k.upper(), self.id(), text[-5000:]))
        self.topo.teardown()
        _topology = None
        left = [ns for ns in netns_list() if ns in ALL_NS]
        self.assertEqual(left, [], "namespaces left behind")

    def _failed(self):
        outcome = getattr(self, "_outcome", None)
        result = getattr(outcome, "result", None)
        try:
            return any(t is self for t, _ in list(result.failures) + list(result.errors))
        except Exception:
            return False

    def broker(self, node, **kw):
        b = NsBroker(self.topo, node, **kw)
        self.brokers[node] = b
        return b.start()

    def worker(self, broker, service, name, idempotent=False, delay=None, concurrency=8):
        a = [BIN, "worker", "--service", service, "--echo", "--name", name, "--concurrency", concurrency,
             "--broker", broker.backend]
        if idempotent:
            a.append("--idempotent")
        if delay:
            a += ["--delay", delay]
        return self.topo.start(broker.node, a)

    def wait_capacity(self, at, peer, service, idle=1, timeout=8.0):
        def seen():
            p = peers_of(at.status()).get(peer.peer)
            if not p or p["state"] != "alive":
                return None
            for s in p["services"]:
                if s["name"] == service and s["idle"] >= idle:
                    return s
            return None
        return wait_until("%s's capacity for %r (idle >= %d) seen on %s" % (peer.node.upper(), service, idle,
                                                                           at.node.upper()), seen, timeout)


# ------------------------------------------------------------------------------------------------
# 1. A peer name that resolves to several addresses (a hosts file in A's namespace)
# ------------------------------------------------------------------------------------------------
class NameWithSeveralAddressesTest(NetnsCase):
    hosts = {"a": "127.0.0.1 localhost\n::1 localhost\n%s %s\n%s %s\n"
                  % (NODES["b"], NAME, NODES["c"], NAME)}

    def setUp(self):
        super().setUp()
        # getaddrinfo reads /etc/hosts only if nsswitch says so
        try:
            with open("/etc/nsswitch.conf") as f:
                conf = f.read()
        except OSError as e:
            self.skipTest("cannot read /etc/nsswitch.conf: %s" % e)
        m = re.search(r"^\s*hosts\s*:(.*)$", conf, re.M)
        if not m or "files" not in m.group(1).split():
            self.skipTest("/etc/nsswitch.conf has no 'files' source for hosts: %r" % (m.group(0) if m else None))

    def test_peer_name_resolving_to_two_brokers(self):
        # The name resolves in A's namespace, through its hosts file, to exactly B and C...
        probe = ("import socket,sys\n"
                 "try:\n"
                 "  r = socket.getaddrinfo(sys.argv[1], %d, socket.AF_UNSPEC, socket.SOCK_STREAM)\n"
                 "  print(' '.join(sorted(set(a[4][0] for a in r))))\n"
                 "except socket.gaierror as e:\n"
                 "  print('ERROR', e)\n" % PEER)
        r = self.topo.run("a", [PYTHON, "-c", probe, NAME])
        self.assertEqual(r.stdout.decode().split(), sorted([NODES["b"], NODES["c"]]),
                         "getaddrinfo(%s) in A's namespace: %r" % (NAME, r))
        # ...and nowhere else (B's namespace has no such file): the answer is the hosts file's
        r = self.topo.run("b", [PYTHON, "-c", probe, NAME])
        self.assertTrue(r.stdout.decode().startswith("ERROR"),
                        "%s must not resolve without A's hosts file: %r" % (NAME, r.stdout))

        b = self.broker("b", wildcard=True)
        c = self.broker("c", wildcard=True)
        t0 = now()
        a = self.broker("a", peers=["tcp://%s:%d" % (NAME, PEER)])
        ids = {k: x.status()["broker_id"] for k, x in (("b", b), ("c", c))}

        def both_alive():
            st = a.status()
            conf = st["family"]["configured"]
            ps = peers_of(st)
            ok = (len(conf) == 1 and sorted(conf[0]["endpoints"]) == sorted([b.peer, c.peer])
                  and conf[0]["error"] == ""
                  and all(ps.get(x.peer, {}).get("state") == "alive" for x in (b, c)))
            return st if ok else AssertionError(json.dumps(st["family"])[:1500])
        st, took = wait_until("A shows B and C alive, both found through %s" % NAME, both_alive, 10.0)
        print("\n  A resolved %s to B and C and saw both alive %.2f s after it started" % (NAME, now() - t0))
        fam = st["family"]
        self.assertEqual(fam["configured"][0]["peer"], "tcp://%s:%d" % (NAME, PEER), fam["configured"])
        self.assertEqual(fam["peer_endpoint"], a.peer)
        ps = peers_of(st)
        for k, x in (("b", b), ("c", c)):
            p = ps[x.peer]
            self.assertEqual(p["broker_id"], ids[k], "the broker id %s's own status shows" % k.upper())
            self.assertTrue(p["configured"], p)
            self.assertEqual(p["learned"], "configured", p)
            self.assertEqual(p["link"], "connected", p)
            self.assertEqual(p["frontend"], x.frontend, "the advertised frontend of a wildcard bind")
            self.assertEqual(p["backend"], x.backend, "the advertised backend of a wildcard bind")
            self.assertEqual((p["heartbeat_ms"], p["liveness"]), (HB_MS, LIVENESS))
        others = [e for e, p in ps.items() if p["state"] not in ("alive", "self")]
        self.assertEqual(others, [], "A has no other peer (and none stuck connecting): %r" % (ps,))

        # B and C learn A from its HELLO and each other from A's gossip: a full mesh
        def mesh():
            for x, y in ((b, c), (c, b)):
                ps = peers_of(x.status())
                if ps.get(a.peer, {}).get("state") != "alive" or ps.get(y.peer, {}).get("state") != "alive":
                    return AssertionError("%s: %r" % (x.node, {e: p["state"] for e, p in ps.items()}))
            return True
        wait_until("B and C see A and each other alive", mesh, 8.0)
        self.assertEqual(peers_of(b.status())[a.peer]["learned"], "hello")
        self.assertEqual(peers_of(c.status())[a.peer]["learned"], "hello")
        # neither names the other: the first to know learned it from A's gossip, the other may
        # have heard its HELLO first
        learned = {peers_of(b.status())[c.peer]["learned"], peers_of(c.status())[b.peer]["learned"]}
        self.assertIn("gossip", learned)
        self.assertLessEqual(learned, {"gossip", "hello"})

        # Forwarding: a service only a worker on C serves, asked at A
        svc = "netns.only-c"
        self.worker(c, svc, "worker-on-c", concurrency=2)
        self.wait_capacity(a, c, svc, idle=2)
        fwd0 = (a.status().get("forwarded_out"), c.status().get("forwarded_in"))
        t1 = now()
        r = self.topo.run("a", [BIN, "request", "--broker", a.frontend, "--timeout", 3000, "--verbose",
                                svc, "across namespaces"], timeout=15)
        took = now() - t1
        print("  `scale0 request` in A's namespace answered by C's worker in %.0f ms (process included)"
              % (took * 1000))
        self.assertEqual(r.returncode, 0, r)
        self.assertEqual(r.stdout.strip(), b"across namespaces", r)
        self.assertIn(b"200", r.stderr, r.stderr)
        self.assertIn(b"worker-on-c", r.stderr, "the message of C's worker: %r" % r.stderr)
        fwd1 = (a.status().get("forwarded_out"), c.status().get("forwarded_in"))
        self.assertIsNotNone(fwd0[0], "A's status has forwarded_out")
        self.assertEqual(fwd1[0] - fwd0[0], 1, "A forwarded it")
        self.assertEqual(fwd1[1] - fwd0[1], 1, "C accepted it")
        for k, x in self.brokers.items():
            self.assertTrue(x.alive(), "broker %s died: %s" % (k, x.stderr_text()[-2000:]))


class NameResolvedAgainTest(NetnsCase):
    """The same name, re-resolved: A starts with the name on B only; the hosts file is then
    rewritten (in place: the bind mount is of the file) to name C only. Within the 30 s of
    re-resolution (+ slack), A links to C (never heard of otherwise: B and C do not know each other
    and C knows no one), its configured endpoints become C's, and B stays alive (it linked back to A
    after A's HELLO) but is no longer configured."""
    hosts = {"a": "127.0.0.1 localhost\n::1 localhost\n%s %s\n" % (NODES["b"], NAME)}
    RESOLVE_S = 30.0
    SLACK_S = 3.0

    def test_name_is_resolved_again(self):
        b = self.broker("b")
        c = self.broker("c")
        t_start = now()
        a = self.broker("a", peers=["tcp://%s:%d" % (NAME, PEER)])

        def first():
            st = a.status()
            conf = st["family"]["configured"][0]
            ps = peers_of(st)
            if conf["endpoints"] == [b.peer] and ps.get(b.peer, {}).get("state") == "alive":
                return st
            return AssertionError(json.dumps(st["family"])[:1000])
        st, _ = wait_until("A resolved %s to B and sees B alive" % NAME, first, 8.0)
        self.assertNotIn(c.peer, peers_of(st), "nothing tells A of C yet")
        t_first = now()
        with open(os.path.join(NETNS_ETC, NS["a"], "hosts"), "w") as f:   # same inode
            f.write("127.0.0.1 localhost\n::1 localhost\n%s %s\n" % (NODES["c"], NAME))

        def second():
            st = a.status()
            conf = st["family"]["configured"][0]
            ps = peers_of(st)
            if conf["endpoints"] == [c.peer] and ps.get(c.peer, {}).get("state") == "alive":
                return st
            return AssertionError(json.dumps({"configured": conf,
                                              "peers": {e: p["state"] for e, p in ps.items()}}))
        st, _ = wait_until("A re-resolved %s to C and sees C alive" % NAME, second,
                           self.RESOLVE_S + self.SLACK_S - (now() - t_start), every=0.25)
        took = now() - t_start
        print("\n  %s re-resolved: A linked to C %.1f s after it started (%.1f s after the hosts file "
              "changed; every %.0f s)" % (NAME, took, now() - t_first, self.RESOLVE_S))
        self.assertGreaterEqual(took, self.RESOLVE_S - 1.0, "not before the next resolution")
        ps = peers_of(st)
        self.assertTrue(ps[c.peer]["configured"], ps[c.peer])
        self.assertEqual(ps[b.peer]["state"], "alive", "B is still linked (it linked back to A)")
        self.assertFalse(ps[b.peer]["configured"], "B's address left the name's answer: %r" % ps[b.peer])
        self.assertEqual(st["family"]["configured"][0]["error"], "")


# ------------------------------------------------------------------------------------------------
# 2. A silently partitioned broker is routed around
# ------------------------------------------------------------------------------------------------
class LedgerClient:
    """The S0/2 client of this file (client_main), run in a namespace with `ip netns exec`; its
    events (dicts) are read from its stdout by a thread; a line "stop" on its stdin ends it."""

    def __init__(self, topo, node, endpoint, services, every_ms, deadline_ms):
        rfd, wfd = os.pipe()
        try:
            self.proc = topo.start(node, [PYTHON, os.path.abspath(__file__), "--netns-client", endpoint,
                                          ",".join(services), every_ms, deadline_ms],
                                   capture_stdout=True, stdin=rfd)
        finally:
            os.close(rfd)
        self.ctl = os.fdopen(wfd, "w")
        self.events = []
        self.lock = threading.Lock()
        self.done = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        try:
            for line in self.proc.p.stdout:
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                with self.lock:
                    self.events.append(ev)
                if ev.get("ev") == "done":
                    break
        except Exception:
            pass
        finally:
            self.done.set()

    def snapshot(self):
        with self.lock:
            return list(self.events)

    def stop(self, timeout):
        """Says stop; True once the client printed its summary (within timeout)."""
        try:
            self.ctl.write("stop\n")
            self.ctl.flush()
        except OSError:
            pass
        ok = self.done.wait(timeout)
        self.proc.wait(5)
        return ok

    def close(self):
        if not self.ctl.closed:
            try:
                self.ctl.close()
            except OSError:
                pass


class PartitionTest(NetnsCase):

    def test_partitioned_broker_is_routed_around_and_comes_back(self):
        plain, idem = "netns.s", "netns.s-idem"
        a = self.broker("a", peers=[ep("b", PEER), ep("c", PEER)])
        b = self.broker("b")
        c = self.broker("c")
        for x in (b, c):
            tag = x.node.upper()
            self.worker(x, plain, tag + "-plain", delay=WORKER_DELAY_MS, concurrency=16)
            self.worker(x, idem, tag + "-idem", idempotent=True, delay=WORKER_DELAY_MS, concurrency=16)
        for x in (b, c):
            for svc in (plain, idem):
                self.wait_capacity(a, x, svc, idle=16, timeout=10.0)

        # The client, in A's namespace
        client = LedgerClient(self.topo, "a", a.frontend, [plain, idem], SEND_EVERY_MS, DEADLINE_MS)
        self.addCleanup(client.close)
        snapshot = client.snapshot

        def served_by(prefix, since=0.0):
            """Workers (reply messages) starting with prefix that answered requests sent since."""
            return {e["msg"] for e in snapshot() if e["ev"] == "reply" and e["status"] == 200
                    and e["t"] >= since and e["msg"].startswith(prefix)}

        # Warm-up: B's and C's workers of both kinds serve requests sent at A
        want = {"B-plain", "B-idem", "C-plain", "C-idem"}
        wait_until("requests at A served by all four workers", lambda: served_by("") >= want or
                   AssertionError(sorted(served_by(""))), 8.0)
        time.sleep(1.0)

        # Partition: C's port on the bridge goes down. No FIN, no RST: its packets just stop.
        t_down0 = now()
        self.topo.link("c", up=False)
        t_down = now()
        state_c = None
        seen_at = None
        for _ in range(1000):
            st = a.status()
            t_st = now()
            ps = peers_of(st)
            if ps[b.peer]["state"] != "alive":
                self.fail("A lost B too: %r" % ps[b.peer])
            if ps[c.peer]["state"] == "lost":
                state_c, seen_at = ps[c.peer], t_st
                break
            if t_st - t_down0 > LOSS_BOUND_S + 4:
                break
            time.sleep(0.05)
        self.assertIsNotNone(state_c, "A never showed C lost (%.1f s)" % (now() - t_down0))
        # when A judged C lost: the status says how long C has been in that state
        lost_at = seen_at - state_c["state_ms"] / 1000.0
        loss_s = lost_at - t_down0
        print("\n  partition: A judged C lost %.2f s after its link went down (reason %r; bound %.1f s; "
              "its status showed it %.2f s after)" % (loss_s, state_c["reason"], LOSS_BOUND_S, seen_at - t_down0))
        self.assertLessEqual(loss_s, LOSS_BOUND_S, "A judges C lost within liveness x interval + 1 s")
        self.assertLessEqual(seen_at - t_down0, LOSS_BOUND_S + 0.5,
                             "A's status shows C lost within the bound (+0.5 s for polling)")
        self.assertGreaterEqual(loss_s, 0.3, "lost only once silent for most of its liveness")
        self.assertIn("silent", state_c["reason"], "lost for its silence (not a BYE or a restart)")

        # The partition lasts 2.5 s more: requests keep going, all via B
        time.sleep(2.5)
        st = a.status()
        self.assertEqual(peers_of(st)[c.peer]["state"], "lost", "C stays lost while partitioned")
        self.assertEqual(peers_of(st)[b.peer]["state"], "alive")
        c_in_partitioned = c.status().get("forwarded_in")   # C's status, from C's own namespace

        # Heal
        t_up = now()
        self.topo.link("c", up=True)
        _, heal_s = wait_until("A sees C alive again",
                               lambda: peers_of(a.status())[c.peer]["state"] == "alive", HEAL_BOUND_S, every=0.05)
        t_alive = now()
        print("  healed: A saw C alive again %.2f s after its link went up (bound %.0f s)" % (heal_s, HEAL_BOUND_S))

        def c_sees_all():
            ps = peers_of(c.status())
            return all(ps.get(x.peer, {}).get("state") == "alive" for x in (a, b))
        wait_until("C sees A and B alive again", c_sees_all, HEAL_BOUND_S, every=0.05)
        print("  C saw A and B alive again %.2f s after its link went up" % (now() - t_up))

        # Does A send C work again? A peer blocked by a refused forward is unblocked by its next
        # STATE; a full STATE goes every 10 s: 12 s is the bound. Checked after the ledger.
        back_s = None
        diag = None
        for _ in range(10000):
            if served_by("C-", since=t_alive):
                back_s = now() - t_alive
                break
            if now() - t_alive > 12.0:
                st = a.status()
                diag = {"A's entry for C": peers_of(st)[c.peer], "A forwarded_out": st.get("forwarded_out"),
                        "B forwarded_in": b.status().get("forwarded_in"),
                        "C forwarded_in": c.status().get("forwarded_in"),
                        "C's entry for A": peers_of(c.status()).get(a.peer)}
                break
            time.sleep(0.05)
        if back_s is not None:
            print("  C served requests from A again %.2f s after A saw it alive" % back_s)
        time.sleep(0.5)

        # Stop the client: it sends nothing more, waits for every answer (up to deadline + 2 s),
        # then listens 1 s more for duplicates.
        self.assertTrue(client.stop(DEADLINE_MS / 1000.0 + 8), "the client did not finish: %s"
                        % client.proc.stderr_text()[-2000:])
        evs = snapshot()
        fin = [e for e in evs if e["ev"] == "done"]
        self.assertEqual(len(fin), 1, "client ended without its summary: %s" % client.proc.stderr_text()[-2000:])
        c_in_end = c.status().get("forwarded_in")

        # ---- the ledger ----
        sent = {e["rid"]: e for e in evs if e["ev"] == "sent"}
        answers = {}
        strays = []
        for e in evs:
            if e["ev"] == "reply":
                if e["rid"] in sent:
                    answers.setdefault(e["rid"], []).append(e)
                else:
                    strays.append(e)
        junk = [e for e in evs if e["ev"] == "junk"]
        missing = sorted(set(sent) - set(answers))
        dups = {rid: [(x["status"], x["msg"]) for x in v] for rid, v in answers.items() if len(v) > 1}
        self.assertEqual(junk, [], "messages the client could not read as an S0/2 REPLY")
        self.assertEqual(strays, [], "replies for ids never sent")
        self.assertEqual(dups, {}, "requests answered more than once")
        self.assertEqual(missing, [], "requests never answered (%d of %d)" % (len(missing), len(sent)))

        windows = {"before": [], "at-partition": [], "after-loss": [], "after-heal": []}
        bad = []
        held_at_c = {"502": 0, "504": 0, "idem via B late": 0}
        c_after_up = 0
        # a request may have been at C when its link went down if sent up to the worker's delay
        # (+ margin) before
        inflight_from = t_down0 - (WORKER_DELAY_MS + 200) / 1000.0
        for rid in sorted(sent):
            s = sent[rid]
            r = answers[rid][0]
            status, msg, took = r["status"], r["msg"], r["t"] - s["t"]
            kind = "-idem" if s["svc"] == idem else "-plain"
            if s["t"] < inflight_from:
                w = "before"
                ok = status == 200
            elif s["t"] < lost_at:
                w = "at-partition"
                if status == 200:
                    ok = msg.startswith("B-") or (msg.startswith("C-") and s["t"] < t_down)
                    if ok and msg == "B-idem" and took > (WORKER_DELAY_MS + 150) / 1000.0:
                        held_at_c["idem via B late"] += 1     # held at C, then re-dispatched
                elif status == 502:
                    ok = kind == "-plain" and msg == LOST_MSG
                    held_at_c["502"] += 1
                elif status == 504:
                    ok = DEADLINE_MS / 1000.0 - 0.1 <= took <= DEADLINE_MS / 1000.0 + 0.6
                    held_at_c["504"] += 1
                    print("  504: %s sent %.3f s after the partition, answered after %.3f s"
                          % (s["svc"], s["t"] - t_down0, took))
                else:
                    ok = False
            elif s["t"] < t_up:
                w = "after-loss"
                ok = status == 200 and msg.startswith("B-")
            else:
                w = "after-heal"
                ok = status == 200
                c_after_up += status == 200 and msg.startswith("C-")
            if ok and status == 200 and not msg.endswith(kind):
                ok = False      # a plain request answered by an idempotent worker, or the reverse
            windows[w].append((status, msg))
            if not ok:
                bad.append((w, rid, s["svc"], round(s["t"] - t_down0, 3), status, msg, round(took, 3)))

        def summary(lst):
            out = {}
            for code, msg in lst:
                key = "%d %s" % (code, msg) if code in (200, 502) else str(code)
                out[key] = out.get(key, 0) + 1
            return out
        for w in ("before", "at-partition", "after-loss", "after-heal"):
            print("  %-13s %4d requests: %s" % (w, len(windows[w]), summary(windows[w])))
        print("  held at C when partitioned: %d x 502, %d x 504, %d idempotent re-dispatched via B; "
              "%d requests in all, every one answered exactly once" % (held_at_c["502"], held_at_c["504"],
                                                                      held_at_c["idem via B late"], len(sent)))
        if c_in_partitioned is not None and c_in_end is not None:
            late = c_in_end - c_in_partitioned - c_after_up
            print("  requests A had forwarded into the partition that reached C after it healed: %d "
                  "(C's forwarded_in grew by %d, C answered %d sent after the heal)"
                  % (late, c_in_end - c_in_partitioned, c_after_up))
        self.assertEqual(bad, [], "requests with an outcome their window does not allow "
                                  "(window, rid, service, sent at s after the partition, status, message, took)")
        self.assertGreater(len(windows["after-loss"]), 50, "requests were sent while C was lost")
        self.assertGreater(held_at_c["502"], 0, "some plain requests were held at C when it was partitioned")
        self.assertGreater(held_at_c["idem via B late"] + held_at_c["504"], 0,
                           "some idempotent requests were held at C when it was partitioned")
        for k, x in self.brokers.items():
            self.assertTrue(x.alive(), "broker %s died: %s" % (k, x.stderr_text()[-2000:]))
        self.assertIsNotNone(back_s, "A shows C alive with idle credit but sends it nothing for 12 s after the "
                                     "heal (all %d requests sent after it went to B): %s"
                             % (len(windows["after-heal"]), json.dumps(diag)))


# ------------------------------------------------------------------------------------------------
# The client run in A's namespace: S0/2 (docs/protocol.md, "S0/2 compact framing")
# ------------------------------------------------------------------------------------------------
def client_main(argv):
    """--netns-client ENDPOINT SVC[,SVC...] EVERY_MS DEADLINE_MS: sends one request every EVERY_MS,
    services in turn, until a line "stop" (or EOF) on stdin; then waits for the answers (up to the
    deadline + 2 s) and 1 s more; prints JSON lines: sent, reply, done."""
    endpoint, services, every_ms, deadline_ms = argv[0], argv[1].split(","), int(argv[2]), int(argv[3])
    out = sys.stdout

    def emit(**kw):
        out.write(json.dumps(kw) + "\n")
        out.flush()

    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.SNDHWM, 100000)
    s.setsockopt(zmq.RCVHWM, 100000)
    s.connect(endpoint)
    poller = zmq.Poller()
    poller.register(s, zmq.POLLIN)
    poller.register(sys.stdin.fileno(), zmq.POLLIN)
    rid = 0
    outstanding = {}
    sending = True
    stop_at = None
    next_send = time.monotonic()
    started = next_send
    every = every_ms / 1000.0
    for _ in range(10 ** 7):
        t = time.monotonic()
        if sending and t - started > 240:           # bounded even if nobody says stop
            sending = False
            stop_at = t
        if sending and t >= next_send:
            rid += 1
            svc = services[(rid - 1) % len(services)].encode()
            packed = b"S0C2" + b"\x01" + struct.pack(">QI", rid, deadline_ms) + bytes([len(svc)]) + svc
            s.send_multipart([b"", packed, b"r%d" % rid])
            outstanding[rid] = t + deadline_ms / 1000.0
            emit(ev="sent", rid=rid, svc=svc.decode(), t=t)
            next_send += every
            if next_send < t:
                next_send = t + every
        if not sending:
            last = max(outstanding.values()) if outstanding else stop_at
            if (not outstanding and t > stop_at + 1.0) or t > max(last + 2.0, stop_at) + 1.0:
                break
        wait = max(0.0, next_send - t) if sending else 0.05
        events = dict(poller.poll(int(wait * 1000) + 1))
        if s in events:
            for _ in range(10000):
                try:
                    m = s.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                tr = time.monotonic()
                p = m[1] if len(m) >= 2 else b""
                if len(m) < 2 or m[0] != b"" or len(p) < 17 or p[:4] != b"S0C2" or p[4] != 0x02:
                    emit(ev="junk", frames=[f[:40].hex() for f in m], t=tr)
                    continue
                r_id, status, mlen = struct.unpack(">QHH", p[5:17])
                msg = p[17:17 + mlen].decode("utf-8", "replace")
                outstanding.pop(r_id, None)
                emit(ev="reply", rid=r_id, status=status, msg=msg,
                     body=[f.decode("utf-8", "replace")[:60] for f in m[2:]], t=tr)
        if sending and sys.stdin.fileno() in events:
            line = sys.stdin.readline()
            if not line or line.strip() == "stop":
                sending = False
                stop_at = time.monotonic()
                poller.unregister(sys.stdin.fileno())
    emit(ev="done", sent=rid, unanswered=sorted(outstanding), t=time.monotonic())
    s.close(0)
    ctx.term()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--netns-client":
        client_main(sys.argv[2:])
    else:
        unittest.main()
