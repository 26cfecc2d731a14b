# SPDX-License-Identifier: Apache-2.0
"""A real Mongrel2 in front of Scale0: mongrel2 -> scale0 mongrel2 -> scale0 broker -> Python S0/1
HTTP workers, driven with http.client (docs/http.md, "Mongrel2 as the front door").

Skipped when Mongrel2 (mongrel2-core: mongrel2 and m2sh) is not installed. Everything listens on
127.0.0.1 only; every wait is bounded.
"""

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

import zmq

import test_metrics_format as metrics_format  # a module, so its tests are not collected here too
from harness import (BIN, Broker, NativeWorker, Proc, binary_available, first_line, free_port, now,
                     wait_until)
from test_metrics_format import families, sample
from test_operations import http_get

SERVER_UUID = "f400bf85-4538-4f7a-8908-67e313d515c2"
JSON_IDENT = "54c6755b-9628-40a4-9a2d-cc82a816345e"
TNET_IDENT = "64c6755b-9628-40a4-9a2d-cc82a816345e"
DEAD_IDENT = "74c6755b-9628-40a4-9a2d-cc82a816345e"


def find_mongrel2():
    for path in ("/usr/sbin/mongrel2", "/usr/bin/mongrel2"):
        if os.access(path, os.X_OK):
            return path
    return shutil.which("mongrel2")


MONGREL2 = find_mongrel2()
M2SH = shutil.which("m2sh") or ("/usr/bin/m2sh" if os.access("/usr/bin/m2sh", os.X_OK) else None)


class Mongrel2:
    """A Mongrel2 server in a temp dir (its chroot), configured with two handlers: '/' speaks JSON
    headers, '/t/' tnetstring headers. Hosts: localhost and anything under example.com."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="scale0-m2-")
        for d in ("run", "logs", "tmp"):
            os.mkdir(os.path.join(self.dir, d))
        self.port = free_port()
        (self.json_send, self.json_recv, self.tnet_send, self.tnet_recv, self.dead_send,
         self.dead_recv) = ("tcp://127.0.0.1:%d" % free_port() for _ in range(6))
        self.proc = None

    def config(self):
        return """
json_handler = Handler(send_spec='%(js)s', send_ident='%(ji)s', recv_spec='%(jr)s', recv_ident='')
tnet_handler = Handler(send_spec='%(ts)s', send_ident='%(ti)s', recv_spec='%(tr)s', recv_ident='',
                       protocol='tnetstring')
dead_handler = Handler(send_spec='%(ds)s', send_ident='%(di)s', recv_spec='%(dr)s', recv_ident='')
main = Server(
    uuid="%(uuid)s",
    access_log="/logs/access.log",
    error_log="/logs/error.log",
    chroot="./",
    default_host="localhost",
    name="scale0test",
    pid_file="/run/mongrel2.pid",
    port=%(port)d,
    bind_addr="127.0.0.1",
    hosts=[
        Host(name="localhost", routes={'/': json_handler, '/t/': tnet_handler}),
        Host(name="example.com", matching="example.com",
             routes={'/': json_handler, '/t/': tnet_handler, '/dead/': dead_handler})
    ]
)
settings = {"server.daemonize": 0, "zeromq.threads": 1}
servers = [main]
""" % dict(js=self.json_send, ji=JSON_IDENT, jr=self.json_recv, ts=self.tnet_send, ti=TNET_IDENT,
           tr=self.tnet_recv, ds=self.dead_send, di=DEAD_IDENT, dr=self.dead_recv,
           uuid=SERVER_UUID, port=self.port)

    def start(self, timeout=15.0):
        conf = os.path.join(self.dir, "mongrel2.conf")
        with open(conf, "w") as f:
            f.write(self.config())
        env = dict(os.environ, LOGNAME=os.environ.get("LOGNAME") or "scale0-test")  # m2sh wants it
        load = subprocess.run([M2SH, "load", "-config", conf, "-db", "config.sqlite"], cwd=self.dir,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        # m2sh exits 0 even when it cannot parse the file (it accepts no trailing commas either).
        if load.returncode != 0 or b"ERROR" in load.stdout:
            raise AssertionError("m2sh load failed (%d): %s" % (load.returncode, load.stdout[-3000:]))
        self.proc = Proc([MONGREL2, "config.sqlite", SERVER_UUID], cwd=self.dir)
        deadline = now() + timeout
        while now() < deadline:
            if not self.proc.alive():
                break
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError("mongrel2 did not start listening on %d (rc=%r)\nstderr:\n%s\nerror.log:\n%s"
                             % (self.port, self.proc.poll(), self.proc.stderr_text()[-3000:],
                                self.error_log()))

    def error_log(self):
        try:
            with open(os.path.join(self.dir, "logs", "error.log"), "rb") as f:
                return f.read()[-4000:].decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self):
        if self.proc:
            self.proc.signal(signal.SIGINT)
            if self.proc.wait(5.0) is None:
                self.proc.kill()
            self.proc.cleanup()
        shutil.rmtree(self.dir, ignore_errors=True)


class Adapter:
    """A `scale0 mongrel2` process; start() waits for its ready line."""

    def __init__(self, send_spec, recv_spec, broker, extra=()):
        self.args = [BIN, "mongrel2", "--send-spec", send_spec, "--recv-spec", recv_spec,
                     "--broker", broker] + list(extra)
        self.proc = None
        self.ready_line = None

    def start(self, timeout=15.0):
        self.proc = Proc(self.args, capture_stdout=True)
        line = first_line(self.proc, timeout)
        if not line.startswith(b"ready send="):
            raise AssertionError("scale0 mongrel2 printed no ready line (%r); stderr:\n%s"
                                 % (line, self.proc.stderr_text()))
        self.ready_line = line.decode()
        m = re.search(r" metrics=(\S+)$", self.ready_line)
        self.metrics = m.group(1) if m else None  # host:port with --metrics-listen
        return self

    def scrape(self):
        status, _, text = http_get(self.metrics, "/metrics")
        assert status == 200, (status, text)
        return text


def parse_encoded_request(data):
    """The HTTP request encoding of docs/http.md -> (method, target, [(name, value)], body)."""
    head, sep, rest = data.partition(b"\r\n\r\n")
    assert sep, "no end of head in %r" % data[:200]
    lines = head.split(b"\r\n")
    method, target, version = lines[0].split(b" ")
    assert version == b"HTTP/1.1", lines[0]
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers.append((name.decode().lower(), value.strip().decode("latin-1")))
    lengths = [v for k, v in headers if k == "content-length"]
    assert len(lengths) == 1, headers
    assert len(rest) == int(lengths[0]), (len(rest), lengths)
    return method.decode(), target.decode(), headers, rest


def http_worker(name, log=None):
    """A worker mode: decodes the request, answers a JSON description of it."""
    def mode(job):
        method, target, headers, body = parse_encoded_request(b"".join(job.body))
        seen = {"worker": name, "method": method, "target": target, "headers": headers,
                "body": body.hex()}
        if log is not None:
            log.append(seen)
        payload = json.dumps(seen).encode()
        return (200, b"", [b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Worker: "
                           + name.encode() + b"\r\nContent-Length: %d\r\n\r\n" % len(payload)
                           + payload])
    return mode


@unittest.skipUnless(MONGREL2 and M2SH, "Mongrel2 is not installed (need mongrel2 and m2sh from "
                                         "mongrel2-core; scripts/setup.sh installs it)")
class Mongrel2FrontDoorTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        if not binary_available():
            raise unittest.SkipTest("scale0 binary not found at %s (set SCALE0_BIN)" % BIN)
        cls.m2 = Mongrel2()
        cls.broker = Broker(no_worker_timeout=300)
        cls.adapters = []
        try:
            cls.m2.start()
            cls.broker.start()
            route = ["--route", "host=api.example.com,service=api",
                     "--route", "host=metered.example.com,service=metered,name=metered",
                     "--timeout", "5000"]
            cls.json_adapter = Adapter(cls.m2.json_send, cls.m2.json_recv, cls.broker.frontend,
                                       route + ["--log-level", "debug",
                                                "--metrics-listen", "127.0.0.1:0"]).start()
            cls.adapters.append(cls.json_adapter)
            cls.tnet_adapter = Adapter(cls.m2.tnet_send, cls.m2.tnet_recv, cls.broker.frontend,
                                       route).start()
            cls.adapters.append(cls.tnet_adapter)
            # A broker endpoint nobody listens on: the handler's own deadline must answer.
            cls.dead_adapter = Adapter(cls.m2.dead_send, cls.m2.dead_recv,
                                       "tcp://127.0.0.1:%d" % free_port(),
                                       ["--timeout", "300"]).start()
            cls.adapters.append(cls.dead_adapter)
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        for a in cls.adapters:
            if a.proc:
                a.proc.cleanup()
        cls.broker.kill()
        cls.broker.cleanup()
        cls.m2.stop()

    def setUp(self):
        self.ctx = zmq.Context()
        self.workers = []
        self.addCleanup(self._cleanup)

    def _cleanup(self):
        for w in self.workers:
            w.stop()
        self.ctx.destroy(linger=0)
        if self._outcome_failed():
            for a in self.adapters:
                print("\n----- scale0 mongrel2 stderr -----\n%s" % a.proc.stderr_text()[-4000:])
            print("----- mongrel2 error.log -----\n%s" % self.m2.error_log())

    def _outcome_failed(self):
        result = getattr(getattr(self, "_outcome", None), "result", None)
        try:
            return any(t is self for t, _ in list(result.failures) + list(result.errors))
        except Exception:
            return False

    def worker(self, service, mode, name=None, concurrency=1):
        w = NativeWorker(self.ctx, self.broker.backend, [service], mode=mode, name=name,
                         concurrency=concurrency)
        self.workers.append(w)
        w.start()
        w.wait_welcome(10.0)
        return w

    def connect(self):
        c = http.client.HTTPConnection("127.0.0.1", self.m2.port, timeout=10)
        self.addCleanup(c.close)
        return c

    def request(self, method, path, host, body=None, headers=None, conn=None):
        c = conn or self.connect()
        h = {"Host": host}
        h.update(headers or {})
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        return r, r.read()

    # ---- the tests ----

    def test_get_through_scale0(self):
        self.worker("get.example.com", http_worker("w-get"))
        r, body = self.request("GET", "/hello/world?x=1&y=%20", "get.example.com",
                               headers={"X-Custom": "yes", "Cookie": "a=1"})
        self.assertEqual(r.status, 200, body)
        seen = json.loads(body)
        self.assertEqual(seen["worker"], "w-get")
        self.assertEqual(seen["method"], "GET")
        self.assertEqual(seen["target"], "/hello/world?x=1&y=%20")
        names = [k for k, _ in seen["headers"]]
        got = dict(seen["headers"])
        self.assertEqual(got["host"], "get.example.com")
        self.assertEqual(got["x-custom"], "yes")
        self.assertEqual(got["x-forwarded-for"], "127.0.0.1")
        self.assertEqual(got["x-forwarded-proto"], "http")
        self.assertTrue(got["x-request-id"])
        self.assertEqual(got["content-length"], "0")
        for meta in ("method", "uri", "path", "query", "version", "pattern", "url_scheme",
                     "remote_addr", "connection"):
            self.assertNotIn(meta, names)
        self.assertEqual(r.getheader("X-Worker"), "w-get")
        self.assertEqual(r.getheader("X-Request-Id"), got["x-request-id"])
        self.assertEqual(r.getheader("Content-Length"), str(len(body)))

    def test_post_with_binary_body(self):
        self.worker("post.example.com", http_worker("w-post"))
        payload = bytes(range(256)) * 4
        r, body = self.request("POST", "/upload", "post.example.com", body=payload,
                               headers={"Content-Type": "application/octet-stream",
                                        "X-Request-Id": "client-chosen-1"})
        self.assertEqual(r.status, 200, body)
        seen = json.loads(body)
        self.assertEqual(seen["method"], "POST")
        self.assertEqual(bytes.fromhex(seen["body"]), payload)
        self.assertEqual(dict(seen["headers"])["content-length"], str(len(payload)))
        self.assertEqual(dict(seen["headers"])["x-request-id"], "client-chosen-1")
        self.assertEqual(r.getheader("X-Request-Id"), "client-chosen-1")

    def test_tnetstring_handler(self):
        self.worker("tnet.example.com", http_worker("w-tnet"))
        r, body = self.request("POST", "/t/path?q=2", "tnet.example.com", body=b"tn\x00et",
                               headers={"Cookie": "a=1"})
        self.assertEqual(r.status, 200, body)
        seen = json.loads(body)
        self.assertEqual((seen["worker"], seen["target"]), ("w-tnet", "/t/path?q=2"))
        self.assertEqual(bytes.fromhex(seen["body"]), b"tn\x00et")

    def test_routing_by_host_and_rule(self):
        self.worker("api", http_worker("w-api"))
        self.worker("www.example.com", http_worker("w-www"))
        r1, b1 = self.request("GET", "/", "api.example.com")
        r2, b2 = self.request("GET", "/", "www.example.com:%d" % self.m2.port)  # port ignored
        self.assertEqual((r1.status, json.loads(b1)["worker"]), (200, "w-api"), b1)
        self.assertEqual((r2.status, json.loads(b2)["worker"]), (200, "w-www"), b2)

    def test_keep_alive_two_requests_on_one_connection(self):
        self.worker("keep.example.com", http_worker("w-keep"))
        c = self.connect()
        r1, b1 = self.request("GET", "/one", "keep.example.com", conn=c)
        self.assertEqual(r1.status, 200, b1)
        self.assertEqual(r1.getheader("Connection"), "keep-alive")
        sock = c.sock
        self.assertIsNotNone(sock, "the connection was closed after the first response")
        r2, b2 = self.request("POST", "/two", "keep.example.com", body=b"second", conn=c)
        self.assertEqual(r2.status, 200, b2)
        self.assertIs(c.sock, sock, "http.client had to reconnect: keep-alive not honoured")
        self.assertEqual(json.loads(b2)["target"], "/two")

    def test_connection_close_is_honoured(self):
        self.worker("close.example.com", http_worker("w-close"))
        s = socket.create_connection(("127.0.0.1", self.m2.port), timeout=10)
        self.addCleanup(s.close)
        s.sendall(b"GET /bye HTTP/1.1\r\nHost: close.example.com\r\nConnection: close\r\n\r\n")
        data = b""
        deadline = now() + 10
        while now() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break  # the server closed: what the client asked for
            data += chunk
        else:
            self.fail("the connection was not closed after a Connection: close request: %r" % data)
        self.assertTrue(data.startswith(b"HTTP/1.1 200 "), data[:200])
        self.assertIn(b"\r\nConnection: close\r\n", data)

    def test_pipelined_requests_are_answered_in_order(self):
        w = self.worker("pipe.example.com", "hold", concurrency=2)
        s = socket.create_connection(("127.0.0.1", self.m2.port), timeout=10)
        self.addCleanup(s.close)
        s.sendall(b"GET /first HTTP/1.1\r\nHost: pipe.example.com\r\n\r\n"
                  b"GET /second HTTP/1.1\r\nHost: pipe.example.com\r\n\r\n")
        jobs = {}
        for _ in range(2):
            job = w.next_job(10.0)
            self.assertIsNotNone(job, "Mongrel2 did not pass both pipelined requests on")
            jobs[parse_encoded_request(b"".join(job.body))[1]] = job
        self.assertEqual(sorted(jobs), ["/first", "/second"])
        for target in ("/second", "/first"):  # the worker answers out of order
            w.reply(jobs[target], 200, b"", [b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s"
                                              % (len(target), target.encode())])
        data = b""
        deadline = now() + 10
        while now() < deadline and data.count(b"HTTP/1.1 200") < 2:
            data += s.recv(65536)
        self.assertLess(data.index(b"/first"), data.index(b"/second"), data)

    def test_broker_silent_gives_504_after_deadline_plus_one_second(self):
        t0 = now()
        r, body = self.request("GET", "/dead/x", "dead.example.com")
        elapsed = now() - t0
        self.assertEqual(r.status, 504, body)
        self.assertGreaterEqual(elapsed, 1.2)
        self.assertLess(elapsed, 5.0)

    def test_no_worker_gives_503_with_retry_after(self):
        r, body = self.request("GET", "/", "nobody.example.com")
        self.assertEqual(r.status, 503, body)
        self.assertEqual(r.getheader("Retry-After"), "1")
        self.assertTrue(r.getheader("X-Request-Id"))
        self.assertEqual(r.getheader("Content-Type"), "text/plain; charset=utf-8")

    def test_malformed_worker_reply_gives_502(self):
        self.worker("bad.example.com", lambda job: (200, b"", [b"this is not HTTP"]))
        r, body = self.request("GET", "/", "bad.example.com")
        self.assertEqual(r.status, 502, body)

    def test_worker_failure_status_is_passed_on(self):
        self.worker("fail.example.com", lambda job: (500, b"boom", []))
        r, body = self.request("GET", "/", "fail.example.com")
        self.assertEqual(r.status, 500, body)
        self.assertIn(b"boom", body)

    def test_client_disconnect_forgets_the_request(self):
        w = self.worker("gone.example.com", "hold")
        s = socket.create_connection(("127.0.0.1", self.m2.port), timeout=10)
        s.sendall(b"GET /slow HTTP/1.1\r\nHost: gone.example.com\r\n\r\n")
        job = w.next_job(10.0)
        self.assertIsNotNone(job, "the request never reached the worker")
        s.close()
        time.sleep(0.3)  # Mongrel2 tells the handler the client left
        w.reply(job, 200, b"", [b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlate"])
        # The late reply is dropped and counted; the handler carries on.
        w.mode = http_worker("w-gone")
        r, body = self.request("GET", "/after", "gone.example.com")
        self.assertEqual(r.status, 200, body)
        deadline = now() + 5
        text = ""
        while now() < deadline:
            text = self.json_adapter.proc.stderr_text()
            if "client disconnected" in text:
                break
            time.sleep(0.1)
        self.assertIn("client disconnected", text)

    def test_metrics_count_the_traffic_and_pass_promtool(self):
        a = self.json_adapter
        self.assertIsNotNone(a.metrics, "no metrics= in the ready line: %r" % a.ready_line)
        self.assertIsNone(self.tnet_adapter.metrics, "metrics are off by default")
        before = a.scrape()
        unknown = sample(before, "scale0_mongrel2_broker_unknown_replies_total")
        self.worker("metered", http_worker("w-metered"))
        for i in range(3):
            r, body = self.request("GET", "/m/%d" % i, "metered.example.com")
            self.assertEqual(r.status, 200, body)
        r, body = self.request("GET", "/", "nobody-metered.example.com")
        self.assertEqual(r.status, 503, body)
        # A request held by its worker is in flight; its client leaves, so the reply that comes
        # later is for no request in progress.
        hold = self.worker("held.example.com", "hold")
        s = socket.create_connection(("127.0.0.1", self.m2.port), timeout=10)
        s.sendall(b"GET /slow HTTP/1.1\r\nHost: held.example.com\r\n\r\n")
        job = hold.next_job(10.0)
        self.assertIsNotNone(job, "the request never reached the worker")
        wait_until("one request in flight",
                   lambda: sample(a.scrape(), "scale0_mongrel2_requests_in_flight") == 1, 5.0)
        s.close()
        wait_until("the request forgotten",
                   lambda: sample(a.scrape(), "scale0_mongrel2_requests_in_flight") == 0, 5.0)
        hold.reply(job, 200, b"", [b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlate"])
        wait_until("the late reply counted",
                   lambda: sample(a.scrape(), "scale0_mongrel2_broker_unknown_replies_total")
                   == unknown + 1, 5.0)
        text = a.scrape()
        self.assertEqual(sample(text, "scale0_mongrel2_requests_total", route="metered", code="200"),
                         3)
        self.assertEqual(sample(text, "scale0_mongrel2_requests_total", route="host", code="503"),
                         (sample(before, "scale0_mongrel2_requests_total", route="host", code="503")
                          or 0) + 1)
        self.assertEqual(sample(text, "scale0_mongrel2_request_duration_seconds_count",
                                route="metered"), 3)
        self.assertEqual(sample(text, "scale0_mongrel2_request_duration_seconds_bucket",
                                route="metered", le="+Inf"), 3)
        self.assertGreater(sample(text, "scale0_mongrel2_request_duration_seconds_sum",
                                  route="metered"), 0)
        self.assertEqual(sample(text, "scale0_mongrel2_malformed_messages_total"), 0)
        check = metrics_format.MetricsFormatTest
        check.promtool(self, text, "the Mongrel2 front door")
        types = check.check_conventions(self, text, "the Mongrel2 front door")
        check.check_process_and_build(self, text, "the Mongrel2 front door")
        self.assertEqual(types.get("scale0_mongrel2_requests_total"), "counter")
        self.assertEqual(types.get("scale0_mongrel2_request_duration_seconds"), "histogram")
        self.assertEqual(types.get("scale0_mongrel2_requests_in_flight"), "gauge")
        for path, want in (("/healthz", 200), ("/readyz", 200), ("/nothing", 404)):
            self.assertEqual(http_get(a.metrics, path)[0], want, path)


class Mongrel2MetricsTest(unittest.TestCase):
    """/metrics of `scale0 mongrel2` with a stand-in for Mongrel2 (a PUSH and a SUB of our own),
    so that messages Mongrel2 never sends can be sent (no Mongrel2 needed)."""

    def setUp(self):
        if not binary_available():
            self.skipTest("scale0 binary not found at %s (set SCALE0_BIN)" % BIN)
        self.ctx = zmq.Context()
        self.addCleanup(self.ctx.destroy, linger=0)

    def start(self, extra):
        send = "tcp://127.0.0.1:%d" % free_port()
        push = self.ctx.socket(zmq.PUSH)
        self.addCleanup(push.close, linger=0)
        push.bind(send)
        a = Adapter(send, "tcp://127.0.0.1:%d" % free_port(), "tcp://127.0.0.1:%d" % free_port(),
                    extra).start()
        self.addCleanup(a.proc.cleanup)
        return a, push

    def test_malformed_messages_are_counted(self):
        a, push = self.start(["--metrics-listen", "127.0.0.1:0"])
        def ns(b):
            return b"%d:%s," % (len(b), b)
        for junk in (b"not a mongrel2 message",  # unreadable
                     b"uuid 1 / " + ns(b"{}") + ns(b""),  # no METHOD
                     b"uuid 2 @* " + ns(b'{"METHOD":"JSON"}') + ns(b'{"type":"data"}')):  # not HTTP
            push.send(junk)
        wait_until("three messages dropped",
                             lambda: sample(a.scrape(), "scale0_mongrel2_malformed_messages_total")
                             == 3, 5.0)
        text = a.scrape()
        self.assertEqual(sample(text, "scale0_mongrel2_requests_in_flight"), 0)
        self.assertNotIn("scale0_mongrel2_requests_total{", text, "nothing was answered")
        metrics_format.MetricsFormatTest.promtool(self, text, "the Mongrel2 front door, idle")
        self.assertIn("scale0_mongrel2_broker_unknown_replies_total",
                      families(text)[0])

    def test_protected_mode_refuses_a_public_metrics_address(self):
        p = subprocess.run([BIN, "mongrel2", "--send-spec", "tcp://127.0.0.1:1", "--recv-spec",
                            "tcp://127.0.0.1:2", "--metrics-listen", "0.0.0.0:0"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn(b"protected mode", p.stderr)
        a, _ = self.start(["--metrics-listen", "0.0.0.0:0", "--insecure"])
        self.assertRegex(a.metrics, r"^0\.0\.0\.0:\d+$")
        self.assertEqual(http_get("127.0.0.1:" + a.metrics.rsplit(":", 1)[1], "/readyz")[0], 200)


class Mongrel2SignalTest(unittest.TestCase):
    """SIGINT and SIGTERM stop `scale0 mongrel2` cleanly (no Mongrel2 needed)."""

    def test_signals_stop_cleanly(self):
        if not binary_available():
            self.skipTest("scale0 binary not found at %s (set SCALE0_BIN)" % BIN)
        for sig in (signal.SIGINT, signal.SIGTERM):
            a = Adapter("tcp://127.0.0.1:%d" % free_port(), "tcp://127.0.0.1:%d" % free_port(),
                        "tcp://127.0.0.1:%d" % free_port())
            a.start()
            try:
                self.assertIn("broker=tcp://127.0.0.1:", a.ready_line)
                a.proc.signal(sig)
                self.assertEqual(a.proc.wait(5.0), 0, a.proc.stderr_text())
            finally:
                a.proc.cleanup()

    def test_bad_route_is_refused(self):
        if not binary_available():
            self.skipTest("scale0 binary not found at %s (set SCALE0_BIN)" % BIN)
        p = subprocess.run([BIN, "mongrel2", "--send-spec", "tcp://127.0.0.1:1", "--recv-spec",
                            "tcp://127.0.0.1:2", "--route", "nonsense"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=30)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn(b"route", p.stderr)


if __name__ == "__main__":
    unittest.main()
