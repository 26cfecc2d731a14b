# SPDX-License-Identifier: Apache-2.0
"""`python -m scale0 request|worker|status`: the library from a shell.

Exit status (as the C++ `scale0` CLI): 0 success, 1 other failure, 2 usage error, 3 no broker
answered, 4 a 4xx reply, 5 a 5xx reply.
"""

from __future__ import annotations

import argparse
import importlib
import json
import signal
import sys
import time
from typing import Any, Callable, Dict, List, Optional

from . import Client, Error, Job, Worker
from .curve import curve_from

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_NO_BROKER, EXIT_4XX, EXIT_5XX = 0, 1, 2, 3, 4, 5


def exit_code(e: Error) -> int:
    """The exit status of a failed request."""
    if e.local:
        return EXIT_NO_BROKER
    if 400 <= e.status < 500:
        return EXIT_4XX
    if 500 <= e.status < 600:
        return EXIT_5XX
    return EXIT_FAIL


def cmd_request(args: argparse.Namespace) -> int:
    body = args.body.encode() if args.body is not None else sys.stdin.buffer.read()
    with Client(args.broker, timeout=args.timeout, retries=args.retries, idempotent=args.idempotent,
                protocol_version=args.protocol_version,
                curve=curve_from(args.curve_server_key, args.curve_cert)) as c:
        for _ in range(args.count):
            try:
                out = c.request(args.service, body)
            except Error as e:
                print("%d %s" % (e.status, e.message), file=sys.stderr)
                return exit_code(e)
            if args.verbose:
                print("200", file=sys.stderr)
            sys.stdout.buffer.write(out)
            if sys.stdout.isatty():
                sys.stdout.buffer.write(b"\n")
            sys.stdout.flush()
    return EXIT_OK


def load_object(spec: str) -> Any:
    """module:attribute, as WSGI servers name apps (``myapp:app``)."""
    module, _, attr = spec.partition(":")
    if not module or not attr:
        raise SystemExit("expected module:name, got %r" % spec)
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def make_handler(args: argparse.Namespace) -> Callable[[Job], Any]:
    if args.wsgi:
        from .wsgi import handler as wsgi_handler
        return wsgi_handler(load_object(args.wsgi))
    if args.handler:
        return load_object(args.handler)  # type: ignore[no-any-return]
    delay = args.delay / 1000.0

    def echo(job: Job) -> List[bytes]:
        if delay:
            time.sleep(min(delay, job.time_left))
        return job.frames
    return echo


def cmd_worker(args: argparse.Namespace) -> int:
    services = [s for s in args.service.split(",") if s]
    events = (lambda text: print(text, file=sys.stderr, flush=True)) if not args.quiet else None
    options: Dict[str, Any] = dict(
        concurrency=args.concurrency, idempotent=args.idempotent, name=args.name,
        heartbeat_interval=args.heartbeat_interval / 1000.0, inline=args.inline,
        protocol_version=args.protocol_version, curve=curve_from(args.curve_server_key, args.curve_cert),
        on_event=events)
    if args.asgi:
        from .asgi import worker as asgi_worker
        w = asgi_worker(load_object(args.asgi), args.broker, services, lifespan=args.lifespan, **options)
    else:
        w = Worker(args.broker, services, make_handler(args), **options)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: w.stop())
    try:
        w.run()
    except RuntimeError as e:  # the ASGI app's lifespan startup or shutdown failed
        print(str(e), file=sys.stderr)
        return EXIT_FAIL
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    with Client(args.broker, timeout=args.timeout, curve=curve_from(args.curve_server_key, args.curve_cert)) as c:
        try:
            doc = json.loads(c.request("scale0.status", b""))
        except Error as e:
            print("%d %s" % (e.status, e.message), file=sys.stderr)
            return exit_code(e)
    if args.json:
        print(json.dumps(doc, indent=2, sort_keys=True))
        return EXIT_OK
    print("broker %s at %s  up %d ms%s" % (doc.get("broker_id"), args.broker, doc.get("uptime_ms", 0),
                                           "  draining" if doc.get("draining") else ""))
    print("%-24s %7s %6s %6s %9s" % ("SERVICE", "WORKERS", "IDLE", "QUEUE", "IN-FLIGHT"))
    for s in doc.get("services", []):
        print("%-24s %7d %6d %6d %9d" % (s["name"], s.get("workers", 0), s.get("idle_slots", 0),
                                         s.get("queue_depth", 0), s.get("in_flight", 0)))
    print("%-24s %-16s %-6s %5s %9s  %s" % ("WORKER", "ADDRESS", "PROTO", "CONC", "IN-FLIGHT", "SERVICES"))
    for w in doc.get("workers", []):
        print("%-24s %-16s %-6s %5d %9d  %s" % (w.get("name", ""), w.get("address", ""), w.get("protocol", ""),
                                                w.get("concurrency", 0), w.get("in_flight", 0),
                                                ",".join(w.get("services", []))))
    return EXIT_OK


def add_curve(p: argparse.ArgumentParser) -> None:
    p.add_argument("--curve-server-key", metavar="KEY|FILE",
                   help="the broker's CURVE public key (Z85, or its certificate file): CURVE on")
    p.add_argument("--curve-cert", metavar="FILE",
                   help="own secret CURVE certificate (scale0 keygen); default: an ephemeral key")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m scale0", description="Scale0 from the shell, in Python.")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("request", help="send one request and print the reply body")
    r.add_argument("service")
    r.add_argument("body", nargs="?", help="the request body (default: stdin)")
    r.add_argument("--broker", default="tcp://127.0.0.1:5555", help="frontend endpoint, or a list EP,EP")
    r.add_argument("--timeout", type=float, default=2.5, help="deadline in seconds (default 2.5)")
    r.add_argument("--retries", type=int, default=0, help="Lazy Pirate: resend on timeout this many times")
    r.add_argument("--idempotent", action="store_true", help="may run twice: resent through the next broker")
    r.add_argument("--count", type=int, default=1, help="send it this many times, one after another")
    r.add_argument("--protocol-version", type=int, choices=(1, 2), default=2, help="wire framing (1: S0/1)")
    r.add_argument("-v", "--verbose", action="store_true", help="print the status on stderr")
    add_curve(r)
    r.set_defaults(func=cmd_request)

    w = sub.add_parser("worker", help="serve services: echo (default), a handler, a WSGI or an ASGI app")
    w.add_argument("--broker", default="tcp://127.0.0.1:5556", help="backend endpoint, or a list EP,EP")
    w.add_argument("--service", required=True, help="services served (comma-separated)")
    how = w.add_mutually_exclusive_group()
    how.add_argument("--wsgi", metavar="MODULE:APP", help="serve a WSGI application (docs/http.md)")
    how.add_argument("--asgi", metavar="MODULE:APP", help="serve an ASGI 3 application on the event loop")
    how.add_argument("--handler", metavar="MODULE:FUNC", help="a handler function (def or async def) of a Job")
    w.add_argument("--lifespan", choices=("auto", "on", "off"), default="auto",
                   help="--asgi: run the app's lifespan startup/shutdown around the worker (default auto)")
    w.add_argument("--delay", type=int, default=0, help="echo: wait this many ms before replying")
    w.add_argument("--concurrency", type=int, default=1, help="requests held at once (1-1024)")
    w.add_argument("--idempotent", action="store_true", help="requests may be re-dispatched if this worker dies")
    w.add_argument("--inline", action="store_true", help="run the handler on the I/O thread (never-blocking handlers)")
    w.add_argument("--name", help="shown by the broker (default host:pid)")
    w.add_argument("--heartbeat-interval", type=int, default=0, help="ask for a longer interval (ms)")
    w.add_argument("--protocol-version", type=int, choices=(1, 2), default=2, help="wire framing (1: S0/1)")
    w.add_argument("-q", "--quiet", action="store_true", help="do not log registrations and losses on stderr")
    add_curve(w)
    w.set_defaults(func=cmd_worker)

    s = sub.add_parser("status", help="a broker's services and workers")
    s.add_argument("--broker", default="tcp://127.0.0.1:5555", help="frontend endpoint")
    s.add_argument("--timeout", type=float, default=1.0, help="seconds to wait for the answer")
    s.add_argument("--json", action="store_true", help="print the broker's JSON, pretty-printed")
    add_curve(s)
    s.set_defaults(func=cmd_status)
    return p


# Options whose value may start with '-' (a Z85 key may): argparse would take it for an option.
_VALUE_OPTIONS = ("--curve-server-key", "--curve-cert")


def _join_values(argv: List[str]) -> List[str]:
    """``--curve-server-key -abc...`` as ``--curve-server-key=-abc...``."""
    out: List[str] = []
    i = 0
    while i < len(argv):
        if argv[i] in _VALUE_OPTIONS and i + 1 < len(argv):
            out.append(argv[i] + "=" + argv[i + 1])
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


def main(argv: Optional[List[str]] = None) -> int:
    args = parser().parse_args(_join_values(list(sys.argv[1:] if argv is None else argv)))
    try:
        return int(args.func(args))
    except Error as e:  # invalid options
        print("%d %s" % (e.status, e.message), file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
