"""Protocol versions other than 1: clients get REPLY 505, workers get DISCONNECT 505, in v1 framing."""

import unittest

from harness import (C_HDR, W_HDR, Scale0TestCase, parse_client_reply, parse_disconnect, u8, u32, u64)


class VersionTest(Scale0TestCase):

    def test_client_other_versions_get_505(self):
        b = self.start_broker()
        for endpoint in (b.frontend, b.backend):
            for hdr in (b"S0C2", b"S0C0", b"S0C9"):
                p = self.raw(endpoint)
                p.send([b"", hdr, b"\x01", u64(77), b"svc", u32(1000), b"body"])
                m = p.recv(5.0)
                self.assertIsNotNone(m, "no answer to %r" % hdr)
                self.assertEqual(m[1], C_HDR, "505 is sent in version 1 framing")
                r = parse_client_reply(m)
                self.assertEqual((r.rid, r.status), (77, 505), "%r -> %r" % (hdr, r))
                p.close()
        self.assertServes(b)

    def test_worker_other_versions_get_disconnect_505(self):
        b = self.start_broker()
        for endpoint in (b.backend, b.frontend):
            for hdr in (b"S0W2", b"S0W0", b"S0W9"):
                p = self.raw(endpoint)
                p.send([b"", hdr, b"\x01", u32(1), u32(0), u8(0), b"vsvc"])
                m = p.recv(5.0)
                self.assertIsNotNone(m, "no answer to %r READY" % hdr)
                self.assertEqual(m[1], W_HDR, "505 is sent in version 1 framing: %r" % (m,))
                d = parse_disconnect(m)
                self.assertIsNotNone(d, "expected DISCONNECT, got %r" % (m,))
                self.assertEqual(d[0], 505, m)
                p.close()
        self.assertEqual(self.mmi_service(b, "vsvc"), b"404", "a v2 READY must not register anything")


if __name__ == "__main__":
    unittest.main()
