# SPDX-License-Identifier: Apache-2.0
"""scale0.asgi behind `scale0 gateway`, answered to curl: a raw ASGI 3 app (no framework) on the
worker's event loop: GET, POST, a streamed (chunked) response, HEAD, failures, and requests
served at once."""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
from typing import Any, Iterator

import pytest

import scale0
import scale0.asgi
from conftest import BIN, Broker, Proc, wait_service
from test_wsgi import GATEWAY_RE, curl

SERVICE = "asgi.example.com"


async def app(scope: Any, receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    path = scope["path"]
    if path == "/fail":
        raise RuntimeError("the async app broke")
    message = await receive()
    body = message["body"]
    if path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        for i in range(3):
            await send({"type": "http.response.body", "body": b"part %d;" % i, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    if path == "/sleep":
        await asyncio.sleep(0.3)
    if path == "/scope":
        out = json.dumps({"method": scope["method"], "path": scope["path"],
                          "query": scope["query_string"].decode(), "client": scope["client"][0],
                          "host": dict(scope["headers"])[b"host"].decode()}).encode()
    else:
        out = b"async " + body if body else b"hello from asgi\n"
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(out))]})
    await send({"type": "http.response.body", "body": out})


@pytest.fixture
def gateway(broker: Broker) -> Iterator[str]:
    w = scale0.Worker(broker.backend, [SERVICE], scale0.asgi.handler(app), concurrency=32)
    t = threading.Thread(target=w.run, daemon=True)
    t.start()
    g = Proc([BIN, "gateway", "--listen", "127.0.0.1:0", "--broker", broker.frontend, "--metrics-listen", ""],
             GATEWAY_RE)
    try:
        wait_service(broker, SERVICE)
        assert g.match is not None
        yield g.match.group(1).decode()
    finally:
        g.kill()
        w.stop()
        t.join(timeout=10)


def test_get_post_scope(gateway: str) -> None:
    assert curl(gateway, "/", host=SERVICE)[::2] == (200, b"hello from asgi\n")
    assert curl(gateway, "/x", "--data-binary", "abc", host=SERVICE)[::2] == (200, b"async abc")
    status, _, body = curl(gateway, "/scope?a=1", host=SERVICE)
    assert status == 200
    assert json.loads(body) == {"method": "GET", "path": "/scope", "query": "a=1", "client": "127.0.0.1",
                                "host": SERVICE}


def test_streamed_response_and_head(gateway: str) -> None:
    status, headers, body = curl(gateway, "/stream", host=SERVICE)
    assert (status, body, headers.get("content-length")) == (200, b"part 0;part 1;part 2;", "21")
    status, headers, body = curl(gateway, "/", "-I", host=SERVICE)
    assert (status, body, headers["content-length"]) == (200, b"", "16")


def test_failure_is_500(gateway: str) -> None:
    status, _, body = curl(gateway, "/fail", host=SERVICE)
    assert status == 500 and b"the async app broke" in body


def test_requests_at_once(gateway: str) -> None:
    """Ten requests that each sleep 0.3 s on the event loop finish together."""
    t0 = time.monotonic()
    ps = [subprocess.Popen(["curl", "-s", "--max-time", "10", "-H", "Host: " + SERVICE,
                            "http://%s/sleep" % gateway], stdout=subprocess.PIPE) for _ in range(10)]
    outs = [p.communicate(timeout=15)[0] for p in ps]
    assert outs == [b"hello from asgi\n"] * 10
    assert time.monotonic() - t0 < 2.5
