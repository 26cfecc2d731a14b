# SPDX-License-Identifier: Apache-2.0
"""Scale0 fault-ledger chaos suite.

Real broker and worker processes on loopback (and, for the silent partition, in a network namespace
the suite creates). Several pipelined native clients (S0/1 over DEALER, docs/protocol.md) send
requests whose bodies carry a unique token; every request id is tracked to exactly one outcome while
faults are injected, phase by phase. The workers (`scale0 worker --exec`) log every execution, so a
non-idempotent request executed twice is caught even when its client saw one answer.

Per phase the ledger shows: sent, ok, each error code, lost, lost at a broker crash (apart),
duplicated, crossed, non-idempotent executed twice, idempotent re-executions, and the time a
killed / stopped / partitioned worker took to be out. Any lost (not at a crash), duplicated, crossed
or twice-executed request fails the run, as does a phase's own check (e.g. any 502 while the broker
is stalled). Exit status 0 only when every phase that ran passed.

    SCALE0_BIN=path/to/scale0 tests/chaos/run.sh [--phase NAME ...] [--list] [--keep] [--batches on|off]

`--batches off` (the default): clients speak S0/1 and workers run with `--no-batches`, so nothing
is ever batched. `--batches on`: workers batch (the worker library's default in S0/2) and clients
speak S0/2, say HELLO with flags 0x01 and send the requests they have ready at once as one BATCH
(docs/protocol.md, "Batches"), taking replies apart from BATCHes. The ledger is the same in both.
"""

import argparse
import collections
import os
import random
import shutil
import signal
import struct
import sys
import tempfile
import threading
import time
import zlib

import zmq

import procs
from procs import Broker, Netns, Worker, now, read_exec_logs, write_job_script

# The S0/2 codec is the black-box tests' (tests/blackbox/harness_wire.py: standard library only)
sys.path.append(os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "blackbox"))
from harness_wire import (BATCH_MAX_ENTRIES, BATCH_MAX_PACKED, BATCH_MAX_SEPARATE, C2_HDR,  # noqa: E402
                          C_REPLY, C_WELCOME, INLINE_MAX, Malformed, batch_frames, c_request, decode,
                          parse_c_reply, parse_c_welcome)

HB_MS = 250            # broker heartbeat interval for every phase (short phases)
LIVENESS = 3
# A worker that falls silent just after a heartbeat is purged liveness intervals after that heartbeat;
# the broker notices on its own timer, at most one interval later; we poll /metrics every 25 ms.
OUT_BOUND = (LIVENESS + 1) * HB_MS / 1000.0 + 0.25
TIMEOUT_MS = 3000      # every request's deadline (relative to arrival at the broker)
MARGIN = 2.0           # after deadline + MARGIN with no reply, a request is given up (lost if never answered)
CRASH_GRACE = 0.05     # a request sent up to this long after the broker died is still "in flight at the crash"
                       # (the time the client's ZeroMQ needs to see the connection closed)
# Broker RSS growth allowed during the flood (max - idle). The queue holds 20 requests of 1 KiB and
# ZeroMQ's pipes at most their high-water marks (1 000 messages per peer and direction): a few MiB. The
# flood pushes ~40 MiB of bodies through; a broker that kept them would cross the bound. An ASan build
# keeps freed memory in quarantine (256 MiB by default), so it gets a bound above that.
# The client that does not read is owed an answer for everything it sends: the broker holds those
# answers in its backlog, within the budget the phase gives it (docs/operations.md, "Budgets"), so
# the bound is that budget plus the fixed 32 MiB above.
FLOOD_BACKLOG_BUDGET = 48 * 1024 * 1024
FLOOD_RSS_GROWTH_KIB = 32 * 1024 + FLOOD_BACKLOG_BUDGET // 1024
FLOOD_RSS_GROWTH_ASAN_KIB = 512 * 1024 + FLOOD_BACKLOG_BUDGET // 1024
FLOOD_ERR_P99 = 0.5    # seconds: 503/429 in the flood must come back at least this fast (99th percentile)
RESTART_BOUND = 3.0    # seconds for workers to be registered again after a broker restart

PLAIN, IDEM = "plain", "idem"


def log(msg):
    print(msg, flush=True)


# ---------------------------------------------------------------------------------------------
# Client frames: S0/1 (docs/protocol.md, "Client <-> broker") or, with --batches on, S0/2 with
# batches ("S0/2 compact framing", "Batches")
# ---------------------------------------------------------------------------------------------
BATCHES = False        # --batches on: S0/2 clients that say HELLO with flags 0x01 and send BATCHes


def request_frames(rid, service, timeout_ms, body):
    return [b"", b"S0C1", b"\x01", struct.pack(">Q", rid), service.encode(), struct.pack(">I", timeout_ms), body]


HELLO_BATCHES = [b"", b"S0C2\x05\x01"]  # HELLO with flags: bit 0, the client takes batches


def s2_batches(reqs):
    """[(rid, service, timeout_ms, body)] as S0/2 messages: groups within a batch's bounds (256
    entries, 64 separate frames, 256 KiB packed), each group a BATCH, or a REQUEST alone when it
    has one. Returns [(message's frames, requests in it)]."""
    groups, group, seps, size = [], [], 0, 0
    for req in reqs:
        rid, svc, tmo, body = req
        inline = len(body) <= INLINE_MAX
        cost = 4 + len(c_request(rid, svc, tmo)) + 1 + 4 + (len(body) if inline else 0)
        if group and (len(group) >= BATCH_MAX_ENTRIES or (not inline and seps >= BATCH_MAX_SEPARATE)
                      or size + cost + 7 > BATCH_MAX_PACKED):
            groups.append(group)
            group, seps, size = [], 0, 0
        group.append(req)
        seps += 0 if inline else 1
        size += cost
    if group:
        groups.append(group)
    out = []
    for g in groups:
        if len(g) == 1:
            rid, svc, tmo, body = g[0]
            out.append(([b"", C2_HDR + c_request(rid, svc, tmo), body], 1))
        else:
            out.append((batch_frames(C2_HDR, [(c_request(rid, svc, tmo), [body]) for rid, svc, tmo, body in g]),
                        len(g)))
    return out


def send_requests(sock, reqs, wire=None):
    """Sends [(rid, service, timeout_ms, body)] without blocking: S0/1 one message each, or (with
    --batches on) S0/2, BATCHes when there are several. Returns how many of them (a prefix) were
    sent."""
    sent = 0
    if not BATCHES:
        for rid, svc, tmo, body in reqs:
            try:
                sock.send_multipart(request_frames(rid, svc, tmo, body), zmq.NOBLOCK)
            except zmq.Again:
                break
            sent += 1
        return sent
    for frames, n in s2_batches(reqs):
        try:
            sock.send_multipart(frames, zmq.NOBLOCK)
        except zmq.Again:
            break
        sent += n
        if n > 1 and wire is not None:
            wire.batches_out += 1
            wire.entries_out += n
    return sent


def describe(frames):
    """A short description of a message (frame sizes and the packed frame's start), for the notes."""
    sizes = [len(f) for f in frames]
    head = frames[1][:48].hex() if len(frames) > 1 else ""
    return "%d frame(s), sizes %s%s, frame 1 starts %s" % (
        len(frames), sizes[:8], "..." if len(sizes) > 8 else "", head)


class Wire:
    """What the clients of a phase saw on the wire besides replies (for the notes and checks)."""

    def __init__(self):
        self.batches_in = 0        # BATCH messages received
        self.entries_in = 0        # replies that came in them
        self.batches_out = 0       # BATCH messages sent
        self.entries_out = 0       # requests sent in them
        self.welcomes = []         # the flags byte of each WELCOME (None: none)


def parse_replies(frames, wire=None):
    """[(rid, status, message, body)] carried by a message to a client: one for a REPLY, each
    entry's for a BATCH, none for a WELCOME. None if the message is not what this client's
    protocol may receive (S0/1 REPLY with --batches off; S0/2 REPLY, BATCH or WELCOME with on)."""
    if not BATCHES:
        if len(frames) < 6 or frames[0] != b"" or frames[1] != b"S0C1" or frames[2] != b"\x02":
            return None
        if len(frames[3]) != 8 or len(frames[4]) != 2:
            return None
        return [(struct.unpack(">Q", frames[3])[0], struct.unpack(">H", frames[4])[0], frames[5],
                 b"".join(frames[6:]))]
    try:
        # a batch's packed frame is not held to the 256 KiB bound here (what the ledger took before it
        # shared the codec)
        is_batch, entries = decode(frames, C2_HDR, max_packed=None)
        if is_batch and wire is not None:
            wire.batches_in += 1
            wire.entries_in += len(entries)
        out = []
        for message, parts in entries:     # a batch means its entries, one after another (none a BATCH)
            out += s2_message(message, parts, wire)
        return out
    except Malformed:
        return None


def s2_message(message, parts, wire):
    """[(rid, status, message, body)] of one S0/2 message to a client (command byte first): a
    REPLY's, or none for a WELCOME (its flags byte recorded). Malformed for anything else."""
    if message[:1] == bytes([C_REPLY]):
        return [parse_c_reply(message) + (b"".join(parts),)]
    if message[:1] == bytes([C_WELCOME]) and not parts:
        flags = parse_c_welcome(message)[3]
        if wire is not None:
            wire.welcomes.append(flags)
        return []
    raise Malformed("command %r" % message[:1])


# ---------------------------------------------------------------------------------------------
# The ledger: every request sent, every reply received
# ---------------------------------------------------------------------------------------------
class Rec:
    __slots__ = ("client", "rid", "service", "token", "t_sent", "timeout", "replies")

    def __init__(self, client, rid, service, token, t_sent, timeout):
        self.client, self.rid, self.service, self.token = client, rid, service, token
        self.t_sent, self.timeout = t_sent, timeout
        self.replies = []            # (t, status, message, body)

    @property
    def deadline(self):
        return self.t_sent + self.timeout

    def outcome(self):
        return self.replies[0] if self.replies else None


class Ledger:
    def __init__(self, phase):
        self.phase = phase
        self.recs = {}               # (client, rid) -> Rec
        self.unknown = 0             # replies whose id was never sent (crossed)
        self.malformed = 0
        self.malformed_samples = []  # what the first malformed messages looked like (for the notes)
        self.crashes = []            # times the broker process was gone (kill -9)
        self.wire = Wire()
        self.lock = threading.Lock()

    def token(self, client, rid, service, sleep_s):
        # the job script sleeps for the number after the last '-'
        return "%s.c%d.r%d.%s-%.3f" % (self.phase, client, rid, service, sleep_s)

    def sent(self, client, rid, service, token, t, timeout_s):
        rec = Rec(client, rid, service, token, t, timeout_s)
        with self.lock:
            self.recs[(client, rid)] = rec
        return rec

    def replied(self, client, frames, t):
        """Records what a message to a client carries (a REPLY, or each REPLY of a BATCH); returns
        the records answered."""
        parsed = parse_replies(frames, self.wire)
        if parsed is None:
            self.malformed += 1
            if len(self.malformed_samples) < 3:
                self.malformed_samples.append(frames)
            return []
        recs = []
        for rid, status, message, body in parsed:
            rec = self.recs.get((client, rid))
            if rec is None:
                self.unknown += 1
                continue
            rec.replies.append((t, status, message.decode("utf-8", "replace"), body))
            recs.append(rec)
        return recs

    def pending(self):
        with self.lock:
            return [r for r in self.recs.values() if not r.replies]

    def at_crash(self, rec):
        return any(rec.t_sent <= c + CRASH_GRACE and rec.deadline > c for c in self.crashes)

    def summarize(self, execs):
        """Counts for the table. execs: {token: [worker, ...]} from the execution logs."""
        s = collections.OrderedDict()
        codes = collections.Counter()
        lost = lost_crash = dup = crossed = late = 0
        lost_by_client = collections.Counter()
        for rec in self.recs.values():
            if not rec.replies:
                if self.at_crash(rec):
                    lost_crash += 1
                else:
                    lost += 1
                    lost_by_client[rec.client] += 1
                continue
            t, status, message, body = rec.replies[0]
            codes[status] += 1
            if len(rec.replies) > 1:
                dup += 1
            for (_, st, _, b) in rec.replies:
                if st == 200 and b != rec.token.encode():
                    crossed += 1
                    break
            if t > rec.deadline + MARGIN:
                late += 1
        twice = reexec = over = unexecuted = 0
        mine = {rec.token: rec for rec in self.recs.values()}
        for tok, workers in execs.items():
            rec = mine.get(tok)
            if rec is None:
                continue
            if rec.service == PLAIN and len(workers) > 1:
                twice += 1
            elif rec.service == IDEM and len(workers) > 1:
                reexec += 1
                if len(workers) > 2:
                    over += 1        # re-dispatched more than once
        for rec in self.recs.values():
            if rec.replies and rec.replies[0][1] == 200 and rec.token not in execs:
                unexecuted += 1
        s["sent"] = len(self.recs)
        s["codes"] = codes
        s["lost"] = lost
        s["lost_by_client"] = lost_by_client
        s["lost@crash"] = lost_crash
        s["dup"] = dup
        s["crossed"] = crossed + self.unknown
        s["2x-exec"] = twice
        s["idem-reexec"] = reexec
        s["idem>2x"] = over
        s["ok-unexecuted"] = unexecuted
        s["late"] = late
        s["malformed"] = self.malformed
        return s


# ---------------------------------------------------------------------------------------------
# Load: N pipelined clients, each with a bounded window, in one thread (one poll loop)
# ---------------------------------------------------------------------------------------------
class Load(threading.Thread):
    def __init__(self, ctx, endpoint, ledger, clients=4, window=6, services=(PLAIN, IDEM), rate=120,
                 sleep_ms=(20, 300), timeout_ms=TIMEOUT_MS, seed=1):
        super().__init__(daemon=True)
        self.ctx, self.endpoint, self.ledger = ctx, endpoint, ledger
        self.n, self.window, self.services = clients, window, list(services)
        self.interval = 1.0 / rate
        self.sleep_ms, self.timeout_ms = sleep_ms, timeout_ms
        self.rng = random.Random(seed)
        self.sending = True
        self.running = True
        self.error = None

    def stop_sending(self):
        self.sending = False

    def finish(self, limit=TIMEOUT_MS / 1000.0 + MARGIN + 1.0):
        """Stop sending, wait for every outcome (bounded), stop the thread."""
        self.sending = False
        end = now() + limit
        while now() < end:
            pend = self.ledger.pending()
            if not pend or all(now() > r.deadline + MARGIN for r in pend):
                break
            time.sleep(0.05)
        self.running = False
        self.join(5)
        if self.error:
            raise self.error

    def run(self):
        try:
            self._run()
        except Exception as e:  # surfaced by finish()
            self.error = e

    def _run(self):
        socks = []
        poller = zmq.Poller()
        for _ in range(self.n):
            s = self.ctx.socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)
            s.connect(self.endpoint)
            if BATCHES:
                s.send_multipart(HELLO_BATCHES)     # queued until connected; the WELCOME is recorded
            poller.register(s, zmq.POLLIN)
            socks.append(s)
        index = {s: i for i, s in enumerate(socks)}
        outstanding = [dict() for _ in socks]      # rid -> Rec, until answered or given up
        next_rid = [1] * self.n
        next_send = [now()] * self.n
        count = 0
        try:
            while self.running:
                t = now()
                if self.sending:
                    for i, s in enumerate(socks):
                        # what the window and the rate allow now: with --batches off sent one by
                        # one (S0/1), with on as one BATCH when there are several
                        ready = []
                        rid, due = next_rid[i], next_send[i]
                        while len(outstanding[i]) + len(ready) < self.window and due <= t:
                            svc = self.services[rid % len(self.services)]
                            sl = self.rng.uniform(*self.sleep_ms) / 1000.0
                            due = max(due + self.interval, t - 1.0)    # next_send once this one is sent
                            ready.append((rid, svc, self.ledger.token(i, rid, svc, sl), due))
                            rid += 1
                        if not ready:
                            continue
                        n = send_requests(s, [(r, svc, self.timeout_ms, tok.encode()) for r, svc, tok, _ in ready],
                                          self.ledger.wire)
                        for r, svc, tok, due in ready[:n]:
                            outstanding[i][r] = self.ledger.sent(i, r, svc, tok, t, self.timeout_ms / 1000.0)
                            next_rid[i] = r + 1
                            next_send[i] = due
                            count += 1
                for s, _ in poller.poll(10):
                    i = index[s]
                    for _ in range(1000):
                        try:
                            frames = s.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        for rec in self.ledger.replied(i, frames, now()):
                            outstanding[i].pop(rec.rid, None)
                t = now()
                for o in outstanding:     # the client's own timeout frees the window slot at the deadline;
                    # the request stays in the ledger: an answer later still counts (as late if past the margin)
                    for rid in [rid for rid, r in o.items() if t > r.deadline]:
                        del o[rid]
        finally:
            for s in socks:
                s.close(0)


# ---------------------------------------------------------------------------------------------
# Phases
# ---------------------------------------------------------------------------------------------
class Skip(Exception):
    pass


class PhaseResult:
    def __init__(self, name):
        self.name = name
        self.summary = None
        self.notes = []           # (label, text) shown under the table
        self.violations = []
        self.skipped = None
        self.out_time = None      # worst time a killed/stopped/partitioned worker took to be out
        self.seconds = 0.0

    def note(self, text):
        self.notes.append(text)
        log("    " + text)

    def fail(self, text):
        self.violations.append(text)
        log("    VIOLATION: " + text)


def wait_until(fn, timeout, step=0.025):
    """Seconds until fn() is true, or None after timeout."""
    t0 = now()
    while True:
        if fn():
            return now() - t0
        if now() - t0 > timeout:
            return None
        time.sleep(step)


class Ctx:
    """Everything one phase starts; torn down by close()."""

    def __init__(self, suite, name):
        self.suite = suite
        self.name = name
        self.dir = os.path.join(suite.rundir, name)
        os.makedirs(self.dir)
        write_job_script(self.dir)
        self.ledger = Ledger(name)
        self.brokers = []
        self.workers = {}
        self.result = PhaseResult(name)
        self.load = None

    def broker(self, **kw):
        b = Broker(self.dir, name="broker%d" % len(self.brokers), heartbeat_interval=HB_MS, liveness=LIVENESS, **kw)
        b.start()
        self.brokers.append(b)
        return b

    def worker(self, broker, name, service, concurrency=3, endpoint=None, netns=None):
        w = Worker(self.dir, endpoint or broker.backend, name, service, service == IDEM, concurrency, netns,
                   batches=BATCHES)
        self.workers[name] = w
        return w

    def wait_workers(self, broker, expect, timeout=10.0):
        """Wait until /metrics shows `expect` = {service: count}; returns seconds or raises."""
        def ok():
            m = broker.metric_values()
            return all(broker.workers(s, m) == n for s, n in expect.items())
        took = wait_until(ok, timeout)
        if took is None:
            m = broker.metric_values()
            raise RuntimeError("workers not registered within %.0f s: want %r, have %r" % (
                timeout, expect, {s: broker.workers(s, m) for s in expect}))
        return took

    def start_load(self, broker, **kw):
        self.load = Load(self.suite.zctx, broker.frontend, self.ledger, seed=zlib.crc32(self.name.encode()), **kw)
        self.load.start()
        return self.load

    def time_out(self, broker, expect, t0, timeout=OUT_BOUND + 5.0):
        """Seconds from t0 until the broker's worker count per service is `expect` (a worker is out)."""
        def ok():
            m = broker.metric_values(timeout=0.5)
            return bool(m) and all(broker.workers(s, m) is not None and broker.workers(s, m) <= n
                                   for s, n in expect.items())
        took = wait_until(ok, timeout)
        return None if took is None else (now() - t0)

    def close(self):
        if self.load and self.load.is_alive():
            self.load.running = False
            self.load.join(5)
        for w in self.workers.values():
            w.kill()
        for b in self.brokers:
            b.stop()


def held_by(ctx, execs, victim):
    """Requests the victim had started (its execution log) and did not answer itself: what became of them."""
    fates = collections.Counter()
    by_token = {r.token: r for r in ctx.ledger.recs.values()}
    for tok, workers in execs.items():
        if victim not in workers or tok not in by_token:
            continue
        rec = by_token[tok]
        out = rec.outcome()
        if out is None:
            fates["none"] += 1
        elif out[1] == 200 and out[2] == victim:
            continue                 # it answered this one before the fault
        elif out[1] == 200:
            fates["200 by %s" % out[2]] += 1
        else:
            fates[str(out[1])] += 1
    return fates


def check_out_time(ctx, what, took):
    r = ctx.result
    if took is None:
        r.fail("%s was never out (bound %.2f s)" % (what, OUT_BOUND))
        return
    r.out_time = max(r.out_time or 0.0, took)
    r.note("%s out after %.3f s (bound (liveness+1) x interval + poll = %.2f s)" % (what, took, OUT_BOUND))
    if took > OUT_BOUND:
        r.fail("%s took %.3f s to be out, over %.2f s" % (what, took, OUT_BOUND))


def check_held(ctx, execs, victim, expect_codes):
    fates = held_by(ctx, execs, victim)
    total = sum(fates.values())
    ctx.result.note("%s held %d request(s) at the fault: %s" % (
        victim, total, ", ".join("%s x%d" % kv for kv in sorted(fates.items())) or "-"))
    if total == 0:
        ctx.result.fail("%s held no request when the fault hit: the phase tested nothing" % victim)
    bad = {k: v for k, v in fates.items() if not any(k.startswith(c) for c in expect_codes)}
    if bad:
        ctx.result.fail("%s's requests ended as %r, expected only %r" % (victim, bad, expect_codes))


def standard_fleet(ctx, b, n_plain=2, n_idem=2, concurrency=3):
    for i in range(n_plain):
        ctx.worker(b, "p%d" % (i + 1), PLAIN, concurrency)
    for i in range(n_idem):
        ctx.worker(b, "i%d" % (i + 1), IDEM, concurrency)
    ctx.wait_workers(b, {PLAIN: n_plain, IDEM: n_idem})


# ---- the phases -----------------------------------------------------------------------------
def phase_baseline(ctx):
    """No fault: the ledger's control. Every request must be 200."""
    b = ctx.broker()
    standard_fleet(ctx, b)
    ctx.start_load(b)
    time.sleep(5)
    ctx.load.finish()

    def verdict(s, execs):
        other = {k: v for k, v in s["codes"].items() if k != 200}
        if other:
            ctx.result.fail("non-200 outcomes with no fault: %r" % other)
    return verdict


def phase_worker_kill9(ctx):
    """kill -9 a non-idempotent and an idempotent worker while they hold requests."""
    b = ctx.broker()
    standard_fleet(ctx, b)
    ctx.start_load(b, window=8)
    time.sleep(2.5)
    t0 = now()
    ctx.workers["p1"].signal(signal.SIGKILL)
    ctx.workers["i1"].signal(signal.SIGKILL)
    took = ctx.time_out(b, {PLAIN: 1, IDEM: 1}, t0)
    check_out_time(ctx, "kill -9'd p1 and i1", took)
    time.sleep(3)
    ctx.load.finish()

    def verdict(s, execs):
        check_held(ctx, execs, "p1", ["502", "504"])
        check_held(ctx, execs, "i1", ["200 by", "504"])
    return verdict


def phase_worker_sigstop(ctx):
    """SIGSTOP a worker of each kind past its liveness, then SIGCONT: it is purged, comes back, and
    its late replies never reach a client."""
    b = ctx.broker()
    standard_fleet(ctx, b)
    ctx.start_load(b, window=8)
    time.sleep(2.5)
    t0 = now()
    ctx.workers["p1"].signal(signal.SIGSTOP)
    ctx.workers["i1"].signal(signal.SIGSTOP)
    took = ctx.time_out(b, {PLAIN: 1, IDEM: 1}, t0)
    check_out_time(ctx, "SIGSTOPped p1 and i1", took)
    time.sleep(0.5)
    ctx.workers["p1"].signal(signal.SIGCONT)
    ctx.workers["i1"].signal(signal.SIGCONT)
    back = wait_until(lambda: (lambda m: b.workers(PLAIN, m) == 2 and b.workers(IDEM, m) == 2)(b.metric_values()), 8)
    ctx.result.note("after SIGCONT, p1 and i1 registered again after %s" % (
        "%.3f s" % back if back is not None else "never (8 s)"))
    time.sleep(3)
    ctx.load.finish()

    def verdict(s, execs):
        check_held(ctx, execs, "p1", ["502", "504"])
        check_held(ctx, execs, "i1", ["200 by", "504"])
    return verdict


def phase_scale_out(ctx):
    """Start with one worker per service under a load beyond them, add two more of each."""
    b = ctx.broker()
    standard_fleet(ctx, b, 1, 1)
    ctx.start_load(b, window=8)
    time.sleep(3)
    for n in ("p2", "p3"):
        ctx.worker(b, n, PLAIN)
    for n in ("i2", "i3"):
        ctx.worker(b, n, IDEM)
    took = ctx.wait_workers(b, {PLAIN: 3, IDEM: 3})
    ctx.result.note("new workers registered after %.3f s" % took)
    time.sleep(5)
    ctx.load.finish()

    def verdict(s, execs):
        served = collections.Counter(w for ws in execs.values() for w in ws)
        ctx.result.note("executions per worker: %s" % ", ".join("%s=%d" % kv for kv in sorted(served.items())))
        for n in ("p2", "p3", "i2", "i3"):
            if served[n] == 0:
                ctx.result.fail("new worker %s never got a request" % n)
        for code in (502,):
            if s["codes"][code]:
                ctx.result.fail("%d x %d while scaling out (no worker was lost)" % (s["codes"][code], code))
    return verdict


def phase_graceful_stop(ctx):
    """SIGTERM a worker of each kind under load: they finish what they hold, no 502."""
    b = ctx.broker()
    standard_fleet(ctx, b)
    ctx.start_load(b, window=8)
    time.sleep(2.5)
    t0 = now()
    ctx.workers["p1"].signal(signal.SIGTERM)
    ctx.workers["i1"].signal(signal.SIGTERM)
    rc = {n: ctx.workers[n].proc.wait(10) for n in ("p1", "i1")}
    ctx.result.note("p1, i1 exit status after SIGTERM: %r (%.3f s)" % (rc, now() - t0))
    for n, c in rc.items():
        if c != 0:
            ctx.result.fail("%s did not exit 0 within 10 s of SIGTERM (status %r)" % (n, c))
    time.sleep(3)
    ctx.load.finish()

    def verdict(s, execs):
        if s["codes"][502]:
            ctx.result.fail("%d x 502 during a graceful stop" % s["codes"][502])
        for n in ("p1", "i1"):
            fates = held_by(ctx, execs, n)
            if fates:
                ctx.result.fail("%s left requests it had started unanswered by itself: %r" % (n, dict(fates)))
    return verdict


def phase_broker_kill9(ctx):
    """kill -9 the broker under load and restart it on the same ports; workers register again
    by themselves, clients keep going. Requests in flight at the crash are counted apart."""
    b = ctx.broker()
    standard_fleet(ctx, b)
    # shorter deadlines: the requests lost at the crash hold the clients' windows until then
    ctx.start_load(b, timeout_ms=1500)
    time.sleep(2.5)
    gone = b.kill9()
    ctx.ledger.crashes.append(gone)
    time.sleep(0.2)
    b.start()
    ctx.result.note("broker killed (-9) and restarted on the same ports %.3f s later" % (now() - gone))
    back = wait_until(lambda: (lambda m: b.workers(PLAIN, m) == 2 and b.workers(IDEM, m) == 2)(b.metric_values()), 10)
    took = now() - gone
    if back is None:
        ctx.result.fail("workers not registered again within 10 s of the broker restart")
    else:
        ctx.result.note("all workers registered again %.3f s after the crash (bound %.1f s)" % (took, RESTART_BOUND))
        if took > RESTART_BOUND:
            ctx.result.fail("workers took %.2f s to register again, over %.1f s" % (took, RESTART_BOUND))
    t_restart = now()
    time.sleep(4.5)
    ctx.load.finish()

    def verdict(s, execs):
        after = [r for r in ctx.ledger.recs.values() if r.t_sent > t_restart and r.outcome() and r.outcome()[1] == 200]
        ctx.result.note("200 after the restart: %d" % len(after))
        if not after:
            ctx.result.fail("no request succeeded after the broker restart")
    return verdict


def phase_broker_sigstop(ctx):
    """SIGSTOP the broker 2 s under load, then SIGCONT. No worker died: any 502 is a failure."""
    b = ctx.broker()
    standard_fleet(ctx, b)
    ctx.start_load(b)
    time.sleep(2.5)
    m0 = b.metric_values()
    b.proc.signal(signal.SIGSTOP)
    time.sleep(2.0)
    b.proc.signal(signal.SIGCONT)
    time.sleep(4.0)
    ctx.load.finish()
    m1 = b.metric_values()
    ctx.result.note("across the stall: workers expired %d, joined %d, left %d; workers now plain=%s idem=%s" % (
        m1.get("scale0_workers_expired_total", 0) - m0.get("scale0_workers_expired_total", 0),
        m1.get("scale0_workers_joined_total", 0) - m0.get("scale0_workers_joined_total", 0),
        m1.get("scale0_workers_left_total", 0) - m0.get("scale0_workers_left_total", 0),
        b.workers(PLAIN, m1), b.workers(IDEM, m1)))

    def verdict(s, execs):
        if s["codes"][502]:
            ctx.result.fail("%d x 502 after a 2 s broker stall (no worker was lost)" % s["codes"][502])
    return verdict


def phase_flood(ctx):
    """A flood beyond capacity: small --max-queue and --max-client-inflight, three clients sending
    open-loop and one that does not read while the flood lasts (10 s). Errors must come fast (503/429), the broker's
    RSS stays bounded, /healthz answers throughout, and every request still gets one outcome."""
    # 4 slots + 20 queued; each client may have 10 in flight: both 503 (queue full) and 429 (client limit)
    b = ctx.broker(extra=["--max-queue", 20, "--max-client-inflight", 10,
                          "--max-client-backlog-bytes", FLOOD_BACKLOG_BUDGET,
                          "--max-total-backlog-bytes", FLOOD_BACKLOG_BUDGET])
    for n in ("p1", "p2"):
        ctx.worker(b, n, PLAIN, concurrency=2)
    ctx.wait_workers(b, {PLAIN: 2})
    rss0 = b.proc.rss_kib()
    probe = {"ok": 0, "fail": 0, "max": 0.0, "rss": rss0 or 0, "errors": []}
    stop = threading.Event()

    def monitor():
        last_probe = 0.0
        while not stop.is_set():
            r = b.proc.rss_kib()
            if r:
                probe["rss"] = max(probe["rss"], r)
            if now() - last_probe >= 0.2:
                last_probe = now()
                t = now()
                try:
                    st, body = b.http_get("/healthz", timeout=1.0)
                    ok = st == 200
                except Exception as e:
                    ok, st = False, repr(e)
                dt = now() - t
                probe["max"] = max(probe["max"], dt)
                if ok:
                    probe["ok"] += 1
                else:
                    probe["fail"] += 1
                    probe["errors"].append(st)
            time.sleep(0.05)
    mon = threading.Thread(target=monitor, daemon=True)
    mon.start()

    pad = b"\n" + b"x" * 1024          # 1 KiB past the token's line: the job reads only the first line
    lg = ctx.ledger
    n_readers = 3
    nonreader = n_readers              # client index of the client that does not read for a while
    # The non-reader sends as fast as it can for the whole window (~10 000/s here): its answers must
    # wait somewhere (ZeroMQ pipes, TCP buffers, the broker) and still reach it when it reads.
    quota = [10000] * n_readers + [150000]
    reader_rate = 1000                 # per reading client and second, for the whole sending window
    socks = []
    for i in range(n_readers + 1):
        s = ctx.suite.zctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        if i == nonreader:
            # a modest client: small receive queue and kernel buffer, so its answers back up at the broker
            s.setsockopt(zmq.RCVHWM, 100)
            s.setsockopt(zmq.RCVBUF, 16384)
        s.connect(b.frontend)
        if BATCHES:
            s.send_multipart(HELLO_BATCHES)
        socks.append(s)
    sent = [0] * len(socks)
    t_start = now()
    t_end_send = t_start + 10.0
    t_read_nonreader = t_end_send      # it reads nothing while the flood lasts
    give_up = None
    next_check = 0.0
    try:
        while True:
            t = now()
            for i, s in enumerate(socks):
                room = 50 if i == nonreader else min(50, int((t - t_start) * reader_rate) - sent[i])
                ready = []
                if t <= t_end_send:
                    for rid in range(sent[i] + 1, min(quota[i], sent[i] + max(0, room)) + 1):
                        ready.append((rid, lg.token(i, rid, PLAIN, 0.03)))
                # one by one (S0/1), or with --batches on as BATCHes of up to 50 (1 KiB bodies:
                # separate frames, at most 64 a batch)
                step = 50 if BATCHES else 1
                for k in range(0, len(ready), step):
                    chunk = ready[k:k + step]
                    n = send_requests(s, [(rid, PLAIN, TIMEOUT_MS, tok.encode() + pad) for rid, tok in chunk], lg.wire)
                    t_sent = now()
                    for rid, tok in chunk[:n]:
                        lg.sent(i, rid, PLAIN, tok, t_sent, TIMEOUT_MS / 1000.0)
                        sent[i] += 1
                    if n < len(chunk):
                        break
                if i == nonreader and t < t_read_nonreader:
                    continue
                for _ in range(2000):
                    try:
                        frames = s.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    lg.replied(i, frames, now())
            done_sending = all(n >= q for n, q in zip(sent, quota)) or t > t_end_send
            if done_sending and t > t_read_nonreader:
                if give_up is None:
                    give_up = t + TIMEOUT_MS / 1000.0 + MARGIN
                if t > give_up or (t > next_check and not lg.pending()):
                    break
                if t > next_check:
                    next_check = t + 0.1
            time.sleep(0.001)
    finally:
        stop.set()
        mon.join(3)
        for s in socks:
            s.close(0)
    r = ctx.result
    m = b.metric_values()
    r.note("sent per client: %s in %.1f s (client %d read nothing while the flood lasted)" % (
        sent, min(now(), t_end_send) - t_start, nonreader))
    r.note("broker dropped messages: %s" % ", ".join(
        "%s=%d" % (k.split('"')[1], v) for k, v in sorted(m.items()) if k.startswith("scale0_dropped_messages_total")))
    asan = procs.asan_instrumented()
    growth_bound = FLOOD_RSS_GROWTH_ASAN_KIB if asan else FLOOD_RSS_GROWTH_KIB
    growth = probe["rss"] - (rss0 or 0)
    r.note("broker RSS: %d KiB idle, %d KiB max during the flood: +%d KiB (bound +%d KiB%s)" % (
        rss0 or 0, probe["rss"], growth, growth_bound, ", ASan build" if asan else ""))
    r.note("/healthz during the flood: %d answered, %d failed, slowest %.3f s" % (
        probe["ok"], probe["fail"], probe["max"]))

    def verdict(s, execs):
        if rss0 is None or growth > growth_bound:
            r.fail("broker RSS grew by %d KiB during the flood, over the bound %d KiB" % (growth, growth_bound))
        if probe["fail"] or probe["ok"] < 10:
            r.fail("/healthz failed %d time(s) (%d answered) during the flood: %r" % (
                probe["fail"], probe["ok"], probe["errors"][:5]))
        lat = sorted(rec.replies[0][0] - rec.t_sent for rec in lg.recs.values()
                     if rec.client != nonreader and rec.replies and rec.replies[0][1] in (429, 503))
        if not lat:
            r.fail("no 503/429 at all: the flood did not go beyond capacity")
        else:
            p50, p99 = lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))]
            r.note("503/429 latency at reading clients: n=%d p50=%.3f s p99=%.3f s max=%.3f s (bound p99 %.2f s)" % (
                len(lat), p50, p99, lat[-1], FLOOD_ERR_P99))
            if p99 > FLOOD_ERR_P99:
                r.fail("503/429 not fast: p99 %.3f s over %.2f s" % (p99, FLOOD_ERR_P99))
        if s["lost_by_client"]:
            r.note("lost by client: %s" % dict(s["lost_by_client"]))
    return verdict


def phase_partition(ctx):
    """A worker of each kind in its own network namespace; the host side of their veth goes down
    (no FIN, no RST). They must be out within liveness x interval, and what they held gets its
    outcome (502 or re-dispatch for idempotent, or 504)."""
    why = Netns.unavailable()
    if why:
        raise Skip(why)
    ns = Netns()
    try:
        ns.setup()
    except Exception as e:
        ns.teardown()
        raise Skip("cannot create the namespace / veth pair: %s" % e)
    try:
        # frontend on loopback; backend and heartbeat on the host side of the veth
        b = ctx.broker(backend_host=ns.host_addr)
        ctx.result.note("namespace %s, %s (%s) <-> %s (%s); broker backend %s" % (
            ns.name, ns.host_if, ns.host_addr, ns.ns_if, ns.ns_addr, b.backend))
        ctx.worker(b, "pn", PLAIN, netns=ns.name)
        ctx.worker(b, "in", IDEM, netns=ns.name)
        ctx.worker(b, "pl", PLAIN)                   # local ones reach the same address via the host
        ctx.worker(b, "il", IDEM)
        ctx.wait_workers(b, {PLAIN: 2, IDEM: 2})
        ctx.start_load(b, window=8)
        time.sleep(2.5)
        t0 = now()
        ns.link_down()
        took = ctx.time_out(b, {PLAIN: 1, IDEM: 1}, t0)
        check_out_time(ctx, "partitioned pn and in", took)
        time.sleep(3)
        ctx.load.finish()
    finally:
        for n in ("pn", "in"):
            if n in ctx.workers:
                ctx.workers[n].kill()
        ns.teardown()

    def verdict(s, execs):
        check_held(ctx, execs, "pn", ["502", "504"])
        check_held(ctx, execs, "in", ["200 by", "504"])
    return verdict


PHASES = [
    ("baseline", phase_baseline),
    ("worker-kill9", phase_worker_kill9),
    ("worker-sigstop", phase_worker_sigstop),
    ("scale-out", phase_scale_out),
    ("graceful-stop", phase_graceful_stop),
    ("broker-kill9", phase_broker_kill9),
    ("broker-sigstop", phase_broker_sigstop),
    ("flood", phase_flood),
    ("partition", phase_partition),
]


# ---------------------------------------------------------------------------------------------
# Running and printing
# ---------------------------------------------------------------------------------------------
class Suite:
    def __init__(self, keep):
        self.rundir = tempfile.mkdtemp(prefix="scale0-chaos-")
        self.zctx = zmq.Context()
        self.keep = keep


def check_wire(ctx):
    """With --batches on: what the clients sent and got in BATCHes, and the handshake: every
    WELCOME answering a HELLO with flags 0x01 ends with a flags byte whose bit 0 is set."""
    if not BATCHES:
        return
    w, r = ctx.ledger.wire, ctx.result
    r.note("batches: clients sent %d BATCH(es) (%d requests), received %d BATCH(es) (%d replies); %d WELCOME(s)" % (
        w.batches_out, w.entries_out, w.batches_in, w.entries_in, len(w.welcomes)))
    if not w.welcomes:
        r.fail("no WELCOME answered the clients' HELLO")
    bad = [f for f in w.welcomes if f is None or not f & 0x01]
    if bad:
        r.fail("%d WELCOME(s) to a HELLO with flags 0x01 without the batches flag: %r" % (len(bad), bad[:5]))


def run_phase(suite, name, fn):
    log("\n=== phase %s ===" % name)
    t0 = now()
    ctx = Ctx(suite, name)
    r = ctx.result
    try:
        verdict = fn(ctx)
        ctx.close()
        execs = read_exec_logs(ctx.dir)
        s = ctx.ledger.summarize(execs)
        r.summary = s
        if verdict:
            verdict(s, execs)
        check_wire(ctx)
        for k, frames in enumerate(ctx.ledger.malformed_samples):
            path = os.path.join(ctx.dir, "malformed-%d.bin" % k)
            with open(path, "wb") as f:          # each frame: u32 length, then its bytes
                for fr in frames:
                    f.write(struct.pack(">I", len(fr)) + fr)
            r.note("malformed message to a client: %s (saved in %s)" % (describe(frames), path))
        for key in ("lost", "dup", "crossed", "2x-exec", "idem>2x", "ok-unexecuted", "malformed"):
            if s[key]:
                r.fail("%s = %d" % (key, s[key]))
    except Skip as e:
        r.skipped = str(e)
        log("    SKIPPED: %s" % e)
    except Exception as e:
        import traceback
        traceback.print_exc()
        r.fail("phase error: %r" % (e,))
        for b in ctx.brokers:
            if b.proc:
                log("    broker stderr tail:\n" + b.proc.stderr_tail(2000))
    finally:
        ctx.close()
    r.seconds = now() - t0
    print_table([r])
    return r


def print_table(results):
    codes = sorted({c for r in results if r.summary for c in r.summary["codes"] if c != 200})
    cols = ["phase", "sent", "ok"] + [str(c) for c in codes] + ["lost", "lost@crash", "dup", "crossed",
                                                                "2x-exec", "idem-reexec", "late", "out(s)",
                                                                "time(s)", "verdict"]
    rows = []
    for r in results:
        if r.summary is None:
            row = [r.name] + ["-"] * (len(cols) - 3) + ["%.1f" % r.seconds,
                                                       "SKIP" if r.skipped else "FAIL"]
        else:
            s = r.summary
            row = [r.name, s["sent"], s["codes"][200]] + [s["codes"][c] for c in codes] + [
                s["lost"], s["lost@crash"], s["dup"], s["crossed"], s["2x-exec"], s["idem-reexec"], s["late"],
                "%.3f" % r.out_time if r.out_time is not None else "-", "%.1f" % r.seconds,
                "FAIL" if r.violations else "ok"]
        rows.append([str(x) for x in row])
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(cols)]
    line = "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cols, widths)))
    log(line)
    log("-" * len(line))
    for row in rows:
        log("  ".join(x.rjust(w) if i else x.ljust(w) for i, (x, w) in enumerate(zip(row, widths))))


def main():
    ap = argparse.ArgumentParser(description="Scale0 fault-ledger chaos suite")
    ap.add_argument("--phase", action="append", help="run only this phase (repeatable)")
    ap.add_argument("--list", action="store_true", help="list the phases and exit")
    ap.add_argument("--keep", action="store_true", help="keep the run directory (logs) even on success")
    ap.add_argument("--batches", choices=("on", "off"), default="off",
                    help="on: workers batch and clients speak S0/2 with BATCHes; off (default): S0/1 clients, "
                         "workers with --no-batches")
    args = ap.parse_args()
    global BATCHES
    BATCHES = args.batches == "on"
    if args.list:
        for n, fn in PHASES:
            print("%-16s %s" % (n, " ".join((fn.__doc__ or "").split())))
        return 0
    names = [n for n, _ in PHASES]
    chosen = args.phase or names
    for n in chosen:
        if n not in names:
            print("unknown phase %r; phases: %s" % (n, ", ".join(names)), file=sys.stderr)
            return 2
    if not (os.path.isfile(procs.BIN) and os.access(procs.BIN, os.X_OK)):
        print("scale0 binary not found at %r (set SCALE0_BIN)" % procs.BIN, file=sys.stderr)
        return 2

    def on_signal(signum, frame):
        raise SystemExit(128 + signum)     # atexit then kills every process group we started
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    suite = Suite(args.keep)
    log("scale0 chaos: binary %s, run directory %s" % (procs.BIN, suite.rundir))
    log("heartbeat %d ms x liveness %d; request deadline %d ms; give-up margin %.1f s; batches %s (%s)" % (
        HB_MS, LIVENESS, TIMEOUT_MS, MARGIN, args.batches,
        "S0/2 clients with BATCHes, batching workers" if BATCHES else "S0/1 clients, workers --no-batches"))
    t0 = now()
    results = [run_phase(suite, n, fn) for n, fn in PHASES if n in chosen]
    procs.kill_all()
    log("\n=== ledger (%.1f s in all) ===" % (now() - t0))
    print_table(results)
    failed = [r for r in results if r.violations]
    for r in results:
        if r.skipped:
            log("%s: SKIPPED (%s)" % (r.name, r.skipped))
        for v in r.violations:
            log("%s: %s" % (r.name, v))
    suite.zctx.term()
    if failed or args.keep:
        log("logs kept in %s" % suite.rundir)
    else:
        shutil.rmtree(suite.rundir, ignore_errors=True)
    log("RESULT: %s" % ("FAIL (%s)" % ", ".join(r.name for r in failed) if failed else "PASS"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
