# SPDX-License-Identifier: Apache-2.0
"""ASGI applications as Scale0 workers: the asyncio counterpart of scale0.wsgi.

    scale0.asgi.serve(app, broker="tcp://127.0.0.1:5556", service="www.example.com", concurrency=64)

Each encoded request (docs/http.md) becomes one ASGI 3 ``http`` scope; the app runs on the
worker's event loop (an ``async def`` handler), up to ``concurrency`` at once. The body arrives in
one ``http.request`` message; the response's ``http.response.body`` messages are gathered and
sent back in the response encoding: with one Content-Length, or chunk by chunk when the app
streamed several parts without a Content-Length (or set ``Transfer-Encoding: chunked``). HEAD is
answered without a body. An exception from the app is an HTTP 500 response with its text; a job
that is not an encoded request is a 400 reply.

The lifespan protocol (``lifespan="auto"``, the default of serve()) runs the app's startup on the
worker's event loop before the worker registers and its shutdown after the worker stopped (the
requests it held answered); the lifespan ``state`` is copied into every request's scope. An app
that raises on the lifespan scope does not support it: with "auto" it is served without, with "on"
that is an error, as is ``lifespan.startup.failed`` always.
"""

from __future__ import annotations

import asyncio
import http
import signal
import threading
from typing import Any, Awaitable, Callable, Dict, List, MutableMapping, Optional, Sequence, Tuple
from urllib.parse import unquote_to_bytes

from . import _http
from ._types import Error, Job
from .worker import Worker

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]


ASGI_VERSION = {"version": "3.0", "spec_version": "2.3"}
LIFESPAN_MODES = ("auto", "on", "off")


class LifespanError(RuntimeError):
    """The app's lifespan startup (or shutdown) failed, or did not answer in time."""


class Lifespan:
    """Runs an ASGI app's lifespan protocol: ``await startup()`` and, later, ``await shutdown()``
    on the same event loop (the worker's: pass them as Worker's ``startup`` and ``shutdown``).

    ``mode`` "auto" serves an app without lifespan support (it raised, or returned before
    answering startup) as if there were none; "on" makes that a LifespanError; "off" never calls
    the app with a lifespan scope. ``state`` is the scope's state dict, shared with requests
    (handler(app, lifespan)). ``timeout`` bounds the wait for each answer (seconds).
    """

    def __init__(self, app: ASGIApp, mode: str = "auto", timeout: float = 60.0) -> None:
        if mode not in LIFESPAN_MODES:
            raise Error(400, "lifespan is auto, on or off")
        self.app = app
        self.mode = mode
        self.timeout = float(timeout)
        self.state: Dict[str, Any] = {}
        self.supported = False  # true once the app completed its startup
        self._task: Optional["asyncio.Future[None]"] = None
        self._to_app: Optional["asyncio.Queue[Message]"] = None
        self._from_app: Optional["asyncio.Queue[Message]"] = None

    async def startup(self) -> None:
        if self.mode == "off":
            return
        self._to_app, self._from_app = asyncio.Queue(), asyncio.Queue()
        scope = {"type": "lifespan", "asgi": dict(ASGI_VERSION), "state": self.state}
        self._task = asyncio.ensure_future(self.app(scope, self._to_app.get, self._from_app.put))
        await self._to_app.put({"type": "lifespan.startup"})
        try:
            answer = await self._answer("startup")
        except LifespanError:
            if self.mode == "on":
                raise
            self._task = None  # "auto": the app does not speak lifespan
            return
        if answer.get("type") == "lifespan.startup.failed":
            raise LifespanError("lifespan startup failed: %s" % answer.get("message", ""))
        if answer.get("type") != "lifespan.startup.complete":
            raise LifespanError("lifespan startup: unexpected %r" % answer.get("type"))
        self.supported = True

    async def shutdown(self) -> None:
        if not self.supported or self._to_app is None:
            return
        await self._to_app.put({"type": "lifespan.shutdown"})
        answer = await self._answer("shutdown")
        if answer.get("type") == "lifespan.shutdown.failed":
            raise LifespanError("lifespan shutdown failed: %s" % answer.get("message", ""))

    async def _answer(self, phase: str) -> Message:
        """The app's next message; LifespanError when the app ended (or raised) first, or took
        longer than the timeout."""
        assert self._from_app is not None and self._task is not None
        get: "asyncio.Future[Any]" = asyncio.ensure_future(self._from_app.get())
        task: "asyncio.Future[Any]" = self._task
        done, _ = await asyncio.wait({get, task}, timeout=self.timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
        if get in done:
            answer: Message = get.result()
            return answer
        get.cancel()
        if self._task in done:
            exc = self._task.exception()
            raise LifespanError("lifespan %s: the app %s" % (
                phase, "raised %s: %s" % (type(exc).__name__, exc) if exc else "returned without answering"))
        self._task.cancel()
        raise LifespanError("lifespan %s: no answer within %g s" % (phase, self.timeout))


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
        "asgi": dict(ASGI_VERSION),
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


async def run_app(app: ASGIApp, req: _http.HttpRequest, job: Optional[Job] = None,
                  state: Optional[Dict[str, Any]] = None) -> List[bytes]:
    """Runs the app on one request: the response encoding's frames. ``state``: the lifespan's,
    copied (shallow) into the scope."""
    scope = scope_for(req, job)
    if state is not None:
        scope["state"] = dict(state)
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


def handler(app: ASGIApp, lifespan: Optional[Lifespan] = None) -> Callable[[Job], Awaitable[List[bytes]]]:
    """An ``async def`` Worker handler serving ``app``: for a Worker built by hand (with
    ``lifespan``, its state goes into every request's scope)."""
    async def handle(job: Job) -> List[bytes]:
        try:
            req = _http.parse_request(job.body)
        except _http.NotEncoded as e:
            raise Error(400, "not an encoded HTTP request: %s" % e)
        return await run_app(app, req, job, lifespan.state if lifespan is not None and lifespan.supported else None)
    return handle


def worker(app: ASGIApp, broker: str = "tcp://127.0.0.1:5556", services: Sequence[str] = ("localhost",),
           concurrency: int = 64, lifespan: str = "auto", **worker_options: Any) -> Worker:
    """A Worker serving ``app`` for ``services``, with its lifespan run as the worker's startup and
    shutdown (``lifespan``: auto, on or off). Other keyword arguments go to scale0.Worker."""
    ls = Lifespan(app, lifespan)
    return Worker(broker, services, handler(app, ls), concurrency=concurrency, startup=ls.startup,
                  shutdown=ls.shutdown, **worker_options)


def serve(app: ASGIApp, broker: str = "tcp://127.0.0.1:5556", service: str = "localhost",
          concurrency: int = 64, lifespan: str = "auto", **worker_options: Any) -> None:
    """Serves ``app`` as a worker of ``service`` until stopped (SIGINT or SIGTERM when called from
    the main thread: graceful), its lifespan around it (``lifespan``: auto, on or off). Other
    keyword arguments go to scale0.Worker."""
    w = worker(app, broker, [service], concurrency, lifespan, **worker_options)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: w.stop())
    w.run()
