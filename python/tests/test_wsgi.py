# SPDX-License-Identifier: Apache-2.0
"""scale0.wsgi behind `scale0 gateway`, answered to curl: a Flask-free WSGI app, wsgiref's demo
app, chunked request and response bodies, HEAD, app failures and non-HTTP jobs."""

from __future__ import annotations

import json
import re
import subprocess
import threading
from typing import Any, Callable, Dict, Iterable, Iterator, List, Tuple
from wsgiref.simple_server import demo_app

import pytest

import scale0
import scale0.wsgi
from conftest import BIN, Broker, Proc, wait_service

SERVICE = "www.example.com"
GATEWAY_RE = re.compile(rb"^ready listen=(\S+) broker=(\S+)")


def app(environ: Dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ["PATH_INFO"]
    if path == "/":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"hello from wsgi\n"]
    if path == "/echo":
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        start_response("201 Created", [("Content-Type", environ.get("CONTENT_TYPE", "")), ("X-Len", str(len(body)))])
        return [body]
    if path == "/environ":
        keys = ["REQUEST_METHOD", "PATH_INFO", "QUERY_STRING", "SERVER_NAME", "HTTP_X_CUSTOM", "REMOTE_ADDR",
                "wsgi.url_scheme"]
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps({k: environ.get(k) for k in keys}).encode()]
    if path == "/chunked":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Transfer-Encoding", "chunked")])
        return (b"part %d;" % i for i in range(3))
    if path == "/fail":
        raise RuntimeError("the app broke")
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not here\n"]


@pytest.fixture
def gateway(broker: Broker) -> Iterator[str]:
    """A `scale0 gateway` to the broker and a WSGI worker serving `app`; yields HOST:PORT."""
    w = scale0.Worker(broker.backend, [SERVICE, "demo"], _route, concurrency=4)
    t = threading.Thread(target=w.run, daemon=True)
    t.start()
    g = Proc([BIN, "gateway", "--listen", "127.0.0.1:0", "--broker", broker.frontend, "--metrics-listen", "",
              "--route", "host=demo,service=demo"], GATEWAY_RE)
    try:
        wait_service(broker, SERVICE)
        assert g.match is not None
        yield g.match.group(1).decode()
    finally:
        g.kill()
        w.stop()
        t.join(timeout=10)


_app_handler = scale0.wsgi.handler(app)
_demo_handler = scale0.wsgi.handler(demo_app)


def _route(job: scale0.Job) -> List[bytes]:
    return _demo_handler(job) if job.service == "demo" else _app_handler(job)


def curl(addr: str, path: str, *args: str, host: str = SERVICE) -> Tuple[int, Dict[str, str], bytes]:
    """(status, lower-cased headers, body) of one curl request."""
    out = subprocess.run(["curl", "-s", "-i", "--max-time", "10", "-H", "Host: " + host, *args,
                          "http://%s%s" % (addr, path)], capture_output=True, timeout=15)
    head, _, body = out.stdout.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        n, _, v = line.partition(":")
        headers[n.strip().lower()] = v.strip()
    return int(lines[0].split()[1]), headers, body


def test_get(gateway: str) -> None:
    status, headers, body = curl(gateway, "/")
    assert (status, body) == (200, b"hello from wsgi\n")
    assert headers["content-type"] == "text/plain" and headers["content-length"] == "16"
    assert "x-request-id" in headers


def test_post_and_environ(gateway: str) -> None:
    status, headers, body = curl(gateway, "/echo", "--data-binary", "abc=1", "-H", "Content-Type: text/x-test")
    assert (status, body, headers["content-type"], headers["x-len"]) == (201, b"abc=1", "text/x-test", "5")
    status, _, body = curl(gateway, "/environ?q=1&r=%20", "-H", "X-Custom: yes")
    env = json.loads(body)
    assert env["PATH_INFO"] == "/environ" and env["QUERY_STRING"] == "q=1&r=%20"
    assert env["SERVER_NAME"] == SERVICE and env["HTTP_X_CUSTOM"] == "yes"
    assert env["REMOTE_ADDR"] == "127.0.0.1" and env["wsgi.url_scheme"] == "http"


def test_chunked_request_and_response(gateway: str) -> None:
    # curl sends a chunked body; the gateway de-chunks it for the app.
    status, _, body = curl(gateway, "/echo", "-H", "Transfer-Encoding: chunked", "--data-binary", "x" * 5000)
    assert (status, body) == (201, b"x" * 5000)
    # The app streams chunked; the gateway de-chunks it and announces a Content-Length.
    status, headers, body = curl(gateway, "/chunked")
    assert (status, body) == (200, b"part 0;part 1;part 2;")
    assert headers.get("content-length") == "21" and "transfer-encoding" not in headers


def test_head(gateway: str) -> None:
    status, headers, body = curl(gateway, "/", "-I")
    assert (status, body) == (200, b"")
    assert headers["content-length"] == "16"


def test_app_failure_and_not_found(gateway: str) -> None:
    status, _, body = curl(gateway, "/fail")
    assert status == 500 and b"the app broke" in body
    status, _, body = curl(gateway, "/nothing")
    assert (status, body) == (404, b"not here\n")


def test_wsgiref_demo_app(gateway: str) -> None:
    status, _, body = curl(gateway, "/", host="demo")
    assert status == 200 and body.startswith(b"Hello world!")


def test_not_an_http_request(gateway: str, broker: Broker) -> None:
    with scale0.Client(broker.frontend) as c:
        with pytest.raises(scale0.Error) as e:
            c.request(SERVICE, b"not http")
    assert e.value.status == 400 and e.value.message.startswith("not an encoded HTTP request")
