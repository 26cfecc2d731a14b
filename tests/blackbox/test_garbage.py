# SPDX-License-Identifier: Apache-2.0
"""Garbage on both ROUTER endpoints must never hurt the broker; native clients get the documented
error replies (400 / 413 / 501 / 505) with their request-id when it can be read."""

import os
import random
import time
import unittest

from harness import (C_HDR, MDPC, MDPW, W_HDR, Scale0TestCase, parse_client_reply, u8, u16, u32, u64)

RID = 0x0102030405060708


def req(rid=RID, service=b"svc", timeout=u32(1000), body=(b"x",), hdr=C_HDR, cmd=b"\x01"):
    f = [b"", hdr, cmd]
    if rid is not None:
        f.append(rid if isinstance(rid, bytes) else u64(rid))
    if service is not None:
        f.append(service)
    if timeout is not None:
        f.append(timeout)
    return f + list(body)


class ClientErrorRepliesTest(Scale0TestCase):
    """Malformed native client messages answered with a REPLY carrying the right status."""

    def expect_status(self, peer, frames, status, rid=RID, what=""):
        peer.send(frames)
        m = peer.recv(5.0)
        self.assertIsNotNone(m, "no REPLY for %s %r" % (what, frames[:6]))
        r = parse_client_reply(m)
        if isinstance(status, int):
            status = (status,)
        self.assertIn(r.status, status, "%s: %r" % (what, r))
        self.assertEqual(r.rid, rid, "%s: request-id should be %#x: %r" % (what, rid, r))
        self.assertGreater(len(r.message), 0, "%s: an error REPLY carries a reason" % what)
        self.assertEqual(m[1], C_HDR)
        return r

    def run_cases(self, endpoint):
        p = self.raw(endpoint)
        self.expect_status(p, req(cmd=b"\x09"), 501, what="unknown command 0x09")
        self.expect_status(p, req(cmd=b"\xff", service=None, timeout=None, body=()), 501, what="unknown command 0xff")
        self.expect_status(p, req(service=None, timeout=None, body=()), 400, what="REQUEST without service")
        self.expect_status(p, req(timeout=None, body=()), 400, what="REQUEST without timeout")
        self.expect_status(p, req(service=b""), 400, what="empty service name")
        self.expect_status(p, req(service=b"s" * 256), 400, what="256-byte service name")
        self.expect_status(p, req(timeout=b"\x00\x01"), 400, what="2-byte timeout")
        self.expect_status(p, req(timeout=b"\x00\x00\x00\x00\x01"), 400, what="5-byte timeout")
        self.expect_status(p, req(rid=b"\x01\x02\x03"), 400, rid=0, what="3-byte request-id")
        self.expect_status(p, req(rid=b"\x01" * 9), 400, rid=0, what="9-byte request-id")
        self.expect_status(p, [b"", C_HDR, b"\x01"], 400, rid=0, what="REQUEST with nothing after the command")
        self.expect_status(p, req(cmd=b"\x01\x00"), (400, 501), what="2-byte command frame")
        self.expect_status(p, req(body=[b"f"] * 200), 413, what="200 frames (default limit 128)")
        self.expect_status(p, req(body=[b""] * 5000), 413, what="5000 frames")
        self.expect_status(p, req(hdr=b"S0C9"), 505, what="S0C9 header")
        # the broker still answers normally on this very socket
        p.send([b"", C_HDR, b"\x03", b"still-here"])
        self.assertEqual(p.recv(5.0), [b"", C_HDR, b"\x04", b"still-here"])

    def test_frontend(self):
        b = self.start_broker()
        self.run_cases(b.frontend)
        self.assertServes(b)

    def test_backend(self):
        b = self.start_broker()
        self.run_cases(b.backend)
        self.assertServes(b)

    def test_too_many_bytes_gives_413(self):
        b = self.start_broker(max_message_bytes=65536, max_frames=16)
        self.native_worker(b, ["big"], mode="echo")
        p = self.raw(b.frontend)
        self.expect_status(p, req(service=b"big", body=[b"a" * 40000, b"b" * 40000]), 413, what="80 kB > 64 KiB")
        self.expect_status(p, req(service=b"big", body=[b"x"] * 17), 413, what="20 frames > --max-frames 16")
        c = self.client(b)
        r = c.request("big", [b"a" * 30000], timeout_ms=5000)
        self.assertEqual((r.status, r.body), (200, [b"a" * 30000]), "under the limit still works")
        # a single frame over 2x the limit: libzmq drops the connection; the broker survives
        q = self.raw(b.frontend)
        q.send(req(service=b"big", body=[b"z" * 200000]))
        time.sleep(0.5)
        self.assertServes(b)


class GarbageSurvivalTest(Scale0TestCase):
    """Messages with no defined answer: the broker must survive them and keep serving."""

    GARBAGE = [
        [b""],
        [b"", b""],
        [b"", b"", b"", b""],
        [b"\x00"],
        [os.urandom(1)],
        [os.urandom(64)],
        [b"hello", b"world"],
        [b"S0C1", b"\x01", u64(1), b"svc", u32(100), b"no delimiter"],
        [b"", b"S0"],
        [b"", b"S0C"],
        [b"", b"S0C1"],
        [b"", b"S0C1", b""],
        [b"", b"S0C1", b"\x01", b""],
        [b"", b"S0C1", b"\x02", u64(5), u16(200), b"a reply from a client"],
        [b"", b"S0C1", b"\x04", b"pong from a client"],
        [b"", b"S0X1", b"\x01"],
        [b"", b"S0H1", u64(1), u64(2)],
        [b"", b"XXXX", b"\x01", u64(1), b"svc", u32(1)],
        [b"", b"s0c1", b"\x01", u64(1), b"svc", u32(1)],
        [b"", b"S0W1"],
        [b"", b"S0W1", b""],
        [b"", b"S0W1", b"\x01"],
        [b"", b"S0W1", b"\x01", u32(1)],
        [b"", b"S0W1", b"\x01", u32(1), u32(0)],
        [b"", b"S0W1", b"\x01", u32(1), u32(0), u8(0)],
        [b"", b"S0W1", b"\x02", u64(1), b"svc", u32(1)],
        [b"", b"S0W1", b"\x03"],
        [b"", b"S0W1", b"\x03", b"\x01"],
        [b"", b"S0W1", b"\x05", b"\x01"],
        [b"", b"S0W1", b"\x06", u32(1), u32(1), b"tcp://x", u64(1)],
        [b"", b"S0W1", b"\x09"],
        [b"", b"S0W1", b"\x00"],
        [b"", MDPC],
        [b"", MDPC, b""],
        [b"", MDPC, b"svc"],
        [b"", MDPC + b"X", b"svc", b"body"],
        [b"", b"MDPC02", b"svc", b"body"],
        [b"", MDPW],
        [b"", MDPW, b""],
        [b"", MDPW, b"\x01"],
        [b"", MDPW, b"\x01", b""],
        [b"", MDPW, b"\x02", b"addr", b"", b"body"],
        [b"", MDPW, b"\x03"],
        [b"", MDPW, b"\x03", u64(7)],
        [b"", MDPW, b"\x03", u64(7), b"", b"reply for nobody"],
        [b"", MDPW, b"\x06"],
        [b"", MDPW, b"\x01\x01", b"svc"],
        [b"", b"MDPW02", b"\x01", b"svc"],
        [b""] * 3000,
        [os.urandom(7)] * 1000,
    ]

    def blast(self, endpoint, seed):
        # each message from a fresh peer, plus all of them from one peer
        for m in self.GARBAGE:
            p = self.raw(endpoint)
            p.send(m)
            p.recv_all(0.02)
            p.close()
        p = self.raw(endpoint)
        for m in self.GARBAGE:
            p.send(m)
        rng = random.Random(seed)
        heads = [b"", b"S0C1", b"S0W1", b"S0H1", b"MDPC01", b"MDPW01", b"S0C9", b"S0W9"]
        for i in range(400):
            n = rng.randint(1, 12)
            frames = []
            for k in range(n):
                choice = rng.random()
                if k == 1 and choice < 0.7:
                    frames.append(rng.choice(heads))
                elif k == 0 and choice < 0.8:
                    frames.append(b"")
                elif k == 2 and choice < 0.7:
                    frames.append(bytes([rng.randint(0, 9)]))
                else:
                    frames.append(bytes(rng.getrandbits(8) for _ in range(rng.choice([0, 1, 2, 4, 8, 16, 300]))))
            p.send(frames)
        p.recv_all(0.5)

    def test_garbage_on_frontend(self):
        b = self.start_broker()
        self.blast(b.frontend, 1)
        time.sleep(0.3)
        self.assertServes(b)
        mc = self.mdp_client(b, "req")
        r = mc.request("mmi.service", [b"nope"], timeout=5.0)
        self.assertEqual(r.body, [b"404"])

    def test_garbage_on_backend(self):
        b = self.start_broker()
        self.blast(b.backend, 2)
        time.sleep(0.3)
        self.assertServes(b)

    def test_garbage_while_serving(self):
        b = self.start_broker()
        w = self.native_worker(b, ["live"], mode="echo", concurrency=4)
        c = self.client(b)
        rids = [c.send_request("live", [b"%d" % i], timeout_ms=10000) for i in range(20)]
        self.blast(b.frontend, 3)
        self.blast(b.backend, 4)
        got = c.collect(20, 10.0)
        self.assertEqual(sorted(r.rid for r in got), sorted(rids))
        self.assertTrue(all(r.status == 200 for r in got))
        self.assertEqual(w.disconnects, [], "garbage from other peers must not affect a good worker")
        r = c.request("live", [b"after"], timeout_ms=5000)
        self.assertEqual(r.status, 200)
        self.assertAlive(b)


if __name__ == "__main__":
    unittest.main()
