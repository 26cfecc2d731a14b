# SPDX-License-Identifier: Apache-2.0
"""Concurrency credit, per-client in-flight limit (429), queue limit (503)."""

import time
import unittest

from harness import Scale0TestCase, now


class CreditTest(Scale0TestCase):

    def test_concurrency_4_holds_4_and_never_a_5th_until_it_replies(self):
        b = self.start_broker()
        w = self.native_worker(b, ["C"], concurrency=4, mode="hold")
        c = self.client(b)
        rids = [c.send_request("C", [b"%d" % i], timeout_ms=20000) for i in range(10)]
        first = w.jobs_within(1.5)
        self.assertEqual(len(first), 4, "a worker with concurrency 4 should receive exactly 4: %r" % first)
        more = w.jobs_within(1.5)
        self.assertEqual(more, [], "no 5th request before a reply")
        self.assertEqual(c.drain_replies(0.1), [], "queued requests get no reply yet")
        # one reply frees one unit of credit: exactly one more request
        w.reply(first[0], 200, b"", first[0].body)
        nxt = w.jobs_within(1.5)
        self.assertEqual(len(nxt), 1, "one REPLY gives back exactly one unit of credit: %r" % nxt)
        # the requests are dispatched in arrival order
        self.assertEqual([j.body for j in first + nxt], [[b"%d" % i] for i in range(5)])
        held = first[1:] + nxt
        self.assertEqual(len(held), 4)
        # answer everything as it comes; all 10 requests get exactly one reply
        done = [first[0]]
        deadline = now() + 15
        for _ in range(100):
            for j in held:
                w.reply(j, 200, b"", j.body)
            done += held
            if len(done) >= 10 or now() > deadline:
                break
            held = w.jobs_within(0.5)
            self.assertLessEqual(len(held), 4)
        self.assertEqual(len(done), 10)
        got = c.collect(10, 10.0)
        self.assertEqual(sorted(r.rid for r in got), sorted(rids))
        for r in got:
            self.assertEqual(r.status, 200)
        self.assertEqual(c.drain_replies(0.3), [])
        self.assertEqual(len(w.jobs), 10)

    def test_max_client_inflight_gives_429(self):
        b = self.start_broker(max_client_inflight=3)
        w = self.native_worker(b, ["I"], concurrency=10, mode="hold")
        c = self.client(b)
        rids = [c.send_request("I", [b"%d" % i], timeout_ms=20000) for i in range(5)]
        got = c.collect(2, 3.0)
        self.assertEqual(sorted((r.rid, r.status) for r in got), [(rids[3], 429), (rids[4], 429)],
                         "the 4th and 5th in-flight requests of one client get 429")
        jobs = w.jobs_within(1.0)
        self.assertEqual(len(jobs), 3)
        # another client is not affected by the first one's in-flight count
        c2 = self.client(b)
        rid = c2.send_request("I", [b"other"], timeout_ms=20000)
        j = w.next_job(3.0)
        self.assertIsNotNone(j, "another client's request must be accepted")
        w.reply(j, 200, b"", j.body)
        r = c2.get_reply(rid, 5.0)
        self.assertEqual(r.status, 200)
        # once replies come back the first client may send again
        for j in jobs:
            w.reply(j, 200, b"", j.body)
        self.assertEqual(sorted(r.rid for r in c.collect(3, 5.0)), sorted(rids[:3]))
        rid = c.send_request("I", [b"again"], timeout_ms=20000)
        j = w.next_job(3.0)
        self.assertIsNotNone(j)
        w.reply(j, 200, b"", j.body)
        self.assertEqual(c.get_reply(rid, 5.0).status, 200)

    def test_max_queue_gives_503(self):
        b = self.start_broker(max_queue=2)
        w = self.native_worker(b, ["Q"], concurrency=1, mode="hold")
        c = self.client(b)
        rids = [c.send_request("Q", [b"%d" % i], timeout_ms=20000) for i in range(5)]
        # 1 in flight, 2 queued, the 4th and 5th are over the queue limit
        got = c.collect(2, 3.0)
        self.assertEqual(sorted((r.rid, r.status) for r in got), [(rids[3], 503), (rids[4], 503)])
        # the queued ones are served once credit returns
        served = []
        for _ in range(3):
            j = w.next_job(3.0)
            self.assertIsNotNone(j, "queued request should be dispatched after a reply")
            served.append(j.body[0])
            w.reply(j, 200, b"", j.body)
        self.assertEqual(served, [b"0", b"1", b"2"])
        got = c.collect(3, 5.0)
        self.assertEqual(sorted((r.rid, r.status) for r in got), sorted((rid, 200) for rid in rids[:3]))


if __name__ == "__main__":
    unittest.main()
