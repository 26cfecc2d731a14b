# SPDX-License-Identifier: Apache-2.0
"""8/MMI and the scale0.* management services; reserved names cannot be registered."""

import json
import time
import unittest

from harness import (MDPW, M_DISCONNECT, M_READY, W_HDR, Scale0TestCase, parse_disconnect, u8, u32,
                     W_READY, now)


class MmiTest(Scale0TestCase):

    def test_mmi_service_native_client(self):
        b = self.start_broker()
        self.native_worker(b, ["known", "also"])
        c = self.client(b)
        for svc, want in ((b"known", b"200"), (b"also", b"200"), (b"unknown", b"404"), (b"know", b"404")):
            r = c.request("mmi.service", [svc], timeout_ms=5000)
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.body, [want], "mmi.service %r" % svc)

    def test_mmi_service_mdp_clients(self):
        b = self.start_broker()
        self.native_worker(b, ["known"])
        for kind in ("req", "dealer"):
            mc = self.mdp_client(b, kind)
            r = mc.request("mmi.service", [b"known"])
            self.assertEqual((r.service, r.body), (b"mmi.service", [b"200"]))
            r = mc.request("mmi.service", [b"nothing"])
            self.assertEqual((r.service, r.body), (b"mmi.service", [b"404"]))

    def test_mmi_service_sees_mdp_worker(self):
        b = self.start_broker()
        self.mdp_worker(b, "mdpsvc", hb_ms=200)
        self.wait_mmi(b, "mdpsvc", timeout=5.0)

    def test_other_mmi_is_501(self):
        b = self.start_broker()
        c = self.client(b)
        for svc in ("mmi.foo", "mmi.echo", "mmi."):
            r = c.request(svc, [b"x"], timeout_ms=5000)
            self.assertEqual((r.status, r.body), (200, [b"501"]), svc)
        mc = self.mdp_client(b, "req")
        r = mc.request("mmi.foo", [b"x"])
        self.assertEqual((r.service, r.body), (b"mmi.foo", [b"501"]))

    def test_mmi_answers_at_once_even_without_workers(self):
        b = self.start_broker(no_worker_timeout=5000)
        c = self.client(b)
        t0 = now()
        r = c.request("mmi.service", [b"x"], timeout_ms=10000)
        self.assertEqual(r.body, [b"404"])
        self.assertLess(now() - t0, 1.0, "mmi is answered by the broker itself, not queued")

    def test_scale0_status_is_json(self):
        b = self.start_broker()
        self.native_worker(b, ["stat"], concurrency=3)
        c = self.client(b)
        r = c.request("stat", [b"x"], timeout_ms=5000)
        self.assertEqual(r.status, 200)
        st = self.status_json(b, c)
        self.assertIsInstance(st, dict)
        self.assertIn("stat", json.dumps(st), "the status should list the registered service")
        mc = self.mdp_client(b, "req")
        r = mc.request("scale0.status", [b""])
        self.assertEqual(r.service, b"scale0.status")
        json.loads(r.body[0].decode())

    def test_other_scale0_is_501(self):
        b = self.start_broker()
        c = self.client(b)
        r = c.request("scale0.bogus", [b"x"], timeout_ms=5000)
        self.assertEqual(r.status, 501, r)
        mc = self.mdp_client(b, "req")
        r = mc.request("scale0.bogus", [b"x"])
        self.assertEqual((r.service, r.body[:1]), (b"scale0.bogus", [b"501"]))


class ReservedNamesTest(Scale0TestCase):

    def test_native_worker_registering_mmi_gets_disconnect(self):
        b = self.start_broker()
        for services in ([b"mmi.foo"], [b"ok", b"mmi.service"], [b"scale0.status"], [b"scale0.mine"]):
            p = self.raw(b.backend)
            p.send([b"", W_HDR, u8(W_READY), u32(1), u32(0), u8(0)] + services)
            m = p.recv(5.0)
            d = parse_disconnect(m)
            self.assertIsNotNone(d, "READY for %r should get DISCONNECT, got %r" % (services, m))
            self.assertEqual(d[0], 400, "reserved service -> DISCONNECT 400: %r" % (m,))
            p.close()
        c = self.client(b)
        r = c.request("mmi.service", [b"ok"], timeout_ms=5000)
        self.assertEqual(r.body, [b"404"], "a refused READY registers none of its services")
        r = c.request("mmi.foo", [b"x"], timeout_ms=5000)
        self.assertEqual(r.body, [b"501"], "mmi.foo is still answered by the broker")

    def test_mdp_worker_registering_mmi_gets_disconnect(self):
        b = self.start_broker()
        p = self.raw(b.backend)
        p.send([b"", MDPW, M_READY, b"mmi.foo"])
        self.assertEqual(p.recv(5.0), [b"", MDPW, M_DISCONNECT])
        mc = self.mdp_client(b, "req")
        r = mc.request("mmi.foo", [b"x"])
        self.assertEqual(r.body, [b"501"])


if __name__ == "__main__":
    unittest.main()
