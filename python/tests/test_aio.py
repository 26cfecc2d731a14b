# SPDX-License-Identifier: Apache-2.0
"""scale0.aio.Client: 1,000 concurrent requests, statuses, deadlines, a lost broker, and batches
(docs/protocol.md, "Batches") against the broker and against a raw ROUTER in its place."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from typing import Any, Coroutine, Dict, List

import pytest
import zmq
import zmq.asyncio

import scale0
import scale0.aio
from conftest import HELLO_FLAGS, HELLO_PLAIN, Broker, cpp_worker, reply, request_of
from conftest import welcome_packed as welcome
from scale0 import _wire


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


# -- batches ----------------------------------------------------------------------------------------


class StandIn:
    """A raw ROUTER in the broker's place: the test reads what the client sends (without the
    identity frame) and answers by hand."""

    def __init__(self) -> None:
        self.ctx = zmq.asyncio.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind("tcp://127.0.0.1:*")
        self.endpoint = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self.peer = b""
        self.seen: List[List[bytes]] = []  # every message received, in order

    async def recv(self, wait: float = 3.0) -> List[bytes]:
        frames = await asyncio.wait_for(self.sock.recv_multipart(), wait)
        self.peer = frames[0]
        self.seen.append(frames[1:])
        return frames[1:]

    async def silent(self, wait: float) -> bool:
        """True when nothing arrives within ``wait`` seconds."""
        try:
            await self.recv(wait)
        except asyncio.TimeoutError:
            return True
        return False

    async def send(self, msg: List[bytes]) -> None:
        await self.sock.send_multipart([self.peer, *msg])

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()


def entries(msg: List[bytes]) -> List[List[bytes]]:
    """The messages a message stands for: a BATCH's entries, else itself."""
    if _wire.is_batch(msg):
        split = _wire.split_batch(msg)
        assert split is not None
        return split
    return [msg]


def test_a_single_request_goes_alone_and_a_turns_requests_in_one_batch() -> None:
    """Singly until the WELCOME says the broker takes batches; then one request alone is a plain
    REQUEST, the requests of one turn are one BATCH, and a PING does not overtake them."""
    async def main() -> None:
        b = StandIn()
        try:
            async with scale0.aio.Client(b.endpoint, timeout=3.0) as ac:
                first = asyncio.ensure_future(asyncio.gather(ac.call("echo", b"a"), ac.call("echo", b"b")))
                assert await b.recv() == [b"", HELLO_FLAGS]
                early = [await b.recv(), await b.recv()]  # before the WELCOME: one message each
                assert [request_of(m)[1:] for m in early] == [(b"echo", [b"a"]), (b"echo", [b"b"])]
                await b.send([b"", welcome(_wire.HELLO_BATCHES)])
                for m in early:
                    rid, _, body = request_of(m)
                    await b.send(reply(rid, 200, b"", body))
                assert [r.frames for r in await first] == [[b"a"], [b"b"]]

                one = asyncio.ensure_future(ac.call("echo", b"alone"))
                alone = await b.recv()
                assert not _wire.is_batch(alone) and request_of(alone)[1:] == (b"echo", [b"alone"])
                await b.send(reply(request_of(alone)[0], 200, b"", [b"alone"]))
                assert (await one).frames == [b"alone"]

                many = asyncio.ensure_future(asyncio.gather(
                    ac.call("echo", b"x"), ac.call("echo", [b"y", b"z" * 300]), ac.ping(3.0)))
                batch = await b.recv()
                assert _wire.is_batch(batch) and len(batch) == 3  # the 300-byte frame travels apart
                got = [request_of(m) for m in entries(batch)]
                assert [g[1:] for g in got] == [(b"echo", [b"x"]), (b"echo", [b"y", b"z" * 300])]
                assert await b.recv() == [b"", b"S0C2\x03"]  # the PING, after what was held
                for rid, _, body in got:
                    await b.send(reply(rid, 200, b"", body))
                await b.send([b"", b"S0C2\x04"])
                r1, r2, ponged = await many
                assert (r1.frames, r2.frames, ponged) == ([b"x"], [b"y", b"z" * 300], True)
        finally:
            b.close()

    run(main())


def test_an_old_broker_refuses_the_hello_flags_and_gets_no_batch() -> None:
    """A broker from before batches answers HELLO with a flags byte 400 (request-id 0): the client
    says HELLO again without it, and sends that broker nothing but single messages."""
    async def main() -> None:
        b = StandIn()
        try:
            async with scale0.aio.Client(b.endpoint, timeout=3.0) as ac:
                first = asyncio.ensure_future(ac.call("echo", b"first"))
                assert await b.recv() == [b"", HELLO_FLAGS]
                await b.send(reply(0, 400, b"HELLO has no fields", []))
                msgs = [await b.recv(), await b.recv()]  # the request, the new HELLO (either order)
                hello = [m for m in msgs if m[1][:5] == HELLO_PLAIN]
                assert hello == [[b"", HELLO_PLAIN]]
                await b.send([b"", welcome(None)])
                req = [m for m in msgs if m not in hello][0]
                await b.send(reply(request_of(req)[0], 200, b"", [b"first"]))
                assert (await first).frames == [b"first"]

                n = 50
                calls = asyncio.ensure_future(asyncio.gather(*(ac.call("echo", b"%d" % i) for i in range(n))))
                for _ in range(n):
                    m = await b.recv()
                    rid, _, body = request_of(m)  # a plain REQUEST, not a BATCH
                    await b.send(reply(rid, 200, b"", body))
                assert [r.frames for r in await calls] == [[b"%d" % i] for i in range(n)]
                assert await b.silent(0.2)
            assert all(m[1][4] != _wire.BATCH for m in b.seen)
            assert sum(1 for m in b.seen if m[1][:5] == HELLO_PLAIN) == 2  # with flags, then without
        finally:
            b.close()

    run(main())


def test_batched_replies_resolve_every_request_and_a_malformed_batch_is_ignored() -> None:
    """A BATCH from the broker is its entries in order (a WELCOME may be the first); a malformed
    one is used not at all: its requests end by their deadline (local 504)."""
    async def main() -> None:
        b = StandIn()
        try:
            async with scale0.aio.Client(b.endpoint, timeout=3.0) as ac:
                n = 40
                calls = asyncio.ensure_future(asyncio.gather(
                    *(ac.call("echo", b"%d" % i) for i in range(n)), ac.call("echo", b"big" * 200)))
                assert await b.recv() == [b"", HELLO_FLAGS]
                got = [request_of(await b.recv()) for _ in range(n + 1)]  # singly: no WELCOME yet
                box = _wire.Batcher()
                box.add([b"", welcome(_wire.HELLO_BATCHES)])
                for rid, _, body in reversed(got):  # any order: matched by id
                    box.add(reply(rid, 200, b"ok", body))
                batch = box.take()
                assert batch is not None and _wire.is_batch(batch) and len(batch) == 3
                await b.send(batch)
                replies = await calls
                assert [r.frames for r in replies] == [[b"%d" % i] for i in range(n)] + [[b"big" * 200]]
                assert all((r.status, r.message, r.local) == (200, "ok", False) for r in replies)

                two = asyncio.ensure_future(asyncio.gather(ac.call("echo", b"p", timeout=0.3),
                                                           ac.call("echo", b"q", timeout=0.3)))
                sent = entries(await b.recv())  # the WELCOME in the batch was taken: a BATCH
                assert len(sent) == 2
                for rid, _, body in map(request_of, sent):
                    box.add(reply(rid, 200, b"", body))
                good = box.take()
                assert good is not None
                bad = [good[0], good[1] + b"?"]  # bytes left over
                await b.send(bad)
                await b.send([b"", b"S0C2\x09\x00\x00"])  # no entry
                t0 = time.monotonic()
                for r in await two:
                    assert (r.status, r.local) == (504, True)
                assert time.monotonic() - t0 < 1.5
        finally:
            b.close()

    run(main())


def test_requests_held_for_a_batch_survive_a_fail_over() -> None:
    """Requests held for this turn's batch never left the process: when the connection is lost
    before the flush they go to the next connection, each exactly once (no 502)."""
    async def main() -> None:
        b = StandIn()
        try:
            async with scale0.aio.Client(b.endpoint, timeout=3.0) as ac:
                warm = asyncio.ensure_future(ac.call("echo", b"warm"))
                assert await b.recv() == [b"", HELLO_FLAGS]
                await b.send([b"", welcome(_wire.HELLO_BATCHES)])
                rid, _, body = request_of(await b.recv())
                await b.send(reply(rid, 200, b"", body))
                assert (await warm).frames == [b"warm"]

                calls = [asyncio.ensure_future(ac.call("echo", b"%d" % i)) for i in range(5)]
                await asyncio.sleep(0)  # the calls ran; their flush is due after this step
                assert len(ac._boxed) == 5
                ac._fail_over("test")  # as if the connection closed now
                assert await b.recv() == [b"", HELLO_FLAGS]  # the new connection
                got = [request_of(await b.recv()) for _ in range(5)]  # singly until its WELCOME
                assert sorted(g[2][0] for g in got) == [b"%d" % i for i in range(5)]
                for rid, _, body in got:
                    await b.send(reply(rid, 200, b"", body))
                assert [(await c).frames for c in calls] == [[b"%d" % i] for i in range(5)]
                assert await b.silent(0.2)
            sent = [request_of(m)[0] for m in b.seen if m[1][4:5] == b"\x01"]
            assert len(sent) == len(set(sent)) == 6
        finally:
            b.close()

    run(main())


class CountingProxy:
    """A ROUTER for the client and a DEALER to the broker, forwarding both ways in a thread and
    counting messages and BATCHes."""

    def __init__(self, broker: str) -> None:
        self.ctx = zmq.Context()
        self.front = self.ctx.socket(zmq.ROUTER)
        self.front.setsockopt(zmq.LINGER, 0)
        self.front.bind("tcp://127.0.0.1:*")
        self.endpoint = self.front.getsockopt_string(zmq.LAST_ENDPOINT)
        self.back = self.ctx.socket(zmq.DEALER)
        self.back.setsockopt(zmq.LINGER, 0)
        self.back.connect(broker)
        self.counts: Dict[str, int] = {"up": 0, "up_batches": 0, "up_entries": 0,
                                       "down": 0, "down_batches": 0, "down_entries": 0}
        self._stop = False
        self._peer = b""
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _count(self, way: str, msg: List[bytes]) -> None:
        self.counts[way] += 1
        if _wire.is_batch(msg):
            self.counts[way + "_batches"] += 1
        self.counts[way + "_entries"] += len(entries(msg))

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.front, zmq.POLLIN)
        poller.register(self.back, zmq.POLLIN)
        while not self._stop:
            for sock, _ in poller.poll(50):
                frames = sock.recv_multipart()
                if sock is self.front:
                    self._peer = frames[0]
                    self._count("up", frames[1:])
                    self.back.send_multipart(frames[1:])
                else:
                    self._count("down", frames)
                    self.front.send_multipart([self._peer, *frames])

    def close(self) -> None:
        self._stop = True
        self._thread.join(5)
        self.front.close(0)
        self.back.close(0)
        self.ctx.term()


def test_thousand_concurrent_requests_travel_in_batches(echo: Broker) -> None:
    """Against the broker (through a counting proxy): every request gets its own body back, the
    requests leave in a few BATCHes and the broker answers in BATCHes too."""
    proxy = CountingProxy(echo.frontend)

    async def main() -> list:
        async with scale0.aio.Client(proxy.endpoint, timeout=10.0) as ac:
            assert await ac.request("echo", b"warm") == b"warm"  # the WELCOME is in
            return await asyncio.gather(*(ac.request("echo", b"%d" % i) for i in range(1000)))

    try:
        bodies = run(main())
    finally:
        proxy.close()
    assert bodies == [b"%d" % i for i in range(1000)]
    c = proxy.counts
    assert c["up_entries"] >= 1002  # HELLO, the warm-up, 1000 requests (and PINGs if any)
    assert c["up_batches"] >= 4 and c["up"] <= 20  # 1000 requests in 4 BATCHes (256 entries each at most)
    assert c["down_batches"] >= 1 and c["down"] < c["down_entries"]
