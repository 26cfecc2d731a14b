# SPDX-License-Identifier: Apache-2.0
"""The HTTP response path, black-box (the rules R1-R7 of the front door's HTTP rules, RFC 9110 and
RFC 9112):

    raw-socket client -> scale0 gateway -> scale0 broker -> scale0 worker --http (the sidecar)
                      -> a scripted app (response_app.py) that answers with raw bytes per path

and the S0/1 path: the same gateway -> broker -> a native Python S0/1 worker whose encoded
response holds chunked bodies with trailer fields.

Every client request is sent with `Connection: close` on a fresh connection and read to EOF, so the
test sees every byte the gateway wrote: a response must parse strictly and nothing may follow it.
The sidecar runs with --concurrency 1: it has a single app connection, so "the next request came on
another connection" proves that a connection was not reused. Everything is on 127.0.0.1; each
wait is bounded (the gateway's deadline is 2 s, a client read 3 s at most).
"""

import os
import re
import socket
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "blackbox"))
sys.path.insert(0, HERE)

import zmq  # noqa: E402

from harness import (BIN, Broker, Gateway, NativeWorker, Proc, binary_available,  # noqa: E402
                     now)
from recorder import Fields  # noqa: E402
from response_app import ScriptedApp  # noqa: E402

SERVICE = "resp.test"
NATIVE = "native.test"
DEADLINE_MS = 2000
HOP_BY_HOP = ("Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "TE", "Upgrade", "Trailer")


class Resp(Fields):
    def __init__(self, status, reason, headers, body, rest, raw):
        self.status, self.reason, self.headers, self.body, self.rest, self.raw = (
            status, reason, headers, body, rest, raw)

    def names(self):
        return [k.lower() for k, _ in self.headers]

    def __repr__(self):
        return "Resp(%d, %r, body=%r, rest=%r)" % (self.status, self.headers, self.body[:200], self.rest[:200])


def parse_client_response(raw, method="GET"):
    """Strict parse of everything the gateway wrote on a `Connection: close` connection: one
    response; `rest` is whatever followed its end (must be empty)."""
    if b"\r\n\r\n" not in raw:
        raise AssertionError("no complete response head from the gateway: %r" % raw[:300])
    head, after = raw.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    m = re.match(rb"^HTTP/1\.[01] (\d{3}) ?(.*)$", lines[0])
    if not m:
        raise AssertionError("bad status line from the gateway: %r" % lines[0])
    status = int(m.group(1))
    headers = []
    for ln in lines[1:]:
        k, sep, v = ln.partition(b":")
        if not sep or not k or k != k.strip() or b"\n" in ln or b"\r" in ln or b"\x00" in ln:
            raise AssertionError("bad header line from the gateway: %r in %r" % (ln, raw[:500]))
        headers.append((k.decode("latin-1"), v.strip().decode("latin-1")))
    r = Resp(status, m.group(2).decode("latin-1"), headers, b"", b"", raw)
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        r.rest = after
        return r
    cls = r.get_all("Content-Length")
    if len(cls) != 1 or not cls[0].isdigit():
        raise AssertionError("the gateway must send exactly one Content-Length: %r" % (r,))
    n = int(cls[0])
    if len(after) < n:
        raise AssertionError("body shorter than its Content-Length %d: %r" % (n, after[:300]))
    r.body, r.rest = after[:n], after[n:]
    return r


def chunk(data):
    return b"%x\r\n" % len(data) + data + b"\r\n"


def exchange(addr, request, timeout=3.0):
    """Send request bytes on a fresh connection, read until EOF (bounded). Returns the bytes."""
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=timeout)
    try:
        s.sendall(request)
        data = b""
        deadline = now() + timeout
        while now() < deadline:
            s.settimeout(max(0.01, deadline - now()))
            try:
                part = s.recv(1 << 20)
            except socket.timeout:
                break
            except ConnectionResetError:
                break
            if not part:
                return data
            data += part
        raise AssertionError("the gateway did not close a `Connection: close` connection within %.1fs "
                             "(read %r)" % (timeout, data[:300]))
    finally:
        s.close()


class _Base(unittest.TestCase):
    """One broker + gateway for the class; subclasses add their workers."""

    @classmethod
    def setUpClass(cls):
        if not binary_available():
            raise unittest.SkipTest("scale0 binary not found at %s (set SCALE0_BIN)" % BIN)
        cls.procs = []
        cls.broker = Broker(no_worker_timeout=300, heartbeat_interval=1000)
        try:
            cls.broker.start()
            cls.gateway = Gateway(cls.broker.frontend, timeout=DEADLINE_MS).start()
            cls.start_workers()
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def start_workers(cls):
        pass

    @classmethod
    def tearDownClass(cls):
        cls.stop_workers()
        g = getattr(cls, "gateway", None)
        if g is not None:
            g.kill()
            g.cleanup()
        cls.broker.kill()
        cls.broker.cleanup()

    @classmethod
    def stop_workers(cls):
        pass

    def fetch(self, target, method="GET", host=SERVICE, extra=b""):
        req = (b"%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n" % (method.encode(), target.encode(),
                                                                          host.encode())
               + extra + b"\r\n")
        raw = exchange(self.gateway.listen, req)
        return parse_client_response(raw, method)

    def assertServed(self, r, status, body=None, absent=(), present=None):
        """status, exact body, header names that must not be there, fields that must be."""
        self.assertEqual(r.status, status, r)
        if body is not None:
            self.assertEqual(r.body, body, r)
        for name in absent:
            self.assertNotIn(name.lower(), r.names(), "%s must not reach the client: %r" % (name, r))
        for k, v in (present or {}).items():
            self.assertEqual(r.get_all(k), [v], "%s: %r" % (k, r))
        self.assertEqual(r.rest, b"", "bytes after the end of the response (response splitting): %r" % (r,))
        self.assertTrue(r.get("X-Request-Id"), "X-Request-Id missing (R5): %r" % (r,))


class SidecarResponsePath(_Base):
    """client -> gateway -> broker -> `scale0 worker --http` -> ScriptedApp."""

    @classmethod
    def start_workers(cls):
        cls.app = ScriptedApp(idle=10.0).start()
        cls.sidecar = Proc([BIN, "worker", "--service", SERVICE, "--broker", cls.broker.backend,
                            "--http", "http://127.0.0.1:%d" % cls.app.port, "--concurrency", "1",
                            "--health-interval", "600000", "--name", "sidecar"])
        # The sidecar registers once the app answers its first probe: poll through the gateway.
        deadline = now() + 10
        last = None
        while now() < deadline:
            try:
                last = parse_client_response(exchange(cls.gateway.listen,
                                                      b"GET /__ready HTTP/1.1\r\nHost: resp.test\r\n"
                                                      b"Connection: close\r\n\r\n"))
                if last.status == 200:
                    return
            except (AssertionError, OSError) as e:
                last = e
            time.sleep(0.05)
        raise AssertionError("the sidecar never served (last %r); stderr:\n%s"
                             % (last, cls.sidecar.stderr_text()))

    @classmethod
    def stop_workers(cls):
        sc = getattr(cls, "sidecar", None)
        if sc is not None:
            sc.kill()
            sc.cleanup()
        app = getattr(cls, "app", None)
        if app is not None:
            app.stop()

    def setUp(self):
        self.addCleanup(self._dump)

    def _dump(self):
        result = getattr(getattr(self, "_outcome", None), "result", None)
        try:
            failed = any(t is self for t, _ in list(result.failures) + list(result.errors))
        except Exception:
            failed = False
        if failed and os.environ.get("SCALE0_TEST_VERBOSE"):
            sys.stderr.write("\n--- sidecar stderr ---\n%s\n" % self.sidecar.stderr_text()[-3000:])

    # --- helpers ---------------------------------------------------------------------------------
    _n = 0

    def vec(self, raw, close=False, name=None, **kw):
        """A fresh path scripted to answer raw; returns the path."""
        SidecarResponsePath._n += 1
        path = "/v/%d-%s" % (SidecarResponsePath._n, name or self._testMethodName)
        self.app.script(path, raw, close=close, **kw)
        return path

    def conn_of(self, path):
        s = self.app.wait_seen(path, 2.0)
        self.assertIsNotNone(s, "the app never got the request for %s" % path)
        return s.conn_id

    def assertNotReused(self, path, why):
        """The app connection that carried `path` carries nothing more: the next requests come on
        other connections and each gets its own answer (R2/R4)."""
        bad = self.conn_of(path)
        for i in range(2):
            nxt = "/next/%d-%d" % (SidecarResponsePath._n, i)
            r = self.fetch(nxt)
            self.assertServed(r, 200, ("ok:%s" % nxt).encode())
            s = self.app.wait_seen(nxt, 2.0)
            self.assertIsNotNone(s)
            self.assertNotEqual(s.conn_id, bad, "%s: the app connection was reused after it (%r)" % (why, s))

    def bad(self, raw, why, close=False, reuse_check=True):
        """The sidecar must answer 502 (R2/R3/R7) and (when the app keeps the connection open) drop
        that app connection."""
        path = self.vec(raw, close=close)
        r = self.fetch(path)
        self.assertEqual(r.status, 502, "%s: expected 502, got %r" % (why, r))
        self.assertServed(r, 502)
        if reuse_check and not close:
            self.assertNotReused(path, why)
        return r

    # --- control --------------------------------------------------------------------------------
    def test_control_normal_answers_reuse_the_connection(self):
        # Control for the reuse checks below (docs/http.md, sidecar "Connections"): two ordinary
        # answers in a row travel on one keep-alive app connection.
        p1 = self.vec(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-App: 1\r\n\r\none")
        p2 = self.vec(b"HTTP/1.1 201 Created\r\nContent-Length: 3\r\n\r\ntwo")
        self.assertServed(self.fetch(p1), 200, b"one", present={"X-App": "1", "Content-Length": "3"})
        self.assertServed(self.fetch(p2), 201, b"two")
        self.assertEqual(self.conn_of(p1), self.conn_of(p2), "an ordinary answer must not cost a connection")

    # --- R1: trailer fields are dropped ----------------------------------------------------------
    def _trailer(self, trailer_lines, announce=b""):
        raw = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n" + announce + b"\r\n"
               + chunk(b"hello ") + chunk(b"world") + b"0\r\n" + trailer_lines + b"\r\n")
        return self.vec(raw)

    def test_r1_trailer_set_cookie_is_not_promoted(self):
        # R1 (RFC 9110 §6.5.1: trailer fields are not merged into the header section blindly).
        r = self.fetch(self._trailer(b"Set-Cookie: session=evil; Path=/\r\n"))
        self.assertServed(r, 200, b"hello world", absent=["Set-Cookie"],
                          present={"Content-Length": "11"})

    def test_r1_trailer_content_length(self):
        # RFC 9110 §6.5.1: framing fields are not allowed in trailers, and a sender must not send
        # them there. docs/http.md: a trailer carrying Content-Length or Transfer-Encoding makes
        # the response malformed (502), never a re-framed one. (Beast's parser refuses it.)
        r = self.fetch(self._trailer(b"Content-Length: 9999\r\n"))
        self.assertServed(r, 502, absent=["Content-Length: 9999"])
        self.assertNotEqual(r.get("Content-Length"), "9999")

    def test_r1_trailer_transfer_encoding(self):
        # As above: a Transfer-Encoding trailer must not re-frame the client's response: 502.
        r = self.fetch(self._trailer(b"Transfer-Encoding: chunked\r\n"))
        self.assertServed(r, 502, absent=["Transfer-Encoding"])

    def test_r1_trailer_location(self):
        # R1: a redirect smuggled in a trailer is lost.
        r = self.fetch(self._trailer(b"Location: http://evil.example/\r\n"))
        self.assertServed(r, 200, b"hello world", absent=["Location"])

    def test_r1_announced_trailers_several_fields(self):
        # R1 + R5: `Trailer` (hop-by-hop) announcing fields; all the trailer fields are dropped.
        r = self.fetch(self._trailer(b"Set-Cookie: a=1\r\nX-Trailer-Only: 1\r\nAuthorization: x\r\n",
                                     announce=b"Trailer: Set-Cookie, X-Trailer-Only, Authorization\r\n"))
        self.assertServed(r, 200, b"hello world",
                          absent=["Set-Cookie", "X-Trailer-Only", "Authorization", "Trailer"])

    def test_r1_chunk_extensions_are_ignored(self):
        # RFC 9112 §7.1.1: chunk extensions are ignored; the data is intact, the connection reusable.
        p = self.vec(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"5;name=value\r\nhello\r\n6 ; q=\"x\"\r\n world\r\n0;last\r\n\r\n")
        self.assertServed(self.fetch(p), 200, b"hello world", absent=["Transfer-Encoding"])

    # --- R2: framing the sidecar refuses ----------------------------------------------------------
    def test_r2_te_chunked_identity(self):
        # R2 (RFC 9112 §6.3 item 4: chunked must be the final coding... and here `identity` follows).
        self.bad(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, identity\r\n\r\n"
                 + chunk(b"hello") + b"0\r\n\r\n", "TE chunked, identity")

    def test_r2_te_chunked_identity_app_closes(self):
        # R2: the same answer followed by the app closing: still 502, never the chunk framing
        # passed on as a close-delimited body.
        r = self.bad(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, identity\r\n\r\n"
                     + chunk(b"hello") + b"0\r\n\r\n", "TE chunked, identity + close", close=True)
        self.assertNotIn(b"5\r\nhello", r.body)

    def test_r2_te_other_not_exactly_chunked(self):
        # R2: an empty value, a quoted "chunked" (RFC 9112 §7: a coding is a token), `chunked;q=1`.
        for te in (b"", b'"chunked"', b"chunked;q=1", b"chunked, chunked"):
            with self.subTest(te=te):
                self.bad(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: " + te + b"\r\n\r\n" + chunk(b"hello")
                         + b"0\r\n\r\n", "TE %r" % te, close=True)

    def test_r2_te_chunked_is_case_insensitive(self):
        # RFC 9112 §7 (coding names are case-insensitive; request rule 2 says the same): `Chunked`
        # is chunked: served, de-chunked.
        p = self.vec(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n" + chunk(b"hello") + b"0\r\n\r\n")
        self.assertServed(self.fetch(p), 200, b"hello", absent=["Transfer-Encoding"])

    def test_r2_te_gzip_chunked(self):
        # R2: nothing here decodes gzip; passing it on undecoded under our own framing is refused.
        self.bad(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                 + chunk(b"hello") + b"0\r\n\r\n", "TE gzip, chunked")

    def test_r2_te_identity(self):
        # R2: `identity` is not a registered coding (RFC 9112 §7, removed); close after so a
        # close-delimited reading cannot hang.
        self.bad(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\nhello", "TE identity", close=True)

    def test_r2_te_xchunked(self):
        # R2: an unknown coding whose name contains "chunked" (substring matching must not accept it).
        self.bad(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: xchunked\r\n\r\n" + chunk(b"hello") + b"0\r\n\r\n",
                 "TE xchunked", close=True)

    def test_r2_te_twice(self):
        # R2 (RFC 9112 §6.1: the fields combine to `chunked, chunked`, not exactly `chunked`).
        self.bad(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
                 + chunk(b"hello") + b"0\r\n\r\n", "TE in two fields")

    def test_r2_te_in_http10_response(self):
        # R2 (RFC 9112 §6.1: a TE received in an HTTP/1.0 message is a framing fault).
        self.bad(b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk(b"hello") + b"0\r\n\r\n",
                 "TE in HTTP/1.0", close=True)

    def test_r2_te_then_content_length(self):
        # R2 (RFC 9112 §6.3 item 3: TE + CL is a smuggling vector); connection not reused.
        self.bad(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
                 + chunk(b"hello") + b"0\r\n\r\n", "TE then CL")

    def test_r2_content_length_then_te(self):
        # R2: the same, the other order.
        self.bad(b"HTTP/1.1 200 OK\r\nContent-Length: 14\r\nTransfer-Encoding: chunked\r\n\r\n"
                 + chunk(b"hello") + b"0\r\n\r\n", "CL then TE")

    def test_r2_two_differing_content_lengths(self):
        # R2 (RFC 9112 §6.3 item 5).
        self.bad(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", "CL 5 and 6")

    def test_r2_content_length_list_differing(self):
        # R2: a list of differing values in one field.
        self.bad(b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello!", "CL 5, 6")

    def test_r2_content_length_not_digits(self):
        # RFC 9112 §6.3 item 5: an invalid Content-Length is unrecoverable -> 502.
        self.bad(b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello", "CL +5", close=True)

    def test_r2_content_length_bad_values(self):
        # RFC 9112 §6.3 item 5: Content-Length = 1*DIGIT; anything else is 502.
        for cl in (b"-1", b"5 5", b"0x5", b"", b"5a", b"99999999999999999999999"):
            with self.subTest(cl=cl):
                self.bad(b"HTTP/1.1 200 OK\r\nContent-Length: " + cl + b"\r\n\r\nhello", "CL %r" % cl, close=True)

    def test_truncated_bodies_are_502(self):
        # docs/http.md (sidecar: "connection ... closed before a whole response" -> 502): a body
        # shorter than its Content-Length, a chunked body cut before its last chunk.
        self.bad(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nonly a few", "short CL body", close=True)
        self.bad(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk(b"hello"), "cut chunked",
                 close=True)

    def test_r2_content_length_list_same_value(self):
        # RFC 9110 §8.6: a list of identical values may be taken as that value (as request rule 5):
        # served, 5 bytes, and the connection stays usable.
        p = self.vec(b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello")
        self.assertServed(self.fetch(p), 200, b"hello", present={"Content-Length": "5"})

    def test_r2_two_same_content_length_fields(self):
        # RFC 9110 §8.6: the same value in two fields is that value.
        p = self.vec(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello")
        self.assertServed(self.fetch(p), 200, b"hello", present={"Content-Length": "5"})

    def test_r2_bad_chunk_size_not_hex(self):
        # R2: bad chunk size.
        self.bad(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
                 "chunk size zz")

    def test_r2_bad_chunk_size_0x_prefix(self):
        # R2 (RFC 9112 §7.1: chunk-size = 1*HEXDIG; `0x5` is not one).
        self.bad(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
                 "chunk size 0x5")

    def test_r2_chunk_size_overflow(self):
        # R2: a size that overflows 64 bits must not wrap into a small one.
        self.bad(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"10000000000000005\r\nhello\r\n0\r\n\r\n", "chunk size overflow", close=True)

    def test_r2_missing_crlf_after_chunk_data(self):
        # R2 / RFC 9112 §7.1: chunk-data must be followed by CRLF.
        self.bad(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
                 "no CRLF after chunk data", close=True)

    # --- R3: malformed header sections -------------------------------------------------------------
    def test_r3_cr_in_field_value(self):
        # R3: a CR inside a value (RFC 9110 §5.5).
        self.bad(b"HTTP/1.1 200 OK\r\nX-A: a\rSet-Cookie: evil=1\r\nContent-Length: 5\r\n\r\nhello", "CR in value")

    def test_r3_lf_in_field_value(self):
        # R3: a bare LF inside a value would split it into a second field for some readers.
        r = self.bad(b"HTTP/1.1 200 OK\r\nX-A: a\nSet-Cookie: evil=1\r\nContent-Length: 5\r\n\r\nhello",
                     "LF in value")
        self.assertNotIn("set-cookie", r.names())

    def test_r3_nul_in_field_value(self):
        # R3: NUL in a value (RFC 9110 §5.5).
        self.bad(b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 5\r\n\r\nhello", "NUL in value")

    def test_r3_bare_lf_line_ends(self):
        # R3: bare LF as the line end of the whole head.
        self.bad(b"HTTP/1.1 200 OK\nContent-Length: 5\nX-A: 1\n\nhello", "bare LF line ends", close=True)

    def test_r3_bad_status_lines(self):
        # R3: the status line must be `HTTP/1.x NNN reason` (RFC 9112 §4).
        for line in (b"HTTP/1.1 2000 OK", b"HTTP/1.1 20 OK", b"HTTP/1.1 abc OK", b"HTTP/2.0 200 OK",
                     b"ICY 200 OK", b" HTTP/1.1 200 OK", b"HTTP/1.1  200 OK", b"HTTP/1.1 200 O\x00K"):
            with self.subTest(line=line):
                self.bad(line + b"\r\nContent-Length: 5\r\n\r\nhello", "status line %r" % line, close=True)

    def test_r3_bad_field_names(self):
        # R3 / RFC 9112 §5: a field line must be `token ":" value`; no name, a space or a control
        # byte in the name, no colon at all: not HTTP -> 502.
        for line in (b": x", b"X A: 1", b"X\x01A: 1", b"no colon here", b"X-A\x00: 1"):
            with self.subTest(line=line):
                self.bad(b"HTTP/1.1 200 OK\r\n" + line + b"\r\nContent-Length: 5\r\n\r\nhello",
                         "field line %r" % line, close=True)

    def test_rfc9112_whitespace_before_colon(self):
        # RFC 9112 §5.1: a proxy MUST remove whitespace between a field name and the colon of a
        # response before forwarding it (or refuse it): `X-A :` never reaches the client as is.
        p = self.vec(b"HTTP/1.1 200 OK\r\nX-A : 1\r\nContent-Length: 5\r\n\r\nhello", close=True)
        r = self.fetch(p)
        self.assertIn(r.status, (200, 502), r)
        self.assertNotIn(b"X-A :", r.raw)

    def test_rfc9112_obs_fold_in_response(self):
        # RFC 9112 §5.2: a proxy receiving obs-fold in a response either answers 502 or replaces
        # each obs-fold with SP; the client never sees the fold.
        p = self.vec(b"HTTP/1.1 200 OK\r\nX-A: one\r\n two\r\nContent-Length: 5\r\n\r\nhello", close=True)
        r = self.fetch(p)
        self.assertIn(r.status, (200, 502), r)
        self.assertNotIn(b"\r\n two", r.raw)
        if r.status == 200:
            self.assertEqual(r.get_all("X-A"), ["one two"], r)

    # --- R4: bytes after the end of the body ----------------------------------------------------------
    SMUGGLED = b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\nX-Smuggled: 1\r\n\r\nsmuggled"

    def test_r4_bytes_after_content_length_body(self):
        # R4: served; the rest is never the next request's answer (a smuggled response).
        p = self.vec(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello" + self.SMUGGLED)
        self.assertServed(self.fetch(p), 200, b"hello", absent=["X-Smuggled"])
        self.assertNotReused(p, "bytes after Content-Length")

    def test_r4_bytes_after_last_chunk(self):
        # R4: the same after the last chunk and the trailer section's end.
        p = self.vec(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk(b"hello")
                     + b"0\r\n\r\n" + self.SMUGGLED)
        self.assertServed(self.fetch(p), 200, b"hello", absent=["X-Smuggled"])
        self.assertNotReused(p, "bytes after the last chunk")

    def test_r4_head_answered_with_a_body(self):
        # RFC 9112 §6.3 item 1 + R4: a HEAD answer ends at its head; the body the app wrote is
        # extra bytes. The client gets the app's Content-Length (docs/http.md) and no body.
        p = self.vec(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(self.SMUGGLED) + self.SMUGGLED)
        r = self.fetch(p, method="HEAD")
        self.assertServed(r, 200, absent=["X-Smuggled"], present={"Content-Length": str(len(self.SMUGGLED))})
        self.assertNotReused(p, "HEAD answered with a body")

    def test_r4_204_with_a_body(self):
        # RFC 9112 §6.3 item 1 + R4: a 204 has no body; what follows its head is extra bytes.
        p = self.vec(b"HTTP/1.1 204 No Content\r\nX-App: 1\r\n\r\n" + self.SMUGGLED)
        r = self.fetch(p)
        self.assertServed(r, 204, absent=["X-Smuggled"], present={"X-App": "1"})
        self.assertNotReused(p, "204 with a body")

    def test_r4_304_with_a_body(self):
        # RFC 9112 §6.3 item 1 + R4: the same for 304 (with a Content-Length of the selected
        # representation, RFC 9110 §8.6, which does not frame anything here).
        p = self.vec(b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nContent-Length: 8\r\n\r\n" + self.SMUGGLED)
        r = self.fetch(p)
        self.assertServed(r, 304, absent=["X-Smuggled"], present={"ETag": "\"x\""})
        self.assertNotReused(p, "304 with a body")

    def test_r4_head_answer_with_chunked_and_no_body(self):
        # RFC 9112 §6.3 item 1: a HEAD answer announcing chunked has no body: served at once (not
        # a wait for chunks until the deadline), with no Transfer-Encoding at the client.
        p = self.vec(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-App: 1\r\n\r\n")
        r = self.fetch(p, method="HEAD")
        self.assertServed(r, 200, absent=["Transfer-Encoding"], present={"X-App": "1"})

    def test_r4_304_with_chunked_and_no_body(self):
        # RFC 9112 §6.3 item 1: the same for a 304 (no body whatever its framing fields say).
        p = self.vec(b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n")
        self.assertServed(self.fetch(p), 304, absent=["Transfer-Encoding"])

    def test_app_connection_close_is_not_reused(self):
        # RFC 9112 §9.6 + docs/http.md: after an answer with `Connection: close` the app
        # connection is not used again, even if the app leaves it open.
        p = self.vec(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello" + self.SMUGGLED)
        self.assertServed(self.fetch(p), 200, b"hello", absent=["X-Smuggled"])
        self.assertNotReused(p, "Connection: close from the app")

    # --- R5: hop-by-hop fields ------------------------------------------------------------------
    def test_r5_hop_by_hop_fields_dropped(self):
        # R5 (RFC 9110 §7.6.1): the app's hop-by-hop fields never reach the client; the client sees
        # the gateway's own Connection.
        p = self.vec(b"HTTP/1.1 200 OK\r\nKeep-Alive: timeout=99\r\nProxy-Connection: keep-alive\r\n"
                     b"Upgrade: h2c\r\nTE: trailers\r\nTrailer: X-T\r\nConnection: keep-alive\r\n"
                     b"X-Kept: 1\r\nContent-Length: 5\r\n\r\nhello")
        r = self.fetch(p)
        self.assertServed(r, 200, b"hello", absent=HOP_BY_HOP, present={"X-Kept": "1"})
        self.assertEqual([v.lower() for v in r.get_all("Connection")], ["close"], r)

    def test_r5_fields_named_in_connection_dropped(self):
        # R5: every field named in any Connection field of the response is dropped.
        p = self.vec(b"HTTP/1.1 200 OK\r\nConnection: X-Secret\r\nConnection: x-other, keep-alive\r\n"
                     b"X-Secret: 1\r\nX-Other: 2\r\nX-Kept: 3\r\nContent-Length: 5\r\n\r\nhello")
        r = self.fetch(p)
        self.assertServed(r, 200, b"hello", absent=["X-Secret", "X-Other"], present={"X-Kept": "3"})

    def test_r5_one_content_length_and_request_id(self):
        # R5: a Content-Length / X-Request-Id from the app cannot double the gateway's own.
        p = self.vec(b"HTTP/1.1 200 OK\r\nX-Request-Id: from-app\r\nContent-Length: 5\r\n\r\nhello")
        r = self.fetch(p, extra=b"X-Request-Id: client-id-1\r\n")
        self.assertServed(r, 200, b"hello", present={"Content-Length": "5"})
        self.assertEqual(len(r.get_all("X-Request-Id")), 1, r)

    # --- R6: close-delimited bodies --------------------------------------------------------------
    def test_r6_close_delimited_body(self):
        # R6 (RFC 9112 §6.3 item 8): no length: read to EOF, passed on with one Content-Length.
        p = self.vec(b"HTTP/1.1 200 OK\r\nX-App: 1\r\n\r\nread until the end", close=True, pieces=3, gap=0.02)
        self.assertServed(self.fetch(p), 200, b"read until the end",
                          present={"Content-Length": "18", "X-App": "1"})

    def test_r6_close_delimited_http10(self):
        # R6: an HTTP/1.0 answer without a length.
        p = self.vec(b"HTTP/1.0 200 OK\r\n\r\nold style", close=True)
        self.assertServed(self.fetch(p), 200, b"old style", present={"Content-Length": "9"})

    # --- R7: interim responses ------------------------------------------------------------------
    def test_r7_interim_100_then_200(self):
        # R7: the 100 is skipped; the client (which sent no Expect) sees only the final answer.
        p = self.vec(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
        r = self.fetch(p)
        self.assertServed(r, 200, b"hello")
        self.assertTrue(r.raw.startswith(b"HTTP/1.1 200 "), r.raw[:100])

    def test_r7_interim_103_fields_do_not_leak(self):
        # R7 + RFC 9110 §15.2: a 103's fields belong to it, not to the final response.
        p = self.vec(b"HTTP/1.1 103 Early Hints\r\nLink: </evil.css>; rel=preload\r\n\r\n"
                     b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
        self.assertServed(self.fetch(p), 200, b"hello", absent=["Link"])

    def test_r7_several_interim_then_final(self):
        # R7: 100, 102 and 103 in a row are all skipped.
        p = self.vec(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n"
                     b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
        r = self.fetch(p)
        self.assertServed(r, 200, b"hello", absent=["Link"])
        self.assertTrue(r.raw.startswith(b"HTTP/1.1 200 "), r.raw[:100])

    def test_r7_101_is_502(self):
        # R7: nothing here carries a tunnel; a 101 to a request that asked for no upgrade is 502.
        self.bad(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
                 b"\x81\x05hello", "101", close=True)

    # --- limits (docs/http.md: header over 64 KiB -> 502) ----------------------------------------
    def test_huge_response_header_is_502(self):
        # docs/http.md (sidecar): an app header over 64 KiB is answered 502.
        big = b"".join(b"X-Big-%d: %s\r\n" % (i, b"v" * 1000) for i in range(80))
        self.bad(b"HTTP/1.1 200 OK\r\n" + big + b"Content-Length: 5\r\n\r\nhello", "80 KB header", close=True)

    def test_huge_single_field_is_502(self):
        # docs/http.md (sidecar): one 70 000-byte field value is over the 64 KiB header too.
        self.bad(b"HTTP/1.1 200 OK\r\nX-Big: " + b"v" * 70000 + b"\r\nContent-Length: 5\r\n\r\nhello",
                 "70 KB field", close=True)


    def test_body_over_8_mib_is_502(self):
        # docs/http.md (sidecar): a body over 8 MiB is answered 502.
        n = 8 * 1024 * 1024 + 1
        self.bad(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % n + b"x" * n, "8 MiB + 1 body", close=True)


class NativeWorkerResponsePath(_Base):
    """client -> gateway -> broker -> a native S0/1 worker whose encoded responses are raw bytes
    chosen per request target (R1, R5 and docs/http.md's response encoding)."""

    TABLE = {}

    @classmethod
    def start_workers(cls):
        cls.ctx = zmq.Context()

        def mode(job):
            raw = b"".join(job.body)
            target = raw.split(b"\r\n", 1)[0].split(b" ")[1].decode("latin-1")
            frames = cls.TABLE.get(target, [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"])
            return (200, b"native", list(frames))

        cls.worker = NativeWorker(cls.ctx, cls.broker.backend, [NATIVE], concurrency=4, mode=mode)
        cls.worker.start()
        cls.worker.wait_welcome(10.0)

    @classmethod
    def stop_workers(cls):
        w = getattr(cls, "worker", None)
        if w is not None:
            w.stop()
        ctx = getattr(cls, "ctx", None)
        if ctx is not None:
            ctx.destroy(linger=0)

    def answer(self, target, frames):
        self.TABLE[target] = frames if isinstance(frames, list) else [frames]
        return self.fetch(target, host=NATIVE)

    CHUNKED_WITH_TRAILERS = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n"
                             b"Trailer: Set-Cookie, Location\r\n\r\n" + chunk(b"hello ") + chunk(b"world")
                             + b"0\r\nSet-Cookie: session=evil\r\nLocation: http://evil.example/\r\n"
                             b"X-Trailer: 1\r\n\r\n")

    def test_r1_native_framing_trailers_refused(self):
        # RFC 9110 §6.5.1: Content-Length / Transfer-Encoding are not allowed in a trailer section;
        # in a worker's encoded response they make it malformed (docs/http.md): 502, and neither
        # field re-frames what the client gets.
        r = self.answer("/n/framing", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                        + chunk(b"hello ") + chunk(b"world")
                        + b"0\r\nContent-Length: 9999\r\nTransfer-Encoding: chunked\r\n\r\n")
        self.assertServed(r, 502, absent=["Transfer-Encoding"])

    def test_r1_native_trailers_dropped(self):
        # R1 (inside a worker's encoded response): trailer fields never become header fields.
        r = self.answer("/n/trailers", self.CHUNKED_WITH_TRAILERS)
        self.assertServed(r, 200, b"hello world",
                          absent=["Set-Cookie", "Location", "X-Trailer", "Trailer"],
                          present={"Content-Length": "11", "Content-Type": "text/plain"})

    def test_r1_native_trailers_split_over_frames(self):
        # R1: the encoded response spread over several frames (docs/http.md: their concatenation),
        # split inside the trailer section.
        data = self.CHUNKED_WITH_TRAILERS
        cut = data.index(b"Set-Cookie: session") + 5
        r = self.answer("/n/frames", [data[:40], data[40:cut], data[cut:]])
        self.assertServed(r, 200, b"hello world", absent=["Set-Cookie", "Location", "X-Trailer"],
                          present={"Content-Length": "11"})

    def test_r1_native_trailers_with_head(self):
        # R1 with a HEAD: no body and no trailer field reaches the client.
        r = self.answer("/n/head", self.CHUNKED_WITH_TRAILERS)
        self.assertServed(r, 200, b"hello world", absent=["Set-Cookie"])
        self.TABLE["/n/head2"] = [self.CHUNKED_WITH_TRAILERS]
        h = self.fetch("/n/head2", method="HEAD", host=NATIVE)
        self.assertServed(h, 200, absent=["Set-Cookie", "Location", "X-Trailer"])

    def test_r5_native_hop_by_hop_dropped(self):
        # R5 for the worker path: hop-by-hop fields and fields named in Connection are dropped.
        r = self.answer("/n/hop", b"HTTP/1.1 200 OK\r\nConnection: X-Secret\r\nX-Secret: 1\r\n"
                                  b"Keep-Alive: timeout=1\r\nUpgrade: h2c\r\nX-Kept: 1\r\n"
                                  b"Content-Length: 2\r\n\r\nok")
        self.assertServed(r, 200, b"ok", absent=["X-Secret", "Keep-Alive", "Upgrade"], present={"X-Kept": "1"})

    def test_native_control_bytes_in_value_is_502(self):
        # R3 for the worker path (docs/http.md: a reply that is not a well-formed response -> 502):
        # a CR or NUL inside a field value never reaches the client.
        for line in (b"X-A: a\rSet-Cookie: evil=1", b"X-A: a\x00b", b"X-A: a\nSet-Cookie: evil=1"):
            with self.subTest(line=line):
                r = self.answer("/n/ctl", b"HTTP/1.1 200 OK\r\n" + line + b"\r\nContent-Length: 2\r\n\r\nok")
                self.assertServed(r, 502, absent=["Set-Cookie"])

    def test_native_te_with_content_length_is_502(self):
        # R2's framing conflict inside a worker's encoded response (RFC 9112 §6.3 item 3; docs/http.md:
        # not well-formed -> 502).
        r = self.answer("/n/tecl", b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
                        + chunk(b"hello") + b"0\r\n\r\n")
        self.assertServed(r, 502)

    def test_native_bytes_after_last_chunk_is_502(self):
        # docs/http.md (response encoding): bytes after the last chunk make the response malformed.
        r = self.answer("/n/extra", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk(b"hello")
                        + b"0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        self.assertServed(r, 502)


if __name__ == "__main__":
    unittest.main()
