# SPDX-License-Identifier: Apache-2.0
"""No worker for a service: 503 at the no-worker timeout; a worker arriving in time serves the request."""

import time
import unittest

from harness import Scale0TestCase, now


class NoWorkerTest(Scale0TestCase):

    def test_no_worker_gives_503_at_the_no_worker_timeout(self):
        b = self.start_broker(no_worker_timeout=500)
        c = self.client(b)
        t0 = now()
        rid = c.send_request("nobody", [b"x"], timeout_ms=20000)
        r = c.get_reply(rid, 5.0)
        self.assertIsNotNone(r, "no reply at all for a service with no worker")
        elapsed = r.t - t0
        self.assertEqual(r.status, 503, r)
        self.assertGreaterEqual(elapsed, 0.4, "503 came before the no-worker timeout (%.3fs)" % elapsed)
        self.assertLess(elapsed, 3.0, "503 came too late (%.3fs)" % elapsed)
        self.assertEqual(r.body, [])
        self.assertEqual(c.drain_replies(0.5), [])

    def test_several_waiting_requests_all_get_503(self):
        b = self.start_broker(no_worker_timeout=500)
        c = self.client(b)
        rids = [c.send_request("nobody%d" % (i % 2), [b"x"], timeout_ms=20000) for i in range(6)]
        got = c.collect(6, 5.0)
        self.assertEqual(sorted((r.rid, r.status) for r in got), sorted((rid, 503) for rid in rids))

    def test_deadline_shorter_than_no_worker_timeout_gives_504(self):
        b = self.start_broker(no_worker_timeout=2000)
        c = self.client(b)
        t0 = now()
        r = c.request("nobody", [b"x"], timeout_ms=300, wait=5.0)
        self.assertEqual(r.status, 504, r)
        self.assertLess(r.t - t0, 1.5)

    def test_worker_arriving_within_the_timeout_serves_the_request(self):
        b = self.start_broker(no_worker_timeout=1500)
        c = self.client(b)
        t0 = now()
        rid = c.send_request("soon", [b"queued"], timeout_ms=20000)
        time.sleep(0.3)
        self.assertEqual(c.drain_replies(0.01), [])
        self.native_worker(b, ["soon"], name="latecomer", wait=False)
        r = c.get_reply(rid, 5.0)
        self.assertIsNotNone(r)
        self.assertEqual((r.status, r.message, r.body), (200, b"latecomer", [b"queued"]))

    def test_scale0_worker_arriving_within_the_timeout_serves_the_request(self):
        b = self.start_broker(no_worker_timeout=4000)
        c = self.client(b)
        rid = c.send_request("soon", [b"queued"], timeout_ms=20000)
        time.sleep(0.2)
        self.scale0_worker(b, ["soon"], name="proc-latecomer")
        r = c.get_reply(rid, 8.0)
        self.assertIsNotNone(r)
        self.assertEqual((r.status, r.message, r.body), (200, b"proc-latecomer", [b"queued"]))

    def test_service_whose_last_worker_left_gives_503(self):
        b = self.start_broker(no_worker_timeout=500)
        w = self.native_worker(b, ["left"], mode="echo")
        c = self.client(b)
        self.assertEqual(c.request("left", [b"x"], timeout_ms=5000).status, 200)
        w.leave()
        self.wait_mmi(b, "left", expect=b"404", timeout=5.0, client=c)
        t0 = now()
        r = c.request("left", [b"x"], timeout_ms=20000, wait=5.0)
        self.assertEqual(r.status, 503)
        self.assertGreaterEqual(r.t - t0, 0.4)


if __name__ == "__main__":
    unittest.main()
