# SPDX-License-Identifier: Apache-2.0
"""A worker that answers the same job twice: the client sees exactly one reply; the second is dropped
and counted (dropped.unknown_reply)."""

import time
import unittest

from harness import Scale0TestCase, counter_sum


class DuplicateReplyTest(Scale0TestCase):

    def _dup_setup(self):
        b = self.start_broker()
        w = self.native_worker(b, ["dup"], concurrency=1, mode="hold")
        c = self.client(b)
        return b, w, c

    def test_duplicate_reply_delivered_once(self):
        b, w, c = self._dup_setup()
        rid = c.send_request("dup", [b"x"], timeout_ms=10000)
        j = w.next_job(3.0)
        self.assertIsNotNone(j)
        w.reply(j, 200, b"first", [b"one"])
        w.reply(j, 200, b"second", [b"two"])
        r = c.get_reply(rid, 5.0)
        self.assertEqual((r.status, r.message, r.body), (200, b"first", [b"one"]))
        extra = c.drain_replies(1.0)
        self.assertEqual(extra, [], "the duplicate reply must not reach the client")
        # the broker keeps serving this worker and client normally
        rid2 = c.send_request("dup", [b"y"], timeout_ms=10000)
        j2 = w.next_job(3.0)
        self.assertIsNotNone(j2)
        self.assertNotEqual(j2.job_id, j.job_id, "a new request gets a new job-id")
        w.reply(j2, 200, b"", [b"y"])
        r2 = c.get_reply(rid2, 5.0)
        self.assertEqual((r2.rid, r2.status, r2.body), (rid2, 200, [b"y"]))

    def test_duplicate_reply_does_not_inflate_credit(self):
        b, w, c = self._dup_setup()
        rid = c.send_request("dup", [b"x"], timeout_ms=10000)
        j = w.next_job(3.0)
        w.reply(j, 200, b"", [b"x"])
        w.reply(j, 200, b"", [b"x"])  # duplicate: must not give back a second unit of credit
        self.assertEqual(c.get_reply(rid, 5.0).status, 200)
        time.sleep(0.3)
        rids = [c.send_request("dup", [b"%d" % i], timeout_ms=10000) for i in range(3)]
        jobs = w.jobs_within(1.5)
        self.assertEqual(len(jobs), 1, "a concurrency-1 worker must hold one request at a time, got %r" % jobs)
        for _ in range(3):
            w.reply(jobs[-1], 200, b"", jobs[-1].body)
            nxt = w.jobs_within(0.8)
            self.assertLessEqual(len(nxt), 1, "still one at a time: %r" % nxt)
            if not nxt:
                break
            jobs += nxt
        self.assertEqual(sorted(r.rid for r in c.collect(3, 5.0)), sorted(rids))

    def test_reply_for_unknown_job_is_dropped_and_counted(self):
        b, w, c = self._dup_setup()
        before = self.status_json(b, c)
        rid = c.send_request("dup", [b"x"], timeout_ms=10000)
        j = w.next_job(3.0)
        w.reply(j, 200, b"", [b"x"])
        w.reply(j, 200, b"", [b"x"])          # duplicate
        w.reply(0xDEADBEEF, 200, b"", [b"?"])  # a job-id never issued
        self.assertEqual(c.get_reply(rid, 5.0).status, 200)
        time.sleep(0.5)
        self.assertEqual(c.drain_replies(0.3), [])
        after = self.status_json(b, c)
        n0 = counter_sum(before, "unknown_reply")
        n1 = counter_sum(after, "unknown_reply")
        self.assertIsNotNone(n1, "scale0.status should expose the dropped.unknown_reply counter: %r" % after)
        self.assertEqual(n1 - (n0 or 0), 2, "the duplicate and the never-issued reply are counted: before=%r after=%r" % (n0, n1))
        self.assertEqual(w.disconnects, [], "a duplicate or unknown REPLY is dropped, not punished")

    def test_reply_with_another_workers_job_id_is_dropped(self):
        b = self.start_broker()
        wa = self.native_worker(b, ["pair"], concurrency=1, mode="hold", name="A")
        wb = self.native_worker(b, ["pair"], concurrency=1, mode="hold", name="B")
        c = self.client(b)
        n0 = counter_sum(self.status_json(b, c), "unknown_reply") or 0
        rid = c.send_request("pair", [b"for A"], timeout_ms=10000)
        ja = wa.next_job(3.0)
        self.assertIsNotNone(ja, "the first request goes to A (waited longest)")
        wb.reply(ja, 200, b"B", [b"hijack"])  # B answers A's job
        self.assertEqual(c.drain_replies(0.8), [], "a reply from a worker that does not hold the job is dropped")
        wa.reply(ja, 200, b"A", [b"real"])
        r = c.get_reply(rid, 5.0)
        self.assertEqual((r.status, r.message, r.body), (200, b"A", [b"real"]))
        n1 = counter_sum(self.status_json(b, c), "unknown_reply")
        self.assertEqual(n1 - n0, 1)


if __name__ == "__main__":
    unittest.main()
