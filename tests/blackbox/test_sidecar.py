# SPDX-License-Identifier: Apache-2.0
"""`scale0 worker --http URL`: the sidecar in front of an existing HTTP/1.1 app (docs/http.md).

The app is tests/blackbox/http_app.py (a subprocess, so it can die and come back on its port); the
requests are the HTTP encoding sent by a plain S0/1 client, the replies are decoded here.
"""

import json
import os
import select
import signal
import unittest

from harness import HERE, PYTHON, VERBOSE, Proc, Scale0TestCase, free_port, now, run_cli

EXAMPLE = os.environ.get("SCALE0_HTTP_EXAMPLE", "")


def encode_request(method, target, headers=(), body=b""):
    lines = ["%s %s HTTP/1.1" % (method, target)]
    lines += ["%s: %s" % (k, v) for k, v in headers]
    lines.append("Content-Length: %d" % len(body))
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class HttpResponse:
    def __init__(self, status, reason, headers, body):
        self.status, self.reason, self.headers, self.body = status, reason, headers, body

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def names(self):
        return [k.lower() for k, _ in self.headers]

    def json(self):
        return json.loads(self.body.decode("latin-1"))

    def __repr__(self):
        return "HttpResponse(%d %r, %r, %r)" % (self.status, self.reason, self.headers, self.body[:200])


def decode_response(wire, head=False):
    """The response encoding: status line, fields, a blank line, Content-Length bytes of body."""
    top, sep, body = wire.partition(b"\r\n\r\n")
    assert sep, "no end of header block in %r" % (wire[:300],)
    lines = top.decode("latin-1").split("\r\n")
    version, code, reason = (lines[0].split(" ", 2) + [""])[:3]
    assert version == "HTTP/1.1", lines[0]
    headers = []
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers.append((k, v.strip()))
    r = HttpResponse(int(code), reason, headers, body)
    lengths = [v for k, v in headers if k.lower() == "content-length"]
    if not head:
        assert len(lengths) == 1, "exactly one Content-Length: %r" % (headers,)
        assert int(lengths[0]) == len(body), "Content-Length %s, body %d bytes" % (lengths[0], len(body))
    return r


class App:
    """http_app.py on 127.0.0.1 (port 0: a free one); restartable on the same port."""

    def __init__(self, port=0):
        self.port = port
        self.proc = None

    def start(self, timeout=10.0):
        self.proc = Proc([PYTHON, os.path.join(HERE, "http_app.py"), str(self.port)], capture_stdout=True)
        fd = self.proc.p.stdout.fileno()
        buf = b""
        deadline = now() + timeout
        while now() < deadline and b"\n" not in buf:
            r, _, _ = select.select([fd], [], [], 0.1)
            if r:
                chunk = os.read(fd, 256)
                if not chunk:
                    break
                buf += chunk
        assert buf.startswith(b"ready "), "http_app did not start: %r %s" % (buf, self.proc.stderr_text())
        self.port = int(buf.split()[1])
        return self

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def kill(self):
        if self.proc:
            self.proc.signal(signal.SIGKILL)
            self.proc.wait(10)
            self.proc.cleanup()
            self.proc = None


class SidecarTest(Scale0TestCase):

    def app(self):
        a = App().start()
        self.addCleanup(a.kill)
        return a

    def sidecar(self, broker, url, service="web", concurrency=None, extra=(), wait=True, interval=200):
        args = ["--http", url, "--health-interval", str(interval), "--health-timeout", "500"] + list(extra)
        w = self.scale0_worker(broker, [service], name="side-1", concurrency=concurrency, echo=False,
                               extra=args)
        self.addCleanup(self._dump, w)
        if wait:
            self.wait_mmi(broker, service, timeout=15.0)
        self.assertTrue(w.alive(), "sidecar exited: %s" % w.proc.stderr_text())
        return w

    def _dump(self, w):
        if VERBOSE or self._failed():
            print("\n----- sidecar stderr -----\n%s\n-----" % w.proc.stderr_text()[-6000:])

    def call(self, client, method, target, headers=(("Host", "www.example.com"),), body=b"",
             service="web", timeout_ms=5000):
        r = client.request(service, encode_request(method, target, headers, body), timeout_ms=timeout_ms,
                           wait=timeout_ms / 1000.0 + 5)
        return r

    def http(self, client, method, target, **kw):
        r = self.call(client, method, target, **kw)
        self.assertEqual(r.status, 200, r)
        return decode_response(b"".join(r.body), head=(method == "HEAD"))

    def test_request_and_response_go_through(self):
        b = self.start_broker()
        app = self.app()
        self.sidecar(b, app.url + "/base/")
        c = self.client(b)
        headers = (("Host", "www.example.com:8080"), ("X-Test", "one"), ("X-Test", "two"),
                   ("Content-Type", "text/plain"), ("Connection", "X-Hop"), ("X-Hop", "drop me"),
                   ("Keep-Alive", "timeout=5"))
        res = self.http(c, "POST", "/echo?x=1&y=%20", headers=headers, body=b"hello\x00body")
        self.assertEqual((res.status, res.reason), (200, "OK"), res)
        self.assertEqual(res.header("X-App"), "yes")
        self.assertEqual(res.header("Content-Type"), "application/json")
        self.assertNotIn("keep-alive", res.names(), "hop-by-hop fields of the app are dropped")
        self.assertNotIn("connection", res.names())
        seen = res.json()
        self.assertEqual(seen["method"], "POST")
        self.assertEqual(seen["target"], "/base/echo?x=1&y=%20", "under the base path, query kept")
        self.assertEqual(seen["body"], "hello\x00body")
        names = [k.lower() for k, _ in seen["headers"]]
        self.assertIn(["Host", "www.example.com:8080"], seen["headers"], "Host as the client sent it")
        self.assertEqual([v for k, v in seen["headers"] if k == "X-Test"], ["one", "two"])
        for hop in ("connection", "keep-alive", "x-hop", "transfer-encoding"):
            self.assertNotIn(hop, names)
        self.assertEqual(names.count("content-length"), 1)
        self.assertEqual(r_message(self.call(c, "GET", "/")), b"side-1", "200 replies name the worker")

        # the app's status, reason and headers come back as they are
        res = self.http(c, "GET", "/status/418")
        self.assertEqual((res.status, res.reason, res.header("X-Custom")), (418, "Custom Reason", "yes"))
        res = self.http(c, "DELETE", "/status/503")
        self.assertEqual(res.status, 503, "an app's own 503 is a response like any other")
        # HEAD: the app's Content-Length, no body
        res = self.http(c, "HEAD", "/x")
        self.assertEqual(res.body, b"")
        self.assertGreater(int(res.header("Content-Length")), 0, res)
        # a job that is not an encoded request: 400 from the worker, the app never sees it
        r = c.request("web", b"not http at all", timeout_ms=5000, wait=10.0)
        self.assertEqual(r.status, 400, r)

    def test_keep_alive_connections_are_reused(self):
        b = self.start_broker()
        app = self.app()
        self.sidecar(b, app.url, concurrency=2, interval=60000)  # one probe connection, at start
        c = self.client(b)
        conns = set()
        for i in range(12):
            seen = self.http(c, "GET", "/n/%d" % i).json()
            self.assertEqual(seen["target"], "/n/%d" % i)
            conns.add(seen["conn"])
        self.assertLessEqual(len(conns), 2, "12 requests on at most --concurrency connections: %r" % conns)
        self.assertLessEqual(self.http(c, "GET", "/last").json()["connections"], 3)
        # pipelined: several requests in flight at once still get their own answers
        rids = {c.send_request("web", encode_request("GET", "/p/%d" % i, [("Host", "h")]), 5000): i
                for i in range(8)}
        for rid, i in rids.items():
            r = c.get_reply(rid, 10.0)
            self.assertIsNotNone(r)
            self.assertEqual(r.status, 200, r)
            self.assertEqual(decode_response(b"".join(r.body)).json()["target"], "/p/%d" % i)

    def test_chunked_and_close_delimited_responses(self):
        b = self.start_broker()
        app = self.app()
        self.sidecar(b, app.url)
        c = self.client(b)
        res = self.http(c, "POST", "/chunked", body=b"x" * 100)
        self.assertNotIn("transfer-encoding", res.names(), "de-chunked")
        self.assertEqual(res.json()["body"], "x" * 100)
        res = self.http(c, "GET", "/close")
        self.assertNotIn("connection", res.names())
        first = res.json()["conn"]
        res = self.http(c, "GET", "/after-close")
        self.assertNotEqual(res.json()["conn"], first, "a new connection after the app closed one")

    def test_app_down_then_back(self):
        b = self.start_broker(no_worker_timeout=300)
        app = self.app()
        w = self.sidecar(b, app.url)
        c = self.client(b)
        self.assertEqual(self.http(c, "GET", "/warm").status, 200)
        # the app dies holding a request: that request gets 502
        rid = c.send_request("web", encode_request("GET", "/slow?ms=5000", [("Host", "h")]), 10000)
        self.assertIsNone(c.get_reply(rid, 0.7), "answered before the app died")
        app.kill()
        r = c.get_reply(rid, 8.0)
        self.assertIsNotNone(r, "no reply for the request in flight")
        self.assertEqual(r.status, 502, r)
        self.assertIn(b"127.0.0.1:%d" % app.port, r.message)
        # then the worker leaves: the broker answers 503 (no worker) instead of more 502s
        statuses = []
        t0 = now()
        for _ in range(100):
            s = self.call(c, "GET", "/", timeout_ms=3000).status
            statuses.append(s)
            if statuses[-3:] == [503, 503, 503] or now() - t0 > 10:
                break
        self.assertEqual(statuses[-3:], [503, 503, 503], statuses)
        self.assertTrue(set(statuses) <= {502, 503}, statuses)
        self.assertLessEqual(statuses.count(502), 2, "at most a race's worth of 502s: %r" % statuses)
        self.assertEqual(self.mmi_service(b, "web"), b"404")
        self.assertTrue(w.alive(), "the sidecar waits for the app, it does not exit")
        # the app comes back on its port: a worker registers again and requests succeed
        app.start()
        self.wait_mmi(b, "web", timeout=10.0)
        res = self.http(c, "GET", "/again")
        self.assertEqual(res.json()["target"], "/again")
        err = w.proc.stderr_text()
        self.assertIn("stopping the worker", err)
        self.assertIn("answers: taking work", err)
        self.assertEqual(w.proc.terminate(10.0), 0, "SIGTERM while serving: a clean exit")
        self.wait_mmi(b, "web", expect=b"404", timeout=5.0)

    def test_slow_app_times_out_at_the_deadline_and_keeps_its_worker(self):
        b = self.start_broker()
        app = self.app()
        w = self.sidecar(b, app.url)
        c = self.client(b)
        t0 = now()
        r = self.call(c, "GET", "/slow?ms=3000", timeout_ms=500)
        self.assertEqual(r.status, 504, "the broker's or the worker's 504, whichever is first: %r" % r)
        self.assertLess(now() - t0, 2.5)
        # the app still accepts connections: the worker stays, and is free again at once
        t0 = now()
        self.assertEqual(self.http(c, "GET", "/next").json()["target"], "/next")
        self.assertLess(now() - t0, 2.0, "the handler gave up on the slow request at its deadline")
        self.assertIn("did not answer within", w.proc.stderr_text())
        self.assertNotIn("stopping the worker", w.proc.stderr_text())

    def test_waits_for_an_app_that_is_not_up_yet(self):
        b = self.start_broker(no_worker_timeout=200)
        app = App()
        app.port = free_port()
        self.addCleanup(app.kill)
        w = self.sidecar(b, app.url, extra=["--health-path", "/healthz"], wait=False)
        c = self.client(b)
        for _ in range(5):
            self.assertEqual(self.call(c, "GET", "/").status, 503)
        self.assertTrue(w.alive(), w.proc.stderr_text())
        app.start()
        self.wait_mmi(b, "web", timeout=10.0)
        self.assertEqual(self.http(c, "GET", "/up").json()["target"], "/up")
        self.assertIn("not answering", w.proc.stderr_text())
        app.kill()
        self.wait_mmi(b, "web", expect=b"404", timeout=10.0)
        self.assertEqual(w.proc.terminate(10.0), 0, "SIGTERM while waiting for the app: a clean exit")

    def test_bad_options_are_refused(self):
        for url, why in (("https://127.0.0.1:1", "https is not supported"),
                         ("ftp://x:1", "must start with http://"),
                         ("http://:80", "no host"),
                         ("http://h:99999", "port must be 1-65535"),
                         ("http://h:1/p?q", "no query"),
                         ("http://u@h:1", "no user info")):
            p = run_cli(["worker", "--service", "x", "--http", url], timeout=10)
            self.assertNotEqual(p.returncode, 0, url)
            self.assertIn(why.encode(), p.stderr, (url, p.stderr))
        p = run_cli(["worker", "--service", "x", "--http", "http://h:1", "--echo"], timeout=10)
        self.assertNotEqual(p.returncode, 0)
        p = run_cli(["worker", "--service", "x", "--health-path", "/h", "--echo"], timeout=10)
        self.assertNotEqual(p.returncode, 0, "--health-path needs --http")
        p = run_cli(["worker", "--service", "x", "--http", "http://h:1", "--health-path", "h"], timeout=10)
        self.assertIn(b"starting with '/'", p.stderr)
        p = run_cli(["worker", "--help"], timeout=10)
        self.assertIn(b"--http", p.stdout)
        self.assertIn(b"--health-path", p.stdout)

    @unittest.skipUnless(EXAMPLE and os.access(EXAMPLE, os.X_OK), "SCALE0_HTTP_EXAMPLE not set")
    def test_native_example_worker(self):
        b = self.start_broker()
        p = Proc([EXAMPLE, "--service", "native", "--broker", b.backend])
        self.addCleanup(p.cleanup)
        self.wait_mmi(b, "native", timeout=15.0)
        c = self.client(b)
        res = self.http(c, "GET", "/", service="native")
        self.assertEqual((res.status, res.body), (200, b"hello from scale0\n"))
        res = self.http(c, "POST", "/anything", service="native", body=b"echo me",
                        headers=[("Host", "h"), ("Content-Type", "text/x-test")])
        self.assertEqual((res.status, res.body, res.header("Content-Type")), (200, b"echo me", "text/x-test"))
        self.assertEqual(self.http(c, "GET", "/nope", service="native").status, 404)
        self.assertEqual(self.http(c, "PUT", "/", service="native").status, 405)
        self.assertEqual(self.call(c, "GET", "/", service="native", headers=[]).status, 200)
        self.assertEqual(c.request("native", b"junk", timeout_ms=3000).status, 400)
        self.assertEqual(p.terminate(10.0), 0)


def r_message(reply):
    return reply.message


if __name__ == "__main__":
    unittest.main()
