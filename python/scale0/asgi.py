# SPDX-License-Identifier: Apache-2.0
"""ASGI applications as Scale0 workers: the asyncio counterpart of scale0.wsgi.

    scale0.asgi.serve(app, broker="tcp://127.0.0.1:5556", service="www.example.com", concurrency=64)

Each encoded request (docs/http.md) becomes one ASGI 3 ``http`` scope; the app runs on the
worker's event loop (an ``async def`` handler), up to ``concurrency`` at once. The body arrives in
one ``http.request`` message; the response's ``http.response.body`` messages are gathered and
sent back in the response encoding: with one Content-Length, or chunk by chunk when the app
streamed several parts without a Content-Length (or set ``Transfer-Encoding: chunked``). HEAD is
answered without a body. An exception from the app is an HTTP 500 response with its text; a job
that is not an encoded request is a 400 reply. The lifespan protocol is not run.
"""

from __future__ import annotations

import asyncio
import http
import signal
import threading
from typing import Any, Awaitable, Callable, Dict, List, MutableMapping, Optional, Tuple
from urllib.parse import unquote_to_bytes

from . import _http
from ._types import Error, Job
from .worker import Worker

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]


def scope_for(req: _http.HttpRequest, job: Optional[Job] = None) -> Dict[str, Any]:
    """The ASGI ``http`` scope of an encoded request."""
    path, _, query = req.target.partition("?")
    headers = [(n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in req.headers]
    host = next((v for n, v in req.headers if n.lower() == "host"), "")
    name, _, port = host.rpartition(":") if host.rfind(":") > host.rfind("]") else (host, "", "")
    real_ip = next((v for n, v in req.headers if n.lower() == "x-real-ip"), "")
    proto = next((v for n, v in req.headers if n.lower() == "x-forwarded-proto"), "http").split(",")[-1].strip()
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": req.method,
        "scheme": proto if proto in ("http", "https") else "http",
        "path": unquote_to_bytes(path).decode("utf-8", "replace") if path.startswith("/") else path,
        "raw_path": path.encode("latin-1"),
        "query_string": query.encode("latin-1"),
        "root_path": "",
        "headers": headers,
        "client": (real_ip, 0) if real_ip else None,
        "server": (name or "localhost", int(port) if port.isdigit() else 80),
        "extensions": {"scale0.job": job},
    }


async def run_app(app: ASGIApp, req: _http.HttpRequest, job: Optional[Job] = None) -> List[bytes]:
    """Runs the app on one request: the response encoding's frames."""
    scope = scope_for(req, job)
    done = asyncio.Event()
    sent_request = False
    start: Dict[str, Any] = {}
    parts: List[bytes] = []

    async def receive() -> Message:
        nonlocal sent_request
        if not sent_request:
            sent_request = True
            return {"type": "http.request", "body": req.body, "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        kind = message.get("type")
        if kind == "http.response.start":
            if start:
                raise RuntimeError("http.response.start sent twice")
            start.update(message)
        elif kind == "http.response.body":
            if not start:
                raise RuntimeError("http.response.body before http.response.start")
            body = bytes(message.get("body", b""))
            if body:
                parts.append(body)
            if not message.get("more_body", False):
                done.set()

    try:
        await app(scope, receive, send)
        if not start:
            raise RuntimeError("the app sent no response")
        code = int(start["status"])
        try:
            reason = http.HTTPStatus(code).phrase
        except ValueError:
            reason = "Unknown"
        headers: List[Tuple[str, str]] = [(bytes(n).decode("latin-1"), bytes(v).decode("latin-1"))
                                          for n, v in start.get("headers", [])]
        streamed = len(parts) > 1 and not any(n.lower() == "content-length" for n, _ in headers)
        if streamed and not any(n.lower() == "transfer-encoding" for n, _ in headers):
            headers.append(("Transfer-Encoding", "chunked"))
        return _http.encode_response(req.method, "%d %s" % (code, reason), headers, parts)
    except Exception as e:  # noqa: BLE001 - the app's failure is the client's 500
        return _http.error_response(500, "Internal Server Error", "%s: %s" % (type(e).__name__, e))
    finally:
        done.set()


def handler(app: ASGIApp) -> Callable[[Job], Awaitable[List[bytes]]]:
    """An ``async def`` Worker handler serving ``app``: for a Worker built by hand."""
    async def handle(job: Job) -> List[bytes]:
        try:
            req = _http.parse_request(job.body)
        except _http.NotEncoded as e:
            raise Error(400, "not an encoded HTTP request: %s" % e)
        return await run_app(app, req, job)
    return handle


def serve(app: ASGIApp, broker: str = "tcp://127.0.0.1:5556", service: str = "localhost",
          concurrency: int = 64, **worker_options: Any) -> None:
    """Serves ``app`` as a worker of ``service`` until stopped (SIGINT or SIGTERM when called from
    the main thread: graceful). Other keyword arguments go to scale0.Worker."""
    w = Worker(broker, [service], handler(app), concurrency=concurrency, **worker_options)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: w.stop())
    w.run()
