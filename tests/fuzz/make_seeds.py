#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Writes hand-made seed inputs for the fuzz targets (valid and near-valid messages and files) into
OUT/<target>/. They are the raw material of the committed corpus: merge them into
tests/fuzz/corpus/<target> with the target's -merge=1 (tests/fuzz/README.md) rather than
committing them as they are.

    tests/fuzz/make_seeds.py /tmp/seeds
"""
import hashlib
import json
import os
import struct
import sys

ID = b"\x00\x01\x02\x03\x04"  # a ROUTER identity


def u8(v): return struct.pack(">B", v)
def u16(v): return struct.pack(">H", v)
def u32(v): return struct.pack(">I", v)
def u64(v): return struct.pack(">Q", v)
def str8(s): return u8(len(s)) + s
def str16(s): return u16(len(s)) + s


def split(frames):
    """scale0_decode_fuzz's input: each frame as a one-byte length, then its bytes."""
    out = b""
    for f in frames:
        assert len(f) < 256
        out += u8(len(f)) + f
    return out


def batch_entry(packed, parts):
    """One BATCH entry: its packed frame without the header, then its body parts (None: the next
    separate frame)."""
    out = u32(len(packed)) + packed + u8(len(parts))
    for p in parts:
        out += u32(0xFFFFFFFF) if p is None else u32(len(p)) + p
    return out


def decode_seeds():
    rid = u64(42)
    s = [
        # S0/1 at the broker (identity first)
        [ID, b"", b"S0C1", b"\x01", rid, b"echo", u32(1000), b"hello"],
        [ID, b"", b"S0C1", b"\x01", rid, b"echo", u32(1000)],
        [ID, b"", b"S0C1", b"\x03", b"ping"],
        [ID, b"", b"S0C1", b"\x01", rid, b"", u32(1000), b"x"],  # empty service
        [ID, b"", b"S0C1", b"\x01", b"short", b"echo", u32(1000)],  # bad id width
        [ID, b"", b"S0C1", b"\x09", rid],  # unknown command
        [ID, b"", b"S0C9", b"\x01", rid, b"echo", u32(1000)],  # unknown version: 505
        [ID, b"", b"S0W1", b"\x01", u32(4), u32(1000), u8(0), b"echo", b"upper"],
        [ID, b"", b"S0W1", b"\x01", u32(0), u32(1000), u8(0), b"echo"],  # concurrency 0
        [ID, b"", b"S0W1", b"\x01", u32(1), u32(1000), u8(1), b"echo"],  # idempotent
        [ID, b"", b"S0W1", b"\x03", u64(7), u16(200), b"", b"answer"],
        [ID, b"", b"S0W1", b"\x03", u64(7), u16(999), b"x"],
        [ID, b"", b"S0W1", b"\x04"],
        [ID, b"", b"S0W1", b"\x05", u16(503), b"going"],
        [ID, b"", b"S0W1", b"\x05"],
        [ID, b"", b"S0W1", b"\x07"],
        # S0/2 packed frames
        [ID, b"", b"S0C2\x01" + rid + u32(500) + str8(b"echo"), b"body"],
        [ID, b"", b"S0C2\x01" + rid + u32(500) + str8(b"echo") + b"!"],  # trailing byte
        [ID, b"", b"S0C2\x01" + rid[:5]],  # short
        [ID, b"", b"S0C2\x03", b"p"],
        [ID, b"", b"S0W2\x01" + u32(2) + u32(1000) + u8(0) + str8(b"a") + str8(b"bb")],
        [ID, b"", b"S0W2\x01" + u32(2) + u32(1000) + u8(0) + str8(b"a") + u8(9)],
        [ID, b"", b"S0W2\x03" + u64(7) + u16(200) + str16(b"ok"), b"answer"],
        [ID, b"", b"S0W2\x04"],
        [ID, b"", b"S0W2\x05" + u16(503) + str16(b"bye")],
        [ID, b"", b"S0W2\x07"],
        # Majordomo 0.1
        [ID, b"", b"MDPC01", b"echo", b"hi"],
        [ID, b"", b"MDPC01", b"mmi.service", b"echo"],
        [ID, b"", b"MDPW01", b"\x01", b"echo"],
        [ID, b"", b"MDPW01", b"\x03", u64(7), b"", b"reply"],
        [ID, b"", b"MDPW01", b"\x04"],
        [ID, b"", b"MDPW01", b"\x05"],
        # at a worker and a client (DEALER: no identity)
        [b"", b"S0W1", b"\x06", u32(1000), u32(3), b"tcp://127.0.0.1:5557", u64(9)],
        [b"", b"S0W1", b"\x02", u64(7), b"echo", u32(1000), b"body"],
        [b"", b"S0W2\x06" + u32(1000) + u32(3) + u32(250) + u64(9) + str16(b"tcp://h:1")],
        [b"", b"S0W2\x02" + u64(7) + u32(1000) + str8(b"echo"), b"body"],
        [b"", b"S0C1", b"\x02", rid, u16(200), b"", b"answer"],
        [b"", b"S0C1", b"\x04", b"ping"],
        [b"", b"S0C2\x02" + rid + u16(503) + str16(b"no worker")],
        # BATCH (docs/protocol.md, "Batches"): entries of (size, packed without header, parts)
        [ID, b"", b"S0C2\x09" + u16(2)
         + batch_entry(b"\x01" + rid + u32(500) + str8(b"echo"), [b"a"])
         + batch_entry(b"\x01" + u64(43) + u32(0) + str8(b"echo"), [None]), b"separate"],
        [ID, b"", b"S0W2\x09" + u16(2)
         + batch_entry(b"\x03" + u64(7) + u16(200) + str16(b""), [b"r"])
         + batch_entry(b"\x03" + u64(8) + u16(500) + str16(b"no"), [])],
        [b"", b"S0C2\x09" + u16(2)
         + batch_entry(b"\x02" + rid + u16(200) + str16(b""), [b"x", b""])
         + batch_entry(b"\x02" + u64(43) + u16(504) + str16(b"late"), [])],
        [ID, b"", b"S0C2\x09" + u16(1) + batch_entry(b"\x09" + u16(0), [])],  # nested
        [ID, b"", b"S0C2\x09" + u16(0)],  # empty
        # broker heartbeat (PUB)
        [b"S0H1", u64(9), u64(1)],
        [b"S0H1", u64(9)],
    ]
    return [split(f) for f in s]


def config_seeds():
    return [s.encode() for s in [
        "",
        "# nothing but a comment\n",
        'frontend = "tcp://127.0.0.1:5555"\nbackend = "tcp://127.0.0.1:5556"\n'
        'heartbeat = "tcp://127.0.0.1:5557"\n',
        'frontend = "tcp://*:5555"\n',
        'frontend = "ipc:///run/scale0/frontend"\n',
        'frontend = "inproc://x"\n',
        'frontend = "udp://h:1"\n',
        'frontend = "tcp://h:99999"\n',
        'frontend = "tcp://:5555"\n',
        "heartbeat-interval = 1000\nliveness = 3\nmax-worker-heartbeats = 500\n",
        "heartbeat-interval = 5\n",
        "liveness = 101\n",
        "request-timeout = 0x7fffffffffffffff\n",
        "max-message-bytes = 1_048_576\n",
        "max-frames = 12.5\n",
        'max-queue = "10"\n',
        "drain-timeout = 1979-05-27T07:32:00Z\n",
        "no-worker-timeout = true\n",
        'idempotent = ["echo", "upper"]\n',
        "idempotent = []\n",
        'idempotent = ["", "x"]\n',
        "idempotent = [1, 2]\n",
        'idempotent = "echo"\n',
        'metrics-listen = ""\n',
        'metrics-listen = "0.0.0.0:0"\n',
        'metrics-listen = ":9555"\n',
        'log-level = "debug"\nlog-format = "json"\n',
        'log-level = "loud"\n',
        "unknown-key = 1\n",
        "[table]\nliveness = 3\n",
        "liveness = \n",
        'frontend = "tcp://127.0.0.1:5555\n',
        "liveness = 3\nliveness = 4\n",
        'frontend = """\ntcp://h:1"""\n',
        "frontend = 'tcp://h:1'\n",
        'log-level = "\\u00e9"\n',
        "a.b.c = [[1], {x = 2}]\n",
        "\xef\xbb\xbfliveness = 3\n",
        # service policies
        '[service."echo"]\nrequest-timeout = 400\nmax-queue = 5\nidempotent = false\n'
        'max-concurrency = 2\n',
        "[service.'a b']\nidempotent = true\n[service.\"caf\\u00e9\"]\n",
        'service.echo.max-queue = 1\n',
        '[service."mmi.x"]\n',
        '[service.""]\n',
        '[service."a\\u0001b"]\n',
        '[service."echo"]\nmax-concurrency = 1025\n',
        '[service."echo"]\nretries = 1\n',
        '[[service.echo]]\nmax-queue = 1\n',
        "service = 5\n",
    ]]


def mongrel2_seeds():
    uuid = b"34f9ceee-cd52-4b7f-b197-88bf2f0ec378"

    def ns(b, t=b","):
        return str(len(b)).encode() + b":" + b + t

    def msg(headers, body=b"", path=b"/hello", conn=b"7", tnet=False):
        if tnet:
            inner = b"".join(ns(k.encode()) + (ns(b"".join(ns(i.encode()) for i in v), b"]")
                                               if isinstance(v, list) else ns(v.encode()))
                             for k, v in headers.items())
            h = ns(inner, b"}")
        else:
            h = ns(json.dumps(headers, separators=(",", ":")).encode())
        return uuid + b" " + conn + b" " + path + b" " + h + ns(body)

    get = {"PATH": "/hello", "host": "example.com", "accept": "*/*",
           "x-forwarded-for": "127.0.0.1", "METHOD": "GET", "VERSION": "HTTP/1.1",
           "URI": "/hello?a=1", "QUERY": "a=1", "PATTERN": "/", "URL_SCHEME": "http",
           "REMOTE_ADDR": "127.0.0.1"}
    post = dict(get, METHOD="POST", **{"content-type": "text/plain", "content-length": "5"})
    s = [
        msg(get),
        msg(get, tnet=True),
        msg(post, b"hello"),
        msg(dict(get, cookie=["a=1", "b=2"])),
        msg(dict(get, cookie=["a=1", "b=2"]), tnet=True),
        msg(dict(get, METHOD="HEAD", VERSION="HTTP/1.0", connection="keep-alive")),
        msg(dict(get, connection="close, x-drop", **{"x-drop": "1"})),
        msg(dict(get, **{"x-request-id": "abc-123"})),
        msg(dict(get, **{"x-request-id": "bad id\u0001"})),
        msg(dict(get, URI="", PATH="/p", QUERY="")),
        msg(dict(get, URL_SCHEME="https")),
        msg({"METHOD": "JSON", "PATH": "@*"}, b'{"type":"disconnect"}', path=b"@*"),
        msg({"METHOD": "JSON", "PATH": "@*"}, b'{"type":"msg"}', path=b"@*"),
        msg({"METHOD": "WEBSOCKET", "PATH": "/ws"}, b"frame"),
        msg({"METHOD": "GET"}),
        msg({"PATH": "/"}),  # no METHOD
        msg({"METHOD": "G E T", "PATH": "/"}),
        msg(dict(get, **{"bad name": "x"})),
        msg(dict(get, tab="1\t2")),
        uuid + b" 7 /hello 2:{},0:,junk",
        uuid + b" x /hello 2:{},0:,",
        uuid + b" 7 /hello 02:{},0:,",
        uuid + b" 7 /hello 99:{},0:,",
        uuid + b" 7 /hello 2:{}]0:,",
        b"4:name,5:value,4:list,8:1:a,1:b,],",  # tnetstring header dictionary payload
        b"4:name,1:1#",
        # worker responses (client_response)
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi",
        b"HTTP/1.1 204 No Content\r\nX-Request-Id: w\r\n\r\n",
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
        b"HTTP/1.1 503 \r\nRetry-After: 1\r\nConnection: close, x-a\r\nx-a: 1\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhi",
        b"HTTP/1.0 200 OK\r\n\r\nbody to the end",
    ]
    return s


def peer_seeds():
    """scale0_peer_fuzz's input: steps of op, length, bytes (op 0 a message split into frames)."""
    def msg(rid, packed):
        body = split([rid, b"", packed])
        return u8(0) + u8(len(body)) + body

    def tick(n=3):
        return u8(1) + u8(1) + u8(n)

    def link(n, up=True):
        return u8(2 if up else 3) + u8(1) + u8(n)

    P = b"S0P1"
    hello = P + b"\x01" + u64(7) + u32(100) + u32(3) + u8(0) + str8(b"default") + \
        str16(b"tcp://10.0.0.2:5558") + str16(b"") + str16(b"")
    peers = P + b"\x02" + u16(2) + str16(b"tcp://10.0.0.3:5558") + str16(b"tcp://10.0.0.4:1")
    state = P + b"\x03" + u64(1) + u8(1) + u16(2) + str8(b"echo") + u32(1) + u32(2) + u32(0) + \
        u8(1) + str8(b"svc") + u32(3) + u32(0) + u32(5) + u8(0)
    delta = P + b"\x03" + u64(2) + u8(0) + u16(1) + str8(b"echo") + u32(0) + u32(0) + u32(0) + u8(0)
    bye = P + b"\x04" + u16(503) + str16(b"bye")
    own = P + b"\x01" + u64(0x1122334455667788) + u32(100) + u32(3) + u8(0) + str8(b"default") + \
        str16(b"tcp://10.0.0.9:5558") + str16(b"") + str16(b"")
    rid = b"conn-2"
    own_rid = b"L" + u64(0x1122334455667788) + u32(1)
    return [
        msg(rid, hello) + msg(rid, peers) + msg(rid, state) + tick() + msg(rid, delta),
        msg(rid, hello) + tick(40) + tick(40) + msg(rid, state),
        link(1) + msg(own_rid, own) + tick(),
        msg(rid, hello) + link(2) + tick(100) + msg(rid, bye) + link(2, False),
        msg(rid, state) + msg(rid, hello[:-1]) + msg(rid, peers + b"x"),
        msg(rid, hello) + msg(rid, P + b"\x03" + u64(9) + u8(0) + u16(1001)),
    ]


def main():
    out = sys.argv[1]
    for target, seeds in (("scale0_decode_fuzz", decode_seeds()),
                          ("scale0_peer_fuzz", peer_seeds()),
                          ("scale0_config_fuzz", config_seeds()),
                          ("scale0_mongrel2_fuzz", mongrel2_seeds())):
        d = os.path.join(out, target)
        os.makedirs(d, exist_ok=True)
        for s in seeds:
            with open(os.path.join(d, hashlib.sha1(s).hexdigest()), "wb") as f:
                f.write(s)
        print(f"{target}: {len(seeds)} seeds in {d}")


if __name__ == "__main__":
    main()
