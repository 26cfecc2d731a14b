# SPDX-License-Identifier: Apache-2.0
"""WSGI applications as Scale0 workers (docs/http.md, "The HTTP encoding").

    scale0.wsgi.serve(app, broker="tcp://127.0.0.1:5556", service="www.example.com", concurrency=8)

Each REQUEST a front door (``scale0 gateway``, ``scale0 mongrel2``) sends is one encoded HTTP
request; it becomes a PEP 3333 environ, the app runs on one of the worker's threads, and its
response goes back in the response encoding. A job that is not an encoded request is answered
400; an exception from the app is an HTTP 500 response carrying its text.
"""

from __future__ import annotations

import io
import signal
import sys
import threading
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple
from urllib.parse import unquote_to_bytes

from . import _http
from ._types import Error, Job
from .worker import Worker

WSGIApp = Callable[[Dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def environ_for(req: _http.HttpRequest, job: Optional[Job] = None) -> Dict[str, Any]:
    """The PEP 3333 environ of an encoded request."""
    path, _, query = req.target.partition("?")
    host = next((v for n, v in req.headers if n.lower() == "host"), "")
    name, _, port = host.rpartition(":") if host.rfind(":") > host.rfind("]") else (host, "", "")
    fields: Dict[str, str] = {}
    env: Dict[str, Any] = {
        "REQUEST_METHOD": req.method,
        "SCRIPT_NAME": "",
        "PATH_INFO": unquote_to_bytes(path).decode("latin-1") if path.startswith("/") else path,
        "QUERY_STRING": query,
        "SERVER_NAME": name or "localhost",
        "SERVER_PORT": port or "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(req.body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "scale0.job": job,
    }
    for n, v in req.headers:
        key = n.upper().replace("-", "_")
        if key == "CONTENT_TYPE" or key == "CONTENT_LENGTH":
            env[key] = v
            continue
        key = "HTTP_" + key
        if key in fields:
            fields[key] += ("; " if key == "HTTP_COOKIE" else ", ") + v
        else:
            fields[key] = v
    env.update(fields)
    env.setdefault("CONTENT_LENGTH", str(len(req.body)))
    env["REMOTE_ADDR"] = fields.get("HTTP_X_REAL_IP", "")
    proto = fields.get("HTTP_X_FORWARDED_PROTO", "http").split(",")[-1].strip()
    env["wsgi.url_scheme"] = proto if proto in ("http", "https") else "http"
    return env


def run_app(app: WSGIApp, req: _http.HttpRequest, job: Optional[Job] = None) -> List[bytes]:
    """Runs the app on one request: the response encoding's frames."""
    env = environ_for(req, job)
    started: List[Any] = []
    written: List[bytes] = []

    def start_response(status: str, headers: List[Tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
        if exc_info is not None and started and started[0][2]:
            raise exc_info[1].with_traceback(exc_info[2])
        started[:] = [(status, list(headers), False)]
        return written.append  # the legacy write() callable

    try:
        result = app(env, start_response)
        try:
            chunks = list(written)
            for chunk in result:
                if chunk:
                    chunks.append(bytes(chunk))
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        if not started:
            raise RuntimeError("the app did not call start_response")
        status, headers, _ = started[0]
        return _http.encode_response(req.method, status, headers, chunks)
    except Exception as e:  # noqa: BLE001 - the app's failure is the client's 500
        return _http.error_response(500, "Internal Server Error", "%s: %s" % (type(e).__name__, e))


def handler(app: WSGIApp) -> Callable[[Job], List[bytes]]:
    """A Worker handler serving ``app``: for a Worker built by hand."""
    def handle(job: Job) -> List[bytes]:
        try:
            req = _http.parse_request(job.body)
        except _http.NotEncoded as e:
            raise Error(400, "not an encoded HTTP request: %s" % e)
        return run_app(app, req, job)
    return handle


def serve(app: WSGIApp, broker: str = "tcp://127.0.0.1:5556", service: str = "localhost",
          concurrency: int = 8, **worker_options: Any) -> None:
    """Serves ``app`` as a worker of ``service`` until stopped (SIGINT or SIGTERM when called from
    the main thread: graceful). Other keyword arguments go to scale0.Worker (name, idempotent,
    heartbeat_interval, ...)."""
    w = Worker(broker, [service], handler(app), concurrency=concurrency, **worker_options)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: w.stop())
    w.run()
