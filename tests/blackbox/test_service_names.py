# SPDX-License-Identifier: Apache-2.0
"""Service names are printable UTF-8 without control characters, 1-255 bytes (docs/protocol.md,
framing rules). Anything else is refused at the protocol level in every framing (400 to clients,
DISCONNECT to workers), so it never becomes a service; and whatever a peer sent that is logged is
escaped (docs/operations.md): /metrics stays valid exposition text, one log event stays one line,
the status JSON stays JSON and the status table holds no control characters.

The /metrics check is a strict little parser of the text exposition format written here rather
than python3-prometheus-client's: that parser is lenient (it accepts some malformed escapes and
does not insist on UTF-8), it would add a package to scripts/setup.sh, and the grammar needed is
a few lines."""

import json
import os
import re
import unittest
import urllib.request

from harness import (C_HDR, MDPC, MDPW, W_HDR, W_READY, Scale0TestCase, parse_client_reply,
                     parse_disconnect, run_cli, u8, u32, u64)

BAD_NAMES = [
    (b"bad\xff", "invalid UTF-8"),
    (b"a\nb", "newline"),
    (b"a\x1bb", "escape character"),
    (b"", "empty"),
    (b"s" * 256, "256 bytes"),
    (b"a\r\n2024-01-01 00:00:00.000 info  worker joined worker=forged", "forged log line"),
    (b"\xc0\xaf", "overlong"),
    (b"\xed\xa0\x80", "surrogate"),
    (b"a\xc2\x85b", "C1 next-line"),
    (b"a\x7f", "DEL"),
]
GOOD_NAME = "caf\u00e9-\u20ac-\U0001F600".encode("utf-8")

# The text exposition format (Prometheus 0.0.4): name{label="value",...} value [timestamp]
METRIC_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL_VALUE = r'"(?:[^"\\\n]|\\[\\"n])*"'
LABELS = r"\{(?:[a-zA-Z_][a-zA-Z0-9_]*=%s(?:,[a-zA-Z_][a-zA-Z0-9_]*=%s)*,?)?\}" % (LABEL_VALUE, LABEL_VALUE)
NUMBER = r"(?:[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|[-+]?Inf|NaN)"
SAMPLE_RE = re.compile(r"^%s(?:%s)? %s(?: -?[0-9]+)?$" % (METRIC_NAME, LABELS, NUMBER))
COMMENT_RE = re.compile(r"^# (?:HELP %s .*|TYPE %s (?:counter|gauge|histogram|summary|untyped))$"
                        % (METRIC_NAME, METRIC_NAME))
TEXT_LOG_RE = re.compile(rb"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} ")


def exposition_problems(raw):
    """Lines of /metrics text that do not parse; [] when all do."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return ["not UTF-8: %s" % e]
    if not text.endswith("\n"):
        return ["does not end with a newline"]
    bad = []
    for line in text[:-1].split("\n"):
        if line.startswith("#"):
            if line.startswith(("# HELP", "# TYPE")) and not COMMENT_RE.match(line):
                bad.append(line)
        elif not SAMPLE_RE.match(line):
            bad.append(line)
    return bad


def v2_request(name, rid):
    return [b"", b"S0C2" + b"\x01" + u64(rid) + u32(0) + u8(len(name) & 0xFF) + name[:255], b"body"]


def v2_ready(name):
    return [b"", b"S0W2" + b"\x01" + u32(1) + u32(0) + u8(0) + u8(len(name) & 0xFF) + name[:255]]


class ServiceNameTest(Scale0TestCase):

    def send_bad_names(self, b):
        """Every bad name, as a request (S0/1, S0/2, MDP) and as a READY (S0/1, S0/2, MDP)."""
        client = self.raw(b.frontend)
        for rid, (name, what) in enumerate(BAD_NAMES, start=1):
            with self.subTest("S0/1 request", name=what):
                client.send([b"", C_HDR, b"\x01", u64(rid), name, u32(0), b"body"])
                r = parse_client_reply(client.recv(5.0))
                self.assertEqual((r.status, r.message, r.rid), (400, b"invalid service name", rid))
            if len(name) <= 255:  # str8 cannot carry 256 bytes
                with self.subTest("S0/2 request", name=what):
                    client.send(v2_request(name, rid))
                    m = client.recv(5.0)
                    self.assertIsNotNone(m, "no reply to an S0/2 request for %r" % name)
                    self.assertTrue(m[1].startswith(b"S0C2\x02" + u64(rid) + b"\x01\x90"), m)
            with self.subTest("MDP request", name=what):
                mdp = self.raw(b.frontend)
                mdp.send([b"", MDPC, name, b"body"])
                self.assertEqual(mdp.recv(5.0), [b"", MDPC, name, b"400", b"invalid service name"])
        for name, what in BAD_NAMES:
            with self.subTest("S0/1 READY", name=what):
                w = self.raw(b.backend)
                w.send([b"", W_HDR, u8(W_READY), u32(1), u32(0), u8(0), name])
                self.assertEqual(parse_disconnect(w.recv(5.0)), (400, b"invalid service name"))
            if len(name) <= 255:
                with self.subTest("S0/2 READY", name=what):
                    w = self.raw(b.backend)
                    w.send(v2_ready(name))
                    m = w.recv(5.0)
                    self.assertIsNotNone(m, "no answer to an S0/2 READY for %r" % name)
                    self.assertEqual(m[1][:7], b"S0W2\x05\x01\x90", m)
            with self.subTest("MDP READY", name=what):
                w = self.raw(b.backend)
                w.send([b"", MDPW, b"\x01", name])
                self.assertEqual(w.recv(5.0), [b"", MDPW, b"\x05"])

    def assert_nothing_registered(self, b):
        names = [s["name"] for s in self.status_json(b)["services"]]
        for name, what in BAD_NAMES:
            self.assertNotIn(name.decode("utf-8", "replace"), names, what)

    def scrape(self, b):
        with urllib.request.urlopen("http://%s/metrics" % b.metrics, timeout=5) as r:
            return r.read()

    def broker_log(self, b):
        with open(b.proc.errfile.name, "rb") as f:
            return f.read()

    def test_invalid_names_are_refused_and_nothing_reaches_logs_or_metrics_raw(self):
        b = self.start_broker(no_worker_timeout=300)
        self.send_bad_names(b)
        self.assert_nothing_registered(b)
        # A valid multi-byte name works end to end, and shows in the metrics as itself.
        self.native_worker(b, [GOOD_NAME.decode("utf-8")], mode="echo")
        r = self.client(b).request(GOOD_NAME.decode("utf-8"), [b"hi"], timeout_ms=5000)
        self.assertEqual((r.status, r.body), (200, [b"hi"]))

        metrics = self.scrape(b)
        self.assertEqual(exposition_problems(metrics), [])
        self.assertIn(b'scale0_workers{service="' + GOOD_NAME + b'"} 1', metrics)

        log = self.broker_log(b)
        lines = log.split(b"\n")
        self.assertEqual(lines[-1], b"", "the log ends with a newline")
        for line in lines[:-1]:
            self.assertRegex(line, TEXT_LOG_RE, "a line that is not one event: %r" % line)
            self.assertNotRegex(line, rb"[\x00-\x1f\x7f]", "raw control character: %r" % line)
            line.decode("utf-8")  # raises on a byte that is not UTF-8
        self.assertNotIn(b"worker=forged", log.replace(b"\\x0a2024", b""))
        self.assertIn(b"invalid service name", log)

        # The status JSON parses; the table shows no control characters.
        self.status_json(b)
        out = run_cli(["status", "--broker", b.frontend])
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertNotRegex(out.stdout, rb"[\x00-\x09\x0b-\x1f\x7f]", out.stdout)
        out = run_cli(["status", "--broker", b.frontend, "--json"])
        self.assertEqual(out.returncode, 0, out.stderr)
        json.loads(out.stdout.decode("utf-8"))

    def test_json_log_stays_json(self):
        b = self.start_broker(extra=["--log-format", "json"])
        self.send_bad_names(b)
        lines = self.broker_log(b).split(b"\n")
        self.assertEqual(lines[-1], b"")
        for line in lines[:-1]:
            event = json.loads(line.decode("utf-8"))  # strict: one object per line, UTF-8
            self.assertIsInstance(event, dict)
        self.assertTrue(any(b"bad\\\\xff" in l for l in lines), "the name is escaped as in the text log")
        self.assertEqual(exposition_problems(self.scrape(b)), [])


class ExpositionCheckerTest(unittest.TestCase):
    """The checker itself rejects what promtool rejects."""

    def test_checker(self):
        self.assertEqual(exposition_problems(b'# HELP a b\n# TYPE a gauge\na{s="x\\"y\\\\z\\n"} 1\nb 2.5e3\n'), [])
        for bad in (b'a{s="bad\xff"} 1\n', b'a{s="a\nb"} 1\n', b'a{s="x\\q"} 1\n', b'a{s="x"} one\n'):
            self.assertNotEqual(exposition_problems(bad), [], bad)


if __name__ == "__main__":
    unittest.main()
