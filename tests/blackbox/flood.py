# SPDX-License-Identifier: Apache-2.0
"""Flood client for the heartbeat-under-load test, run as a separate process so that it does not
compete for the test process's GIL. Usage:
    flood.py ENDPOINT SERVICE WINDOW SECONDS MAX_TOTAL
Keeps WINDOW S0/1 requests in flight for SECONDS (or until MAX_TOTAL sent), then waits (bounded)
for the outstanding replies and prints one JSON line with counts."""

import json
import struct
import sys
import time

import zmq


def main():
    endpoint, service, window, seconds, max_total = sys.argv[1], sys.argv[2].encode(), int(sys.argv[3]), \
        float(sys.argv[4]), int(sys.argv[5])
    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.SNDHWM, 0)
    s.setsockopt(zmq.RCVHWM, 0)
    s.connect(endpoint)
    sent = ok = 0
    errors = {}
    outstanding = set()
    payload = b"p" * 64

    def send():
        nonlocal sent
        sent += 1
        rid = sent
        outstanding.add(rid)
        s.send_multipart([b"", b"S0C1", b"\x01", struct.pack(">Q", rid), service, struct.pack(">I", 20000),
                          payload])

    t0 = time.monotonic()
    stop_at = t0 + seconds
    for _ in range(window):
        send()
    drain_until = None
    bad = 0
    for _ in range(10 ** 7):
        t = time.monotonic()
        if t >= stop_at and drain_until is None:
            drain_until = t + 15.0
        if drain_until is not None and (not outstanding or t >= drain_until):
            break
        if not s.poll(100, zmq.POLLIN):
            continue
        for _ in range(1000):
            try:
                m = s.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            if len(m) < 6 or m[1] != b"S0C1" or m[2] != b"\x02":
                bad += 1
                continue
            rid = struct.unpack(">Q", m[3])[0]
            status = struct.unpack(">H", m[4])[0]
            outstanding.discard(rid)
            if status == 200:
                ok += 1
            else:
                errors[str(status)] = errors.get(str(status), 0) + 1
            if drain_until is None and sent < max_total and time.monotonic() < stop_at:
                send()
    print(json.dumps({"sent": sent, "ok": ok, "errors": errors, "outstanding": len(outstanding), "bad": bad,
                      "elapsed": time.monotonic() - t0}), flush=True)
    s.close(0)
    ctx.term()


if __name__ == "__main__":
    main()
