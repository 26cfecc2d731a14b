# SPDX-License-Identifier: Apache-2.0
"""A client that sends N requests without reading, then reads: the flood of issue 9 (an MDP client
pipelining 100,000 requests at default socket settings, as the zguide's mdclient2 does). Run as its
own process so the test process's GIL does not slow it. Usage:
    unread_flood.py ENDPOINT SERVICE COUNT PROTOCOL(mdp|s0)
Prints one JSON line: sent, replies (200), errors by status, missing (no outcome within the read
window), duplicates and crossed (native only: a reply id never sent, or whose body is not the
request's).
"""

import json
import struct
import sys
import time

import zmq


def main():
    endpoint, service, count, proto = sys.argv[1], sys.argv[2].encode(), int(sys.argv[3]), sys.argv[4]
    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)  # default HWMs, as an unmodified Majordomo client has
    s.setsockopt(zmq.LINGER, 0)
    s.connect(endpoint)
    t0 = time.monotonic()
    send_deadline = t0 + 60.0
    sent = 0
    for i in range(1, count + 1):
        body = b"%d" % i
        if proto == "mdp":
            frames = [b"", b"MDPC01", service, body]
        else:
            frames = [b"", b"S0C1", b"\x01", struct.pack(">Q", i), service, struct.pack(">I", 60000), body]
        # Blocking sends: a full queue waits, as the zguide client's would.
        if not s.poll(max(1, int((send_deadline - time.monotonic()) * 1000)), zmq.POLLOUT):
            break
        s.send_multipart(frames)
        sent += 1
    t_sent = time.monotonic()
    replies = 0
    errors = {}
    seen = set()
    duplicates = crossed = bad = 0
    read_deadline = time.monotonic() + 90.0
    got = 0
    while got < sent and time.monotonic() < read_deadline:
        if not s.poll(2000, zmq.POLLIN):
            if got >= sent:
                break
            continue
        for _ in range(10000):
            try:
                m = s.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            got += 1
            if proto == "mdp":
                if len(m) < 4 or m[1] != b"MDPC01":
                    bad += 1
                    continue
                body = m[3:]
                # errors arrive as "<code>" "<message>"; echoes as the request's body (a number)
                if len(body) == 2 and body[0].isdigit() and len(body[0]) == 3 and not body[1].isdigit():
                    errors[body[0].decode()] = errors.get(body[0].decode(), 0) + 1
                else:
                    replies += 1
            else:
                if len(m) < 6 or m[1] != b"S0C1" or m[2] != b"\x02":
                    bad += 1
                    continue
                rid = struct.unpack(">Q", m[3])[0]
                status = struct.unpack(">H", m[4])[0]
                if rid in seen:
                    duplicates += 1
                    continue
                if rid < 1 or rid > sent:
                    crossed += 1
                    continue
                seen.add(rid)
                if status == 200:
                    if len(m) < 7 or m[6] != b"%d" % rid:
                        crossed += 1
                    replies += 1
                else:
                    errors[str(status)] = errors.get(str(status), 0) + 1
    print(json.dumps({"sent": sent, "replies": replies, "errors": errors, "missing": sent - got,
                      "received": got, "duplicates": duplicates, "crossed": crossed, "bad": bad,
                      "send_seconds": round(t_sent - t0, 2), "total_seconds": round(time.monotonic() - t0, 2)}),
          flush=True)
    s.close(0)
    ctx.term()


if __name__ == "__main__":
    main()
