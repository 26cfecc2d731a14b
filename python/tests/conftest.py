# SPDX-License-Identifier: Apache-2.0
"""Fixtures: the real `scale0` broker (and gateway, C++ workers) on random loopback ports.

The binary is $SCALE0_BIN (CTest passes the one it built), else this checkout's dev build.
Every process started here is killed when its test ends.
"""

from __future__ import annotations

import os
import re
import select
import struct
import subprocess
import sys
import tempfile
import threading
import time
from typing import Iterator, List, Optional, Tuple

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # the package from the tree, without installing it

BIN = os.environ.get("SCALE0_BIN") or os.path.join(HERE, "..", "..", "build", "dev", "apps", "scale0", "scale0")
READY_RE = re.compile(rb"^ready frontend=(\S+) backend=(\S+) heartbeat=(\S+)(?: peer=(\S+))?")


class Proc:
    """A child process whose stdout's first line is its ready line; stderr goes to a temp file."""

    def __init__(self, args: List[str], ready: Optional[re.Pattern] = None, timeout: float = 15.0,
                 env: Optional[dict] = None) -> None:
        self.args = args
        self.err = tempfile.NamedTemporaryFile(prefix="scale0-py-", suffix=".stderr", delete=False)
        self.p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.err,
                                  start_new_session=True, env=env)
        self.match: Optional[re.Match] = None
        if ready is not None:
            line = self._first_line(timeout)
            self.match = ready.match(line)
            if self.match is None:
                self.kill()
                raise RuntimeError("%s: no ready line (%r); stderr: %s" % (args[:2], line, self.stderr()))
        threading.Thread(target=self._drain, daemon=True).start()

    def _first_line(self, timeout: float) -> bytes:
        assert self.p.stdout is not None
        fd = self.p.stdout.fileno()
        buf = b""
        end = time.monotonic() + timeout
        while b"\n" not in buf and time.monotonic() < end:
            r, _, _ = select.select([fd], [], [], max(0.0, end - time.monotonic()))
            if not r:
                break
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            buf += chunk
        return buf.split(b"\n", 1)[0]

    def _drain(self) -> None:
        try:
            assert self.p.stdout is not None
            while self.p.stdout.read(65536):
                pass
        except (OSError, ValueError):
            pass

    def alive(self) -> bool:
        return self.p.poll() is None

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
        try:
            self.p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass

    def terminate(self, timeout: float = 10.0) -> Optional[int]:
        if self.p.poll() is None:
            self.p.terminate()
        try:
            return self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def stderr(self) -> str:
        with open(self.err.name, "rb") as f:
            return f.read()[-8000:].decode("utf-8", "replace")


class Broker:
    """A `scale0 broker` on random loopback ports; restart() keeps its endpoints."""

    def __init__(self, heartbeat_interval: int = 200, extra: Optional[List[str]] = None, family: bool = False,
                 peer: Optional[str] = None) -> None:
        self.heartbeat_interval = heartbeat_interval
        self.extra = extra or []
        self.family = family or peer is not None
        self.join = peer
        self.frontend = self.backend = self.heartbeat = self.peer = ""
        self.proc: Optional[Proc] = None
        self._start(["tcp://127.0.0.1:*"] * 3)

    def _start(self, eps: List[str]) -> None:
        family = ["--peer-listen", "tcp://127.0.0.1:*"] if self.family else ["--peer-listen", ""]
        if self.join:
            family += ["--peer", self.join]
        args = [BIN, "broker", "--frontend", eps[0], "--backend", eps[1], "--heartbeat", eps[2], *family,
                "--metrics-listen", "", "--heartbeat-interval", str(self.heartbeat_interval), *self.extra]
        self.proc = Proc(args, READY_RE)
        assert self.proc.match is not None
        self.frontend, self.backend, self.heartbeat = (g.decode() for g in self.proc.match.groups()[:3])
        self.peer = (self.proc.match.group(4) or b"").decode()

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()

    def signal(self, sig: int) -> None:
        """Sends a signal (SIGSTOP, SIGCONT) to the running broker."""
        assert self.proc is not None
        self.proc.p.send_signal(sig)

    def restart(self) -> None:
        """Kills the broker and starts a new one on the same endpoints (a new broker-id)."""
        self.kill()
        eps = [self.frontend, self.backend, self.heartbeat]
        end = time.monotonic() + 10
        while True:
            try:
                self._start(eps)
                return
            except RuntimeError:
                if time.monotonic() > end:
                    raise
                time.sleep(0.2)


def cpp_worker(broker: Broker, service: str, *extra: str) -> Proc:
    """A C++ `scale0 worker` (echo unless told otherwise), registered once it answers mmi.service."""
    args = [BIN, "worker", "--broker", broker.backend, "--service", service, *(extra or ("--echo",))]
    p = Proc(args)
    wait_service(broker, service)
    return p


def wait_service(broker: Broker, service: str, present: bool = True, timeout: float = 10.0,
                 curve: object = None) -> None:
    """Waits (bounded) until mmi.service says the service has (or has no) worker (asked with
    the CURVE settings ``curve`` when the broker has CURVE on)."""
    import scale0
    want = b"200" if present else b"404"
    end = time.monotonic() + timeout
    with scale0.Client(broker.frontend, timeout=1.0, curve=curve) as c:  # type: ignore[arg-type]
        while time.monotonic() < end:
            if c.request("mmi.service", service) == want:
                return
            time.sleep(0.05)
    raise AssertionError("service %s never became %s" % (service, "present" if present else "absent"))


@pytest.fixture
def broker() -> Iterator[Broker]:
    if not os.access(BIN, os.X_OK):
        pytest.skip("no scale0 binary at %s (set SCALE0_BIN)" % BIN)
    b = Broker()
    try:
        yield b
    finally:
        b.kill()


@pytest.fixture
def procs() -> Iterator[List[Proc]]:
    """Processes a test starts; all killed after it."""
    started: List[Proc] = []
    try:
        yield started
    finally:
        for p in started:
            p.kill()


# -- S0/2 as a stand-in broker writes and reads it (docs/protocol.md), for the batch tests ----------

HELLO_FLAGS = b"S0C2\x05\x01"
HELLO_PLAIN = b"S0C2\x05"


def welcome_packed(flags: Optional[int]) -> bytes:
    """A client WELCOME without a family; ``flags``: the trailing flags byte (None: none)."""
    packed = b"S0C2\x06" + struct.pack(">QHH", 77, 0, 0)
    return packed if flags is None else packed + bytes([flags])


def reply(rid: int, status: int, message: bytes, body: List[bytes]) -> List[bytes]:
    return [b"", b"S0C2\x02" + struct.pack(">QHH", rid, status, len(message)) + message, *body]


def request_of(msg: List[bytes]) -> Tuple[int, bytes, List[bytes]]:
    """(request-id, service, body) of a REQUEST from the client."""
    packed = msg[1]
    assert packed[:5] == b"S0C2\x01", packed
    rid, _timeout, n = struct.unpack(">QIB", packed[5:18])
    assert len(packed) == 18 + n
    return rid, packed[18:], msg[2:]
