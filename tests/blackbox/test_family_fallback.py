# SPDX-License-Identifier: Apache-2.0
"""Fallback families and worker balancing (docs/family.md, "Fallback families" and "Balancing
workers (NEEDBROKER)"), against the real binary: `scale0 broker` processes on random loopback ports
with fast liveness (heartbeat 200 ms, liveness 3), `scale0 worker --echo` processes (their name is
the message of each reply, so a reply says which worker, hence which broker, served it), and S0/1
and Majordomo peers from harness.py.

Fallback families (FallbackFamilyTest):
  1. an "eu" broker A with `--fallback-family us`, linked to a "us" broker B that has the only
     worker: 20 pipelined requests at A are all answered by B's worker; A counts them in
     counters.forwarded_fallback and forwarded_out (and /metrics
     scale0_family_fallback_forwarded_total), B in forwarded_in; A sees B as relation "fallback"
     rank 1, B sees A as "dependent" rank 0; A's service shows fallback_workers 1. A sends no
     capacity (STATE) to B: B sees none of A's services and counts no STATE in;
  2. the family first: a request of a service only B has goes to the fallback; once a member (A2)
     announces a worker, 20 pipelined requests at A1 (more than A2's credit) all go to A2 and none
     to B. A2, given only A1, links to the fallback broker B too;
  3. the order of fallback families: A falls back on "us" then "asia": requests go to B (us) while it
     has a worker, to C (asia) once B's worker is gone; ranks 1 and 2 in A's status;
  4. an unrelated family ("x", no fallback, linked both ways to "eu"): neither sees the other alive,
     both count dropped other_family, and a request at X for a service only E has is 503;
  5. the configuration network stays in the family: a [service] table changed and SIGHUP on A
     reaches A's member A2 (version 2) but never the fallback broker B (version 1, no CONFIG in); a
     change on B never reaches A or A2;
  6. no worker anywhere: 503 "no worker for service" after --no-worker-timeout; a request whose
     only worker (on the fallback) is busy waits for it and is served (no 503); a fallback broker
     never forwards to its dependent (B's request for a service only A has: 503);
  7. the HELLO's fallback list on the wire (raw S0P1 peers): A's HELLO ends with its fallback
     families in order; a raw "us" peer (a fallback) gets HELLO and PEERS but no STATE; a raw peer
     naming "eu" as its fallback (a dependent) gets HELLO, PEERS, STATE; relations "fallback",
     "dependent", "fallback+dependent" with their ranks; a fallback count of 0 and a bad fallback
     name are dropped and counted; a HELLO of an unrelated family is dropped (other_family).

Worker balancing (WorkerBalancingTest):
  8. two brokers of one family, four `scale0 worker` processes given only A's backend: within a few
     seconds A and B have 2 each, and it stays so; A counts counters.rebalanced_workers (and
     /metrics scale0_family_redirected_total{what="rebalanced_worker"}); requests at A and at B are
     served by their own two workers, nothing forwarded;
 8b. the same, counted: "a worker never bounces back", so A moves exactly two and B none;
  9. the same with A started `--rebalance-workers false`: all four stay on A for the whole window;
 10. Majordomo workers are never moved: three MDP workers on A stay there, get no DISCONNECT;
 11. the rule holds for every service of a worker: workers of {x, y} on A are not moved while B has
     as many y workers; workers of x alone that arrive next are moved (A keeps at least as many).

Every wait is bounded (wait_until); an observation window that asserts nothing happens polls
status for a fixed, short time. About 40 s in all.
"""

import os
import signal
import tempfile
import time
import unittest

import zmq

from harness import (PackedReader, str8, str16, scrape, b_, du16, du32, du64, ep, family_status, free_port, now, peers_of, Scale0TestCase,
                     u16, u32, u64, u8, wait_until)

HB_MS = 200
LIVENESS = 3
NO_WORKER_MS = 1000
# A window in which something must NOT happen: three heartbeat intervals (the balancing rule runs
# once per interval) plus a second of slack for a loaded machine.
WINDOW_S = 3 * HB_MS / 1000.0 + 1.0
LINK_S = 8.0  # brokers on loopback link within a second or two; generous for ASan
P_HDR = b"S0P1"
REBALANCED_METRIC = 'scale0_family_redirected_total{what="rebalanced_worker"}'
FALLBACK_METRIC = "scale0_family_fallback_forwarded_total"


# ------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------
def metric_sum(values, name):
    """The sum of the series of a metric (with or without labels); None if it has none."""
    found = [v for k, v in values.items() if k == name or k.startswith(name + "{")]
    return sum(found) if found else None


def counter(st, name):
    """counters.NAME of a status document. The spec writes `counters.forwarded_fallback` and
    `counters.rebalanced_workers`, as it writes `counters` for redirected_workers (top-level
    `counters`); family.counters is accepted too, the spec not being explicit."""
    top = st.get("counters", {})
    if name in top:
        return top[name]
    fam = st.get("family", {}).get("counters", {})
    if name in fam:
        return fam[name]
    raise AssertionError("scale0 status --json has no counters.%s (nor family.counters.%s): counters %r"
                         % (name, name, sorted(top)))


def dropped(st, reason):
    d = st["family"]["counters"]["dropped"]
    if reason not in d:
        raise AssertionError("family.counters.dropped has no %r: %r" % (reason, sorted(d)))
    return d[reason]


def service_entry(st, name):
    for s in st.get("services", []):
        if s.get("name") == name:
            return s
    return None


def local_workers(st, name):
    """Workers registered with this broker for a service (0 when the service is not listed)."""
    s = service_entry(st, name)
    return s["workers"] if s else 0


def announced(st, peer, name):
    """The service entry `peer` announced, as this status shows it; None unless the peer is alive and
    announced it with at least one worker."""
    p = peers_of(st).get(peer.peer)
    if not p or p["state"] != "alive":
        return None
    for s in p["services"]:
        if s["name"] == name and s["workers"] > 0:
            return s
    return None


def fwd(broker):
    """(forwarded_out, forwarded_in, forwarded_fallback) of a broker."""
    st = family_status(broker)
    for k in ("forwarded_out", "forwarded_in"):
        if k not in st:
            raise AssertionError("status of %s has no top-level %s" % (broker.frontend, k))
    return st["forwarded_out"], st["forwarded_in"], counter(st, "forwarded_fallback")


def hello(broker_id, endpoint, family, fallbacks=None, hb=3000, liveness=5, flags=0, raw_tail=b""):
    """An S0P1 HELLO (docs/family.md, "The peer protocol"); fallbacks: None for none (no count at
    all), else the list (an empty list gives a count of 0, which is malformed)."""
    m = (P_HDR + b"\x01" + u64(broker_id) + u32(hb) + u32(liveness) + u8(flags) + str8(family)
         + str16(endpoint) + str16("") + str16(""))
    if fallbacks is not None:
        m += u8(len(fallbacks)) + b"".join(str8(f) for f in fallbacks)
    return m + raw_tail


class FamilyCase(Scale0TestCase):

    def fam(self, family, fallbacks=(), peers=(), extra=(), peer_port=None, no_worker=NO_WORKER_MS, **kw):
        """A broker of `family` with fallback families (in order) and seeds, fast liveness, its own
        peer port and metrics port."""
        args = ["--family", family]
        for f in fallbacks:
            args += ["--fallback-family", f]
        for p in peers:
            args += ["--peer", p]
        return self.start_broker(heartbeat_interval=HB_MS, liveness=LIVENESS, no_worker_timeout=no_worker,
                                 peer_port=peer_port or free_port(), extra=args + list(extra), **kw)

    def wait_linked(self, pairs, timeout=LINK_S):
        """Each (x, y): x sees y alive."""
        def linked():
            for x, y in pairs:
                p = peers_of(family_status(x)).get(y.peer)
                if not p or p["state"] != "alive":
                    return False
            return True
        return wait_until("peers alive: %s" % ", ".join("%s sees %s" % (x.peer, y.peer) for x, y in pairs),
                          linked, timeout)[1]

    def wait_announced(self, at, peer, name, workers=1, timeout=6.0):
        """Waits until `at` shows `peer` alive announcing at least `workers` workers for name."""
        def seen():
            s = announced(family_status(at), peer, name)
            return s if s and s["workers"] >= workers else None
        return wait_until("%s's %d worker(s) for %r announced to %s" % (peer.peer, workers, name, at.peer),
                          seen, timeout)[0]

    def wait_not_announced(self, at, peer, name, timeout=6.0):
        def gone():
            p = peers_of(family_status(at)).get(peer.peer)
            return p is not None and p["state"] == "alive" and announced(family_status(at), peer, name) is None
        wait_until("%s's workers for %r gone, as %s sees it" % (peer.peer, name, at.peer), gone, timeout)

    def wait_local(self, broker, name, workers, timeout=8.0):
        def enough():
            n = local_workers(family_status(broker), name)
            return n == workers or None
        wait_until("%d worker(s) for %r registered at %s" % (workers, name, broker.frontend), enough, timeout)

    def hold(self, what, check, window=WINDOW_S, every=0.2):
        """Observes for `window` seconds (at least two looks): check() returns None while all is as
        it should be, else a description of what is wrong, which fails the test."""
        t0 = now()
        looks = 0
        for _ in range(1000):
            problem = check()
            looks += 1
            if problem:
                self.fail("%s: %s (%.2f s into a %.1f s window)" % (what, problem, now() - t0, window))
            if now() - t0 >= window and looks >= 2:
                return looks
            time.sleep(every)
        return looks

    def serve(self, broker, service, n, tag, pipelined=False, timeout_ms=8000, wait=12.0):
        """n requests for service at broker's frontend (a fresh S0/1 client): every one answered 200
        with its own body. Returns the messages (worker names) of the replies, in order sent."""
        cl = self.client(broker)
        bodies = {}
        replies = {}
        if pipelined:
            for i in range(n):
                body = b"%s-%d" % (b_(tag), i)
                bodies[cl.send_request(service, [body], timeout_ms=timeout_ms)] = body
            deadline = now() + wait
            for rid in list(bodies):
                r = cl.get_reply(rid, max(0.05, deadline - now()))
                self.assertIsNotNone(r, "%s: no reply within %.1f s for request %r of %d"
                                     % (tag, wait, bodies[rid], n))
                replies[rid] = r
        else:
            for i in range(n):
                body = b"%s-%d" % (b_(tag), i)
                rid = cl.send_request(service, [body], timeout_ms=timeout_ms)
                bodies[rid] = body
                r = cl.get_reply(rid, wait)
                self.assertIsNotNone(r, "%s: no reply within %.1f s for request %r" % (tag, wait, body))
                replies[rid] = r
        names = []
        for rid, body in bodies.items():
            r = replies[rid]
            self.assertEqual(r.status, 200, "%s: request %r for %r: %r" % (tag, body, service, r))
            self.assertEqual(r.body, [body], "%s: each reply carries its own request's body" % tag)
            names.append(r.message.decode())
        extra = cl.drain_replies(0.2)
        self.assertEqual(extra, [], "%s: one reply per request" % tag)
        return names

    def echo_worker(self, broker_or_ep, services, name, **kw):
        return self.scale0_worker(broker_or_ep, services, name=name, **kw)


# ------------------------------------------------------------------------------------------------
# Fallback families
# ------------------------------------------------------------------------------------------------
class FallbackFamilyTest(FamilyCase):

    # 1 -------------------------------------------------------------------------------------------
    def test_01_a_service_the_family_lacks_is_served_by_the_fallback_family(self):
        b = self.fam("us")
        a = self.fam("eu", fallbacks=["us"], peers=[b.peer])
        took = self.wait_linked([(a, b), (b, a)])
        print("\n  eu A and its fallback us B linked in %.2f s" % took)

        st_a, st_b = family_status(a), family_status(b)
        self.assertEqual(st_a["family"]["name"], "eu")
        self.assertEqual(st_a["family"]["fallback_families"], ["us"])
        self.assertEqual(st_b["family"]["fallback_families"], [])
        pb = peers_of(st_a)[b.peer]
        self.assertEqual(pb["family"], "us")
        self.assertEqual((pb.get("relation"), pb.get("fallback_rank")), ("fallback", 1),
                         "A's view of B (relation, fallback_rank): %r" % pb)
        pa = peers_of(st_b)[a.peer]
        self.assertEqual((pa.get("relation"), pa.get("fallback_rank")), ("dependent", 0),
                         "B's view of A (relation, fallback_rank): %r" % pa)

        svc = "fb.basic"
        self.echo_worker(b, [svc], "B-w", concurrency=4)
        self.echo_worker(a, ["fb.eu-own"], "A-w")  # A's own capacity, which B must never hear of
        self.wait_announced(a, b, svc)
        self.wait_local(a, "fb.eu-own", 1)
        wait_until("A's fb.basic with fallback_workers 1",
                   lambda: (service_entry(family_status(a), svc) or {}).get("fallback_workers") == 1, 3.0)

        n = 20
        names = self.serve(a, svc, n, "eu->us", pipelined=True)
        self.assertEqual(set(names), {"B-w"}, "every request served by the worker on B")

        out_a, in_a, fb_a = fwd(a)
        out_b, in_b, fb_b = fwd(b)
        self.assertEqual(fb_a, n, "A counts each request sent to the fallback family (forwarded_fallback)")
        self.assertEqual(out_a, n, "a forward to a fallback family is also counted in forwarded_out")
        self.assertEqual(in_b, n, "B counts them in (forwarded_in)")
        self.assertEqual((out_b, fb_b), (0, 0), "B forwards nothing")
        m = scrape(a)
        self.assertIsNotNone(metric_sum(m, FALLBACK_METRIC), "A's /metrics has no %s" % FALLBACK_METRIC)
        self.assertEqual(metric_sum(m, FALLBACK_METRIC), fb_a, "/metrics and status agree")
        self.assertGreater(metric_sum(m, FALLBACK_METRIC), 0)

        # Capacity goes only to members and dependents: B is neither for A, so A never told B of
        # its worker (A's STATE rounds have had time: A heard B's, and its own worker is older).
        def b_knows_nothing_of_a():
            st = family_status(b)
            p = peers_of(st).get(a.peer)
            if not p or p["state"] != "alive":
                return "B no longer sees A alive: %r" % (p,)
            if p["services"]:
                return "B shows services announced by A, its dependent: %r" % p["services"]
            if st["family"]["counters"]["messages_in"].get("state", 0) != 0:
                return "B received STATE: %r" % st["family"]["counters"]["messages_in"]
            return None
        self.hold("A sends no capacity to its fallback B", b_knows_nothing_of_a, window=1.0)

    # 2 -------------------------------------------------------------------------------------------
    def test_02_the_family_is_preferred_as_soon_as_a_member_has_a_worker(self):
        b = self.fam("us")
        a1 = self.fam("eu", fallbacks=["us"], peers=[b.peer])
        a2 = self.fam("eu", fallbacks=["us"], peers=[a1.peer])
        self.wait_linked([(a1, a2), (a2, a1), (a1, b), (b, a1), (a2, b), (b, a2)])
        # A2 was given only A1: it knows B (alive, its fallback) through A1 (A1's PEERS to its
        # member, or B's HELLO once A1's PEERS told B of A2).
        pb = peers_of(family_status(a2))[b.peer]
        self.assertIn(pb["learned"], ("gossip", "hello"), pb)
        self.assertEqual((pb.get("relation"), pb.get("fallback_rank")), ("fallback", 1), pb)
        self.assertEqual(peers_of(family_status(a1))[a2.peer].get("relation"), "member")

        svc = "fb.first"
        # Only the fallback has a worker: the fallback serves.
        self.echo_worker(b, [svc], "B-w", concurrency=4)
        self.wait_announced(a1, b, svc)
        self.assertEqual(self.serve(a1, svc, 1, "before"), ["B-w"])
        self.assertEqual(fwd(a1)[2], 1, "A1 counted the one request sent to the fallback")

        # A member announces a worker (concurrency 2, 20 ms a request): 20 pipelined requests are
        # more than its credit, yet none goes to B, which has credit to spare.
        self.echo_worker(a2, [svc], "A2-w", concurrency=2, delay=20)
        self.wait_announced(a1, a2, svc)
        self.wait_announced(a1, b, svc)  # B is still a candidate with credit
        out1, _, fb1 = fwd(a1)
        _, in_a2, _ = fwd(a2)
        _, in_b, _ = fwd(b)
        n = 20
        names = self.serve(a1, svc, n, "eu-first", pipelined=True)
        self.assertEqual(set(names), {"A2-w"}, "all served in the family (by A2's worker), none by B's")
        self.assertEqual(fwd(b)[1] - in_b, 0, "nothing reached the fallback broker B")
        self.assertEqual(fwd(a1)[2] - fb1, 0, "A1's forwarded_fallback did not move")
        self.assertEqual(fwd(a1)[0] - out1, n, "A1 forwarded each request to its member")
        self.assertEqual(fwd(a2)[1] - in_a2, n, "A2 took each request")

    # 3 -------------------------------------------------------------------------------------------
    def test_03_fallback_families_are_tried_in_the_order_given(self):
        b = self.fam("us")
        c = self.fam("asia")
        a = self.fam("eu", fallbacks=["us", "asia"], peers=[b.peer, c.peer])
        self.wait_linked([(a, b), (a, c), (b, a), (c, a)])
        st = family_status(a)
        self.assertEqual(st["family"]["fallback_families"], ["us", "asia"])
        view = peers_of(st)
        self.assertEqual((view[b.peer].get("relation"), view[b.peer].get("fallback_rank")), ("fallback", 1))
        self.assertEqual((view[c.peer].get("relation"), view[c.peer].get("fallback_rank")), ("fallback", 2))
        # B and C are unrelated: A tells a fallback only of its own members (it has none here).
        self.assertNotIn(c.peer, {e for e, p in peers_of(family_status(b)).items() if p["state"] == "alive"})

        svc = "fb.order"
        wb = self.echo_worker(b, [svc], "B-w", concurrency=2)
        self.echo_worker(c, [svc], "C-w", concurrency=2)
        self.wait_announced(a, b, svc)
        self.wait_announced(a, c, svc)
        _, in_b, _ = fwd(b)
        _, in_c, _ = fwd(c)
        names = self.serve(a, svc, 10, "first-choice")
        self.assertEqual(names, ["B-w"] * 10, "the first fallback family (us) serves while it has a worker")
        self.assertEqual((fwd(b)[1] - in_b, fwd(c)[1] - in_c), (10, 0), "forwarded_in of B and C")

        # B's worker leaves: the next family in the list (asia) serves.
        wb.proc.terminate(5.0)
        self.wait_not_announced(a, b, svc)
        names = self.serve(a, svc, 10, "second-choice")
        self.assertEqual(names, ["C-w"] * 10, "with no worker in us, the next fallback family (asia) serves")
        self.assertEqual((fwd(b)[1] - in_b, fwd(c)[1] - in_c), (10, 10), "forwarded_in of B and C")
        self.assertEqual(fwd(a)[2], 20, "A's forwarded_fallback counts both")

    # 4 -------------------------------------------------------------------------------------------
    def test_04_an_unrelated_family_is_ignored(self):
        px = free_port()
        e = self.fam("eu", peers=[ep(px)])
        x = self.fam("x", peers=[e.peer], peer_port=px)
        self.assertEqual(x.peer, ep(px))
        svc = "fb.unrelated"
        self.echo_worker(e, [svc], "E-w")
        self.wait_local(e, svc, 1)

        def both_dropped():
            return dropped(family_status(e), "other_family") >= 2 and \
                dropped(family_status(x), "other_family") >= 2
        _, took = wait_until("each side drops the other's HELLOs (other_family)", both_dropped, 5.0)
        print("\n  eu and x drop each other's HELLOs (other_family) after %.2f s" % took)

        def nobody_alive():
            for me, other in ((e, x), (x, e)):
                p = peers_of(family_status(me)).get(other.peer)
                if p and p["state"] == "alive":
                    return "%s (family %s) sees %s alive: %r" % (me.peer, "eu" if me is e else "x", other.peer, p)
            return None
        self.hold("brokers of unrelated families never see each other alive", nobody_alive,
                  window=LIVENESS * HB_MS / 1000.0 + 0.5)
        # X knows nothing of E's worker: the request is not forwarded, 503 after the no-worker timeout.
        cl = self.client(x)
        t0 = now()
        rid = cl.send_request(svc, [b"x"], timeout_ms=10000)
        r = cl.get_reply(rid, NO_WORKER_MS / 1000.0 + 3.0)
        self.assertIsNotNone(r, "no answer at X")
        self.assertEqual((r.status, r.message), (503, b"no worker for service"), r)
        self.assertGreaterEqual(r.t - t0, NO_WORKER_MS / 1000.0 - 0.1)
        self.assertEqual(fwd(e)[1], 0, "E took nothing from X")

    # 5 -------------------------------------------------------------------------------------------
    def test_05_the_configuration_network_stays_in_the_family(self):
        def config(text):
            f = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
            self.addCleanup(os.unlink, f.name)
            f.write(text)
            f.close()
            return f.name
        cfg_a = config('[service."fb.cfg"]\nrequest-timeout = 5000\n')
        cfg_b = config('[service."fb.us"]\nrequest-timeout = 4000\n')
        b = self.fam("us", extra=["--config", cfg_b])
        a = self.fam("eu", fallbacks=["us"], peers=[b.peer], extra=["--config", cfg_a])
        a2 = self.fam("eu", fallbacks=["us"], peers=[a.peer])
        self.wait_linked([(a, a2), (a2, a), (a, b), (b, a), (a2, b), (b, a2)])

        def policy(x):
            return family_status(x)["policy"]

        def names(p):
            return {s["name"] for s in p["services"]}
        for x in (a, a2, b):
            self.assertEqual(policy(x)["version"], 1)
        id_a, id_b = family_status(a)["broker_id"], family_status(b)["broker_id"]

        # A change on A: its member A2 adopts it, its fallback B never hears of it.
        with open(cfg_a, "w") as f:
            f.write('[service."fb.cfg"]\nrequest-timeout = 7000\n')
        a.proc.signal(signal.SIGHUP)
        wait_until("policy version 2 on A", lambda: policy(a)["version"] == 2, 5.0)

        def a2_has_it():
            p = policy(a2)
            svc = [s for s in p["services"] if s["name"] == "fb.cfg"]
            return p["version"] == 2 and p["origin"] == id_a and svc and svc[0]["request_timeout_ms"] == 7000
        _, took = wait_until("A's change (version 2) at its member A2", a2_has_it, 3.0, every=0.05)
        print("\n  a change on A reached its member A2 in %.2f s" % took)

        def b_untouched():
            st = family_status(b)
            p = st["policy"]
            if p["version"] != 1 or p["origin"] != id_b or "fb.cfg" in names(p):
                return "B (the fallback family) took A's policy: %r" % p
            if st["family"]["counters"]["messages_in"].get("config", 0) != 0:
                return "B received CONFIG: %r" % st["family"]["counters"]["messages_in"]
            return None
        self.hold("CONFIG goes to members only", b_untouched, window=1.0)

        # A change on B: B's own version 2; A and A2 keep theirs (CONFIG is taken from members only).
        with open(cfg_b, "w") as f:
            f.write('[service."fb.us"]\nrequest-timeout = 6000\n')
        b.proc.signal(signal.SIGHUP)
        wait_until("policy version 2 (origin B) on B",
                   lambda: policy(b)["version"] == 2 and policy(b)["origin"] == id_b, 5.0)

        def eu_untouched():
            for x, label in ((a, "A"), (a2, "A2")):
                p = policy(x)
                if p["version"] != 2 or p["origin"] != id_a or "fb.us" in names(p) or "fb.cfg" not in names(p):
                    return "%s's policy changed by the fallback family's: %r" % (label, p)
            return None
        self.hold("a fallback broker's CONFIG never reaches its dependents", eu_untouched, window=1.0)

    # 6 -------------------------------------------------------------------------------------------
    def test_06_503_only_when_neither_the_family_nor_a_fallback_has_a_worker(self):
        b = self.fam("us")
        a = self.fam("eu", fallbacks=["us"], peers=[b.peer])
        self.wait_linked([(a, b), (b, a)])
        self.echo_worker(b, ["fb.busy"], "B-slow", concurrency=1, delay=1500)
        self.echo_worker(a, ["fb.eu-only"], "A-w")
        self.wait_announced(a, b, "fb.busy")
        self.wait_local(a, "fb.eu-only", 1)
        cla, clb = self.client(a), self.client(b)
        t0 = now()
        nobody = cla.send_request("fb.nobody", [b"n"], timeout_ms=10000)
        r1 = cla.send_request("fb.busy", [b"one"], timeout_ms=10000)
        r2 = cla.send_request("fb.busy", [b"two"], timeout_ms=10000)
        back = clb.send_request("fb.eu-only", [b"back"], timeout_ms=10000)

        r = cla.get_reply(nobody, NO_WORKER_MS / 1000.0 + 3.0)
        self.assertIsNotNone(r, "no answer for a service no broker of either family has")
        took = r.t - t0
        print("\n  503 for a service nobody has after %.2f s (no-worker timeout %.1f s)" % (took, NO_WORKER_MS / 1000.0))
        self.assertEqual((r.status, r.message), (503, b"no worker for service"), r)
        self.assertGreaterEqual(took, NO_WORKER_MS / 1000.0 - 0.1, "503 before the no-worker timeout")
        self.assertLessEqual(took, NO_WORKER_MS / 1000.0 + 1.5)

        r = clb.get_reply(back, NO_WORKER_MS / 1000.0 + 3.0)
        self.assertIsNotNone(r, "no answer at B for a service only its dependent A has")
        self.assertEqual((r.status, r.message), (503, b"no worker for service"),
                         "a fallback broker never forwards to its dependent: %r" % r)

        # The fallback's only worker is busy for 1.5 s: the second request waits for it (the
        # fallback has a worker), well past the no-worker timeout, and is served.
        got = {}
        for rid, body in ((r1, b"one"), (r2, b"two")):
            r = cla.get_reply(rid, 8.0)
            self.assertIsNotNone(r, "no answer for %r" % body)
            self.assertEqual((r.status, r.body, r.message), (200, [body], b"B-slow"), r)
            got[body] = r.t - t0
        print("  requests waiting for the fallback's busy worker served after %.2f and %.2f s" % (got[b"one"], got[b"two"]))
        self.assertGreater(got[b"two"], NO_WORKER_MS / 1000.0, "the second one waited past the no-worker timeout")
        self.assertEqual(fwd(a)[2], 2, "A sent the two to the fallback family")
        self.assertEqual(fwd(b)[0], 0, "B forwarded nothing")
        self.assertEqual(fwd(a)[1], 0, "A took nothing from B")
        self.assertEqual(cla.drain_replies(0.2) + clb.drain_replies(0.1), [])

    # 7 -------------------------------------------------------------------------------------------
    def test_07_hello_carries_the_fallback_families_and_relations_follow(self):
        a = self.fam("eu", fallbacks=["us", "asia"])
        self.echo_worker(a, ["fb.raw"], "A-w", concurrency=2)
        self.wait_local(a, "fb.raw", 1)

        def raw_peer(broker_id, family, fallbacks):
            """A ROUTER where A's link will connect, and a DEALER (our link) to A's peer port that
            sends one HELLO. Returns (router, dealer, our endpoint)."""
            router = self.ctx.socket(zmq.ROUTER)
            router.setsockopt(zmq.LINGER, 0)
            port = router.bind_to_random_port("tcp://127.0.0.1")
            self._sockets.append(router)
            link = self.ctx.socket(zmq.DEALER)
            link.setsockopt(zmq.LINGER, 0)
            link.connect(a.peer)
            self._sockets.append(link)
            mine = ep(port)
            link.send_multipart([b"", hello(broker_id, mine, family, fallbacks)])
            return router, link, mine

        def collect(router, window, until=None):
            got = []
            deadline = now() + window
            for _ in range(10000):
                if now() >= deadline or (until and until(got)):
                    break
                if router.poll(50):
                    m = router.recv_multipart()
                    self.assertEqual(len(m), 3, m)
                    self.assertEqual((m[1], m[2][:4]), (b"", P_HDR), m)
                    got.append(m)
            return got

        def commands(got):
            return [m[2][4] for m in got]

        # A raw "us" peer: for A a fallback (rank 1). A links to it: HELLO with its fallback
        # families at the end, in order; PEERS (A's members: none); no STATE (a fallback may not
        # forward to A).
        r_us, _, ep_us = raw_peer(0x5501, "us", None)
        got = collect(r_us, 1.5)
        self.assertTrue(got, "A never linked to a peer of its fallback family")
        cmds = commands(got)
        self.assertEqual(cmds[0], 1, "the first message on a new link is HELLO: %r" % cmds)
        self.assertGreaterEqual(cmds.count(1), 3, "A's HELLO every heartbeat interval: %r" % cmds)
        self.assertNotIn(3, cmds, "no capacity (STATE) to a fallback broker: %r" % cmds)
        r = PackedReader(got[0][2][5:])
        r.u64()
        self.assertEqual((r.u32(), r.u32(), r.u8()), (HB_MS, LIVENESS, 0))
        self.assertEqual((r.str8(), r.str16()), (b"eu", a.peer.encode()))
        self.assertEqual((r.str16(), r.str16()), (a.frontend.encode(), a.backend.encode()))
        count = r.u8()
        self.assertEqual(count, 2, "fallback-count")
        self.assertEqual([r.str8(), r.str8()], [b"us", b"asia"], "the fallback families, in order")
        self.assertTrue(r.done(), "HELLO ends after its fallback families")
        for m in got:
            if m[2][4] == 2:
                rp = PackedReader(m[2][5:])
                listed = [rp.str16() for _ in range(rp.u16())]
                self.assertTrue(rp.done())
                self.assertEqual(listed, [], "PEERS to another family lists the sender's members only (none)")

        # A raw "zz" peer that names "eu" as its fallback: a dependent, which gets A's capacity.
        r_zz, _, ep_zz = raw_peer(0x5502, "zz", ["eu"])
        got = collect(r_zz, 4.0, until=lambda g: 3 in commands(g))
        cmds = commands(got)
        self.assertIn(3, cmds, "a dependent gets STATE: %r" % cmds)
        self.assertEqual(cmds[:3], [1, 2, 3], "HELLO, PEERS, then a full STATE: %r" % cmds)
        r = PackedReader(got[cmds.index(3)][2][5:])
        r.u64()
        self.assertEqual(r.u8() & 1, 1, "the first STATE replaces")
        entries = {}
        for _ in range(r.u16()):
            name = r.str8()
            entries[name] = (r.u32(), r.u32(), r.u32())
            r.u8()
        self.assertTrue(r.done())
        self.assertEqual(entries.get(b"fb.raw"), (1, 2, 0), "A's worker (workers, idle, queued): %r" % entries)

        # A raw "asia" peer that names "eu" too: fallback (rank 2) and dependent at once.
        _, _, ep_asia = raw_peer(0x5503, "asia", ["eu"])

        def relations():
            view = peers_of(family_status(a))
            out = {}
            for e, p in view.items():
                out[e] = (p.get("relation"), p.get("fallback_rank"), p["state"])
            return out
        want = {ep_us: ("fallback", 1, "alive"), ep_zz: ("dependent", 0, "alive"),
                ep_asia: ("fallback+dependent", 2, "alive")}

        def all_three():
            rel = relations()
            return all(rel.get(e) == v for e, v in want.items()) and rel
        wait_until("relations (relation, fallback_rank, state) %r on A" % (want,), all_three, 4.0)

        # Dropped: a fallback count of 0 (malformed); a fallback name the rules refuse
        # (invalid_name); a truncated fallback list (malformed); a family A has nothing to do with
        # (other_family). None of them becomes a peer.
        st = family_status(a)
        before = {k: dropped(st, k) for k in ("malformed", "invalid_name", "other_family")}
        bad = self.ctx.socket(zmq.DEALER)
        bad.setsockopt(zmq.LINGER, 0)
        bad.connect(a.peer)
        self._sockets.append(bad)
        bad_eps = ["tcp://127.0.0.1:%d" % (60001 + i) for i in range(4)]
        bad.send_multipart([b"", hello(0x5601, bad_eps[0], "us", [])])
        bad.send_multipart([b"", hello(0x5602, bad_eps[1], "us", ["bad\nname"])])
        bad.send_multipart([b"", hello(0x5603, bad_eps[2], "zz", None, raw_tail=u8(2) + str8("eu"))])
        bad.send_multipart([b"", hello(0x5604, bad_eps[3], "zz", None)])

        def counted():
            s = family_status(a)
            now_ = {k: dropped(s, k) for k in before}
            return (now_["malformed"] >= before["malformed"] + 2 and
                    now_["invalid_name"] >= before["invalid_name"] + 1 and
                    now_["other_family"] >= before["other_family"] + 1) and now_
        wait_until("the bad HELLOs dropped and counted (malformed +2, invalid_name +1, other_family +1)",
                   counted, 4.0)
        view = peers_of(family_status(a))
        for e in bad_eps:
            self.assertNotEqual((view.get(e) or {}).get("state"), "alive", "a dropped HELLO made %s a peer" % e)
        self.assertAlive(a)


# ------------------------------------------------------------------------------------------------
# Balancing workers (NEEDBROKER)
# ------------------------------------------------------------------------------------------------
class WorkerBalancingTest(FamilyCase):

    def pair(self, a_extra=(), b_extra=()):
        a = self.fam("eu", extra=a_extra)
        b = self.fam("eu", peers=[a.peer], extra=b_extra)
        self.wait_linked([(a, b), (b, a)])
        return a, b

    def split(self, a, b, svc):
        return local_workers(family_status(a), svc), local_workers(family_status(b), svc)

    # 8 -------------------------------------------------------------------------------------------
    def test_08_workers_given_one_broker_spread_over_the_family(self):
        a, b = self.pair()
        svc = "rb.spread"
        names = ["w1", "w2", "w3", "w4"]
        t0 = now()
        for n in names:
            self.echo_worker(a.backend, [svc], n)
        _, took = wait_until("2 workers on A and 2 on B",
                             lambda: self.split(a, b, svc) == (2, 2), 10.0)
        print("\n  4 workers given only A: 2 on A and 2 on B %.2f s after they started" % (now() - t0))

        def stays():
            s = self.split(a, b, svc)
            return None if s == (2, 2) else "workers (A, B) = %r, not (2, 2): a worker bounced" % (s,)
        self.hold("the balanced split stays", stays)

        st_a, st_b = family_status(a), family_status(b)
        moved_a, moved_b = counter(st_a, "rebalanced_workers"), counter(st_b, "rebalanced_workers")
        print("  rebalanced_workers: A %d, B %d" % (moved_a, moved_b))
        self.assertGreaterEqual(moved_a, 2, "A pointed (at least) two workers at B")
        m = scrape(a)
        self.assertIn(REBALANCED_METRIC, m, "A's /metrics")
        self.assertEqual(m[REBALANCED_METRIC], moved_a, "/metrics and status agree")

        # Requests at either broker are served by its own two workers: nothing forwarded.
        out_a, out_b = fwd(a)[0], fwd(b)[0]
        at_a = set(self.serve(a, svc, 12, "at-A"))
        at_b = set(self.serve(b, svc, 12, "at-B"))
        print("  served at A by %s, at B by %s" % (sorted(at_a), sorted(at_b)))
        self.assertEqual(len(at_a), 2, "A's two idle workers take turns: %r" % at_a)
        self.assertEqual(len(at_b), 2, "B's two idle workers take turns: %r" % at_b)
        self.assertEqual(at_a & at_b, set(), "each broker's own workers")
        self.assertEqual(at_a | at_b, set(names))
        self.assertEqual((fwd(a)[0] - out_a, fwd(b)[0] - out_b), (0, 0), "nothing forwarded")

    # 8b ------------------------------------------------------------------------------------------
    def test_08b_a_moved_worker_never_bounces_back(self):
        """docs/family.md: "After the move this broker still has at least as many as P, so a worker
        never bounces back". Four workers given A only, started as soon as A and B are linked (before
        either has announced the service): two moves by A are all it takes, and B moves none."""
        a, b = self.pair()
        svc = "rb.nobounce"
        for n in ("n1", "n2", "n3", "n4"):
            self.echo_worker(a.backend, [svc], n)
        wait_until("2 workers on A and 2 on B", lambda: self.split(a, b, svc) == (2, 2), 10.0)
        self.hold("the balanced split stays",
                  lambda: None if self.split(a, b, svc) == (2, 2) else "workers (A, B) = %r" % (self.split(a, b, svc),),
                  window=2 * HB_MS / 1000.0 + 0.5)
        moved = (counter(family_status(a), "rebalanced_workers"), counter(family_status(b), "rebalanced_workers"))
        self.assertEqual(moved, (2, 0), "rebalanced_workers (A, B): A sends two, and none comes back from B")

    # 9 -------------------------------------------------------------------------------------------
    def test_09_rebalance_workers_false_keeps_them(self):
        a, b = self.pair(a_extra=["--rebalance-workers", "false"])
        svc = "rb.kept"
        for n in ("k1", "k2", "k3", "k4"):
            self.echo_worker(a.backend, [svc], n)
        self.wait_local(a, svc, 4)
        self.wait_announced(b, a, svc, workers=4)  # the family knows: B has none, A has four

        def all_on_a():
            s = self.split(a, b, svc)
            return None if s == (4, 0) else "workers (A, B) = %r, not (4, 0)" % (s,)
        self.hold("--rebalance-workers false: every worker stays on A", all_on_a)
        self.assertEqual(counter(family_status(a), "rebalanced_workers"), 0)
        served = set(self.serve(b, svc, 2, "via-A"))
        self.assertTrue(served <= {"k1", "k2", "k3", "k4"}, "B is served through A's workers: %r" % served)

    # 10 ------------------------------------------------------------------------------------------
    def test_10_majordomo_workers_are_never_moved(self):
        a, b = self.pair()
        svc = "rb.mdp"
        workers = [self.mdp_worker(a, svc, hb_ms=HB_MS) for _ in range(3)]
        self.wait_local(a, svc, 3)
        self.wait_announced(b, a, svc, workers=3)

        def all_on_a():
            s = self.split(a, b, svc)
            if s != (3, 0):
                return "workers (A, B) = %r, not (3, 0)" % (s,)
            moved = [w.disconnects for w in workers if w.disconnects]
            return "an MDP worker got DISCONNECT: %r" % moved if moved else None
        self.hold("Majordomo workers stay on A", all_on_a)
        self.assertEqual(counter(family_status(a), "rebalanced_workers"), 0)
        for w in workers:
            w.check()
        # B's clients are served through A's MDP workers.
        self.serve(b, svc, 3, "mdp-via-A")

    # 11 ------------------------------------------------------------------------------------------
    def test_11_a_worker_moves_only_if_every_one_of_its_services_is_in_surplus(self):
        # B does not balance, so its y workers stay put.
        a, b = self.pair(b_extra=["--rebalance-workers", "false"])
        for n in ("y1", "y2", "y3"):
            self.echo_worker(b.backend, ["rb.y"], n)
        self.wait_local(b, "rb.y", 3)
        self.wait_announced(a, b, "rb.y", workers=3)
        # Three workers of x and y on A: x is in surplus (B has none), y is not (B has three).
        for n in ("xy1", "xy2", "xy3"):
            self.echo_worker(a.backend, ["rb.x", "rb.y"], n)
        self.wait_local(a, "rb.x", 3)

        def xy_stay():
            sa, sb = family_status(a), family_status(b)
            s = (local_workers(sa, "rb.x"), local_workers(sb, "rb.x"))
            return None if s == (3, 0) else "x workers (A, B) = %r, not (3, 0)" % (s,)
        self.hold("workers of {x, y} stay: y is not in surplus", xy_stay)
        self.assertEqual(counter(family_status(a), "rebalanced_workers"), 0)

        # Two workers of x alone: x is in surplus, so they are pointed at B (A keeps 3 >= B's 2).
        for n in ("x1", "x2"):
            self.echo_worker(a.backend, ["rb.x"], n)

        def moved():
            sa, sb = family_status(a), family_status(b)
            s = (local_workers(sa, "rb.x"), local_workers(sb, "rb.x"), local_workers(sa, "rb.y"),
                 local_workers(sb, "rb.y"))
            return s == (3, 2, 3, 3) and s
        wait_until("x-only workers moved to B: x (A, B) = (3, 2), y (A, B) = (3, 3)", moved, 10.0)
        self.assertGreaterEqual(counter(family_status(a), "rebalanced_workers"), 2)
        at_b = set(self.serve(b, "rb.x", 6, "x-at-B"))
        self.assertEqual(at_b, {"x1", "x2"}, "the workers of x alone are the ones on B")


if __name__ == "__main__":
    unittest.main()
