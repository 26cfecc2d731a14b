# SPDX-License-Identifier: Apache-2.0
"""Command-line conventions shared by every `scale0` subcommand, tested from the outside:

  * `scale0 --version` / `scale0 version`: one line, `scale0 X.Y.Z (commit <hex>[-dirty])`;
  * exit status: 0 success (a 200 reply), 1 other run-time failure, 2 usage or configuration
    error, 3 no broker answered, 4 a 4xx reply, 5 a 5xx reply; never CLI11's own codes (100+);
  * `scale0 request` writes the reply body byte-exact to a pipe or file, and adds one newline
    only when the body lacks one and stdout is a terminal;
  * `scale0 request --count N`: N requests one after another, stopping at the first failure;
  * durations: a bare number is milliseconds; `ms`, `s` and `m` suffixes are accepted.

test_cli.py covers the older behaviour (non-zero exits, stderr texts, the broker's ready line);
this file pins the exact codes and the conventions above.
"""

import os
import pty
import random
import re
import select
import socket
import subprocess
import tempfile
import time
import unittest

from harness import (BIN, Proc, Scale0TestCase, binary_available, ep, first_line, free_port, now,
                     run_cli, scrape, wait_until)

VERSION_RE = re.compile(r"^scale0 (\d+)\.(\d+)\.(\d+) \(commit (?:[0-9a-f]{7,40}(?:-dirty)?|unknown)\)$")

OK, FAILURE, USAGE, NO_BROKER, CLIENT_ERROR, SERVER_ERROR = 0, 1, 2, 3, 4, 5


def dead_endpoint():
    """A 127.0.0.1 endpoint with nothing listening (a port just released by the OS)."""
    return ep(free_port())


def broker_isolation_flags():
    """Explicit free ports and no metrics/peer listener, so a `scale0 broker` that wrongly starts
    never touches the default ports another test (or engineer) may be using."""
    return ["--frontend", dead_endpoint(), "--backend", dead_endpoint(), "--heartbeat", dead_endpoint(),
            "--metrics-listen", "", "--peer-listen", ""]


class CliMixin:
    """run_cli with the elapsed time, and the assertion that says what went wrong."""

    def cli(self, args, input=None, timeout=15.0):
        t0 = now()
        res = run_cli(args, input=input, timeout=timeout)
        res.elapsed = now() - t0
        return res

    def assertExit(self, res, code, what=""):
        self.assertEqual(
            res.returncode, code,
            "%s`scale0 %s` exited %r, expected %d%s\nstdout=%r\nstderr=%r"
            % (what + ": " if what else "", " ".join(res.args[1:])[:300], res.returncode, code,
               " (100+ is CLI11's own code, which must never leak)" if res.returncode >= 100 else "",
               res.stdout[:300], res.stderr[-1500:]))


class _NoBrokerCase(CliMixin, unittest.TestCase):
    def setUp(self):
        if not binary_available():
            self.skipTest("scale0 binary not found at %s (set SCALE0_BIN)" % BIN)


# ---------------------------------------------------------------------------------------------
# 1. version
# ---------------------------------------------------------------------------------------------
class VersionTest(_NoBrokerCase):

    def version_line(self, args):
        res = self.cli(args, timeout=10)
        self.assertExit(res, OK)
        text = res.stdout.decode("utf-8", "replace")
        self.assertTrue(text.endswith("\n"), "the version is one full line: %r" % text)
        lines = text.split("\n")[:-1]
        self.assertEqual(len(lines), 1, "exactly one line on stdout: %r" % text)
        self.assertRegex(lines[0], VERSION_RE)
        return lines[0]

    def test_version_flag_and_subcommand_print_the_same_line_exit_0(self):
        flag = self.version_line(["--version"])
        sub = self.version_line(["version"])
        self.assertEqual(flag, sub, "`scale0 --version` and `scale0 version` print the same line")

    def test_version_is_at_least_0_2_0(self):
        m = VERSION_RE.match(self.version_line(["--version"]))
        self.assertIsNotNone(m)
        version = tuple(int(x) for x in m.groups()[:3])
        self.assertGreaterEqual(version, (0, 2, 0))


# ---------------------------------------------------------------------------------------------
# 2. exit status: usage and configuration errors (no broker needed)
# ---------------------------------------------------------------------------------------------
class UsageExitTest(_NoBrokerCase):

    def test_no_subcommand_exits_2(self):
        self.assertExit(self.cli([], timeout=10), USAGE)

    def test_unknown_subcommand_exits_2(self):
        self.assertExit(self.cli(["nosuchcommand"], timeout=10), USAGE)

    def test_request_unknown_option_exits_2(self):
        self.assertExit(self.cli(["request", "--broker", dead_endpoint(), "--nosuch", "echo", "x"],
                                 timeout=10), USAGE)

    def test_request_non_numeric_timeout_exits_2(self):
        self.assertExit(self.cli(["request", "--broker", dead_endpoint(), "--timeout", "abc", "echo", "x"],
                                 timeout=10), USAGE)

    def test_unknown_option_exits_2_in_every_subcommand(self):
        cases = {
            "worker": ["worker", "--service", "x", "--echo", "--broker", dead_endpoint(), "--nosuch"],
            "status": ["status", "--broker", dead_endpoint(), "--nosuch"],
            "bench": ["bench", "--broker", dead_endpoint(), "--nosuch"],
            "broker": ["broker"] + broker_isolation_flags() + ["--nosuch"],
            "gateway": ["gateway", "--nosuch"],
            "mongrel2": ["mongrel2", "--nosuch"],
            "keygen": ["keygen", "--nosuch"],
        }
        for name, args in cases.items():
            with self.subTest(subcommand=name):
                self.assertExit(self.cli(args, timeout=10), USAGE, name)

    def test_other_parse_errors_exit_2_not_cli11_codes(self):
        cases = {
            "request without its service": ["request", "--broker", dead_endpoint()],
            "option without its value": ["request", "echo", "x", "--broker"],
            "broker --liveness notanumber": ["broker"] + broker_isolation_flags() + ["--liveness", "notanumber"],
        }
        for name, args in cases.items():
            with self.subTest(case=name):
                self.assertExit(self.cli(args, timeout=10), USAGE, name)

    def test_help_exits_0(self):
        for args in (["--help"], ["request", "--help"]):
            with self.subTest(args=args):
                res = self.cli(args, timeout=10)
                self.assertExit(res, OK)
                self.assertGreater(len(res.stdout.strip()), 0, "--help prints the help on stdout")


class ConfigExitTest(_NoBrokerCase):

    def config_file(self, text):
        d = tempfile.mkdtemp(prefix="scale0-cli-conv-")
        path = os.path.join(d, "broker.toml")
        with open(path, "w") as f:
            f.write(text)

        def rm():
            try:
                os.unlink(path)
                os.rmdir(d)
            except OSError:
                pass
        self.addCleanup(rm)
        return path

    def broker_with_config(self, path):
        return self.cli(["broker", "--config", path] + broker_isolation_flags(), timeout=10)

    def test_broker_missing_config_file_exits_2(self):
        res = self.broker_with_config("/nonexistent/file.toml")
        self.assertExit(res, USAGE)
        self.assertNotIn(b"ready", res.stdout)

    def test_broker_config_syntax_error_exits_2(self):
        path = self.config_file('liveness = 3\nmax-queue = = 5\nfrontend = "tcp://127.0.0.1:1\n')
        res = self.broker_with_config(path)
        self.assertExit(res, USAGE)
        self.assertNotIn(b"ready", res.stdout)

    def test_broker_config_unknown_key_exits_2(self):
        path = self.config_file("liveness = 3\nno-such-key = 1\n")
        res = self.broker_with_config(path)
        self.assertExit(res, USAGE)
        self.assertNotIn(b"ready", res.stdout)

    def test_broker_endpoint_in_use_exits_1(self):
        blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(blocker.close)
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        busy = blocker.getsockname()[1]
        res = self.cli(["broker", "--frontend", ep(busy), "--backend", dead_endpoint(),
                        "--heartbeat", dead_endpoint(), "--metrics-listen", "", "--peer-listen", ""],
                       timeout=10)
        self.assertExit(res, FAILURE, "a run-time failure, not a usage error")
        self.assertNotIn(b"ready", res.stdout)


# ---------------------------------------------------------------------------------------------
# 2. exit status: replies and unreachable brokers
# ---------------------------------------------------------------------------------------------
class ReplyExitTest(CliMixin, Scale0TestCase):

    def echo_broker(self, **kw):
        b = self.start_broker(**kw)
        self.scale0_worker(b, ["echo"], name="conv-echo")
        self.wait_mmi(b, "echo", timeout=15.0)
        return b

    def request(self, b, args, input=None, timeout=15.0):
        return self.cli(["request", "--broker", b.frontend] + list(args), input=input, timeout=timeout)

    def test_request_200_exits_0(self):
        b = self.echo_broker()
        res = self.request(b, ["--timeout", "5000", "echo", "hello"])
        self.assertExit(res, OK)
        self.assertEqual(res.stdout, b"hello", "the body, byte-exact on a pipe")

    def test_request_mmi_unknown_service_exits_4(self):
        b = self.start_broker()
        res = self.request(b, ["--timeout", "5000", "mmi.service", "nosuch"])
        self.assertExit(res, CLIENT_ERROR, "the broker answers 404 for an unknown service")

    def test_request_worker_4xx_reply_exits_4(self):
        b = self.start_broker()
        self.native_worker(b, ["refuses"], mode=lambda j: (404, b"no such thing", []))
        res = self.request(b, ["--timeout", "5000", "refuses", "x"])
        self.assertExit(res, CLIENT_ERROR)
        self.assertEqual(res.stdout, b"", "no body on stdout for an error")

    def test_request_worker_5xx_reply_exits_5(self):
        b = self.start_broker()
        self.native_worker(b, ["fails"], mode=lambda j: (500, b"boom", []))
        res = self.request(b, ["--timeout", "5000", "fails", "x"])
        self.assertExit(res, SERVER_ERROR)

    def test_request_no_worker_503_exits_5(self):
        b = self.start_broker(no_worker_timeout=300)
        res = self.request(b, ["--timeout", "5000", "nobody", "x"])
        self.assertExit(res, SERVER_ERROR)
        self.assertIn(b"503", res.stderr)
        self.assertLess(res.elapsed, 4.0, "503 comes after the 300 ms no-worker timeout, not the deadline")

    def test_request_broker_deadline_504_exits_5(self):
        b = self.start_broker()
        self.native_worker(b, ["hang"], mode="hold", concurrency=4)
        res = self.request(b, ["--timeout", "600", "hang", "x"])
        self.assertExit(res, SERVER_ERROR, "the broker answered (504): a 5xx reply, not 'no broker'")

    def test_request_without_broker_exits_3_and_says_so(self):
        port = free_port()
        res = self.cli(["request", "--broker", ep(port), "--timeout", "500", "echo", "x"], timeout=15)
        self.assertExit(res, NO_BROKER)
        err = res.stderr.decode("utf-8", "replace")
        self.assertIn("no answer from the broker at tcp://127.0.0.1:%d" % port, err)
        self.assertIn("is it running?", err)
        self.assertNotIn("504", err, "nobody answered: the client must not invent a 504")
        self.assertEqual(res.stdout, b"")
        self.assertLess(res.elapsed, 0.5 + 2.0, "gives up about when its --timeout ends")

    def test_status_without_broker_exits_3(self):
        res = self.cli(["status", "--broker", dead_endpoint(), "--timeout", "500"], timeout=15)
        self.assertExit(res, NO_BROKER)


# ---------------------------------------------------------------------------------------------
# 3. request output
# ---------------------------------------------------------------------------------------------
class RequestOutputTest(CliMixin, Scale0TestCase):

    def setUp(self):
        super().setUp()
        self.b = self.start_broker()
        self.scale0_worker(self.b, ["echo"], name="conv-out")
        self.wait_mmi(self.b, "echo", timeout=15.0)

    def test_request_5mb_binary_body_on_pipe_is_byte_exact(self):
        rnd = random.Random(20240501)
        body = bytearray(rnd.randbytes(5_000_000))
        body[0:4] = b"\0\n\0\n"
        body[2_500_000:2_500_003] = b"\n\0\n"
        body[-1] = 0x41  # ends without a newline: an appended one would show
        body = bytes(body)
        res = self.cli(["request", "--broker", self.b.frontend, "--timeout", "20000", "echo"],
                       input=body, timeout=40)
        self.assertExit(res, OK)
        self.assertEqual(len(res.stdout), len(body), "byte count of the reply on a pipe")
        self.assertTrue(res.stdout == body, "the 5,000,000 bytes come back unchanged (first difference at %r)"
                        % (next((i for i, (x, y) in enumerate(zip(res.stdout, body)) if x != y), None),))

    def test_request_body_without_newline_on_pipe_gets_none_added(self):
        res = self.cli(["request", "--broker", self.b.frontend, "--timeout", "5000", "echo", "abc"])
        self.assertExit(res, OK)
        self.assertEqual(res.stdout, b"abc")

    def on_terminal(self, body):
        """Runs `scale0 request echo <body>` with stdout on a pseudo-terminal; returns (rc, bytes
        the terminal received, stderr)."""
        master, slave = pty.openpty()
        self.addCleanup(os.close, master)
        try:
            p = subprocess.Popen([BIN, "request", "--broker", self.b.frontend, "--timeout", "5000", "echo", body],
                                 stdin=subprocess.DEVNULL, stdout=slave, stderr=subprocess.PIPE,
                                 start_new_session=True)
        finally:
            os.close(slave)
        out = b""
        deadline = now() + 15
        try:
            while now() < deadline:
                r, _, _ = select.select([master], [], [], 0.2)
                if r:
                    try:
                        chunk = os.read(master, 65536)
                    except OSError:  # EIO: every slave end is closed (the child exited)
                        break
                    if not chunk:
                        break
                    out += chunk
                elif p.poll() is not None:
                    # exited; anything left is readable at once
                    r, _, _ = select.select([master], [], [], 0.2)
                    if not r:
                        break
            rc = p.wait(timeout=max(0.1, deadline - now()))
            err = p.stderr.read()
        finally:
            if p.poll() is None:
                p.kill()
                p.wait(5)
            p.stderr.close()
        return rc, out, err

    def test_request_body_without_newline_on_terminal_gets_one(self):
        rc, out, err = self.on_terminal("hello")
        self.assertEqual(rc, OK, err)
        self.assertIn(out, (b"hello\n", b"hello\r\n"), "one newline added on a terminal")

    def test_request_body_ending_in_newline_on_terminal_gets_no_second(self):
        rc, out, err = self.on_terminal("hello\n")
        self.assertEqual(rc, OK, err)
        self.assertIn(out, (b"hello\n", b"hello\r\n"), "a body that ends in a newline is printed as is")


# ---------------------------------------------------------------------------------------------
# 4. request --count
# ---------------------------------------------------------------------------------------------
class RequestCountTest(CliMixin, Scale0TestCase):

    def test_request_count_prints_n_bodies_byte_exact_exit_0(self):
        b = self.start_broker()
        w = self.native_worker(b, ["cnt"], mode="echo")
        body = b"a\0b\nc"
        res = self.cli(["request", "--broker", b.frontend, "--timeout", "5000", "--count", "3", "cnt"],
                       input=body)
        self.assertExit(res, OK)
        self.assertEqual(res.stdout, body * 3, "the three bodies one after another, nothing between")
        self.assertEqual(len(w.jobs), 3, "three requests reached the worker: %r" % (w.jobs,))

    def test_request_count_stops_at_first_failure_with_its_code(self):
        b = self.start_broker()
        seen = []

        def first_ok_then_fail(job):
            seen.append(job)
            return (200, b"ok", job.body) if len(seen) == 1 else (500, b"second one fails", [])

        w = self.native_worker(b, ["flaky"], mode=first_ok_then_fail)
        res = self.cli(["request", "--broker", b.frontend, "--timeout", "5000", "--count", "4", "flaky", "x"])
        self.assertExit(res, SERVER_ERROR)
        time.sleep(0.3)  # a third request, if wrongly sent, has time to arrive
        self.assertEqual(len(w.jobs), 2, "stops at the failing (second) request: %r" % (w.jobs,))

    def test_request_count_no_worker_exits_5_after_one_attempt(self):
        b = self.start_broker(no_worker_timeout=300)
        res = self.cli(["request", "--broker", b.frontend, "--timeout", "5000", "--count", "3", "nobody", "x"])
        self.assertExit(res, SERVER_ERROR)

        def count_503():
            total = 0.0
            for series, value in scrape(b).items():
                if (series.startswith("scale0_requests_total{") and 'service="nobody"' in series
                        and 'code="503"' in series):
                    total += value
            return total

        wait_until("the broker's 503 counted in /metrics", count_503, 5.0)
        time.sleep(0.5)  # a second attempt, if wrongly sent, would be counted by now
        self.assertEqual(count_503(), 1, "one attempt only, then stop")


# ---------------------------------------------------------------------------------------------
# 5. durations with units
# ---------------------------------------------------------------------------------------------
class DurationUnitsTest(CliMixin, Scale0TestCase):

    def test_request_timeout_accepts_bare_ms_and_ms_s_m_suffixes(self):
        b = self.start_broker()
        self.scale0_worker(b, ["echo"], name="conv-units")
        self.wait_mmi(b, "echo", timeout=15.0)
        for value in ("500ms", "2s", "1m", "250"):
            with self.subTest(timeout=value):
                res = self.cli(["request", "--broker", b.frontend, "--timeout", value, "echo", "u"])
                self.assertExit(res, OK, "--timeout %s" % value)
                self.assertEqual(res.stdout, b"u")

    def test_unknown_duration_unit_exits_2(self):
        cases = {
            "request --timeout": ["request", "--broker", dead_endpoint(), "--timeout", "5parsecs", "echo", "x"],
            "status --timeout": ["status", "--broker", dead_endpoint(), "--timeout", "5parsecs"],
            "broker --heartbeat-interval": ["broker"] + broker_isolation_flags()
            + ["--heartbeat-interval", "5parsecs"],
            "worker --heartbeat-interval": ["worker", "--service", "x", "--echo", "--broker", dead_endpoint(),
                                            "--heartbeat-interval", "5parsecs"],
        }
        for name, args in cases.items():
            with self.subTest(option=name):
                self.assertExit(self.cli(args, timeout=8), USAGE, name)

    def test_broker_heartbeat_interval_in_seconds_is_1000_ms(self):
        b = self.start_broker(heartbeat_interval="1s")
        self.assertAlive(b)

        def logged():
            return re.search(r'heartbeat_interval_ms"?\s*[=:]\s*"?(\d+)', b.stderr_text())

        m, _ = wait_until("the broker's start log with heartbeat_interval_ms", logged, 5.0)
        self.assertEqual(m.group(1), "1000", "start log: %s" % b.stderr_text()[-1500:])
        w = self.native_worker(b, ["hb1s"])  # asks for no interval of its own: gets the broker's
        self.assertEqual(w.welcome.heartbeat_ms, 1000, "WELCOME grants the broker's interval")

    def test_broker_no_worker_timeout_accepts_ms_suffix(self):
        b = self.start_broker(no_worker_timeout="300ms")
        res = self.cli(["request", "--broker", b.frontend, "--timeout", "5000", "nobody", "x"])
        self.assertExit(res, SERVER_ERROR)
        self.assertIn(b"503", res.stderr)
        self.assertLess(res.elapsed, 4.0, "the no-worker timeout is 300 ms")

    def test_worker_heartbeat_interval_in_seconds_is_accepted(self):
        b = self.start_broker()
        w = self.scale0_worker(b, ["hb2s"], name="conv-hb2s", extra=["--heartbeat-interval", "2s"])
        self.wait_mmi(b, "hb2s", timeout=15.0)
        self.assertTrue(w.alive(), "worker exited: %s" % w.proc.stderr_text()[-1500:])
        res = self.cli(["request", "--broker", b.frontend, "--timeout", "5000", "hb2s", "ping"])
        self.assertExit(res, OK)
        self.assertEqual(res.stdout, b"ping")
        # The broker grants what the worker asked (its own interval is 200 ms): 2 s read as 2000 ms.
        st = self.status_json(b)
        workers = st.get("workers") if isinstance(st.get("workers"), list) else []
        intervals = [w_.get("heartbeat_interval_ms") for w_ in workers
                     if isinstance(w_, dict) and "hb2s" in (w_.get("services") or [])]
        self.assertEqual(intervals, [2000], "the worker's interval in scale0.status: %r" % (workers,))

    def test_status_timeout_in_seconds_exits_0(self):
        b = self.start_broker()
        res = self.cli(["status", "--broker", b.frontend, "--timeout", "1s"])
        self.assertExit(res, OK)
        self.assertGreater(len(res.stdout.strip()), 0, "status prints the broker's state")


if __name__ == "__main__":
    unittest.main()


class ConfigDurationTest(Scale0TestCase):
    """The gateway's TOML file takes durations as the flags do ("2s", "500ms"), and refuses a
    string that is not one with exit status 2."""

    def write(self, text):
        with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
            f.write(text)
        self.addCleanup(os.unlink, f.name)
        return f.name

    def test_gateway_file_durations(self):
        good = self.write('listen = "127.0.0.1:0"\nbroker = "tcp://127.0.0.1:1"\nmetrics-listen = ""\n'
                          'timeout = "2s"\nheader-timeout = "500ms"\nidle-timeout = 30000\n')
        p = Proc([BIN, "gateway", "--config", good], capture_stdout=True)
        self.addCleanup(p.cleanup)
        line = first_line(p)
        self.assertTrue(line.startswith(b"ready listen="), (line, p.stderr_text()))
        for bad, what in (('timeout = "5 parsecs"\n', b"not a duration"),
                          ('timeout = true\n', b"expected milliseconds or a duration"),
                          ('max-body = "5s"\n', b"expected an integer")):
            with self.subTest(bad):
                path = self.write('listen = "127.0.0.1:0"\n' + bad)
                r = run_cli(["gateway", "--config", path], timeout=20)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertIn(what, r.stderr)
