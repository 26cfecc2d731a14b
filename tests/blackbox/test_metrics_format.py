# SPDX-License-Identifier: Apache-2.0
"""/metrics of the broker and the gateway as Prometheus tooling reads them (docs/operations.md,
"Metrics"): `promtool check metrics` (Debian's prometheus package) finds no problem in either, with
traffic, errors, a family peer and awkward service names in the labels; the naming scheme holds
(a scale0_ prefix, counters end in _total, units in base units, no family written twice, the same
name for the same thing in broker and gateway); scale0_build_info carries what `scale0 --version`
says; the standard process_* families describe the process that serves them.

Every wait is bounded."""

import re
import shutil
import subprocess
import time
import unittest

from harness import http_call, run_cli, Scale0TestCase, wait_until
from test_operations import http_get

PROMTOOL = shutil.which("promtool")
WEB = "web.test"
# Service names reach label values as they are (the decoder admits printable UTF-8 only): quotes,
# backslashes and non-ASCII must come out escaped and readable.
ODD = 'odd "quoted" back\\slash caf\u00e9'


def families(text):
    """{name: type} from the # TYPE lines, and the list of names in the order written."""
    order = re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M)
    return dict(order), [n for n, _ in order]


def sample(text, name, **labels):
    """The value of the sample `name` whose labels include `labels` (None when there is none)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, _, value = line.rpartition(" ")
        if all('%s="%s"' % (k, v) in head for k, v in labels.items()):
            return float(value)
    return None


class MetricsFormatTest(Scale0TestCase):

    def promtool(self, text, what):
        if PROMTOOL is None:
            self.skipTest("promtool not installed (Debian package prometheus; scripts/setup.sh)")
        p = subprocess.run([PROMTOOL, "check", "metrics"], input=text.encode(), capture_output=True,
                           timeout=30)
        problems = (p.stdout + p.stderr).decode(errors="replace").strip()
        self.assertEqual((p.returncode, problems), (0, ""),
                         "promtool check metrics on %s:\n%s" % (what, problems))

    def check_conventions(self, text, what):
        types, order = families(text)
        self.assertEqual(len(order), len(set(order)),
                         "%s: a family written twice: %r" % (what, [n for n in order if order.count(n) > 1]))
        for name, kind in types.items():
            with self.subTest(what=what, family=name):
                self.assertTrue(name.startswith("scale0_") or name.startswith("process_"), name)
                self.assertEqual(kind == "counter", name.endswith("_total"),
                                 "a counter's name ends in _total, and only a counter's")
                self.assertNotRegex(name, r"_(ms|milliseconds|us|kb|mb|kilobytes|megabytes|inflight)(_|$)",
                                    "base units (seconds, bytes) and one spelling of in_flight")
                self.assertRegex(text, r"(?m)^# HELP %s \S" % re.escape(name), "a HELP text")
        # Every sample belongs to a family with a TYPE line.
        for line in text.splitlines():
            if line and not line.startswith("#"):
                base = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0)
                fam = re.sub(r"_(bucket|sum|count)$", "", base) if base not in types else base
                self.assertIn(fam, types, "%s: sample without a family: %r" % (what, line))
        return types

    def check_process_and_build(self, text, what):
        version = run_cli(["--version"]).stdout.decode().strip()
        m = re.fullmatch(r"scale0 (\S+) \(commit (\S+)\)", version)
        self.assertIsNotNone(m, version)
        self.assertEqual(sample(text, "scale0_build_info", version=m.group(1), commit=m.group(2)), 1,
                         "%s: scale0_build_info{version,commit} 1, as --version says" % what)
        self.assertGreater(sample(text, "process_cpu_seconds_total"), 0)
        self.assertGreater(sample(text, "process_resident_memory_bytes"), 1 << 20)
        self.assertGreaterEqual(sample(text, "process_virtual_memory_bytes"),
                                sample(text, "process_resident_memory_bytes"))
        fds = sample(text, "process_open_fds")
        self.assertGreaterEqual(fds, 5, "sockets, the listener, stdio")
        self.assertGreaterEqual(sample(text, "process_max_fds"), fds)
        started = sample(text, "process_start_time_seconds")
        self.assertLess(abs(time.time() - started), 120, "started just now: %r" % started)

    def test_broker_metrics_pass_promtool(self):
        peer = self.start_broker()
        b = self.start_broker(no_worker_timeout=300, extra=["--peer", peer.peer])
        self.native_worker(b, ["echo", ODD])
        c = self.client(b)
        for service in ("echo", ODD):
            for i in range(5):
                r = c.request(service, b"m%d" % i, timeout_ms=5000, wait=5.0)
                self.assertEqual(r.status, 200, r)
        self.assertEqual(c.request("nobody", b"x", timeout_ms=5000, wait=5.0).status, 503)
        self.assertEqual(c.request("scale0.nothing", b"x", timeout_ms=5000, wait=5.0).status, 501)
        raw = self.raw(b.frontend)
        raw.send([b"not a protocol header"])
        wait_until("the family linked", lambda: sample(http_get(b.metrics, "/metrics")[2],
                                                       "scale0_family_peers", state="alive") == 1, 10.0)
        status, headers, text = http_get(b.metrics, "/metrics")
        self.assertEqual(status, 200)
        self.assertIn("version=0.0.4", headers.get("content-type", ""))
        self.promtool(text, "the broker")
        types = self.check_conventions(text, "the broker")
        self.check_process_and_build(text, "the broker")
        # The odd name is one label value, escaped as the format says.
        self.assertEqual(sample(text, "scale0_requests_total", code="200",
                                service='odd \\"quoted\\" back\\\\slash caf\u00e9'), 5)
        self.assertEqual(sample(text, "scale0_requests_total", service="echo", code="200"), 5)
        self.assertEqual(types.get("scale0_requests_in_flight"), "gauge")
        # A request that waited for a worker of its service and got none is that service's 503; an
        # unknown management service is refused before any service is involved: counted once each.
        self.assertEqual(sample(text, "scale0_requests_total", service="nobody", code="503"), 1)
        self.assertEqual(sample(text, "scale0_requests_refused_total", code="501"), 1)
        self.assertIsNone(sample(text, "scale0_requests_total", service="scale0.nothing"))
        # In seconds, the base unit: the default max-heartbeat-interval of 60 s (60000 when it was
        # in milliseconds); the longest interval granted is the harness broker's 200 ms.
        self.assertEqual(sample(text, "scale0_budget_limit", budget="heartbeat_interval_seconds"), 60)
        self.assertEqual(sample(text, "scale0_budget_used", budget="heartbeat_interval_seconds"), 0.2)
        for gone in ("scale0_in_flight", "scale0_uptime_seconds", "scale0_worker_expired_total",
                     "scale0_errors_total"):
            self.assertNotIn(gone, types, "renamed or replaced (docs/operations.md, Metrics)")

    def test_gateway_metrics_pass_promtool_and_share_names_with_the_broker(self):
        b = self.start_broker(no_worker_timeout=300)
        self.http_worker(b, [WEB])
        g = self.start_gateway(b)
        for i in range(3):
            r = http_call(g.listen, "GET", "/hello/%d" % i, host=WEB)
            self.assertEqual(r.status, 200, r)
        self.assertEqual(http_call(g.listen, "GET", "/", host="nobody.test").status, 503)
        status, headers, text = http_get(g.metrics, "/metrics")
        self.assertEqual(status, 200)
        self.promtool(text, "the gateway")
        gateway = self.check_conventions(text, "the gateway")
        self.check_process_and_build(text, "the gateway")
        broker = families(http_get(b.metrics, "/metrics")[2])[0]
        # The same thing has the same name (after the subsystem) and type in both.
        for suffix in ("requests_total", "request_duration_seconds", "requests_in_flight"):
            self.assertEqual(gateway.get("scale0_gateway_" + suffix), broker.get("scale0_" + suffix),
                             suffix)
            self.assertIsNotNone(gateway.get("scale0_gateway_" + suffix), suffix)
        self.assertEqual(sample(text, "scale0_gateway_requests_total", code="200"), 3)


if __name__ == "__main__":
    unittest.main()
