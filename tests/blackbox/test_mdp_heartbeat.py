# SPDX-License-Identifier: Apache-2.0
"""Issue 9, item 2: Majordomo workers with the habits of the zguide's reference worker API
(mdwrkapi, Python and C) must not flap at the broker's defaults, and a busy one must not be expired.

The worker below behaves like mdwrkapi (written here from its documented behaviour, not copied):
HEARTBEAT every 2,500 ms, liveness 3, reconnect delay 2,500 ms; it checks its heartbeat timer only
after its 2,500 ms poll returns (a broker message arrived or the poll timed out), and it sends
nothing at all while the application handles a request."""

import threading
import time
import unittest
import urllib.request

import zmq

from harness import MDPW, Scale0TestCase, now

HEARTBEAT_MS = 2500
LIVENESS = 3


class MdwrkapiLikeWorker(threading.Thread):
    def __init__(self, ctx, endpoint, service, work_seconds=0.0):
        super().__init__(daemon=True)
        self.ctx, self.endpoint, self.service, self.work = ctx, endpoint, service, work_seconds
        self.sock = None
        self.reconnects = 0          # times it (re)registered after the first
        self.disconnects = 0         # DISCONNECTs the broker sent it
        self.served = 0
        self.halt = threading.Event()
        self.error = None

    def connect(self):
        if self.sock is not None:
            self.sock.close(0)
            self.reconnects += 1
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(self.endpoint)
        self.sock.send_multipart([b"", MDPW, b"\x01", self.service])
        self.liveness = LIVENESS
        self.heartbeat_at = time.monotonic() + HEARTBEAT_MS / 1000

    def recv(self, reply):
        if reply is not None:
            address, body = reply
            self.sock.send_multipart([b"", MDPW, b"\x03", address, b""] + body)
        while not self.halt.is_set():
            if self.sock.poll(HEARTBEAT_MS, zmq.POLLIN):
                msg = self.sock.recv_multipart()
                self.liveness = LIVENESS
                command = msg[2] if len(msg) > 2 else b""
                if command == b"\x02":
                    return msg[3], msg[5:]
                if command == b"\x05":
                    self.disconnects += 1
                    self.connect()
            else:
                self.liveness -= 1
                if self.liveness == 0:
                    time.sleep(HEARTBEAT_MS / 1000)
                    self.connect()
            if time.monotonic() > self.heartbeat_at:
                self.sock.send_multipart([b"", MDPW, b"\x04"])
                self.heartbeat_at = time.monotonic() + HEARTBEAT_MS / 1000
        return None

    def run(self):
        try:
            self.connect()
            reply = None
            while not self.halt.is_set():
                request = self.recv(reply)
                if request is None:
                    break
                time.sleep(self.work)  # the application: no heartbeats meanwhile
                self.served += 1
                reply = request
        except Exception as e:  # surfaced by the test
            self.error = e
        finally:
            if self.sock is not None:
                self.sock.close(0)

    def stop(self):
        self.halt.set()
        self.join(timeout=HEARTBEAT_MS / 1000 + 2)


def expired_total(broker):
    with urllib.request.urlopen("http://%s/metrics" % broker.metrics, timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("scale0_workers_expired_total "):
                return float(line.split()[1])
    raise AssertionError("no scale0_workers_expired_total in /metrics")


class MdwrkapiHeartbeatTest(Scale0TestCase):
    def test_idle_and_busy_zguide_style_workers_are_not_expired_at_the_defaults(self):
        b = self.start_broker(heartbeat_interval=1000, liveness=3)  # the broker's defaults
        idle = MdwrkapiLikeWorker(self.ctx, b.backend, b"idle")
        busy = MdwrkapiLikeWorker(self.ctx, b.backend, b"slow", work_seconds=6.0)
        for w in (idle, busy):
            self._threads.append(w)
            w.start()
        self.wait_mmi(b, "idle")
        self.wait_mmi(b, "slow")
        t0 = now()
        c = self.mdp_client(b, kind="dealer")
        r = c.request(b"slow", [b"six seconds of work"], timeout=15.0)
        self.assertEqual(r.body, [b"six seconds of work"], "a 6 s request is served, not 502: %r" % (r,))
        self.assertGreaterEqual(now() - t0, 5.5)
        # ... and the idle one stays registered for 30 s in all
        time.sleep(max(0.0, 30.0 - (now() - t0)))
        self.assertEqual(expired_total(b), 0)
        for w in (idle, busy):
            self.assertIsNone(w.error)
            self.assertEqual((w.disconnects, w.reconnects), (0, 0), "worker %r flapped" % w.service)
        self.assertEqual(busy.served, 1)
        # a request after all that is served at once by the same registration
        r = c.request(b"idle", [b"still"], timeout=5.0)
        self.assertEqual(r.body, [b"still"])

    def test_a_frozen_mdp_worker_holding_a_request_is_out_after_its_deadline(self):
        # The MDP rule keeps a busy worker until its request's deadline plus one liveness period;
        # past that it is expired and its request has long had its 504.
        b = self.start_broker(heartbeat_interval=100, liveness=3, request_timeout=1000,
                              extra=["--mdp-heartbeat-interval", "200"])
        w = MdwrkapiLikeWorker(self.ctx, b.backend, b"stuck", work_seconds=30.0)
        self._threads.append(w)
        w.start()
        self.wait_mmi(b, "stuck")
        c = self.mdp_client(b, kind="dealer")
        t0 = now()
        r = c.request(b"stuck", [b"x"], timeout=5.0)
        self.assertEqual(r.body[0], b"504", r)
        for _ in range(100):
            if expired_total(b) >= 1:
                break
            time.sleep(0.05)
        # deadline 1 s + liveness 3 x 200 ms = 1.6 s after the request arrived
        self.assertEqual(expired_total(b), 1)
        self.assertLess(now() - t0, 4.0)
        w.halt.set()


if __name__ == "__main__":
    unittest.main()
