# SPDX-License-Identifier: Apache-2.0
"""The Python worker against the real broker: C++ client -> Python worker, statuses from the
handler, concurrency credit, async handlers, a worker killed mid-request (502, or re-dispatch when
idempotent), a broker restart, reconnect backoff and graceful stop."""

from __future__ import annotations

import asyncio
import json
import os
import select
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator, List

import pytest

import scale0
from conftest import BIN, HERE, Broker, cpp_worker, wait_service


@contextmanager
def running(worker: scale0.Worker, broker: Broker, service: str) -> Iterator[scale0.Worker]:
    """Runs the worker on a thread until the block ends (then stops it, bounded)."""
    t = threading.Thread(target=worker.run, daemon=True)
    t.start()
    try:
        wait_service(broker, service)
        yield worker
    finally:
        worker.stop()
        t.join(timeout=10)
        assert not t.is_alive(), "the worker did not stop"


def wait_for(cond: Any, timeout: float = 5.0) -> bool:
    """Polls cond() until it holds or the time is up (the broker may answer mmi.service before
    the worker has read its WELCOME)."""
    end = time.monotonic() + timeout
    while not cond() and time.monotonic() < end:
        time.sleep(0.02)
    return bool(cond())


def upper(job: scale0.Job) -> bytes:
    if job.body == b"404":
        raise scale0.Error(404, "no such thing")
    if job.body == b"boom":
        raise RuntimeError("it broke")
    return job.body.upper()


def test_cpp_client_to_python_worker(broker: Broker) -> None:
    w = scale0.Worker(broker.backend, services=["upper"], handler=upper, concurrency=2, name="py-1")
    with running(w, broker, "upper"):
        out = subprocess.run([BIN, "request", "--broker", broker.frontend, "upper", "hello"],
                             capture_output=True, timeout=10)
        assert (out.returncode, out.stdout) == (0, b"HELLO")
        status = subprocess.run([BIN, "status", "--broker", broker.frontend, "--json"],
                                capture_output=True, timeout=10)
        assert b"py-1" in status.stdout


def test_handler_statuses(broker: Broker) -> None:
    w = scale0.Worker(broker.backend, ["upper"], upper)
    with running(w, broker, "upper"), scale0.Client(broker.frontend) as c:
        assert c.request("upper", [b"a", b"b"]) == b"AB"
        with pytest.raises(scale0.Error) as e:
            c.request("upper", b"404")
        assert (e.value.status, e.value.message) == (404, "no such thing")
        with pytest.raises(scale0.Error) as e:
            c.request("upper", b"boom")
        assert (e.value.status, e.value.message) == (500, "it broke")


def test_inline_handler(broker: Broker) -> None:
    """inline=True: the handler runs on the I/O thread, statuses as usual."""
    threads: List[str] = []

    def handle(job: scale0.Job) -> bytes:
        threads.append(threading.current_thread().name)
        return upper(job)

    w = scale0.Worker(broker.backend, ["upper"], handle, concurrency=4, inline=True)
    t = threading.Thread(target=w.run, name="io-thread", daemon=True)
    t.start()
    try:
        wait_service(broker, "upper")
        with scale0.Client(broker.frontend) as c:
            assert [c.request("upper", b"x%d" % i) for i in range(20)] == [b"X%d" % i for i in range(20)]
            with pytest.raises(scale0.Error) as e:
                c.request("upper", b"404")
            assert e.value.status == 404
        assert set(threads) == {"io-thread"}
    finally:
        w.stop()
        t.join(timeout=10)


def test_job_fields(broker: Broker) -> None:
    seen: List[Any] = []

    def handle(job: scale0.Job) -> bytes:
        seen.append((job.service, job.frames, round(job.time_left)))
        return b""

    w = scale0.Worker(broker.backend, ["a", "b"], handle)
    with running(w, broker, "b"), scale0.Client(broker.frontend) as c:
        c.request("b", [b"x", b"y"], timeout=5.0)
    assert seen == [("b", [b"x", b"y"], 5)]


def test_concurrency_credit(broker: Broker) -> None:
    lock = threading.Lock()
    now = [0]
    peak = [0]

    def handle(job: scale0.Job) -> bytes:
        with lock:
            now[0] += 1
            peak[0] = max(peak[0], now[0])
        time.sleep(0.2)
        with lock:
            now[0] -= 1
        return job.body

    w = scale0.Worker(broker.backend, ["slow"], handle, concurrency=4)
    with running(w, broker, "slow"), scale0.Client(broker.frontend) as c:
        t0 = time.monotonic()
        for i in range(12):
            c.send("slow", b"%d" % i, timeout=5.0)
        replies = [c.receive(timeout=5.0) for _ in range(12)]
        took = time.monotonic() - t0
    assert all(r is not None and r.status == 200 for r in replies)
    assert peak[0] == 4
    assert 0.55 < took < 2.0  # three rounds of four


def test_async_handler(broker: Broker) -> None:
    async def handle(job: scale0.Job) -> bytes:
        await asyncio.sleep(0.2)
        return job.body[::-1]

    w = scale0.Worker(broker.backend, ["rev"], handle, concurrency=50)
    with running(w, broker, "rev"), scale0.Client(broker.frontend) as c:
        t0 = time.monotonic()
        for i in range(50):
            c.send("rev", b"ab%d" % i, timeout=5.0)
        replies = [c.receive(timeout=5.0) for _ in range(50)]
        assert time.monotonic() - t0 < 1.5  # all on one event loop at once
    assert sorted(r.body for r in replies if r is not None) == sorted((b"ab%d" % i)[::-1] for i in range(50))


@pytest.mark.parametrize("idempotent", [False, True])
def test_worker_killed_mid_request(broker: Broker, procs: list, idempotent: bool) -> None:
    """The worker dies holding the request: 502, or, idempotent, the request runs on another."""
    # The test reads the sleepy worker's stdout itself, so it is started without the drain thread.
    args = [sys.executable, os.path.join(HERE, "sleepy_worker.py"), broker.backend, "job", "30"]
    p = subprocess.Popen(args + (["idempotent"] if idempotent else []), stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_service(broker, "job")
        with scale0.Client(broker.frontend) as c:
            rid = c.send("job", b"work", timeout=8.0)
            r, _, _ = select.select([p.stdout], [], [], 5.0)
            assert r and p.stdout is not None and p.stdout.readline() == b"held\n"
            procs.append(cpp_worker(broker, "job", "--echo"))  # the other worker, idle
            p.kill()
            reply = c.receive(timeout=8.0)
        assert reply is not None and reply.id == rid
        if idempotent:
            assert (reply.status, reply.body) == (200, b"work")
        else:
            assert reply.status == 502 and not reply.local
    finally:
        p.kill()
        p.wait(timeout=5)


def test_broker_restart_re_registers(broker: Broker) -> None:
    events: List[str] = []
    w = scale0.Worker(broker.backend, ["upper"], upper, on_event=events.append)
    with running(w, broker, "upper"):
        with scale0.Client(broker.frontend) as c:
            assert c.request("upper", b"a") == b"A"
        broker.restart()
        wait_service(broker, "upper", timeout=10.0)
        with scale0.Client(broker.frontend) as c:
            assert c.request("upper", b"b") == b"B"
        assert wait_for(lambda: w.registrations == 2), w.registrations


def test_reconnect_backoff(broker: Broker) -> None:
    """A broker gone for a while: the worker waits 1 s, then 2 s ... and registers once it is back."""
    events: List[str] = []
    w = scale0.Worker(broker.backend, ["upper"], upper, on_event=events.append)
    with running(w, broker, "upper"):
        broker.kill()
        time.sleep(2.0)
        broker.restart()
        wait_service(broker, "upper", timeout=10.0)
        assert any("reconnecting in 1 s" in e for e in events), events
        assert wait_for(lambda: w.registrations == 2), w.registrations


def test_graceful_stop_drains(broker: Broker) -> None:
    """stop() while requests are held: STOPPING (no new work), the held ones answered, then
    DISCONNECT; run() returns and the service is gone."""
    def handle(job: scale0.Job) -> bytes:
        time.sleep(0.5)
        return job.body

    events: List[str] = []
    w = scale0.Worker(broker.backend, ["drain"], handle, concurrency=2, on_event=events.append)
    t = threading.Thread(target=w.run, daemon=True)
    t.start()
    try:
        wait_service(broker, "drain")
        with scale0.Client(broker.frontend) as c:
            ids = {c.send("drain", b"1", timeout=5.0), c.send("drain", b"2", timeout=5.0)}
            time.sleep(0.2)
            w.stop()
            w.stop()  # idempotent
            late = c.send("drain", b"3", timeout=3.0)  # after STOPPING: never reaches this worker
            replies = {}
            for _ in range(3):
                r = c.receive(timeout=5.0)
                assert r is not None
                replies[r.id] = r
        assert all(replies[i].status == 200 for i in ids)
        assert replies[late].status == 503
        t.join(timeout=5)
        assert not t.is_alive() and w.state == scale0.worker.State.STOPPED
        assert events[-2:] == ["stopping: STOPPING, then drain", "stopped"]
        wait_service(broker, "drain", present=False, timeout=3.0)
    finally:
        w.stop()
        t.join(timeout=10)


@pytest.mark.parametrize("client_version,worker_version", [(1, 1), (1, 2), (2, 1)])
def test_s01_framing(broker: Broker, client_version: int, worker_version: int) -> None:
    """protocol_version=1 (S0/1) for brokers from before S0/2; the framings mix at the broker."""
    w = scale0.Worker(broker.backend, ["upper"], upper, protocol_version=worker_version)
    with running(w, broker, "upper"), scale0.Client(broker.frontend, protocol_version=client_version) as c:
        assert c.request("upper", [b"a", b"b"]) == b"AB"
        with pytest.raises(scale0.Error) as e:
            c.request("upper", b"404")
        assert (e.value.status, e.value.message) == (404, "no such thing")
        assert c.ping(2.0)
        workers = json.loads(c.request("scale0.status"))["workers"]
        assert [x["protocol"] for x in workers] == ["S0W%d" % worker_version]


def test_s01_client_to_cpp_s01_worker(broker: Broker, procs: list) -> None:
    procs.append(cpp_worker(broker, "echo", "--echo", "--protocol-version", "1"))
    with scale0.Client(broker.frontend, protocol_version=1) as c:
        assert c.request("echo", b"old") == b"old"


def test_batches_replies_of_a_turn_leave_together(broker: Broker) -> None:
    """An inline worker under pipelined load: its READY asks for batches, the broker sends it
    requests in batches and it answers each turn's replies in one; every request gets its own reply
    (docs/protocol.md, "Batches"). With batches=False the same load works one message at a time."""
    for batches in (True, False):
        w = scale0.Worker(broker.backend, ["upper"], upper, concurrency=64, inline=True, batches=batches)
        with running(w, broker, "upper"):
            assert w._ask_batches == batches and wait_for(lambda: w._batching == batches)
            with scale0.Client(broker.frontend) as c:
                ids = {c.send("upper", b"x%d" % i): i for i in range(500)}
                got = {}
                while len(got) < len(ids):
                    r = c.receive(timeout=5.0)
                    assert r is not None, "a reply is missing"
                    assert r.status == 200
                    got[r.id] = r.frames
                assert all(got[i] == [b"X%d" % n] for i, n in ids.items())
        wait_service(broker, "upper", present=False)
