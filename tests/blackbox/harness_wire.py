# SPDX-License-Identifier: Apache-2.0
"""Black-box harness, the wire: the S0/1 and Majordomo protocol constants (docs/protocol.md),
the big-endian packing helpers (u8..u64, du16..du64, str8/str16, PackedReader) and the small
shorthands every other harness module uses (b_, frames_of, now, short). No state, no processes,
no sockets.
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


class PackedReader:
    """Reads packed S0/2 and S0P1 fields (docs/protocol.md, docs/family.md), failing the test on a
    short frame."""

    def __init__(self, data):
        self.data, self.at = data, 0

    def take(self, n):
        if self.at + n > len(self.data):
            raise AssertionError("short packed frame: %r" % (self.data,))
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
