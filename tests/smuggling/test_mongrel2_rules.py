# SPDX-License-Identifier: Apache-2.0
"""The front door's request rules marked (M2), through a real Mongrel2:

    raw-socket client -> mongrel2 -> scale0 mongrel2 -> scale0 broker -> a recording S0/1 worker

The worker (a native S0/1 Python worker) records the service each request was sent to and the
encoded request bytes (docs/http.md, "The HTTP encoding"), and answers `200 ok`.

What Mongrel2 itself does to these vectors (seen with mongrel2 1.12, tnetstring handler), so the
assertions below are about what scale0 mongrel2 can know:
  * it passes two Host fields as a list, and Host values with userinfo, paths, spaces or
    %-escapes unchanged;
  * it strips the scheme of an absolute-form target: `GET http://app.test/admin/x` reaches the
    handler as URI/PATH `//app.test/admin/x` (`ftp://` too), with the Host field unchanged;
  * it does not normalise paths (`/./admin`, `//admin`, `/%61dmin`, `/x/../admin` arrive as sent);
  * it answers `/%zz` with its own 400 and `OPTIONS *` / `GET a/b` with its own 404 (the handler
    sees nothing);
  * it drops the client's X-Forwarded-For and sends its own (the peer address); Forwarded,
    X-Real-IP, X-Forwarded-Host and X-Forwarded-Proto pass through as the client sent them.

Skipped when mongrel2 / m2sh are absent. Everything on 127.0.0.1; every wait is bounded.
"""

import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "blackbox"))
sys.path.insert(0, HERE)

import zmq  # noqa: E402

from harness import BIN, Broker, NativeWorker, Proc, binary_available, free_port, now  # noqa: E402
from test_response_path import chunk, exchange, parse_client_response  # noqa: E402


def _find(names, dirs):
    for n in names:
        for d in dirs:
            p = os.path.join(d, n)
            if os.access(p, os.X_OK):
                return p
        p = shutil.which(n)
        if p:
            return p
    return None


MONGREL2 = _find(["mongrel2"], ["/usr/bin", "/usr/sbin"])
M2SH = _find(["m2sh"], ["/usr/bin", "/usr/sbin"])
SERVER_UUID = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
IDENTS = {"main": "11111111-2222-4333-8444-555555555551", "trusted": "11111111-2222-4333-8444-555555555552",
          "under": "11111111-2222-4333-8444-555555555553"}
SERVICES = ["app.test", "admin.internal", "other.test", "trusted.test", "under.test", "r1.test"]
ROUTE = ["--route", "prefix=/admin,service=admin.internal", "--timeout", "2000"]
PEER = "127.0.0.1"


class Mongrel2:
    """A Mongrel2 in a temp dir (its chroot) with three tnetstring handlers: `main` for every host
    but trusted.test (-> `trusted`) and under.test (-> `under`)."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="scale0-m2rules-")
        for d in ("run", "logs", "tmp"):
            os.mkdir(os.path.join(self.dir, d))
        self.port = free_port()
        self.specs = {k: ("tcp://127.0.0.1:%d" % free_port(), "tcp://127.0.0.1:%d" % free_port()) for k in IDENTS}
        self.proc = None

    def config(self):
        handlers = "\n".join(
            "%s = Handler(send_spec='%s', send_ident='%s', recv_spec='%s', recv_ident='', protocol='tnetstring')"
            % (k, self.specs[k][0], IDENTS[k], self.specs[k][1]) for k in IDENTS)
        return handlers + """
srv = Server(uuid="%(uuid)s", access_log="/logs/access.log", error_log="/logs/error.log", chroot="./",
    default_host="localhost", name="rules", pid_file="/run/mongrel2.pid", port=%(port)d,
    bind_addr="127.0.0.1",
    hosts=[Host(name="localhost", routes={'/': main}),
           Host(name="trusted.test", matching="trusted.test", routes={'/': trusted}),
           Host(name="under.test", matching="under.test", routes={'/': under})])
settings = {"server.daemonize": 0, "zeromq.threads": 1}
servers = [srv]
""" % dict(uuid=SERVER_UUID, port=self.port)

    def start(self, timeout=10.0):
        conf = os.path.join(self.dir, "mongrel2.conf")
        with open(conf, "w") as f:
            f.write(self.config())
        env = dict(os.environ, LOGNAME=os.environ.get("LOGNAME") or "scale0-test")
        load = subprocess.run([M2SH, "load", "-config", conf, "-db", "config.sqlite"], cwd=self.dir, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=20)
        if load.returncode != 0 or b"ERROR" in load.stdout:
            raise AssertionError("m2sh load failed (%d): %s" % (load.returncode, load.stdout[-3000:]))
        self.proc = Proc([MONGREL2, "config.sqlite", SERVER_UUID], cwd=self.dir)
        deadline = now() + timeout
        while now() < deadline and self.proc.alive():
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError("mongrel2 did not listen on %d (rc=%r): %s" % (self.port, self.proc.poll(),
                                                                           self.proc.stderr_text()[-2000:]))

    def stop(self):
        if self.proc:
            self.proc.signal(signal.SIGINT)
            if self.proc.wait(3.0) is None:
                self.proc.kill()
            self.proc.cleanup()
        shutil.rmtree(self.dir, ignore_errors=True)


class Adapter:
    """A `scale0 mongrel2` process; start() waits (bounded) for its ready line."""

    def __init__(self, specs, broker, extra=()):
        self.args = [BIN, "mongrel2", "--send-spec", specs[0], "--recv-spec", specs[1], "--broker", broker] \
            + list(extra)
        self.proc = None

    def start(self, timeout=5.0):
        import select
        self.proc = Proc(self.args, capture_stdout=True)
        fd = self.proc.p.stdout.fileno()
        buf = b""
        deadline = now() + timeout
        while now() < deadline and b"\n" not in buf:
            r, _, _ = select.select([fd], [], [], 0.05)
            if r:
                part = os.read(fd, 4096)
                if not part:
                    break
                buf += part
            elif not self.proc.alive():
                break
        if not buf.startswith(b"ready send="):
            err = self.proc.stderr_text()
            self.proc.cleanup()
            raise AssertionError("scale0 mongrel2 %r did not start (%r): %s" % (self.args[2:], buf, err[-1500:]))
        return self

    def cleanup(self):
        if self.proc:
            self.proc.cleanup()


class Enc:
    """One encoded request as the worker received it."""

    def __init__(self, service, raw):
        self.service, self.raw = service, raw
        head, _, self.body = raw.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        self.method, self.target, self.version = lines[0].decode("latin-1").split(" ")
        self.headers = []
        for ln in lines[1:]:
            k, _, v = ln.partition(b":")
            self.headers.append((k.decode("latin-1"), v.strip().decode("latin-1")))

    def get_all(self, name):
        n = name.lower()
        return [v for k, v in self.headers if k.lower() == n]

    def names(self):
        return [k.lower() for k, _ in self.headers]

    def __repr__(self):
        return "Enc(service=%r, %r)" % (self.service, self.raw[:600])


@unittest.skipUnless(MONGREL2 and M2SH, "Mongrel2 is not installed (mongrel2 and m2sh)")
class Mongrel2RequestRules(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        if not binary_available():
            raise unittest.SkipTest("scale0 binary not found at %s (set SCALE0_BIN)" % BIN)
        cls.m2 = Mongrel2()
        cls.broker = Broker(no_worker_timeout=300, heartbeat_interval=1000)
        cls.adapters = {}
        cls.ctx = zmq.Context()
        cls.seen = queue.Queue()
        cls.answers = {}
        cls.worker = None
        try:
            cls.m2.start()
            cls.broker.start()

            def mode(job):
                raw = b"".join(job.body)
                cls.seen.put(Enc(job.service.decode("latin-1"), raw))
                target = raw.split(b"\r\n", 1)[0].split(b" ")[1].decode("latin-1")
                return (200, b"rec", [cls.answers.get(target,
                                                      b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")])

            cls.worker = NativeWorker(cls.ctx, cls.broker.backend, SERVICES, concurrency=4, mode=mode)
            cls.worker.start()
            cls.worker.wait_welcome(10.0)
            cls.adapters["main"] = Adapter(cls.m2.specs["main"], cls.broker.frontend, ROUTE).start()
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        for a in cls.adapters.values():
            a.cleanup()
        if cls.worker is not None:
            cls.worker.stop()
        cls.ctx.destroy(linger=0)
        cls.broker.kill()
        cls.broker.cleanup()
        cls.m2.stop()

    def adapter(self, key, extra):
        """The adapter on handler `key` with extra flags (started on first use)."""
        if key not in self.adapters:
            self.adapters[key] = Adapter(self.m2.specs[key], self.broker.frontend, ROUTE + extra).start()
            time.sleep(0.2)  # its PULL connects to Mongrel2 before the first request
        return self.adapters[key]

    def setUp(self):
        for _ in range(1000):  # leftovers of a previous test
            try:
                self.seen.get_nowait()
            except queue.Empty:
                break

    # --- helpers ------------------------------------------------------------------------------
    def send(self, head, body=b""):
        """One request (head lines joined with CRLF, `Connection: close` added) on a fresh
        connection to Mongrel2; the parsed response (read to EOF, bounded)."""
        req = head.replace(b"|", b"\r\n") + b"\r\nConnection: close\r\n\r\n" + body
        raw = exchange("127.0.0.1:%d" % self.m2.port, req, timeout=3.0)
        return parse_client_response(raw, head.split(b" ", 1)[0].decode())

    def forwarded(self, head, body=b""):
        """The request must be served (200) and reach the worker: its encoding."""
        r = self.send(head, body)
        self.assertEqual(r.status, 200, "%r -> %r" % (head, r))
        try:
            enc = self.seen.get(timeout=2.0)
        except queue.Empty:
            self.fail("served but the worker recorded nothing: %r" % (head,))
        self.check_encoding(enc)
        return enc

    def refused(self, head, status=400, why=""):
        """Answered `status` and nothing reached the worker."""
        r = self.send(head)
        self.assertEqual(r.status, status, "%s: %r -> %r" % (why, head, r))
        if not (r.get("Server") or "").startswith("Mongrel2"):
            # The handler's own error answer (docs/http.md; "400 and close" of the rules): plain
            # text, one line, X-Request-Id, Connection: close.
            self.assertEqual(r.get("Content-Type"), "text/plain; charset=utf-8", r)
            self.assertTrue(r.get("X-Request-Id"), r)
            self.assertEqual(r.get_all("Connection"), ["close"], r)
            self.assertTrue(r.body.endswith(b"\n") and r.body.count(b"\n") == 1, r)
            self.assertEqual(r.rest, b"", r)
        try:
            enc = self.seen.get(timeout=0.2)
            self.fail("%s: a refused request reached the worker: %r" % (why, enc))
        except queue.Empty:
            pass
        return r

    def check_encoding(self, enc):
        # Rule 20: exactly one Content-Length, the body's length, the last field.
        self.assertEqual(enc.version, "HTTP/1.1", enc)
        self.assertEqual(enc.get_all("Content-Length"), [str(len(enc.body))], enc)
        self.assertEqual(enc.names()[-1], "content-length", "Content-Length must be the last field: %r" % (enc,))

    # --- rules 10 and 11: Host ------------------------------------------------------------------
    def test_r10_two_differing_host_fields(self):
        # Rule 10 (RFC 9112 §3.2): two Host fields -> 400. Mongrel2 passes them as a list.
        self.refused(b"GET /a HTTP/1.1|Host: app.test|Host: other.test", why="two Host")

    def test_r10_two_identical_host_fields(self):
        # Rule 10: two Host fields with the same value are still two -> 400.
        self.refused(b"GET /a HTTP/1.1|Host: app.test|Host: app.test", why="two equal Host")

    def test_r10_two_host_fields_http10(self):
        # Rule 10: HTTP/1.0 may carry zero or one Host, never two.
        self.refused(b"GET /a HTTP/1.0|Host: app.test|Host: other.test", why="two Host, HTTP/1.0")

    def test_r11_host_with_userinfo(self):
        # Rule 11: userinfo in Host -> 400 (RFC 9110 §4.2.4 forbids userinfo in http URIs).
        self.refused(b"GET /a HTTP/1.1|Host: admin@app.test", why="Host userinfo")

    def test_r11_host_with_path_space_escape(self):
        # Rule 11: a path, a space or a %-escape in Host -> 400.
        for host in (b"app.test/admin", b"app test", b"app%2etest", b"app.test:80:80", b"app.test:123456"):
            with self.subTest(host=host):
                self.refused(b"GET /a HTTP/1.1|Host: " + host, why="Host %r" % host)

    def test_r11_host_with_port_is_fine(self):
        # Rule 11 + 21 (control): host:port is valid; routed by the host, the field passed byte for byte.
        enc = self.forwarded(b"GET /a HTTP/1.1|Host: app.test:8080")
        self.assertEqual(enc.service, "app.test")
        self.assertEqual(enc.get_all("Host"), ["app.test:8080"])

    # --- rule 12: absolute-form -------------------------------------------------------------------
    def assertConsistentRoute(self, head):
        """Mongrel2 turns `http://auth/path` into the path `//auth/path`, so scale0 mongrel2 cannot tell
        the two apart. Whatever it makes of it, the prefix route must not be bypassed: the worker gets
        an origin-form normalised target, and that target is under /admin exactly when the request
        was routed to admin.internal (rules 12 and 14)."""
        r = self.send(head)
        if r.status == 400:
            self.assertTrue(self.seen.empty(), "refused but forwarded")
            return None
        self.assertEqual(r.status, 200, "%r -> %r" % (head, r))
        enc = self.seen.get(timeout=2.0)
        self.check_encoding(enc)
        path = enc.target.split("?", 1)[0]
        self.assertTrue(path.startswith("/") and not path.startswith("//"), enc)
        self.assertNotIn("/../", path + "/", enc)
        self.assertNotIn("/./", path + "/", enc)
        under_admin = path == "/admin" or path.startswith("/admin/")
        self.assertEqual(under_admin, enc.service == "admin.internal",
                         "the worker's target and the route disagree (prefix bypass): %r" % (enc,))
        return enc

    def test_r12_absolute_form_admin(self):
        # Rule 12/14: `GET http://app.test/admin/x` cannot reach /admin/x outside the admin route.
        enc = self.assertConsistentRoute(b"GET http://app.test/admin/x HTTP/1.1|Host: app.test")
        if enc is not None and enc.service == "admin.internal":
            self.assertEqual(enc.target, "/admin/x")  # rule 12: authority replaces Host, origin-form target
            self.assertEqual(enc.get_all("Host"), ["app.test"])

    def test_r12_absolute_form_other_authority(self):
        # Rule 12: the authority differs from Host; still no bypass of the prefix route.
        self.assertConsistentRoute(b"GET http://other.test/admin/x HTTP/1.1|Host: app.test")

    def test_r12_absolute_form_userinfo_and_scheme(self):
        # Rule 12: userinfo in the authority -> 400 (if recognised as absolute-form); a non-http
        # scheme is stripped by Mongrel2 (`ftp://` arrives as `//`). Either way no bypass.
        for head in (b"GET http://u@app.test/admin/x HTTP/1.1|Host: app.test",
                     b"GET ftp://app.test/admin/x HTTP/1.1|Host: app.test",
                     b"GET http://app.test HTTP/1.1|Host: app.test"):
            with self.subTest(head=head):
                self.assertConsistentRoute(head)

    def test_r12_double_slash_path_is_consistent(self):
        # Rules 12/14: the origin-form twin of the above (`//app.test/admin/x`).
        self.assertConsistentRoute(b"GET //app.test/admin/x HTTP/1.1|Host: app.test")

    # --- rule 14: path normalisation ----------------------------------------------------------------
    def normalised(self, target, service, want):
        enc = self.forwarded(b"GET " + target + b" HTTP/1.1|Host: app.test")
        self.assertEqual((enc.service, enc.target), (service, want), "%r -> %r" % (target, enc))

    def test_r14_dot_segment(self):
        # Rule 14 (RFC 3986 §5.2.4): `/./admin` is /admin, caught by prefix=/admin.
        self.normalised(b"/./admin", "admin.internal", "/admin")

    def test_r14_double_slash(self):
        # Rule 14: runs of `/` merge.
        self.normalised(b"//admin", "admin.internal", "/admin")

    def test_r14_percent_encoded_unreserved(self):
        # Rule 14 (RFC 3986 §6.2.2.2): `%61` is `a`.
        self.normalised(b"/%61dmin", "admin.internal", "/admin")

    def test_r14_dot_dot_segment(self):
        # Rule 14: `/x/../admin` is /admin.
        self.normalised(b"/x/../admin", "admin.internal", "/admin")

    def test_r14_encoded_dot_dot(self):
        # Rule 14: `%2e%2e` is decoded (unreserved) and then removed as a dot segment.
        self.normalised(b"/%2e%2e/admin", "admin.internal", "/admin")

    def test_r14_dot_dot_above_root(self):
        # Rule 14: `..` never climbs above the root.
        self.normalised(b"/../admin", "admin.internal", "/admin")

    def test_r14_query_untouched(self):
        # Rule 14: the path is normalised, the query kept as sent.
        self.normalised(b"/x/%2E%2E/admin/./y?q=/../x&r=%61", "admin.internal", "/admin/y?q=/../x&r=%61")

    def test_r14_encoded_slash_refused(self):
        # docs/http.md: an encoded slash is refused (workers disagree on it): 400, nothing forwarded.
        self.refused(b"GET /%2fadmin HTTP/1.1|Host: app.test", why="encoded slash")

    def test_r14_mixed(self):
        # Rule 14: decoding plus merging plus upper-case hex of a reserved escape.
        self.normalised(b"/%41dmin//%61dmin/%7euser/%3a", "app.test", "/Admin/admin/~user/%3A")
        self.normalised(b"/admin/%7euser//x", "admin.internal", "/admin/~user/x")

    def test_r14_prefix_boundary(self):
        # Prefix rule (docs/http.md): /adminx is not under /admin.
        self.normalised(b"/%61dminx", "app.test", "/adminx")

    def test_r14_bad_percent_refused_by_mongrel2(self):
        # Rule 14 (`%` without two hex digits -> 400): Mongrel2's own parser answers 400 before the
        # handler sees anything.
        self.refused(b"GET /%zz HTTP/1.1|Host: app.test", 400, "bad %-escape")

    def test_r13_asterisk_and_relative_refused_by_mongrel2(self):
        # Rule 13: Mongrel2 routes by path and answers `OPTIONS *` and `GET a/b` with its own 404;
        # nothing reaches the worker (the handler never sees them).
        self.refused(b"OPTIONS * HTTP/1.1|Host: app.test", 404, "OPTIONS *")
        self.refused(b"GET a/b HTTP/1.1|Host: app.test", 404, "relative target")

    # --- rule 17: hop-by-hop ---------------------------------------------------------------------
    def test_r17_connection_host_keeps_host(self):
        # Rule 17: `Connection: Host` can never strip Host.
        enc = self.forwarded(b"GET /a HTTP/1.1|Host: app.test|Connection: Host")
        self.assertEqual(enc.get_all("Host"), ["app.test"], enc)
        self.assertEqual(enc.service, "app.test")

    def test_r17_connection_cannot_strip_own_fields(self):
        # Rule 17: named fields are dropped, but not Content-Length, X-Request-Id, X-Forwarded-For.
        enc = self.forwarded(b"GET /a HTTP/1.1|Host: app.test|Connection: X-Foo, Content-Length, X-Request-Id, "
                             b"X-Forwarded-For, Forwarded|X-Foo: 1|X-Bar: 2|X-Request-Id: client-rid-17")
        self.assertNotIn("x-foo", enc.names(), enc)
        self.assertNotIn("connection", enc.names(), enc)
        self.assertEqual(enc.get_all("X-Bar"), ["2"])
        self.assertEqual(enc.get_all("X-Request-Id"), ["client-rid-17"])
        self.assertEqual(enc.get_all("X-Forwarded-For"), [PEER])
        self.assertEqual(len(enc.get_all("Forwarded")), 1, enc)

    def test_r17_hop_by_hop_dropped(self):
        # Rule 17 (RFC 9110 §7.6.1).
        enc = self.forwarded(b"GET /a HTTP/1.1|Host: app.test|Keep-Alive: timeout=5|Proxy-Connection: keep-alive"
                             b"|TE: trailers|Trailer: X-T|X-Kept: 1")
        for name in ("keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "connection"):
            self.assertNotIn(name, enc.names(), enc)
        self.assertEqual(enc.get_all("X-Kept"), ["1"])

    # --- rule 18: underscores ------------------------------------------------------------------
    def test_r18_underscore_names_dropped(self):
        # Rule 18: `X_Forwarded_For` and friends are dropped (CGI/WSGI see them as X-Forwarded-For).
        enc = self.forwarded(b"GET /a HTTP/1.1|Host: app.test|X_Forwarded_For: 6.6.6.6|X_User: root"
                             b"|X-Normal: 1")
        self.assertEqual([n for n in enc.names() if "_" in n], [], enc)
        self.assertEqual(enc.get_all("X-Normal"), ["1"])
        self.assertNotIn("6.6.6.6", enc.raw.decode("latin-1"))

    def test_r18_underscores_kept_with_flag(self):
        # Rule 18: --underscores-in-headers keeps them (a section marked (M2), so the flag is
        # expected on `scale0 mongrel2` too).
        self.adapter("under", ["--underscores-in-headers"])
        enc = self.forwarded(b"GET /a HTTP/1.1|Host: under.test|X_User: root")
        self.assertEqual(enc.get_all("X_User"), ["root"], enc)

    # --- rule 19: forwarding fields ------------------------------------------------------------
    SPOOF = b"|X-Forwarded-For: 6.6.6.6|Forwarded: for=6.6.6.6;proto=https|X-Real-IP: 6.6.6.6" \
            b"|X-Forwarded-Host: evil.example|X-Forwarded-Proto: https"

    def test_r19_untrusted_peer_fields_replaced(self):
        # Rule 19, untrusted peer (no --trusted-proxies): every client value is replaced.
        enc = self.forwarded(b"GET /a HTTP/1.1|Host: app.test" + self.SPOOF)
        self.assertEqual(enc.get_all("X-Forwarded-For"), [PEER], enc)
        self.assertEqual(enc.get_all("X-Forwarded-Proto"), ["http"], enc)
        self.assertEqual(enc.get_all("Forwarded"), ["for=%s;proto=http" % PEER], enc)
        self.assertEqual(enc.get_all("X-Real-IP"), [PEER], enc)
        self.assertEqual(enc.get_all("X-Forwarded-Host"), [], enc)
        self.assertNotIn("6.6.6.6", enc.raw.decode("latin-1"))
        self.assertNotIn("evil.example", enc.raw.decode("latin-1"))

    def test_r19_untrusted_peer_none_sent(self):
        # Rule 19: the gateway's own fields also when the client sent none.
        enc = self.forwarded(b"GET /a HTTP/1.1|Host: app.test")
        self.assertEqual(enc.get_all("X-Forwarded-For"), [PEER], enc)
        self.assertEqual(enc.get_all("X-Forwarded-Proto"), ["http"], enc)
        self.assertEqual(enc.get_all("Forwarded"), ["for=%s;proto=http" % PEER], enc)
        self.assertEqual(enc.get_all("X-Real-IP"), [PEER], enc)

    def test_r19_trusted_peer_fields_kept(self):
        # Rule 19, trusted peer (--trusted-proxies 127.0.0.1/32): the client's values are kept and
        # the peer appended. (Mongrel2 has already replaced the client's X-Forwarded-For with the
        # peer, so that one can only end with the peer.)
        self.adapter("trusted", ["--trusted-proxies", "127.0.0.1/32"])
        enc = self.forwarded(b"GET /a HTTP/1.1|Host: trusted.test" + self.SPOOF)
        xff = enc.get_all("X-Forwarded-For")
        self.assertEqual(len(xff), 1, enc)
        self.assertEqual(xff[0].split(",")[-1].strip(), PEER, enc)
        self.assertEqual(enc.get_all("Forwarded"), ["for=6.6.6.6;proto=https, for=%s;proto=http" % PEER], enc)
        self.assertEqual(enc.get_all("X-Forwarded-Proto"), ["https"], enc)
        self.assertEqual(enc.get_all("X-Forwarded-Host"), ["evil.example"], enc)
        self.assertEqual(enc.get_all("X-Real-IP"), ["6.6.6.6"], enc)

    def test_r19_trusted_peer_none_sent(self):
        # Rule 19, trusted peer, nothing sent: X-Forwarded-Proto http, X-Real-IP the peer.
        self.adapter("trusted", ["--trusted-proxies", "127.0.0.1/32"])
        enc = self.forwarded(b"GET /a HTTP/1.1|Host: trusted.test")
        self.assertEqual(enc.get_all("X-Forwarded-For"), [PEER], enc)
        self.assertEqual(enc.get_all("X-Forwarded-Proto"), ["http"], enc)
        self.assertEqual(enc.get_all("Forwarded"), ["for=%s;proto=http" % PEER], enc)
        self.assertEqual(enc.get_all("X-Real-IP"), [PEER], enc)
        self.assertEqual(enc.get_all("X-Forwarded-Host"), [], enc)

    # --- rule 21 (control) and R1 through scale0 mongrel2 ----------------------------------------
    def test_r21_other_fields_byte_for_byte(self):
        # Rule 21: everything else reaches the worker as sent (Mongrel2 lower-cases the names and
        # hands them over in a dict, so their order is Mongrel2's, not the client's: not asserted).
        enc = self.forwarded(b"POST /a?x=1 HTTP/1.1|Host: app.test|X-One: a  b|Cookie: c=1|X-Two: 2"
                             b"|Content-Length: 3", body=b"abc")
        self.assertEqual(enc.body, b"abc")
        self.assertEqual(enc.get_all("X-One"), ["a  b"])
        self.assertEqual(enc.target, "/a?x=1")

    def test_response_r1_trailers_through_mongrel2(self):
        # R1 at scale0 mongrel2: trailer fields of a worker's chunked response are dropped.
        self.answers["/r1"] = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: Set-Cookie\r\n\r\n"
                               + chunk(b"hello ") + chunk(b"world")
                               + b"0\r\nSet-Cookie: session=evil\r\nLocation: http://evil.example/\r\n\r\n")
        r = self.send(b"GET /r1 HTTP/1.1|Host: r1.test")
        self.assertEqual((r.status, r.body), (200, b"hello world"), r)
        for name in ("set-cookie", "location", "trailer", "transfer-encoding"):
            self.assertNotIn(name, r.names(), r)
        self.assertEqual(r.rest, b"", r)


if __name__ == "__main__":
    unittest.main()
