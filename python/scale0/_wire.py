# SPDX-License-Identifier: Apache-2.0
"""The S0/2 wire format (docs/protocol.md, "S0/2 compact framing"): pure functions, no sockets.

Encoders return the list of frames a DEALER sends (the empty delimiter first). Decoders take the
frames a DEALER receives and return a small tuple, or None for a message the library must ignore
(a malformed packed frame, an unknown header): the libraries never raise on network input.
"""

from __future__ import annotations

import struct
from typing import List, NamedTuple, Optional, Sequence, Tuple, Union

C_HDR = b"S0C2"
W_HDR = b"S0W2"
C_HDR1 = b"S0C1"  # S0/1: one frame per field, for brokers from before S0/2
W_HDR1 = b"S0W1"
H_HDR = b"S0H1"

# Client <-> broker commands.
C_REQUEST = 0x01
C_REPLY = 0x02
C_PING = 0x03
C_PONG = 0x04
C_HELLO = 0x05
C_WELCOME = 0x06

# Worker <-> broker commands.
W_READY = 0x01
W_REQUEST = 0x02
W_REPLY = 0x03
W_HEARTBEAT = 0x04
W_DISCONNECT = 0x05
W_WELCOME = 0x06
W_STOPPING = 0x07
W_CONFIG = 0x08  # S0/2 only: the service policy (docs/family.md, "The configuration network")

FLAG_IDEMPOTENT = 0x01
FLAG_MOVED = 0x02  # READY after a DISCONNECT 301: a broker sent this worker here
FLAG_BATCHES = 0x04  # READY: the worker takes and sends BATCH messages (docs/protocol.md, "Batches")
HELLO_BATCHES = 0x01  # HELLO and its WELCOME (S0/2, optional flags byte): the sender takes batches
BATCH = 0x09  # several messages for one peer in one (S0C2 and S0W2)
MAX_BATCH_ENTRIES = 256
MAX_BATCH_FRAMES = 64  # body frames carried separately
MAX_BATCH_PACKED = 256 << 10
BATCH_INLINE_BODY = 256  # body frames up to this size are copied into the packed frame
MAX_BATCH_ENTRY = 4096  # a larger entry is sent alone
_SEPARATE = 0xFFFFFFFF
STATUS_REDIRECT = 301

MAX_U32 = 0xFFFFFFFF
MAX_STR16 = 0xFFFF
MAX_CONFIG_SERVICES = 1000  # entries in one CONFIG

Body = Union[bytes, str, Sequence[Union[bytes, str]], None]


def as_bytes(value: Union[bytes, bytearray, memoryview, str]) -> bytes:
    """Bytes as they are, text as UTF-8."""
    if isinstance(value, str):
        return value.encode("utf-8")
    return bytes(value)


def body_frames(body: Body) -> List[bytes]:
    """A body argument (bytes, str, a list of them, or None) as a list of frames."""
    if body is None:
        return []
    if isinstance(body, (bytes, bytearray, memoryview, str)):
        return [as_bytes(body)]
    return [as_bytes(f) for f in body]


def valid_service_name(name: bytes) -> bool:
    """1-255 bytes of well-formed UTF-8 without control characters (docs/protocol.md, "Framing
    rules"). The broker checks too; checking here gives a clear local error."""
    if not 1 <= len(name) <= 255:
        return False
    try:
        text = name.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return not any(ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F for ch in text)


def _str8(value: bytes) -> bytes:
    return struct.pack(">B", len(value)) + value


def _str16(value: bytes) -> bytes:
    value = value[:MAX_STR16]
    return struct.pack(">H", len(value)) + value


def ms(seconds: Optional[float]) -> int:
    """Seconds (None: 0, the broker's default) as a u32 count of milliseconds, at least 1 when
    positive."""
    if seconds is None or seconds <= 0:
        return 0
    return max(1, min(MAX_U32, int(round(seconds * 1000))))


class _Reader:
    """Packed fields read back to back; any overrun makes the whole frame malformed."""

    __slots__ = ("data", "at")

    def __init__(self, data: bytes, at: int) -> None:
        self.data = data
        self.at = at

    def take(self, n: int) -> bytes:
        if self.at + n > len(self.data):
            raise ValueError("short packed frame")
        out = self.data[self.at:self.at + n]
        self.at += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int(struct.unpack(">H", self.take(2))[0])

    def u32(self) -> int:
        return int(struct.unpack(">I", self.take(4))[0])

    def u64(self) -> int:
        return int(struct.unpack(">Q", self.take(8))[0])

    def str8(self) -> bytes:
        return self.take(self.u8())

    def str16(self) -> bytes:
        return self.take(self.u16())

    def done(self) -> bool:
        return self.at == len(self.data)


def _split(frames: Sequence[bytes], header: bytes) -> Optional[Tuple[int, bytes, List[bytes]]]:
    """(command, packed frame, body frames) of a message from the broker, or None."""
    if len(frames) < 2 or frames[0] != b"":
        return None
    packed = bytes(frames[1])
    if len(packed) < 5 or packed[:4] != header:
        return None
    return packed[4], packed, [bytes(f) for f in frames[2:]]


# ---------------------------------------------------------------------------------------------
# Batches (docs/protocol.md, "Batches"): messages ["", packed, body...] of one header.


def is_batch(frames: Sequence[bytes]) -> bool:
    return (len(frames) >= 2 and frames[0] == b"" and len(frames[1]) >= 5
            and bytes(frames[1][:4]) in (C_HDR, W_HDR) and frames[1][4] == BATCH)


def split_batch(frames: Sequence[bytes]) -> Optional[List[List[bytes]]]:
    """The entries of a BATCH, each as the message it stands for; None when it is malformed
    (then none of it may be used)."""
    if not is_batch(frames):
        return None
    packed = bytes(frames[1])
    header, r = packed[:4], _Reader(packed, 5)
    separate = [bytes(f) for f in frames[2:]]
    if len(separate) > MAX_BATCH_FRAMES:
        return None
    taken = 0
    out: List[List[bytes]] = []
    try:
        count = r.u16()
        if count == 0 or count > MAX_BATCH_ENTRIES:
            return None
        for _ in range(count):
            entry = r.take(r.u32())
            if not entry or entry[0] == BATCH:
                return None
            msg = [b"", header + entry]
            for _ in range(r.u8()):
                size = r.u32()
                if size == _SEPARATE:
                    if taken >= len(separate):
                        return None
                    msg.append(separate[taken])
                    taken += 1
                else:
                    msg.append(r.take(size))
            out.append(msg)
    except ValueError:
        return None
    if not r.done() or taken != len(separate):
        return None
    return out


class Batcher:
    """What one turn of a loop has to send: one message goes as it is, several as one BATCH. Never
    waits for more: the owner calls take() before it waits."""

    def __init__(self) -> None:
        self._messages: List[List[bytes]] = []
        self._packed = 0
        self._separate = 0

    @staticmethod
    def _size(msg: List[bytes]) -> Tuple[int, int]:
        packed, separate = 4 + len(msg[1]) - 4 + 1, 0
        for f in msg[2:]:
            packed += 4
            if len(f) <= BATCH_INLINE_BODY:
                packed += len(f)
            else:
                separate += 1
        return packed, separate

    @classmethod
    def batchable(cls, msg: List[bytes]) -> bool:
        if len(msg) < 2 or msg[0] != b"" or len(msg) - 2 > 255 or len(msg[1]) < 5:
            return False
        packed, separate = cls._size(msg)
        return packed <= MAX_BATCH_ENTRY and separate <= MAX_BATCH_FRAMES

    def fits(self, msg: List[bytes]) -> bool:
        if not self._messages:
            return True
        packed, separate = self._size(msg)
        return (len(self._messages) < MAX_BATCH_ENTRIES and msg[1][:4] == self._messages[0][1][:4]
                and 7 + self._packed + packed <= MAX_BATCH_PACKED
                and self._separate + separate <= MAX_BATCH_FRAMES)

    def add(self, msg: List[bytes]) -> None:
        packed, separate = self._size(msg)
        self._messages.append(msg)
        self._packed += packed
        self._separate += separate

    def __len__(self) -> int:
        return len(self._messages)

    def take(self) -> Optional[List[bytes]]:
        """What is held, as one message (None when nothing is)."""
        messages, self._messages, self._packed, self._separate = self._messages, [], 0, 0
        if not messages:
            return None
        if len(messages) == 1:
            return messages[0]
        parts = [messages[0][1][:4], bytes([BATCH]), struct.pack(">H", len(messages))]
        separate: List[bytes] = []
        for m in messages:
            parts += [struct.pack(">I", len(m[1]) - 4), m[1][4:], bytes([len(m) - 2])]
            for f in m[2:]:
                if len(f) <= BATCH_INLINE_BODY:
                    parts += [struct.pack(">I", len(f)), bytes(f)]
                else:
                    parts.append(struct.pack(">I", _SEPARATE))
                    separate.append(f)
        return [b"", b"".join(parts), *separate]


# ---------------------------------------------------------------------------------------------
# Client side.


def client_request(request_id: int, service: bytes, timeout_ms: int, body: List[bytes]) -> List[bytes]:
    """REQUEST: "" · S0C2 0x01 id u64 · timeout-ms u32 · service str8 · body…"""
    packed = C_HDR + bytes([C_REQUEST]) + struct.pack(">QI", request_id, timeout_ms) + _str8(service)
    return [b"", packed, *body]


def client_ping(payload: Sequence[bytes] = ()) -> List[bytes]:
    """PING: the broker echoes the payload frames in a PONG."""
    return [b"", C_HDR + bytes([C_PING]), *payload]


def client_hello(flags: int = 0) -> List[bytes]:
    """HELLO: asks the broker about its family (answered by a client WELCOME). ``flags``
    (HELLO_BATCHES) is sent as the optional flags byte when not 0."""
    packed = C_HDR + bytes([C_HELLO])
    if flags:
        packed += struct.pack(">B", flags)
    return [b"", packed]


class ClientWelcome(NamedTuple):
    """The family as a broker sees it: its client endpoints (its own first) and the services
    every worker of the family serves idempotently; ``flags`` are the broker's (HELLO_BATCHES),
    sent only in answer to a HELLO with flags (0 when absent)."""

    broker_id: int
    frontends: List[bytes]
    idempotent_services: List[bytes]
    flags: int = 0


class ClientReply(NamedTuple):
    request_id: int
    status: int
    message: bytes
    body: List[bytes]


def decode_client(frames: Sequence[bytes]) -> Union[ClientReply, ClientWelcome, str, None]:
    """A REPLY, a WELCOME, the string "pong" for a PONG, or None for anything the client
    ignores. Either framing (a broker answers 505 in S0/1 to a version it does not speak)."""
    if len(frames) >= 2 and frames[1] == C_HDR1:
        translated = from_v1(frames)
        if translated is None:
            return None
        frames = translated
    split = _split(frames, C_HDR)
    if split is None:
        return None
    command, packed, body = split
    if command == C_PONG:
        return "pong" if len(packed) == 5 else None
    if command == C_WELCOME:
        try:
            r = _Reader(packed, 5)
            broker_id = r.u64()
            frontends = [r.str16() for _ in range(r.u16())]
            services = [r.str8() for _ in range(r.u16())]
            flags = 0 if r.done() else r.u8()  # only after a HELLO with flags
        except ValueError:
            return None
        return ClientWelcome(broker_id, frontends, services, flags) if r.done() and not body else None
    if command != C_REPLY:
        return None
    try:
        r = _Reader(packed, 5)
        rid, status, message = r.u64(), r.u16(), r.str16()
        if not r.done():
            return None
    except ValueError:
        return None
    return ClientReply(rid, status, message, body)


# ---------------------------------------------------------------------------------------------
# Worker side.


def worker_ready(concurrency: int, heartbeat_ms: int, flags: int, services: Sequence[bytes],
                 name: bytes) -> List[bytes]:
    """READY: concurrency u32 · heartbeat-ms u32 · flags u8 · service str8… · [name]."""
    packed = W_HDR + bytes([W_READY]) + struct.pack(">IIB", concurrency, heartbeat_ms, flags)
    packed += b"".join(_str8(s) for s in services)
    frames = [b"", packed]
    if name:
        frames.append(name)
    return frames


def worker_reply(job_id: int, status: int, message: bytes, body: List[bytes]) -> List[bytes]:
    """REPLY: job-id u64 · status u16 · message str16 · body…"""
    packed = W_HDR + bytes([W_REPLY]) + struct.pack(">QH", job_id, status) + _str16(message)
    return [b"", packed, *body]


def worker_heartbeat() -> List[bytes]:
    return [b"", W_HDR + bytes([W_HEARTBEAT])]


def worker_stopping() -> List[bytes]:
    return [b"", W_HDR + bytes([W_STOPPING])]


def worker_config(policy_version: int) -> List[bytes]:
    """CONFIG (worker -> broker): the policy version this worker knows (0: none)."""
    return [b"", W_HDR + bytes([W_CONFIG]) + struct.pack(">Q", policy_version)]


def worker_disconnect(status: Optional[int] = None, message: bytes = b"") -> List[bytes]:
    """DISCONNECT, with a status (204: this worker holds nothing) or without."""
    packed = W_HDR + bytes([W_DISCONNECT])
    if status is not None:
        packed += struct.pack(">H", status) + _str16(message)
    return [b"", packed]


class Welcome(NamedTuple):
    heartbeat_ms: int
    liveness: int
    broker_heartbeat_ms: int
    broker_id: int
    heartbeat_endpoint: bytes
    backends: List[bytes] = []  # a family's backends, this broker's first (empty without one)


class WorkRequest(NamedTuple):
    job_id: int
    timeout_ms: int
    service: bytes
    body: List[bytes]


class Disconnect(NamedTuple):
    status: Optional[int]
    message: bytes


class Stopping(NamedTuple):
    pass


class ServiceConfig(NamedTuple):
    """One service of a CONFIG, as on the wire."""

    service: bytes
    request_timeout_ms: int
    max_queue: int
    max_concurrency: int  # 0: no cap
    idempotent: int  # 0: the workers' flags decide, 1 yes, 2 no


class Config(NamedTuple):
    """CONFIG (broker -> worker): 200, or 426 when the version the worker sent was stale."""

    status: int
    policy_version: int
    services: List[ServiceConfig]


WorkerMessage = Union[Welcome, WorkRequest, Disconnect, Stopping, Config]


def decode_worker(frames: Sequence[bytes]) -> Optional[WorkerMessage]:
    """A message from the broker to a worker, or None for one to ignore (malformed, unknown).
    Either framing."""
    if len(frames) >= 2 and frames[1] == W_HDR1:
        translated = from_v1(frames)
        if translated is None:
            return None
        frames = translated
    split = _split(frames, W_HDR)
    if split is None:
        return None
    command, packed, body = split
    try:
        r = _Reader(packed, 5)
        if command == W_REQUEST:
            job_id, timeout_ms, service = r.u64(), r.u32(), r.str8()
            return WorkRequest(job_id, timeout_ms, service, body) if r.done() else None
        if body:
            return None
        if command == W_WELCOME:
            hb, liveness, bhb, bid, ep = r.u32(), r.u32(), r.u32(), r.u64(), r.str16()
            backends: List[bytes] = []
            if not r.done():  # a family's backends follow
                backends = [r.str16() for _ in range(r.u16())]
                if not r.done():
                    return None
            return Welcome(hb, liveness, bhb, bid, ep, backends)
        if command == W_DISCONNECT:
            if r.done():
                return Disconnect(None, b"")
            status, message = r.u16(), r.str16()
            return Disconnect(status, message) if r.done() else None
        if command == W_STOPPING:
            return Stopping() if r.done() else None
        if command == W_CONFIG:
            status, version, count = r.u16(), r.u64(), r.u16()
            if count > MAX_CONFIG_SERVICES:
                return None
            services = []
            for _ in range(count):
                name = r.str8()
                timeout, max_queue, max_conc, idem = r.u32(), r.u32(), r.u32(), r.u8()
                if not name or idem > 2:
                    return None
                services.append(ServiceConfig(name, timeout, max_queue, max_conc, idem))
            return Config(status, version, services) if r.done() else None
    except ValueError:
        return None
    return None


def decode_broker_heartbeat(frames: Sequence[bytes]) -> Optional[int]:
    """The broker-id of a PUB heartbeat (S0H1 · broker-id u64 · sequence u64), or None."""
    if len(frames) != 3 or frames[0] != H_HDR or len(frames[1]) != 8 or len(frames[2]) != 8:
        return None
    return int(struct.unpack(">Q", frames[1])[0])


# ---------------------------------------------------------------------------------------------
# S0/1 (docs/protocol.md, "Client <-> broker (S0C1)", "Worker <-> broker (S0W1)"): the same
# commands with one frame per field. Rather than a second codec, messages are translated to and
# from S0/2 at the socket: one encoder and one decoder for both framings.

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")


def to_v1(frames: List[bytes]) -> Optional[List[bytes]]:
    """An S0/2 message this library encoded, in S0/1 framing; None for what S0/1 lacks (HELLO,
    CONFIG).
    READY loses its name frame and the moved flag (S0/2 only)."""
    packed, body = frames[1], frames[2:]
    header, command = packed[:4], packed[4]
    r = _Reader(packed, 5)
    if header == C_HDR:
        h = C_HDR1
        if command == C_REQUEST:
            rid, timeout = r.take(8), r.take(4)
            return [b"", h, bytes([command]), rid, r.str8(), timeout, *body]
        if command == C_PING:
            return [b"", h, bytes([command]), *body]
        return None
    h = W_HDR1
    if command == W_READY:
        fixed = r.take(8) + bytes([r.u8() & FLAG_IDEMPOTENT])
        services = []
        while not r.done():
            services.append(r.str8())
        return [b"", h, bytes([command]), fixed[:4], fixed[4:8], fixed[8:], *services]
    if command == W_REPLY:
        return [b"", h, bytes([command]), r.take(8), r.take(2), r.str16(), *body]
    if command == W_DISCONNECT and not r.done():
        return [b"", h, bytes([command]), r.take(2), r.str16()]
    if command == W_CONFIG:
        return None  # S0/2 only
    return [b"", h, bytes([command])]


def from_v1(frames: Sequence[bytes]) -> Optional[List[bytes]]:
    """An S0/1 message from the broker as the S0/2 message it stands for, or None when it is
    malformed (fields of the wrong size, too few frames)."""
    if len(frames) < 3 or frames[0] != b"" or len(frames[2]) != 1:
        return None
    header, command, f = bytes(frames[1]), frames[2][0], [bytes(x) for x in frames[3:]]
    try:
        if header == C_HDR1:
            if command == C_REPLY and len(f) >= 3 and len(f[0]) == 8 and len(f[1]) == 2:
                return [b"", C_HDR + bytes([command]) + f[0] + f[1] + _str16(f[2]), *f[3:]]
            if command == C_PONG:
                return [b"", C_HDR + bytes([command])]
            return None
        if header != W_HDR1:
            return None
        head = W_HDR + bytes([command])
        if command == W_REQUEST and len(f) >= 3 and len(f[0]) == 8 and len(f[2]) == 4 and len(f[1]) <= 255:
            return [b"", head + f[0] + f[2] + _str8(f[1]), *f[3:]]
        if command == W_WELCOME and len(f) == 4 and len(f[0]) == 4 and len(f[1]) == 4 and len(f[3]) == 8:
            return [b"", head + f[0] + f[1] + f[0] + f[3] + _str16(f[2])]  # one interval both ways
        if command == W_DISCONNECT and len(f) == 2 and len(f[0]) == 2:
            return [b"", head + f[0] + _str16(f[1])]
        if command in (W_DISCONNECT, W_STOPPING) and not f:
            return [b"", head]
    except ValueError:
        return None
    return None
