# SPDX-License-Identifier: Apache-2.0
"""A family of two brokers (docs/family.md): the client learns the family's frontends from
WELCOME and follows a draining broker's 301; the worker follows DISCONNECT 301 to the other
broker's backend."""

from __future__ import annotations

import json
import signal
import threading
import time
from typing import Iterator, List, Tuple

import pytest

import scale0
from conftest import BIN, Broker, cpp_worker, wait_service


@pytest.fixture
def family() -> Iterator[Tuple[Broker, Broker]]:
    """Brokers A and B, linked (B joins A)."""
    import os
    if not os.access(BIN, os.X_OK):
        pytest.skip("no scale0 binary")
    a = Broker(family=True)
    b = None
    try:
        b = Broker(peer=a.peer)
        with scale0.Client(a.frontend) as c:
            for _ in range(100):  # the link is up within a second or so
                peers = json.loads(c.request("scale0.status"))["family"]["peers"]
                if peers and peers[0]["state"] == "alive":
                    break
                time.sleep(0.05)
            else:
                raise AssertionError("the family never linked")
        yield a, b
    finally:
        a.kill()
        if b is not None:
            b.kill()


def test_client_learns_the_family_and_follows_a_drain(family: Tuple[Broker, Broker], procs: list) -> None:
    a, b = family
    procs.append(cpp_worker(b, "echo", "--echo", "--concurrency", "4"))
    with scale0.Client(a.frontend) as c:
        assert c.request("echo", b"via a") == b"via a"  # forwarded from A to B's worker
        assert b.frontend in c.endpoints  # learned from WELCOME
        a.signal(signal.SIGTERM)  # A drains: new requests are handed back (301) towards B
        bodies = [c.request("echo", b"%d" % i, timeout=5.0) for i in range(20)]
        assert bodies == [b"%d" % i for i in range(20)]
        assert c.endpoint == b.frontend


def test_worker_follows_disconnect_301(family: Tuple[Broker, Broker]) -> None:
    a, b = family
    events: List[str] = []
    w = scale0.Worker(a.backend, ["upper"], lambda job: job.body.upper(), on_event=events.append, name="mover")
    t = threading.Thread(target=w.run, daemon=True)
    t.start()
    try:
        wait_service(a, "upper")
        a.signal(signal.SIGTERM)  # A drains: its idle worker is sent to B
        wait_service(b, "upper", timeout=10.0)
        end = time.monotonic() + 5
        while w.registrations < 2 and time.monotonic() < end:
            time.sleep(0.02)
        assert w.registrations == 2
        assert any(e.startswith("DISCONNECT 301") for e in events), events
        with scale0.Client(b.frontend) as c:
            assert c.request("upper", b"moved") == b"MOVED"
            workers = json.loads(c.request("scale0.status"))["workers"]
        assert [x["name"] for x in workers] == ["mover"]
    finally:
        w.stop()
        t.join(timeout=10)


def test_aio_client_follows_a_drain(family: Tuple[Broker, Broker], procs: list) -> None:
    import asyncio
    import scale0.aio
    a, b = family
    procs.append(cpp_worker(b, "echo", "--echo", "--concurrency", "16"))

    async def main() -> None:
        async with scale0.aio.Client(a.frontend, timeout=5.0) as ac:
            assert await ac.request("echo", b"via a") == b"via a"
            assert b.frontend in ac.endpoints
            a.signal(signal.SIGTERM)
            bodies = await asyncio.gather(*(ac.request("echo", b"%d" % i) for i in range(200)))
            assert bodies == [b"%d" % i for i in range(200)]

    asyncio.run(asyncio.wait_for(main(), 30))
