# SPDX-License-Identifier: Apache-2.0
"""The asyncio client (zmq.asyncio): any number of requests awaited at once on one connection.

    async with scale0.aio.Client("tcp://127.0.0.1:5555") as ac:
        bodies = await asyncio.gather(*(ac.request("echo", b"%d" % i) for i in range(1000)))

The same outcomes as the blocking client: each request ends in exactly one reply, the broker's or
one the library makes (504 no reply by the deadline + 250 ms, 502 broker lost). A lost broker
(connection closed, or ``liveness`` heartbeat intervals of silence while requests are
outstanding, PINGs sent meanwhile) moves the client to the next broker of its list; outstanding
requests are sent again there when they never reached a broker or the client is ``idempotent``,
else they end in 502. Use a Client from one event loop.

Batches (docs/protocol.md, "Batches"): the client says in HELLO that it takes them; once the
broker's WELCOME says it does too, the requests made in one turn of the event loop leave as one
message (one alone as it is), sent before the loop waits. ``batches=False`` turns this off.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from . import _wire
from ._types import MSG_BROKER_LOST, MSG_NO_REPLY, Error, Reply
from .client import MAX_BOUNCES, REQUEST_GRACE, check_version, encode_service, split_endpoints
from .curve import Curve

__all__ = ["Client", "Error", "Reply"]


@dataclass
class _Pending:
    service: bytes
    frames: List[bytes]
    deadline: Optional[float]
    future: "asyncio.Future[Reply]"
    resent: bool = False
    held: bool = False  # handed back by a draining broker (301): waits for the move
    bounces: int = 0


class Client:
    """An asyncio Scale0 client; ``timeout`` is the default deadline of request() in seconds."""

    def __init__(self, endpoint: str = "tcp://127.0.0.1:5555", timeout: float = 2.5, *,
                 idempotent: bool = False, heartbeat_interval: float = 1.0, liveness: int = 3,
                 protocol_version: int = 2, curve: Optional[Curve] = None, batches: bool = True,
                 context: Optional[zmq.asyncio.Context] = None) -> None:
        self._endpoints = split_endpoints(endpoint)
        self.curve = curve
        self.protocol_version = check_version(protocol_version)
        random.shuffle(self._endpoints)
        self._next_endpoint = 0
        self.timeout = float(timeout)
        self.idempotent = bool(idempotent)
        self.heartbeat_interval = float(heartbeat_interval)
        self.liveness = int(liveness)
        self._ctx = context or zmq.asyncio.Context.instance()
        self._ids = itertools.count(random.getrandbits(32) + 1)
        self._pending: Dict[int, _Pending] = {}
        self._socket: Optional[zmq.asyncio.Socket] = None
        # The same socket without the asyncio wrapper: sends and the reads that drain what is
        # already queued skip a Future each (the wrapper costs more than the message).
        self._sync: Optional["zmq.Socket[Any]"] = None
        self._monitor: Optional[zmq.asyncio.Socket] = None
        self._tasks: List["asyncio.Task[None]"] = []
        self._handshaken = False
        self._last_heard = time.monotonic()
        self._pong: Optional["asyncio.Future[None]"] = None
        self._closed = False
        self._idempotent_services: "set[bytes]" = set()  # from the family's WELCOME
        self._move_to: Optional[str] = None  # a draining broker's redirect, once nothing is out
        # Batches: asked for in HELLO (S0/2); used once the broker's WELCOME says it takes them.
        self._ask_batches = bool(batches) and self.protocol_version == 2
        self._hello_flags = 0  # the flags of the HELLO not yet answered
        self._batching = False
        self._box = _wire.Batcher()  # requests of this turn, sent by _flush()
        self._boxed: List[int] = []  # their ids
        self._flush_handle: Optional[asyncio.Handle] = None

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- public API ----------------------------------------------------------------------------

    async def request(self, service: str, body: _wire.Body = b"", timeout: Optional[float] = None) -> bytes:
        """The body of a 200 reply; raises scale0.Error for any other outcome."""
        return (await self.call(service, body, timeout)).raise_for_status()

    async def call(self, service: str, body: _wire.Body = b"", timeout: Optional[float] = None) -> Reply:
        """The Reply of one request, whatever its status."""
        name = encode_service(service)
        t = self.timeout if timeout is None else float(timeout)
        self._ensure_connected()
        now = time.monotonic()
        if not self._pending:
            self._last_heard = now
        rid = next(self._ids) & 0xFFFFFFFFFFFFFFFF
        fut: "asyncio.Future[Reply]" = asyncio.get_running_loop().create_future()
        p = _Pending(name, _wire.body_frames(body), now + t if t > 0 else None, fut)
        self._pending[rid] = p
        if self._move_to is not None:
            p.held = True  # sent to the broker the client is moving to
        else:
            self._transmit(rid, p)
        try:
            if p.deadline is None:
                return await fut
            return await asyncio.wait_for(asyncio.shield(fut), t + REQUEST_GRACE)
        except asyncio.TimeoutError:
            return Reply(rid, 504, MSG_NO_REPLY % int(t * 1000), [], True)
        finally:
            self._pending.pop(rid, None)
            self._maybe_move()

    async def ping(self, wait: float = 1.0) -> bool:
        """PING/PONG round trip: True when the broker answered within ``wait`` seconds."""
        self._ensure_connected()
        loop = asyncio.get_running_loop()
        if self._pong is None or self._pong.done():
            self._pong = loop.create_future()
        pong = self._pong
        self._send(_wire.client_ping())
        try:
            await asyncio.wait_for(asyncio.shield(pong), wait)
            return True
        except asyncio.TimeoutError:
            return False

    async def close(self) -> None:
        """Ends the background tasks and closes the connection; outstanding requests get 502."""
        self._closed = True
        self._disconnect()
        for rid, p in list(self._pending.items()):
            if not p.future.done():
                p.future.set_result(Reply(rid, 502, "%s: client closed" % MSG_BROKER_LOST, [], True))
        self._pending.clear()

    # -- connection ----------------------------------------------------------------------------

    def _ensure_connected(self) -> None:
        if self._closed:
            raise Error(503, "client closed", local=True)
        if self._socket is None:
            self._connect()

    @property
    def endpoints(self) -> List[str]:
        """The brokers this client may use (a family's WELCOME and redirects add to them)."""
        return list(self._endpoints)

    def _connect(self, endpoint: Optional[str] = None) -> None:
        if endpoint is not None:
            self._next_endpoint = self._endpoints.index(endpoint)
        ep = self._endpoints[self._next_endpoint % len(self._endpoints)]
        self._next_endpoint += 1
        s = self._ctx.socket(zmq.DEALER)
        if self.curve is not None:
            self.curve.apply(s)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.SNDHWM, 100_000)
        s.setsockopt(zmq.RCVHWM, 100_000)
        self._monitor = s.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED)
        s.connect(ep)
        self._socket = s
        self._sync = zmq.Socket.shadow(s.underlying)
        self._handshaken = False
        self._last_heard = time.monotonic()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._read(s)), loop.create_task(self._watch(s, self._monitor)),
                       loop.create_task(self._heartbeat(s))]
        self._batching = False
        # The family's endpoints and idempotent services; the flag says this client takes batches.
        self._hello(_wire.HELLO_BATCHES if self._ask_batches else 0)

    def _hello(self, flags: int) -> None:
        self._hello_flags = flags
        self._send(_wire.client_hello(flags))

    def _disconnect(self) -> None:
        for t in self._tasks:
            t.cancel()
        self._tasks = []
        self._box.take()  # held for this connection: _fail_over sends them again
        self._boxed = []
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if self._socket is not None:
            try:
                self._socket.disable_monitor()
            except zmq.ZMQError:
                pass
            self._socket.close(0)
            self._socket = None
            self._sync = None
        if self._monitor is not None:
            self._monitor.close(0)
            self._monitor = None

    def _fail_over(self, reason: str) -> None:
        reached = self._handshaken
        unsent = set(self._boxed)  # held for a batch: they never left this process
        self._disconnect()
        self._connect(self._move_to)
        self._move_to = None
        now = time.monotonic()
        for rid in sorted(self._pending):
            p = self._pending[rid]
            if p.future.done():
                continue
            if p.held or rid in unsent:  # never taken by any broker
                p.held = False
                self._transmit(rid, p)
            elif p.deadline is not None and p.deadline <= now:
                p.future.set_result(Reply(rid, 504, "deadline passed while the broker was lost", [], True))
            elif not reached or ((self.idempotent or p.service in self._idempotent_services) and not p.resent):
                p.resent = p.resent or reached
                self._transmit(rid, p)
            else:
                p.future.set_result(Reply(rid, 502, "%s: %s" % (MSG_BROKER_LOST, reason), [], True))

    def _transmit(self, rid: int, p: _Pending) -> None:
        left = None if p.deadline is None else max(0.001, p.deadline - time.monotonic())
        frames = _wire.client_request(rid, p.service, _wire.ms(left), p.frames)
        if not self._batching or not self._box.batchable(frames):
            self._send(frames)
            return
        if not self._box.fits(frames):
            self._flush()
        self._box.add(frames)
        self._boxed.append(rid)
        if self._flush_handle is None:  # the end of this turn: after the callbacks ready now
            self._flush_handle = asyncio.get_running_loop().call_soon(self._flush_soon)

    def _flush_soon(self) -> None:
        self._flush_handle = None
        self._flush()

    def _flush(self) -> None:
        """Sends the requests held: several as one BATCH, one as it is."""
        frames = self._box.take()
        self._boxed = []
        if frames is not None:
            self._put(frames)

    def _send(self, frames: List[bytes]) -> None:
        """Sends a message after what is held (nothing overtakes a held request)."""
        self._flush()
        self._put(frames)

    def _put(self, frames: List[bytes]) -> None:
        assert self._sync is not None
        if self.protocol_version == 1:
            v1 = _wire.to_v1(frames)
            if v1 is None:
                return  # S0/1 has no such command (HELLO)
            frames = v1
        try:
            # The DEALER's queue holds 100 000 messages: a send that would block is a full queue.
            self._sync.send_multipart(frames, zmq.NOBLOCK)
        except zmq.Again:
            pass  # the request ends by its deadline (504)
        if int(self._sync.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
            asyncio.get_running_loop().call_soon(self._drain)

    # -- background tasks -------------------------------------------------------------------------

    async def _read(self, s: zmq.asyncio.Socket) -> None:
        while s is self._socket:
            self._take(await s.recv_multipart())
            self._drain()
            self._maybe_move()

    def _drain(self) -> None:
        """Reads what is queued already, without a Future each. Also called after each send and
        heartbeat tick: a send through the plain socket may take the edge of ZMQ_FD that would
        have woken the awaited read."""
        sync = self._sync
        while sync is not None and sync is self._sync:
            try:
                frames = sync.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self._take(frames)

    def _take(self, frames: List[bytes]) -> None:
        """A message from the broker; a BATCH is its entries, one after another."""
        if not _wire.is_batch(frames):
            self._on_message(frames)
            return
        for entry in _wire.split_batch(frames) or ():  # a malformed batch is ignored
            self._on_message(entry)

    def _on_message(self, frames: List[bytes]) -> None:
        msg = _wire.decode_client(frames)
        if msg is None:
            return
        self._last_heard = time.monotonic()
        if msg == "pong":
            if self._pong is not None and not self._pong.done():
                self._pong.set_result(None)
            return
        if isinstance(msg, _wire.ClientWelcome):
            for ep in msg.frontends:  # the family's frontends join the list
                text = ep.decode("utf-8", "replace")
                if text and text not in self._endpoints:
                    self._endpoints.append(text)
            self._idempotent_services = set(msg.idempotent_services)
            self._hello_flags = 0
            self._batching = bool(msg.flags & _wire.HELLO_BATCHES)
            return
        assert isinstance(msg, _wire.ClientReply)
        if msg.request_id == 0 and msg.status == 400 and self._hello_flags:
            self._hello(0)  # a broker from before batches refused the flags byte
            return
        p = self._pending.get(msg.request_id)
        if p is None or p.future.done() or p.held:
            return
        message = msg.message.decode("utf-8", "replace")
        if msg.status == _wire.STATUS_REDIRECT and message:
            # A draining broker did not take it: hold it until what the old broker holds is
            # answered, then move there and send everything held.
            p.bounces += 1
            if p.bounces > MAX_BOUNCES:
                p.future.set_result(Reply(msg.request_id, 503, "redirected %d times" % MAX_BOUNCES, [], True))
                return
            if message not in self._endpoints:
                self._endpoints.append(message)
            p.held = True
            self._move_to = message
        else:
            p.future.set_result(Reply(msg.request_id, msg.status, message, msg.body))

    def _maybe_move(self) -> None:
        if self._move_to is None or self._closed:
            return
        if all(p.held or p.future.done() for p in self._pending.values()):
            if any(p.held for p in self._pending.values()):
                self._fail_over("redirected")
            else:
                self._move_to = None

    async def _watch(self, s: zmq.asyncio.Socket, monitor: zmq.asyncio.Socket) -> None:
        while True:
            event = parse_monitor_message(await monitor.recv_multipart())
            if event["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._handshaken = True
            elif event["event"] == zmq.EVENT_DISCONNECTED and self._handshaken and s is self._socket:
                self._fail_over("connection closed")
                return

    async def _heartbeat(self, s: zmq.asyncio.Socket) -> None:
        iv = self.heartbeat_interval
        last_ping = 0.0
        last_tick = time.monotonic()
        while s is self._socket:
            await asyncio.sleep(iv / 4)
            self._drain()
            now = time.monotonic()
            if now - last_tick > 2 * iv:
                # The event loop was blocked for a while: that time counts as one interval of
                # the broker's silence, and a PING goes out now.
                self._last_heard = max(self._last_heard, now - iv)
                last_ping = 0.0
            last_tick = now
            if not self._pending:
                continue
            silence = now - self._last_heard
            if silence >= self.liveness * iv:
                self._fail_over("no answer for %d ms" % int(silence * 1000))
                return
            if silence >= iv and now - last_ping >= iv:
                last_ping = now
                self._send(_wire.client_ping())
