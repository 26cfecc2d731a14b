# SPDX-License-Identifier: Apache-2.0
"""A family of brokers (docs/family.md), against the real binary: three `scale0 broker` processes on
random loopback ports where C knows only B and B only A become a full mesh; `scale0 status --json`
on each shows the other two alive; a worker on C shows as capacity on A; a broker killed with -9 is
seen lost within liveness x interval + 1 s while the other two stay linked, and rejoins when it is
restarted. A raw peer speaking S0P1 from the spec is greeted with HELLO, PEERS and a full STATE;
malformed S0P1 and garbage on the peer port are dropped and counted, and the broker carries on.

Every wait is bounded."""

import json
import struct
import time
import unittest

import zmq

from harness import (wait_until, PackedReader, str8, str16, scrape, Broker, du16, du32, du64, ep, family_status, free_port, now, peers_of, run_cli, Scale0TestCase, u16, u32, u64, u8)

HB_MS = 200
LIVENESS = 3
P_HDR = b"S0P1"


def hello(broker_id, endpoint, family="default", hb=1000, liveness=3, flags=0, frontend="", backend=""):
    return (P_HDR + b"\x01" + u64(broker_id) + u32(hb) + u32(liveness) + u8(flags) + str8(family)
            + str16(endpoint) + str16(frontend) + str16(backend))


class FamilyTest(Scale0TestCase):
    def family_broker(self, peers=(), peer_port=None):
        port = peer_port or free_port()
        extra = []
        for p in peers:
            extra += ["--peer", p]
        return self.start_broker(heartbeat_interval=HB_MS, liveness=LIVENESS, peer_port=port, extra=extra)

    def wait_for(self, what, check, timeout):
        """Polls check() (every 100 ms) until it returns something true; returns (value, seconds)."""
        return wait_until(what, check, timeout)

    def states(self, broker):
        return {e: p["state"] for e, p in peers_of(family_status(broker)).items()}

    def test_a_chain_of_seeds_becomes_a_mesh_that_heals(self):
        a = self.family_broker()
        b = self.family_broker([a.peer])
        c = self.family_broker([b.peer])
        for x in (a, b, c):
            self.assertEqual(x.ready_peer, x.peer, x.ready_line)
        everyone = {x.peer for x in (a, b, c)}

        # A full mesh within a few seconds: each sees the other two alive.
        def mesh():
            return all({e for e, s in self.states(x).items() if s == "alive"} == everyone - {x.peer}
                       for x in (a, b, c))
        _, took = self.wait_for("the full mesh", mesh, 5.0)
        print("\n  mesh of 3 from a chain of seeds in %.2f s" % took)
        st = family_status(a)
        self.assertEqual(st["family"]["name"], "default")
        pb = peers_of(st)[b.peer]
        self.assertEqual(pb["frontend"], b.frontend)
        self.assertEqual(pb["backend"], b.backend)
        self.assertEqual(pb["broker_id"], family_status(b)["broker_id"])  # as B's own status shows it
        self.assertEqual(peers_of(st)[c.peer]["learned"], "gossip")  # A was told of C, by B

        # A worker on C is capacity on A (its workers, idle credit and queue).
        self.scale0_worker(c, ["echo"], concurrency=3)

        def echo_on_a():
            svc = {s["name"]: s for s in peers_of(family_status(a))[c.peer]["services"]}
            return svc.get("echo")
        echo, took = self.wait_for("C's echo worker as capacity on A", echo_on_a, 5.0)
        print("  a worker on C seen as capacity on A in %.2f s" % took)
        self.assertEqual((echo["workers"], echo["idle"], echo["queued"]), (1, 3, 0))

        # kill -9 B: A and C see it lost within liveness x interval + 1 s, and stay linked.
        b.proc.signal(9)
        killed = now()
        bound = LIVENESS * HB_MS / 1000.0 + 1.0

        judged = {}  # when each broker judged B lost: its status's time in that state, back from
        # when its answer came (so the test's own polling, slow under ASan, is not counted)

        def b_lost():
            for x in (a, c):
                if x.peer in judged:
                    continue
                p = peers_of(family_status(x)).get(b.peer)
                asked = now()  # after the answer: a judgment counted late, never early
                if p is None or p["state"] != "lost":
                    return False
                judged[x.peer] = asked - p["state_ms"] / 1000.0
            return True
        self.wait_for("B lost on A and C", b_lost, bound + 2.0)
        lost_after = max(judged.values()) - killed
        print("  B (kill -9) lost on A and C after %.2f s (bound %.1f s)" % (lost_after, bound))
        self.assertLessEqual(lost_after, bound)
        for x, y in ((a, c), (c, a)):
            self.assertEqual(self.states(x)[y.peer], "alive")
        time.sleep(3 * LIVENESS * HB_MS / 1000.0)  # still linked well after
        for x, y in ((a, c), (c, a)):
            self.assertEqual(self.states(x)[y.peer], "alive")
        self.assertEqual({s["name"] for s in peers_of(family_status(a))[c.peer]["services"]}, {"echo"})

        # B restarts (same ports, a new broker id) and rejoins.
        old_id = pb["broker_id"]
        restarted = now()
        b.restart()

        def b_back():
            return all(self.states(x).get(b.peer) == "alive" for x in (a, c)) and \
                set(self.states(b)) >= {a.peer, c.peer} and \
                all(s == "alive" for s in self.states(b).values())
        self.wait_for("B back in the mesh", b_back, 5.0)
        print("  B restarted and rejoined in %.2f s" % (now() - restarted))
        self.assertNotEqual(peers_of(family_status(a))[b.peer]["broker_id"], old_id)
        m = scrape(a)
        self.assertEqual(m['scale0_family_peers{state="alive"}'], 2)
        self.assertGreaterEqual(m['scale0_family_peer_events_total{event="lost"}'], 1)
        self.assertEqual(m['scale0_family_dropped_total{reason="malformed"}'], 0)
        self.assertEqual(m['scale0_budget_used{budget="peers"}'], 2)
        self.assertEqual(m['scale0_budget_limit{budget="peers"}'], 256)

    def test_a_raw_peer_is_greeted_per_the_spec(self):
        a = self.family_broker()
        self.scale0_worker(a, ["svc"], concurrency=2)
        self.wait_mmi(a, "svc")
        # The raw peer's own ROUTER, where A's link will connect once A hears of it.
        router = self.ctx.socket(zmq.ROUTER)
        router.setsockopt(zmq.LINGER, 0)
        port = router.bind_to_random_port("tcp://127.0.0.1")
        self._sockets.append(router)
        mine = ep(port)
        link = self.ctx.socket(zmq.DEALER)
        link.setsockopt(zmq.LINGER, 0)
        link.connect(a.peer)
        self._sockets.append(link)
        link.send_multipart([b"", hello(0x5151, mine, hb=1000, liveness=5)])
        got = []
        deadline = now() + 5.0
        while now() < deadline and not any(m[2][4] == 3 for m in got):
            if router.poll(200):
                got.append(router.recv_multipart())
        self.assertTrue(got, "A never linked to the raw peer")
        for m in got:
            self.assertEqual(len(m), 3, m)  # routing id, "", packed
            self.assertEqual(m[1], b"")
            self.assertEqual(m[2][:4], P_HDR)
        commands = [m[2][4] for m in got]
        self.assertEqual(commands[:3], [1, 2, 3], commands)  # HELLO, PEERS, then a full STATE
        r = PackedReader(got[0][2][5:])
        a_id, hb, liveness, flags = r.u64(), r.u32(), r.u32(), r.u8()
        family, peer_ep, frontend, backend = r.str8(), r.str16(), r.str16(), r.str16()
        self.assertTrue(r.done())
        self.assertEqual((hb, liveness, flags), (HB_MS, LIVENESS, 0))
        self.assertEqual((family, peer_ep), (b"default", a.peer.encode()))
        self.assertEqual((frontend, backend), (a.frontend.encode(), a.backend.encode()))
        r = PackedReader(got[1][2][5:])
        listed = [r.str16() for _ in range(r.u16())]
        self.assertTrue(r.done())
        self.assertIn(mine.encode(), listed)  # the raw peer itself: alive, for A
        r = PackedReader(got[2][2][5:])
        seq, sflags, count = r.u64(), r.u8(), r.u16()
        entries = {}
        for _ in range(count):
            name = r.str8()
            entries[name] = (r.u32(), r.u32(), r.u32())
            self.assertEqual(r.u8() & ~1, 0)  # entry flags: bit 0 idempotent, others 0
        self.assertTrue(r.done())
        self.assertEqual((seq, sflags), (1, 1))  # the first STATE on the link, with replace
        self.assertEqual(entries, {b"svc": (1, 2, 0)})
        self.assertEqual(got[0][0][:1], b"L")  # the link's routing id: 'L' + broker id + link
        self.assertEqual(du64(got[0][0][1:9]), a_id)
        # What the raw peer says shows on A.
        state = (P_HDR + b"\x03" + u64(1) + u8(1) + u16(1) + str8("remote") + u32(4) + u32(7) + u32(1)
                 + u8(0))
        link.send_multipart([b"", state])

        def remote():
            p = peers_of(family_status(a)).get(mine)
            return p and p["state"] == "alive" and p["services"] == [
                {"name": "remote", "workers": 4, "idle": 7, "queued": 1, "idempotent": False}]
        self.wait_for("the raw peer's STATE on A", remote, 5.0)
        # BYE: it is down at once.
        link.send_multipart([b"", P_HDR + b"\x04" + u16(503) + str16("going")])
        self.wait_for("the raw peer down after BYE",
                      lambda: peers_of(family_status(a))[mine]["state"] == "lost", 3.0)
        self.assertIn("BYE", peers_of(family_status(a))[mine]["reason"])

    def test_malformed_s0p1_and_garbage_on_the_peer_port_are_dropped_and_counted(self):
        a = self.family_broker()
        raw = self.ctx.socket(zmq.DEALER)
        raw.setsockopt(zmq.LINGER, 0)
        raw.connect(a.peer)
        self._sockets.append(raw)
        good = hello(0x77, "tcp://127.0.0.1:9")
        malformed = [
            [b"", b""], [b"", P_HDR], [b"", P_HDR + b"\x09"], [b"", good[:-1]], [b"", good + b"x"],
            [b"", P_HDR + b"\x01" + u64(1) + u32(0) + u32(3)],
            [b"", P_HDR + b"\x02" + u16(3) + str16("tcp://a:1")],
            [b"", P_HDR + b"\x03" + u64(1) + u8(0) + u16(1001)],
            [b"", P_HDR + b"\x03" + u64(1) + u8(0) + u16(1) + str8("x")],
            [b"", P_HDR + b"\x04" + u16(1)],
            [b"", good, b"extra frame"],
            [good],
            [b"not empty", good],
            [b"S0C2\x01" + b"\x00" * 20],
        ]
        for m in malformed:
            raw.send_multipart(m)
        invalid = [
            [b"", hello(0x77, "tcp://*:1")],
            [b"", hello(0x77, "tcp://" + "h" * 260 + ":1")],
            [b"", hello(0x77, "tcp://127.0.0.1:9", family="bad\nname")],
        ]
        for m in invalid:
            raw.send_multipart(m)
        for i in range(200):  # garbage, some of it large
            raw.send_multipart([bytes((i * 7 + k) % 256 for k in range(i * 13 % 700))] * (1 + i % 5))
        raw.send_multipart([b"", P_HDR + b"\x02" + u16(0)])  # well-formed, but no HELLO first

        def counted():
            d = family_status(a)["family"]["counters"]["dropped"]
            return d["malformed"] >= len(malformed) + 150 and d["invalid_endpoint"] == 2 and \
                d["invalid_name"] == 1 and d["unknown_sender"] >= 1 and d
        d, _ = self.wait_for("the drops counted", counted, 5.0)
        self.assertAlive(a)
        self.assertEqual(family_status(a)["family"]["peers"], [])
        m = scrape(a)
        self.assertEqual(m['scale0_family_dropped_total{reason="malformed"}'], d["malformed"])
        self.assertServes(a)

    def test_a_peer_endpoint_that_is_this_broker_is_never_linked(self):
        a = self.family_broker()
        b = self.family_broker(["tcp://localhost:%d" % a.peer_port])  # a name for A's address
        # C advertises a name, and is given its own address among its peers: only its own HELLO,
        # coming back through the link, can tell it that this endpoint is itself.
        port = free_port()
        itself = "tcp://127.0.0.1:%d" % port
        c = self.start_broker(heartbeat_interval=HB_MS, liveness=LIVENESS, peer_port=port,
                              extra=["--advertise-peer", "tcp://localhost:%d" % port,
                                     "--peer", itself, "--peer", a.peer])

        def settled():
            st = peers_of(family_status(c))
            return st.get(itself, {}).get("state") == "self" and \
                st.get(a.peer, {}).get("state") == "alive" and \
                st.get(b.peer, {}).get("state") == "alive" and st
        st, took = self.wait_for("C in the mesh, and itself found", settled, 5.0)
        print("\n  a broker found itself among its peers in %.2f s" % took)
        self.assertEqual(st[itself]["link"], "none")
        self.assertGreaterEqual(family_status(c)["family"]["counters"]["dropped"]["self"], 1)
        # The others know C by the name it advertises.
        self.wait_for("C alive on A",
                      lambda: peers_of(family_status(a)).get("tcp://localhost:%d" % port, {}).get("state") == "alive",
                      5.0)
        time.sleep(1.0)
        self.assertEqual(peers_of(family_status(c))[itself]["state"], "self")  # and it stays so


if __name__ == "__main__":
    unittest.main()
