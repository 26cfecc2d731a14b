# SPDX-License-Identifier: Apache-2.0
"""The blocking client (docs/protocol.md, "Client state table"), as the C++ scale0::client.

One DEALER to one broker at a time (a list ``tcp://a:5555,tcp://b:5555`` is taken in random order
and the next broker is used when one is lost). Every request sent ends in exactly one Reply: the
broker's, or one the library makes (504 no reply in time, 502 broker lost, 503 send queue full).
Not thread-safe: one Client per thread.
"""

from __future__ import annotations

import heapq
import itertools
import random
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import zmq
from zmq.utils.monitor import recv_monitor_message

from . import _wire
from .curve import Curve
from ._types import MSG_BROKER_LOST, MSG_INVALID_SERVICE, MSG_NO_REPLY, MSG_SEND_QUEUE_FULL, Error, Reply

# request(): the local deadline is the request's timeout plus this (the broker answers 504 first).
REQUEST_GRACE = 0.25
# send() with a timeout: its local deadline is the timeout plus this.
SEND_GRACE = 1.0
# A request handed back (301) more often than this ends in a local 503.
MAX_BOUNCES = 3
_HWM = 100_000


def split_endpoints(endpoints: str) -> List[str]:
    """A broker endpoint or a comma-separated list of them; Error(400) on an empty item."""
    items = [e.strip() for e in endpoints.split(",")]
    if not items or any(not e for e in items):
        raise Error(400, "invalid broker endpoint list: %r" % endpoints)
    return items


def check_version(version: int) -> int:
    """The wire framing: 2 (S0/2, compact) or 1 (S0/1, for brokers from before S0/2)."""
    if version not in (1, 2):
        raise Error(400, "protocol_version is 1 or 2")
    return version


def encode_service(service: object) -> bytes:
    """A service name as bytes; Error(400) when it cannot be sent (empty or over 255 bytes)."""
    name = _wire.as_bytes(service)  # type: ignore[arg-type]
    if not 1 <= len(name) <= 255:
        raise Error(400, MSG_INVALID_SERVICE)
    return name


@dataclass
class _Pending:
    """A request without its outcome yet."""

    service: bytes
    frames: List[bytes]
    timeout: Optional[float]  # seconds at the broker; None: the broker's default
    grace: float  # local deadline = sent + timeout + grace
    deadline: Optional[float]  # the request's own deadline (monotonic), None without timeout
    local_deadline: Optional[float]
    retries: int
    resent_idempotent: bool = False
    held: bool = False  # handed back by a draining broker (301): waits for the move
    bounces: int = 0


class Client:
    """A blocking Scale0 client.

    ``timeout`` (seconds) is request()'s default deadline; ``retries`` > 0 turns on Lazy Pirate
    resends on timeout; ``idempotent`` lets a request held by a lost broker be sent once more
    through the next broker of the list instead of ending in 502. While requests are outstanding
    the client PINGs a silent broker every ``heartbeat_interval`` seconds and takes it for lost
    after ``liveness`` intervals of silence. ``protocol_version=1`` speaks S0/1 to a broker from
    before S0/2 (no family HELLO). ``curve`` (a scale0.curve.Curve) encrypts the connection with
    CURVE (docs/security.md). ``batches`` (S0/2): the client says in HELLO that it takes BATCH
    messages (docs/protocol.md, "Batches"); send() still sends each request at once, send_many()
    sends several as one.
    """

    def __init__(self, endpoint: str = "tcp://127.0.0.1:5555", timeout: float = 2.5, *, retries: int = 0,
                 idempotent: bool = False, heartbeat_interval: float = 1.0, liveness: int = 3,
                 protocol_version: int = 2, curve: Optional[Curve] = None, batches: bool = True,
                 context: Optional["zmq.Context[Any]"] = None) -> None:
        self._endpoints = split_endpoints(endpoint)
        self.curve = curve
        self.protocol_version = check_version(protocol_version)
        random.shuffle(self._endpoints)
        self._next_endpoint = 0
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.idempotent = bool(idempotent)
        self.heartbeat_interval = float(heartbeat_interval)
        self.liveness = int(liveness)
        self._ctx = context or zmq.Context.instance()
        self._ids = itertools.count(random.getrandbits(32) + 1)
        self._pending: Dict[int, _Pending] = {}
        self._outcomes: "OrderedDict[int, Reply]" = OrderedDict()
        self._deadlines: List[Tuple[float, int]] = []  # (local deadline, id), stale entries skipped
        self._idempotent_services: "set[bytes]" = set()  # from the family's WELCOME
        self._move_to: Optional[str] = None  # a draining broker's redirect, once nothing is out
        self._socket: Optional["zmq.Socket[Any]"] = None
        self._monitor: Optional["zmq.Socket[Any]"] = None
        self._poller = zmq.Poller()
        self._handshaken = False
        self._last_heard = time.monotonic()
        self._last_ping = 0.0
        self._last_tick = time.monotonic()
        self._pongs = 0
        # Batches: asked for in HELLO (S0/2); sent once the broker's WELCOME says it takes them.
        self._ask_batches = bool(batches) and self.protocol_version == 2
        self._hello_flags = 0  # the flags of the HELLO not yet answered
        self._batching = False
        self._box = _wire.Batcher()  # send_many()'s requests, until its _flush()
        self._boxed: List[int] = []  # their ids
        self._connect()

    # -- public API ----------------------------------------------------------------------------

    @property
    def endpoints(self) -> List[str]:
        """The brokers this client may use: those given, then those a family's WELCOME or a
        redirect added."""
        return list(self._endpoints)

    @property
    def endpoint(self) -> str:
        """The broker in use."""
        return self._endpoints[(self._next_endpoint - 1) % len(self._endpoints)]

    def request(self, service: str, body: _wire.Body = b"", timeout: Optional[float] = None) -> bytes:
        """Sends one request and waits for it: the body of a 200 reply, else raises Error."""
        return self.call(service, body, timeout).raise_for_status()

    def call(self, service: str, body: _wire.Body = b"", timeout: Optional[float] = None) -> Reply:
        """Sends one request and returns its Reply, whatever its status."""
        t = self.timeout if timeout is None else float(timeout)
        rid = self._send(service, body, t, REQUEST_GRACE)
        self._wait_until(lambda: rid in self._outcomes, None)
        return self._outcomes.pop(rid)

    def send(self, service: str, body: _wire.Body = b"", timeout: Optional[float] = None) -> int:
        """Pipelined: sends a request and returns its id at once; its Reply comes from receive().

        ``timeout`` is the deadline at the broker (None: the broker's default); a request with a
        timeout that has no answer a second after it gets a 504 made by the library.
        """
        return self._send(service, body, timeout, SEND_GRACE)

    def send_many(self, service: str, bodies: Iterable[_wire.Body], timeout: Optional[float] = None) -> List[int]:
        """Pipelined, as send() for each body in order: their ids. Once the broker's WELCOME has
        said it takes batches they leave as one BATCH (more when they do not fit one), else as
        one message each."""
        encode_service(service)  # a bad name sends nothing
        self._read_all()  # a WELCOME already here says whether the broker takes batches
        try:
            return [self._send(service, body, timeout, SEND_GRACE, hold=True) for body in bodies]
        finally:
            self._flush()

    def receive(self, timeout: Optional[float] = None) -> Optional[Reply]:
        """The next Reply of a pipelined request (any order), or None when ``timeout`` seconds
        pass (None: wait while requests are outstanding)."""
        until = None if timeout is None else time.monotonic() + timeout
        self._wait_until(lambda: bool(self._outcomes) or not self._pending, until)
        if self._outcomes:
            return self._outcomes.popitem(last=False)[1]
        return None

    @property
    def outstanding(self) -> int:
        """Requests sent whose Reply has not been received."""
        return len(self._pending) + len(self._outcomes)

    def ping(self, wait: float = 1.0) -> bool:
        """PING/PONG round trip: True when the broker answered within ``wait`` seconds."""
        before = self._pongs
        self._send_frames(_wire.client_ping())
        self._wait_until(lambda: self._pongs > before, time.monotonic() + wait)
        return self._pongs > before

    def close(self) -> None:
        """Closes the connection; outstanding requests are forgotten."""
        self._disconnect()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self._disconnect()
        except Exception:
            pass

    # -- connection ----------------------------------------------------------------------------

    def _connect(self, endpoint: Optional[str] = None) -> None:
        if endpoint is not None:
            self._next_endpoint = self._endpoints.index(endpoint)
        ep = self._endpoints[self._next_endpoint % len(self._endpoints)]
        self._next_endpoint += 1
        s = self._ctx.socket(zmq.DEALER)
        if self.curve is not None:
            self.curve.apply(s)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.SNDHWM, _HWM)
        s.setsockopt(zmq.RCVHWM, _HWM)
        self._monitor = s.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED)
        s.connect(ep)
        self._socket = s
        self._handshaken = False
        self._poller = zmq.Poller()
        self._poller.register(s, zmq.POLLIN)
        self._poller.register(self._monitor, zmq.POLLIN)
        self._last_heard = time.monotonic()
        self._batching = False
        # The family's endpoints and idempotent services; the flag says this client takes batches.
        self._hello(_wire.HELLO_BATCHES if self._ask_batches else 0)

    def _hello(self, flags: int) -> None:
        self._hello_flags = flags
        self._send_frames(_wire.client_hello(flags))

    def _disconnect(self) -> None:
        if self._socket is not None:
            try:
                self._socket.disable_monitor()
            except zmq.ZMQError:
                pass
            self._socket.close(0)
            self._socket = None
        if self._monitor is not None:
            self._monitor.close(0)
            self._monitor = None

    def _fail_over(self, reason: str, retried: Optional[int] = None) -> None:
        """Closes this connection and opens one to the next broker; each outstanding request is
        sent again when it may be (never reached a broker, idempotent, retries left), else 502."""
        reached = self._handshaken
        self._disconnect()
        self._connect(self._move_to)
        self._move_to = None
        now = time.monotonic()
        for rid in sorted(self._pending):
            p = self._pending[rid]
            if p.held:  # never taken by any broker
                p.held = False
                self._transmit(rid, p, now)
            elif rid == retried:  # a Lazy Pirate retry (counted already), with a whole timeout
                self._transmit(rid, p, now)
            elif p.deadline is not None and p.deadline <= now:
                self._finish(Reply(rid, 504, MSG_NO_REPLY % int((p.timeout or 0) * 1000), [], True))
            elif not reached:
                self._transmit(rid, p, now)
            elif (self.idempotent or p.service in self._idempotent_services) and not p.resent_idempotent:
                p.resent_idempotent = True
                self._transmit(rid, p, now)
            elif p.retries > 0:
                p.retries -= 1
                self._transmit(rid, p, now)
            else:
                self._finish(Reply(rid, 502, "%s: %s" % (MSG_BROKER_LOST, reason), [], True))

    # -- sending -------------------------------------------------------------------------------

    def _send(self, service: str, body: _wire.Body, timeout: Optional[float], grace: float,
              hold: bool = False) -> int:
        name = encode_service(service)
        if self._socket is None:
            self._connect()
        now = time.monotonic()
        if not self._pending:
            self._last_heard = now  # silence is counted from the first request outstanding
        rid = next(self._ids) & 0xFFFFFFFFFFFFFFFF
        t = timeout if timeout is not None and timeout > 0 else None
        p = _Pending(name, _wire.body_frames(body), t, grace, None if t is None else now + t, None, self.retries)
        self._pending[rid] = p
        if self._move_to is not None:  # moving to another broker: sent there
            p.held = True
            p.local_deadline = None if t is None else now + t + grace
            if p.local_deadline is not None:
                heapq.heappush(self._deadlines, (p.local_deadline, rid))
        else:
            self._transmit(rid, p, now, hold)
        return rid

    def _transmit(self, rid: int, p: _Pending, now: float, hold: bool = False) -> None:
        """Sends (or sends again) a request with what is left of its timeout."""
        left = None if p.deadline is None else max(0.001, p.deadline - now)
        p.local_deadline = None if left is None else now + left + p.grace
        if p.local_deadline is not None:
            heapq.heappush(self._deadlines, (p.local_deadline, rid))
        frames = _wire.client_request(rid, p.service, _wire.ms(left), p.frames)
        if hold and self._batching and self._box.batchable(frames):
            if not self._box.fits(frames):
                self._flush()
            self._box.add(frames)  # sent by _flush()
            self._boxed.append(rid)
        elif not self._send_frames(frames):
            self._finish(Reply(rid, 503, MSG_SEND_QUEUE_FULL, [], True))

    def _flush(self) -> None:
        """Sends the requests held: several as one BATCH, one as it is."""
        frames, rids = self._box.take(), self._boxed
        self._boxed = []
        if frames is not None and not self._send_frames(frames):
            for rid in rids:
                self._finish(Reply(rid, 503, MSG_SEND_QUEUE_FULL, [], True))

    def _send_frames(self, frames: List[bytes]) -> bool:
        assert self._socket is not None
        if self.protocol_version == 1:
            v1 = _wire.to_v1(frames)
            if v1 is None:
                return True  # S0/1 has no such command (HELLO)
            frames = v1
        try:
            self._socket.send_multipart(frames, zmq.NOBLOCK)
            return True
        except zmq.Again:
            return False

    def _finish(self, reply: Reply) -> None:
        if self._pending.pop(reply.id, None) is not None:
            self._outcomes[reply.id] = reply

    # -- the loop --------------------------------------------------------------------------------

    def _wait_until(self, done: Callable[[], bool], until: Optional[float]) -> None:
        """Runs the client (reads replies, heartbeats, deadlines) until done() or ``until``."""
        while True:
            self._read_all()
            now = time.monotonic()
            self._tick(now)
            if done():
                return
            if until is not None and now >= until:
                return
            wake = now + self.heartbeat_interval / 4
            if self._deadlines:
                wake = min(wake, self._deadlines[0][0])
            if until is not None:
                wake = min(wake, until)
            self._poller.poll(max(0, int((wake - now) * 1000)) + 1)

    def _read_all(self) -> None:
        if self._monitor is not None:
            while True:
                try:
                    event = recv_monitor_message(self._monitor, zmq.NOBLOCK)
                except zmq.Again:
                    break
                if event["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                    self._handshaken = True
                elif event["event"] == zmq.EVENT_DISCONNECTED and self._handshaken:
                    # The broker died or restarted: its answers would go to a routing id that is gone.
                    self._fail_over("connection closed")
                    return
        s = self._socket
        while s is not None and s is self._socket:  # a message may move the client elsewhere
            try:
                frames = s.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            if not _wire.is_batch(frames):
                self._on_message(frames)
                continue
            for entry in _wire.split_batch(frames) or ():  # a malformed batch is ignored
                if s is not self._socket:
                    break  # the client moved: the rest came from the broker it left
                self._on_message(entry)

    def _on_message(self, frames: List[bytes]) -> None:
        msg = _wire.decode_client(frames)
        if msg is None:
            return
        self._last_heard = time.monotonic()
        if msg == "pong":
            self._pongs += 1
            return
        if isinstance(msg, _wire.ClientWelcome):
            self._on_welcome(msg)
            return
        assert isinstance(msg, _wire.ClientReply)
        if msg.request_id == 0 and msg.status == 400 and self._hello_flags:
            self._hello(0)  # a broker from before batches refused the flags byte
            return
        p = self._pending.get(msg.request_id)
        if p is None or p.held:
            return  # late or duplicate: its outcome is given
        if msg.status == _wire.STATUS_REDIRECT and msg.message:
            self._redirect(msg.request_id, p, msg.message.decode("utf-8", "replace"))
        else:
            self._finish(Reply(msg.request_id, msg.status, msg.message.decode("utf-8", "replace"), msg.body))
        self._maybe_move()

    def _on_welcome(self, w: _wire.ClientWelcome) -> None:
        """The family: its frontends join the list (one seed endpoint is enough), its idempotent
        services may be sent twice."""
        for ep in w.frontends:
            text = ep.decode("utf-8", "replace")
            if text and text not in self._endpoints:
                self._endpoints.append(text)
        self._idempotent_services = set(w.idempotent_services)
        self._hello_flags = 0
        self._batching = bool(w.flags & _wire.HELLO_BATCHES)

    def _redirect(self, rid: int, p: _Pending, frontend: str) -> None:
        """A draining broker did not take the request (301): hold it, let the old broker answer
        what it holds, then move to ``frontend`` and send everything held there."""
        p.bounces += 1
        if p.bounces > MAX_BOUNCES:
            self._finish(Reply(rid, 503, "redirected %d times" % MAX_BOUNCES, [], True))
            return
        if frontend not in self._endpoints:
            self._endpoints.append(frontend)
        p.held = True
        self._move_to = frontend

    def _maybe_move(self) -> None:
        if self._move_to is not None and all(p.held for p in self._pending.values()):
            self._fail_over("redirected")

    def _tick(self, now: float) -> None:
        iv = self.heartbeat_interval
        if now - self._last_tick > 2 * iv and self._pending:
            # The caller did not run the client for a while (busy elsewhere): that time counts
            # as one interval of the broker's silence, and a PING goes out now.
            self._last_heard = max(self._last_heard, now - iv)
            self._last_ping = 0.0
        self._last_tick = now
        if not self._pending:
            self._deadlines.clear()
            self._move_to = None
            return
        self._maybe_move()
        silence = now - self._last_heard
        if silence >= self.liveness * iv:
            self._fail_over("no answer for %d ms" % int(silence * 1000))
            return
        if silence >= iv and now - self._last_ping >= iv:
            self._last_ping = now
            self._send_frames(_wire.client_ping())
        while self._deadlines and self._deadlines[0][0] <= now:
            at, rid = heapq.heappop(self._deadlines)
            p = self._pending.get(rid)
            if p is None or p.local_deadline != at:
                continue  # answered, or sent again since
            if p.held:
                self._finish(Reply(rid, 504, MSG_NO_REPLY % int((p.timeout or 0) * 1000), [], True))
                continue
            # A broker never reached, or silent for two intervals (a PING unanswered for one), is
            # taken for lost: the retry goes through the next broker on a fresh connection.
            lost = not self._handshaken or silence >= 2 * iv
            if p.retries > 0 and not lost:
                p.retries -= 1  # Lazy Pirate: again, on the same connection, with a whole timeout
                p.deadline = now + (p.timeout or 0)
                self._transmit(rid, p, now)
            elif p.retries > 0:
                p.retries -= 1
                p.deadline = now + (p.timeout or 0)
                self._fail_over("no answer within the timeout", retried=rid)
                return
            else:
                self._finish(Reply(rid, 504, MSG_NO_REPLY % int((p.timeout or 0) * 1000), [], True))
                if silence >= iv or not self._handshaken:
                    self._fail_over("no answer for %d ms" % int(silence * 1000))
                    return

