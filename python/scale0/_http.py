# SPDX-License-Identifier: Apache-2.0
"""The HTTP encoding of docs/http.md: parse the request a front door sends, write the response a
worker answers. Pure functions, no sockets."""

from __future__ import annotations

from typing import Iterable, List, NamedTuple, Optional, Tuple

# Fields a response must not carry past the worker (the front door sets its own).
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade", "transfer-encoding"}
_MAX_HEAD = 64 * 1024


class HttpRequest(NamedTuple):
    method: str
    target: str
    headers: List[Tuple[str, str]]
    body: bytes


class NotEncoded(ValueError):
    """The job is not an encoded HTTP request (answered 400)."""


def parse_request(data: bytes) -> HttpRequest:
    """The encoded request (one HTTP/1.1 request, its body announced by Content-Length)."""
    end = data.find(b"\r\n\r\n", 0, _MAX_HEAD)
    if end < 0:
        raise NotEncoded("no end of the header section")
    lines = data[:end].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise NotEncoded("bad request line %r" % lines[0][:100])
    headers: List[Tuple[str, str]] = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise NotEncoded("bad header field %r" % line[:100])
        headers.append((name, value.strip(" \t")))
    body = data[end + 4:]
    lengths = [v for n, v in headers if n.lower() == "content-length"]
    if lengths:
        if len(lengths) != 1 or not lengths[0].isdigit() or int(lengths[0]) != len(body):
            raise NotEncoded("Content-Length does not match the body")
    elif body:
        raise NotEncoded("a body without Content-Length")
    return HttpRequest(parts[0], parts[1], headers, body)


def _reason_ok(status: str) -> bool:
    code = status.split(" ", 1)[0]
    return len(code) == 3 and code.isdigit() and 100 <= int(code) <= 599


def no_body(method: str, status: str) -> bool:
    """Answers that carry no body: to HEAD, 1xx, 204, 304."""
    code = int(status[:3])
    return method == "HEAD" or code < 200 or code in (204, 304)


def encode_response(method: str, status: str, headers: Iterable[Tuple[str, str]],
                    chunks: Iterable[bytes]) -> List[bytes]:
    """The response encoding as frames (the head, then the body).

    The app's body is sent with one Content-Length, or, when the app set
    ``Transfer-Encoding: chunked``, chunk by chunk as it yielded them (the front door de-chunks).
    Answers without a body keep the app's own Content-Length (a HEAD answer gets the length the
    app's body has, as a GET would) and carry no body.
    """
    if not _reason_ok(status):
        raise ValueError("bad status %r" % status)
    kept: List[Tuple[str, str]] = []
    chunked = False
    length: Optional[str] = None
    for name, value in headers:
        low = name.lower()
        if low == "transfer-encoding" and value.strip().lower() == "chunked":
            chunked = True
        if low in HOP_BY_HOP:
            continue
        if low == "content-length":
            length = value.strip()
            continue
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            raise ValueError("a header field with CR or LF")
        kept.append((name, value))
    if no_body(method, status):
        body = b"".join(chunks)
        if length is None and method == "HEAD" and body:
            length = str(len(body))
        if length is not None:
            kept.append(("Content-Length", length))
        return [_head(status, kept)]
    if chunked:
        out = bytearray()
        for c in chunks:
            if c:
                out += b"%x\r\n" % len(c) + c + b"\r\n"
        out += b"0\r\n\r\n"
        kept.append(("Transfer-Encoding", "chunked"))
        return [_head(status, kept), bytes(out)]
    body = b"".join(chunks)
    kept.append(("Content-Length", str(len(body))))
    return [_head(status, kept), body]


def _head(status: str, headers: List[Tuple[str, str]]) -> bytes:
    lines = ["HTTP/1.1 " + status] + ["%s: %s" % (n, v) for n, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def error_response(code: int, reason: str, text: str) -> List[bytes]:
    """A plain-text error response (an app that failed: 500 with its text)."""
    body = text.encode("utf-8", "replace") + b"\n"
    return encode_response("GET", "%d %s" % (code, reason),
                           [("Content-Type", "text/plain; charset=utf-8")], [body])
