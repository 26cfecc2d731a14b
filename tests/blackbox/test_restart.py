# SPDX-License-Identifier: Apache-2.0
"""Broker killed (SIGKILL) and restarted on the same ports: workers come back."""

import time
import unittest

from harness import Scale0TestCase, now

INTERVAL = 200


class RestartTest(Scale0TestCase):

    def restart(self, b):
        old = b.proc
        b.kill()
        self.assertFalse(b.alive())
        time.sleep(0.5)
        b.restart(timeout=15.0)
        self.assertIsNot(b.proc, old)
        self.assertAlive(b)

    def test_scale0_worker_reregisters_after_broker_restart(self):
        b = self.start_broker(heartbeat_interval=INTERVAL, liveness=3)
        self.scale0_worker(b, ["R"], name="survivor", concurrency=2)
        self.wait_mmi(b, "R", timeout=15.0)
        c = self.client(b)
        self.assertEqual(c.request("R", [b"before"], timeout_ms=5000).status, 200)
        self.restart(b)
        took = self.wait_mmi(b, "R", timeout=20.0)
        c2 = self.client(b)
        r = c2.request("R", [b"after"], timeout_ms=5000, wait=10.0)
        self.assertEqual((r.status, r.message, r.body), (200, b"survivor", [b"after"]))
        # the old client socket reconnects by itself too
        r = c.request("R", [b"old client"], timeout_ms=5000, wait=10.0)
        self.assertEqual(r.status, 200)

    def test_native_worker_is_told_about_the_restart(self):
        b = self.start_broker(heartbeat_interval=INTERVAL, liveness=3)
        w = self.native_worker(b, ["N"], reregister=False)
        deadline = now() + 5
        while len(w.pubs) < 1 and now() < deadline:
            time.sleep(0.05)
        old_id = w.welcome.broker_id
        self.assertTrue(w.pubs and w.pubs[-1][1] == old_id)
        self.restart(b)
        # its HEARTBEATs now reach a broker that does not know it: DISCONNECT
        d = w.wait_disconnect(10.0)
        self.assertIsNotNone(d, "the restarted broker should DISCONNECT an unknown worker's HEARTBEAT")
        # and the PUB heartbeats carry a new broker-id
        deadline = now() + 10
        while not (w.pubs and w.pubs[-1][1] != old_id) and now() < deadline:
            time.sleep(0.05)
        self.assertNotEqual(w.pubs[-1][1], old_id, "broker-id changes when the broker restarts")
        self.assertEqual(self.mmi_service(b, "N"), b"404")

    def test_reregistering_native_worker_serves_again(self):
        b = self.start_broker(heartbeat_interval=INTERVAL, liveness=3)
        w = self.native_worker(b, ["N"], reregister=True, name="phoenix")
        old_id = w.welcome.broker_id
        self.restart(b)
        self.wait_mmi(b, "N", timeout=10.0)
        c = self.client(b)
        r = c.request("N", [b"x"], timeout_ms=5000)
        self.assertEqual((r.status, r.message), (200, b"phoenix"))
        self.assertGreaterEqual(w.registrations, 2)
        self.assertNotEqual(w.welcome.broker_id, old_id, "the new broker has a new broker-id")

    def test_mdp_worker_told_disconnect_after_restart(self):
        # a worker that does not give up on silence (liveness 50) keeps heartbeating through the
        # restart; the new broker does not know it, so it must answer DISCONNECT (RFC 7)
        b = self.start_broker(heartbeat_interval=INTERVAL, liveness=3)
        mw = self.mdp_worker(b, "M", hb_ms=INTERVAL, reregister=True, reply_prefix=b"m:", liveness=50)
        self.wait_mmi(b, "M", timeout=10.0)
        self.restart(b)
        self.assertTrue(mw.wait_disconnect(10.0), "the restarted broker DISCONNECTs an unknown MDP worker")
        self.wait_mmi(b, "M", timeout=10.0)
        mc = self.mdp_client(b, "req")
        r = mc.request("M", [b"x"], timeout=5.0)
        self.assertEqual((r.service, r.body), (b"M", [b"m:x"]))

    def test_mdp_worker_reregisters_after_restart(self):
        b = self.start_broker(heartbeat_interval=INTERVAL, liveness=3)
        mw = self.mdp_worker(b, "M", hb_ms=INTERVAL, reregister=True, reply_prefix=b"m:")
        self.wait_mmi(b, "M", timeout=10.0)
        self.restart(b)
        self.wait_mmi(b, "M", timeout=15.0)
        self.assertTrue(mw.disconnects or mw.reconnects, "the worker noticed the restart")
        mc = self.mdp_client(b, "req")
        r = mc.request("M", [b"x"], timeout=5.0)
        self.assertEqual((r.service, r.body), (b"M", [b"m:x"]))


if __name__ == "__main__":
    unittest.main()
