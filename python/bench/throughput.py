# SPDX-License-Identifier: Apache-2.0
"""Throughput of the Python library, in one run (issue 14's "Performance"):

1. Echo workers behind one broker, driven by the C++ load generator (`scale0 bench`, so the
   worker is the bottleneck): scale0.Worker (thread pool, concurrency 1 and 16; inline,
   concurrency 1; `async def`, concurrency 16) against a Majordomo 0.1 worker written as the zguide's Python `mdwrkapi` loop
   (one DEALER, a blocking poll, HEARTBEAT every 2.5 s; that file itself is Python 2 and does not
   run on Python 3's pyzmq, so its loop is reproduced here with bytes frames).
2. Clients against C++ echo workers: scale0.aio.Client (requests awaited at once) against the
   blocking scale0.Client pipelined with send()/receive(), and sequential request().

    SCALE0_BIN=build/dev/apps/scale0/scale0 python3 python/bench/throughput.py [--seconds 3] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import time
from typing import Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import scale0  # noqa: E402
import scale0.aio  # noqa: E402

BIN = os.environ.get("SCALE0_BIN") or os.path.join(HERE, "..", "..", "build", "dev", "apps", "scale0", "scale0")
READY_RE = re.compile(r"^ready frontend=(\S+) backend=(\S+)")


def mdp_worker(broker: str, service: str) -> None:
    """A Majordomo worker in the zguide's mdwrkapi loop: recv(reply) sends the reply, then polls
    for the next request, heartbeating every 2.5 s."""
    import zmq
    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    s.linger = 0
    s.connect(broker)
    poller = zmq.Poller()
    poller.register(s, zmq.POLLIN)
    s.send_multipart([b"", b"MDPW01", b"\x01", service.encode()])
    heartbeat_at = time.time() + 2.5
    reply: Optional[List[bytes]] = None
    reply_to = b""
    while True:
        if reply is not None:
            s.send_multipart([b"", b"MDPW01", b"\x03", reply_to, b""] + reply)
            reply = None
        if poller.poll(2500):
            msg = s.recv_multipart()
            if msg[2] == b"\x02":
                reply_to = msg[3]
                reply = msg[5:]  # echo
            elif msg[2] == b"\x05":
                return
        if time.time() > heartbeat_at:
            s.send_multipart([b"", b"MDPW01", b"\x04"])
            heartbeat_at = time.time() + 2.5


async def async_echo(job: scale0.Job) -> List[bytes]:
    return job.frames


def start(args: List[str], env: Optional[Dict[str, str]] = None) -> subprocess.Popen:  # type: ignore[type-arg]
    return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            env=env, start_new_session=True)


def wait_service(frontend: str, service: str, present: bool = True) -> None:
    want = b"200" if present else b"404"
    with scale0.Client(frontend, timeout=1.0) as c:
        for _ in range(200):
            if c.request("mmi.service", service) == want:
                return
            time.sleep(0.05)
    raise SystemExit("service %s never became %s" % (service, "present" if present else "absent"))


def load(frontend: str, service: str, seconds: float, clients: int, window: int) -> float:
    out = subprocess.run([BIN, "bench", "--broker", frontend, "--service", service, "--clients", str(clients),
                          "--window", str(window), "--duration", str(seconds), "--json"],
                         capture_output=True, timeout=seconds + 60)
    doc = json.loads(out.stdout)
    for key in ("requests_per_second", "throughput", "rps"):
        if key in doc:
            return float(doc[key])
    raise SystemExit("no throughput in %r" % out.stdout[:500])


def workers(frontend: str, backend: str, seconds: float) -> Dict[str, float]:
    env = dict(os.environ, PYTHONPATH=os.path.dirname(HERE) + os.pathsep + HERE)
    py = [sys.executable]
    kinds = {
        "mdwrkapi loop (MDP, concurrency 1)": py + [__file__, "mdp-worker", backend, "w-mdp"],
        "scale0.Worker, concurrency 1": py + ["-m", "scale0", "worker", "-q", "--broker", backend,
                                              "--service", "w-py1"],
        "scale0.Worker inline, concurrency 1": py + ["-m", "scale0", "worker", "-q", "--broker", backend,
                                                     "--service", "w-inl", "--inline"],
        "scale0.Worker, concurrency 16": py + ["-m", "scale0", "worker", "-q", "--broker", backend,
                                               "--service", "w-py16", "--concurrency", "16"],
        "scale0.Worker async def, concurrency 16": py + ["-m", "scale0", "worker", "-q", "--broker", backend,
                                                         "--service", "w-aio16", "--concurrency", "16",
                                                         "--handler", "throughput:async_echo"],
    }
    services = ["w-mdp", "w-py1", "w-inl", "w-py16", "w-aio16"]
    out: Dict[str, float] = {}
    for (name, args), service in zip(kinds.items(), services):
        p = start(args, env)
        try:
            wait_service(frontend, service)
            out[name] = load(frontend, service, seconds, 4, 16)
        finally:
            p.kill()
            p.wait(timeout=10)
    return out


def blocking_pipelined(frontend: str, n: int, window: int) -> float:
    with scale0.Client(frontend, timeout=10.0) as c:
        t0 = time.monotonic()
        sent = 0
        for _ in range(min(window, n)):
            c.send("echo", b"x" * 32, timeout=10.0)
            sent += 1
        for _ in range(n):
            r = c.receive(timeout=10.0)
            assert r is not None and r.status == 200
            if sent < n:
                c.send("echo", b"x" * 32, timeout=10.0)
                sent += 1
        return n / (time.monotonic() - t0)


def blocking_sequential(frontend: str, n: int) -> float:
    with scale0.Client(frontend, timeout=10.0) as c:
        t0 = time.monotonic()
        for _ in range(n):
            c.request("echo", b"x" * 32)
        return n / (time.monotonic() - t0)


def aio_concurrent(frontend: str, n: int, window: int) -> float:
    async def main() -> float:
        sem = asyncio.Semaphore(window)
        async with scale0.aio.Client(frontend, timeout=10.0) as ac:
            async def one() -> None:
                async with sem:
                    await ac.request("echo", b"x" * 32)
            t0 = time.monotonic()
            await asyncio.gather(*(one() for _ in range(n)))
            return n / (time.monotonic() - t0)
    return asyncio.run(main())


def clients(frontend: str, backend: str, n: int) -> Dict[str, float]:
    ws = [start([BIN, "worker", "--broker", backend, "--service", "echo", "--echo", "--concurrency", "256"])
          for _ in range(2)]
    try:
        wait_service(frontend, "echo")
        return {
            "scale0.Client request() (sequential)": blocking_sequential(frontend, n // 10),
            "scale0.Client send()/receive(), window 100": blocking_pipelined(frontend, n, 100),
            "scale0.aio.Client, 100 at once": aio_concurrent(frontend, n, 100),
            "scale0.aio.Client, 1000 at once": aio_concurrent(frontend, n, 1000),
        }
    finally:
        for w in ws:
            w.kill()
            w.wait(timeout=10)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "mdp-worker":
        mdp_worker(sys.argv[2], sys.argv[3])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3.0, help="load per worker (default 3)")
    ap.add_argument("--requests", type=int, default=20000, help="requests per client measurement")
    ap.add_argument("--runs", type=int, default=1, help="measure this many times; print each row's median")
    a = ap.parse_args()
    broker = start([BIN, "broker", "--frontend", "tcp://127.0.0.1:*", "--backend", "tcp://127.0.0.1:*",
                    "--heartbeat", "tcp://127.0.0.1:*", "--peer-listen", "", "--metrics-listen", ""])
    try:
        assert broker.stdout is not None
        m = READY_RE.match(broker.stdout.readline().decode())
        if m is None:
            raise SystemExit("the broker printed no ready line")
        frontend, backend = m.group(1), m.group(2)
        runs: List[Dict[str, Dict[str, float]]] = []
        for _ in range(max(1, a.runs)):
            runs.append({"workers (req/s, scale0 bench: 4 clients x window 16)": workers(frontend, backend, a.seconds),
                         "clients (req/s, 32-byte echo, 2 C++ workers)": clients(frontend, backend, a.requests)})
        results: Dict[str, Dict[str, float]] = {
            section: {row: statistics.median(r[section][row] for r in runs) for row in rows}
            for section, rows in runs[0].items()}
    finally:
        broker.kill()
        broker.wait(timeout=10)
    for section, rows in results.items():
        print(section)
        base = next(iter(rows.values()))
        for name, rps in rows.items():
            print("  %-45s %9.0f  x%.2f" % (name, rps, rps / base))


if __name__ == "__main__":
    main()
