# SPDX-License-Identifier: Apache-2.0
"""The request-smuggling vectors, as data, and the code that runs and judges them.

Written from /tmp/http_rules.md (rules 1-23 of the front door, numbered as there), RFC 9110/9112
and the request-smuggling literature (James Kettle, "HTTP Desync Attacks: Request Smuggling
Reborn", 2019, and "HTTP/2: The Sequel is Always Worse", 2021: CL.TE, TE.CL, TE.TE obfuscation,
CL.0; Bishop Fox / Jake Miller, "h2c Smuggling", 2020), not from the gateway's code.

Every vector is sent alone on a fresh TCP connection. Where a misparse would let a second request
through, its body or tail carries one whose target contains `smuggled` (SMUG below: `GET
/admin/smuggled` to the /admin route); no request with `smuggled` in its target may ever reach an
app (the app behind `app.local` or the one behind `admin.internal`).

A vector (V):
  name      unique, snake case (the test method is test_<name>)
  rule      which rule(s) of /tmp/http_rules.md and which RFC section it exercises
  why       the attack or the point, one line
  raw       the bytes sent
  status    the first (and only) final answer's status; None: no answer, the connection closed;
            a tuple: every final answer in order (an entry may be a set of allowed statuses)
  close     True: the gateway must close the connection after its answer(s); False: it must stay
            open (keep-alive)
  seen      exactly the requests the apps must receive, in order: Seen(app, method, target,
            headers={name: value | [values] | None (absent)}, body=bytes, order=[names])
  alt       other acceptable outcomes: [(status, close, seen), ...] (where the rules or the RFC
            leave a choice)
  needs     "connect_route": needs a gateway started with a `connect=yes` route
  answer_has header names the first answer must carry
"""

import threading

import recorder as R

APP = "app"
ADMIN = "admin"
SERVICES = {APP: R.APP_HOST, ADMIN: R.ADMIN_SERVICE}

CRLF = b"\r\n"
HOST = b"Host: app.local"
SMUG = b"GET /admin/smuggled HTTP/1.1\r\nHost: app.local\r\n\r\n"
SMUG_APP = b"GET /smuggled HTTP/1.1\r\nHost: app.local\r\n\r\n"
MARK = "smuggled"
PEER = "127.0.0.1"
OWN_FORWARDED = "for=127.0.0.1;proto=http"


def head(first, *fields):
    """A request head: the request line and field lines, each ended by CRLF, then CRLF."""
    return first + CRLF + b"".join(f + CRLF for f in fields) + CRLF


def chunked(*pieces, last=b"0\r\n\r\n"):
    return b"".join(b"%x\r\n" % len(p) + p + CRLF for p in pieces) + last


def te_cl_body():
    """TE.CL: a chunk holding SMUG; a Content-Length of 4 stops after its size line."""
    return b"%x\r\n" % len(SMUG) + SMUG + b"\r\n0\r\n\r\n"


class Seen:
    def __init__(self, app, method, target, headers=None, body=b"", order=None):
        self.app, self.method, self.target = app, method, target
        self.headers = headers or {}
        self.body = body
        self.order = order

    @property
    def service(self):
        return SERVICES[self.app]

    def __repr__(self):
        return "Seen(%s %s %s%s%s)" % (self.app, self.method, self.target,
                                       (" headers=%r" % self.headers) if self.headers else "",
                                       (" body=%r" % self.body) if self.body else "")


class V:
    def __init__(self, name, rule, why, raw, status, close, seen=(), alt=(), needs=None, answer_has=()):
        self.name, self.rule, self.why, self.raw = name, rule, why, raw
        self.status, self.close, self.seen = status, close, list(seen)
        self.alt = list(alt)
        self.needs = needs
        self.answer_has = tuple(answer_has)

    def outcomes(self):
        return [(self.status, self.close, self.seen)] + [(s, c, list(q)) for s, c, q in self.alt]

    def __repr__(self):
        return "V(%s)" % self.name


def P(target=b"/", version=b"HTTP/1.1"):
    return b"POST " + target + b" " + version


def G(target=b"/", version=b"HTTP/1.1", method=b"GET"):
    return method + b" " + target + b" " + version


SM = b"0\r\n\r\n" + SMUG  # a chunked terminator and a request behind it
HELLO = chunked(b"hello")

VECTORS = [
    # ------------------------------------------------------------------ baselines
    V("baseline_get", "RFC 9112 §3", "a plain request is served and the connection kept",
      head(G(b"/x"), HOST), 200, False, [Seen(APP, "GET", "/x", {"Host": "app.local"})]),
    V("baseline_post_content_length", "rule 5, RFC 9112 §6.2", "a Content-Length body reaches the app",
      head(P(b"/form"), HOST, b"Content-Length: 5") + b"hello", 200, False,
      [Seen(APP, "POST", "/form", body=b"hello")]),
    V("baseline_chunked", "rule 6/20, RFC 9112 §7.1", "a chunked body is de-chunked, TE dropped",
      head(P(), HOST, b"Transfer-Encoding: chunked") + chunked(b"hello", b" world"), 200, False,
      [Seen(APP, "POST", "/", {"Transfer-Encoding": None}, body=b"hello world")]),
    V("baseline_admin_route", "route rules", "the /admin prefix goes to admin.internal",
      head(G(b"/admin/x"), HOST), 200, False, [Seen(ADMIN, "GET", "/admin/x", {"Host": "app.local"})]),
    V("baseline_pipelined", "rule 23, RFC 9112 §9.3.2", "two pipelined requests, answered in order",
      head(G(b"/a"), HOST) + head(G(b"/b"), HOST), (200, 200), False,
      [Seen(APP, "GET", "/a"), Seen(APP, "GET", "/b")]),
    V("cl0_get_body_is_body", "rule 5, RFC 9112 §6.3 (CL.0 desync)",
      "a GET's Content-Length body is its body, not a second request",
      head(G(b"/"), HOST, b"Content-Length: %d" % len(SMUG)) + SMUG, 200, False,
      [Seen(APP, "GET", "/", body=SMUG)]),
    V("cl0_options_body_is_body", "rule 5, RFC 9112 §6.3 (CL.0 desync)",
      "an OPTIONS body framed by Content-Length stays a body",
      head(G(b"/opt", method=b"OPTIONS"), HOST, b"Content-Length: %d" % len(SMUG)) + SMUG, 200, False,
      [Seen(APP, "OPTIONS", "/opt", body=SMUG)]),

    # ------------------------------------------------------------------ rule 1: TE in HTTP/1.0
    V("te_http10_chunked", "rule 1, RFC 9112 §6.1", "chunked in HTTP/1.0: a 1.0 hop would read no body",
      head(P(version=b"HTTP/1.0"), HOST, b"Transfer-Encoding: chunked") + SM, 400, True),
    V("te_http10_keepalive_with_cl", "rule 1/4, RFC 9112 §6.1", "1.0 keep-alive, TE and CL",
      head(P(version=b"HTTP/1.0"), HOST, b"Connection: keep-alive", b"Content-Length: 5",
           b"Transfer-Encoding: chunked") + SM, 400, True),
    V("te_http10_identity", "rule 1, RFC 9112 §6.1", "any Transfer-Encoding in 1.0, even identity",
      head(P(version=b"HTTP/1.0"), HOST, b"Connection: keep-alive", b"Transfer-Encoding: identity") + SMUG,
      400, True),

    # ------------------------------------------------------------------ rule 2: final coding chunked
    V("te_identity", "rule 2, RFC 9112 §6.3 (4)", "TE identity: a TE-ignoring hop reads no body, SMUG follows",
      head(P(), HOST, b"Transfer-Encoding: identity") + SMUG, 400, True),
    V("te_xchunked", "rule 2, Kettle TE.TE", "Transfer-Encoding: xchunked",
      head(P(), HOST, b"Transfer-Encoding: xchunked") + SM, 400, True),
    V("te_xchunked_with_cl", "rule 2/4, Kettle TE.CL obfuscated", "xchunked + Content-Length 5",
      head(P(), HOST, b"Content-Length: 5", b"Transfer-Encoding: xchunked") + SM, 400, True),
    V("te_quoted_chunked", "rule 2, RFC 9110 §5.6.2 (a token, not a quoted-string)", 'Transfer-Encoding: "chunked"',
      head(P(), HOST, b'Transfer-Encoding: "chunked"') + SM, 400, True),
    V("te_chunked_identity", "rule 2, RFC 9112 §6.3 (4)", "chunked not last: chunked, identity",
      head(P(), HOST, b"Transfer-Encoding: chunked, identity") + SM, 400, True),
    V("te_empty_value", "rule 2", "an empty Transfer-Encoding value",
      head(P(), HOST, b"Transfer-Encoding: ") + SM, 400, True),
    V("te_obsfold_x_chunked", "rule 2/8, RFC 9112 §5.2, Kettle", "TE obs-folded: `x` CRLF SP `chunked` is `x chunked`",
      head(P(), HOST, b"Transfer-Encoding: x\r\n chunked") + SM, 400, True),
    V("te_obsfold_to_chunked", "rule 8, RFC 9112 §5.2", "an obs-fold before the value: it is `chunked`",
      head(P(), HOST, b"Transfer-Encoding:\r\n chunked") + HELLO, 200, False,
      [Seen(APP, "POST", "/", {"Transfer-Encoding": None}, body=b"hello")]),
    V("te_two_fields_chunked_identity", "rule 2, RFC 9110 §5.3", "two TE fields, the last one identity",
      head(P(), HOST, b"Transfer-Encoding: chunked", b"Transfer-Encoding: identity") + SM, 400, True),
    V("te_uppercase_chunked", "rule 2, RFC 9112 §7 (case-insensitive)", "CHUNKED is chunked",
      head(P(), HOST, b"Transfer-Encoding: CHUNKED") + HELLO, 200, False, [Seen(APP, "POST", "/", body=b"hello")]),
    V("te_space_before_colon", "rule 8, RFC 9112 §5.1, Kettle", "`Transfer-Encoding : chunked`",
      head(P(), HOST, b"Transfer-Encoding : chunked") + SM, 400, True),
    V("te_space_before_colon_with_cl", "rule 8, RFC 9112 §5.1, Kettle CL.TE", "`Transfer-Encoding : chunked` + CL",
      head(P(), HOST, b"Content-Length: %d" % len(SM), b"Transfer-Encoding : chunked") + SM, 400, True),
    V("te_tab_before_value", "rule 2, RFC 9112 §5.1 (OWS)", "`Transfer-Encoding:<TAB>chunked` is chunked",
      head(P(), HOST, b"Transfer-Encoding:\tchunked") + HELLO, 200, False, [Seen(APP, "POST", "/", body=b"hello")]),
    V("te_vertical_tab", "rule 8, RFC 9110 §5.5", "a VT before chunked (control byte)",
      head(P(), HOST, b"Transfer-Encoding: \x0bchunked") + SM, 400, True),
    V("te_truncated_chunk", "rule 2", "Transfer-Encoding: chunk",
      head(P(), HOST, b"Transfer-Encoding: chunk") + SM, 400, True),
    V("te_unicode_kelvin", "rule 2", "chun\u212aed (Kelvin sign lower-cases to k in some languages)",
      head(P(), HOST, b"Transfer-Encoding: chun\xe2\x84\xaaed") + SM, 400, True),
    V("te_nul_in_value", "rule 8, RFC 9110 §5.5", "chunked followed by NUL",
      head(P(), HOST, b"Transfer-Encoding: chunked\x00") + SM, 400, True),
    V("te_underscore_name_is_not_te", "rule 18/4", "`Transfer_Encoding` is dropped, CL frames the body",
      head(P(), HOST, b"Transfer_Encoding: chunked", b"Content-Length: 5") + b"0\r\n\r\n", 200, False,
      [Seen(APP, "POST", "/", {"Transfer_Encoding": None, "Transfer-Encoding": None}, body=b"0\r\n\r\n")]),
    V("te_bare_lf_before", "rule 8, RFC 9112 §2.2, Kettle", "`X: X<LF>Transfer-Encoding: chunked`",
      head(P(), HOST, b"X: X\nTransfer-Encoding: chunked", b"Content-Length: %d" % len(SM)) + SM, 400, True),
    V("te_name_colon_on_next_line", "rule 8, RFC 9112 §5, Kettle", "`Transfer-Encoding` CRLF `: chunked`",
      head(P(), HOST, b"Transfer-Encoding\r\n: chunked") + SM, 400, True),
    V("te_folded_into_previous_field", "rule 8, RFC 9112 §5.2, Kettle", "` Transfer-Encoding` folded into X",
      head(P(), HOST, b"Content-Length: 5", b"X: y\r\n Transfer-Encoding: chunked") + b"0\r\n\r\n", 200, False,
      [Seen(APP, "POST", "/", {"X": "y Transfer-Encoding: chunked", "Transfer-Encoding": None}, body=b"0\r\n\r\n")]),

    # ------------------------------------------------------------------ rule 3: other codings
    V("te_gzip_chunked", "rule 3, RFC 9112 §6.1 (501)", "gzip, chunked: a coding the gateway does not decode",
      head(P(), HOST, b"Transfer-Encoding: gzip, chunked") + SM, 501, True),
    V("te_identity_chunked", "rule 3, RFC 9112 §6.1", "identity, chunked",
      head(P(), HOST, b"Transfer-Encoding: identity, chunked") + SM, 501, True),
    V("te_two_fields_identity_chunked", "rule 3, RFC 9110 §5.3", "TE identity and TE chunked as two fields",
      head(P(), HOST, b"Transfer-Encoding: identity", b"Transfer-Encoding: chunked") + SM, 501, True),
    V("te_chunked_chunked", "rule 3, RFC 9112 §6.1 (chunked once)", "chunked, chunked",
      head(P(), HOST, b"Transfer-Encoding: chunked, chunked") + chunked(b"5\r\nhello\r\n0\r\n\r\n") + SMUG,
      400, True),
    V("te_two_fields_chunked", "rule 3, RFC 9110 §5.3", "two Transfer-Encoding: chunked fields",
      head(P(), HOST, b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked") + SM, 400, True),

    # ------------------------------------------------------------------ rule 4: TE with CL
    V("cl_te_classic", "rule 4, RFC 9112 §6.3 (3), Kettle CL.TE", "CL covers `0 CRLF CRLF` + SMUG",
      head(P(), HOST, b"Content-Length: %d" % len(SM), b"Transfer-Encoding: chunked") + SM, 400, True),
    V("te_cl_classic", "rule 4, RFC 9112 §6.3 (3), Kettle TE.CL", "CL 4 stops inside a chunk holding SMUG",
      head(P(), HOST, b"Content-Length: 4", b"Transfer-Encoding: chunked") + te_cl_body(), 400, True),
    V("te_cl_te_first", "rule 4, Kettle TE.CL", "TE before CL",
      head(P(), HOST, b"Transfer-Encoding: chunked", b"Content-Length: 4") + te_cl_body(), 400, True),
    V("te_cl_zero", "rule 4", "Content-Length: 0 with a chunked body holding SMUG",
      head(P(), HOST, b"Content-Length: 0", b"Transfer-Encoding: chunked") + te_cl_body(), 400, True),
    V("te_te_obfuscated_with_cl", "rule 2/4, Kettle TE.TE", "TE chunked + TE x + CL",
      head(P(), HOST, b"Transfer-Encoding: chunked", b"Transfer-Encoding: x", b"Content-Length: 4") + te_cl_body(),
      400, True),

    # ------------------------------------------------------------------ rule 5: Content-Length
    V("cl_list_same", "rule 5, RFC 9110 §8.6", "`Content-Length: 5, 5` is 5",
      head(P(), HOST, b"Content-Length: 5, 5") + b"hello", 200, False, [Seen(APP, "POST", "/", body=b"hello")]),
    V("cl_two_fields_same", "rule 5, RFC 9110 §8.6", "two Content-Length: 5 fields are 5",
      head(P(), HOST, b"Content-Length: 5", b"Content-Length: 5") + b"hello", 200, False,
      [Seen(APP, "POST", "/", body=b"hello")]),
    V("cl_list_differ", "rule 5, RFC 9112 §6.3 (5)", "`Content-Length: 5, 6`",
      head(P(), HOST, b"Content-Length: 5, 6") + b"hello" + SMUG, 400, True),
    V("cl_two_fields_differ", "rule 5, RFC 9112 §6.3 (5)", "Content-Length 5 and 6 in two fields",
      head(P(), HOST, b"Content-Length: 5", b"Content-Length: 6") + b"hello" + SMUG, 400, True),
    V("cl_two_fields_zero_then_len", "rule 5, Kettle CL.CL", "CL 0 then CL covering SMUG",
      head(P(), HOST, b"Content-Length: 0", b"Content-Length: %d" % len(SMUG)) + SMUG, 400, True),
    V("cl_plus_sign", "rule 5, RFC 9110 §8.6 (1*DIGIT)", "Content-Length: +5",
      head(P(), HOST, b"Content-Length: +5") + b"hello" + SMUG, 400, True),
    V("cl_negative", "rule 5", "Content-Length: -1",
      head(P(), HOST, b"Content-Length: -1") + SMUG, 400, True),
    V("cl_hex", "rule 5", "Content-Length: 0x5",
      head(P(), HOST, b"Content-Length: 0x5") + b"hello" + SMUG, 400, True),
    V("cl_inner_space", "rule 5", "Content-Length: 1 0",
      head(P(), HOST, b"Content-Length: 1 0") + b"helloworld" + SMUG, 400, True),
    V("cl_decimal", "rule 5", "Content-Length: 5.0",
      head(P(), HOST, b"Content-Length: 5.0") + b"hello" + SMUG, 400, True),
    V("cl_empty", "rule 5", "an empty Content-Length",
      head(P(), HOST, b"Content-Length: ") + SMUG, 400, True),
    V("cl_huge", "rule 5, RFC 9112 §6.3 (overflow)", "a Content-Length over 2^64",
      head(P(), HOST, b"Content-Length: 184467440737095516170") + SMUG, 400, True,
      alt=[(413, True, [])]),
    V("cl_leading_zeros", "rule 5 (1*DIGIT)", "Content-Length: 005 is 5",
      head(P(), HOST, b"Content-Length: 005") + b"hello", 200, False, [Seen(APP, "POST", "/", body=b"hello")]),
    V("cl_trailing_ows", "rule 5, RFC 9112 §5.1 (OWS)", "`Content-Length: 5 <TAB>` is 5",
      head(P(), HOST, b"Content-Length: 5 \t") + b"hello", 200, False, [Seen(APP, "POST", "/", body=b"hello")]),
    V("cl_no_space", "RFC 9112 §5.1", "`Content-Length:5`",
      head(P(), HOST, b"Content-Length:5") + b"hello", 200, False, [Seen(APP, "POST", "/", body=b"hello")]),
    V("cl_over_max_body", "--max-body, RFC 9110 §15.5.14", "a body over the limit: 413 and close",
      head(P(), HOST, b"Content-Length: %d" % (R.MAX_BODY + 1)) + SMUG, 413, True),

    # ------------------------------------------------------------------ rule 6: chunked bodies
    V("chunk_size_0x", "rule 6, RFC 9112 §7.1", "chunk size 0x5",
      head(P(), HOST, b"Transfer-Encoding: chunked") + b"0x5\r\nhello\r\n0\r\n\r\n" + SMUG, 400, True),
    V("chunk_size_negative", "rule 6", "chunk size -5",
      head(P(), HOST, b"Transfer-Encoding: chunked") + b"-5\r\nhello\r\n0\r\n\r\n" + SMUG, 400, True),
    V("chunk_size_overflow", "rule 6 (overflow to 5 modulo 2^64)", "chunk size 10000000000000005",
      head(P(), HOST, b"Transfer-Encoding: chunked") + b"10000000000000005\r\nhello\r\n0\r\n\r\n" + SMUG, 400, True,
      alt=[(413, True, [])]),
    V("chunk_size_non_hex", "rule 6", "chunk size g",
      head(P(), HOST, b"Transfer-Encoding: chunked") + b"g\r\nhello\r\n0\r\n\r\n" + SMUG, 400, True),
    V("chunk_size_leading_space", "rule 6, RFC 9112 §7.1 (no BWS before the size)", "chunk size ` 5`",
      head(P(), HOST, b"Transfer-Encoding: chunked") + b" 5\r\nhello\r\n0\r\n\r\n" + SMUG, 400, True),
    V("chunk_size_empty", "rule 6", "an empty chunk-size line",
      head(P(), HOST, b"Transfer-Encoding: chunked") + b"\r\nhello\r\n0\r\n\r\n" + SMUG, 400, True),
    V("chunk_extensions_ignored", "rule 6, RFC 9112 §7.1.1", "chunk extensions are ignored",
      head(P(), HOST, b"Transfer-Encoding: chunked") + b"5;foo=bar\r\nhello\r\n0;last\r\n\r\n", 200, False,
      [Seen(APP, "POST", "/", body=b"hello")]),
    V("chunk_extension_quoted", "rule 6, RFC 9112 §7.1.1", "a quoted chunk-ext value with ; inside",
      head(P(), HOST, b"Transfer-Encoding: chunked") + b'5;a="b;c"\r\nhello\r\n0\r\n\r\n', 200, False,
      [Seen(APP, "POST", "/", body=b"hello")]),
    V("chunk_missing_crlf_after_data", "rule 6", "chunk data not followed by CRLF",
      head(P(), HOST, b"Transfer-Encoding: chunked") + b"5\r\nhelloXX0\r\n\r\n" + SMUG, 400, True),
    V("chunk_data_longer_than_size", "rule 6", "size 3, five bytes of data",
      head(P(), HOST, b"Transfer-Encoding: chunked") + b"3\r\nhello\r\n0\r\n\r\n" + SMUG, 400, True),
    V("chunk_missing_final_crlf", "rule 6/7, RFC 9112 §7.1", "`0 CRLF` then a request line read as a trailer",
      head(P(), HOST, b"Transfer-Encoding: chunked") + b"5\r\nhello\r\n0\r\n" + SMUG, 400, True),
    V("chunk_bare_lf_after_size", "rule 6/8", "chunk size ended by a bare LF",
      head(P(), HOST, b"Transfer-Encoding: chunked") + b"5\nhello\r\n0\r\n\r\n" + SMUG, 400, True),
    V("chunk_size_leading_zeros", "rule 6, RFC 9112 §7.1 (1*HEXDIG)", "chunk size 0005 and last 000",
      head(P(), HOST, b"Transfer-Encoding: chunked") + b"0005\r\nhello\r\n000\r\n\r\n", 200, False,
      [Seen(APP, "POST", "/", body=b"hello")]),
    V("chunk_size_upper_hex", "rule 6", "chunk size A",
      head(P(), HOST, b"Transfer-Encoding: chunked") + b"A\r\n0123456789\r\n0\r\n\r\n", 200, False,
      [Seen(APP, "POST", "/", body=b"0123456789")]),
    V("chunked_over_max_body", "--max-body (the de-chunked length)", "chunks adding up over the limit",
      head(P(), HOST, b"Transfer-Encoding: chunked") + chunked(b"a" * 3000, b"b" * 3000) + SMUG, 413, True),

    # ------------------------------------------------------------------ rule 7: trailers
    V("trailer_host", "rule 7, RFC 9110 §6.5.1", "a Host trailer never routes nor reaches the app",
      head(P(b"/x"), HOST, b"Transfer-Encoding: chunked") + b"5\r\nhello\r\n0\r\nHost: admin.internal\r\n\r\n",
      200, False, [Seen(APP, "POST", "/x", {"Host": "app.local"}, body=b"hello")]),
    V("trailer_x_forwarded_for", "rule 7/19", "an X-Forwarded-For trailer is thrown away",
      head(P(), HOST, b"Transfer-Encoding: chunked") + b"5\r\nhello\r\n0\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n",
      200, False, [Seen(APP, "POST", "/", {"X-Forwarded-For": PEER}, body=b"hello")]),
    V("trailer_authorization", "rule 7", "an Authorization trailer is thrown away",
      head(P(), HOST, b"Transfer-Encoding: chunked") + b"5\r\nhello\r\n0\r\nAuthorization: Basic YWRtaW46YWRtaW4=\r\n\r\n",
      200, False, [Seen(APP, "POST", "/", {"Authorization": None}, body=b"hello")]),
    # RFC 9110 §6.5.1: framing fields are not allowed in a trailer section. docs/http.md: a trailer
    # carrying Content-Length or Transfer-Encoding makes the request malformed (400 and close), it
    # never re-frames anything (Beast refuses it; nginx drops the field and serves the request).
    V("trailer_content_length", "rule 7/20, RFC 9110 §6.5.1", "a Content-Length trailer re-frames nothing: 400",
      head(P(), HOST, b"Transfer-Encoding: chunked") + b"5\r\nhello\r\n0\r\nContent-Length: 100\r\n\r\n" + SMUG,
      400, True, []),
    V("trailer_transfer_encoding", "rule 7, RFC 9110 §6.5.1", "a Transfer-Encoding trailer re-frames nothing: 400",
      head(P(), HOST, b"Transfer-Encoding: chunked") + b"5\r\nhello\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n" + SMUG,
      400, True, []),
    V("trailer_declared", "rule 7/17", "`Trailer: X-Secret` and the X-Secret trailer: neither reaches the app",
      head(P(), HOST, b"Trailer: X-Secret", b"Transfer-Encoding: chunked")
      + b"5\r\nhello\r\n0\r\nX-Secret: s3cr3t\r\n\r\n", 200, False,
      [Seen(APP, "POST", "/", {"Trailer": None, "X-Secret": None}, body=b"hello")]),

    # ------------------------------------------------------------------ rule 8: bytes of the head
    V("bare_lf_line_ends", "rule 8, RFC 9112 §2.2", "bare LF everywhere",
      b"GET / HTTP/1.1\nHost: app.local\n\n" + SMUG, 400, True),
    V("bare_lf_one_field", "rule 8, RFC 9112 §2.2", "one field line ended by a bare LF",
      b"GET / HTTP/1.1\r\nHost: app.local\nX: y\r\n\r\n" + SMUG, 400, True),
    V("bare_cr_line_end", "rule 8, RFC 9112 §2.2", "a field line ended by a bare CR",
      b"GET / HTTP/1.1\r\nHost: app.local\rX: y\r\n\r\n" + SMUG, 400, True),
    V("nul_in_field_value", "rule 8, RFC 9110 §5.5", "NUL in a value",
      head(G(), HOST, b"X: a\x00b") + SMUG, 400, True),
    V("cr_in_field_value", "rule 8, RFC 9110 §5.5", "CR inside a value",
      head(G(), HOST, b"X: a\rb") + SMUG, 400, True),
    V("del_in_field_value", "rule 8, RFC 9110 §5.5", "DEL (0x7f) in a value",
      head(G(), HOST, b"X: a\x7fb") + SMUG, 400, True),
    V("ctl_in_field_value", "rule 8, RFC 9110 §5.5", "SOH (0x01) in a value",
      head(G(), HOST, b"X: a\x01b") + SMUG, 400, True),
    V("space_before_colon_host", "rule 8, RFC 9112 §5.1", "`Host : admin.internal` after a good Host",
      head(G(b"/x"), HOST, b"Host : admin.internal") + SMUG, 400, True),
    V("tab_before_colon_cl", "rule 8, RFC 9112 §5.1", "`Content-Length<TAB>: N` covering SMUG",
      head(P(), HOST, b"Content-Length\t: %d" % len(SMUG)) + SMUG, 400, True),
    V("obs_fold_first_field_line", "rule 8, RFC 9112 §2.2", "the first field line starts with SP",
      b"GET / HTTP/1.1\r\n Host: admin.internal\r\nHost: app.local\r\n\r\n" + SMUG, 400, True),
    V("request_line_double_space", "rule 8, RFC 9112 §3", "`GET  / HTTP/1.1`",
      b"GET  / HTTP/1.1\r\nHost: app.local\r\n\r\n" + SMUG, 400, True),
    V("request_line_trailing_space", "rule 8, RFC 9112 §3", "`GET / HTTP/1.1 `",
      b"GET / HTTP/1.1 \r\nHost: app.local\r\n\r\n" + SMUG, 400, True),
    V("request_line_tabs", "rule 8, RFC 9112 §3", "tabs instead of SP in the request line",
      b"GET\t/admin/x\tHTTP/1.1\r\nHost: app.local\r\n\r\n" + SMUG, 400, True),
    V("nul_in_request_line", "rule 8", "NUL in the target",
      b"GET /\x00 HTTP/1.1\r\nHost: app.local\r\n\r\n" + SMUG, 400, True),
    V("obs_fold_value_joined", "rule 8/21, RFC 9112 §5.2", "an obs-fold inside a value becomes one SP",
      head(G(), HOST, b"X-Folded: a\r\n  b"), 200, False, [Seen(APP, "GET", "/", {"X-Folded": "a b"})]),
    V("field_name_with_space", "rule 8, RFC 9110 §5.1 (token)", "`X Y: z`",
      head(G(), HOST, b"X Y: z") + SMUG, 400, True),
    V("field_name_empty", "rule 8, RFC 9110 §5.1", "`: z`",
      head(G(), HOST, b": z") + SMUG, 400, True),
    V("field_name_not_token", "rule 8, RFC 9110 §5.1 (token)", "`X@Y: z`: @ is not a tchar",
      head(G(), HOST, b"X@Y: z") + SMUG, 400, True),
    V("request_line_space_in_target", "rule 8, RFC 9112 §3", "`GET /a b HTTP/1.1`: a SP inside the target",
      b"GET /a b HTTP/1.1\r\nHost: app.local\r\n\r\n" + SMUG, 400, True),
    V("field_line_without_colon", "rule 8, RFC 9112 §5", "a field line with no colon",
      head(G(), HOST, b"Xyz") + SMUG, 400, True),
    V("obs_text_value_kept", "rule 21, RFC 9110 §5.5 (obs-text)", "a Latin-1 byte in a value reaches the app",
      head(G(), HOST, b"X-Latin: caf\xe9"), 200, False, [Seen(APP, "GET", "/", {"X-Latin": "caf\xe9"})]),

    # ------------------------------------------------------------------ rule 9: Expect
    V("expect_100_continue", "rule 9/17, RFC 9110 §10.1.1", "100-continue is served; Expect not forwarded",
      head(P(), HOST, b"Expect: 100-continue", b"Content-Length: 5") + b"hello", 200, False,
      [Seen(APP, "POST", "/", {"Expect": None}, body=b"hello")]),
    V("expect_other", "rule 9, RFC 9110 §10.1.1", "Expect: 200-ok",
      head(P(), HOST, b"Expect: 200-ok", b"Content-Length: 5") + b"hello" + SMUG, 417, True),
    V("expect_list", "rule 9", "Expect: 100-continue, foo",
      head(P(), HOST, b"Expect: 100-continue, foo", b"Content-Length: 5") + b"hello" + SMUG, 417, True),
    V("expect_empty", "rule 9", "an empty Expect",
      head(G(), HOST, b"Expect: ") + SMUG, 417, True),

    # ------------------------------------------------------------------ rule 10: one Host
    V("host_missing_http11", "rule 10, RFC 9112 §3.2", "HTTP/1.1 without Host",
      head(G(b"/x")) + SMUG, 400, True),
    V("host_two_same", "rule 10, RFC 9112 §3.2", "two Host fields, same value",
      head(G(b"/x"), HOST, HOST) + SMUG, 400, True),
    V("host_two_different", "rule 10, RFC 9112 §3.2", "Host app.local then admin.internal",
      head(G(b"/x"), HOST, b"Host: admin.internal") + SMUG, 400, True),
    V("host_empty_and_app", "rule 10", "an empty Host and Host app.local",
      head(G(b"/x"), b"Host: ", HOST) + SMUG, 400, True),
    V("host_missing_http10", "rule 10, RFC 9112 §3.2", "HTTP/1.0 without Host: no host, --default-service",
      head(G(b"/ten", b"HTTP/1.0")) + SMUG, 200, True, [Seen(APP, "GET", "/ten")]),
    V("host_two_http10", "rule 10", "HTTP/1.0 with two Hosts",
      head(G(b"/ten", b"HTTP/1.0"), HOST, b"Host: admin.internal") + SMUG, 400, True),
    V("host_empty_value", "rule 10/11", "an empty Host: no host, --default-service",
      head(G(b"/e"), b"Host: "), 200, False, [Seen(APP, "GET", "/e")]),

    # ------------------------------------------------------------------ rule 11: Host value
    V("host_userinfo", "rule 11, RFC 9110 §7.2", "Host: evil@app.local",
      head(G(b"/x"), b"Host: evil@app.local") + SMUG, 400, True),
    V("host_with_path", "rule 11", "Host: app.local/admin",
      head(G(b"/x"), b"Host: app.local/admin") + SMUG, 400, True),
    V("host_with_space", "rule 11", "Host: app.local admin.internal",
      head(G(b"/x"), b"Host: app.local admin.internal") + SMUG, 400, True),
    V("host_percent", "rule 11", "Host: app%2elocal",
      head(G(b"/x"), b"Host: app%2elocal") + SMUG, 400, True),
    V("host_ipv6_literal", "rule 11, RFC 3986 §3.2.2", "Host: [::1] is valid (no worker there: 503)",
      head(G(b"/x"), b"Host: [::1]"), 503, False),
    V("host_ipv6_literal_port", "rule 11", "Host: [::1]:8080 is valid (503)",
      head(G(b"/x"), b"Host: [::1]:8080"), 503, False),
    V("host_ipv6_unbracketed", "rule 11", "Host: ::1",
      head(G(b"/x"), b"Host: ::1") + SMUG, 400, True),
    V("host_ipv4", "rule 11", "Host: 127.0.0.1 is valid (503)",
      head(G(b"/x"), b"Host: 127.0.0.1"), 503, False),
    V("host_with_port", "rule 11/21", "Host: app.local:8080 routes as app.local, reaches the app as sent",
      head(G(b"/admin/p"), b"Host: app.local:8080"), 200, False,
      [Seen(ADMIN, "GET", "/admin/p", {"Host": "app.local:8080"})]),
    V("host_upper_case_routes", "route rules (host is case-insensitive), RFC 9110 §4.2.3",
      "Host: APP.LOCAL cannot dodge the host=app.local,prefix=/admin rule",
      head(G(b"/admin/u"), b"Host: APP.LOCAL"), 200, False, [Seen(ADMIN, "GET", "/admin/u", {"Host": "APP.LOCAL"})]),
    V("host_empty_port", "rule 11, RFC 3986 §3.2.3 (port = *DIGIT)", "Host: app.local:",
      head(G(b"/x"), b"Host: app.local:"), 200, False, [Seen(APP, "GET", "/x")]),
    V("host_port_six_digits", "rule 11", "Host: app.local:123456",
      head(G(b"/x"), b"Host: app.local:123456") + SMUG, 400, True),
    V("host_port_not_digits", "rule 11", "Host: app.local:8o",
      head(G(b"/x"), b"Host: app.local:8o") + SMUG, 400, True),
    V("host_two_ports", "rule 11", "Host: app.local:80:80",
      head(G(b"/x"), b"Host: app.local:80:80") + SMUG, 400, True),
    V("host_quoted", "rule 11", 'Host: "app.local"',
      head(G(b"/x"), b'Host: "app.local"') + SMUG, 400, True),
    V("host_hash", "rule 11", "Host: app.local#x",
      head(G(b"/x"), b"Host: app.local#x") + SMUG, 400, True),
    V("host_backslash", "rule 11", "Host: app.local\\admin",
      head(G(b"/x"), b"Host: app.local\\admin") + SMUG, 400, True),
    V("host_comma_is_sub_delim", "rule 11 (sub-delims)", "Host: app.local,admin.internal is one reg-name (503)",
      head(G(b"/x"), b"Host: app.local,admin.internal"), 503, False),

    # ------------------------------------------------------------------ rule 12: absolute form
    V("absolute_form_admin_bypass", "rule 12/14, RFC 9112 §3.2.2", "absolute form cannot dodge the /admin prefix",
      head(G(b"http://app.local/admin/x"), HOST), 200, False,
      [Seen(ADMIN, "GET", "/admin/x", {"Host": "app.local"})]),
    V("absolute_form_authority_wins", "rule 12, RFC 9112 §3.2.2", "the authority replaces Host",
      head(G(b"http://admin.internal/x"), HOST), 200, False,
      [Seen(ADMIN, "GET", "/x", {"Host": "admin.internal"})]),
    V("absolute_form_host_ignored", "rule 12", "Host admin.internal is ignored for an app.local target",
      head(G(b"http://app.local/x"), b"Host: admin.internal"), 200, False,
      [Seen(APP, "GET", "/x", {"Host": "app.local"})]),
    V("absolute_form_empty_path", "rule 12", "an empty path becomes /",
      head(G(b"http://app.local"), HOST), 200, False, [Seen(APP, "GET", "/", {"Host": "app.local"})]),
    V("absolute_form_empty_path_query", "rule 12, RFC 3986 §3", "http://app.local?q=1 is /?q=1",
      head(G(b"http://app.local?q=1"), HOST), 200, False, [Seen(APP, "GET", "/?q=1")]),
    V("absolute_form_scheme_case", "rule 12", "HTTP://APP.LOCAL/admin/x",
      head(G(b"HTTP://APP.LOCAL/admin/x"), HOST), 200, False,
      [Seen(ADMIN, "GET", "/admin/x", {"Host": "APP.LOCAL"})]),
    V("absolute_form_https", "rule 12/19", "https scheme accepted, X-Forwarded-Proto stays http",
      head(G(b"https://app.local/x"), HOST), 200, False,
      [Seen(APP, "GET", "/x", {"Host": "app.local", "X-Forwarded-Proto": "http"})]),
    V("absolute_form_port", "rule 12", "the authority's port goes with it",
      head(G(b"http://app.local:8080/admin/x"), HOST), 200, False,
      [Seen(ADMIN, "GET", "/admin/x", {"Host": "app.local:8080"})]),
    V("absolute_form_dot_segments", "rule 12/14", "http://app.local/x/../admin/y",
      head(G(b"http://app.local/x/../admin/y"), HOST), 200, False, [Seen(ADMIN, "GET", "/admin/y")]),
    V("absolute_form_ftp", "rule 12", "ftp scheme",
      head(G(b"ftp://app.local/x"), HOST) + SMUG, 400, True),
    V("absolute_form_userinfo", "rule 12, RFC 9110 §4.2.4", "userinfo in the authority",
      head(G(b"http://u:p@app.local/x"), HOST) + SMUG, 400, True),
    V("absolute_form_empty_host", "rule 12", "http:///admin/x",
      head(G(b"http:///admin/x"), HOST) + SMUG, 400, True),
    V("absolute_form_no_host_field", "rule 10/12, RFC 9112 §3.2", "absolute form still needs Host",
      head(G(b"http://app.local/x")) + SMUG, 400, True),
    V("absolute_form_two_hosts", "rule 10/12", "absolute form with two Hosts",
      head(G(b"http://app.local/x"), HOST, b"Host: admin.internal") + SMUG, 400, True),
    V("absolute_form_bad_host_field", "rule 11/12", "absolute form with Host: a@b",
      head(G(b"http://app.local/x"), b"Host: a@b") + SMUG, 400, True),

    # ------------------------------------------------------------------ rule 13: target forms
    V("target_without_slash", "rule 13, RFC 9112 §3.2", "GET admin/x",
      head(G(b"admin/x"), HOST) + SMUG, 400, True),
    V("target_asterisk_options", "rule 13, RFC 9112 §3.2.4", "OPTIONS * is forwarded as *",
      head(G(b"*", method=b"OPTIONS"), HOST), 200, False, [Seen(APP, "OPTIONS", "*")]),
    V("target_asterisk_get", "rule 13", "GET *",
      head(G(b"*"), HOST) + SMUG, 400, True),
    V("target_authority_form_get", "rule 13, RFC 9112 §3.2.3", "GET app.local:80",
      head(G(b"app.local:80"), HOST) + SMUG, 400, True),
    V("target_query_only", "rule 13", "GET ?a=1",
      head(G(b"?a=1"), HOST) + SMUG, 400, True),

    # ------------------------------------------------------------------ rule 14: normalisation
    V("path_dot_segment", "rule 14, RFC 3986 §5.2.4", "/./admin/x",
      head(G(b"/./admin/x"), HOST), 200, False, [Seen(ADMIN, "GET", "/admin/x")]),
    V("path_double_slash", "rule 14", "//admin/x",
      head(G(b"//admin/x"), HOST), 200, False, [Seen(ADMIN, "GET", "/admin/x")]),
    V("path_percent_unreserved", "rule 14, RFC 3986 §6.2.2.2", "/%61dmin/x",
      head(G(b"/%61dmin/x"), HOST), 200, False, [Seen(ADMIN, "GET", "/admin/x")]),
    V("path_dot_dot", "rule 14", "/x/../admin/x",
      head(G(b"/x/../admin/x"), HOST), 200, False, [Seen(ADMIN, "GET", "/admin/x")]),
    V("path_encoded_dot_dot", "rule 14", "/%2e%2e/admin/x",
      head(G(b"/%2e%2e/admin/x"), HOST), 200, False, [Seen(ADMIN, "GET", "/admin/x")]),
    V("path_mixed_dot_dot", "rule 14", "/.%2E/admin/x",
      head(G(b"/.%2E/admin/x"), HOST), 200, False, [Seen(ADMIN, "GET", "/admin/x")]),
    V("path_dot_dot_above_root", "rule 14", "/../../admin/x never climbs above /",
      head(G(b"/../../admin/x"), HOST), 200, False, [Seen(ADMIN, "GET", "/admin/x")]),
    V("path_leave_admin", "rule 14", "/admin/../x is /x (app.local)",
      head(G(b"/admin/../x"), HOST), 200, False, [Seen(APP, "GET", "/x")]),
    V("path_dot_dot_at_end", "rule 14", "/admin/.. is /",
      head(G(b"/admin/.."), HOST), 200, False, [Seen(APP, "GET", "/")]),
    # docs/http.md: an encoded '/', '\\' or NUL, or a raw '\\', is refused (400 and close): workers
    # disagree on them (some decode before splitting, some stop at NUL, some split at '\\').
    V("path_encoded_slash_kept", "rule 14 (docs/http.md: refused)", "/admin%2fx: an encoded slash is refused",
      head(G(b"/admin%2fx"), HOST) + SMUG, 400, True),
    V("path_encoded_slash_first", "rule 14 (docs/http.md: refused)", "/%2Fadmin/x is refused",
      head(G(b"/%2Fadmin/x"), HOST) + SMUG, 400, True),
    V("path_encoded_slash_dot_dot", "rule 14 (docs/http.md: refused)", "/x%2f..%2fadmin is refused",
      head(G(b"/x%2f..%2fadmin"), HOST) + SMUG, 400, True),
    V("path_encoded_backslash", "rule 14 (docs/http.md: refused)", "/public/..%5cadmin is refused",
      head(G(b"/public/..%5cadmin"), HOST) + SMUG, 400, True),
    V("path_raw_backslash", "rule 14 (docs/http.md: refused)", "/public/..\\admin (WHATWG: /admin) is refused",
      head(G(b"/public/..\\admin"), HOST) + SMUG, 400, True),
    V("path_encoded_nul", "rule 14 (docs/http.md: refused)", "/admin%00.txt (C strings stop at NUL) is refused",
      head(G(b"/x/admin%00"), HOST) + SMUG, 400, True),
    V("path_dot_dot_with_parameter", "rule 14 (docs/http.md: refused)", "/public/..;/admin (Tomcat: /admin) is refused",
      head(G(b"/public/..;/admin"), HOST) + SMUG, 400, True),
    V("path_raw_utf8_escaped", "rule 14 (docs/http.md)", "raw UTF-8 reaches the app escaped, as its escaped spelling does",
      head(G(b"/caf\xc3\xa9"), HOST), 200, False, [Seen(APP, "GET", "/caf%C3%A9")]),
    V("path_lower_hex_upcased", "rule 14, RFC 3986 §6.2.2.1", "/x%3ay: other escapes kept, hex upper-cased",
      head(G(b"/x%3ay"), HOST), 200, False, [Seen(APP, "GET", "/x%3Ay")]),
    V("path_tilde_decoded", "rule 14", "/%7Euser is /~user",
      head(G(b"/%7Euser"), HOST), 200, False, [Seen(APP, "GET", "/~user")]),
    V("path_bad_escape", "rule 14", "/%zz",
      head(G(b"/%zz"), HOST) + SMUG, 400, True),
    V("path_truncated_escape", "rule 14", "/admin%2",
      head(G(b"/admin%2"), HOST) + SMUG, 400, True),
    V("path_query_untouched", "rule 14", "the query is passed as sent",
      head(G(b"/admin/./x?a=%61&b=/../c"), HOST), 200, False, [Seen(ADMIN, "GET", "/admin/x?a=%61&b=/../c")]),
    V("path_semicolon_is_prefix", "route prefix rule (docs/http.md)",
      "/admin;x matches /admin: servers that strip path parameters read /admin",
      head(G(b"/admin;x"), HOST), 200, False, [Seen(ADMIN, "GET", "/admin;x")]),
    V("host_trailing_dot", "route host rule (docs/http.md)", "app.local. is app.local: /admin still routes to admin",
      head(G(b"/admin/x"), b"Host: app.local."), 200, False, [Seen(ADMIN, "GET", "/admin/x")]),
    V("chunk_extension_unbounded", "rule 6 (docs/http.md: a chunk line is bounded)",
      "a chunk extension longer than the limit: 400 and close, not an ever-growing buffer",
      head(P(), HOST, b"Transfer-Encoding: chunked") + b"1;x=" + b"a" * (R.MAX_HEADER + 70000), 400, True),
    V("trailer_unbounded", "rule 7 (docs/http.md: the trailer section is bounded)",
      "a trailer section longer than the limit: 400 and close",
      head(P(), HOST, b"Transfer-Encoding: chunked") + b"0\r\nX-T: " + b"a" * (R.MAX_HEADER + 70000), 400, True),
    V("connect_without_port", "rule 15, RFC 9112 §3.2.3", "CONNECT [::1] (no port): 400",
      head(G(b"[::1]", method=b"CONNECT"), b"Host: [::1]") + SMUG, 400, True),
    V("expect_continue_list", "rule 9", "Expect: 100-continue, 100-continue still gets 100 Continue",
      head(P(b"/e"), HOST, b"Expect: 100-continue, 100-continue", b"Content-Length: 5") + b"hello",
      200, False, [Seen(APP, "POST", "/e", body=b"hello")]),

    # ------------------------------------------------------------------ rule 15: CONNECT
    V("connect_refused", "rule 15, RFC 9110 §9.3.6", "CONNECT without a connect=yes route: 405, Allow",
      head(G(b"app.local:443", method=b"CONNECT"), b"Host: app.local:443") + SMUG, 405, True,
      answer_has=("Allow",)),
    V("connect_origin_form", "rule 13/15", "CONNECT /x",
      head(G(b"/x", method=b"CONNECT"), HOST) + SMUG, 405, True, alt=[(400, True, [])]),
    V("connect_tunnel_route", "rule 15", "CONNECT on a connect=yes route: forwarded, 2xx becomes 502, close",
      head(G(b"tunnel.local:443", method=b"CONNECT"), b"Host: tunnel.local:443") + SMUG, 502, True,
      [Seen(APP, "CONNECT", "tunnel.local:443")], needs="connect_route"),

    # ------------------------------------------------------------------ rule 16: methods
    V("method_trace", "rule 16, RFC 9110 §9.3.8", "TRACE is forwarded",
      head(G(b"/t", method=b"TRACE"), HOST), 200, False, [Seen(APP, "TRACE", "/t")]),
    V("method_unknown", "rule 16, RFC 9110 §9.1", "an unknown token method is forwarded",
      head(G(b"/p", method=b"PURGE"), HOST), 200, False, [Seen(APP, "PURGE", "/p")]),
    V("method_lower_case", "rule 16, RFC 9110 §9.1 (case-sensitive)", "`get` is another method, forwarded as is",
      head(G(b"/l", method=b"get"), HOST), 200, False, [Seen(APP, "get", "/l")]),
    V("method_gpost", "rule 16, Kettle (`G` prefix + POST)", "GPOST is just a method",
      head(G(b"/", method=b"GPOST"), HOST), 200, False, [Seen(APP, "GPOST", "/")]),
    V("method_not_token", "rule 8, RFC 9110 §9.1", "GE(T is not a token",
      head(G(b"/", method=b"GE(T"), HOST) + SMUG, 400, True),

    # ------------------------------------------------------------------ rule 17: hop-by-hop
    V("connection_host", "rule 17, RFC 9110 §7.6.1", "Connection: Host cannot strip Host",
      head(G(b"/c"), HOST, b"Connection: Host"), 200, False, [Seen(APP, "GET", "/c", {"Host": "app.local"})]),
    V("connection_x_forwarded_for", "rule 17/19", "Connection: X-Forwarded-For cannot strip the gateway's own",
      head(G(b"/c"), HOST, b"Connection: X-Forwarded-For"), 200, False,
      [Seen(APP, "GET", "/c", {"X-Forwarded-For": PEER})]),
    V("connection_content_length", "rule 17/20", "Connection: Content-Length cannot strip the length",
      head(P(b"/c"), HOST, b"Connection: Content-Length", b"Content-Length: 5") + b"hello", 200, False,
      [Seen(APP, "POST", "/c", {"Content-Length": "5"}, body=b"hello")]),
    V("connection_named_field", "rule 17, RFC 9110 §7.6.1", "a field named in Connection is dropped",
      head(G(b"/c"), HOST, b"Connection: X-Secret", b"X-Secret: s"), 200, False,
      [Seen(APP, "GET", "/c", {"X-Secret": None, "Connection": None})]),
    V("connection_two_fields", "rule 17", "the tokens of every Connection field count",
      head(G(b"/c"), HOST, b"Connection: keep-alive", b"Connection: X-A", b"X-A: 1"), 200, False,
      [Seen(APP, "GET", "/c", {"X-A": None})]),
    V("connection_authorization", "rule 17, Kettle (hop-by-hop abuse)", "Connection: Authorization drops it",
      head(G(b"/c"), HOST, b"Connection: Authorization", b"Authorization: Basic YTpi"), 200, False,
      [Seen(APP, "GET", "/c", {"Authorization": None})]),
    V("connection_gateway_fields", "rule 17/19", "Connection cannot strip X-Request-Id, Forwarded, X-Real-IP, X-Forwarded-Proto",
      head(G(b"/c"), HOST, b"Connection: X-Request-Id, Forwarded, X-Real-IP, X-Forwarded-Proto"), 200, False,
      [Seen(APP, "GET", "/c", {"Forwarded": OWN_FORWARDED, "X-Real-IP": PEER, "X-Forwarded-Proto": "http"})]),
    V("hop_by_hop_fields_dropped", "rule 17, RFC 9110 §7.6.1", "Keep-Alive, Proxy-Connection, TE, Upgrade, Trailer",
      head(G(b"/h"), HOST, b"Keep-Alive: timeout=5", b"Proxy-Connection: keep-alive", b"TE: trailers",
           b"Upgrade: websocket", b"Trailer: X-T"), 200, False,
      [Seen(APP, "GET", "/h", {"Keep-Alive": None, "Proxy-Connection": None, "TE": None, "Upgrade": None,
                               "Trailer": None})]),
    V("h2c_upgrade_not_honoured", "rule 17, RFC 9113 §3.1 (h2c), Bishop Fox h2c smuggling",
      "an h2c upgrade is answered in HTTP/1.1; Upgrade and HTTP2-Settings are not forwarded",
      head(G(b"/h2c"), HOST, b"Connection: Upgrade, HTTP2-Settings", b"Upgrade: h2c",
           b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA"), 200, False,
      [Seen(APP, "GET", "/h2c", {"Upgrade": None, "HTTP2-Settings": None, "Connection": None})]),
    V("h2c_upgrade_then_preface", "rule 17, h2c smuggling", "after the upgrade request, the HTTP/2 preface is no request",
      head(G(b"/h2c"), HOST, b"Connection: Upgrade, HTTP2-Settings", b"Upgrade: h2c",
           b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA") + b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + SMUG,
      (200, {400, 505}), True, [Seen(APP, "GET", "/h2c")]),
    V("h2_prior_knowledge_preface", "RFC 9113 §3.3, RFC 9112 §2.3", "the HTTP/2 preface sent to an HTTP/1.1 port",
      b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + SMUG, 505, True, alt=[(400, True, [])]),
    V("websocket_upgrade_not_forwarded", "rule 17", "Upgrade: websocket is hop-by-hop",
      head(G(b"/ws"), HOST, b"Connection: Upgrade", b"Upgrade: websocket",
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", b"Sec-WebSocket-Version: 13"), 200, False,
      [Seen(APP, "GET", "/ws", {"Upgrade": None, "Connection": None})]),

    # ------------------------------------------------------------------ rule 18: underscores
    V("underscore_x_forwarded_for", "rule 18", "X_Forwarded_For looks like X-Forwarded-For to CGI: dropped",
      head(G(b"/u"), HOST, b"X_Forwarded_For: 6.6.6.6"), 200, False,
      [Seen(APP, "GET", "/u", {"X_Forwarded_For": None, "X-Forwarded-For": PEER})]),
    V("underscore_custom", "rule 18", "X_Custom is dropped",
      head(G(b"/u"), HOST, b"X_Custom: 1", b"X-Kept: 2"), 200, False,
      [Seen(APP, "GET", "/u", {"X_Custom": None, "X-Kept": "2"})]),
    V("underscore_content_length", "rule 18/23", "Content_Length frames nothing: `hello` is a bad next request line",
      head(P(b"/u"), HOST, b"Content_Length: 7") + b"hello\r\n\r\n", (200, 400), True,
      [Seen(APP, "POST", "/u", {"Content_Length": None}, body=b"")]),

    # ------------------------------------------------------------------ rule 19: forwarded fields
    V("forwarded_fields_added", "rule 19", "an untrusted peer: the gateway's four fields, no X-Forwarded-Host",
      head(G(b"/f"), HOST), 200, False,
      [Seen(APP, "GET", "/f", {"X-Forwarded-For": PEER, "X-Forwarded-Proto": "http", "Forwarded": OWN_FORWARDED,
                               "X-Real-IP": PEER, "X-Forwarded-Host": None})]),
    V("xff_replaced", "rule 19", "a client X-Forwarded-For is replaced, not appended to",
      head(G(b"/f"), HOST, b"X-Forwarded-For: 1.2.3.4"), 200, False,
      [Seen(APP, "GET", "/f", {"X-Forwarded-For": PEER})]),
    V("xff_two_fields_replaced", "rule 19", "two client X-Forwarded-For fields",
      head(G(b"/f"), HOST, b"X-Forwarded-For: 1.2.3.4", b"X-Forwarded-For: 5.6.7.8"), 200, False,
      [Seen(APP, "GET", "/f", {"X-Forwarded-For": PEER})]),
    V("xff_lower_case_replaced", "rule 19", "x-forwarded-for in lower case",
      head(G(b"/f"), HOST, b"x-forwarded-for: 1.2.3.4"), 200, False,
      [Seen(APP, "GET", "/f", {"X-Forwarded-For": PEER})]),
    V("forwarded_replaced", "rule 19, RFC 7239", "a client Forwarded is replaced",
      head(G(b"/f"), HOST, b"Forwarded: for=1.2.3.4;host=evil;proto=https"), 200, False,
      [Seen(APP, "GET", "/f", {"Forwarded": OWN_FORWARDED})]),
    V("x_real_ip_replaced", "rule 19", "a client X-Real-IP is replaced",
      head(G(b"/f"), HOST, b"X-Real-IP: 1.2.3.4"), 200, False, [Seen(APP, "GET", "/f", {"X-Real-IP": PEER})]),
    V("x_forwarded_proto_replaced", "rule 19", "a client X-Forwarded-Proto: https is replaced",
      head(G(b"/f"), HOST, b"X-Forwarded-Proto: https"), 200, False,
      [Seen(APP, "GET", "/f", {"X-Forwarded-Proto": "http"})]),
    V("x_forwarded_host_removed", "rule 19", "a client X-Forwarded-Host is removed",
      head(G(b"/f"), HOST, b"X-Forwarded-Host: admin.internal"), 200, False,
      [Seen(APP, "GET", "/f", {"X-Forwarded-Host": None})]),
    V("fields_order_and_case_kept", "rule 21", "other fields reach the app byte for byte, in order",
      head(G(b"/o"), HOST, b"x-lower: a", b"X-UPPER: B", b"X-Mixed-Case: c  d"), 200, False,
      [Seen(APP, "GET", "/o", {"x-lower": "a", "X-UPPER": "B", "X-Mixed-Case": "c  d"},
            order=["Host", "x-lower", "X-UPPER", "X-Mixed-Case"])]),

    # ------------------------------------------------------------------ rule 22: connections
    V("connection_close_then_smuggle", "rule 22/23", "after Connection: close nothing more is read",
      head(G(b"/k"), HOST, b"Connection: close") + SMUG, 200, True, [Seen(APP, "GET", "/k")]),
    V("http10_closes_by_default", "rule 22, RFC 9112 §9.3", "HTTP/1.0 without keep-alive closes",
      head(G(b"/k", b"HTTP/1.0"), HOST) + SMUG, 200, True, [Seen(APP, "GET", "/k")]),
    V("http10_keep_alive", "rule 22", "HTTP/1.0 with Connection: keep-alive stays open",
      head(G(b"/a", b"HTTP/1.0"), HOST, b"Connection: keep-alive")
      + head(G(b"/b", b"HTTP/1.0"), HOST, b"Connection: keep-alive"), (200, 200), False,
      [Seen(APP, "GET", "/a"), Seen(APP, "GET", "/b")]),
    V("connection_close_second_field", "rule 22", "Connection: keep-alive then Connection: close",
      head(G(b"/k"), HOST, b"Connection: keep-alive", b"Connection: close") + SMUG, 200, True,
      [Seen(APP, "GET", "/k")]),
    V("connection_close_in_list", "rule 22", "Connection: keep-alive, close",
      head(G(b"/k"), HOST, b"Connection: keep-alive, close") + SMUG, 200, True, [Seen(APP, "GET", "/k")]),
    V("connection_close_upper_case", "rule 22, RFC 9110 §7.6.1 (case-insensitive)", "Connection: CLOSE",
      head(G(b"/k"), HOST, b"Connection: CLOSE") + SMUG, 200, True, [Seen(APP, "GET", "/k")]),

    # ------------------------------------------------------------------ rule 23: pipelining
    V("pipeline_good_bad_smuggle", "rule 23", "a good request, a refused one, SMUG: only the first served",
      head(G(b"/a"), HOST) + head(P(), HOST, b"Transfer-Encoding: xchunked") + SM, (200, 400), True,
      [Seen(APP, "GET", "/a")]),
    V("pipeline_bad_then_good", "rule 23", "nothing after a refused request",
      head(G(b"/a")) + head(G(b"/b"), HOST), 400, True),
    V("pipeline_after_417", "rule 9/23", "nothing after a 417",
      head(G(b"/a"), HOST, b"Expect: nothing") + head(G(b"/b"), HOST), 417, True),
    V("pipeline_after_501", "rule 3/23", "nothing after a 501",
      head(P(), HOST, b"Transfer-Encoding: gzip, chunked") + SM + head(G(b"/b"), HOST), 501, True),
    V("pipeline_three", "rule 23", "three pipelined requests, answered in order",
      head(G(b"/a"), HOST) + head(P(b"/b"), HOST, b"Content-Length: 2") + b"hi" + head(G(b"/admin/c"), HOST),
      (200, 200, 200), False,
      [Seen(APP, "GET", "/a"), Seen(APP, "POST", "/b", body=b"hi"), Seen(ADMIN, "GET", "/admin/c")]),

    # ------------------------------------------------------------------ versions, limits
    V("version_http12", "RFC 9110 §2.5 (a higher minor version is served as 1.1)", "HTTP/1.2",
      head(G(b"/v", b"HTTP/1.2"), HOST, b"Connection: close"), 200, True, [Seen(APP, "GET", "/v")],
      alt=[(505, True, []), (400, True, [])]),
    V("version_http20", "RFC 9112 §2.3, RFC 9110 §15.6.6", "HTTP/2.0 in an HTTP/1 request line",
      head(G(b"/v", b"HTTP/2.0"), HOST) + SMUG, 505, True, alt=[(400, True, [])]),
    V("version_http09", "RFC 9112 §3", "an HTTP/0.9 request line (no version)",
      b"GET /v\r\n\r\n" + SMUG, 400, True),
    V("version_lower_case", "RFC 9112 §2.3 (HTTP-name is case-sensitive)", "http/1.1",
      head(G(b"/v", b"http/1.1"), HOST) + SMUG, 400, True),
    V("version_two_digit_minor", "RFC 9112 §2.3 (DIGIT . DIGIT)", "HTTP/1.10",
      head(G(b"/v", b"HTTP/1.10"), HOST) + SMUG, 400, True, alt=[(505, True, [])]),
    V("header_too_large", "--max-header, RFC 6585 §5", "a head over the limit: 431 and close",
      head(G(b"/big"), HOST, b"X-Big: " + b"a" * (R.MAX_HEADER + 100)) + SMUG, 431, True),
]

VECTORS_BY_NAME = {v.name: v for v in VECTORS}
assert len(VECTORS_BY_NAME) == len(VECTORS), "duplicate vector names"

# Hop-by-hop fields (rule 17) never reach an app, whatever the vector.
HOP_BY_HOP = ("connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "upgrade", "trailer",
              "expect")


# ---------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------
class Result:
    def __init__(self, vector, exchange, seen, errors):
        self.vector, self.exchange, self.seen, self.errors = vector, exchange, seen, errors

    @property
    def count(self):
        return len(self.seen)

    @property
    def smuggled(self):
        return [q for q in self.seen if MARK in q.target.lower() or MARK in q.method.lower()]


def run_vector(stack, v, total=1.5, quiet=0.12):
    """One vector on a fresh connection; the apps' view after a barrier."""
    stack.clear()
    ex = R.send_raw(stack.addr, v.raw, total=total, quiet=quiet)
    stack.barrier()
    seen, errors = stack.seen()
    return Result(v, ex, seen, errors)


_GATEWAY_RESULTS = {}
_GATEWAY_LOCK = threading.Lock()


def gateway_results(vectors=None):
    """Run the vectors against the process's gateway stack once (cached: the oracle and the main
    suite share the runs). Returns {name: Result}."""
    st = R.gateway_stack()
    with _GATEWAY_LOCK:
        for v in (vectors or VECTORS):
            if v.name not in _GATEWAY_RESULTS:
                _GATEWAY_RESULTS[v.name] = run_vector(st, v)
        return dict(_GATEWAY_RESULTS)


def gateway_result(v):
    st = R.gateway_stack()
    with _GATEWAY_LOCK:
        if v.name not in _GATEWAY_RESULTS:
            _GATEWAY_RESULTS[v.name] = run_vector(st, v)
        return _GATEWAY_RESULTS[v.name]


# ---------------------------------------------------------------------------------------------
# Judging
# ---------------------------------------------------------------------------------------------
def _status_ok(want, got):
    return got in want if isinstance(want, (set, frozenset)) else got == want


def check_statuses(want, ex):
    got = ex.statuses
    if want is None:
        if got:
            return ["expected no answer, got %r" % got]
        return []
    wants = list(want) if isinstance(want, tuple) else [want]
    if len(got) != len(wants) or not all(_status_ok(w, g) for w, g in zip(wants, got)):
        return ["expected answer statuses %r, got %r" % (wants, got)]
    return []


def check_seen(want, got):
    """want: [Seen], got: [Recorded]. Returns problems."""
    out = []
    wk = [(s.service, s.method, s.target) for s in want]
    gk = [(q.service, q.method, q.target) for q in got]
    if wk != gk:
        return ["apps must have seen %r, saw %r" % (wk, gk)]
    for s, q in zip(want, got):
        for name, val in s.headers.items():
            vals = q.get_all(name)
            if val is None:
                if vals:
                    out.append("%s %s: %s must be absent, app saw %r" % (q.method, q.target, name, vals))
            elif isinstance(val, list):
                if vals != val:
                    out.append("%s %s: %s must be %r, app saw %r" % (q.method, q.target, name, val, vals))
            elif vals != [val]:
                out.append("%s %s: %s must be exactly [%r], app saw %r" % (q.method, q.target, name, val, vals))
        if q.body != s.body:
            out.append("%s %s: body must be %r, app saw %r" % (q.method, q.target, s.body, q.body))
        if s.order:
            names = [k for k, _ in q.headers if k in s.order]
            if names != s.order:
                out.append("%s %s: fields must arrive in order %r (names as sent), app saw %r"
                           % (q.method, q.target, s.order, [k for k, _ in q.headers]))
    return out


def check_invariants(res):
    """What holds for every request an app receives, whatever the vector."""
    out = []
    if res.smuggled:
        out.append("SMUGGLED request(s) reached an app: %r" % res.smuggled)
    if res.errors:
        out.append("an app could not parse what it received: %r" % res.errors)
    for q in res.seen:
        cls = q.get_all("Content-Length")
        if len(cls) > 1 or (cls and cls[0] != str(len(q.body))) or (not cls and q.body):
            out.append("%s %s: Content-Length %r for a %d-byte body" % (q.method, q.target, cls, len(q.body)))
        hop = [k for k, _ in q.headers if k.lower() in HOP_BY_HOP]
        if hop:
            out.append("%s %s: hop-by-hop field(s) %r reached the app" % (q.method, q.target, hop))
    return out


def check_outcome(res, outcome):
    status, close, seen = outcome
    ex = res.exchange
    out = check_statuses(status, ex)
    if close and not ex.closed:
        out.append("the connection must be closed after the answer, it stayed open")
    if not close and ex.closed:
        out.append("the connection must stay open, it was closed")
    out += check_seen(seen, res.seen)
    return out


def check_error_answers(res):
    """"400 and close" answers: Connection: close, text/plain, X-Request-Id, `<code> <reason>: ...`."""
    out = []
    for a in res.exchange.answers:
        if a.status < 400:
            continue
        if res.exchange.closed and a is res.exchange.answers[-1]:
            # "written with Connection: close"; an answer to an HTTP/1.0 request without
            # `Connection: keep-alive` says the same (RFC 9112 §9.3)
            conn = ",".join(a.get_all("Connection")).lower()
            http10 = b" HTTP/1.0\r\n" in res.vector.raw.split(b"\n", 1)[0] + b"\n"
            if "close" not in conn and not (http10 and "keep-alive" not in conn):
                out.append("the %d answer before the close must carry Connection: close, has %r"
                           % (a.status, a.get_all("Connection")))
        if not (a.get("Content-Type") or "").startswith("text/plain"):
            out.append("the %d answer must be text/plain, is %r" % (a.status, a.get("Content-Type")))
        if not a.get("X-Request-Id"):
            out.append("the %d answer has no X-Request-Id" % a.status)
        if not a.body.startswith(b"%d " % a.status):
            out.append("the %d answer's body must start with `%d `: %r" % (a.status, a.status, a.body[:80]))
    return out


def judge(res, stack=None):
    """All problems of one gateway result (empty: the vector passes)."""
    v = res.vector
    problems = check_invariants(res)
    per = [check_outcome(res, o) for o in v.outcomes()]
    if all(per):
        problems += per[0]
        for i, p in enumerate(per[1:], 1):
            problems.append("(nor the allowed alternative %r: %s)" % (v.alt[i - 1][:2], "; ".join(p)))
    problems += check_error_answers(res)
    for name in v.answer_has:
        if res.exchange.answers and not res.exchange.answers[0].get_all(name):
            problems.append("the answer must carry %s" % name)
    return problems


def describe(res):
    ex = res.exchange
    lines = ["vector %s (%s): %s" % (res.vector.name, res.vector.rule, res.vector.why),
             "sent: %r" % res.vector.raw[:400],
             "got: %r" % ex]
    for a in ex.answers:
        lines.append("  answer %r" % a)
    for q in res.seen:
        lines.append("  app %s got raw %r" % (q.service, q.raw[:400]))
    return "\n".join(lines)
