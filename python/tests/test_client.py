# SPDX-License-Identifier: Apache-2.0
"""The blocking client against the real broker and the C++ echo worker: bodies, statuses as
scale0.Error, deadlines (the broker's and the library's own), pipelining, Lazy Pirate retries and a
lost broker."""

from __future__ import annotations

import signal
import threading
import time

import pytest

import scale0
from conftest import Broker, cpp_worker


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
