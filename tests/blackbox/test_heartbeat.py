# SPDX-License-Identifier: Apache-2.0
"""Broker PUB heartbeats: one per interval however many workers; and the seed-post test: an idle
worker keeps its heartbeats and registration while another service is flooded."""

import json
import os
import time
import unittest

import sys

from harness import HERE, PYTHON, VERBOSE, Proc, Scale0TestCase, now

INTERVAL = 200  # ms


def gaps(times, start, end):
    """Gaps between consecutive times within [start, end], counting the edges."""
    pts = [start] + [t for t in times if start <= t <= end] + [end]
    return [b - a for a, b in zip(pts, pts[1:])]


class PubHeartbeatTest(Scale0TestCase):

    def test_one_pub_heartbeat_per_interval_for_any_number_of_workers(self):
        b = self.start_broker(heartbeat_interval=INTERVAL, liveness=3)
        ws = [self.native_worker(b, ["p%d" % i]) for i in range(4)]
        deadline = now() + 5
        while any(len(w.pubs) < 2 for w in ws) and now() < deadline:
            time.sleep(0.05)
        t0 = now()
        time.sleep(2.0)
        t1 = now()
        for w in ws:
            n = len([p for p in w.pubs if t0 <= p[0] <= t1])
            self.assertGreaterEqual(n, 6, "about 10 PUB heartbeats expected in 2 s, got %d" % n)
            self.assertLessEqual(n, 14, "one PUB heartbeat per interval (not per worker), got %d in 2 s" % n)
        # every subscriber sees the same publications
        seqs = [set(p[2] for p in w.pubs if t0 + 0.3 <= p[0] <= t1 - 0.3) for w in ws]
        self.assertTrue(all(s == seqs[0] for s in seqs[1:]), seqs)


class SeedPostTest(Scale0TestCase):
    """The bug this product exists to avoid: under a flood of requests for one service, an idle
    worker of another service misses broker heartbeats and gets expired."""

    def test_idle_worker_keeps_heartbeats_under_flood(self):
        b = self.start_broker(heartbeat_interval=INTERVAL, liveness=3)
        for i in range(2):
            self.scale0_worker(b, ["A"], name="echo%d" % i, concurrency=16)
        self.wait_names(b, "A", ["echo0", "echo1"], timeout=20.0)
        idle = self.native_worker(b, ["B"], name="idle-b")
        deadline = now() + 5
        while len(idle.pubs) < 2 and now() < deadline:
            time.sleep(0.05)
        self.assertGreaterEqual(len(idle.pubs), 2, "the idle worker should receive PUB heartbeats")

        flood = Proc([PYTHON, os.path.join(HERE, "flood.py"), b.frontend, "A", 200, 3.5, 2000000],
                     capture_stdout=True)
        self.addCleanup(flood.cleanup)
        t_start = now()
        # a request to B in the middle of the flood is served promptly
        time.sleep(1.5)
        c = self.client(b)
        t_b = now()
        r = c.request("B", [b"during"], timeout_ms=5000, wait=8.0)
        mid_latency = now() - t_b
        self.assertEqual((r.status, r.message), (200, b"idle-b"))
        try:
            out, _ = flood.p.communicate(timeout=40)
        except Exception:
            flood.kill()
            self.fail("flood client did not finish; broker stderr:\n%s" % b.stderr_text()[-2000:])
        t_end = now()
        stats = json.loads(out.decode().strip().splitlines()[-1])
        flood_secs = min(t_end, t_start + stats["elapsed"]) - t_start

        # the flood really happened and was served
        self.assertGreaterEqual(stats["ok"], 400, "flood made too little progress: %r" % stats)
        self.assertEqual(stats["errors"], {}, "flood requests should all succeed: %r" % stats)
        self.assertEqual(stats["outstanding"], 0, stats)
        self.assertGreaterEqual(flood_secs, 10 * INTERVAL / 1000.0, "the flood must last >= 10 intervals")

        # the idle worker saw a PUB heartbeat at least every 2 intervals throughout
        window_end = t_start + flood_secs
        times = [p[0] for p in idle.pubs]
        g = gaps(times, t_start, window_end)
        n_pubs = len([t for t in times if t_start <= t <= window_end])
        self.assertGreaterEqual(n_pubs, int(flood_secs / (INTERVAL / 1000.0)) // 2,
                                "too few PUB heartbeats during the flood: %d in %.1fs" % (n_pubs, flood_secs))
        if VERBOSE:
            sys.stderr.write("\nflood %r; %d PUB heartbeats, max gap %.0f ms, B latency mid-flood %.0f ms\n"
                             % (stats, n_pubs, max(g) * 1000, mid_latency * 1000))
        self.assertLessEqual(max(g), 2 * INTERVAL / 1000.0,
                             "gap of %.0f ms between broker heartbeats under load (limit %d ms); flood %r"
                             % (max(g) * 1000, 2 * INTERVAL, stats))
        # the broker never expired or disconnected it
        self.assertEqual(idle.disconnects, [], "the idle worker must not be disconnected")
        self.assertEqual(idle.registrations, 1)
        self.assertEqual(len({p[1] for p in idle.pubs}), 1, "broker-id must not change")
        r = c.request("B", [b"after"], timeout_ms=5000, wait=8.0)
        self.assertEqual((r.status, r.message, r.body), (200, b"idle-b", [b"after"]))
        self.assertLess(mid_latency, 2.0, "request to B during the flood took %.2fs" % mid_latency)
        idle.check()


if __name__ == "__main__":
    unittest.main()
