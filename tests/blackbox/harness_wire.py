# SPDX-License-Identifier: Apache-2.0
"""Black-box harness, the wire: the S0/1 and Majordomo protocol constants (docs/protocol.md),
the big-endian packing helpers (u8..u64, du16..du64, str8/str16, PackedReader), the S0/2 BATCH
codec and the client's S0/2 REQUEST / REPLY / WELCOME (pack_entry, batch_frames, decode,
c_request, parse_c_reply, parse_c_welcome) and the small shorthands every other harness module
uses (b_, frames_of, now, short). No state, no processes, no sockets, nothing but the standard
library: the chaos suite (tests/chaos) imports it too.
"""

import struct
import time


C_HDR = b"S0C1"
W_HDR = b"S0W1"
H_HDR = b"S0H1"
MDPC = b"MDPC01"
MDPW = b"MDPW01"

# client commands
C_REQUEST = 0x01
C_REPLY = 0x02
C_PING = 0x03
C_PONG = 0x04

# worker commands
W_READY = 0x01
W_REQUEST = 0x02
W_REPLY = 0x03
W_HEARTBEAT = 0x04
W_DISCONNECT = 0x05
W_WELCOME = 0x06
W_STOPPING = 0x07

# MDP worker commands
M_READY = b"\x01"
M_REQUEST = b"\x02"
M_REPLY = b"\x03"
M_HEARTBEAT = b"\x04"
M_DISCONNECT = b"\x05"


def u8(v):
    return struct.pack(">B", v)


def u16(v):
    return struct.pack(">H", v)


def u32(v):
    return struct.pack(">I", v)


def u64(v):
    return struct.pack(">Q", v)


def du16(b):
    return struct.unpack(">H", b)[0]


def du32(b):
    return struct.unpack(">I", b)[0]


def du64(b):
    return struct.unpack(">Q", b)[0]


def b_(x):
    if isinstance(x, bytes):
        return x
    if isinstance(x, str):
        return x.encode()
    raise TypeError("expected bytes or str, got %r" % (x,))


def frames_of(body):
    """Normalise a body argument (bytes, str, or list of them) to a list of bytes frames."""
    if body is None:
        return []
    if isinstance(body, (bytes, str)):
        return [b_(body)]
    return [b_(f) for f in body]


def now():
    return time.monotonic()


def short(frames, limit=8):
    out = []
    for f in frames[:limit]:
        out.append(f if len(f) <= 40 else f[:40] + b"...(%d)" % len(f))
    if len(frames) > limit:
        out.append(b"...(%d frames)" % len(frames))
    return out


def str8(s):
    """A packed str8 (1-byte length, then the bytes)."""
    s = b_(s)
    return u8(len(s)) + s


def str16(s):
    """A packed str16 (2-byte length, then the bytes)."""
    s = b_(s)
    return u16(len(s)) + s


class Malformed(AssertionError):
    """A message that is not well-formed S0/2 (docs/protocol.md, "S0/2 compact framing",
    "Batches"): an AssertionError, so it fails a test that meets it."""


class PackedReader:
    """Reads packed S0/2 and S0P1 fields (docs/protocol.md, docs/family.md), failing the test on a
    short frame (Malformed)."""

    def __init__(self, data):
        self.data, self.at = data, 0

    def take(self, n):
        if n < 0 or self.at + n > len(self.data):
            raise Malformed("short packed frame: %r" % (self.data,))
        v = self.data[self.at:self.at + n]
        self.at += n
        return v

    def u8(self):
        return self.take(1)[0]

    def u16(self):
        return du16(self.take(2))

    def u32(self):
        return du32(self.take(4))

    def u64(self):
        return du64(self.take(8))

    def str8(self):
        return self.take(self.u8())

    def str16(self):
        return self.take(self.u16())

    def done(self):
        return self.at == len(self.data)


# ---------------------------------------------------------------------------------------------
# S0/2 (docs/protocol.md, "S0/2 compact framing"): the batch codec ("Batches") and the client's
# REQUEST, REPLY and WELCOME
# ---------------------------------------------------------------------------------------------
C2_HDR = b"S0C2"
W2_HDR = b"S0W2"
C_HELLO = 0x05
C_WELCOME = 0x06
BATCH = 0x09
SEP = 0xFFFFFFFF                 # a part's length meaning "the next separate frame"
INLINE_MAX = 256                 # a sender copies a body frame of up to 256 bytes into the packed frame
BATCH_MAX_ENTRIES = 256
BATCH_MAX_SEPARATE = 64
BATCH_MAX_PACKED = 256 * 1024    # bytes of packed frame (header included)


def pack_entry(message, parts, separate=None):
    """One BATCH entry: (its bytes in the packed frame, its separate frames). Body frames up to 256
    bytes go inline, larger ones as separate frames (the sender rule), unless `separate` (a
    predicate on the frame) says otherwise."""
    out = u32(len(message)) + message + u8(len(parts))
    seps = []
    for p in parts:
        p = b_(p)
        if (separate(p) if separate else len(p) > INLINE_MAX):
            out += u32(SEP)
            seps.append(p)
        else:
            out += u32(len(p)) + p
    return out, seps


def batch_frames(header, entries, count=None, tail=b"", extra=()):
    """The ZeroMQ frames of a BATCH of `entries` [(message, parts)] (message: command byte and
    fields, no header); count/tail/extra falsify it."""
    packed = header + u8(BATCH) + u16(len(entries) if count is None else count)
    seps = []
    for message, parts in entries:
        e, s = pack_entry(message, parts)
        packed += e
        seps += s
    return [b"", packed + tail] + seps + list(extra)


def decode(frames, header, max_packed=BATCH_MAX_PACKED):
    """An S0/2 message from the broker: (is_batch, [(message, parts)]) where message is the command
    byte and its fields (no header). Raises Malformed when it is not a well-formed S0/2 message or
    batch (a batch's packed frame over max_packed bytes too, unless max_packed is None)."""
    if len(frames) < 2 or frames[0] != b"" or frames[1][:4] != header or len(frames[1]) < 5:
        raise Malformed("not an %r message: %r" % (header, short(frames)))
    packed = frames[1]
    if packed[4] != BATCH:
        return False, [(packed[4:], list(frames[2:]))]
    seps = list(frames[2:])
    r = PackedReader(packed[5:])
    count = r.u16()
    if not 1 <= count <= BATCH_MAX_ENTRIES:
        raise Malformed("batch count %d" % count)
    if len(seps) > BATCH_MAX_SEPARATE:
        raise Malformed("batch with %d separate frames" % len(seps))
    entries = []
    used = 0
    for _ in range(count):
        size = r.u32()
        message = r.take(size)
        if not message or message[0] == BATCH:
            raise Malformed("empty or nested entry: %r" % message[:20])
        parts = []
        for _ in range(r.u8()):
            n = r.u32()
            if n == SEP:
                if used >= len(seps):
                    raise Malformed("a separate frame missing")
                parts.append(seps[used])
                used += 1
            else:
                parts.append(r.take(n))
        entries.append((message, parts))
    if not r.done():
        raise Malformed("bytes left over in a batch")
    if used != len(seps):
        raise Malformed("%d separate frame(s) left over" % (len(seps) - used))
    if max_packed is not None and len(packed) > max_packed:
        raise Malformed("packed frame of %d bytes" % len(packed))
    return True, entries


def c_request(rid, service, timeout_ms=0):
    """A client REQUEST's message (command byte and fields, no header)."""
    return u8(C_REQUEST) + u64(rid) + u32(timeout_ms) + str8(service)


def parse_c_reply(message):
    """(rid, status, message) of a client REPLY (command byte first); Malformed otherwise."""
    if not message or message[0] != C_REPLY:
        raise Malformed("not a REPLY: %r" % message[:40])
    r = PackedReader(message[1:])
    rid, status, text = r.u64(), r.u16(), r.str16()
    if not r.done():
        raise Malformed("REPLY with bytes left over: %r" % message[:60])
    return rid, status, text


def parse_c_welcome(message):
    """(broker-id, frontends, services, flags or None) of a client WELCOME (command byte first);
    Malformed otherwise."""
    if message[:1] != u8(C_WELCOME):
        raise Malformed("expected WELCOME, got %r" % (message[:40],))
    r = PackedReader(message[1:])
    broker_id = r.u64()
    frontends = [r.str16() for _ in range(r.u16())]
    services = [r.str8() for _ in range(r.u16())]
    flags = None if r.done() else r.u8()
    if not r.done():
        raise Malformed("WELCOME with bytes left over: %r" % (message,))
    return broker_id, frontends, services, flags
