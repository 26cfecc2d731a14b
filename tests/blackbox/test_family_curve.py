# SPDX-License-Identifier: Apache-2.0
"""CURVE on the peer port (docs/family.md, "Security"), against the real binary: brokers that share
the family's secret certificate (`--peer-cert`, from `scale0 keygen`) link, exchange capacity and
forward over CURVE; a broker with another certificate, a broker without one, and a plaintext S0P1
peer never become peers (their failed handshakes are counted in
scale0_refused_total{endpoint="peer"}: protocol_error or not_curve, as libzmq saw each fail);
protected mode lets a peer port other machines can reach start only with a certificate.

Bounded: every wait has a timeout; a window in which nothing may happen is a fixed 2 s.
"""

import os
import tempfile
import time
import unittest
import urllib.request

import zmq

from harness import (str8, str16, binary_available, ep, family_status, free_port, peers_of, run_cli,
                     Scale0TestCase, u32, u64, u8, u16, wait_until)

HB_MS = 200
WINDOW_S = 2.0


def refused(broker, reason):
    """scale0_refused_total{endpoint="peer",reason=REASON} of a broker (0 when absent)."""
    with urllib.request.urlopen("http://%s/metrics" % broker.metrics, timeout=5) as r:
        text = r.read().decode()
    key = 'scale0_refused_total{endpoint="peer",reason="%s"} ' % reason
    for line in text.splitlines():
        if line.startswith(key):
            return float(line[len(key):])
    return 0.0


def alive_peers(broker):
    return {e for e, p in peers_of(family_status(broker)).items() if p["state"] == "alive"}


class PeerCurveTest(Scale0TestCase):
    def setUp(self):
        super().setUp()
        if not binary_available():
            self.skipTest("scale0 binary not found (set SCALE0_BIN)")
        self.tmp = tempfile.mkdtemp(prefix="scale0-peer-curve-")

    def keygen(self, name):
        base = os.path.join(self.tmp, name)
        r = run_cli(["keygen", base], timeout=10)
        self.assertEqual(r.returncode, 0, r.stderr[-500:])
        return base, base + "_secret"

    def family_broker(self, cert=None, peers=()):
        extra = []
        if cert:
            extra += ["--peer-cert", cert]
        for p in peers:
            extra += ["--peer", p]
        return self.start_broker(heartbeat_interval=HB_MS, liveness=3, no_worker_timeout=1000,
                                 peer_port=free_port(), extra=extra)

    def test_brokers_sharing_the_certificate_link_and_forward_over_curve(self):
        _, secret = self.keygen("family")
        a = self.family_broker(secret)
        b = self.family_broker(secret, [a.peer])
        wait_until("A and B linked over CURVE", lambda: b.peer in alive_peers(a) and a.peer in alive_peers(b), 8.0)
        w = self.scale0_worker(b, ["echo"], name="wb")
        wait_until("B's echo worker seen on A", lambda: any(
            s["name"] == "echo" and s["idle"] > 0 for s in peers_of(family_status(a))[b.peer]["services"]), 8.0)
        c = self.client(a)
        r = c.request("echo", b"over curve", wait=5.0)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(family_status(a)["forwarded_out"], 1)
        self.assertEqual(refused(a, "unknown_key"), 0.0)
        w.kill()

    def test_another_certificate_no_certificate_and_plaintext_are_kept_out(self):
        _, secret = self.keygen("family")
        _, other = self.keygen("intruder")
        a = self.family_broker(secret)
        stranger = self.family_broker(other, [a.peer])
        plain = self.family_broker(None, [a.peer])
        # Their links fail the handshake before any S0P1 is read (the stranger's encrypts to its
        # own family's key; the plaintext one has no CURVE): counted, by how libzmq saw it fail.
        total = lambda: sum(refused(a, r) for r in ("protocol_error", "not_curve", "unknown_key"))
        wait_until("A counts refused handshakes from both", lambda: total() >= 4, 8.0)
        # A plaintext S0P1 HELLO straight to the peer port: no handshake, so nothing is read.
        raw = self.ctx.socket(zmq.DEALER)
        raw.setsockopt(zmq.LINGER, 0)
        raw.connect(a.peer)
        fake_ep = ep(free_port()).encode()
        hello = (b"S0P1\x01" + u64(0xabc) + u32(1000) + u32(3) + u8(0) + str8(b"default")
                 + str16(fake_ep) + str16(b"") + str16(b""))
        deadline = time.time() + WINDOW_S
        while time.time() < deadline:
            try:
                raw.send_multipart([b"", hello], flags=zmq.NOBLOCK)
            except zmq.Again:
                pass  # no connection: its handshake failed, as it should
            st = family_status(a)
            self.assertEqual(alive_peers(a), set(), "nothing without the family's key becomes a peer")
            for broker in (stranger, plain):
                self.assertNotIn(a.peer, alive_peers(broker))
            time.sleep(0.2)
        raw.close()
        self.assertNotIn(fake_ep.decode(), peers_of(st))
        self.assertEqual(st["family"]["counters"]["messages_in"]["hello"], 0)

    def test_protected_mode_needs_a_certificate_for_a_reachable_peer_port(self):
        public, secret = self.keygen("family")
        port = free_port()
        base = ["broker", "--frontend", ep(free_port()), "--backend", ep(free_port()),
                "--heartbeat", ep(free_port()), "--metrics-listen", "",
                "--peer-listen", "tcp://0.0.0.0:%d" % port, "--advertise-peer", ep(port)]
        refusal = run_cli(base, timeout=10)
        self.assertNotEqual(refusal.returncode, 0)
        self.assertIn(b"--peer-cert", refusal.stderr, refusal.stderr[-500:])
        # A public certificate, or a file that is not one, is refused with what is wrong.
        for bad in (public, os.path.join(self.tmp, "missing")):
            r = run_cli(base + ["--peer-cert", bad], timeout=10)
            self.assertNotEqual(r.returncode, 0, "--peer-cert %s" % bad)
            self.assertIn(bad.encode(), r.stderr, r.stderr[-500:])
        b = self.start_broker(heartbeat_interval=HB_MS, liveness=3, peer_port=port,
                              extra=["--peer-listen", "tcp://0.0.0.0:%d" % port,
                                     "--advertise-peer", ep(port), "--peer-cert", secret])
        self.assertEqual(family_status(b)["family"]["peer_endpoint"], ep(port))


if __name__ == "__main__":
    unittest.main()
