# SPDX-License-Identifier: Apache-2.0
"""The blocking client against the real broker and the C++ echo worker: bodies, statuses as
scale0.Error, deadlines (the broker's and the library's own), pipelining, Lazy Pirate retries, a
lost broker, and batches (docs/protocol.md, "Batches") against a raw ROUTER in the broker's place."""

from __future__ import annotations

import signal
import threading
import time
from typing import Iterator, List, Optional

import pytest
import zmq

import scale0
from conftest import HELLO_FLAGS, HELLO_PLAIN, Broker, cpp_worker, reply, request_of, welcome_packed
from scale0 import _wire


@pytest.fixture
def echo(broker: Broker, procs: list) -> Broker:
    procs.append(cpp_worker(broker, "echo", "--echo", "--concurrency", "4"))
    return broker


def test_request_returns_the_body(echo: Broker) -> None:
    with scale0.Client(echo.frontend, timeout=2.5) as c:
        assert c.request("echo", b"hello") == b"hello"
        assert c.request("echo", "text") == b"text"
        assert c.request("echo", [b"a", b"b", b"c"]) == b"abc"
        assert c.request("echo", b"") == b""


def test_call_returns_frames_status_and_message(echo: Broker) -> None:
    with scale0.Client(echo.frontend) as c:
        r = c.call("echo", [b"one", b"two"])
        assert (r.status, r.frames, r.body, r.local) == (200, [b"one", b"two"], b"onetwo", False)


def test_no_worker_is_503(broker: Broker) -> None:
    with scale0.Client(broker.frontend) as c:
        for timeout in (2.0, 1.0):  # 1.0: due with the broker's 1 s no-worker timeout, still 503
            with pytest.raises(scale0.Error) as e:
                c.request("nosuch", b"x", timeout=timeout)
            assert (e.value.status, e.value.message) == (503, "no worker for service")
            assert not e.value.local


def test_invalid_service_is_400(broker: Broker) -> None:
    with scale0.Client(broker.frontend) as c:
        with pytest.raises(scale0.Error) as e:
            c.request("bad\nname", b"x")
        assert (e.value.status, e.value.message) == (400, "invalid service name")
        with pytest.raises(scale0.Error) as e:
            c.request("x" * 256, b"x")
        assert e.value.status == 400


def test_management_services(echo: Broker) -> None:
    with scale0.Client(echo.frontend) as c:
        assert c.request("mmi.service", "echo") == b"200"
        assert c.request("mmi.service", "nosuch") == b"404"
        assert b'"echo"' in c.request("scale0.status")
        with pytest.raises(scale0.Error) as e:
            c.request("scale0.nosuch")
        assert e.value.status == 501


def test_broker_deadline_is_504(broker: Broker, procs: list) -> None:
    procs.append(cpp_worker(broker, "slow", "--echo", "--delay", "1500"))
    with scale0.Client(broker.frontend) as c:
        t0 = time.monotonic()
        with pytest.raises(scale0.Error) as e:
            c.request("slow", b"x", timeout=0.3)
        took = time.monotonic() - t0
        assert e.value.status == 504 and not e.value.local
        assert 0.25 < took < 1.0


def test_pipelined_send_receive(echo: Broker) -> None:
    with scale0.Client(echo.frontend) as c:
        ids = {c.send("echo", b"%d" % i, timeout=5.0): b"%d" % i for i in range(200)}
        assert len(ids) == 200
        seen = {}
        for _ in range(200):
            r = c.receive(timeout=5.0)
            assert r is not None and r.status == 200
            seen[r.id] = r.body
        assert seen == ids
        assert c.receive(timeout=0.05) is None
        assert c.outstanding == 0


def test_ping(echo: Broker) -> None:
    with scale0.Client(echo.frontend) as c:
        assert c.ping(2.0)


def test_local_deadline_when_the_broker_is_stalled(echo: Broker) -> None:
    """A broker that says nothing: request() gives up at timeout + 250 ms with a local 504."""
    with scale0.Client(echo.frontend) as c:
        assert c.request("echo", b"warm") == b"warm"
        echo.signal(signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            with pytest.raises(scale0.Error) as e:
                c.request("echo", b"x", timeout=0.3)
            took = time.monotonic() - t0
            assert e.value.status == 504 and e.value.local
            assert 0.5 <= took < 1.5
            rid = c.send("echo", b"y", timeout=0.2)  # send(): timeout + 1 s
            r = c.receive(timeout=3.0)
            assert r is not None and (r.id, r.status, r.local) == (rid, 504, True)
        finally:
            echo.signal(signal.SIGCONT)


def test_lazy_pirate_retries_through_a_stall() -> None:
    """With retries, a request the broker did not answer in time is sent again; once the broker
    runs again an answer arrives and request() returns it."""
    from conftest import BIN  # a broker with a 1 s heartbeat, so the stall expires no worker
    import os
    if not os.access(BIN, os.X_OK):
        pytest.skip("no scale0 binary")
    b = Broker(heartbeat_interval=1000)
    w = None
    try:
        w = cpp_worker(b, "echo")
        with scale0.Client(b.frontend, timeout=0.3, retries=3) as c:
            assert c.request("echo", b"warm") == b"warm"
            b.signal(signal.SIGSTOP)
            timer = threading.Timer(0.8, b.signal, (signal.SIGCONT,))
            timer.start()
            try:
                assert c.request("echo", b"again") == b"again"
            finally:
                timer.cancel()
                b.signal(signal.SIGCONT)
    finally:
        if w is not None:
            w.kill()
        b.kill()


def test_lost_broker_is_502(broker: Broker, procs: list) -> None:
    procs.append(cpp_worker(broker, "slow", "--echo", "--delay", "3000"))
    with scale0.Client(broker.frontend) as c:
        threading.Timer(0.3, broker.kill).start()
        t0 = time.monotonic()
        with pytest.raises(scale0.Error) as e:
            c.request("slow", b"x", timeout=5.0)
        assert e.value.status == 502 and e.value.local
        assert e.value.message.startswith("broker lost")
        assert time.monotonic() - t0 < 2.0  # the closed connection tells at once


def test_python_client_many_sequential(echo: Broker) -> None:
    with scale0.Client(echo.frontend) as c:
        for i in range(300):
            assert c.request("echo", b"%d" % i) == b"%d" % i


def test_a_busy_caller_is_not_a_lost_broker(broker: Broker, procs: list) -> None:
    """The caller does other work for longer than liveness x interval between send() and
    receive(): that gap counts as one interval of silence, a PING goes out, and the broker's PONG
    keeps the request alive (no 502)."""
    procs.append(cpp_worker(broker, "slow", "--echo", "--delay", "1500"))
    with scale0.Client(broker.frontend, heartbeat_interval=0.2) as c:
        assert c.ping(1.0)  # everything the broker sent so far is read
        rid = c.send("slow", b"x", timeout=5.0)
        time.sleep(1.0)  # five intervals without running the client
        r = c.receive(timeout=5.0)
        assert r is not None and (r.id, r.status, r.local) == (rid, 200, False)


# -- batches ----------------------------------------------------------------------------------------


def welcome(flags: Optional[int]) -> List[bytes]:
    return [b"", welcome_packed(flags)]


class StandIn:
    """A raw ROUTER in the broker's place: the test reads what the client sends (without the
    identity frame) and answers by hand."""

    def __init__(self) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind("tcp://127.0.0.1:*")
        self.endpoint = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self.peer = b""
        self.seen: List[List[bytes]] = []  # every message received, in order

    def recv(self, wait: float = 3.0) -> Optional[List[bytes]]:
        if not self.sock.poll(int(wait * 1000)):
            return None
        frames = self.sock.recv_multipart()
        self.peer = frames[0]
        self.seen.append(frames[1:])
        return frames[1:]

    def take(self) -> List[bytes]:
        msg = self.recv()
        assert msg is not None, "nothing from the client"
        return msg

    def send(self, msg: List[bytes]) -> None:
        self.sock.send_multipart([self.peer, *msg])

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()


@pytest.fixture
def stand_in() -> Iterator[StandIn]:
    b = StandIn()
    try:
        yield b
    finally:
        b.close()


def batch_of(messages: List[List[bytes]]) -> List[bytes]:
    box = _wire.Batcher()
    for m in messages:
        assert box.fits(m)
        box.add(m)
    out = box.take()
    assert out is not None and _wire.is_batch(out)
    return out


def test_takes_batched_replies_and_send_many_sends_one_batch(stand_in: StandIn) -> None:
    b = stand_in
    with scale0.Client(b.endpoint, timeout=3.0) as c:
        assert b.take() == [b"", HELLO_FLAGS]
        ids = [c.send("echo", b"%d" % i, timeout=3.0) for i in range(30)]
        got = [request_of(b.take()) for _ in range(30)]  # one message each
        assert [g[0] for g in got] == ids
        # The WELCOME first, then the replies, with one body large enough to travel apart.
        b.send(batch_of([welcome(_wire.HELLO_BATCHES)] + [reply(rid, 200, b"", body) for rid, _, body in got]
                        + [reply(0, 200, b"", [b"late" * 100])]))
        seen = {}
        for _ in range(30):
            r = c.receive(timeout=3.0)
            assert r is not None and (r.status, r.local) == (200, False)
            seen[r.id] = r.body
        assert seen == {rid: b"%d" % i for i, rid in enumerate(ids)}
        assert c.receive(timeout=0.05) is None and c.outstanding == 0

        one = c.send("echo", b"alone")  # send() sends at once: alone, not a BATCH
        alone = b.take()
        assert not _wire.is_batch(alone) and request_of(alone) == (one, b"echo", [b"alone"])
        b.send(reply(one, 200, b"", [b"alone"]))
        r = c.receive(timeout=3.0)
        assert r is not None and (r.id, r.body) == (one, b"alone")

        many = c.send_many("echo", [b"a", [b"b", b"c" * 300], b"d"], timeout=3.0)
        batch = b.take()
        assert _wire.is_batch(batch) and len(batch) == 3  # the 300-byte frame travels apart
        entries = _wire.split_batch(batch)
        assert entries is not None
        assert [request_of(e) for e in entries] == [(many[0], b"echo", [b"a"]), (many[1], b"echo", [b"b", b"c" * 300]),
                                                   (many[2], b"echo", [b"d"])]
        good = batch_of([reply(rid, 200, b"", e[2:]) for rid, e in zip(many, entries)])
        b.send([good[0], good[1] + b"?", *good[2:]])  # malformed (bytes left over): none of it is used
        b.send(good[:2])  # malformed (its separate frame missing)
        assert c.receive(timeout=0.3) is None and c.outstanding == 3
        b.send(good)
        bodies = {}
        for _ in range(3):
            r = c.receive(timeout=3.0)
            assert r is not None
            bodies[r.id] = r.body
        assert bodies == {many[0]: b"a", many[1]: b"b" + b"c" * 300, many[2]: b"d"}


def test_falls_back_when_an_old_broker_refuses_the_hello_flags(stand_in: StandIn) -> None:
    """A broker from before batches answers HELLO with a flags byte 400 (request-id 0): HELLO
    again without it, and nothing but single messages for that broker, send_many() included."""
    b = stand_in
    with scale0.Client(b.endpoint, timeout=3.0) as c:
        assert b.take() == [b"", HELLO_FLAGS]
        b.send(reply(0, 400, b"HELLO has no fields", []))
        rid = c.send("echo", b"x", timeout=3.0)
        assert c.receive(timeout=0.2) is None  # reads the 400: HELLO again
        assert request_of(b.take()) == (rid, b"echo", [b"x"])
        assert b.take() == [b"", HELLO_PLAIN]
        b.send(welcome(None))
        b.send(reply(rid, 200, b"", [b"x"]))
        r = c.receive(timeout=3.0)
        assert r is not None and (r.id, r.body) == (rid, b"x")
        ids = c.send_many("echo", [b"%d" % i for i in range(20)], timeout=3.0)
        got = [request_of(b.take()) for _ in range(20)]
        assert [(g[0], g[2]) for g in got] == [(rid, [b"%d" % i]) for i, rid in enumerate(ids)]
        assert b.recv(0.2) is None
    assert all(m[1][4] != _wire.BATCH for m in b.seen)


def test_send_many_through_the_broker(echo: Broker) -> None:
    with scale0.Client(echo.frontend) as c:
        assert c.request("echo", b"warm") == b"warm"  # its WELCOME has been read
        assert c._batching
        ids = c.send_many("echo", [b"%d" % i for i in range(600)], timeout=5.0)
        seen = {}
        for _ in range(600):
            r = c.receive(timeout=5.0)
            assert r is not None and r.status == 200
            seen[r.id] = r.body
        assert seen == {rid: b"%d" % i for i, rid in enumerate(ids)}
        with pytest.raises(scale0.Error):
            c.send_many("bad\nname" * 40, [b"x"])  # over 255 bytes: nothing sent
        assert c.outstanding == 0
