# SPDX-License-Identifier: Apache-2.0
"""A worker that dies or disconnects while holding requests: 502, or one re-dispatch if idempotent;
the dead worker is purged within liveness x interval."""

import time
import unittest

from harness import Scale0TestCase, now, service_workers

INTERVAL = 200
LIVENESS = 3
EXPIRY = INTERVAL * LIVENESS / 1000.0
MARGIN = 2.0  # seconds, for a noisy machine


class Scale0WorkerKilledTest(Scale0TestCase):

    def test_killed_worker_non_idempotent_gives_502_and_is_purged(self):
        b = self.start_broker(heartbeat_interval=INTERVAL, liveness=LIVENESS)
        w = self.scale0_worker(b, ["slow"], name="victim", delay=4000, concurrency=1)
        self.wait_mmi(b, "slow", timeout=15.0)
        c = self.client(b)
        rid = c.send_request("slow", [b"doomed"], timeout_ms=20000)
        time.sleep(0.6)  # the request is now held by the worker
        self.assertEqual(c.drain_replies(0.05), [], "no reply before the worker dies")
        t_kill = now()
        w.sigkill()
        r = c.get_reply(rid, EXPIRY + MARGIN + 3.0)
        self.assertIsNotNone(r, "the client must get a reply when the worker holding its request dies")
        elapsed = now() - t_kill
        self.assertEqual(r.status, 502, r)
        self.assertLess(elapsed, EXPIRY + MARGIN,
                        "502 should come within liveness x interval (+margin) of the death, took %.2fs" % elapsed)
        # the worker is gone from the service
        self.assertEqual(self.mmi_service(b, "slow"), b"404",
                         "mmi.service should say 404 once the only worker was purged")
        self.assertIn(service_workers(self.status_json(b, c), "slow"), (None, 0))
        self.assertEqual(c.drain_replies(0.5), [], "exactly one reply")

    def test_killed_worker_non_idempotent_with_second_worker(self):
        b = self.start_broker(heartbeat_interval=INTERVAL, liveness=LIVENESS)
        w1 = self.scale0_worker(b, ["slow"], name="w1", delay=1500, concurrency=1)
        self.scale0_worker(b, ["slow"], name="w2", delay=1500, concurrency=1)
        self.wait_names(b, "slow", ["w1", "w2"], timeout=20.0)
        c = self.client(b)
        ra = c.send_request("slow", [b"a"], timeout_ms=20000)
        rb = c.send_request("slow", [b"b"], timeout_ms=20000)
        time.sleep(0.4)
        t_kill = now()
        w1.sigkill()
        got = c.collect(2, 10.0)
        self.assertEqual(len(got), 2, got)
        by = {r.rid: r for r in got}
        self.assertEqual(set(by), {ra, rb})
        statuses = sorted(r.status for r in got)
        self.assertEqual(statuses, [200, 502], "the request held by the dead worker gets 502, the other 200: %r" % got)
        ok = [r for r in got if r.status == 200][0]
        self.assertEqual(ok.message, b"w2")
        bad = [r for r in got if r.status == 502][0]
        self.assertLess(bad.t - t_kill, EXPIRY + MARGIN)
        # scale0.status reflects the loss: one worker left for the service
        st = self.status_json(b, c)
        self.assertEqual(service_workers(st, "slow"), 1, "scale0.status should list 1 worker for 'slow': %r" % st)
        # nothing more is routed to the dead worker: every following request is served by w2
        for i in range(4):
            r = c.request("slow", [b"after%d" % i], timeout_ms=6000, wait=10.0)
            self.assertEqual((r.status, r.message, r.body), (200, b"w2", [b"after%d" % i]))
        self.assertEqual(self.mmi_service(b, "slow"), b"200")

    def test_killed_worker_idempotent_request_is_served_by_the_other(self):
        b = self.start_broker(heartbeat_interval=INTERVAL, liveness=LIVENESS)
        w1 = self.scale0_worker(b, ["idem"], name="w1", delay=1500, concurrency=1, idempotent=True)
        self.scale0_worker(b, ["idem"], name="w2", delay=1500, concurrency=1, idempotent=True)
        self.wait_names(b, "idem", ["w1", "w2"], timeout=20.0)
        c = self.client(b)
        ra = c.send_request("idem", [b"a"], timeout_ms=20000)
        rb = c.send_request("idem", [b"b"], timeout_ms=20000)
        time.sleep(0.4)
        w1.sigkill()
        got = c.collect(2, 12.0)
        self.assertEqual(len(got), 2, got)
        by = {r.rid: r for r in got}
        self.assertEqual(set(by), {ra, rb})
        for rid, body in ((ra, [b"a"]), (rb, [b"b"])):
            self.assertEqual(by[rid].status, 200, "idempotent request should be re-dispatched: %r" % by[rid])
            self.assertEqual(by[rid].message, b"w2")
            self.assertEqual(by[rid].body, body)
        self.assertEqual(c.drain_replies(0.5), [])
        self.assertEqual(service_workers(self.status_json(b, c), "idem"), 1)
        for i in range(3):
            r = c.request("idem", [b"after%d" % i], timeout_ms=6000, wait=10.0)
            self.assertEqual((r.status, r.message), (200, b"w2"))

    def test_killed_worker_is_purged_within_liveness_intervals(self):
        b = self.start_broker(heartbeat_interval=INTERVAL, liveness=LIVENESS)
        w = self.scale0_worker(b, ["gone"], name="gone", concurrency=1)
        self.wait_mmi(b, "gone", timeout=15.0)
        c = self.client(b)
        t_kill = now()
        w.sigkill()
        took = self.wait_mmi(b, "gone", expect=b"404", timeout=EXPIRY + MARGIN + 3.0, client=c)
        took = now() - t_kill
        self.assertLess(took, EXPIRY + MARGIN, "idle dead worker purged after %.2fs" % took)


class NativeWorkerLeavesTest(Scale0TestCase):

    def test_disconnect_while_holding_gives_502_promptly(self):
        b = self.start_broker(heartbeat_interval=INTERVAL, liveness=LIVENESS)
        w = self.native_worker(b, ["D"], concurrency=2, mode="hold")
        c = self.client(b)
        rids = [c.send_request("D", [b"%d" % i], timeout_ms=20000) for i in range(2)]
        self.assertEqual(len(w.jobs_within(1.0)), 2)
        t0 = now()
        w.leave()
        got = c.collect(2, 5.0)
        self.assertEqual(sorted((r.rid, r.status) for r in got), sorted((rid, 502) for rid in rids))
        self.assertLess(max(r.t for r in got) - t0, 1.5,
                        "DISCONNECT is handled at once, not after the liveness expiry")
        self.assertEqual(self.mmi_service(b, "D"), b"404")

    def test_idempotent_flag_redispatches_once_then_502(self):
        b = self.start_broker(heartbeat_interval=INTERVAL, liveness=LIVENESS)
        w1 = self.native_worker(b, ["I"], flags=0x01, mode="hold", name="i1")
        w2 = self.native_worker(b, ["I"], flags=0x01, mode="hold", name="i2")
        w3 = self.native_worker(b, ["I"], flags=0x01, mode="echo", name="i3")
        c = self.client(b)
        # first request goes to i1 (waited longest)
        rid = c.send_request("I", [b"job"], timeout_ms=20000)
        j1 = w1.next_job(3.0)
        self.assertIsNotNone(j1)
        w1.leave()
        # re-dispatched once to the next worker in LRU order (i2), same service and body
        j2 = w2.next_job(3.0)
        self.assertIsNotNone(j2, "idempotent request should be re-dispatched to another worker")
        self.assertEqual((j2.service, j2.body), (b"I", [b"job"]))
        self.assertEqual(c.drain_replies(0.2), [])
        # the second death: it was already re-dispatched once -> 502, not a third attempt at i3
        w2.leave()
        r = c.get_reply(rid, 5.0)
        self.assertIsNotNone(r)
        self.assertEqual(r.status, 502, r)
        time.sleep(0.3)
        self.assertEqual([j.body for j in w3.jobs], [], "no third attempt")
        self.assertEqual(c.drain_replies(0.3), [])

    def test_idempotent_redispatch_when_worker_expires(self):
        b = self.start_broker(heartbeat_interval=INTERVAL, liveness=LIVENESS)
        w1 = self.native_worker(b, ["E"], flags=0x01, mode="hold", name="e1")
        w2 = self.native_worker(b, ["E"], flags=0x01, mode="echo", name="e2")
        c = self.client(b)
        rid = c.send_request("E", [b"payload"], timeout_ms=20000)
        self.assertIsNotNone(w1.next_job(3.0))
        t0 = now()
        w1.stop()  # silent death: no DISCONNECT, no more heartbeats
        r = c.get_reply(rid, EXPIRY + MARGIN + 3.0)
        self.assertIsNotNone(r)
        self.assertEqual((r.status, r.message, r.body), (200, b"e2", [b"payload"]))
        self.assertLess(r.t - t0, EXPIRY + MARGIN)

    def test_non_idempotent_worker_expires_gives_502(self):
        b = self.start_broker(heartbeat_interval=INTERVAL, liveness=LIVENESS)
        w1 = self.native_worker(b, ["N"], mode="hold", name="n1")
        w2 = self.native_worker(b, ["N"], mode="echo", name="n2")
        c = self.client(b)
        rid = c.send_request("N", [b"payload"], timeout_ms=20000)
        self.assertIsNotNone(w1.next_job(3.0))
        t0 = now()
        w1.stop()
        r = c.get_reply(rid, EXPIRY + MARGIN + 3.0)
        self.assertIsNotNone(r)
        self.assertEqual(r.status, 502, r)
        self.assertLess(r.t - t0, EXPIRY + MARGIN)
        self.assertEqual(w2.jobs, [])


if __name__ == "__main__":
    unittest.main()
