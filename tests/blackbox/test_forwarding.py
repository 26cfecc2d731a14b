# SPDX-License-Identifier: Apache-2.0
"""Forwarding in a family of brokers (docs/family.md; the "Forwarding" issue), against the real binary.

Three `scale0 broker` processes on random loopback ports form a family from a chain of seeds
(A alone, B --peer A, C --peer B: a full mesh by gossip), with fast liveness (heartbeat 200 ms,
liveness 3). Clients only ever talk to A. What is tested:

  1. a request at A whose only worker is on C is forwarded one hop and answered by A: the worker's
     status, message and body unchanged; A counts it out, C counts it in (`scale0 status --json`
     forwarded_out / forwarded_in, and /metrics scale0_family_forwarded_total{direction});
  2. local preference: with a worker on A and one on C, 20 sequential requests at A are all served
     by A's worker and nothing is forwarded; once A's worker leaves, the next one goes to C;
  3. overflow: A's only worker (concurrency 1, slow) is busy; concurrent requests go to C's fast
     worker and are answered before A's worker is done;
  4. 200 pipelined requests from one client at A, workers only on B and C: a ledger by request id,
     every id exactly one 200 with its own body, no duplicates, B and C both serve some, A counts
     200 out, B and C count 200 in between them and forward none further (one hop);
  5. A keeps the deadline: a worker on C slower than the request timeout: one 504 from A around the
     timeout, the late reply is dropped, and the client is served afterwards;
  6. kill -9 of C while it holds a non-idempotent forwarded request: one 502 "peer broker lost
     while holding the request" once A judges C lost, never a re-dispatch to B;
  7. the same with an idempotent service (the workers' flag; and, separately, the brokers'
     --idempotent configuration): the request is re-dispatched once and served via B;
  8. a Majordomo 0.1 (MDPC01) client at A is served by a worker on C, in MDP form;
  9. the worker on C is killed -9 while holding a forwarded request: C's worker-death rule (502,
     non-idempotent) reaches the client through A, exactly once;
 10. no worker anywhere in the family: 503 "no worker for service" after the no-worker timeout, as
     without a family.

Clients and most workers are written here from docs/protocol.md (harness.NativeClient,
harness.NativeWorker, harness.MdpClient); test 9 uses a `scale0 worker` process so it can be
killed with -9. Brokers of the first class are shared by its tests (each test uses services of its
own); the peer-loss tests start a family of their own. Every wait is bounded.
"""

import json
import threading
import time
import unittest

import zmq

from harness import (scrape, b_, binary_available, Broker, family_status, free_port, NativeWorker, now, peers_of, run_cli, Scale0TestCase, Scale0Worker, VERBOSE, wait_until)

HB_MS = 200
LIVENESS = 3
NO_WORKER_MS = 1000
# When A judges a silent peer lost: its liveness x its heartbeat interval, plus the slack the
# feature allows (A looks at its peers a quarter of its own interval late, and so on).
LOSS_S = LIVENESS * HB_MS / 1000.0 + 1.5
MARGIN = 1.0  # seconds, for a loaded machine (2 cores, often building)
LOST_MSG = b"peer broker lost while holding the request"


# ------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------


def forwarded(broker):
    """(forwarded_out, forwarded_in) from the broker's status JSON; raises if it has none."""
    st = family_status(broker)
    if "forwarded_out" not in st or "forwarded_in" not in st:
        raise AssertionError("scale0 status --json of %s has no top-level forwarded_out / forwarded_in: "
                             "keys %r" % (broker.frontend, sorted(st)))
    return st["forwarded_out"], st["forwarded_in"]


def forwarded_lenient(broker):
    """(forwarded_out, forwarded_in), None for what the status lacks (checked later by fwd_delta,
    so that a test still checks behaviour first)."""
    st = family_status(broker)
    return st.get("forwarded_out"), st.get("forwarded_in")


def family_broker(peers=(), idempotent=None):
    """A Broker object (not started) for a family: fast liveness, its own peer port."""
    extra = []
    for p in peers:
        extra += ["--peer", p]
    return Broker(heartbeat_interval=HB_MS, liveness=LIVENESS, no_worker_timeout=NO_WORKER_MS,
                  idempotent=idempotent, peer_port=free_port(), extra=extra)


def wait_mesh(brokers, timeout=8.0):
    everyone = {x.peer for x in brokers}

    def mesh():
        for x in brokers:
            alive = {e for e, p in peers_of(family_status(x)).items() if p["state"] == "alive"}
            if alive != everyone - {x.peer}:
                return False
        return True
    return wait_until("the full mesh of %d brokers" % len(brokers), mesh, timeout)[1]


def wait_capacity(at, peer, service, idle=1, timeout=6.0):
    """Waits until broker `at` shows `peer` alive with at least `idle` idle credit for service."""
    def seen():
        p = peers_of(family_status(at)).get(peer.peer)
        if not p or p["state"] != "alive":
            return None
        for s in p["services"]:
            if s["name"] == service and s["idle"] >= idle:
                return s
        return None
    return wait_until("%s's capacity for %r (idle >= %d) seen on %s" % (peer.peer, service, idle, at.peer),
                      seen, timeout)[0]


class TagWorker(NativeWorker):
    """A native worker that says who it is: REPLY 200, message = tag, body = [tag] + request body.
    A first body frame b"sleep=MS" makes it answer after MS (else after delay_ms); hold=True: it
    never answers. Other requests are served meanwhile, up to its concurrency."""

    def __init__(self, ctx, endpoint, services, tag, concurrency=1, delay_ms=0, hold=False,
                 idempotent=False, **kw):
        self.tag = b_(tag)
        self.delay_ms = delay_ms
        self.hold = hold
        self._timers = []
        super().__init__(ctx, endpoint, services, concurrency=concurrency, flags=1 if idempotent else 0,
                         mode=self._on_job, name=tag, **kw)

    def _on_job(self, job):
        if self.hold:
            return None
        delay = self.delay_ms
        if job.body and job.body[0].startswith(b"sleep="):
            delay = int(job.body[0][6:])
        body = [self.tag] + list(job.body)
        if delay <= 0:
            return (200, self.tag, body)
        t = threading.Timer(delay / 1000.0, self.reply, args=(job, 200, self.tag, body))
        t.daemon = True
        self._timers.append(t)
        t.start()
        return None

    def stop(self):
        for t in self._timers:
            t.cancel()
        super().stop()


class ForwardingCase(Scale0TestCase):
    def tag_worker(self, broker, services, tag, **kw):
        w = TagWorker(self.ctx, broker.backend, services, tag, **kw)
        self._threads.append(w)
        w.start()
        w.wait_welcome(10.0)
        return w

    def dump_on_failure(self, brokers):
        if self._failed() or VERBOSE:
            for name, b in brokers:
                text = b.stderr_text()
                if text:
                    print("\n----- broker %s stderr (%s) -----\n%s\n-----" % (name, self.id(), text[-4000:]))

    def start_family(self, idempotent=None):
        """A, B (--peer A), C (--peer B), started for this test only and meshed."""
        a = self.start_broker(heartbeat_interval=HB_MS, liveness=LIVENESS, no_worker_timeout=NO_WORKER_MS,
                              idempotent=idempotent, peer_port=free_port())
        b = self.start_broker(heartbeat_interval=HB_MS, liveness=LIVENESS, no_worker_timeout=NO_WORKER_MS,
                              idempotent=idempotent, peer_port=free_port(), extra=["--peer", a.peer])
        c = self.start_broker(heartbeat_interval=HB_MS, liveness=LIVENESS, no_worker_timeout=NO_WORKER_MS,
                              idempotent=idempotent, peer_port=free_port(), extra=["--peer", b.peer])
        wait_mesh([a, b, c])
        return a, b, c

    def fwd_delta(self, broker, before, which):
        """forwarded_out (which=0) or forwarded_in (1) of broker now, minus before (from
        forwarded_lenient); fails if the status lacks the counter."""
        after = forwarded(broker)
        self.assertIsNotNone(before[which], "the status had no forwarded counters before")
        return after[which] - before[which]

    def assert_one_reply(self, client, rid, timeout):
        """The one reply for rid within timeout; nothing more for 1 s after it."""
        r = client.get_reply(rid, timeout)
        self.assertIsNotNone(r, "no reply within %.1f s" % timeout)
        extra = client.drain_replies(1.0)
        self.assertEqual(extra, [], "exactly one reply per request: got more %r" % (extra,))
        return r


# ------------------------------------------------------------------------------------------------
# One family shared by the tests that do not lose a broker
# ------------------------------------------------------------------------------------------------
class ForwardingTest(ForwardingCase):
    a = b = c = None

    @classmethod
    def setUpClass(cls):
        if not binary_available():
            raise unittest.SkipTest("scale0 binary not found (set SCALE0_BIN)")
        cls.brokers = []
        try:
            cls.a = family_broker()
            cls.brokers.append(cls.a)
            cls.a.start()
            cls.b = family_broker([cls.a.peer])
            cls.brokers.append(cls.b)
            cls.b.start()
            cls.c = family_broker([cls.b.peer])
            cls.brokers.append(cls.c)
            cls.c.start()
            took = wait_mesh([cls.a, cls.b, cls.c])
            print("\n  family A<-B<-C meshed in %.2f s" % took)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        for b in getattr(cls, "brokers", []):
            b.kill()
            if VERBOSE:
                print("\n----- broker stderr -----\n%s\n-----" % b.stderr_text()[-6000:])
            b.cleanup()
        cls.brokers = []

    def setUp(self):
        super().setUp()
        for x in (self.a, self.b, self.c):
            self.assertTrue(x.alive(), "a broker of the shared family died: %s" % x.stderr_text()[-3000:])
        self.addCleanup(self.dump_on_failure, [("A", self.a), ("B", self.b), ("C", self.c)])

    # 1 -------------------------------------------------------------------------------------------
    def test_01_request_at_a_is_served_by_the_only_worker_on_c(self):
        a, c = self.a, self.c
        svc = "fwd.basic"
        wc = self.tag_worker(c, [svc], "C", concurrency=2)
        wait_capacity(a, c, svc, idle=2)
        a0, c0 = forwarded_lenient(a), forwarded_lenient(c)
        cl = self.client(a)
        t0 = now()
        rid = cl.send_request(svc, [b"hello", b"family"], timeout_ms=5000)
        r = self.assert_one_reply(cl, rid, 5.0)
        print("\n  A -> C -> A in %.1f ms" % ((r.t - t0) * 1000))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, [b"C", b"hello", b"family"], "the worker's body, unchanged")
        self.assertEqual(r.message, b"C", "the worker's message, unchanged")
        self.assertEqual(len(wc.jobs), 1, "C's worker got the request once")
        self.assertEqual(wc.jobs[0].body, [b"hello", b"family"])
        self.assertEqual(wc.jobs[0].service, b_(svc))
        # a few more, one at a time: each is answered
        for i in range(5):
            r = cl.request(svc, [b"n%d" % i], timeout_ms=5000, wait=6.0)
            self.assertEqual((r.status, r.body), (200, [b"C", b"n%d" % i]))
        self.assertEqual(self.fwd_delta(a, a0, 0), 6, "A counts the requests it forwarded (forwarded_out)")
        self.assertEqual(self.fwd_delta(c, c0, 1), 6, "C counts the requests it accepted from a peer (forwarded_in)")
        ma, mc = scrape(a), scrape(c)
        key_out = 'scale0_family_forwarded_total{direction="out"}'
        key_in = 'scale0_family_forwarded_total{direction="in"}'
        self.assertIn(key_out, ma, "A's /metrics")
        self.assertIn(key_in, mc, "C's /metrics")
        self.assertGreaterEqual(ma[key_out], 6)
        self.assertGreaterEqual(mc[key_in], 6)
        self.assertEqual(ma[key_out], forwarded(a)[0], "/metrics and status agree")
        self.assertEqual(mc[key_in], forwarded(c)[1], "/metrics and status agree")

    # 2 -------------------------------------------------------------------------------------------
    def test_02_local_workers_are_preferred_while_they_have_credit(self):
        a, c = self.a, self.c
        svc = "fwd.local"
        wa = self.tag_worker(a, [svc], "A", concurrency=1)
        self.tag_worker(c, [svc], "C", concurrency=4)
        wait_capacity(a, c, svc, idle=4)
        a0 = forwarded_lenient(a)
        cl = self.client(a)
        tags = []
        for i in range(20):
            r = cl.request(svc, [b"seq%d" % i], timeout_ms=5000, wait=6.0)
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.body[1:], [b"seq%d" % i])
            tags.append(r.body[0])
        self.assertEqual(tags, [b"A"] * 20, "A's idle local worker serves every request")
        self.assertEqual(self.fwd_delta(a, a0, 0), 0, "nothing forwarded while the local worker had credit")
        # A's worker leaves: now the request goes to C (so C was there to take it all along)
        wa.leave()
        time.sleep(0.3)
        wa.stop()
        r = cl.request(svc, [b"after"], timeout_ms=5000, wait=6.0)
        self.assertEqual((r.status, r.body), (200, [b"C", b"after"]), "with no local worker, C serves")
        self.assertEqual(self.fwd_delta(a, a0, 0), 1)

    # 3 -------------------------------------------------------------------------------------------
    def test_03_overflow_goes_to_the_peer_while_the_local_worker_is_busy(self):
        a, c = self.a, self.c
        svc = "fwd.overflow"
        wa = self.tag_worker(a, [svc], "A", concurrency=1, delay_ms=1000)
        self.tag_worker(c, [svc], "C", concurrency=8)
        wait_capacity(a, c, svc, idle=8)
        cl = self.client(a)
        t0 = now()
        first = cl.send_request(svc, [b"first"], timeout_ms=8000)
        self.assertIsNotNone(wa.next_job(3.0), "the first request goes to A's idle worker")
        sent = now()
        rids = [cl.send_request(svc, [b"over%d" % i], timeout_ms=8000) for i in range(3)]
        got = []
        for rid in rids:
            r = cl.get_reply(rid, 5.0)
            self.assertIsNotNone(r, "no reply for an overflow request")
            got.append(r)
        for i, r in enumerate(got):
            self.assertEqual((r.status, r.body), (200, [b"C", b"over%d" % i]), r)
            self.assertLess(r.t - sent, 0.8, "overflow served by C at once, not queued behind A's "
                                             "busy worker (%.2f s)" % (r.t - sent))
        r0 = cl.get_reply(first, 5.0)
        self.assertIsNotNone(r0)
        self.assertEqual((r0.status, r0.body), (200, [b"A", b"first"]))
        self.assertGreaterEqual(r0.t - t0, 0.9)
        self.assertTrue(all(r.t < r0.t for r in got), "the overflow finished before A's worker")
        self.assertEqual(len(wa.jobs), 1, "A's busy worker got nothing more")
        self.assertEqual(cl.drain_replies(0.5), [])

    # 4 -------------------------------------------------------------------------------------------
    def test_04_two_hundred_pipelined_requests_ledger(self):
        a, b, c = self.a, self.b, self.c
        svc = "fwd.pipe"
        n = 200
        wb = self.tag_worker(b, [svc], "B", concurrency=100, delay_ms=300)
        wc = self.tag_worker(c, [svc], "C", concurrency=100, delay_ms=300)
        wait_capacity(a, b, svc, idle=100)
        wait_capacity(a, c, svc, idle=100)
        before = {x: forwarded_lenient(x) for x in (a, b, c)}
        cl = self.client(a)
        t0 = now()
        sent = {}
        for i in range(n):
            rid = cl.send_request(svc, [b"p%d" % i], timeout_ms=10000)
            sent[rid] = b"p%d" % i
        ledger = {rid: [] for rid in sent}
        strays = []
        deadline = now() + 12.0
        while now() < deadline and any(not v for v in ledger.values()):
            r = cl.recv_reply(max(0.01, deadline - now()))
            if r is None:
                break
            (ledger[r.rid] if r.rid in ledger else strays).append(r)
        took = now() - t0
        for r in cl.drain_replies(1.0):  # duplicates, if any, arrive here
            (ledger[r.rid] if r.rid in ledger else strays).append(r)
        missing = [rid for rid, v in ledger.items() if not v]
        dups = {rid: v for rid, v in ledger.items() if len(v) > 1}
        self.assertEqual(strays, [], "replies for ids never sent")
        self.assertEqual(missing, [], "%d of %d requests got no reply" % (len(missing), n))
        self.assertEqual(dups, {}, "requests answered more than once")
        served = {b"B": 0, b"C": 0}
        for rid, (r,) in ledger.items():
            self.assertEqual(r.status, 200, r)
            self.assertIn(r.body[0], served, r)
            self.assertEqual(r.body[1:], [sent[rid]], "each reply carries its own request's body")
            served[r.body[0]] += 1
        print("\n  %d pipelined at A: B served %d, C served %d, in %.2f s"
              % (n, served[b"B"], served[b"C"], took))
        self.assertGreater(served[b"B"], 0, "B served none")
        self.assertGreater(served[b"C"], 0, "C served none")
        self.assertEqual(len(wb.jobs) + len(wc.jobs), n, "each request reached one worker once")
        self.assertEqual(self.fwd_delta(a, before[a], 0), n, "A forwarded each request once")
        self.assertEqual(self.fwd_delta(b, before[b], 1) + self.fwd_delta(c, before[c], 1), n,
                         "B and C accepted them between them")
        self.assertEqual(self.fwd_delta(b, before[b], 0), 0, "a forwarded request is never forwarded again (B)")
        self.assertEqual(self.fwd_delta(c, before[c], 0), 0, "a forwarded request is never forwarded again (C)")

    # 5 -------------------------------------------------------------------------------------------
    def test_05_a_keeps_the_deadline_of_a_forwarded_request(self):
        a, c = self.a, self.c
        svc = "fwd.deadline"
        wc = self.tag_worker(c, [svc], "C", concurrency=4)
        wait_capacity(a, c, svc, idle=4)
        cl = self.client(a)
        t0 = now()
        rid = cl.send_request(svc, [b"sleep=2500", b"slow"], timeout_ms=1000)
        job = wc.next_job(3.0)
        self.assertIsNotNone(job, "the request is forwarded to C's worker")
        self.assertTrue(1 <= job.timeout_ms <= 1000,
                        "C's worker is given the time left of A's deadline (1..1000 ms): %r" % job)
        r = cl.get_reply(rid, 4.0)
        self.assertIsNotNone(r, "no 504 within 4 s for a 1 s deadline")
        elapsed = r.t - t0
        print("\n  504 from A after %.2f s (timeout 1.0 s)" % elapsed)
        self.assertEqual(r.status, 504, r)
        self.assertGreaterEqual(elapsed, 0.9, "504 before the deadline")
        self.assertLessEqual(elapsed, 2.0, "504 well after the deadline")
        # C's worker answers at 2.5 s: that late reply never reaches the client
        left = 3.3 - (now() - t0)
        late = cl.drain_replies(max(0.5, left))
        self.assertEqual(late, [], "one outcome only: the late reply is dropped")
        self.assertGreaterEqual(len(wc.jobs), 1)
        # and the client is served as usual afterwards
        r = cl.request(svc, [b"again"], timeout_ms=5000, wait=6.0)
        self.assertEqual((r.status, r.body), (200, [b"C", b"again"]))
        self.assertEqual(cl.drain_replies(0.3), [])

    # 8 -------------------------------------------------------------------------------------------
    def test_08_majordomo_client_at_a_is_served_by_a_worker_on_c(self):
        a, c = self.a, self.c
        svc = "fwd.mdp"
        wc = self.tag_worker(c, [svc], "C", concurrency=2)
        wait_capacity(a, c, svc, idle=2)
        a0 = forwarded_lenient(a)
        m = self.mdp_client(a, "req")
        for i in range(3):
            r = m.request(svc, [b"mdp%d" % i, b"two"], timeout=6.0)
            self.assertEqual(r.service, b_(svc), "the MDP reply names the service")
            self.assertEqual(r.body, [b"C", b"mdp%d" % i, b"two"], r)
        d = self.mdp_client(a, "dealer")
        r = d.request(svc, [b"dealer"], timeout=6.0)
        self.assertEqual((r.service, r.body), (b_(svc), [b"C", b"dealer"]))
        self.assertEqual(len(wc.jobs), 4)
        self.assertEqual(self.fwd_delta(a, a0, 0), 4)

    # 9 -------------------------------------------------------------------------------------------
    def test_09_worker_on_c_killed_holding_a_forwarded_request(self):
        a, c = self.a, self.c
        svc = "fwd.wdie"
        w = self.scale0_worker(c, [svc], name="victim", delay=8000, concurrency=1)
        wait_capacity(a, c, svc, idle=1, timeout=10.0)
        in0 = forwarded(c)[1]
        cl = self.client(a)
        rid = cl.send_request(svc, [b"doomed"], timeout_ms=15000)
        wait_until("C accepted the forwarded request", lambda: forwarded(c)[1] > in0, 3.0)
        time.sleep(0.4)  # C dispatches it at once to its idle worker
        self.assertEqual(cl.drain_replies(0.05), [], "no reply while the worker holds it")
        t_kill = now()
        w.sigkill()
        bound = LIVENESS * HB_MS / 1000.0 + MARGIN + 1.0
        r = self.assert_one_reply(cl, rid, bound + 3.0)
        print("\n  502 via A %.2f s after the worker on C died" % (r.t - t_kill))
        self.assertEqual(r.status, 502, r)
        self.assertNotEqual(r.message, LOST_MSG, "C is alive: its own worker-death answer, not a peer loss")
        self.assertLessEqual(r.t - t_kill, bound)
        self.assertTrue(self.c.alive())

    # 10 ------------------------------------------------------------------------------------------
    def test_10_no_worker_anywhere_is_503_as_before(self):
        a = self.a
        a0 = forwarded_lenient(a)
        cl = self.client(a)
        t0 = now()
        rid = cl.send_request("fwd.nobody", [b"x"], timeout_ms=10000)
        r = self.assert_one_reply(cl, rid, 5.0)
        elapsed = r.t - t0
        self.assertEqual((r.status, r.message), (503, b"no worker for service"), r)
        self.assertGreaterEqual(elapsed, NO_WORKER_MS / 1000.0 - 0.1)
        self.assertLessEqual(elapsed, NO_WORKER_MS / 1000.0 + 1.5)
        self.assertEqual(self.fwd_delta(a, a0, 0), 0, "nothing to forward to")


    def test_11_hello_tells_a_client_the_familys_frontends_and_idempotent_services(self):
        """S0/2 HELLO (docs/family.md): WELCOME lists the broker's own frontend first, then its
        peers', and the services every worker of the family serves idempotently."""
        w = self.tag_worker(self.c, ["fwd.hello-idem"], "C", idempotent=True)
        wait_capacity(self.a, self.c, "fwd.hello-idem")
        s = self.ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(self.a.frontend)
        try:
            s.send_multipart([b"", b"S0C2\x05"])
            self.assertTrue(s.poll(5000), "no WELCOME")
            parts = s.recv_multipart()
        finally:
            s.close()
            w.stop()
        self.assertEqual(parts[0], b"")
        p = parts[1]
        self.assertEqual(p[:5], b"S0C2\x06")
        at = 13
        count = int.from_bytes(p[at:at + 2], "big")
        at += 2
        frontends = []
        for _ in range(count):
            n = int.from_bytes(p[at:at + 2], "big")
            frontends.append(p[at + 2:at + 2 + n].decode())
            at += 2 + n
        services = []
        for _ in range(int.from_bytes(p[at:at + 2], "big")):
            n = p[at + 2]
            services.append(p[at + 3:at + 3 + n].decode())
            at += 1 + n
        self.assertEqual(frontends[0], self.a.frontend)
        self.assertEqual(set(frontends), {self.a.frontend, self.b.frontend, self.c.frontend})
        self.assertIn("fwd.hello-idem", services)


# ------------------------------------------------------------------------------------------------
# A peer lost while it holds a forwarded request: a family per test
# ------------------------------------------------------------------------------------------------
class PeerLostTest(ForwardingCase):

    def setUp(self):
        super().setUp()
        self.addCleanup(lambda: self.dump_on_failure([("#%d" % i, b) for i, b in enumerate(self._brokers)]))

    def hold_at_c_then_kill_c(self, svc, idempotent_workers, broker_idempotent=None):
        """A request at A forwarded to C's worker (which never answers); then B's worker for the
        service shows on A; then C is killed -9. Returns (reply, seconds after the kill, B's worker,
        C's worker)."""
        a, b, c = self.start_family(idempotent=broker_idempotent)
        wc = self.tag_worker(c, [svc], "C", hold=True, idempotent=idempotent_workers)
        wait_capacity(a, c, svc, idle=1)
        cl = self.client(a)
        rid = cl.send_request(svc, [b"precious"], timeout_ms=15000)
        job = wc.next_job(3.0)
        self.assertIsNotNone(job, "A forwards the request to the only worker, on C")
        self.assertEqual(job.body, [b"precious"])
        # now B has a worker for it too (started only now, so the first forward could only go to C)
        wb = self.tag_worker(b, [svc], "B", concurrency=2, idempotent=idempotent_workers)
        wait_capacity(a, b, svc, idle=2)
        self.assertEqual(cl.drain_replies(0.2), [], "no reply while C holds it")
        t_kill = now()
        c.kill()
        r = cl.get_reply(rid, LOSS_S + MARGIN + 3.0)
        self.assertIsNotNone(r, "no reply within %.1f s of C's death" % (LOSS_S + MARGIN + 3.0))
        took = r.t - t_kill
        extra = cl.drain_replies(1.0)
        self.assertEqual(extra, [], "exactly one reply: got more %r" % (extra,))
        return r, took, wb, wc

    # 6 -------------------------------------------------------------------------------------------
    def test_06_peer_lost_holding_a_non_idempotent_request_gives_502(self):
        r, took, wb, wc = self.hold_at_c_then_kill_c("fwd.lost", idempotent_workers=False)
        print("\n  502 from A %.2f s after kill -9 of C (bound %.1f + %.1f s)" % (took, LOSS_S, MARGIN))
        self.assertEqual((r.status, r.message), (502, LOST_MSG), r)
        self.assertLessEqual(took, LOSS_S + MARGIN)
        self.assertEqual(wb.jobs, [], "a non-idempotent request is never run a second time")

    # 7 -------------------------------------------------------------------------------------------
    def test_07_peer_lost_holding_an_idempotent_request_is_served_via_b(self):
        r, took, wb, wc = self.hold_at_c_then_kill_c("fwd.idem", idempotent_workers=True)
        print("\n  re-dispatched via B: 200 %.2f s after kill -9 of C" % took)
        self.assertEqual((r.status, r.body), (200, [b"B", b"precious"]), r)
        self.assertLessEqual(took, LOSS_S + MARGIN + 0.5)
        self.assertEqual(len(wb.jobs), 1, "re-dispatched exactly once")
        self.assertEqual(len(wc.jobs), 1)

    def test_07b_idempotent_by_broker_configuration_is_served_via_b(self):
        svc = "fwd.idemcfg"
        r, took, wb, wc = self.hold_at_c_then_kill_c(svc, idempotent_workers=False, broker_idempotent=[svc])
        print("\n  (--idempotent %s) re-dispatched via B: 200 %.2f s after kill -9 of C" % (svc, took))
        self.assertEqual((r.status, r.body), (200, [b"B", b"precious"]), r)
        self.assertLessEqual(took, LOSS_S + MARGIN + 0.5)
        self.assertEqual(len(wb.jobs), 1, "re-dispatched exactly once")


if __name__ == "__main__":
    unittest.main()


# ------------------------------------------------------------------------------------------------
# The configuration network: a policy change on one broker reaches every broker and its workers
# ------------------------------------------------------------------------------------------------
class FamilyConfigTest(ForwardingCase):

    def test_a_policy_change_on_a_reaches_a_worker_on_c_within_2_s(self):
        import os
        import signal
        import tempfile
        cfg = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
        self.addCleanup(os.unlink, cfg.name)
        cfg.write('[service."cfg.echo"]\nrequest-timeout = 5000\n')
        cfg.close()
        a = self.start_broker(heartbeat_interval=HB_MS, liveness=LIVENESS, peer_port=free_port(),
                              extra=["--config", cfg.name])
        b = self.start_broker(heartbeat_interval=HB_MS, liveness=LIVENESS, peer_port=free_port(),
                              extra=["--peer", a.peer])
        c = self.start_broker(heartbeat_interval=HB_MS, liveness=LIVENESS, peer_port=free_port(),
                              extra=["--peer", b.peer])
        wait_mesh([a, b, c])
        w = Scale0Worker(c.backend, ["cfg.echo"], name="cfg-w")
        self.addCleanup(w.cleanup)
        wait_until("the worker's first CONFIG", lambda: "policy version 1;" in w.proc.stderr_text(), 8.0)
        with open(cfg.name, "w") as f:
            f.write('[service."cfg.echo"]\nrequest-timeout = 7000\nmax-concurrency = 2\n')
        t0 = now()
        a.proc.signal(signal.SIGHUP)
        _, took = wait_until("policy version 2 at the worker on C",
                             lambda: "policy version 2; cfg.echo: request-timeout 7000 ms, max-queue"
                             in w.proc.stderr_text(), 2.0, every=0.02)
        print("\n  a change on A reached the worker on C in %.0f ms" % (took * 1000))
        for x in (a, b, c):
            p = family_status(x)["policy"]
            self.assertEqual(p["version"], 2)
            self.assertEqual(p["origin"], family_status(a)["broker_id"])
            svc = [s for s in p["services"] if s["name"] == "cfg.echo"]
            self.assertEqual(len(svc), 1, p)
            self.assertEqual((svc[0]["request_timeout_ms"], svc[0]["max_concurrency"]), (7000, 2))
        # An unrelated reload on B (its file did not change) keeps the family's policy.
        b.proc.signal(signal.SIGHUP)
        time.sleep(0.5)
        self.assertEqual(family_status(b)["policy"]["version"], 2)
        self.assertEqual([s["request_timeout_ms"] for s in family_status(b)["policy"]["services"]
                          if s["name"] == "cfg.echo"], [7000])
