# SPDX-License-Identifier: Apache-2.0
"""The pure parts, without a broker: the S0/2 codec (docs/protocol.md) and the HTTP encoding
(docs/http.md). Malformed input is ignored (None), never raised."""

from __future__ import annotations

import struct
from typing import List

import pytest

from scale0 import _http, _wire


def test_client_request_layout() -> None:
    frames = _wire.client_request(0x0102030405060708, b"echo", 2500, [b"a", b"b"])
    assert frames == [b"", b"S0C2\x01" + bytes(range(1, 9)) + struct.pack(">I", 2500) + b"\x04echo", b"a", b"b"]


def test_client_reply_decoding() -> None:
    packed = b"S0C2\x02" + struct.pack(">QH", 7, 503) + struct.pack(">H", 5) + b"nope!"
    assert _wire.decode_client([b"", packed, b"x"]) == _wire.ClientReply(7, 503, b"nope!", [b"x"])
    assert _wire.decode_client([b"", b"S0C2\x04"]) == "pong"
    bad: List[List[bytes]] = [[b"", packed + b"extra"], [b"", packed[:-1]], [b"x", packed], [b"", b"S0C1\x02"],
                              [b""], []]
    for frames in bad:
        assert _wire.decode_client(frames) is None


def test_client_hello_welcome() -> None:
    assert _wire.client_hello() == [b"", b"S0C2\x05"]
    packed = (b"S0C2\x06" + struct.pack(">Q", 3) + struct.pack(">H", 2) + b"\x00\x01a" + b"\x00\x02bc"
              + struct.pack(">H", 1) + b"\x03svc")
    assert _wire.decode_client([b"", packed]) == _wire.ClientWelcome(3, [b"a", b"bc"], [b"svc"])
    empty = b"S0C2\x06" + struct.pack(">QHH", 3, 0, 0)
    assert _wire.decode_client([b"", empty]) == _wire.ClientWelcome(3, [], [])
    assert _wire.decode_client([b"", packed[:-1]]) is None
    assert _wire.decode_client([b"", empty + b"xy"]) is None


def test_client_hello_and_welcome_flags() -> None:
    """docs/protocol.md, "Batches": HELLO may carry one flags byte (bit 0: takes batches); the
    WELCOME that answers one ends with the broker's flags byte, else it has none."""
    assert _wire.client_hello(_wire.HELLO_BATCHES) == [b"", b"S0C2\x05\x01"]
    assert _wire.client_hello(0) == [b"", b"S0C2\x05"]  # flags 0: no byte at all
    welcome = b"S0C2\x06" + struct.pack(">QH", 9, 1) + b"\x00\x03t:1" + struct.pack(">H", 0)
    plain = _wire.decode_client([b"", welcome])
    assert plain == _wire.ClientWelcome(9, [b"t:1"], [], 0) and plain.flags == 0
    flagged = _wire.decode_client([b"", welcome + b"\x01"])
    assert isinstance(flagged, _wire.ClientWelcome) and flagged.flags == _wire.HELLO_BATCHES
    assert flagged[:3] == plain[:3]
    assert _wire.decode_client([b"", welcome + b"\x00"]) == _wire.ClientWelcome(9, [b"t:1"], [], 0)
    assert _wire.decode_client([b"", welcome + b"\x01\x00"]) is None  # bytes after the flags
    assert _wire.decode_client([b"", welcome + b"\x01", b"body"]) is None


def test_worker_ready_layout() -> None:
    frames = _wire.worker_ready(8, 0, _wire.FLAG_IDEMPOTENT, [b"a", b"bc"], b"py-1")
    assert frames == [b"", b"S0W2\x01" + struct.pack(">IIB", 8, 0, 1) + b"\x01a\x02bc", b"py-1"]


def test_worker_decoding() -> None:
    welcome = b"S0W2\x06" + struct.pack(">IIIQ", 1000, 3, 500, 42) + struct.pack(">H", 3) + b"ep!"
    assert _wire.decode_worker([b"", welcome]) == _wire.Welcome(1000, 3, 500, 42, b"ep!")
    family = welcome + struct.pack(">H", 1) + struct.pack(">H", 2) + b"xy"
    assert _wire.decode_worker([b"", family]) == _wire.Welcome(1000, 3, 500, 42, b"ep!", [b"xy"])
    assert _wire.decode_worker([b"", family + b"?"]) is None
    request = b"S0W2\x02" + struct.pack(">QI", 9, 100) + b"\x03svc"
    assert _wire.decode_worker([b"", request, b"body"]) == _wire.WorkRequest(9, 100, b"svc", [b"body"])
    assert _wire.decode_worker([b"", b"S0W2\x05"]) == _wire.Disconnect(None, b"")
    bye = b"S0W2\x05" + struct.pack(">H", 400) + struct.pack(">H", 2) + b"no"
    assert _wire.decode_worker([b"", bye]) == _wire.Disconnect(400, b"no")
    assert _wire.decode_worker([b"", b"S0W2\x07"]) == _wire.Stopping()
    assert _wire.decode_worker([b"", b"S0W2\x07", b"body"]) is None
    assert _wire.decode_worker([b"", b"S0W2\x09"]) is None
    assert _wire.decode_worker([b"", request[:-1]]) is None


def test_broker_heartbeat() -> None:
    assert _wire.decode_broker_heartbeat([b"S0H1", struct.pack(">Q", 5), struct.pack(">Q", 1)]) == 5
    assert _wire.decode_broker_heartbeat([b"S0H1", b"short", struct.pack(">Q", 1)]) is None


def test_service_names() -> None:
    assert _wire.valid_service_name(b"echo") and _wire.valid_service_name("café".encode())
    for bad in (b"", b"x" * 256, b"a\nb", b"\x7f", "\u0085".encode(), b"\xff"):
        assert not _wire.valid_service_name(bad)


def test_milliseconds() -> None:
    assert (_wire.ms(None), _wire.ms(0), _wire.ms(0.0001), _wire.ms(2.5)) == (0, 0, 1, 2500)


def test_http_request_parsing() -> None:
    req = _http.parse_request(b"POST /a?b HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nContent-Length: 2\r\n\r\nhi")
    assert req == _http.HttpRequest("POST", "/a?b", [("Host", "h"), ("X-A", "1"), ("Content-Length", "2")], b"hi")
    for bad in (b"no http", b"GET /\r\n\r\n", b"GET / HTTP/1.1\r\nBad\r\n\r\n",
                b"GET / HTTP/1.1\r\nContent-Length: 3\r\n\r\nhi"):
        with pytest.raises(_http.NotEncoded):
            _http.parse_request(bad)


def test_http_response_encoding() -> None:
    head, body = _http.encode_response("GET", "200 OK", [("X-A", "1"), ("Connection", "close")], [b"ab", b"c"])
    assert (head, body) == (b"HTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Length: 3\r\n\r\n", b"abc")
    head, body = _http.encode_response("GET", "200 OK", [("Transfer-Encoding", "chunked")], [b"ab", b"", b"c"])
    assert body == b"2\r\nab\r\n1\r\nc\r\n0\r\n\r\n" and b"Transfer-Encoding: chunked" in head
    (head,) = _http.encode_response("HEAD", "200 OK", [], [b"abc"])
    assert head == b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n"
    (head,) = _http.encode_response("GET", "204 No Content", [], [])
    assert head == b"HTTP/1.1 204 No Content\r\n\r\n"
    with pytest.raises(ValueError):
        _http.encode_response("GET", "200 OK", [("X", "a\r\nInjected: 1")], [])


def test_s01_translation() -> None:
    """S0/1 is S0/2 with one frame per field: outgoing messages translate field for field, and
    incoming ones decode as their S0/2 counterparts."""
    req = _wire.to_v1(_wire.client_request(5, b"echo", 300, [b"a", b"b"]))
    assert req == [b"", b"S0C1", b"\x01", struct.pack(">Q", 5), b"echo", struct.pack(">I", 300), b"a", b"b"]
    assert _wire.to_v1(_wire.client_hello()) is None
    ready = _wire.to_v1(_wire.worker_ready(4, 0, _wire.FLAG_IDEMPOTENT | _wire.FLAG_MOVED, [b"a", b"b"], b"n"))
    assert ready == [b"", b"S0W1", b"\x01", struct.pack(">I", 4), struct.pack(">I", 0), b"\x01", b"a", b"b"]
    reply = _wire.to_v1(_wire.worker_reply(9, 404, b"no", [b"x"]))
    assert reply == [b"", b"S0W1", b"\x03", struct.pack(">Q", 9), struct.pack(">H", 404), b"no", b"x"]
    assert _wire.to_v1(_wire.worker_disconnect(204)) == [b"", b"S0W1", b"\x05", struct.pack(">H", 204), b""]
    assert _wire.to_v1(_wire.worker_heartbeat()) == [b"", b"S0W1", b"\x04"]
    v1_reply = [b"", b"S0C1", b"\x02", struct.pack(">Q", 5), struct.pack(">H", 505), b"bad version", b"x"]
    assert _wire.decode_client(v1_reply) == _wire.ClientReply(5, 505, b"bad version", [b"x"])
    assert _wire.decode_client([b"", b"S0C1", b"\x04", b"payload"]) == "pong"
    v1_req = [b"", b"S0W1", b"\x02", struct.pack(">Q", 7), b"svc", struct.pack(">I", 50), b"body"]
    assert _wire.decode_worker(v1_req) == _wire.WorkRequest(7, 50, b"svc", [b"body"])
    v1_welcome = [b"", b"S0W1", b"\x06", struct.pack(">I", 200), struct.pack(">I", 3), b"tcp://*:1", struct.pack(">Q", 8)]
    assert _wire.decode_worker(v1_welcome) == _wire.Welcome(200, 3, 200, 8, b"tcp://*:1", [])
    assert _wire.decode_worker([b"", b"S0W1", b"\x05", struct.pack(">H", 400), b"why"]) == _wire.Disconnect(400, b"why")
    assert _wire.decode_worker([b"", b"S0W1", b"\x02", b"short", b"svc", struct.pack(">I", 50)]) is None
    assert _wire.decode_client([b"", b"S0C1", b"\x02", b"short"]) is None


def test_batches_round_trip_and_refuse_what_is_malformed() -> None:
    """docs/protocol.md, "Batches": several messages in one, bodies up to 256 bytes inline, larger
    ones as frames of their own; one message stays as it is; a malformed batch is refused whole."""
    b = _wire.Batcher()
    one = _wire.worker_reply(1, 200, b"", [b"a" * 10])
    b.add(one)
    assert b.take() == one and b.take() is None
    msgs = [_wire.worker_reply(1, 200, b"", [b"a" * 256]), _wire.worker_reply(2, 500, b"no", []),
            _wire.worker_reply(3, 200, b"", [b"b" * 257, b""])]
    for m in msgs:
        assert b.batchable(m) and b.fits(m)
        b.add(m)
    out = b.take()
    assert out is not None and _wire.is_batch(out) and len(out) == 3  # "", packed, one big body
    assert _wire.split_batch(out) == msgs
    assert _wire.split_batch(out[:2]) is None  # a separate frame missing
    assert _wire.split_batch(out + [b"extra"]) is None  # one left over
    assert _wire.split_batch([out[0], out[1] + b"x", out[2]]) is None  # bytes left over
    assert _wire.split_batch([b"", b"S0W2\x09\x00\x00"]) is None  # no entry
    assert not b.batchable(_wire.worker_reply(4, 500, b"m" * 5000, []))  # too big: sent alone
