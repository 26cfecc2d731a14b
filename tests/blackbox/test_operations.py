# SPDX-License-Identifier: Apache-2.0
"""The operator's view of `scale0 broker` and `scale0 status`: the TOML configuration file
(--config, --print-config, errors that name file, line and key), SIGHUP reload, graceful drain on
SIGTERM/SIGINT, the HTTP /metrics /healthz /readyz endpoints (Prometheus text), `scale0 status`
(JSON schema, tables, --watch, health check), and the logs on stderr (JSON lines, levels, worker
and service events, rate limiting of a flood of malformed messages).

Written from `scale0 broker --help`, `scale0 status --help` and the behaviour the operator is told
about; every wait is bounded and every process is killed in cleanup.
"""

import http.client
import json
import math
import os
import re
import select
import shutil
import signal
import socket
import tempfile
import time
import tomllib
import unittest

from harness import (BIN, Broker, Proc, Scale0TestCase, ep, free_port, now, run_cli)


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------
def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)  # a valid TOML basic string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise TypeError(v)


def toml_lines(settings):
    return ["%s = %s" % (k, toml_value(v)) for k, v in settings.items()]


def distinct_ports(n):
    for _ in range(20):
        ports = [free_port() for _ in range(n)]
        if len(set(ports)) == n:
            return ports
    raise AssertionError("could not find %d distinct free ports" % n)


def port_is_free(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def wait_for(cond, timeout, step=0.05):
    """Polls cond() until it returns something truthy (returned) or timeout (returns None)."""
    deadline = now() + timeout
    for _ in range(int(timeout / step) + 2):
        v = cond()
        if v:
            return v
        if now() >= deadline:
            break
        time.sleep(step)
    return None


def http_get(hostport, path, timeout=5.0):
    """(status, {header: value} lowercase, body text) on a fresh connection."""
    host, port = hostport.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        body = r.read().decode("utf-8", "replace")
        return r.status, {k.lower(): v for k, v in r.getheaders()}, body
    finally:
        conn.close()


class ConfigBroker(Broker):
    """A broker configured by a TOML file (plus `extra` flags) instead of the harness's flags."""

    def __init__(self, config_path, ports, extra=()):
        super().__init__(heartbeat_interval=None, liveness=None, extra=extra, ports=tuple(ports))
        self.config_path = config_path

    def args(self):
        return [BIN, "broker", "--config", self.config_path] + self.peer_args() + self.extra


def run_until_ready_or_exit(args, timeout=10.0):
    """Runs `args`; returns (rc, stdout, stderr, ready_line). A process that prints a ready line
    is killed at once (rc None); one still running at the timeout too."""
    p = Proc(args, capture_stdout=True)
    try:
        fd = p.p.stdout.fileno()
        buf = b""
        ready = None
        deadline = now() + timeout
        while now() < deadline:
            r, _, _ = select.select([fd], [], [], 0.05)
            if r:
                chunk = os.read(fd, 4096)
                if not chunk:
                    break
                buf += chunk
                m = re.search(rb"^ready .*$", buf, re.M)
                if m:
                    ready = m.group(0).decode("utf-8", "replace")
                    break
            elif p.poll() is not None:
                break
        rc = p.wait(2.0) if ready is None else None
        if rc is None:
            p.kill()
        return rc, buf.decode("utf-8", "replace"), p.stderr_text(), ready
    finally:
        p.cleanup()


# --- Prometheus text format --------------------------------------------------------------------
SAMPLE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?[ \t]+(\S+)(?:[ \t]+-?\d+)?$")
LABEL_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\.)*)"\s*(,|$)')
PROM_TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


class PromDoc:
    def __init__(self, families, samples):
        self.families = families  # name -> {"help": str, "type": str}
        self.samples = samples  # [(name, {label: value}, float)]

    def find(self, name, **labels):
        return [(l, v) for n, l, v in self.samples
                if n == name and all(l.get(k) == str(x) for k, x in labels.items())]

    def value(self, name, **labels):
        """The value of the one sample matching; None if there is none."""
        found = self.find(name, **labels)
        if not found:
            return None
        if len(found) > 1:
            raise AssertionError("several samples of %s match %r: %r" % (name, labels, found))
        return found[0][1]


def parse_prometheus(text):
    """Parses and validates the text exposition format; raises AssertionError naming the line."""
    families = {}
    samples = []
    seen_sample_of = set()
    for no, line in enumerate(text.split("\n"), 1):
        if line == "":
            continue
        if line.startswith("#"):
            m = re.match(r"^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) ?(.*)$", line)
            if not m:
                continue  # a plain comment
            kind, name, rest = m.groups()
            f = families.setdefault(name, {})
            key = kind.lower()
            if key in f:
                raise AssertionError("line %d: second # %s for %s" % (no, kind, name))
            if name in seen_sample_of:
                raise AssertionError("line %d: # %s for %s after its samples" % (no, kind, name))
            if kind == "TYPE" and rest not in PROM_TYPES:
                raise AssertionError("line %d: unknown type %r" % (no, rest))
            f[key] = rest
            continue
        m = SAMPLE_RE.match(line)
        if not m:
            raise AssertionError("line %d is not a sample: %r" % (no, line))
        name, label_text, value_text = m.groups()
        labels = {}
        if label_text:
            pos = 0
            while pos < len(label_text):
                lm = LABEL_RE.match(label_text, pos)
                if not lm or lm.end() == pos:
                    raise AssertionError("line %d: bad labels %r" % (no, label_text))
                if lm.group(1) in labels:
                    raise AssertionError("line %d: label %s twice" % (no, lm.group(1)))
                labels[lm.group(1)] = lm.group(2)
                pos = lm.end()
        try:
            value = float(value_text)
        except ValueError:
            raise AssertionError("line %d: value %r is not a number" % (no, value_text))
        family = name
        if name not in families:
            for suffix in ("_bucket", "_sum", "_count"):
                base = name[:-len(suffix)]
                if name.endswith(suffix) and families.get(base, {}).get("type") in ("histogram", "summary"):
                    family = base
                    break
        if family not in families or "type" not in families[family]:
            raise AssertionError("line %d: sample %s has no # TYPE before it" % (no, name))
        seen_sample_of.add(family)
        samples.append((name, labels, value))
    for name, f in families.items():
        if "help" not in f or "type" not in f:
            raise AssertionError("family %s lacks # HELP or # TYPE: %r" % (name, f))
    return PromDoc(families, samples)


# --- JSON schema --------------------------------------------------------------------------------
def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# ---------------------------------------------------------------------------------------------
# Base class
# ---------------------------------------------------------------------------------------------
class OpsTestCase(Scale0TestCase):

    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="scale0-ops-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    # --- configuration files ---
    def write_file(self, name, text):
        """Writes atomically (a reloading broker never sees half a file); returns the path."""
        path = os.path.join(self.tmp, name)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)
        return path

    def write_config(self, name, settings):
        return self.write_file(name, "# written by test_operations.py\n" + "\n".join(toml_lines(settings)) + "\n")

    @staticmethod
    def base_settings(ports, **more):
        s = {"frontend": ep(ports[0]), "backend": ep(ports[1]), "heartbeat": ep(ports[2]),
             "metrics-listen": "127.0.0.1:0", "heartbeat-interval": 200, "liveness": 3}
        s.update({k.replace("_", "-"): v for k, v in more.items()})
        return s

    def start_config_broker(self, path, ports, extra=()):
        b = ConfigBroker(path, ports, extra)
        self.addCleanup(self._cleanup_broker, b)
        b.start()
        self._brokers.append(b)
        return b

    # --- logs ---
    @staticmethod
    def log_text(b):
        try:
            with open(b.proc.errfile.name, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_json(self, b, strict=False):
        """Every complete stderr line parsed as JSON. strict: fail on a line that is not an object."""
        out = []
        text = self.log_text(b)
        lines = text.split("\n")
        if not text.endswith("\n"):
            lines = lines[:-1]  # the last line may still be being written
        for line in lines:
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                obj = None
            if not isinstance(obj, dict):
                if strict:
                    self.fail("stderr line is not a JSON object: %r" % line)
                continue
            out.append(obj)
        return out

    def wait_log(self, b, pred, timeout=5.0, start=0, what="log line"):
        """The first JSON log line (from index start) satisfying pred, within timeout."""
        found = wait_for(lambda: next((o for o in self.log_json(b)[start:] if pred(o)), None), timeout)
        if found is None:
            self.fail("no %s within %.1fs; log tail:\n%s" % (what, timeout, self.log_text(b)[-3000:]))
        return found

    # --- metrics ---
    def prom(self, b):
        status, headers, body = http_get(b.metrics, "/metrics")
        self.assertEqual(status, 200, body)
        return parse_prometheus(body)


# ---------------------------------------------------------------------------------------------
# 1. Configuration file
# ---------------------------------------------------------------------------------------------
def documented_options():
    """[(name, type, default or None)] of `scale0 broker --help`, config keys only."""
    res = run_cli(["broker", "--help"], timeout=15)
    text = res.stdout.decode()
    text = text[text.index("Options:"):]
    text = text[:text.index("\n\n")]  # the options, not the examples after them
    opts = []
    for m in re.finditer(r"^\s+--([a-z][a-z-]*)(?: (TEXT|INT|BOOLEAN)[^\s=]*(?: \.\.\.)?(?:=(\S*))?)?", text, re.M):
        name, kind, default = m.groups()
        if name in ("help", "config", "print-config"):
            continue
        if default is not None and kind == "INT":
            default = int(default)
        if kind == "BOOLEAN":  # --rebalance-workers true|false: a boolean key with its default
            kind, default = "FLAG", default in ("1", "true")
        if kind is None:  # a flag (--insecure): a boolean key, false unless given
            kind, default = "FLAG", False
        opts.append((name, kind, default))
    return opts


class ConfigFileTest(OpsTestCase):

    def test_print_config_is_toml_with_every_flag_and_its_default(self):
        opts = documented_options()
        self.assertGreaterEqual(len(opts), 15, opts)
        res = run_cli(["broker", "--print-config"], timeout=15)
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertNotIn(b"ready", res.stdout)
        doc = tomllib.loads(res.stdout.decode())
        self.assertEqual(list(doc.keys()), [o[0] for o in opts],
                         "the keys are the flag names without --, in the documented order")
        for name, kind, default in opts:
            with self.subTest(key=name):
                if default is not None:
                    self.assertEqual(doc[name], default, "--print-config vs --help default")
                self.assertIsInstance(doc[name], {"INT": int, "TEXT": (str, list), "FLAG": bool}[kind])
        self.assertEqual(doc["idempotent"], [])

    def test_file_then_flags_in_print_config_and_round_trip(self):
        path = self.write_config("c.toml", {"max-queue": 5, "liveness": 7, "log-level": "debug",
                                            "idempotent": ["a", "b"], "frontend": "tcp://127.0.0.1:7001",
                                            "drain-timeout": 1234})
        res = run_cli(["broker", "--config", path, "--liveness", "9", "--idempotent", "c,d", "--print-config"])
        self.assertEqual(res.returncode, 0, res.stderr)
        doc = tomllib.loads(res.stdout.decode())
        defaults = tomllib.loads(run_cli(["broker", "--print-config"]).stdout.decode())
        expected = dict(defaults)
        expected.update({"max-queue": 5, "liveness": 9, "log-level": "debug", "idempotent": ["c", "d"],
                         "frontend": "tcp://127.0.0.1:7001", "drain-timeout": 1234})
        self.assertEqual(doc, expected, "file over defaults, flags over the file")
        # what --print-config prints is a configuration file giving the same configuration
        path2 = self.write_file("printed.toml", res.stdout.decode())
        res2 = run_cli(["broker", "--config", path2, "--print-config"])
        self.assertEqual(res2.returncode, 0, res2.stderr)
        self.assertEqual(res2.stdout, res.stdout)
        # no file needed: flags alone
        res3 = run_cli(["broker", "--max-queue", "42", "--print-config"])
        self.assertEqual(res3.returncode, 0, res3.stderr)
        self.assertEqual(tomllib.loads(res3.stdout.decode())["max-queue"], 42)

    def test_running_broker_takes_its_settings_from_the_file(self):
        ports = distinct_ports(3)
        path = self.write_config("run.toml", self.base_settings(ports, heartbeat_interval=250, liveness=4,
                                                                max_queue=1))
        b = self.start_config_broker(path, ports, extra=["--liveness", "5"])
        self.assertEqual(b.ready_endpoints, (ep(ports[0]), ep(ports[1]), ep(ports[2])))
        m = re.search(r" metrics=127\.0\.0\.1:(\d+)$", b.ready_line)
        self.assertIsNotNone(m, "metrics-listen 127.0.0.1:0: the ready line ends with metrics=: %r" % b.ready_line)
        self.assertGreater(int(m.group(1)), 0)
        self.assertEqual(http_get(b.metrics, "/healthz")[0], 200)
        w = self.native_worker(b, ["cfg"], mode="hold")
        self.assertEqual(w.welcome.heartbeat_ms, 250, "heartbeat-interval from the file")
        self.assertEqual(w.welcome.liveness, 5, "--liveness overrides the file")
        c = self.client(b)
        r1 = c.send_request("cfg", b"1", timeout_ms=10000)
        self.assertIsNotNone(w.next_job(5.0))
        r2 = c.send_request("cfg", b"2", timeout_ms=10000)
        r3 = c.send_request("cfg", b"3", timeout_ms=10000)
        rep3 = c.get_reply(r3, 3.0)
        self.assertIsNotNone(rep3, "max-queue = 1 from the file: the second queued request is refused")
        self.assertEqual(rep3.status, 503, rep3)
        self.assertIsNone(c.get_reply(r2, 0.2), "the first queued request waits")
        self.assertIsNone(c.get_reply(r1, 0.01))

    def test_bad_config_is_reported_with_file_line_key_and_binds_nothing(self):
        # (case, bad line, key the message must name, key required?)
        cases = [
            ("unknown key", "bogus-key = 1", "bogus-key", True),
            ("wrong type: string for an integer", 'liveness = "three"', "liveness", True),
            ("wrong type: float for an integer", "max-queue = 2.5", "max-queue", True),
            ("wrong type: string for a list", 'idempotent = "svc"', "idempotent", True),
            ("invalid endpoint: no scheme", 'frontend = "127.0.0.1:5555"', "frontend", True),
            ("invalid endpoint: no port", 'backend = "tcp://127.0.0.1"', "backend", True),
            ("invalid endpoint: port not a number", 'frontend = "tcp://127.0.0.1:notaport"', "frontend", True),
            ("invalid endpoint: port out of range", 'heartbeat = "tcp://127.0.0.1:99999"', "heartbeat", True),
            ("invalid endpoint: negative port", 'backend = "tcp://127.0.0.1:-5"', "backend", True),
            ("invalid metrics address: port out of range", 'metrics-listen = "127.0.0.1:99999"',
             "metrics-listen", True),
            ("negative limit", "max-queue = -1", "max-queue", True),
            ("negative timeout", "drain-timeout = -5", "drain-timeout", True),
            ("out-of-range limit", "liveness = 1000", "liveness", True),
            ("invalid log level", 'log-level = "loud"', "log-level", True),
            ("TOML syntax error: missing value", "max-frames =", "max-frames", False),
            ("TOML syntax error: bad integer", "max-queue = 12abc", "max-queue", False),
        ]
        for case, bad, key, key_required in cases:
            with self.subTest(case=case):
                ports = distinct_ports(4)
                settings = self.base_settings(ports[:3])
                settings["metrics-listen"] = "127.0.0.1:%d" % ports[3]
                settings.pop(key, None)
                lines = ["# a configuration with one mistake"] + toml_lines(settings) + [bad]
                line_no = len(lines)
                path = self.write_file("bad.toml", "\n".join(lines) + "\n")
                rc, out, err, ready = run_until_ready_or_exit([BIN, "broker", "--config", path])
                self.assertIsNone(ready, "the broker started with %r: %s; stderr %s" % (bad, ready, err))
                self.assertIsNotNone(rc, "the broker neither started nor exited; stderr %s" % err)
                self.assertNotEqual(rc, 0, err)
                self.assertNotIn("ready", out)
                where = "%s:%d" % (path, line_no)
                self.assertIn(where, err, "the error names the file and the line (%s)" % where)
                if key_required:
                    self.assertIn(key, err, "the error names the key")
                for p in ports:
                    self.assertTrue(port_is_free(p), "port %d was left bound" % p)
        # A syntax error inside a key's value: that key is known and should be named too.
        with self.subTest(case="TOML syntax error names the key on its line"):
            path = self.write_file("syntax.toml", "# c\nliveness = 3\nmax-queue = 12abc\n")
            rc, out, err, ready = run_until_ready_or_exit([BIN, "broker", "--config", path, "--print-config"])
            self.assertNotEqual(rc, 0)
            self.assertIn("%s:3" % path, err)
            self.assertIn("max-queue", err, "the syntax error does not name the key")

    def test_bad_flags_and_missing_file(self):
        res = run_cli(["broker", "--max-queue", "-1", "--print-config"], timeout=15)
        self.assertNotEqual(res.returncode, 0)
        self.assertIn(b"max-queue", res.stderr)
        self.assertEqual(res.stdout, b"")
        missing = os.path.join(self.tmp, "missing.toml")
        res = run_cli(["broker", "--config", missing, "--print-config"], timeout=15)
        self.assertNotEqual(res.returncode, 0)
        self.assertIn(missing.encode(), res.stderr)


# ---------------------------------------------------------------------------------------------
# 2. SIGHUP reload
# ---------------------------------------------------------------------------------------------
class ReloadTest(OpsTestCase):

    def reload(self, b, path, settings, wait_msg=True):
        self.write_config(os.path.basename(path), settings)
        start = len(self.log_json(b))
        b.proc.signal(signal.SIGHUP)
        if wait_msg:
            self.wait_log(b, lambda o: o.get("msg") == "configuration reloaded", 5.0, start,
                          "'configuration reloaded' after SIGHUP")

    def test_sighup_applies_limits_heartbeat_and_log_level_without_dropping_connections(self):
        ports = distinct_ports(3)
        settings = self.base_settings(ports, max_queue=1, log_format="json", log_level="info")
        path = self.write_config("broker.toml", settings)
        b = self.start_config_broker(path, ports)
        w = self.native_worker(b, ["q"], mode="hold")
        self.assertEqual((w.welcome.heartbeat_ms, w.welcome.liveness), (200, 3))
        c = self.client(b)
        r1 = c.send_request("q", b"one", timeout_ms=20000)
        j1 = w.next_job(5.0)
        self.assertIsNotNone(j1)
        r2 = c.send_request("q", b"two", timeout_ms=20000)
        r3 = c.send_request("q", b"three", timeout_ms=20000)
        rep = c.get_reply(r3, 3.0)
        self.assertEqual(rep.status if rep else None, 503, "max-queue 1: full")

        # raise the queue limit and change heartbeat settings
        settings.update({"max-queue": 3, "heartbeat-interval": 300, "liveness": 4})
        self.reload(b, path, settings)
        r4 = c.send_request("q", b"four", timeout_ms=20000)
        r5 = c.send_request("q", b"five", timeout_ms=20000)
        r6 = c.send_request("q", b"six", timeout_ms=20000)
        rep = c.get_reply(r6, 3.0)
        self.assertEqual(rep.status if rep else None, 503, "max-queue 3 after reload: the 4th queued is refused")
        self.assertIsNone(c.get_reply(r4, 0.3), "max-queue 3 after reload: queued, not refused")
        self.assertIsNone(c.get_reply(r5, 0.01))

        # nothing was dropped: the in-flight and queued requests complete on the same connections
        expect = {r1: b"one", r2: b"two", r4: b"four", r5: b"five"}
        w.reply(j1, 200, b"w", [b"one"])
        for _ in range(3):
            j = w.next_job(5.0)
            self.assertIsNotNone(j, "queued requests reach the worker after reload")
            w.reply(j, 200, b"w", j.body)
        for rid, body in expect.items():
            r = c.get_reply(rid, 5.0)
            self.assertIsNotNone(r, "no reply for %r" % body)
            self.assertEqual((r.status, r.body), (200, [body]))
        self.assertEqual(w.registrations, 1, "the worker was not made to register again")
        self.assertEqual(w.disconnects, [], "the worker was not disconnected")
        self.assertFalse([o for o in self.log_json(b) if o.get("msg") == "worker left"])
        # heartbeat settings apply to workers that register from now on
        w2 = self.native_worker(b, ["q2"])
        self.assertEqual((w2.welcome.heartbeat_ms, w2.welcome.liveness), (300, 4))

        # log level: warn hides info lines from now on
        settings["log-level"] = "warn"
        self.reload(b, path, settings, wait_msg=False)
        time.sleep(0.5)
        start = len(self.log_json(b))
        self.native_worker(b, ["q3"])  # "service created" and "worker joined" are info
        raw = self.raw(b.frontend)
        raw.send([b"garbage after reload"])  # a warning, still logged
        self.wait_log(b, lambda o: o.get("msg") == "message dropped", 5.0, start, "warning after log-level warn")
        time.sleep(0.2)
        after = self.log_json(b)[start:]
        self.assertFalse([o for o in after if o.get("level") in ("info", "debug", "trace")],
                         "log-level warn after SIGHUP: no info lines; got %r" % after)
        self.assertAlive(b)

    def test_sighup_applies_message_size_limits(self):
        ports = distinct_ports(3)
        settings = self.base_settings(ports, max_message_bytes=1 << 20, max_frames=64, log_format="json")
        path = self.write_config("broker.toml", settings)
        b = self.start_config_broker(path, ports)
        self.native_worker(b, ["big"], concurrency=4)
        c = self.client(b)
        big_body = b"x" * 100000
        many_frames = [b"f"] * 40
        self.assertEqual(c.request("big", big_body, timeout_ms=5000).status, 200)
        self.assertEqual(c.request("big", many_frames, timeout_ms=5000).status, 200)
        settings.update({"max-message-bytes": 65536, "max-frames": 16})
        self.reload(b, path, settings)
        with self.subTest("max-message-bytes lowered by SIGHUP"):
            r = c.request("big", big_body, timeout_ms=5000)
            self.assertEqual(r.status, 413, "a 100000-byte request after max-message-bytes = 65536 was "
                             "reloaded: %r" % r)
        with self.subTest("max-frames lowered by SIGHUP"):
            r = c.request("big", many_frames, timeout_ms=5000)
            self.assertEqual(r.status, 413, "a 40-frame request after max-frames = 16 was reloaded: %r" % r)
        self.assertEqual(c.request("big", b"small", timeout_ms=5000).status, 200)

    def test_sighup_with_bad_file_keeps_the_old_configuration(self):
        ports = distinct_ports(3)
        settings = self.base_settings(ports, max_queue=1, log_format="json")
        path = self.write_config("broker.toml", settings)
        b = self.start_config_broker(path, ports)
        w = self.native_worker(b, ["q"], mode="hold")
        c = self.client(b)
        c.send_request("q", b"held", timeout_ms=30000)
        self.assertIsNotNone(w.next_job(5.0))
        c.send_request("q", b"queued", timeout_ms=30000)
        good_lines = toml_lines(settings)
        for case, bad in (("syntax error", "max-queue = = 3"), ("negative limit", "max-queue = -5"),
                          ("unknown key", "max-qeue = 50"), ("wrong type", 'max-queue = "50"')):
            with self.subTest(case=case):
                lines = ["# broken"] + [l for l in good_lines if not l.startswith("max-queue")] + [bad]
                self.write_file("broker.toml", "\n".join(lines) + "\n")
                start = len(self.log_json(b))
                b.proc.signal(signal.SIGHUP)
                o = self.wait_log(b, lambda o: "reload failed" in o.get("msg", ""), 5.0, start,
                                  "'reload failed' for a bad file")
                self.assertIn(o.get("level"), ("error", "err", "warning", "warn", "critical"))
                detail = json.dumps(o)
                self.assertIn("%s:%d" % (path, len(lines)), detail, "the error names file and line")
                self.assertFalse([x for x in self.log_json(b)[start:] if x.get("msg") == "configuration reloaded"])
                # still serving, with the old limit (1: the queue is full)
                self.assertAlive(b)
                rep = c.request("q", b"over", timeout_ms=5000, wait=3.0)
                self.assertEqual(rep.status, 503, "old max-queue 1 still applies")
        self.assertServes(b)
        # a good file again: applied
        settings["max-queue"] = 2
        self.reload(b, path, settings)
        r = c.send_request("q", b"fits now", timeout_ms=30000)
        self.assertIsNone(c.get_reply(r, 0.3), "max-queue 2 after the good reload")
        rep = c.request("q", b"over", timeout_ms=5000, wait=3.0)
        self.assertEqual(rep.status, 503)

    def test_sighup_reloads_idempotent_services(self):
        ports = distinct_ports(3)
        settings = self.base_settings(ports, idempotent=[], log_format="json")
        path = self.write_config("broker.toml", settings)
        b = self.start_config_broker(path, ports)

        def worker_dies_mid_request(service):
            """An MDP worker takes a request and goes silent; another worker is there."""
            a = self.mdp_worker(b, service, mode="hold")
            self.wait_mmi(b, service, timeout=5.0)
            c = self.client(b)
            rid = c.send_request(service, b"job", timeout_ms=8000)
            self.assertIsNotNone(a.next_job(5.0))
            # It leaves without replying. (A Majordomo worker that merely goes silent while it
            # holds a request is kept until that request's deadline: it cannot heartbeat while it
            # works. docs/protocol.md, Majordomo interop.)
            a.send([b"", b"MDPW01", b"\x05"])
            time.sleep(0.1)
            a.stop()
            spare = self.mdp_worker(b, service)  # echoes
            wait_for(lambda: (self.status_json(b).get("services") and
                              [s for s in self.status_json(b)["services"]
                               if s["name"] == service and s["workers"] == 2]), 1.0)
            rep = c.get_reply(rid, 6.0)
            spare.stop()
            return rep

        def idempotent_flag(service):
            return [s.get("idempotent") for s in self.status_json(b)["services"] if s["name"] == service]

        rep = worker_dies_mid_request("idem1")
        self.assertIsNotNone(rep, "the client gets an answer when the worker dies")
        self.assertNotEqual(rep.status, 200, "not idempotent yet: not re-dispatched")
        self.assertEqual(idempotent_flag("idem1"), [False])
        settings["idempotent"] = ["idem1", "idem2"]
        self.reload(b, path, settings)
        self.assertEqual(idempotent_flag("idem1"), [True], "an existing service becomes idempotent")
        rep = worker_dies_mid_request("idem2")
        self.assertIsNotNone(rep)
        self.assertEqual((rep.status, rep.body), (200, [b"job"]), "idempotent after reload: re-dispatched")


# ---------------------------------------------------------------------------------------------
# 3. SIGTERM / SIGINT: drain
# ---------------------------------------------------------------------------------------------
class DrainTest(OpsTestCase):

    def test_sigterm_drains_in_flight_then_exits_0(self):
        b = self.start_broker(extra=["--drain-timeout", "8000"])
        slow = self.native_worker(b, ["slow"], mode="hold")
        idle = self.native_worker(b, ["fast"])
        c = self.client(b)
        rid = c.send_request("slow", b"keep me", timeout_ms=20000)
        job = slow.next_job(5.0)
        self.assertIsNotNone(job)
        self.assertEqual(http_get(b.metrics, "/readyz")[0], 200)
        t_sig = now()
        b.proc.signal(signal.SIGTERM)
        self.assertTrue(wait_for(lambda: http_get(b.metrics, "/readyz")[0] == 503, 3.0),
                        "/readyz is 503 while draining")
        self.assertEqual(http_get(b.metrics, "/healthz")[0], 200, "still healthy while draining")
        c2 = self.client(b)
        for service in ("fast", "slow", "unknown"):
            t0 = now()
            r = c2.request(service, b"new", timeout_ms=5000, wait=3.0)
            self.assertEqual(r.status, 503, "new requests are refused while draining: %r" % r)
            self.assertLess(now() - t0, 1.0, "the 503 is fast")
        self.assertAlive(b)  # the accepted request is still in flight
        slow.reply(job, 200, b"slow", [b"finished"])
        rep = c.get_reply(rid, 5.0)
        self.assertIsNotNone(rep, "the in-flight request gets its reply during the drain")
        self.assertEqual((rep.status, rep.body), (200, [b"finished"]))
        rc = b.proc.wait(5.0)
        self.assertEqual(rc, 0, "exit 0 after draining; stderr:\n%s" % b.stderr_text()[-2000:])
        self.assertLess(now() - t_sig, 6.0, "exits once drained, not at the drain timeout")
        for w in (slow, idle):
            self.assertIsNotNone(w.wait_disconnect(3.0), "worker %r told DISCONNECT" % w.wname)

    def test_drain_timeout_bounds_the_wait(self):
        b = self.start_broker(extra=["--drain-timeout", "800"])
        w = self.native_worker(b, ["stuck"], mode="hold")
        c = self.client(b)
        rid = c.send_request("stuck", b"never answered", timeout_ms=30000)
        self.assertIsNotNone(w.next_job(5.0))
        t0 = now()
        b.proc.signal(signal.SIGTERM)
        rc = b.proc.wait(6.0)
        elapsed = now() - t0
        self.assertEqual(rc, 0, b.stderr_text()[-2000:])
        self.assertGreaterEqual(elapsed, 0.6, "waited for the in-flight request up to --drain-timeout")
        self.assertLess(elapsed, 2.8, "but not longer than --drain-timeout 800 ms (+ margin)")
        rep = c.get_reply(rid, 2.0)
        self.assertIsNotNone(rep, "the unfinished request is answered, not left hanging")
        self.assertGreaterEqual(rep.status, 500, rep)
        self.assertIsNotNone(w.wait_disconnect(3.0), "worker told DISCONNECT")

    def test_second_sigint_stops_at_once(self):
        b = self.start_broker(extra=["--drain-timeout", "30000"])
        w = self.native_worker(b, ["stuck"], mode="hold")
        c = self.client(b)
        c.send_request("stuck", b"x", timeout_ms=60000)
        self.assertIsNotNone(w.next_job(5.0))
        b.proc.signal(signal.SIGINT)
        time.sleep(0.5)
        self.assertAlive(b)  # draining: waits for the request
        t0 = now()
        b.proc.signal(signal.SIGINT)
        rc = b.proc.wait(5.0)
        self.assertIsNotNone(rc, "a second SIGINT stops the broker at once")
        self.assertLess(now() - t0, 2.0)
        self.assertGreaterEqual(rc, 0, "exits by itself, not killed by the signal (rc %r)" % rc)


# ---------------------------------------------------------------------------------------------
# 4. Metrics
# ---------------------------------------------------------------------------------------------
REQUIRED_FAMILIES = {
    "scale0_requests_total": ("counter", {"service", "code"}),
    "scale0_request_duration_seconds": ("histogram", None),
    "scale0_workers": ("gauge", {"service"}),
    "scale0_queue_depth": ("gauge", {"service"}),
    "scale0_dropped_messages_total": ("counter", {"reason"}),
    "scale0_workers_expired_total": ("counter", set()),
    "scale0_heartbeats_missed_total": ("counter", set()),
}


class MetricsTest(OpsTestCase):

    def test_metrics_format_and_values_agree_with_traffic(self):
        b = self.start_broker(no_worker_timeout=300)
        m = re.search(r" metrics=(127\.0\.0\.1:(\d+))$", b.ready_line)
        self.assertIsNotNone(m, b.ready_line)
        self.assertNotEqual(int(m.group(2)), 0, "port 0 is replaced by the real port")
        self.assertEqual(m.group(1), b.metrics)
        self.native_worker(b, ["echo"], concurrency=2)
        self.native_worker(b, ["echo"])
        held = self.native_worker(b, ["held"], mode="hold")
        c = self.client(b)
        n = 25
        rids = [c.send_request("echo", b"m%d" % i, timeout_ms=5000) for i in range(n)]
        for rid in rids:
            r = c.get_reply(rid, 5.0)
            self.assertEqual(r.status if r else None, 200, r)
        r = c.request("nobody", b"x", timeout_ms=5000, wait=5.0)
        self.assertEqual(r.status, 503)
        for i in range(3):
            c.send_request("held", b"h%d" % i, timeout_ms=20000)
        self.assertIsNotNone(held.next_job(5.0))
        raw = self.raw(b.frontend)
        for i in range(3):
            raw.send([b"not a protocol header %d" % i])
        wait_for(lambda: self.prom(b).value("scale0_dropped_messages_total", reason="malformed") == 3, 3.0)
        wait_for(lambda: self.prom(b).value("scale0_queue_depth", service="held") == 2, 3.0)

        status, headers, body = http_get(b.metrics, "/metrics")
        self.assertEqual(status, 200)
        self.assertTrue(headers.get("content-type", "").startswith("text/plain"), headers)
        self.assertIn("version=0.0.4", headers.get("content-type", ""))
        doc = parse_prometheus(body)
        for name, (kind, labels) in REQUIRED_FAMILIES.items():
            with self.subTest(family=name):
                self.assertIn(name, doc.families)
                self.assertEqual(doc.families[name]["type"], kind)
                self.assertTrue(doc.families[name]["help"].strip(), "# HELP has a text")
                if labels is not None:
                    for _, l, _ in [s for s in doc.samples if s[0] == name]:
                        self.assertEqual(set(l), labels, "%s labels" % name)
                if not labels and labels is not None:
                    self.assertIsNotNone(doc.value(name), "%s has a sample" % name)

        self.assertEqual(doc.value("scale0_requests_total", service="echo", code="200"), n)
        self.assertEqual(sum(v for _, v in doc.find("scale0_requests_total", service="echo")), n,
                         "no echo request counted under another code")
        self.assertEqual(doc.value("scale0_requests_total", service="nobody", code="503"), 1)
        # histogram: cumulative, monotone, +Inf == _count == n, _sum > 0
        buckets = [(float(l["le"]), v) for l, v in doc.find("scale0_request_duration_seconds_bucket",
                                                               service="echo")]
        self.assertGreaterEqual(len(buckets), 3, buckets)
        les = [le for le, _ in buckets]
        self.assertEqual(les, sorted(les), "buckets in increasing le")
        self.assertEqual(len(set(les)), len(les))
        self.assertEqual(les[-1], math.inf, "the last bucket is +Inf")
        counts = [v for _, v in buckets]
        self.assertEqual(counts, sorted(counts), "bucket counts are cumulative (never decrease)")
        count = doc.value("scale0_request_duration_seconds_count", service="echo")
        total = doc.value("scale0_request_duration_seconds_sum", service="echo")
        self.assertEqual(count, n)
        self.assertEqual(counts[-1], count, "+Inf bucket == _count")
        self.assertGreater(total, 0)
        self.assertLess(total, n * 5.0)
        self.assertEqual(doc.value("scale0_workers", service="echo"), 2)
        self.assertEqual(doc.value("scale0_workers", service="held"), 1)
        self.assertEqual(doc.value("scale0_queue_depth", service="held"), 2)
        self.assertEqual(doc.value("scale0_queue_depth", service="echo"), 0)
        self.assertEqual(doc.value("scale0_dropped_messages_total", reason="malformed"), 3)
        self.assertEqual(doc.value("scale0_workers_expired_total"), 0)

    def test_http_endpoints_and_keep_alive(self):
        b = self.start_broker()
        for path, code in (("/healthz", 200), ("/readyz", 200), ("/metrics", 200), ("/metrics?x=1", 200),
                           ("/no-such-path", 404), ("/", 200), ("/status.json", 200)):
            with self.subTest(path=path):
                self.assertEqual(http_get(b.metrics, path)[0], code)
        host, port = b.metrics.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=5)
        try:
            conn.request("GET", "/metrics")
            r = conn.getresponse()
            self.assertEqual(r.status, 200)
            parse_prometheus(r.read().decode())
            self.assertIsNotNone(conn.sock, "connection kept open after the first response")
            local = conn.sock.getsockname()
            for path, code in (("/healthz", 200), ("/readyz", 200), ("/nope", 404), ("/metrics", 200),
                               ("/healthz", 200)):
                conn.request("GET", path)
                r = conn.getresponse()
                r.read()
                self.assertEqual(r.status, code, path)
                self.assertNotEqual((r.getheader("Connection") or "").lower(), "close", path)
                self.assertIsNotNone(conn.sock, "the server closed the connection after %s" % path)
                self.assertEqual(conn.sock.getsockname(), local, "same TCP connection for %s" % path)
        finally:
            conn.close()

    def test_worker_expiry_and_missed_heartbeats_are_counted(self):
        b = self.start_broker(heartbeat_interval=100, liveness=8)
        d = self.native_worker(b, ["dies"])
        doc = self.prom(b)
        self.assertEqual(doc.value("scale0_workers_expired_total"), 0)
        missed0 = doc.value("scale0_heartbeats_missed_total")
        d.stop()  # silent from now on: no heartbeat, no DISCONNECT
        self.assertTrue(wait_for(lambda: self.prom(b).value("scale0_workers_expired_total") == 1, 4.0),
                        "workers_expired_total becomes 1 after liveness x interval")
        doc = self.prom(b)
        self.assertIn(doc.value("scale0_workers", service="dies"), (None, 0))
        with self.subTest("a worker that expired missed its heartbeats"):
            self.assertGreater(doc.value("scale0_heartbeats_missed_total"), missed0,
                               "a worker silent for liveness (8) intervals until it expired: "
                               "scale0_heartbeats_missed_total stayed %r" % missed0)
        # a worker that pauses ~4 intervals (less than liveness) and comes back
        p = self.native_worker(b, ["pauses"])
        time.sleep(0.3)
        before = self.prom(b).value("scale0_heartbeats_missed_total")
        p.send_heartbeats = False
        time.sleep(0.45)
        p.send_heartbeats = True
        self.assertTrue(wait_for(lambda: self.prom(b).value("scale0_heartbeats_missed_total") >= before + 2, 3.0),
                        "missed heartbeats of a paused worker counted (before %r, now %r)"
                        % (before, self.prom(b).value("scale0_heartbeats_missed_total")))
        self.assertEqual(p.disconnects, [])
        self.assertEqual(self.prom(b).value("scale0_workers", service="pauses"), 1)
        self.assertEqual(self.prom(b).value("scale0_workers_expired_total"), 1)


# ---------------------------------------------------------------------------------------------
# 5. scale0 status
# ---------------------------------------------------------------------------------------------
class StatusCliTest(OpsTestCase):

    def check_schema(self, j):
        self.assertIsInstance(j, dict)
        for key, kind in (("services", list), ("workers", list), ("counters", dict)):
            self.assertIsInstance(j.get(key), kind, key)
        for s in j["services"]:
            where = "service %r" % s.get("name")
            self.assertIsInstance(s.get("name"), str, where)
            self.assertTrue(s["name"])
            for k in ("workers", "idle_slots", "queue_depth"):
                self.assertTrue(is_int(s.get(k)) and s[k] >= 0, "%s.%s = %r" % (where, k, s.get(k)))
            for k in ("requests_per_second", "latency_p50_ms", "latency_p99_ms"):
                self.assertTrue(is_number(s.get(k)) and s[k] >= 0, "%s.%s = %r" % (where, k, s.get(k)))
            self.assertIsInstance(s.get("errors"), dict, where)
            for code, count in s["errors"].items():
                self.assertRegex(code, r"^\d{3}$", where)
                self.assertTrue(is_int(count) and count > 0, "%s.errors[%s] = %r" % (where, code, count))
        for w in j["workers"]:
            where = "worker %r" % w.get("id")
            self.assertIsInstance(w.get("id"), str, where)
            self.assertTrue(w["id"])
            self.assertIsInstance(w.get("services"), list, where)
            self.assertTrue(w["services"] and all(isinstance(x, str) for x in w["services"]), where)
            self.assertTrue(is_int(w.get("concurrency")) and w["concurrency"] >= 1, where)
            self.assertTrue(is_int(w.get("in_flight")) and 0 <= w["in_flight"] <= w["concurrency"], where)
            self.assertTrue(is_number(w.get("last_seen_ms")) and 0 <= w["last_seen_ms"] < 60000, where)
            self.assertIsInstance(w.get("address"), str, where)
            self.assertRegex(w["address"], r"^127\.0\.0\.1(:\d+)?$", where + ": the peer's address")

        def numeric_leaves(obj, path):
            if isinstance(obj, dict):
                for k, v in obj.items():
                    numeric_leaves(v, path + "." + k)
            else:
                self.assertTrue(is_int(obj) and obj >= 0, "%s = %r" % (path, obj))
        numeric_leaves(j["counters"], "counters")

    def test_status_json_schema_values_and_table(self):
        b = self.start_broker(no_worker_timeout=300)
        self.native_worker(b, ["alpha"], concurrency=3)
        self.native_worker(b, ["alpha", "beta"], concurrency=2)
        self.scale0_worker(b, ["gamma"], name="proc-worker")
        self.wait_names(b, "gamma", ["proc-worker"])
        held = self.native_worker(b, ["held"], mode="hold")
        c = self.client(b)
        for service, k in (("alpha", 10), ("beta", 3)):
            for rid in [c.send_request(service, b"x", timeout_ms=5000) for _ in range(k)]:
                r = c.get_reply(rid, 5.0)
                self.assertEqual(r.status if r else None, 200)
        self.assertEqual(c.request("nobody", b"x", timeout_ms=5000, wait=5.0).status, 503)
        for i in range(3):
            c.send_request("held", b"h", timeout_ms=30000)
        self.assertIsNotNone(held.next_job(5.0))
        wait_for(lambda: [s for s in self.status_json(b)["services"] if s["name"] == "held" and s["queue_depth"] == 2],
                 3.0)

        res = run_cli(["status", "--broker", b.frontend, "--json", "--timeout", "3000"], timeout=15)
        self.assertEqual(res.returncode, 0, res.stderr)
        j = json.loads(res.stdout.decode())
        self.check_schema(j)
        svc = {s["name"]: s for s in j["services"]}
        for name in ("alpha", "beta", "gamma", "held", "nobody"):
            self.assertIn(name, svc)
        self.assertEqual((svc["alpha"]["workers"], svc["alpha"]["idle_slots"], svc["alpha"]["queue_depth"]), (2, 5, 0))
        self.assertEqual((svc["beta"]["workers"], svc["beta"]["idle_slots"]), (1, 2))
        self.assertEqual((svc["held"]["workers"], svc["held"]["idle_slots"], svc["held"]["queue_depth"]), (1, 0, 2))
        self.assertEqual(svc["nobody"]["workers"], 0)
        self.assertEqual(svc["nobody"]["errors"], {"503": 1})
        self.assertEqual(svc["alpha"]["errors"], {})
        self.assertGreater(svc["alpha"]["requests_per_second"], 0)
        self.assertGreater(svc["alpha"]["latency_p99_ms"], 0)
        self.assertLessEqual(svc["alpha"]["latency_p50_ms"], svc["alpha"]["latency_p99_ms"])
        self.assertEqual(len(j["workers"]), 4)
        by_services = {tuple(sorted(w["services"])): w for w in j["workers"]}
        self.assertEqual(by_services[("alpha",)]["concurrency"], 3)
        self.assertEqual(by_services[("alpha", "beta")]["concurrency"], 2)
        self.assertEqual(by_services[("gamma",)]["concurrency"], 1)
        self.assertEqual(by_services[("held",)]["in_flight"], 1)

        res = run_cli(["status", "--broker", b.frontend, "--timeout", "3000"], timeout=15)
        self.assertEqual(res.returncode, 0, res.stderr)
        table = res.stdout.decode()
        for name in ("alpha", "beta", "gamma", "held", "nobody"):
            self.assertRegex(table, r"(?m)^%s\s" % name, "service %s listed" % name)
        for w in j["workers"]:
            self.assertIn(w["address"], table, "worker address listed")
            self.assertIn(w["id"][:8], table, "worker id listed")

    def test_status_without_a_broker_fails_within_its_timeout(self):
        port = free_port()
        for extra, limit in ((["--timeout", "500"], 0.5), (["--json", "--timeout", "500"], 0.5), ([], 1.0)):
            with self.subTest(args=extra):
                t0 = now()
                res = run_cli(["status", "--broker", ep(port)] + extra, timeout=15)
                elapsed = now() - t0
                self.assertNotEqual(res.returncode, 0)
                self.assertLess(elapsed, limit + 3.0, "gives up within its --timeout")
                self.assertIn(ep(port).encode(), res.stderr, "says which broker did not answer")
                self.assertEqual(res.stdout.strip(), b"", "nothing on stdout")

    def test_status_watch_refreshes_until_interrupted(self):
        b = self.start_broker()
        self.native_worker(b, ["watched"])
        p = Proc([BIN, "status", "--broker", b.frontend, "--watch", "--interval", "200", "--timeout", "2000"],
                 capture_stdout=True)
        self.addCleanup(p.cleanup)
        fd = p.p.stdout.fileno()
        buf = b""
        deadline = now() + 6.0
        while buf.count(b"watched") < 3 and now() < deadline and p.alive():
            r, _, _ = select.select([fd], [], [], 0.1)
            if r:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                buf += chunk
        self.assertGreaterEqual(buf.count(b"watched"), 3, "--watch refreshes: %r" % buf[-500:])
        p.signal(signal.SIGINT)
        self.assertIsNotNone(p.wait(3.0), "--watch stops on SIGINT")


# ---------------------------------------------------------------------------------------------
# 6. Logs
# ---------------------------------------------------------------------------------------------
LEVELS = ("trace", "debug", "info", "warn", "warning", "error", "critical")


class LogTest(OpsTestCase):

    def check_json_lines(self, b):
        objs = self.log_json(b, strict=True)
        self.assertTrue(objs)
        for o in objs:
            self.assertTrue(is_number(o.get("time")) or isinstance(o.get("time"), str), o)
            self.assertIn(o.get("level"), LEVELS, o)
            self.assertIsInstance(o.get("msg"), str, o)
            self.assertTrue(o["msg"], o)
        return objs

    def test_json_logs_and_worker_service_events(self):
        b = self.start_broker(extra=["--log-format", "json"])
        sw = self.scale0_worker(b, ["logsvc"], name="doomed")
        self.wait_names(b, "logsvc", ["doomed"])
        created = self.wait_log(b, lambda o: o.get("msg") == "service created" and o.get("service") == "logsvc",
                                3.0, what="'service created' for logsvc")
        self.assertIsInstance(created["service"], str)
        joined = self.wait_log(b, lambda o: o.get("msg") == "worker joined" and "logsvc" in str(o.get("services")),
                               3.0, what="'worker joined' for logsvc")
        self.assertIsInstance(joined.get("worker"), str)
        self.assertTrue(joined["worker"])
        sw.sigkill()
        left = self.wait_log(b, lambda o: o.get("msg") == "worker left" and o.get("worker") == joined["worker"],
                             5.0, what="'worker left' for the SIGKILLed worker")
        self.assertIsInstance(left.get("reason"), str)
        self.assertIn("heartbeat", left["reason"])
        self.assertIn("expired", left["reason"])
        # a worker that says goodbye: a reason too
        nw = self.native_worker(b, ["polite"])
        j2 = self.wait_log(b, lambda o: o.get("msg") == "worker joined" and "polite" in str(o.get("services")), 3.0)
        nw.leave()
        l2 = self.wait_log(b, lambda o: o.get("msg") == "worker left" and o.get("worker") == j2["worker"], 3.0)
        self.assertIsInstance(l2.get("reason"), str)
        self.assertTrue(l2["reason"])
        self.assertEqual(b.stop(), 0)
        self.check_json_lines(b)

    def test_json_log_format_startup_error_is_json(self):
        blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        try:
            busy = blocker.getsockname()[1]
            ports = distinct_ports(2)
            rc, out, err, ready = run_until_ready_or_exit(
                [BIN, "broker", "--frontend", ep(busy), "--backend", ep(ports[0]), "--heartbeat", ep(ports[1]),
                 "--metrics-listen", "", "--log-format", "json"])
            self.assertIsNone(ready)
            self.assertNotEqual(rc, 0)
            lines = [l for l in err.split("\n") if l.strip()]
            self.assertTrue(lines, "an error on stderr")
            for line in lines:
                try:
                    obj = json.loads(line)
                except ValueError:
                    obj = None
                self.assertIsInstance(obj, dict, "--log-format json, but this stderr line is not JSON: %r" % line)
        finally:
            blocker.close()

    def test_log_level_warn_suppresses_info(self):
        for fmt in ("json", "text"):
            with self.subTest(format=fmt):
                b = self.start_broker(extra=["--log-level", "warn", "--log-format", fmt])
                self.native_worker(b, ["quiet"])
                self.assertEqual(self.client(b).request("quiet", b"x", timeout_ms=5000).status, 200)
                self.raw(b.frontend).send([b"garbage"])
                self.assertTrue(wait_for(lambda: "message dropped" in self.log_text(b), 3.0),
                                "warnings are still logged: %r" % self.log_text(b))
                self.assertEqual(b.stop(), 0)
                text = self.log_text(b)
                for info in ("broker started", "service created", "worker joined", "broker stopped"):
                    self.assertNotIn(info, text, "--log-level warn hides info lines")
                if fmt == "json":
                    for o in self.check_json_lines(b):
                        self.assertNotIn(o["level"], ("trace", "debug", "info"), o)
                else:
                    self.assertNotRegex(text, r"(?m)^\S+ \S+ info\b")

    def test_malformed_flood_is_rate_limited(self):
        b = self.start_broker(extra=["--log-format", "json"])
        raw = self.raw(b.frontend)
        self.assertEqual(self.client(b).request("mmi.service", [b"x"], timeout_ms=3000).status, 200)
        start = len(self.log_json(b))
        flood = 5000
        t0 = now()
        for i in range(flood):
            raw.send([b"garbage %d" % i, b"\xff" * (i % 5)])
        self.assertLess(now() - t0, 1.0, "sent within 1 s")
        self.assertTrue(wait_for(lambda: self.prom(b).value("scale0_dropped_messages_total", reason="malformed")
                                 == flood, 5.0), "the broker read the whole flood")
        t_end = now()

        def noisy(o):
            return o.get("msg") in ("message dropped", "request error")

        def summaries(objs):
            return [o for o in objs if "suppressed" in o.get("msg", "")]

        with self.subTest("the flood's suppressed summary is logged without further traffic"):
            found = wait_for(lambda: summaries(self.log_json(b)[start:]), 2.5)
            self.assertTrue(found, "%d malformed messages in one burst, then silence: after %.1f s the log has "
                            "%d 'message dropped' lines and no 'suppressed' summary"
                            % (flood, now() - t_end, len([o for o in self.log_json(b)[start:] if noisy(o)])))
        after = self.log_json(b)[start:]
        self.assertLessEqual(len(after), 40, "a bounded number of log lines for %d bad messages" % flood)
        self.assertServes(b)
        # One more bad message later: the summary accounts for every suppressed line.
        raw.send([b"one more"])
        self.assertTrue(wait_for(lambda: summaries(self.log_json(b)[start:]), 3.0), "a 'suppressed' summary")
        time.sleep(0.2)
        after = self.log_json(b)[start:]
        logged = len([o for o in after if noisy(o)])
        suppressed = 0
        for o in summaries(after):
            counts = [int(v) for k, v in o.items() if k in ("count", "suppressed", "n") and str(v).isdigit()]
            self.assertTrue(counts, "the summary says how many lines: %r" % o)
            suppressed += counts[0]
        self.assertEqual(logged + suppressed, flood + 1, "logged + suppressed == bad messages")
        self.assertLessEqual(len(after), 60)


if __name__ == "__main__":
    unittest.main()
