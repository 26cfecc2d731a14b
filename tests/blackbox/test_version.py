# SPDX-License-Identifier: Apache-2.0
"""Protocol versions: S0/1 and S0/2 side by side (each peer answered in the framing it spoke);
any other version gets REPLY 505 (clients) or DISCONNECT 505 (workers), in v1 framing."""

import unittest

from harness import (C_HDR, W_HDR, Scale0TestCase, du16, du64, parse_client_reply, parse_disconnect, u8,
                     u16, u32, u64)


# S0/2: "" · header+command+packed fields · body. Strings carry a 1-byte (service) or 2-byte length.
def v2_request(rid, service, timeout_ms, body):
    return [b"", b"S0C2\x01" + u64(rid) + u32(timeout_ms) + u8(len(service)) + service, body]


def v2_ready(concurrency, service):
    return [b"", b"S0W2\x01" + u32(concurrency) + u32(0) + u8(0) + u8(len(service)) + service]


def v2_fields(frame, header, command):
    assert frame[:5] == header + bytes([command]), frame
    return frame[5:]


class VersionTest(Scale0TestCase):

    def test_client_other_versions_get_505(self):
        b = self.start_broker()
        for endpoint in (b.frontend, b.backend):
            for hdr in (b"S0C3", b"S0C0", b"S0C9"):
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
            for hdr in (b"S0W3", b"S0W0", b"S0W9"):
                p = self.raw(endpoint)
                p.send([b"", hdr, b"\x01", u32(1), u32(0), u8(0), b"vsvc"])
                m = p.recv(5.0)
                self.assertIsNotNone(m, "no answer to %r READY" % hdr)
                self.assertEqual(m[1], W_HDR, "505 is sent in version 1 framing: %r" % (m,))
                d = parse_disconnect(m)
                self.assertIsNotNone(d, "expected DISCONNECT, got %r" % (m,))
                self.assertEqual(d[0], 505, m)
                p.close()
        self.assertEqual(self.mmi_service(b, "vsvc"), b"404", "a v3 READY must not register anything")

    def test_v1_and_v2_peers_are_each_answered_in_their_own_framing(self):
        b = self.start_broker()
        w2 = self.raw(b.backend)
        w2.send(v2_ready(1, b"mixed"))
        welcome = w2.recv(5.0)
        self.assertIsNotNone(welcome, "no WELCOME for an S0/2 READY")
        self.assertEqual(welcome[1][:5], b"S0W2\x06", welcome)
        for version in (1, 2):
            c = self.raw(b.frontend)
            rid = 500 + version
            if version == 2:
                c.send(v2_request(rid, b"mixed", 2000, b"hello"))
            else:
                c.send([b"", C_HDR, b"\x01", u64(rid), b"mixed", u32(2000), b"hello"])
            job = w2.recv(5.0)
            self.assertIsNotNone(job, "the S0/2 worker got no REQUEST")
            fields = v2_fields(job[1], b"S0W2", 0x02)
            self.assertEqual(fields[12:], u8(5) + b"mixed", job)
            self.assertEqual(job[2:], [b"hello"])
            w2.send([b"", b"S0W2\x03" + fields[:8] + u16(200) + u16(2) + b"ok", b"world"])
            m = c.recv(5.0)
            self.assertIsNotNone(m, "no reply for the S0/%d client" % version)
            if version == 2:
                f = v2_fields(m[1], b"S0C2", 0x02)
                self.assertEqual((du64(f[:8]), du16(f[8:10]), f[10:]), (rid, 200, u16(2) + b"ok"))
                self.assertEqual(m[2:], [b"world"])
            else:
                r = parse_client_reply(m)
                self.assertEqual((m[1], r.rid, r.status), (C_HDR, rid, 200), m)
            c.close()
        w2.close()

    def test_malformed_v2_request_gets_400_in_v2_framing(self):
        b = self.start_broker()
        c = self.raw(b.frontend)
        c.send([b"", b"S0C2\x01" + u64(9) + u32(0) + u8(200) + b"short", b"body"])  # length lies
        m = c.recv(5.0)
        self.assertIsNotNone(m)
        f = v2_fields(m[1], b"S0C2", 0x02)
        self.assertEqual((du64(f[:8]), du16(f[8:10])), (9, 400), m)
        c.close()
        self.assertServes(b)


if __name__ == "__main__":
    unittest.main()
