# SPDX-License-Identifier: Apache-2.0
"""Majordomo 0.1 interop: MDP clients (REQ and DEALER) and MDP workers with native peers and each other."""

import time
import unittest

from harness import (MDPC, MDPW, M_DISCONNECT, M_HEARTBEAT, M_READY, M_REPLY, Scale0TestCase, now)

INTERVAL = 200
LIVENESS = 3
EXPIRY = INTERVAL * LIVENESS / 1000.0
MARGIN = 2.0


class MajordomoClientTest(Scale0TestCase):

    def test_mdp_req_client_gets_reply_from_native_worker(self):
        b = self.start_broker()
        self.native_worker(b, ["echo"], mode="echo")
        mc = self.mdp_client(b, "req")
        for i in range(3):
            r = mc.request("echo", [b"hello %d" % i, b"", b"third"], timeout=10.0)
            self.assertEqual(r.service, b"echo", "the reply's service frame must equal the request's")
            self.assertEqual(r.body, [b"hello %d" % i, b"", b"third"])

    def test_mdp_dealer_client_gets_replies_from_native_worker(self):
        b = self.start_broker()
        self.native_worker(b, ["echo"], mode="echo", concurrency=4)
        mc = self.mdp_client(b, "dealer")
        for i in range(5):
            mc.send("echo", [b"m%d" % i])
        got = []
        for _ in range(5):
            r = mc.recv(10.0)
            self.assertIsNotNone(r, "DEALER MDP client missing replies: %r" % got)
            self.assertEqual(r.frames[0], b"", "a DEALER client gets the empty delimiter back")
            self.assertEqual(r.service, b"echo")
            got.append(r.body[0])
        self.assertEqual(sorted(got), [b"m%d" % i for i in range(5)])

    def test_native_client_gets_reply_from_mdp_worker(self):
        b = self.start_broker(heartbeat_interval=INTERVAL, liveness=LIVENESS)
        mw = self.mdp_worker(b, "legacy", hb_ms=INTERVAL, reply_prefix=b"mdp:")
        self.wait_mmi(b, "legacy", timeout=10.0)
        c = self.client(b)
        r = c.request("legacy", [b"ping", b"two"], timeout_ms=5000)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, [b"mdp:ping", b"two"])
        self.assertEqual(len(mw.jobs), 1)
        self.assertEqual(len(mw.jobs[0].address), 8, "the client address given to an MDP worker is the 8-byte job-id")
        self.assertEqual(mw.jobs[0].body, [b"ping", b"two"])
        mw.check()

    def test_mdp_client_to_mdp_worker(self):
        b = self.start_broker(heartbeat_interval=INTERVAL, liveness=LIVENESS)
        self.mdp_worker(b, "legacy", hb_ms=INTERVAL, reply_prefix=b"mdp:")
        self.wait_mmi(b, "legacy", timeout=10.0)
        for kind in ("req", "dealer"):
            mc = self.mdp_client(b, kind)
            for i in range(3):
                r = mc.request("legacy", [b"%s-%d" % (kind.encode(), i)], timeout=10.0)
                self.assertEqual(r.service, b"legacy")
                self.assertEqual(r.body, [b"mdp:%s-%d" % (kind.encode(), i)])

    def test_mdp_replies_route_to_the_right_client(self):
        b = self.start_broker(heartbeat_interval=INTERVAL, liveness=LIVENESS)
        w1 = self.mdp_worker(b, "hold", hb_ms=INTERVAL, mode="hold")
        w2 = self.mdp_worker(b, "hold", hb_ms=INTERVAL, mode="hold")
        self.wait_mmi(b, "hold")
        time.sleep(0.3)
        c1 = self.mdp_client(b, "req")
        c2 = self.mdp_client(b, "dealer")
        c1.send("hold", [b"from-c1"])
        c2.send("hold", [b"from-c2"])
        jobs = []
        deadline = now() + 5
        while len(jobs) < 2 and now() < deadline:
            for w in (w1, w2):
                j = w.next_job(0.05)
                if j:
                    jobs.append((w, j))
        self.assertEqual(len(jobs), 2, "each MDP worker (concurrency 1) should hold one request")
        self.assertNotEqual(jobs[0][0], jobs[1][0])
        for w, j in reversed(jobs):
            w.reply(j, [b"re:" + j.body[0]])
        r1 = c1.recv(5.0)
        r2 = c2.recv(5.0)
        self.assertEqual((r1.service, r1.body), (b"hold", [b"re:from-c1"]))
        self.assertEqual((r2.service, r2.body), (b"hold", [b"re:from-c2"]))

    def test_mdp_error_is_body_frames_status_and_message(self):
        b = self.start_broker(no_worker_timeout=500)
        for kind in ("req", "dealer"):
            mc = self.mdp_client(b, kind)
            t0 = now()
            r = mc.request("nobody.here", [b"x"], timeout=5.0)
            self.assertEqual(r.service, b"nobody.here", "errors echo the requested service")
            self.assertEqual(len(r.body), 2, "error body is [status, message]: %r" % (r.body,))
            self.assertEqual(r.body[0], b"503")
            self.assertGreater(len(r.body[1]), 0, "an error carries a message")
            self.assertGreaterEqual(now() - t0, 0.4)

    def test_mdp_worker_disconnect_gives_502_to_mdp_client(self):
        b = self.start_broker(heartbeat_interval=INTERVAL, liveness=LIVENESS)
        mw = self.mdp_worker(b, "fragile", hb_ms=INTERVAL, mode="hold")
        self.wait_mmi(b, "fragile")
        mc = self.mdp_client(b, "req")
        mc.send("fragile", [b"x"])
        self.assertIsNotNone(mw.next_job(3.0))
        mw.send([b"", MDPW, M_DISCONNECT])
        r = mc.recv(5.0)
        self.assertIsNotNone(r)
        self.assertEqual(r.service, b"fragile")
        self.assertEqual(r.body[0], b"502", r)

    def test_mdp_idempotent_service_redispatched(self):
        b = self.start_broker(heartbeat_interval=INTERVAL, liveness=LIVENESS, idempotent=["safe", "other"])
        m1 = self.mdp_worker(b, "safe", hb_ms=INTERVAL, mode="hold")
        self.wait_mmi(b, "safe")
        time.sleep(0.2)
        m2 = self.mdp_worker(b, "safe", hb_ms=INTERVAL, reply_prefix=b"m2:")
        time.sleep(0.5)
        mc = self.mdp_client(b, "req")
        mc.send("safe", [b"job"])
        j = m1.next_job(3.0)
        self.assertIsNotNone(j, "first request goes to the MDP worker that waited longest")
        m1.send([b"", MDPW, M_DISCONNECT])  # it leaves holding the request
        time.sleep(0.1)
        m1.stop()
        r = mc.recv(EXPIRY + MARGIN + 3.0)
        self.assertIsNotNone(r)
        self.assertEqual((r.service, r.body), (b"safe", [b"m2:job"]))

    def test_mdp_worker_silent_while_holding_a_request_is_kept_until_the_deadline(self):
        # An MDP worker cannot heartbeat while it works: silence with a request is not death
        # until the request's deadline (then 504) plus one liveness period.
        b = self.start_broker(heartbeat_interval=INTERVAL, liveness=LIVENESS, request_timeout=1500,
                              idempotent=["safe"], extra=["--mdp-heartbeat-interval", str(INTERVAL)])
        m1 = self.mdp_worker(b, "safe", hb_ms=INTERVAL, mode="hold")
        self.wait_mmi(b, "safe")
        mc = self.mdp_client(b, "req")
        t0 = now()
        mc.send("safe", [b"job"])
        self.assertIsNotNone(m1.next_job(3.0))
        m1.stop()  # silent, holding the request
        r = mc.recv(5.0)
        self.assertIsNotNone(r)
        self.assertEqual(r.body[0], b"504", r)
        self.assertGreaterEqual(now() - t0, 1.4, "not expired before the deadline")
        self.wait_mmi(b, "safe", expect=b"404", timeout=EXPIRY + MARGIN + 3.0)


class MajordomoWorkerTest(Scale0TestCase):

    def test_mdp_worker_on_frontend_endpoint(self):
        b = self.start_broker(heartbeat_interval=INTERVAL, liveness=LIVENESS)
        mw = self.mdp_worker(b.frontend, "front", hb_ms=INTERVAL, reply_prefix=b"f:")
        self.wait_mmi(b, "front")
        c = self.client(b)
        r = c.request("front", [b"n"], timeout_ms=5000)
        self.assertEqual((r.status, r.body), (200, [b"f:n"]))
        mc = self.mdp_client(b, "req")
        r = mc.request("front", [b"m"])
        self.assertEqual((r.service, r.body), (b"front", [b"f:m"]))
        # and it gets broker heartbeats on the frontend
        deadline = now() + 3.0
        while not mw.heartbeats_in and now() < deadline:
            time.sleep(0.05)
        self.assertGreater(len(mw.heartbeats_in), 0, "an MDP worker on the frontend gets HEARTBEATs too")

    def test_broker_heartbeats_mdp_workers(self):
        b = self.start_broker(heartbeat_interval=INTERVAL, liveness=LIVENESS)
        mw = self.mdp_worker(b, "beat", hb_ms=INTERVAL)
        self.wait_mmi(b, "beat")
        n0 = len(mw.heartbeats_in)
        time.sleep(2.0)
        n = len(mw.heartbeats_in) - n0
        self.assertGreaterEqual(n, 5, "~10 HEARTBEATs expected in 2 s at 200 ms, got %d" % n)
        self.assertLessEqual(n, 20, "one HEARTBEAT per interval, got %d in 2 s" % n)
        self.assertEqual(mw.disconnects, [], "a heartbeating MDP worker is never disconnected")
        self.assertEqual(self.mmi_service(b, "beat"), b"200")

    def test_silent_mdp_worker_is_purged_then_disconnected(self):
        # MDP workers are judged by --mdp-heartbeat-interval (default 2500 ms), here the test's.
        b = self.start_broker(heartbeat_interval=INTERVAL, liveness=LIVENESS,
                              extra=["--mdp-heartbeat-interval", str(INTERVAL)])
        mw = self.mdp_worker(b, "quiet", hb_ms=INTERVAL, send_heartbeats=False)
        self.wait_mmi(b, "quiet")
        t0 = now()
        self.wait_mmi(b, "quiet", expect=b"404", timeout=EXPIRY + MARGIN + 3.0)
        self.assertLess(now() - t0, EXPIRY + MARGIN, "silent MDP worker should be purged after liveness intervals")
        # after the purge, its HEARTBEAT is a valid but unexpected command -> DISCONNECT
        mw.send([b"", MDPW, M_HEARTBEAT])
        self.assertTrue(mw.wait_disconnect(5.0), "a purged MDP worker that speaks again gets DISCONNECT")

    def test_unexpected_commands_before_ready_get_disconnect(self):
        b = self.start_broker()
        for frames in ([b"", MDPW, M_HEARTBEAT],
                       [b"", MDPW, M_REPLY, b"\x00" * 8, b"", b"body"]):
            p = self.raw(b.backend)
            p.send(frames)
            m = p.recv(5.0)
            self.assertEqual(m, [b"", MDPW, M_DISCONNECT], "sent %r" % (frames,))

    def test_second_ready_gets_disconnect(self):
        b = self.start_broker()
        p = self.raw(b.backend)
        p.send([b"", MDPW, M_READY, b"twice"])
        time.sleep(0.3)
        self.assertEqual(self.mmi_service(b, "twice"), b"200")
        p.send([b"", MDPW, M_READY, b"twice"])
        msgs = p.recv_all(2.0)
        self.assertIn([b"", MDPW, M_DISCONNECT], msgs)
        self.assertEqual(self.mmi_service(b, "twice"), b"404", "a worker disconnected for a second READY is purged")

    def test_mdp_worker_reregisters_after_disconnect(self):
        b = self.start_broker(heartbeat_interval=INTERVAL, liveness=LIVENESS)
        mw = self.mdp_worker(b, "again", hb_ms=INTERVAL, reregister=True)
        self.wait_mmi(b, "again")
        mw.send([b"", MDPW, M_READY, b"again"])  # protocol error -> DISCONNECT -> READY again
        self.assertTrue(mw.wait_disconnect(5.0))
        time.sleep(0.5)
        mc = self.mdp_client(b, "req")
        r = mc.request("again", [b"x"], timeout=5.0)
        self.assertEqual(r.body, [b"x"])


if __name__ == "__main__":
    unittest.main()
