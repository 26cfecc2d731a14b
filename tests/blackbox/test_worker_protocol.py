# SPDX-License-Identifier: Apache-2.0
"""Native worker protocol (S0W1): READY validation, WELCOME, state errors, graceful STOPPING."""

import time
import unittest

from harness import (W_HDR, W_READY, W_HEARTBEAT, W_REPLY, W_STOPPING, W_DISCONNECT, Scale0TestCase,
                     Welcome, parse_disconnect, u8, u16, u32, u64, now)


def ready(concurrency=1, hb=0, flags=0, services=(b"svc",), conc_raw=None):
    return [b"", W_HDR, u8(W_READY), conc_raw if conc_raw is not None else u32(concurrency), u32(hb),
            u8(flags)] + list(services)


class ReadyValidationTest(Scale0TestCase):

    def expect_disconnect(self, endpoint, frames, status=None, what=""):
        p = self.raw(endpoint)
        p.send(frames)
        m = p.recv(5.0)
        d = parse_disconnect(m)
        self.assertIsNotNone(d, "%s: expected DISCONNECT, got %r" % (what, m))
        if status is not None:
            self.assertEqual(d[0], status, "%s: %r" % (what, m))
            self.assertGreater(len(d[1]), 0, "%s: DISCONNECT carries a reason" % what)
        p.close()
        return d

    def test_invalid_ready_gets_disconnect_400(self):
        # --max-frames is raised so that the 64-service limit is tested on its own
        b = self.start_broker(max_frames=256)
        cases = [
            (ready(concurrency=0), "concurrency 0"),
            (ready(concurrency=1025), "concurrency 1025"),
            (ready(flags=0x02), "unknown flag bit"),
            (ready(flags=0x81), "unknown flag bit 7"),
            (ready(services=()), "no service"),
            (ready(services=(b"",)), "empty service name"),
            (ready(services=(b"s" * 256,)), "256-byte service name"),
            (ready(services=[b"s%d" % i for i in range(65)]), "65 services"),
            (ready(conc_raw=b"\x00\x01"), "2-byte concurrency"),
            ([b"", W_HDR, u8(W_READY), u32(1), u32(0)], "missing flags and services"),
            ([b"", W_HDR, u8(W_READY), u32(1), u32(0), b"\x00\x00", b"svc"], "2-byte flags"),
        ]
        for frames, what in cases:
            with self.subTest(what):
                self.expect_disconnect(b.backend, frames, 400, what)
        c = self.client(b)
        self.assertEqual(self.mmi_service(b, "svc", c), b"404", "no invalid READY may register")
        # limits themselves are valid
        for frames, what in ((ready(concurrency=1024, services=[b"max"]), "concurrency 1024"),
                             (ready(services=[b"m%d" % i for i in range(64)]), "64 services"),
                             (ready(services=[b"n" * 255]), "255-byte name"),
                             (ready(flags=1, services=[b"idem"]), "idempotent flag")):
            p = self.raw(b.backend)
            p.send(frames)
            m = p.recv(5.0)
            self.assertTrue(m is not None and len(m) >= 3 and m[2] == b"\x06", "%s: expected WELCOME, got %r" % (what, m))
        self.assertEqual(self.mmi_service(b, "m63", c), b"200")
        self.assertEqual(self.mmi_service(b, "n" * 255, c), b"200")

    def test_commands_before_ready_get_disconnect(self):
        b = self.start_broker()
        for frames, what in (([b"", W_HDR, u8(W_HEARTBEAT)], "HEARTBEAT"),
                             ([b"", W_HDR, u8(W_REPLY), u64(1), u16(200), b""], "REPLY"),
                             ([b"", W_HDR, u8(W_STOPPING)], "STOPPING")):
            self.expect_disconnect(b.backend, frames, None, what + " before READY")

    def test_disconnect_before_ready_is_ignored(self):
        b = self.start_broker()
        p = self.raw(b.backend)
        p.send([b"", W_HDR, u8(W_DISCONNECT)])
        self.assertEqual(p.recv_all(0.7), [], "DISCONNECT from an unknown worker is ignored")

    def test_unknown_worker_command_gets_disconnect_501(self):
        b = self.start_broker()
        self.expect_disconnect(b.backend, [b"", W_HDR, b"\x09"], 501, "unknown worker command")

    def test_second_ready_gets_disconnect_400_and_purges(self):
        b = self.start_broker()
        w = self.native_worker(b, ["twice"], mode="hold")
        c = self.client(b)
        rid = c.send_request("twice", [b"x"], timeout_ms=10000)
        self.assertIsNotNone(w.next_job(3.0))
        w.send_ready()
        d = w.wait_disconnect(5.0)
        self.assertIsNotNone(d, "a second READY should get DISCONNECT")
        self.assertEqual(d[1], 400)
        r = c.get_reply(rid, 5.0)
        self.assertIsNotNone(r)
        self.assertEqual(r.status, 502, "a worker purged as dying: its request gets 502")
        self.assertEqual(self.mmi_service(b, "twice", c), b"404")

    def test_malformed_reply_from_registered_worker_gets_disconnect_400(self):
        b = self.start_broker()
        w = self.native_worker(b, ["bad"], mode="hold")
        c = self.client(b)
        rid = c.send_request("bad", [b"x"], timeout_ms=10000)
        self.assertIsNotNone(w.next_job(3.0))
        w.send([b"", W_HDR, u8(W_REPLY), b"\x01\x02\x03", u16(200), b""])
        d = w.wait_disconnect(5.0)
        self.assertIsNotNone(d)
        self.assertEqual(d[1], 400)
        r = c.get_reply(rid, 5.0)
        self.assertIsNotNone(r, "its held request must still get exactly one reply")
        self.assertEqual(r.status, 502)


class WelcomeTest(Scale0TestCase):

    def test_welcome_fields(self):
        b = self.start_broker(heartbeat_interval=250, liveness=4)
        w1 = self.native_worker(b, ["w"], heartbeat_ms=0)
        w2 = self.native_worker(b, ["w"], heartbeat_ms=600)
        w3 = self.native_worker(b, ["w"], heartbeat_ms=100)
        self.assertEqual(w1.welcome.heartbeat_ms, 250, "0 takes the broker's interval")
        self.assertEqual(w2.welcome.heartbeat_ms, 600, "a worker may ask for a longer interval")
        self.assertEqual(w3.welcome.heartbeat_ms, 250, "never a shorter one")
        for w in (w1, w2, w3):
            self.assertEqual(w.welcome.liveness, 4)
            self.assertTrue(w.welcome.endpoint.endswith(":%d" % b.ports[2]),
                            "WELCOME heartbeat-endpoint should be the PUB endpoint: %r" % w.welcome.endpoint)
        self.assertEqual(len({w1.welcome.broker_id, w2.welcome.broker_id, w3.welcome.broker_id}), 1,
                         "broker-id identifies the broker process")
        # PUB heartbeats carry the same broker-id and an increasing sequence
        time.sleep(1.2)
        pubs = list(w1.pubs)
        self.assertGreaterEqual(len(pubs), 2, "a subscribed worker should see PUB heartbeats")
        self.assertEqual({p[1] for p in pubs}, {w1.welcome.broker_id})
        seqs = [p[2] for p in pubs]
        self.assertEqual(seqs, sorted(seqs))
        self.assertEqual(len(set(seqs)), len(seqs), "sequence numbers increase")
        self.assertEqual(w1.bad_pubs, [])

    def test_wildcard_heartbeat_endpoint(self):
        # "a host of * or 0.0.0.0 means the host you reached the broker at"
        # Protected mode: a PUB on every interface needs CURVE or --insecure (docs/security.md).
        b = self.start_broker(heartbeat_interval=200, heartbeat_bind="tcp://*:%d", extra=["--insecure"])
        w = self.native_worker(b, ["wild"])
        self.assertTrue(w.welcome.endpoint.endswith(":%d" % b.ports[2]), w.welcome.endpoint)
        deadline = now() + 3.0
        while len(w.pubs) < 2 and now() < deadline:
            time.sleep(0.05)
        self.assertGreaterEqual(len(w.pubs), 2, "PUB heartbeats reachable via the WELCOME endpoint %r"
                                % w.welcome.endpoint)

    def test_longer_negotiated_interval_is_respected(self):
        # broker interval 200 ms x 3; the worker asks for 700 ms and heartbeats at that pace:
        # the broker must judge it by 700 ms x 3, not 200 ms x 3.
        b = self.start_broker(heartbeat_interval=200, liveness=3)
        w = self.native_worker(b, ["slowbeat"], heartbeat_ms=700)
        self.assertEqual(w.welcome.heartbeat_ms, 700)
        time.sleep(3.0)
        self.assertEqual(w.disconnects, [], "a worker heartbeating at its agreed interval is not expired")
        c = self.client(b)
        r = c.request("slowbeat", [b"x"], timeout_ms=5000)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.message, w.wname)

    def test_silent_native_worker_expires_then_is_told_disconnect(self):
        b = self.start_broker(heartbeat_interval=200, liveness=3)
        w = self.native_worker(b, ["mute"], send_heartbeats=False)
        c = self.client(b)
        t0 = now()
        self.wait_mmi(b, "mute", expect=b"404", timeout=5.0, client=c)
        self.assertLess(now() - t0, 0.6 + 2.0)
        w.send_heartbeat()
        d = w.wait_disconnect(5.0)
        self.assertIsNotNone(d, "a HEARTBEAT from an expired worker gets DISCONNECT")

    def test_heartbeating_worker_is_not_expired(self):
        b = self.start_broker(heartbeat_interval=200, liveness=3)
        w = self.native_worker(b, ["alive"])
        time.sleep(2.5)
        self.assertEqual(w.disconnects, [])
        self.assertEqual(self.mmi_service(b, "alive"), b"200")


class StoppingTest(Scale0TestCase):

    def test_graceful_stop(self):
        b = self.start_broker(no_worker_timeout=800)
        w = self.native_worker(b, ["grace"], concurrency=2, mode="hold", name="leaving")
        c = self.client(b)
        rid = c.send_request("grace", [b"held"], timeout_ms=20000)
        j = w.next_job(3.0)
        self.assertIsNotNone(j)
        w.send_stopping()
        self.assertTrue(w.stopping_evt.wait(5.0), "the broker answers STOPPING with STOPPING")
        # no new requests reach a stopping worker, although it has a spare unit of credit
        rid2 = c.send_request("grace", [b"new"], timeout_ms=20000)
        self.assertEqual(w.jobs_within(1.0), [], "a stopping worker never gets new requests")
        # it may still reply to what it holds
        w.reply(j, 200, b"bye", [b"done"])
        r = c.get_reply(rid, 5.0)
        self.assertEqual((r.status, r.message, r.body), (200, b"bye", [b"done"]))
        w.leave()
        # the new request had no other worker: 503 (no-worker timeout, measured from its arrival)
        r2 = c.get_reply(rid2, 5.0)
        self.assertIsNotNone(r2)
        self.assertEqual(r2.status, 503)
        time.sleep(0.3)
        self.assertEqual(self.mmi_service(b, "grace", c), b"404")
        self.assertEqual(w.disconnects, [], "a graceful stop is not punished")

    def test_stopping_worker_requests_go_to_others(self):
        b = self.start_broker()
        w1 = self.native_worker(b, ["gs"], concurrency=4, mode="echo", name="stopper")
        w2 = self.native_worker(b, ["gs"], concurrency=4, mode="echo", name="stayer")
        w1.send_stopping()
        self.assertTrue(w1.stopping_evt.wait(5.0))
        c = self.client(b)
        for i in range(6):
            r = c.request("gs", [b"%d" % i], timeout_ms=5000)
            self.assertEqual((r.status, r.message), (200, b"stayer"))


if __name__ == "__main__":
    unittest.main()
