# SPDX-License-Identifier: Apache-2.0
"""The worker (docs/protocol.md, "Worker state table (native worker library)"), as the C++
scale0::worker.

run() is the I/O loop: it owns the DEALER to the broker and the SUB to the broker's heartbeat
publication, and hands each REQUEST to the handler: on a pool of ``concurrency`` threads, or, for an
``async def`` handler, on the worker's own event loop (one thread). Handlers give their results
back through a queue and an inproc wake-up socket, so only the I/O loop touches the broker sockets.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import inspect
import os
import socket
import threading
import time
from collections import deque
from types import MappingProxyType
from typing import Any, Awaitable, Callable, Deque, Dict, List, Mapping, Optional, Sequence, Tuple, Union, cast

import zmq

from . import _wire
from ._types import Error, Job, ServicePolicy
from .client import check_version, split_endpoints
from .curve import Curve

Result = Union[bytes, str, Sequence[Union[bytes, str]], None]
Handler = Callable[[Job], Union[Result, Awaitable[Result]]]
Hook = Callable[[], Union[None, Awaitable[None]]]

_POLL_CAP = 0.05  # the loop looks at stop() and timers at least this often (seconds)
_MAX_SERVICES = 64


class State(enum.Enum):
    """The worker's states, as in the protocol's table."""

    CONNECTING = "connecting"
    REGISTERING = "registering"
    READY = "ready"
    STOPPING = "stopping"
    STOPPED = "stopped"


def default_name() -> str:
    """host:pid, the name of a worker given none (as the C++ library)."""
    return "%s:%d" % (socket.gethostname()[:50], os.getpid())


def outcome(result: Any) -> Tuple[int, bytes, List[bytes]]:
    """A handler's return value or exception as (status, message, body frames): an Error keeps its
    status and message, any other exception is 500 with its text."""
    if isinstance(result, Error):
        return result.status, result.message.encode("utf-8"), []
    if isinstance(result, BaseException):
        text = str(result) or type(result).__name__
        return 500, text.encode("utf-8", "replace"), []
    try:
        return 200, b"", _wire.body_frames(result)
    except TypeError:
        return 500, b"handler returned %s, not bytes" % type(result).__name__.encode(), []


def heartbeat_endpoint(advertised: bytes, broker_endpoint: str) -> str:
    """WELCOME's heartbeat endpoint, with a host of * or 0.0.0.0 read as the broker's host."""
    ep = advertised.decode("utf-8", "replace")
    scheme, sep, rest = ep.partition("://")
    host, colon, port = rest.rpartition(":")
    if sep and colon and host in ("*", "0.0.0.0"):
        b_rest = broker_endpoint.partition("://")[2]
        b_host = b_rest.rpartition(":")[0] or "127.0.0.1"
        return "%s://%s:%s" % (scheme, b_host, port)
    return ep


class Worker:
    """Serves ``services`` with ``handler`` through a broker (or the first of a comma-separated
    list, moving to the next when one is lost).

    The handler takes a Job and returns the reply body (bytes, str, a list of frames, or None), or
    raises scale0.Error(status, message) for another status; any other exception is a 500 reply
    with its text. An ``async def`` handler runs on the worker's event loop instead of the pool.
    ``idempotent`` lets the broker re-dispatch requests held by this worker if it dies.
    ``inline`` runs a (plain) handler on the I/O thread instead of the pool: no thread hop per
    request, for handlers that never block (an echo, a lookup in memory); requests are then
    handled one after another and no heartbeat goes out while one runs.
    ``protocol_version=1`` speaks S0/1 to a broker from before S0/2 (no name, no family moves).
    ``curve`` (a scale0.curve.Curve) encrypts the connections (backend and heartbeat) with CURVE.
    ``startup`` runs in run() before the worker connects (an exception from it is raised by run(),
    and nothing is registered), ``shutdown`` once it has stopped (after the drain); a coroutine
    function runs on the worker's event loop when the handler is ``async def`` (ASGI lifespan).
    """

    def __init__(self, broker: str = "tcp://127.0.0.1:5556", services: Sequence[str] = (),
                 handler: Optional[Handler] = None, *, concurrency: int = 1, idempotent: bool = False,
                 name: Optional[str] = None, heartbeat_interval: float = 0.0, reconnect_min: float = 1.0,
                 reconnect_max: float = 32.0, drain_timeout: float = 30.0, inline: bool = False,
                 protocol_version: int = 2, curve: Optional[Curve] = None, batches: bool = True,
                 on_event: Optional[Callable[[str], None]] = None,
                 startup: Optional[Hook] = None, shutdown: Optional[Hook] = None,
                 context: Optional["zmq.Context[Any]"] = None) -> None:
        if handler is None:
            raise Error(400, "a worker needs a handler")
        self._endpoints = split_endpoints(broker)
        self._services = [_wire.as_bytes(s) for s in services]
        if not 1 <= len(self._services) <= _MAX_SERVICES or not all(map(_wire.valid_service_name, self._services)):
            raise Error(400, "a worker serves 1-64 services with valid names")
        if not 1 <= concurrency <= 1024:
            raise Error(400, "concurrency must be 1-1024")
        self.name = name or default_name()
        if not 1 <= len(self.name.encode()) <= 64 or not _wire.valid_service_name(self.name.encode()):
            raise Error(400, "a worker name is 1-64 printable characters")
        self.handler = handler
        self.concurrency = int(concurrency)
        self.idempotent = bool(idempotent)
        self.heartbeat_interval = float(heartbeat_interval)
        self.reconnect_min = float(reconnect_min)
        self.reconnect_max = float(reconnect_max)
        self.drain_timeout = float(drain_timeout)
        self.inline = bool(inline)
        self.protocol_version = check_version(protocol_version)
        # S0/2: requests and replies in batches (docs/protocol.md, "Batches"); a broker from before
        # batches refuses the READY flag, and the worker registers again without it.
        self._ask_batches = bool(batches) and self.protocol_version == 2
        self._batching = False  # agreed with the current broker: replies wait for _flush()
        self._box = _wire.Batcher()
        self.curve = curve
        self.on_event = on_event
        self.startup = startup
        self.shutdown = shutdown
        self._ctx = context or zmq.Context.instance()
        self._is_async = inspect.iscoroutinefunction(handler)
        self._stop_requested = False
        self._state = State.CONNECTING
        self._done: Deque[Tuple[int, int, Any]] = deque()
        self._wake_lock = threading.Lock()
        self._wake_addr = "inproc://scale0-worker-wake-%x" % id(self)
        self._wake_push: Optional["zmq.Socket[Any]"] = None
        # The connection.
        self._dealer: Optional["zmq.Socket[Any]"] = None
        self._poller: Optional[zmq.Poller] = None  # rebuilt when the sockets change
        self._sub: Optional["zmq.Socket[Any]"] = None
        self._gen = 0
        self._endpoint_index = 0
        self._endpoint = self._endpoints[0]
        self._broker_id: Optional[int] = None
        self._hb = 1.0  # agreed interval of this worker's HEARTBEATs (seconds)
        self._broker_hb = 1.0  # interval of the broker's own heartbeats
        self._liveness = 3
        self._last_heard = 0.0
        self._next_hb = 0.0
        self._registering_until = 0.0
        self._connect_at = 0.0
        self._backoff = self.reconnect_min
        self._lost_since_registration = 0
        self._moved = False  # the next READY says a broker sent this worker (DISCONNECT 301)
        self._stop_answered = False
        self._stop_wait_until = 0.0
        self._drain_until = 0.0
        self._held: Dict[Tuple[int, int], float] = {}  # (connection, job-id) -> deadline
        self.registrations = 0  # how many WELCOMEs registered this worker (for tests and status)
        self._policy: Dict[str, ServicePolicy] = {}  # replaced whole by each CONFIG, never changed
        self._policy_version = 0
        self._last_turn = 0.0
        self._grace_until = 0.0  # after the process itself was stopped: read before judging

    # -- public API ----------------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def policy(self) -> Mapping[str, ServicePolicy]:
        """The broker's effective policy of this worker's services (service name -> ServicePolicy),
        from its last CONFIG (S0/2); empty before the first one. A read-only snapshot: a later
        CONFIG replaces it, it never changes under the caller."""
        return MappingProxyType(self._policy)

    @property
    def policy_version(self) -> int:
        """The version of ``policy`` (0: no CONFIG yet). Kept across registrations: a broker that
        knows a newer one answers 426 with it."""
        return self._policy_version

    def stop(self) -> None:
        """Asks run() to stop gracefully (STOPPING, drain, DISCONNECT). Safe from another thread
        or a signal handler; calling it again changes nothing."""
        self._stop_requested = True
        self._wake()

    def run(self) -> None:
        """Serves until stop(), then finishes what it holds and disconnects."""
        pull = self._ctx.socket(zmq.PULL)
        pull.bind(self._wake_addr)
        self._wake_push = self._ctx.socket(zmq.PUSH)
        self._wake_push.setsockopt(zmq.LINGER, 0)
        self._wake_push.connect(self._wake_addr)
        executor: Optional[concurrent.futures.ThreadPoolExecutor] = None
        loop: Optional[asyncio.AbstractEventLoop] = None
        loop_thread: Optional[threading.Thread] = None
        if self._is_async:
            loop = asyncio.new_event_loop()
            loop_thread = threading.Thread(target=loop.run_forever, name="scale0-worker-loop", daemon=True)
            loop_thread.start()
        else:
            executor = concurrent.futures.ThreadPoolExecutor(self.concurrency, thread_name_prefix="scale0-worker")
        self._submit = self._make_submit(executor, loop)
        started = False
        try:
            if self.startup is not None:
                self._event("startup")
                self._run_hook(self.startup, loop)
            started = True
            self._state = State.CONNECTING
            self._connect_at = time.monotonic()
            while self._state != State.STOPPED:
                self._loop_once(pull)
        finally:
            self._state = State.STOPPED
            self._close()
            if executor is not None:
                executor.shutdown(wait=True)
            try:
                if started and self.shutdown is not None:
                    self._event("shutdown")
                    self._run_hook(self.shutdown, loop)
            finally:
                if loop is not None and loop_thread is not None:
                    loop.call_soon_threadsafe(loop.stop)
                    loop_thread.join(timeout=5)
                    loop.close()
                with self._wake_lock:
                    self._wake_push.close(0)
                    self._wake_push = None
                pull.close(0)

    @staticmethod
    def _run_hook(hook: Hook, loop: Optional[asyncio.AbstractEventLoop]) -> None:
        """Calls a startup or shutdown hook; one that returns an awaitable is awaited on the
        worker's event loop (or, without one, a loop of its own)."""
        result = hook()
        if inspect.isawaitable(result):
            awaitable = cast(Awaitable[None], result)

            async def wait() -> None:
                await awaitable
            if loop is not None:
                asyncio.run_coroutine_threadsafe(wait(), loop).result()
            else:
                asyncio.run(wait())

    # -- handlers --------------------------------------------------------------------------------

    def _make_submit(self, executor: Optional[concurrent.futures.ThreadPoolExecutor],
                     loop: Optional[asyncio.AbstractEventLoop]) -> Callable[[Job, int], None]:
        def submit(job: Job, gen: int) -> None:
            if loop is not None:
                fut = asyncio.run_coroutine_threadsafe(self._call_async(job), loop)
            else:
                assert executor is not None
                fut = executor.submit(self._call_sync, job)
            fut.add_done_callback(lambda f: self._completed(job.id, gen, f))
        return submit

    def _call_sync(self, job: Job) -> Any:
        try:
            return self.handler(job)
        except BaseException as e:  # noqa: BLE001 - every failure becomes a reply
            return e

    async def _call_async(self, job: Job) -> Any:
        try:
            return await self.handler(job)  # type: ignore[misc]
        except BaseException as e:  # noqa: BLE001
            return e

    def _completed(self, job_id: int, gen: int, fut: "concurrent.futures.Future[Any]") -> None:
        try:
            result = fut.result()
        except BaseException as e:  # noqa: BLE001 (cancelled)
            result = e
        self._done.append((job_id, gen, result))
        self._wake()

    def _wake(self) -> None:
        # Never blocks: from a signal handler the lock may be held by the interrupted frame; the
        # loop then sees the flag within _POLL_CAP anyway.
        if self._wake_lock.acquire(blocking=False):
            try:
                if self._wake_push is not None:
                    self._wake_push.send(b"", zmq.NOBLOCK)
            except zmq.ZMQError:
                pass
            finally:
                self._wake_lock.release()

    # -- the loop --------------------------------------------------------------------------------

    def _loop_once(self, pull: "zmq.Socket[Any]") -> None:
        now = time.monotonic()
        self._tick(now)
        if self._state == State.STOPPED:
            return
        if self._poller is None:  # the connection changed: poll its sockets
            self._poller = zmq.Poller()
            for sock in (pull, self._dealer, self._sub):
                if sock is not None:
                    self._poller.register(sock, zmq.POLLIN)
        wait = min(_POLL_CAP, max(0.0, self._next_timer(now) - now))
        events = dict(self._poller.poll(int(wait * 1000) + 1))
        if pull in events:
            while True:
                try:
                    pull.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
        while self._done:
            self._reply(*self._done.popleft())
        dealer, sub = self._dealer, self._sub
        if dealer is not None and dealer in events:
            self._read(dealer, self._on_broker)
        if sub is not None and sub in events:
            self._read(sub, self._on_publication)
        self._flush()  # this turn's replies leave together

    def _read(self, sock: "zmq.Socket[Any]", handle: Callable[[List[bytes]], None]) -> None:
        for _ in range(1000):  # a batch, then back to timers
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if sock is self._dealer and _wire.is_batch(frames):
                for entry in _wire.split_batch(frames) or ():  # a malformed batch is ignored
                    handle(entry)
                    if sock is not self._dealer:
                        return
            else:
                handle(frames)
            if sock is not self._dealer and sock is not self._sub:
                return  # the connection changed under this message

    def _next_timer(self, now: float) -> float:
        if self._state == State.CONNECTING:
            return self._connect_at
        if self._state == State.REGISTERING:
            return self._registering_until
        silent_at = self._last_heard + self._liveness * self._broker_hb
        # Past it (a silent broker while requests are held): the heartbeat and the poll cap pace
        # the loop, not a zero wait.
        return min(self._next_hb, silent_at) if silent_at > now else self._next_hb

    def _tick(self, now: float) -> None:
        if self._last_turn and now - self._last_turn > 1.0:
            # The loop did not turn for over a second (this process was stopped, or starved):
            # read the sockets for one broker interval before judging the broker silent.
            self._grace_until = now + self._broker_hb
        self._last_turn = now
        if self._stop_requested and self._state not in (State.STOPPING, State.STOPPED):
            self._begin_stop(now)
        if self._state == State.CONNECTING:
            if now >= self._connect_at:
                self._open(now)
        elif self._state == State.REGISTERING:
            if now >= self._registering_until:
                self._event("no WELCOME from %s" % self._endpoint)
                self._leave(204 if not self._held_here() else None)
                self._broker_lost(now)
        elif self._state in (State.READY, State.STOPPING):
            if now >= self._next_hb:
                self._send(_wire.worker_heartbeat())
                self._next_hb = now + self._hb
            silent = now - self._last_heard > self._liveness * self._broker_hb and now >= self._grace_until
            if self._state == State.STOPPING:
                self._check_stopped(now, silent)
            elif silent and not self._held_here(now):
                self._event("broker %s silent for %d ms" % (self._endpoint, int((now - self._last_heard) * 1000)))
                self._leave(204 if not self._held_here() else None)
                self._broker_lost(now)

    def _held_here(self, now: Optional[float] = None) -> int:
        """Requests held that came on this connection (those past their deadline left out when
        ``now`` is given)."""
        return sum(1 for (g, _), dl in self._held.items() if g == self._gen and (now is None or dl > now))

    # -- connection --------------------------------------------------------------------------------

    def _open(self, now: float) -> None:
        self._close()
        self._gen += 1
        d = self._ctx.socket(zmq.DEALER)
        if self.curve is not None:
            self.curve.apply(d)
        d.setsockopt(zmq.LINGER, 0)
        d.setsockopt(zmq.SNDHWM, 100_000)
        d.setsockopt(zmq.RCVHWM, 100_000)
        d.connect(self._endpoint)
        self._dealer = d
        self._poller = None
        flags = (_wire.FLAG_IDEMPOTENT if self.idempotent else 0) | (_wire.FLAG_MOVED if self._moved else 0)
        if self._ask_batches:
            flags |= _wire.FLAG_BATCHES
        self._send(_wire.worker_ready(self.concurrency, _wire.ms(self.heartbeat_interval), flags,
                                      self._services, self.name.encode()))
        self._state = State.REGISTERING
        self._registering_until = now + 3 * max(self.heartbeat_interval, 1.0)

    def _close(self) -> None:
        self._box.take()  # replies held for a broker that is gone
        self._batching = False
        for s in (self._dealer, self._sub):
            if s is not None:
                s.close(0)
        self._dealer = self._sub = None
        self._poller = None

    def _leave(self, status: Optional[int]) -> None:
        """DISCONNECT (204: nothing held) and close."""
        self._send(_wire.worker_disconnect(status))
        self._close()

    def _flush(self) -> None:
        held = self._box.take()
        if held is not None and self._dealer is not None:
            try:
                self._dealer.send_multipart(held, zmq.NOBLOCK)
            except zmq.Again:
                pass  # as for a single reply: the broker is not reading

    def _send(self, frames: List[bytes]) -> None:
        self._flush()  # what is held goes first
        if self._dealer is None:
            return
        if self.protocol_version == 1:
            v1 = _wire.to_v1(frames)
            if v1 is None:
                return
            frames = v1
        try:
            self._dealer.send_multipart(frames, zmq.NOBLOCK)
        except zmq.Again:
            pass  # the broker is not reading: heartbeats tell

    def _broker_lost(self, now: float) -> None:
        """Next broker of the list at once, or, when every one was lost since the last
        registration, the backoff (1 s, 2 s, ... 32 s) first."""
        self._close()
        self._state = State.CONNECTING
        self._lost_since_registration += 1
        self._endpoint_index = (self._endpoint_index + 1) % len(self._endpoints)
        self._endpoint = self._endpoints[self._endpoint_index]
        if self._lost_since_registration % len(self._endpoints) == 0:
            self._connect_at = now + self._backoff
            self._event("broker lost: reconnecting in %g s" % self._backoff)
            self._backoff = min(self._backoff * 2, self.reconnect_max)
        else:
            self._connect_at = now

    def _register_again(self, now: float, why: str) -> None:
        self._event("%s: registering again with %s" % (why, self._endpoint))
        self._close()
        self._open(now)

    # -- messages --------------------------------------------------------------------------------

    def _on_broker(self, frames: List[bytes]) -> None:
        msg = _wire.decode_worker(frames)
        if msg is None:
            return
        now = time.monotonic()
        self._last_heard = now
        if isinstance(msg, _wire.Welcome):
            self._on_welcome(msg, now)
        elif isinstance(msg, _wire.WorkRequest):
            if self._state in (State.READY, State.STOPPING):
                service = msg.service.decode("utf-8", "replace")
                job = Job(msg.job_id, service, msg.body, now + msg.timeout_ms / 1000.0)
                self._held[(self._gen, msg.job_id)] = job.deadline
                if self.inline and not self._is_async:
                    self._reply(msg.job_id, self._gen, self._call_sync(job))
                else:
                    self._submit(job, self._gen)
        elif isinstance(msg, _wire.Disconnect):
            self._on_disconnect(msg, now)
        elif isinstance(msg, _wire.Stopping):
            self._stop_answered = True
        elif isinstance(msg, _wire.Config):
            self._on_config(msg)

    def _on_config(self, c: _wire.Config) -> None:
        """The policy of this worker's services: the broker enforces it (max-concurrency among
        them, by the credit it uses), the worker keeps it for its caller and reports it."""
        policy: Dict[str, ServicePolicy] = {}
        text = "policy version %d" % c.policy_version
        if c.status == 426:
            text += " (ours was stale: 426)"
        for s in c.services:
            name = s.service.decode("utf-8", "replace")
            policy[name] = ServicePolicy(s.request_timeout_ms / 1000.0, s.max_queue, s.max_concurrency or None,
                                         {0: None, 1: True, 2: False}[s.idempotent])
            text += "; %s: request-timeout %d ms, max-queue %d, max-concurrency %s, idempotent %s" % (
                name, s.request_timeout_ms, s.max_queue, s.max_concurrency or "none",
                ("as the workers say", "yes", "no")[s.idempotent])
        self._policy = policy
        self._policy_version = c.policy_version
        self._event(text)

    def _on_welcome(self, w: _wire.Welcome, now: float) -> None:
        if self._state == State.REGISTERING:
            self._hb = max(w.heartbeat_ms, 1) / 1000.0
            self._broker_hb = max(w.broker_heartbeat_ms or w.heartbeat_ms, 1) / 1000.0
            self._liveness = max(1, w.liveness)
            self._broker_id = w.broker_id
            sub = self._ctx.socket(zmq.SUB)
            if self.curve is not None:
                self.curve.apply(sub)  # the heartbeat PUB is a CURVE server too
            sub.setsockopt(zmq.LINGER, 0)
            sub.setsockopt(zmq.SUBSCRIBE, _wire.H_HDR)
            sub.connect(heartbeat_endpoint(w.heartbeat_endpoint, self._endpoint))
            self._sub = sub
            self._poller = None
            self._state = State.READY
            self._batching = self._ask_batches  # the READY's flags were taken
            self._backoff = self.reconnect_min
            self._lost_since_registration = 0
            self._moved = False
            for ep in w.backends:  # a family's backends join the list, for failover
                text = ep.decode("utf-8", "replace")
                if text and text not in self._endpoints:
                    self._endpoints.append(text)
            self._next_hb = now + self._hb
            self.registrations += 1
            self._event("registered with %s (heartbeat %d ms)" % (self._endpoint, w.heartbeat_ms))
            if self.protocol_version == 2:
                # The policy version known (0: none): the broker answers with CONFIG unless it is
                # current (426 when it was older), and sends every change from now on.
                self._send(_wire.worker_config(self._policy_version))
            if self._stop_requested:
                self._begin_stop(now)
        elif w.broker_id == self._broker_id:
            self._hb = max(w.heartbeat_ms, 1) / 1000.0  # a re-grant as the fleet changes
            self._next_hb = min(self._next_hb, now + self._hb)

    def _on_disconnect(self, d: _wire.Disconnect, now: float) -> None:
        why = "DISCONNECT %s %s" % (d.status, d.message.decode("utf-8", "replace"))
        if d.status == _wire.STATUS_REDIRECT and d.message and self._state in (State.READY, State.REGISTERING):
            # A broker of the family sends this worker to another (a drain, or balancing): go at once.
            target = d.message.decode("utf-8", "replace")
            if target not in self._endpoints:
                self._endpoints.append(target)
            self._endpoint_index = self._endpoints.index(target)
            self._endpoint = target
            self._moved = True
            self._register_again(now, why)
            return
        if (self._state == State.REGISTERING and self._ask_batches and d.status == 400
                and d.message == b"unknown READY flags"):
            self._ask_batches = False  # a broker from before batches
            self._register_again(now, why + "; without batches")
            return
        if self._state == State.STOPPING:
            self._event(why + " while stopping")
            self._close()
            self._state = State.STOPPED
        elif self._state == State.REGISTERING or d.status in (503, 403):
            self._event(why)
            self._close()
            self._broker_lost(now)
        else:
            self._register_again(now, why)

    def _on_publication(self, frames: List[bytes]) -> None:
        broker_id = _wire.decode_broker_heartbeat(frames)
        if broker_id is None:
            return
        now = time.monotonic()
        if broker_id == self._broker_id:
            self._last_heard = now
        elif self._state == State.READY:
            self._register_again(now, "broker restarted")

    def _reply(self, job_id: int, gen: int, result: Any) -> None:
        self._held.pop((gen, job_id), None)
        if gen != self._gen or self._state not in (State.READY, State.STOPPING):
            return  # it came on an earlier connection: its broker forgot it
        status, message, body = outcome(result)
        reply = _wire.worker_reply(job_id, status, message, body)
        if self._batching and self._box.batchable(reply):
            if not self._box.fits(reply):
                self._flush()
            self._box.add(reply)  # sent by _flush() before the loop waits
        else:
            self._send(reply)
        if self._state == State.STOPPING:
            self._check_stopped(time.monotonic(), False)

    # -- graceful stop ------------------------------------------------------------------------------

    def _begin_stop(self, now: float) -> None:
        if self._state == State.READY:
            self._event("stopping: STOPPING, then drain")
            self._send(_wire.worker_stopping())
            self._state = State.STOPPING
            self._stop_answered = False
            self._stop_wait_until = now + self._liveness * self._broker_hb
            self._drain_until = now + self.drain_timeout
        elif self._state == State.REGISTERING:
            self._leave(None)
            self._state = State.STOPPED
        elif self._state == State.CONNECTING:
            self._state = State.STOPPED

    def _check_stopped(self, now: float, silent: bool) -> None:
        answered = self._stop_answered or now >= self._stop_wait_until or silent
        if (answered and not self._held_here()) or now >= self._drain_until:
            self._event("stopped")
            self._leave(None)
            self._state = State.STOPPED

    def _event(self, text: str) -> None:
        if self.on_event is not None:
            try:
                self.on_event(text)
            except Exception:  # noqa: BLE001 - a logging callback must not stop the worker
                pass
