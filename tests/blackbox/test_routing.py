# SPDX-License-Identifier: Apache-2.0
"""Routing by service, pipelining by request-id, body pass-through, either endpoint for either role."""

import time
import unittest

from harness import Scale0TestCase, b_, now


class RoutingTest(Scale0TestCase):

    def test_requests_reach_only_workers_of_their_service(self):
        b = self.start_broker()
        wa = self.native_worker(b, ["A"], name="wa")
        wb = self.native_worker(b, ["B"], name="wb")
        wab = self.native_worker(b, ["A", "B"], name="wab")
        c = self.client(b)
        served = {b"A": set(), b"B": set()}
        for i in range(12):
            for svc in (b"A", b"B"):
                r = c.request(svc, [b"%s-%d" % (svc, i)], timeout_ms=5000)
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.body, [b"%s-%d" % (svc, i)])
                served[svc].add(r.message)
        # each worker saw only its own services, with the service frame the client asked for
        for j in wa.jobs:
            self.assertEqual(j.service, b"A", j)
        for j in wb.jobs:
            self.assertEqual(j.service, b"B", j)
        self.assertTrue(set(j.service for j in wab.jobs) == {b"A", b"B"},
                        "the worker serving A and B should get both: %r" % (wab.jobs,))
        self.assertEqual(served[b"A"], {b"wa", b"wab"}, "A must be served only by wa and wab")
        self.assertEqual(served[b"B"], {b"wb", b"wab"}, "B must be served only by wb and wab")
        self.assertEqual(len(wa.jobs) + len(wb.jobs) + len(wab.jobs), 24)
        for w in (wa, wb, wab):
            w.check()

    def test_scale0_worker_with_two_services_serves_both(self):
        b = self.start_broker()
        self.scale0_worker(b, ["X", "Y"], name="multi", concurrency=1)
        self.scale0_worker(b, ["Y"], name="only-y", concurrency=1)
        self.wait_mmi(b, "X", timeout=15.0)
        c = self.client(b)
        for i in range(5):
            r = c.request("X", [b"x%d" % i], timeout_ms=5000)
            self.assertEqual((r.status, r.message, r.body), (200, b"multi", [b"x%d" % i]))
        self.wait_names(b, "Y", ["multi", "only-y"], timeout=15.0)
        names = set()
        for i in range(6):
            r = c.request("Y", [b"y%d" % i], timeout_ms=5000)
            self.assertEqual((r.status, r.body), (200, [b"y%d" % i]))
            names.add(r.message)
        self.assertEqual(names, {b"multi", b"only-y"})

    def test_pipelined_replies_match_request_ids(self):
        b = self.start_broker()
        # replies in reverse order of arrival: the worker holds 20 and answers them last-first
        w = self.native_worker(b, ["P"], concurrency=20, mode="hold")
        c = self.client(b)
        sent = {}
        for i in range(20):
            rid = c.send_request("P", [b"body-%d" % i, b"tail"], timeout_ms=10000)
            sent[rid] = [b"body-%d" % i, b"tail"]
        jobs = w.jobs_within(3.0)
        for _ in range(20):
            if len(jobs) >= 20:
                break
            j = w.next_job(0.5)
            if j:
                jobs.append(j)
        self.assertEqual(len(jobs), 20, "worker with concurrency 20 should hold all 20 requests")
        self.assertEqual(len(set(j.job_id for j in jobs)), 20, "job-ids must be distinct")
        for j in reversed(jobs):
            w.reply(j, 200, b"rev", [b"re:" + j.body[0]])
        got = c.collect(20, 10.0)
        self.assertEqual(len(got), 20)
        self.assertEqual(sorted(r.rid for r in got), sorted(sent))
        for r in got:
            self.assertEqual(r.status, 200)
            self.assertEqual(r.body, [b"re:" + sent[r.rid][0]], "reply body must belong to its request-id")
        self.assertEqual(c.drain_replies(0.5), [], "no extra replies")

    def test_body_frames_pass_through_untouched(self):
        b = self.start_broker()
        self.native_worker(b, ["E"], mode="echo")
        c = self.client(b)
        bodies = [
            [],
            [b""],
            [b"", b"", b""],
            [bytes(range(256)), b"\x00\x00", b"S0C1", b"MDPC01", b"\x01"],
            [b"x" * 100000],
        ]
        for body in bodies:
            r = c.request("E", body, timeout_ms=5000)
            self.assertEqual(r.status, 200)
            self.assertEqual(r.body, body)

    def test_worker_status_and_message_pass_through(self):
        b = self.start_broker()
        self.native_worker(b, ["F"], mode=lambda j: (int(j.body[0]), b"msg-" + j.body[0], [b"b", b"c"]))
        c = self.client(b)
        for code in (200, 201, 404, 500, 599):
            r = c.request("F", [str(code).encode()], timeout_ms=5000)
            self.assertEqual((r.status, r.message, r.body), (code, b"msg-%d" % code, [b"b", b"c"]))

    def test_worker_gets_time_left_as_timeout(self):
        b = self.start_broker()
        w = self.native_worker(b, ["T"], mode="echo")
        c = self.client(b)
        r = c.request("T", [b"x"], timeout_ms=5000)
        self.assertEqual(r.status, 200)
        j = w.jobs[-1]
        self.assertTrue(1 <= j.timeout_ms <= 5000, j)
        self.assertGreater(j.timeout_ms, 3000, "an immediately dispatched request keeps most of its 5 s")
        r = c.request("T", [b"y"], timeout_ms=0)
        j = w.jobs[-1]
        self.assertTrue(20000 < j.timeout_ms <= 30000,
                        "timeout-ms 0 means the broker default of 30000 ms: got %r" % j)

    def test_either_endpoint_accepts_either_role(self):
        b = self.start_broker()
        # worker on the frontend, client on the backend
        w = self.native_worker(b.frontend, ["swap"], name="front-worker")
        c = self.client(b.backend)
        r = c.request("swap", [b"hi"], timeout_ms=5000)
        self.assertEqual((r.status, r.message, r.body), (200, b"front-worker", [b"hi"]))
        # and the usual way round for the same service
        c2 = self.client(b.frontend)
        r = c2.request("swap", [b"ho"], timeout_ms=5000)
        self.assertEqual((r.status, r.body), (200, [b"ho"]))
        w.check()

    def test_ping_pong_echoes_payload(self):
        b = self.start_broker()
        c = self.client(b)
        for payload in ([], [b"one"], [b"a", b"", b"\x00" * 9]):
            m = c.ping(payload, 5.0)
            self.assertIsNotNone(m, "no PONG for PING %r" % (payload,))
            self.assertEqual(m, [b"", b"S0C1", b"\x04"] + payload)


if __name__ == "__main__":
    unittest.main()
