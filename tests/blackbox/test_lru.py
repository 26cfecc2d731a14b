# SPDX-License-Identifier: Apache-2.0
"""LRU dispatch: idle workers take sequential requests in turn."""

import collections
import unittest

from harness import Scale0TestCase


class LruTest(Scale0TestCase):

    def test_three_idle_native_workers_share_30_requests_evenly(self):
        b = self.start_broker()
        ws = [self.native_worker(b, ["lru"], name="w%d" % i) for i in range(3)]
        c = self.client(b)
        counts = collections.Counter()
        order = []
        for i in range(30):
            r = c.request("lru", [b"%d" % i], timeout_ms=5000)
            self.assertEqual(r.status, 200, r)
            counts[r.message] += 1
            order.append(r.message)
        self.assertEqual(dict(counts), {b"w0": 10, b"w1": 10, b"w2": 10}, "order was %r" % order)
        for i in range(3, 30):
            self.assertEqual(order[i], order[i - 3], "idle workers should be taken strictly in turn: %r" % order)
        self.assertEqual([len(w.jobs) for w in ws], [10, 10, 10])

    def test_three_idle_scale0_workers_share_30_requests_evenly(self):
        b = self.start_broker()
        for i in range(3):
            self.scale0_worker(b, ["lru"], name="s%d" % i, concurrency=1)
        self.wait_names(b, "lru", ["s0", "s1", "s2"], timeout=20.0)
        c = self.client(b)
        counts = collections.Counter()
        for i in range(30):
            r = c.request("lru", [b"%d" % i], timeout_ms=5000)
            self.assertEqual(r.status, 200, r)
            counts[r.message] += 1
        self.assertEqual(dict(counts), {b"s0": 10, b"s1": 10, b"s2": 10})

    def test_worker_with_spare_credit_moves_to_the_back(self):
        # W1 (concurrency 2) became ready before W2 (concurrency 1). Per the LRU rule:
        # R1 -> W1 (still has credit: to the back), R2 -> W2, R3 -> W1.
        b = self.start_broker()
        w1 = self.native_worker(b, ["back"], concurrency=2, mode="hold", name="W1")
        w2 = self.native_worker(b, ["back"], concurrency=1, mode="hold", name="W2")
        c = self.client(b)
        r1 = c.send_request("back", [b"R1"], timeout_ms=10000)
        j = w1.next_job(3.0)
        self.assertIsNotNone(j, "R1 should go to the worker that has waited longest (W1)")
        self.assertEqual(j.body, [b"R1"])
        r2 = c.send_request("back", [b"R2"], timeout_ms=10000)
        j = w2.next_job(3.0)
        self.assertIsNotNone(j, "R2 should go to W2 (W1 moved to the back after taking R1)")
        self.assertEqual(j.body, [b"R2"])
        r3 = c.send_request("back", [b"R3"], timeout_ms=10000)
        j = w1.next_job(3.0)
        self.assertIsNotNone(j, "R3 should go to W1 (its second unit of credit)")
        self.assertEqual(j.body, [b"R3"])
        self.assertEqual(len(w2.jobs), 1)
        self.assertEqual(len(w1.jobs), 2)
        for w in (w1, w2):
            for jj in list(w.jobs):
                w.reply(jj, 200, w.wname, jj.body)
        got = c.collect(3, 5.0)
        self.assertEqual(sorted(r.rid for r in got), sorted([r1, r2, r3]))


if __name__ == "__main__":
    unittest.main()
