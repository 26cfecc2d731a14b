# SPDX-License-Identifier: Apache-2.0
"""Black-box harness, HTTP through Scale0 (docs/http.md) apart from the gateway process: the HTTP
encoding (a strict parse of requests, encode_http_response(), body_pattern), HttpWorker (a
NativeWorker speaking the encoding, driven by X-Test-* request fields), and the client side:
RawHttp (a hand-driven connection), HttpResponse, http_request_bytes(), chunked() and http_call().
"""

import json
import queue
import re
import select
import socket
import threading

from harness_wire import b_, now, short
from harness_workers import NativeWorker


# --- the HTTP encoding ---------------------------------------------------------------------------
TOKEN_RE = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
ENC_REQUEST_LINE_RE = re.compile(rb"^([!#$%&'*+\-.^_`|~0-9A-Za-z]+) (\S+) HTTP/1\.1$")
ENC_FIELD_RE = re.compile(rb"^([!#$%&'*+\-.^_`|~0-9A-Za-z]+):(?: (.*)|)$")


class EncodingError(Exception):
    pass


class HttpRequestEnc:
    """A parsed HTTP request encoding (docs/http.md, "The HTTP encoding (version 1)")."""

    def __init__(self, method, target, headers, body, raw):
        self.method, self.target, self.headers, self.body, self.raw = method, target, headers, body, raw

    def get_all(self, name):
        n = name.lower()
        return [v for k, v in self.headers if k.lower() == n]

    def get(self, name, default=None):
        v = self.get_all(name)
        return v[0] if v else default

    def names(self):
        return [k for k, _ in self.headers]

    def __repr__(self):
        return "HttpRequestEnc(%s %s, %r, body %d bytes)" % (self.method, self.target, self.headers, len(self.body))


def parse_http_request_encoding(frames):
    """Strict parse of a REQUEST body: exactly one frame, `METHOD SP target SP HTTP/1.1 CRLF`,
    `name: value CRLF` fields, exactly one Content-Length equal to the body size, no
    Transfer-Encoding. Raises EncodingError naming what is wrong."""
    if len(frames) != 1:
        raise EncodingError("the REQUEST body must be exactly one frame, got %d" % len(frames))
    raw = frames[0]
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        raise EncodingError("no CRLF CRLF ending the header block: %r" % raw[:200])
    head, body = raw[:end], raw[end + 4:]
    lines = head.split(b"\r\n")
    m = ENC_REQUEST_LINE_RE.match(lines[0])
    if not m:
        raise EncodingError("bad request line %r" % lines[0])
    headers = []
    for ln in lines[1:]:
        if b"\n" in ln or b"\r" in ln:
            raise EncodingError("bare CR or LF in field line %r" % ln)
        fm = ENC_FIELD_RE.match(ln)
        if not fm:
            raise EncodingError("bad field line %r (want `name: value`)" % ln)
        headers.append((fm.group(1).decode("latin-1"), (fm.group(2) or b"").decode("latin-1")))
    cls = [v for k, v in headers if k.lower() == "content-length"]
    if len(cls) != 1:
        raise EncodingError("want exactly one Content-Length, got %r" % cls)
    if not re.match(r"^[0-9]+$", cls[0]) or int(cls[0]) != len(body):
        raise EncodingError("Content-Length %r but the body has %d bytes" % (cls[0], len(body)))
    if any(k.lower() == "transfer-encoding" for k, _ in headers):
        raise EncodingError("Transfer-Encoding in the encoding: the body must be de-chunked")
    return HttpRequestEnc(m.group(1).decode("latin-1"), m.group(2).decode("latin-1"), headers, body, raw)


REASONS = {100: "Continue", 200: "OK", 201: "Created", 204: "No Content", 301: "Moved Permanently",
           400: "Bad Request", 404: "Not Found", 408: "Request Timeout", 413: "Content Too Large",
           418: "I'm a teapot", 429: "Too Many Requests", 431: "Request Header Fields Too Large",
           500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
           504: "Gateway Timeout"}


def encode_http_response(status=200, headers=(), body=b"", content_length=True, chunked=False, reason=None):
    """An HTTP response encoding (bytes). headers: [(name, value)]."""
    body = b_(body)
    out = [b"HTTP/1.1 %d %s\r\n" % (status, b_(reason if reason is not None else REASONS.get(status, "Status")))]
    for k, v in headers:
        out.append(b_(k) + b": " + b_(v) + b"\r\n")
    if chunked:
        out.append(b"Transfer-Encoding: chunked\r\n\r\n")
        step = max(1, len(body) // 3 or 1)
        for i in range(0, len(body), step):
            piece = body[i:i + step]
            out.append(b"%x\r\n" % len(piece) + piece + b"\r\n")
        out.append(b"0\r\n\r\n")
        return b"".join(out)
    if content_length:
        out.append(b"Content-Length: %d\r\n" % len(body))
    out.append(b"\r\n")
    return b"".join(out) + body


def body_pattern(n):
    """n deterministic bytes (for large bodies)."""
    unit = bytes(range(256))
    return (unit * (n // 256 + 1))[:n]


def split_frames(data, n):
    n = max(1, int(n))
    if n == 1 or len(data) < n:
        return [data]
    step = len(data) // n
    return [data[i * step:(i + 1) * step] if i < n - 1 else data[i * step:] for i in range(n)]


class HttpWorker(NativeWorker):
    """A native S0/1 worker that speaks the HTTP encoding.

    Every REQUEST body is parsed strictly (parse_http_request_encoding); a request that breaks the
    encoding is recorded in `encoding_errors` and answered with HTTP 599 whose body says why. The
    parsed requests are in `http_requests` (with .job). The default answer is 200 with a JSON body:
    {method, target, headers: [[name, value]...], body (latin-1 text, when <= 64 KiB), body_len,
    body_sha256, service, timeout_ms, frames, worker}.

    Hooks, as request header fields (so any HTTP client can drive them):
      X-Test-Delay: ms         answer after ms (other requests are served meanwhile)
      X-Test-Hold: 1           do not answer; the test answers with reply_http(req, ...) or lets it expire
      X-Test-Status: code      HTTP status of the answer (X-Test-Reason: the reason phrase)
      X-Test-Header: N: v      add a response field (repeatable, in order)
      X-Test-Body: text        the answer's body (instead of the JSON)
      X-Test-Size: n           the answer's body is n pattern bytes (body_pattern)
      X-Test-No-Length: 1      answer without Content-Length (body = rest of the reply)
      X-Test-Chunked: 1        answer with Transfer-Encoding: chunked
      X-Test-Frames: n         split the reply body over n frames
      X-Test-Head-Body: omit   for HEAD: send the header block only (with the Content-Length of the body)
      X-Test-Malformed: kind   an answer that is not a well-formed response
                               (garbage | empty | short-body | bad-status | no-end)
      X-Test-S0-Status: code   answer with this S0/1 status (not 200) and a message, no body
      X-Test-Die: 1            die holding the request: close the socket, no DISCONNECT, no heartbeats
    `handler` (callable(req) -> None or (status, message, frames)) overrides everything."""

    def __init__(self, ctx, endpoint, services, concurrency=16, handler=None, **kw):
        super().__init__(ctx, endpoint, services, concurrency=concurrency, mode=self._on_job, **kw)
        self.handler = handler
        self.http_requests = []
        self.http_q = queue.Queue()
        self.encoding_errors = []
        self.died = threading.Event()
        self._timers = []

    # replies -------------------------------------------------------------------------------------
    def reply_http(self, req, status=200, headers=(), body=b"", **kw):
        self.reply(req.job, 200, b"", [encode_http_response(status, headers, body, **kw)])

    def next_http(self, timeout=5.0):
        try:
            return self.http_q.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return None

    def stop(self):
        for t in self._timers:
            t.cancel()
        super().stop()

    def check(self):
        super().check()
        if self.encoding_errors:
            raise AssertionError("requests broke the HTTP encoding: %r" % (self.encoding_errors[:3],))

    def echo_json(self, req):
        j = req.job
        return {
            "method": req.method, "target": req.target,
            "headers": [[k, v] for k, v in req.headers],
            "body": req.body.decode("latin-1") if len(req.body) <= 65536 else None,
            "body_len": len(req.body),
            "body_sha256": __import__("hashlib").sha256(req.body).hexdigest(),
            "service": j.service.decode("latin-1"), "timeout_ms": j.timeout_ms,
            "frames": len(j.body), "worker": self.wname.decode("latin-1"),
        }

    def _on_job(self, job):
        try:
            req = parse_http_request_encoding(job.body)
        except EncodingError as e:
            self.encoding_errors.append((str(e), short(job.body)))
            return (200, self.wname, [encode_http_response(599, [("Content-Type", "text/plain")],
                                                           ("encoding error: %s" % e).encode(), reason="Bad Encoding")])
        req.job = job
        self.http_requests.append(req)
        self.http_q.put(req)
        if self.handler is not None:
            return self.handler(req)
        if req.get("X-Test-Die"):
            self.died.set()
            self.send_heartbeats = False
            self._halt.set()  # the thread closes its socket: no REPLY, no DISCONNECT
            return None
        if req.get("X-Test-Hold"):
            return None
        if req.get("X-Test-S0-Status"):
            return (int(req.get("X-Test-S0-Status")), b"worker failed on purpose", [])
        frames = self.build_answer(req)
        delay = req.get("X-Test-Delay")
        if delay:
            t = threading.Timer(int(delay) / 1000.0, lambda: self.reply(job, 200, self.wname, frames))
            t.daemon = True
            self._timers.append(t)
            t.start()
            return None
        return (200, self.wname, frames)

    def build_answer(self, req):
        mal = req.get("X-Test-Malformed")
        if mal:
            data = {
                "garbage": b"this is not an HTTP response\r\n\r\n",
                "empty": b"",
                "short-body": b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly a few bytes",
                "bad-status": b"HTTP/1.1 abc Nope\r\nContent-Length: 0\r\n\r\n",
                "no-end": b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n",
                "interim": b"HTTP/1.1 100 Continue\r\n\r\n",
                "switching": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n",
            }[mal]
            return [data] if data else []
        status = int(req.get("X-Test-Status", "200"))
        headers = []
        for h in req.get_all("X-Test-Header"):
            k, _, v = h.partition(":")
            headers.append((k.strip(), v.strip()))
        if req.get("X-Test-Body") is not None:
            body = req.get("X-Test-Body").encode("latin-1")
        elif req.get("X-Test-Size"):
            body = body_pattern(int(req.get("X-Test-Size")))
        else:
            body = json.dumps(self.echo_json(req)).encode()
            headers.append(("Content-Type", "application/json"))
        omit_body = req.method == "HEAD" and req.get("X-Test-Head-Body") == "omit"
        if omit_body:
            head = encode_http_response(status, headers + [("Content-Length", str(len(body)))], b"",
                                        content_length=False, reason=req.get("X-Test-Reason"))
            data = head
        else:
            data = encode_http_response(status, headers, body,
                                        content_length=not req.get("X-Test-No-Length"),
                                        chunked=bool(req.get("X-Test-Chunked")),
                                        reason=req.get("X-Test-Reason"))
        return split_frames(data, req.get("X-Test-Frames", "1"))


# --- HTTP client side --------------------------------------------------------------------------
class HttpResponse:
    def __init__(self, version, status, reason, headers, body, raw_head):
        self.version, self.status, self.reason, self.headers, self.body = version, status, reason, headers, body
        self.raw_head = raw_head

    def get_all(self, name):
        n = name.lower()
        return [v for k, v in self.headers if k.lower() == n]

    def get(self, name, default=None):
        v = self.get_all(name)
        return v[0] if v else default

    def json(self):
        try:
            return json.loads(self.body.decode("utf-8"))
        except ValueError:
            raise AssertionError("expected the HttpWorker's JSON echo, got %r" % (self,))

    def __repr__(self):
        return "HttpResponse(%s %d %s, %r, body=%r)" % (self.version, self.status, self.reason, self.headers,
                                                       self.body[:200])


class ConnectionClosed(Exception):
    pass


class RawHttp:
    """A raw TCP connection for hand-written requests (pipelining, slow or malformed clients).
    Every read is bounded by a deadline."""

    def __init__(self, addr, timeout=5.0, rcvbuf=None):
        host, port = addr.rsplit(":", 1)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((host, int(port)))
        self.buf = b""
        self.eof = False
        self.reset = False

    def send(self, data):
        self.sock.sendall(b_(data))

    def try_send(self, data):
        """send, returning False instead of raising when the peer has closed."""
        try:
            self.sock.sendall(b_(data))
            return True
        except OSError:
            return False

    def _fill(self, deadline):
        left = deadline - now()
        if left <= 0:
            raise socket.timeout("no data before the deadline")
        r, _, _ = select.select([self.sock], [], [], left)
        if not r:
            raise socket.timeout("no data before the deadline")
        try:
            chunk = self.sock.recv(1 << 20)
        except ConnectionResetError:
            self.reset = True
            chunk = b""
        if not chunk:
            self.eof = True
            raise ConnectionClosed("connection closed (%s) with %d bytes unparsed: %r"
                                   % ("reset" if self.reset else "EOF", len(self.buf), self.buf[:200]))
        self.buf += chunk

    def read_response(self, timeout=5.0, head_only=False):
        """One response (a 1xx interim response is returned on its own). head_only: the response
        to a HEAD (no body whatever its Content-Length)."""
        deadline = now() + timeout
        for _ in range(100000):
            if b"\r\n\r\n" in self.buf:
                break
            self._fill(deadline)
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        m = re.match(rb"^(HTTP/\d\.\d) (\d{3})(?: (.*))?$", lines[0])
        if not m:
            raise AssertionError("bad status line %r" % lines[0])
        version, status, reason = m.group(1).decode(), int(m.group(2)), (m.group(3) or b"").decode("latin-1")
        headers = []
        for ln in lines[1:]:
            k, sep, v = ln.partition(b":")
            if not sep:
                raise AssertionError("bad response field line %r" % ln)
            headers.append((k.decode("latin-1"), v.strip().decode("latin-1")))
        resp = HttpResponse(version, status, reason, headers, b"", head + b"\r\n\r\n")
        if head_only or 100 <= status < 200 or status in (204, 304):
            return resp
        te = resp.get("Transfer-Encoding")
        cl = resp.get("Content-Length")
        if te and "chunked" in te.lower():
            body = b""
            for _ in range(1000000):
                for _ in range(100000):
                    if b"\r\n" in self.buf:
                        break
                    self._fill(deadline)
                size_line, self.buf = self.buf.split(b"\r\n", 1)
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    for _ in range(100000):
                        if b"\r\n\r\n" in b"\r\n" + self.buf:
                            break
                        self._fill(deadline)
                    idx = (b"\r\n" + self.buf).find(b"\r\n\r\n")
                    self.buf = (b"\r\n" + self.buf)[idx + 4:]
                    break
                for _ in range(100000):
                    if len(self.buf) >= size + 2:
                        break
                    self._fill(deadline)
                body += self.buf[:size]
                self.buf = self.buf[size + 2:]
            resp.body = body
        elif cl is not None:
            n = int(cl)
            for _ in range(1000000):
                if len(self.buf) >= n:
                    break
                self._fill(deadline)
            resp.body, self.buf = self.buf[:n], self.buf[n:]
        else:
            # no length: body until EOF
            for _ in range(1000000):
                try:
                    self._fill(deadline)
                except ConnectionClosed:
                    break
            resp.body, self.buf = self.buf, b""
        return resp

    def read_final(self, timeout=5.0, head_only=False):
        """The next non-1xx response (1xx ones are skipped)."""
        deadline = now() + timeout
        for _ in range(10):
            r = self.read_response(max(0.01, deadline - now()), head_only)
            if r.status >= 200:
                return r
        raise AssertionError("too many interim responses")

    def wait_closed(self, timeout=3.0):
        """True if the peer closes (EOF or reset) within timeout; the bytes read meanwhile stay in buf."""
        deadline = now() + timeout
        for _ in range(100000):
            if self.eof:
                return True
            try:
                self._fill(deadline)
            except ConnectionClosed:
                return True
            except socket.timeout:
                return False
        return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def http_request_bytes(method, target, headers=(), body=None, version="HTTP/1.1"):
    """A request in wire format; adds Content-Length when body is given and headers lack one."""
    out = [b"%s %s %s\r\n" % (b_(method), b_(target), b_(version))]
    names = [b_(k).lower() for k, _ in headers]
    for k, v in headers:
        out.append(b_(k) + b": " + b_(v) + b"\r\n")
    if body is not None and b"content-length" not in names and b"transfer-encoding" not in names:
        out.append(b"Content-Length: %d\r\n" % len(b_(body)))
    out.append(b"\r\n")
    return b"".join(out) + (b_(body) if body is not None else b"")


def chunked(data, sizes=(7, 100, 1)):
    """data in chunked transfer coding, chunk sizes cycling through sizes."""
    out = []
    i = 0
    k = 0
    while i < len(data):
        n = sizes[k % len(sizes)]
        k += 1
        piece = data[i:i + n]
        out.append(b"%x\r\n" % len(piece) + piece + b"\r\n")
        i += n
    out.append(b"0\r\n\r\n")
    return b"".join(out)


def http_call(addr, method, target, host=None, headers=(), body=None, timeout=10.0):
    """One request on a fresh http.client connection; (HttpResponse, conn closed?)."""
    import http.client
    h, p = addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(h, int(p), timeout=timeout)
    try:
        conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        if host is not None:
            conn.putheader("Host", host)
        for k, v in headers:
            conn.putheader(k, v)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        r = conn.getresponse()
        data = r.read()
        return HttpResponse("HTTP/%d.%d" % divmod(r.version, 10), r.status, r.reason, r.getheaders(), data, b"")
    finally:
        conn.close()
