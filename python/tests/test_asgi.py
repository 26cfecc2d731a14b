# SPDX-License-Identifier: Apache-2.0
"""scale0.asgi behind `scale0 gateway`, answered to curl: a raw ASGI 3 app (no framework) on the
worker's event loop: GET, POST, a streamed (chunked) response, HEAD, failures, and requests
served at once."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
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


# -- the lifespan protocol ---------------------------------------------------------------------

LIFESPAN_SERVICE = "lifespan.example.com"


def lifespan_app(record: list, fail: str = "") -> Any:
    """An app speaking lifespan: records (event, loop, registrations seen) in ``record``."""
    async def app(scope: Any, receive: Any, send: Any) -> None:
        loop = id(asyncio.get_running_loop())
        if scope["type"] == "lifespan":
            if fail == "raise":
                raise RuntimeError("no lifespan here")
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await asyncio.sleep(0.2)  # slow startup: nothing registered meanwhile
                    scope["state"]["greeting"] = "hello from startup"
                    record.append(("startup", loop))
                    if fail == "startup":
                        await send({"type": "lifespan.startup.failed", "message": "no database"})
                        return
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    record.append(("shutdown", loop))
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        await receive()
        if scope["path"] == "/sleep":
            await asyncio.sleep(0.4)
        out = scope.get("state", {}).get("greeting", "no state").encode()
        record.append((scope["path"], loop))
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"%d" % len(out))]})
        await send({"type": "http.response.body", "body": out})
    return app


def get(c: scale0.Client, path: str, timeout: float = 5.0) -> bytes:
    return c.request(LIFESPAN_SERVICE, b"GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (path.encode(), LIFESPAN_SERVICE.encode()),
                     timeout=timeout)


def test_lifespan_around_the_worker(broker: Broker) -> None:
    record: list = []
    w = scale0.asgi.worker(lifespan_app(record), broker.backend, [LIFESPAN_SERVICE], lifespan="on")
    w.startup = (lambda start: lambda: (record.append(("registrations", w.registrations)), start())[1])(w.startup)
    t = threading.Thread(target=w.run, daemon=True)
    t.start()
    try:
        wait_service(broker, LIFESPAN_SERVICE)
        with scale0.Client(broker.frontend) as c:
            assert get(c, "/").endswith(b"\r\n\r\nhello from startup")
            sleeper = c.send(LIFESPAN_SERVICE, b"GET /sleep HTTP/1.1\r\nHost: x\r\n\r\n", timeout=5.0)
            time.sleep(0.1)
            w.stop()  # graceful: the request held is answered, then the shutdown runs
            r = c.receive(timeout=5.0)
            assert r is not None and r.id == sleeper and r.status == 200 and r.body.endswith(b"hello from startup")
    finally:
        w.stop()
        t.join(timeout=10)
    assert not t.is_alive()
    assert [e for e, _ in record] == ["registrations", "startup", "/", "/sleep", "shutdown"]
    assert record[0][1] == 0  # nothing registered before the startup completed
    assert len({loop for _, loop in record[1:]}) == 1  # one event loop: the worker's


def test_lifespan_unsupported_or_failed(broker: Broker) -> None:
    # "auto": an app that raises on the lifespan scope is served without it.
    record: list = []
    w = scale0.asgi.worker(lifespan_app(record, fail="raise"), broker.backend, [LIFESPAN_SERVICE])
    t = threading.Thread(target=w.run, daemon=True)
    t.start()
    try:
        wait_service(broker, LIFESPAN_SERVICE)
        with scale0.Client(broker.frontend) as c:
            assert get(c, "/").endswith(b"\r\n\r\nno state")
    finally:
        w.stop()
        t.join(timeout=10)
    assert not t.is_alive() and [e for e, _ in record] == ["/"]
    # "on" with such an app, and a startup that fails: run() raises, nothing registers.
    for fail, mode, text in (("raise", "on", "no lifespan here"), ("startup", "auto", "no database")):
        w = scale0.asgi.worker(lifespan_app([], fail=fail), broker.backend, [LIFESPAN_SERVICE], lifespan=mode)
        with pytest.raises(scale0.asgi.LifespanError, match=text):
            w.run()
        assert w.registrations == 0
    # "off": never a lifespan scope.
    record = []
    ls = scale0.asgi.Lifespan(lifespan_app(record), "off")
    asyncio.run(ls.startup())
    assert not ls.supported and record == []
    with pytest.raises(scale0.Error):
        scale0.asgi.Lifespan(lifespan_app(record), "sometimes")


def cli_lifespan_app() -> Any:
    """For `python -m scale0 worker --asgi test_asgi:CLI_APP`: records on stderr."""
    class Rec(list):
        def append(self, item: Any) -> None:
            print("app: %s" % item[0], file=sys.stderr, flush=True)
    return lifespan_app(Rec())


CLI_APP = cli_lifespan_app()


def test_lifespan_from_the_cli(broker: Broker) -> None:
    from test_cli import ENV
    p = Proc([sys.executable, "-m", "scale0", "worker", "--broker", broker.backend, "--service", LIFESPAN_SERVICE,
              "--asgi", "test_asgi:CLI_APP", "--lifespan", "on"], env=ENV)
    try:
        wait_service(broker, LIFESPAN_SERVICE)
        with scale0.Client(broker.frontend) as c:
            assert get(c, "/").endswith(b"hello from startup")
        p.p.send_signal(signal.SIGTERM)
        assert p.p.wait(timeout=10) == 0
        err = p.stderr()
        assert err.index("app: startup") < err.index("registered") < err.index("app: /") < err.index("app: shutdown"), err
    finally:
        p.kill()
