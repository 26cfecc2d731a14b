# SPDX-License-Identifier: Apache-2.0
"""Budgets a hostile or careless peer could exhaust (issue 9, items 1, 4 and 5), against the real
binary: a client that sends 100,000 requests without reading still gets exactly one outcome for
each; queued bytes, services nobody serves, services per worker and the heartbeat interval a worker
may ask for are bounded, and each budget's use and limit is in /metrics. Also 7/MDP: a REPLY from a
worker that never sent READY gets DISCONNECT, whatever its client address."""

import json
import os
import re
import time
import unittest
import urllib.request

import zmq

from harness import (scrape, BIN, HERE, PYTHON, Broker, NativeClient, NativeWorker, Proc, RawPeer, Scale0TestCase,
                     Scale0Worker, W_HDR, W_READY, MDPW, du32, now, parse_disconnect, u8, u32)


class UnreadFloodTest(Scale0TestCase):
    """Item 1: replies were dropped when a pipelining client did not read (the ROUTER's queue to it
    overflowed). Now answers wait in a bounded per-client backlog, and unread answers count against
    the client's in-flight bound (so it gets cheap 429s, not more work)."""

    def flood(self, proto):
        b = self.start_broker(heartbeat_interval=1000)
        w = self.scale0_worker(b, ["echo"], concurrency=8)
        self.wait_mmi(b, "echo")
        p = Proc([PYTHON, os.path.join(HERE, "unread_flood.py"), b.frontend, "echo", "100000", proto],
                 capture_stdout=True)
        self.addCleanup(p.cleanup)
        try:
            out, _ = p.p.communicate(timeout=240)
        except Exception:
            p.kill()
            self.fail("flood client did not finish; broker stderr:\n%s" % b.stderr_text()[-2000:])
        r = json.loads(out.decode().strip().splitlines()[-1])
        self.assertEqual(r["sent"], 100000, r)
        self.assertEqual(r["missing"], 0, r)
        self.assertEqual(r["replies"] + sum(r["errors"].values()), r["sent"], r)
        self.assertEqual(set(r["errors"]) - {"429"}, set(), r)
        self.assertEqual((r["duplicates"], r["crossed"], r["bad"]), (0, 0, 0), r)
        self.assertGreater(r["replies"], 0, r)
        m = scrape(b)
        self.assertEqual(m['scale0_dropped_messages_total{reason="unroutable"}'], 0)
        self.assertEqual(m['scale0_dropped_messages_total{reason="client_backlog_full"}'], 0)
        self.assertEqual(m["scale0_client_backlog_messages"], 0)
        self.assertTrue(w.alive())

    def test_mdp_client_sends_100k_without_reading_then_reads(self):
        self.flood("mdp")

    def test_native_client_sends_100k_without_reading_then_reads(self):
        self.flood("s0")

    def test_a_client_that_never_reads_is_bounded_and_counted(self):
        # A tiny per-client backlog: what does not fit is dropped and counted, the broker stays up
        # and keeps serving others.
        b = self.start_broker(heartbeat_interval=1000,
                              extra=["--max-client-backlog-bytes", "65536", "--max-total-backlog-bytes",
                                     "65536"])
        self.scale0_worker(b, ["echo"], concurrency=8)
        self.wait_mmi(b, "echo")
        s = self.ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.RCVHWM, 10)
        s.connect(b.frontend)
        self.addCleanup(s.close, 0)
        body = b"z" * 2000  # 60 MB in all: more than the kernel's socket buffers and the queue hold
        for i in range(30000):
            s.send_multipart([b"", b"MDPC01", b"echo", body])
        deadline = now() + 30
        m = scrape(b)
        while now() < deadline and m['scale0_dropped_messages_total{reason="client_backlog_full"}'] == 0:
            time.sleep(0.1)
            m = scrape(b)
        self.assertGreater(m['scale0_dropped_messages_total{reason="client_backlog_full"}'], 0)
        self.assertLessEqual(m['scale0_budget_used{budget="client_backlog_bytes"}'], 65536)
        self.assertEqual(m['scale0_budget_limit{budget="client_backlog_bytes_per_client"}'], 65536)
        c = self.client(b)
        r = c.request("echo", b"still here", timeout_ms=5000)
        self.assertEqual((r.status, r.body), (200, [b"still here"]))


class QueueBytesTest(Scale0TestCase):
    """Item 5a: a byte budget for queued requests, per service and in all."""

    def test_queued_bytes_over_the_service_budget_get_503_at_once(self):
        b = self.start_broker(no_worker_timeout=3000, extra=["--max-queue-bytes", "4096"])
        c = self.client(b)
        ids = [c.send_request("nobody", b"x" * 2000, timeout_ms=10000) for _ in range(2)]
        t0 = now()
        third = c.get_reply(c.send_request("nobody", b"y" * 2000, timeout_ms=10000), timeout=2.0)
        self.assertEqual(third.status, 503, third)
        self.assertLess(now() - t0, 1.0, "over the byte budget is a fast error")
        self.assertIn(b"bytes", third.message)
        m = scrape(b)
        self.assertEqual(m['scale0_queue_bytes{service="nobody"}'], 4000)
        self.assertEqual(m['scale0_budget_used{budget="queue_bytes"}'], 4000)
        self.assertEqual(m['scale0_budget_limit{budget="queue_bytes_per_service"}'], 4096)
        # the two queued ones still end with their own outcome (no worker: 503 after the timeout)
        for rid in ids:
            self.assertEqual(c.get_reply(rid, timeout=6.0).status, 503)
        self.assertEqual(scrape(b)['scale0_budget_used{budget="queue_bytes"}'], 0)

    def test_total_budget_counts_every_service(self):
        b = self.start_broker(no_worker_timeout=3000,
                              extra=["--max-queue-bytes", "4096", "--max-total-queue-bytes", "5000"])
        c = self.client(b)
        c.send_request("a", b"x" * 3000, timeout_ms=10000)
        r = c.get_reply(c.send_request("b", b"y" * 3000, timeout_ms=10000), timeout=2.0)
        self.assertEqual(r.status, 503, r)


class ServiceTableTest(Scale0TestCase):
    """Item 5b: clients cannot fill the service table with names nobody serves; a worker's READY
    is not refused because of them."""

    def test_unserved_services_made_by_clients_are_capped(self):
        b = self.start_broker(no_worker_timeout=5000, extra=["--max-unserved-services", "10"])
        c = self.client(b)
        rids = [c.send_request("ghost-%d" % i, b"x", timeout_ms=10000) for i in range(30)]
        fast = [c.get_reply(r, timeout=2.0) for r in rids[10:]]
        self.assertEqual({r.status for r in fast}, {503})
        self.assertEqual({r.message for r in fast}, {b"no worker for service"})
        m = scrape(b)
        self.assertEqual(m['scale0_budget_used{budget="unserved_services"}'], 10)
        self.assertEqual(m['scale0_budget_limit{budget="unserved_services"}'], 10)
        # a real service still works meanwhile
        self.scale0_worker(b, ["echo"])
        self.wait_mmi(b, "echo")
        self.assertEqual(c.request("echo", b"hi", timeout_ms=5000).status, 200)

    def test_a_worker_is_not_refused_because_clients_filled_the_table(self):
        # The table holds 100; clients ask for 150 names nobody serves (the first 100 wait, the rest
        # get 503 at once). Once those requests have their 503, a worker's READY makes room at once
        # instead of waiting for the names to expire.
        b = self.start_broker(no_worker_timeout=300,
                              extra=["--max-services", "100", "--service-ttl", "60000"])
        c = self.client(b)
        rids = [c.send_request("ghost-%d" % i, b"x", timeout_ms=10000) for i in range(150)]
        for r in rids:
            self.assertEqual(c.get_reply(r, timeout=5.0).status, 503)
        w = self.native_worker(b, ["real-service"], wait=False)
        self.assertIsNotNone(w.wait_welcome(timeout=3.0), "READY refused: %r" % (w.disconnects,))
        self.assertEqual(c.request("real-service", b"hi", timeout_ms=5000).status, 200)

    def test_services_per_worker_are_capped(self):
        b = self.start_broker(extra=["--max-worker-services", "4"])
        p = self.raw(b.backend)
        p.send([b"", W_HDR, u8(W_READY), u32(1), u32(0), u8(0)] + [b"s%d" % i for i in range(5)])
        d = parse_disconnect(p.recv(3.0))
        self.assertIsNotNone(d)
        self.assertEqual(d[0], 400)
        p.send([b"", W_HDR, u8(W_READY), u32(1), u32(0), u8(0)] + [b"s%d" % i for i in range(4)])
        welcome = p.recv(3.0)
        self.assertEqual(welcome[2], u8(0x06), welcome)


class HeartbeatCapTest(Scale0TestCase):
    """Item 5c: the interval a worker asks for is capped, so a silent fake worker is purged."""

    def test_a_huge_requested_interval_is_cut_to_the_cap(self):
        b = self.start_broker(heartbeat_interval=200)
        p = self.raw(b.backend)
        p.send([b"", W_HDR, u8(W_READY), u32(1), u32(0xFFFFFFFF), u8(0), b"silent"])
        welcome = p.recv(3.0)
        self.assertEqual(welcome[2], u8(0x06), welcome)
        self.assertEqual(du32(welcome[3]), 60000)

    def test_a_silent_worker_that_asked_for_ever_is_purged(self):
        b = self.start_broker(heartbeat_interval=100, liveness=3,
                              extra=["--max-heartbeat-interval", "300"])
        p = self.raw(b.backend)
        p.send([b"", W_HDR, u8(W_READY), u32(1), u32(0xFFFFFFFF), u8(0), b"silent"])
        welcome = p.recv(3.0)
        self.assertEqual(du32(welcome[3]), 300)
        deadline = now() + 5.0
        while now() < deadline and scrape(b).get("scale0_workers_expired_total", 0) == 0:
            pass
        self.assertEqual(scrape(b)["scale0_workers_expired_total"], 1)


class MdpConformanceTest(Scale0TestCase):
    """Item 4: RFC 7 says a valid but unexpected command gets DISCONNECT; a REPLY before READY is
    one, whatever client address it carries."""

    def test_reply_before_ready_gets_disconnect(self):
        b = self.start_broker()
        for address in (b"abc", b"12345678", b""):
            p = self.raw(b.backend)
            p.send([b"", MDPW, b"\x03", address, b"", b"body"])
            m = p.recv(3.0)
            self.assertIsNotNone(m, "no DISCONNECT for a REPLY with client address %r" % address)
            self.assertEqual(m[:3], [b"", MDPW, b"\x05"], m)


class BudgetMetricsTest(Scale0TestCase):
    def test_every_budget_has_its_use_and_limit(self):
        b = self.start_broker()
        m = scrape(b)
        for budget in ("services", "unserved_services", "queue_per_service", "queue_bytes_per_service",
                       "queue_bytes", "client_backlog_bytes_per_client", "client_backlog_bytes",
                       "heartbeat_interval_seconds"):
            self.assertIn('scale0_budget_used{budget="%s"}' % budget, m)
            self.assertIn('scale0_budget_limit{budget="%s"}' % budget, m)
            self.assertGreater(m['scale0_budget_limit{budget="%s"}' % budget], 0)


if __name__ == "__main__":
    unittest.main()
