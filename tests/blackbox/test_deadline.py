# SPDX-License-Identifier: Apache-2.0
"""Deadlines: 504 when the deadline passes in flight or queued; a late worker reply is dropped."""

import time
import unittest

from harness import Scale0TestCase, counter_sum, now


class DeadlineTest(Scale0TestCase):

    def test_in_flight_deadline_gives_504_and_late_reply_is_dropped(self):
        b = self.start_broker()
        w = self.native_worker(b, ["late"], concurrency=1, mode="hold")
        c = self.client(b)
        t0 = now()
        rid = c.send_request("late", [b"x"], timeout_ms=300)
        j = w.next_job(3.0)
        self.assertIsNotNone(j, "the request should be dispatched")
        self.assertTrue(1 <= j.timeout_ms <= 300, "worker gets the time left (1..300): %r" % j)
        r = c.get_reply(rid, 5.0)
        self.assertIsNotNone(r, "no 504 within 5 s for a 300 ms deadline")
        elapsed = r.t - t0
        self.assertEqual(r.status, 504, r)
        self.assertGreaterEqual(elapsed, 0.25, "504 came before the deadline (%.3fs)" % elapsed)
        self.assertLess(elapsed, 1.5, "504 came too late (%.3fs)" % elapsed)
        # the worker answers late: not delivered
        w.reply(j, 200, b"late", [b"too late"])
        self.assertEqual(c.drain_replies(1.0), [], "a late reply after 504 must be dropped")
        # and the broker counts it
        st = self.status_json(b, c)
        n = counter_sum(st, "late_reply")
        self.assertIsNotNone(n, "scale0.status should expose dropped.late_reply: %r" % st)
        self.assertGreaterEqual(n, 1)
        # the worker can serve again after its late reply
        w.mode = "echo"
        r = c.request("late", [b"again"], timeout_ms=5000)
        self.assertEqual((r.status, r.body), (200, [b"again"]))

    def test_abandoned_request_keeps_the_worker_credit_until_it_replies(self):
        # protocol.md: "in flight | deadline passes | REPLY 504; the worker keeps the credit until it
        # replies | abandoned" and "abandoned | worker REPLY | drop, ..., worker regains credit"
        b = self.start_broker()
        w = self.native_worker(b, ["slowpoke"], concurrency=1, mode="hold")
        c = self.client(b)
        rid1 = c.send_request("slowpoke", [b"first"], timeout_ms=300)
        j1 = w.next_job(3.0)
        self.assertIsNotNone(j1)
        self.assertEqual(c.get_reply(rid1, 5.0).status, 504)
        rid2 = c.send_request("slowpoke", [b"second"], timeout_ms=10000)
        self.assertEqual(w.jobs_within(1.0), [], "the worker still holds the abandoned request: no new one")
        w.reply(j1, 200, b"", [b"late"])
        j2 = w.next_job(3.0)
        self.assertIsNotNone(j2, "the late reply gives the credit back")
        self.assertEqual(j2.body, [b"second"])
        w.reply(j2, 200, b"", [b"second"])
        r2 = c.get_reply(rid2, 5.0)
        self.assertEqual((r2.status, r2.body), (200, [b"second"]))
        self.assertEqual(c.drain_replies(0.5), [], "the late reply to the first request is never delivered")

    def test_abandoned_request_worker_dies_no_second_reply(self):
        # protocol.md: "abandoned | worker dies | forget it (its client already has 504)"
        b = self.start_broker(heartbeat_interval=200, liveness=3)
        w = self.native_worker(b, ["doomed"], concurrency=1, mode="hold", flags=0x01)
        spare = self.native_worker(b, ["doomed"], concurrency=1, mode="hold")
        c = self.client(b)
        rid = c.send_request("doomed", [b"x"], timeout_ms=300)
        self.assertIsNotNone(w.next_job(3.0))
        self.assertEqual(c.get_reply(rid, 5.0).status, 504)
        w.leave()
        time.sleep(1.0)
        self.assertEqual(c.drain_replies(0.5), [], "no 502 (or anything) after the 504")
        self.assertEqual(spare.jobs, [], "an abandoned request is not re-dispatched, even if idempotent")

    def test_queued_deadline_gives_504(self):
        b = self.start_broker()
        w = self.native_worker(b, ["busy"], concurrency=1, mode="hold")
        c = self.client(b)
        rid_a = c.send_request("busy", [b"a"], timeout_ms=20000)
        ja = w.next_job(3.0)
        self.assertIsNotNone(ja)
        t0 = now()
        rid_b = c.send_request("busy", [b"b"], timeout_ms=400)  # queued behind a
        r = c.get_reply(rid_b, 5.0)
        self.assertIsNotNone(r)
        self.assertEqual(r.status, 504, r)
        self.assertGreaterEqual(r.t - t0, 0.35)
        self.assertLess(r.t - t0, 1.6)
        # freeing the worker must not dispatch the expired request
        w.reply(ja, 200, b"", [b"a"])
        self.assertEqual(c.get_reply(rid_a, 5.0).status, 200)
        self.assertEqual(w.jobs_within(0.7), [], "an expired queued request is never dispatched")

    def test_default_request_timeout_applies_to_timeout_zero(self):
        b = self.start_broker(request_timeout=600)
        w = self.native_worker(b, ["dflt"], concurrency=1, mode="hold")
        c = self.client(b)
        t0 = now()
        rid = c.send_request("dflt", [b"x"], timeout_ms=0)
        j = w.next_job(3.0)
        self.assertIsNotNone(j)
        self.assertTrue(1 <= j.timeout_ms <= 600, j)
        r = c.get_reply(rid, 6.0)
        self.assertIsNotNone(r)
        self.assertEqual(r.status, 504)
        self.assertGreaterEqual(r.t - t0, 0.5)
        self.assertLess(r.t - t0, 2.0)

    def test_every_request_gets_exactly_one_reply_under_mixed_deadlines(self):
        b = self.start_broker()
        # worker answers even-numbered bodies at once, holds odd ones forever
        w = self.native_worker(b, ["mix"], concurrency=8,
                               mode=lambda j: (200, b"", j.body) if int(j.body[0]) % 2 == 0 else None)
        c = self.client(b)
        rids = {c.send_request("mix", [b"%d" % i], timeout_ms=500): i for i in range(16)}
        got = c.collect(16, 8.0)
        self.assertEqual(sorted(r.rid for r in got), sorted(rids))
        for r in got:
            i = rids[r.rid]
            self.assertEqual(r.status, 200 if i % 2 == 0 else 504, (i, r))
        self.assertEqual(c.drain_replies(1.0), [])


if __name__ == "__main__":
    unittest.main()
