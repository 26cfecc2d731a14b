# SPDX-License-Identifier: Apache-2.0
"""`scale0 worker --exec CMD`: a command per request (docs/exec-worker.md).

Body on stdin, stdout is the reply body (200); exit != 0 -> 500 with stderr as the message;
past --exec-timeout -> 504 "command timed out after N ms"; more stdout than --max-output-bytes ->
413; --concurrency N runs N commands at once; shell operators need --shell.
"""

import unittest

from harness import Scale0TestCase, now, run_cli


class ExecWorkerTest(Scale0TestCase):

    def exec_worker(self, broker, service, command, shell=False, name=None, concurrency=None,
                    extra=()):
        args = ["--exec", command] + (["--shell"] if shell else []) + list(extra)
        w = self.scale0_worker(broker, [service], name=name, concurrency=concurrency, echo=False,
                               extra=args)
        self.wait_mmi(broker, service, timeout=15.0)
        self.assertTrue(w.alive(), "worker exited: %s" % w.proc.stderr_text())
        return w

    def test_stdout_is_the_reply(self):
        b = self.start_broker()
        self.exec_worker(b, "upper", "tr a-z A-Z", name="exec-w1")
        c = self.client(b)
        r = c.request("upper", [b"hello ", b"world"], timeout_ms=10000, wait=15.0)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, [b"HELLO WORLD"], "the frames are concatenated on stdin")
        self.assertEqual(r.message, b"exec-w1", "a 200 reply names the worker like --echo does")
        # quoting without a shell: one argument with a space and a '|'
        self.exec_worker(b, "fmt", "printf '%s|%s' 'a b' c")
        r = c.request("fmt", b"", timeout_ms=10000, wait=15.0)
        self.assertEqual((r.status, r.body), (200, [b"a b|c"]), r)

    def test_big_bodies_and_commands_that_ignore_stdin(self):
        b = self.start_broker()
        w = self.exec_worker(b, "cat", "cat")
        self.exec_worker(b, "head", "head -c 3")
        c = self.client(b)
        big = bytes(range(256)) * 4096  # 1 MiB
        r = c.request("cat", big, timeout_ms=10000, wait=15.0)
        self.assertEqual((r.status, r.body), (200, [big]), "1 MiB in and out without deadlock")
        # the command exits without reading its stdin: no SIGPIPE for the worker
        r = c.request("head", b"y" * (1 << 20), timeout_ms=10000, wait=15.0)
        self.assertEqual((r.status, r.body), (200, [b"yyy"]), r)
        self.assertTrue(w.alive())
        r = c.request("cat", b"still here", timeout_ms=10000, wait=15.0)
        self.assertEqual((r.status, r.body), (200, [b"still here"]), r)

    def test_nonzero_exit_is_500_with_stderr(self):
        b = self.start_broker()
        self.exec_worker(b, "fails", "cat >/dev/null; echo oops >&2; exit 3", shell=True)
        c = self.client(b)
        r = c.request("fails", b"input", timeout_ms=10000, wait=15.0)
        self.assertEqual(r.status, 500, r)
        self.assertEqual(r.message, b"oops")
        self.assertEqual(r.body, [])
        # not found: 500 with a clear message; the worker keeps serving
        self.exec_worker(b, "missing", "scale0-no-such-command arg")
        r = c.request("missing", b"x", timeout_ms=10000, wait=15.0)
        self.assertEqual(r.status, 500, r)
        self.assertIn(b"cannot run 'scale0-no-such-command'", r.message)
        r = c.request("missing", b"x", timeout_ms=10000, wait=15.0)
        self.assertEqual(r.status, 500, r)

    def test_timeout_is_504_and_the_worker_carries_on(self):
        b = self.start_broker()
        self.exec_worker(b, "slow", "sleep 5", extra=["--exec-timeout", "300"])
        c = self.client(b)
        t0 = now()
        r = c.request("slow", b"", timeout_ms=10000, wait=15.0)
        took = now() - t0
        self.assertEqual(r.status, 504, r)
        self.assertEqual(r.message, b"command timed out after 300 ms", "from the worker, not the broker")
        self.assertLess(took, 3.0)
        r = c.request("slow", b"", timeout_ms=10000, wait=15.0)
        self.assertEqual(r.status, 504, r)

    def test_output_over_the_limit_is_413(self):
        b = self.start_broker()
        self.exec_worker(b, "big", "head -c 100000 /dev/zero", extra=["--max-output-bytes", "1000"])
        self.exec_worker(b, "fits", "head -c 1000 /dev/zero", extra=["--max-output-bytes", "1000"])
        c = self.client(b)
        r = c.request("big", b"", timeout_ms=10000, wait=15.0)
        self.assertEqual(r.status, 413, r)
        self.assertEqual(r.message, b"output larger than 1000 bytes")
        r = c.request("fits", b"", timeout_ms=10000, wait=15.0)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, [b"\0" * 1000])

    def test_concurrency_2_runs_two_at_once(self):
        b = self.start_broker()
        self.exec_worker(b, "nap", "sleep 0.6", concurrency=2)
        c = self.client(b)
        t0 = now()
        rids = [c.send_request("nap", b"", timeout_ms=10000) for _ in range(2)]
        replies = [c.get_reply(rid, 10.0) for rid in rids]
        took = now() - t0
        for r in replies:
            self.assertIsNotNone(r)
            self.assertEqual(r.status, 200, r)
        self.assertLess(took, 1.1, "two 0.6 s commands on --concurrency 2 overlap (took %.2fs)" % took)

    def test_bad_command_lines_fail_clearly(self):
        cases = [
            (["worker", "--service", "x", "--exec", "ls | wc -l"], b"--shell"),
            (["worker", "--service", "x", "--exec", "echo $(date)"], b"--shell"),
            (["worker", "--service", "x", "--exec", ""], b"empty"),
            (["worker", "--service", "x", "--echo", "--exec", "cat"], b"--exec"),
            (["worker", "--service", "x"], b"--exec"),
            (["worker", "--service", "x", "--echo", "--shell"], b"--exec"),
            (["worker", "--service", "x", "--exec", "cat", "--exec-timeout", "0"], b"--exec-timeout"),
        ]
        for args, hint in cases:
            res = run_cli(args, timeout=15)
            self.assertNotEqual(res.returncode, 0, "%r should fail" % (args,))
            self.assertIn(hint, res.stderr, "%r: %r" % (args, res.stderr))


if __name__ == "__main__":
    unittest.main()
