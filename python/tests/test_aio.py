# SPDX-License-Identifier: Apache-2.0
"""scale0.aio.Client: 1,000 concurrent requests, statuses, deadlines and a lost broker."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any, Coroutine

import pytest

import scale0
import scale0.aio
from conftest import Broker, cpp_worker


@pytest.fixture
def echo(broker: Broker, procs: list) -> Broker:
    procs.append(cpp_worker(broker, "echo", "--echo", "--concurrency", "16"))
    return broker


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_thousand_concurrent_requests(echo: Broker) -> None:
    async def main() -> list:
        async with scale0.aio.Client(echo.frontend, timeout=10.0) as ac:
            return await asyncio.gather(*(ac.request("echo", b"%d" % i) for i in range(1000)))

    t0 = time.monotonic()
    bodies = run(main())
    assert bodies == [b"%d" % i for i in range(1000)]
    assert time.monotonic() - t0 < 15


def test_statuses_and_ping(echo: Broker) -> None:
    async def main() -> None:
        async with scale0.aio.Client(echo.frontend) as ac:
            assert await ac.ping(2.0)
            with pytest.raises(scale0.Error) as e:
                await ac.request("nosuch", b"x", timeout=2.0)
            assert (e.value.status, e.value.message) == (503, "no worker for service")
            r = await ac.call("echo", [b"a", b"b"])
            assert (r.status, r.frames) == (200, [b"a", b"b"])
            assert await ac.request("mmi.service", "echo") == b"200"

    run(main())


def test_local_deadline(echo: Broker) -> None:
    async def main() -> None:
        async with scale0.aio.Client(echo.frontend) as ac:
            assert await ac.request("echo", b"warm") == b"warm"
            echo.signal(signal.SIGSTOP)
            try:
                t0 = time.monotonic()
                r = await ac.call("echo", b"x", timeout=0.3)
                assert (r.status, r.local) == (504, True)
                assert 0.5 <= time.monotonic() - t0 < 1.5
            finally:
                echo.signal(signal.SIGCONT)

    run(main())


def test_lost_broker_is_502(broker: Broker, procs: list) -> None:
    procs.append(cpp_worker(broker, "slow", "--echo", "--delay", "3000"))

    async def main() -> None:
        async with scale0.aio.Client(broker.frontend) as ac:
            asyncio.get_running_loop().call_later(0.3, broker.kill)
            with pytest.raises(scale0.Error) as e:
                await ac.request("slow", b"x", timeout=5.0)
            assert e.value.status == 502 and e.value.message.startswith("broker lost")

    run(main())


def test_a_blocked_loop_is_not_a_lost_broker(broker: Broker, procs: list) -> None:
    procs.append(cpp_worker(broker, "slow", "--echo", "--delay", "1500"))

    async def main() -> None:
        async with scale0.aio.Client(broker.frontend, heartbeat_interval=0.2) as ac:
            task = asyncio.ensure_future(ac.call("slow", b"x", timeout=5.0))
            await asyncio.sleep(0.1)
            time.sleep(1.0)  # the event loop blocked for five intervals
            r = await task
            assert (r.status, r.local) == (200, False)

    run(main())
