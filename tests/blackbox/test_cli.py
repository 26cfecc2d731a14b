# SPDX-License-Identifier: Apache-2.0
"""The scale0 command line: `request` exit codes and output, `broker` startup errors and signals."""

import signal
import socket
import unittest

from harness import (BIN, Broker, Proc, Scale0TestCase, ep, first_line, free_port, now, run_cli,
                     READY_RE)


class RequestCliTest(Scale0TestCase):

    def test_request_success_exit_0(self):
        b = self.start_broker()
        self.scale0_worker(b, ["cli"], name="cli-worker")
        self.wait_mmi(b, "cli", timeout=15.0)
        res = run_cli(["request", "--broker", b.frontend, "--timeout", "5000", "cli", "hello"])
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertIn(res.stdout, (b"hello", b"hello\n"))
        # body from stdin
        res = run_cli(["request", "--broker", b.frontend, "--timeout", "5000", "cli"], input=b"from stdin")
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertIn(res.stdout, (b"from stdin", b"from stdin\n"))
        # --verbose: status and message on stderr as well
        res = run_cli(["request", "--broker", b.frontend, "--timeout", "5000", "--verbose", "cli", "v"])
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertIn(res.stdout, (b"v", b"v\n"))
        self.assertIn(b"200", res.stderr)
        self.assertIn(b"cli-worker", res.stderr, "--verbose prints the reply's message (the worker name)")
        # the backend endpoint works for clients too
        res = run_cli(["request", "--broker", b.backend, "--timeout", "5000", "cli", "back"])
        self.assertEqual((res.returncode, res.stdout.rstrip(b"\n")), (0, b"back"), res.stderr)

    def test_request_503_nonzero_exit(self):
        b = self.start_broker(no_worker_timeout=500)
        t0 = now()
        res = run_cli(["request", "--broker", b.frontend, "--timeout", "5000", "nobody", "x"], timeout=30)
        self.assertNotEqual(res.returncode, 0)
        self.assertIn(b"503", res.stderr)
        self.assertEqual(res.stdout, b"", "no body on stdout for an error")
        self.assertLess(now() - t0, 10.0)

    def test_request_worker_error_status_nonzero_exit(self):
        b = self.start_broker()
        self.native_worker(b, ["fails"], mode=lambda j: (500, b"boom happened", []))
        res = run_cli(["request", "--broker", b.frontend, "--timeout", "5000", "fails", "x"])
        self.assertNotEqual(res.returncode, 0)
        self.assertIn(b"500", res.stderr)
        self.assertIn(b"boom happened", res.stderr)

    def test_request_timeout_nonzero_exit(self):
        b = self.start_broker()
        self.native_worker(b, ["hang"], mode="hold", concurrency=8)
        res = run_cli(["request", "--broker", b.frontend, "--timeout", "600", "hang", "x"], timeout=30)
        self.assertNotEqual(res.returncode, 0)
        self.assertIn(b"504", res.stderr)

    def test_request_mmi(self):
        b = self.start_broker()
        self.native_worker(b, ["there"])
        res = run_cli(["request", "--broker", b.frontend, "--timeout", "5000", "mmi.service", "there"])
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertEqual(res.stdout.rstrip(b"\n"), b"200")


class BrokerCliTest(unittest.TestCase):

    def setUp(self):
        from harness import binary_available
        if not binary_available():
            self.skipTest("scale0 binary not found at %s" % BIN)

    def test_endpoint_in_use_fails(self):
        for position in range(3):
            blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            blocker.bind(("127.0.0.1", 0))
            blocker.listen(1)
            busy = blocker.getsockname()[1]
            try:
                ports = [free_port(), free_port(), free_port()]
                ports[position] = busy
                res = run_cli(["broker", "--frontend", ep(ports[0]), "--backend", ep(ports[1]),
                               "--heartbeat", ep(ports[2]), "--metrics-listen", ""], timeout=15)
                self.assertNotEqual(res.returncode, 0, "endpoint %d in use must fail" % position)
                self.assertNotIn(b"ready", res.stdout)
                self.assertGreater(len(res.stderr.strip()), 0, "a clear error on stderr")
            finally:
                blocker.close()

    def test_second_broker_on_same_ports_fails(self):
        b = Broker().start()
        try:
            res = run_cli(["broker", "--frontend", b.frontend, "--backend", b.backend, "--heartbeat", b.heartbeat,
                           "--metrics-listen", ""], timeout=15)
            self.assertNotEqual(res.returncode, 0)
            self.assertGreater(len(res.stderr.strip()), 0)
            self.assertTrue(b.alive(), "the first broker is unaffected")
        finally:
            b.kill()
            b.cleanup()

    def test_bad_flags_fail(self):
        fe, be, hb = ep(free_port()), ep(free_port()), ep(free_port())
        base = ["broker", "--frontend", fe, "--backend", be, "--heartbeat", hb, "--metrics-listen", ""]
        for args in (base + ["--no-such-flag"],
                     base + ["--liveness", "notanumber"],
                     ["worker", "--service", "x", "--echo", "--broker", be, "--no-such-flag"],
                     ["request", "--no-such-flag", "svc", "x"],
                     ["no-such-subcommand"]):
            res = run_cli(args, timeout=15)
            self.assertNotEqual(res.returncode, 0, "%r should fail" % (args,))
            self.assertGreater(len(res.stderr.strip()), 0, "%r should explain on stderr" % (args,))

    def test_sigterm_and_sigint_exit_0(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            b = Broker().start()
            try:
                b.proc.signal(sig)
                rc = b.proc.wait(10)
                self.assertEqual(rc, 0, "broker should exit 0 on %s; stderr:\n%s" % (sig, b.stderr_text()[-2000:]))
            finally:
                b.kill()
                b.cleanup()

    def test_wildcard_ports_reported_in_ready_line(self):
        p = Proc([BIN, "broker", "--frontend", "tcp://127.0.0.1:*", "--backend", "tcp://127.0.0.1:*",
                  "--heartbeat", "tcp://127.0.0.1:*", "--metrics-listen", "127.0.0.1:0"], capture_stdout=True)
        try:
            line = first_line(p)
            m = READY_RE.match(line)
            self.assertIsNotNone(m, "ready line %r; stderr %s" % (line, p.stderr_text()))
            eps = [x.decode() for x in m.groups()[:3]]
            for e in eps:
                self.assertRegex(e, r"^tcp://127\.0\.0\.1:\d+$", "the real port, not *")
            self.assertEqual(len(set(eps)), 3)
            # the reported frontend works
            import zmq
            from harness import NativeClient
            ctx = zmq.Context()
            try:
                c = NativeClient(ctx, eps[0])
                r = c.request("mmi.service", [b"x"], timeout_ms=5000, wait=10.0)
                self.assertEqual(r.body, [b"404"])
                c.close()
            finally:
                ctx.destroy(0)
        finally:
            p.cleanup()


if __name__ == "__main__":
    unittest.main()
