# SPDX-License-Identifier: Apache-2.0
"""The worker's CONFIG (docs/protocol.md; docs/family.md, "The configuration network"): the
broker's `[service."NAME"]` tables reach the worker as `worker.policy`, again after a SIGHUP
reload that changes them, and with 426 when the worker knew an older version."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any, Iterator, List, Tuple

import pytest

import scale0
from scale0 import ServicePolicy
from scale0._wire import Config, ServiceConfig, decode_worker, to_v1, worker_config
from conftest import BIN, Broker, wait_service

POLICY = """request-timeout = 20000
[service."pol"]
request-timeout = 7000
max-queue = 50
idempotent = false
max-concurrency = 2
"""


def wait_for(cond: Any, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while not cond() and time.monotonic() < end:
        time.sleep(0.02)
    return bool(cond())


def start(w: scale0.Worker) -> threading.Thread:
    t = threading.Thread(target=w.run, daemon=True)
    t.start()
    return t


def stop(w: scale0.Worker, t: threading.Thread) -> None:
    w.stop()
    t.join(timeout=10)
    assert not t.is_alive(), "the worker did not stop"


@pytest.fixture
def configured(tmp_path: "os.PathLike[str]") -> Iterator[Tuple[Broker, str]]:
    if not os.access(BIN, os.X_OK):
        pytest.skip("no scale0 binary at %s (set SCALE0_BIN)" % BIN)
    path = os.path.join(str(tmp_path), "broker.toml")
    with open(path, "w") as f:
        f.write(POLICY)
    b = Broker(extra=["--config", path])
    try:
        yield b, path
    finally:
        b.kill()


def test_config_codec() -> None:
    assert worker_config(7) == [b"", b"S0W2\x08" + (7).to_bytes(8, "big")]
    assert to_v1(worker_config(7)) is None  # S0/2 only
    entry = b"\x03pol" + (7000).to_bytes(4, "big") + (50).to_bytes(4, "big") + (2).to_bytes(4, "big") + b"\x02"
    packed = b"S0W2\x08" + (426).to_bytes(2, "big") + (3).to_bytes(8, "big") + (1).to_bytes(2, "big") + entry
    assert decode_worker([b"", packed]) == Config(426, 3, [ServiceConfig(b"pol", 7000, 50, 2, 2)])
    for bad in (packed[:-1], packed + b"x", packed[:-1] + b"\x03", packed[:17] + b"\x00" + packed[21:]):
        assert decode_worker([b"", bad]) is None, bad  # short, long, idempotent 3, empty name
    assert decode_worker([b"", packed, b"body"]) is None


def test_policy_and_reload(configured: Tuple[Broker, str]) -> None:
    b, path = configured
    events: List[str] = []
    held, most = [0], [0]
    lock = threading.Lock()

    def slow(job: scale0.Job) -> bytes:
        with lock:
            held[0] += 1
            most[0] = max(most[0], held[0])
        time.sleep(0.2)
        with lock:
            held[0] -= 1
        return job.body

    w = scale0.Worker(b.backend, ["pol", "plain"], slow, concurrency=4, on_event=events.append)
    t = start(w)
    v1 = scale0.Worker(b.backend, ["pol"], slow, protocol_version=1)  # S0/1: never asks
    t1 = start(v1)
    try:
        assert wait_for(lambda: w.policy_version == 1), events
        assert dict(w.policy) == {"pol": ServicePolicy(7.0, 50, 2, False),
                                  "plain": ServicePolicy(20.0, 10000, None, None)}
        assert any(e.startswith("policy version 1; pol: request-timeout 7000 ms, max-queue 50, "
                                "max-concurrency 2, idempotent no") for e in events), events
        with pytest.raises(TypeError):
            w.policy["pol"] = ServicePolicy(1.0, 1, 1, True)  # type: ignore[index]
        # The broker enforces max-concurrency: 2 requests of "pol" at once for this worker,
        # whatever its concurrency (4).
        v1.stop()
        t1.join(timeout=10)
        assert v1.registrations == 1 and v1.policy_version == 0 and not v1.policy
        wait_service(b, "pol")
        with scale0.Client(b.frontend, timeout=5.0) as c:
            ids = [c.send("pol", b"%d" % i, timeout=5.0) for i in range(6)]
            replies = [c.receive(timeout=5.0) for _ in ids]
        assert all(r is not None and r.status == 200 for r in replies), replies
        assert most[0] == 2
        # A reload that changes the tables: version 2, pushed to the worker.
        before = w.policy
        with open(path, "w") as f:
            f.write(POLICY.replace("max-concurrency = 2", "max-concurrency = 3") + '[service."plain"]\nidempotent = true\n')
        b.signal(signal.SIGHUP)
        assert wait_for(lambda: w.policy_version == 2), events
        assert w.policy["pol"].max_concurrency == 3 and w.policy["plain"].idempotent is True
        assert before["pol"].max_concurrency == 2  # a snapshot: not changed under the caller
        assert w.registrations == 1
    finally:
        stop(w, t)
        stop(v1, t1)


def test_stale_version_is_answered_426(configured: Tuple[Broker, str]) -> None:
    """A worker that knew version 1 (from a broker without tables) fails over to a broker at
    version 2: 426 with the current policy."""
    b, path = configured
    with open(path, "a") as f:
        f.write('[service."plain"]\nmax-queue = 7\n')
    b.signal(signal.SIGHUP)  # this broker: version 2
    other = Broker()  # version 1, no tables
    events: List[str] = []
    w = scale0.Worker(other.backend + "," + b.backend, ["plain"], lambda j: j.body, on_event=events.append)
    t = start(w)
    try:
        assert wait_for(lambda: w.policy_version == 1), events
        assert w.policy["plain"].max_queue == 10000
        other.kill()
        assert wait_for(lambda: w.policy_version == 2, timeout=8.0), events
        assert w.policy["plain"] == ServicePolicy(20.0, 7, None, None)
        assert any("policy version 2 (ours was stale: 426)" in e for e in events), events
    finally:
        stop(w, t)
        other.kill()
