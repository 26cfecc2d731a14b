#!/usr/bin/python3
"""TEMPORARY spec-based mock of the scale0 binary, used only to debug the black-box tests' own code.
Not part of the suite."""

import argparse
import collections
import heapq
import json
import os
import random
import signal
import struct
import sys
import time

import zmq

P = lambda fmt, v: struct.pack(fmt, v)
U = lambda fmt, b: struct.unpack(fmt, b)[0]
now = time.monotonic


class Req:
    __slots__ = ("job", "client", "proto", "rid", "service", "deadline", "arrival", "body", "attempts", "worker")


class W:
    def __init__(self, key, proto, services, conc, hb, idem):
        self.key, self.proto, self.services, self.conc, self.credit = key, proto, services, conc, conc
        self.hb, self.idem, self.last, self.held, self.stopping = hb, idem, now(), {}, False


def broker(a):
    ctx = zmq.Context()
    socks = []
    try:
        for e, kind in ((a.frontend, zmq.ROUTER), (a.backend, zmq.ROUTER), (a.heartbeat, zmq.PUB)):
            s = ctx.socket(kind)
            s.setsockopt(zmq.LINGER, 0)
            if kind == zmq.ROUTER:
                s.setsockopt(zmq.MAXMSGSIZE, 2 * a.max_message_bytes)
                s.setsockopt(zmq.ROUTER_MANDATORY, 0)
            s.bind(e)
            socks.append(s)
    except zmq.ZMQError as ex:
        print("error: cannot bind: %s" % ex, file=sys.stderr)
        sys.exit(1)
    eps = [s.getsockopt(zmq.LAST_ENDPOINT).decode() for s in socks]
    print("ready frontend=%s backend=%s heartbeat=%s" % tuple(eps), flush=True)
    stop = []
    signal.signal(signal.SIGTERM, lambda *x: stop.append(1))
    signal.signal(signal.SIGINT, lambda *x: stop.append(1))
    idem_services = set(x.encode() for x in (a.idempotent or "").split(",") if x)
    bid = random.getrandbits(63)
    seq = 0
    workers = {}
    services = {}  # name -> dict(lru=list, queue=deque, workers=set)
    reqs = {}
    inflight = collections.Counter()
    counters = collections.Counter()
    next_job = [1]
    interval = a.heartbeat_interval / 1000.0

    def svc(name):
        return services.setdefault(name, dict(lru=[], queue=collections.deque(), workers=set()))

    def send(key, frames):
        socks[key[0]].send_multipart([key[1]] + frames)

    def reply_client(r, status, message, body):
        if r.job in reqs:
            del reqs[r.job]
        inflight[r.client] -= 1
        if r.proto == "n":
            send(r.client, [b"", b"S0C1", b"\x02", P(">Q", r.rid), P(">H", status), message] + body)
        else:
            if status != 200:
                body = [str(status).encode(), message]
            send(r.client, [b"", b"MDPC01", r.service] + (body or [b""]))

    def err_native(key, rid, status, msg):
        send(key, [b"", b"S0C1", b"\x02", P(">Q", rid), P(">H", status), msg])

    def dispatch(name):
        s = services.get(name)
        if not s:
            return
        while s["queue"] and s["lru"]:
            r = s["queue"].popleft()
            wk = s["lru"].pop(0)
            w = workers[wk]
            w.credit -= 1
            w.held[r.job] = r
            r.worker = wk
            left = max(1, int((r.deadline - now()) * 1000))
            if w.proto == "n":
                send(wk, [b"", b"S0W1", b"\x02", P(">Q", r.job), r.service, P(">I", left)] + r.body)
            else:
                send(wk, [b"", b"MDPW01", b"\x02", P(">Q", r.job), b""] + r.body)
            if w.credit <= 0:
                for sn in w.services:
                    if wk in services[sn]["lru"]:
                        services[sn]["lru"].remove(wk)
            else:
                s["lru"].append(wk)

    def enqueue(r, front=False):
        s = svc(r.service)
        if front:
            s["queue"].appendleft(r)
        else:
            s["queue"].append(r)
        if not s["workers"]:
            s.setdefault("nw", {})
        dispatch(r.service)

    def purge(wk, disconnect=None):
        w = workers.pop(wk, None)
        if not w:
            return
        if disconnect is not None:
            send(wk, disconnect)
        for sn in w.services:
            s = services[sn]
            s["workers"].discard(wk)
            if wk in s["lru"]:
                s["lru"].remove(wk)
        for job, r in list(w.held.items()):
            if (w.idem or r.service in idem_services) and r.attempts == 0:
                r.attempts += 1
                r.worker = None
                enqueue(r, front=True)
            else:
                reply_client(r, 502, b"worker lost")

    def regain(w):
        w.credit += 1
        if w.stopping:
            return
        if w.credit == 1:
            for sn in w.services:
                services[sn]["lru"].append(w.key)
        for sn in w.services:
            dispatch(sn)

    def new_req(key, proto, rid, service, timeout, body):
        if len(reqs) >= 0 and inflight[key] >= a.max_client_inflight:
            if proto == "n":
                err_native(key, rid, 429, b"too many in flight")
            return
        if service.startswith(b"mmi.") or service.startswith(b"scale0."):
            if service == b"mmi.service":
                name = body[0] if body else b""
                ans = b"200" if services.get(name, {}).get("workers") else b"404"
                out = (200, b"", [ans])
            elif service.startswith(b"mmi."):
                out = (200, b"", [b"501"])
            elif service == b"scale0.status":
                st = {"services": {k.decode("latin1"): {"workers": len(v["workers"]), "queue": len(v["queue"])}
                                   for k, v in services.items()}, "dropped": {"unknown_reply": counters["unk"]}}
                out = (200, b"", [json.dumps(st).encode()])
            else:
                out = (501, b"unknown management service", [])
            if proto == "n":
                send(key, [b"", b"S0C1", b"\x02", P(">Q", rid), P(">H", out[0]), out[1]] + out[2])
            else:
                send(key, [b"", b"MDPC01", service] + (out[2] if out[0] == 200 else [b"501"]))
            return
        s = svc(service)
        if len(s["queue"]) >= a.max_queue:
            if proto == "n":
                err_native(key, rid, 503, b"queue full")
            else:
                send(key, [b"", b"MDPC01", service, b"503", b"queue full"])
            return
        r = Req()
        r.job = next_job[0]
        next_job[0] += 1
        r.client, r.proto, r.rid, r.service, r.body, r.attempts, r.worker = key, proto, rid, service, body, 0, None
        r.arrival = now()
        r.deadline = r.arrival + (timeout or a.request_timeout) / 1000.0
        reqs[r.job] = r
        inflight[key] += 1
        enqueue(r)

    def on_msg(si, m):
        key = (si, m[0])
        f = m[1:]
        if len(f) - 1 > a.max_frames or sum(len(x) for x in f) > a.max_message_bytes:
            if len(f) >= 2 and f[1] == b"S0C1":
                rid = U(">Q", f[3]) if len(f) > 3 and len(f[3]) == 8 else 0
                err_native(key, rid, 413, b"too large")
            return
        if len(f) < 2 or f[0] != b"":
            return
        hdr = f[1]
        if hdr[:3] == b"S0C" and len(hdr) == 4:
            rid = U(">Q", f[3]) if len(f) > 3 and len(f[3]) == 8 else 0
            if hdr != b"S0C1":
                return err_native(key, rid, 505, b"version")
            if len(f) < 3 or len(f[2]) != 1:
                return err_native(key, rid, 400, b"bad command")
            cmd = f[2][0]
            if cmd == 3:
                return send(key, [b"", b"S0C1", b"\x04"] + f[3:])
            if cmd != 1:
                return err_native(key, rid, 501, b"unknown command")
            if len(f) < 6 or len(f[3]) != 8 or not (1 <= len(f[4]) <= 255) or len(f[5]) != 4:
                return err_native(key, rid, 400, b"malformed")
            return new_req(key, "n", rid, f[4], U(">I", f[5]), f[6:])
        if hdr[:3] == b"S0W" and len(hdr) == 4:
            if hdr != b"S0W1":
                return send(key, [b"", b"S0W1", b"\x05", P(">H", 505), b"version"])
            w = workers.get(key)
            if len(f) < 3 or len(f[2]) != 1:
                return purge(key, [b"", b"S0W1", b"\x05", P(">H", 400), b"bad"]) if w else \
                    send(key, [b"", b"S0W1", b"\x05", P(">H", 400), b"bad"])
            cmd = f[2][0]
            if w:
                w.last = now()
            if cmd == 1:
                if w:
                    return purge(key, [b"", b"S0W1", b"\x05", P(">H", 400), b"second READY"])
                ok = (len(f) >= 7 and len(f[3]) == 4 and len(f[4]) == 4 and len(f[5]) == 1 and
                      1 <= U(">I", f[3]) <= 1024 and f[5][0] & ~1 == 0 and len(f) - 6 <= 64 and
                      all(1 <= len(x) <= 255 and not x.startswith(b"mmi.") and not x.startswith(b"scale0.")
                          for x in f[6:]))
                if not ok:
                    return send(key, [b"", b"S0W1", b"\x05", P(">H", 400), b"bad READY"])
                hb = max(U(">I", f[4]), a.heartbeat_interval)
                w = W(key, "n", list(f[6:]), U(">I", f[3]), hb, bool(f[5][0] & 1))
                workers[key] = w
                send(key, [b"", b"S0W1", b"\x06", P(">I", hb), P(">I", a.liveness), eps[2].encode(), P(">Q", bid)])
                for sn in w.services:
                    svc(sn)["workers"].add(key)
                    services[sn]["lru"].append(key)
                    dispatch(sn)
                return
            if not w:
                if cmd == 5:
                    return
                return send(key, [b"", b"S0W1", b"\x05", P(">H", 501 if cmd not in (3, 4, 7) else 400), b"unknown"])
            if cmd == 3:
                if len(f) < 6 or len(f[3]) != 8 or len(f[4]) != 2:
                    return purge(key, [b"", b"S0W1", b"\x05", P(">H", 400), b"bad REPLY"])
                job = U(">Q", f[3])
                r = w.held.pop(job, None)
                if r is None:
                    counters["unk"] += 1
                    return
                reply_client(r, U(">H", f[4]), f[5], f[6:])
                return regain(w)
            if cmd == 4:
                return
            if cmd == 5:
                return purge(key)
            if cmd == 7:
                w.stopping = True
                for sn in w.services:
                    if key in services[sn]["lru"]:
                        services[sn]["lru"].remove(key)
                return send(key, [b"", b"S0W1", b"\x07"])
            return purge(key, [b"", b"S0W1", b"\x05", P(">H", 501), b"unknown"])
        if hdr == b"MDPC01":
            if len(f) < 4 or not (1 <= len(f[2]) <= 255):
                return
            return new_req(key, "m", 0, f[2], 0, f[3:])
        if hdr == b"MDPW01":
            if len(f) < 3:
                return
            cmd = f[2]
            w = workers.get(key)
            if w:
                w.last = now()
            if cmd == b"\x01":
                if len(f) != 4 or not (1 <= len(f[3]) <= 255):
                    return
                if w or f[3].startswith(b"mmi.") or f[3].startswith(b"scale0."):
                    return purge(key, [b"", b"MDPW01", b"\x05"]) if w else send(key, [b"", b"MDPW01", b"\x05"])
                w = W(key, "m", [f[3]], 1, a.heartbeat_interval, False)
                w.next_hb = now() + interval
                workers[key] = w
                svc(f[3])["workers"].add(key)
                services[f[3]]["lru"].append(key)
                return dispatch(f[3])
            if cmd in (b"\x03", b"\x04") and not w:
                return send(key, [b"", b"MDPW01", b"\x05"])
            if cmd == b"\x03":
                if len(f) < 5 or len(f[3]) != 8:
                    return
                r = w.held.pop(U(">Q", f[3]), None)
                if r is None:
                    counters["unk"] += 1
                    return
                reply_client(r, 200, b"", f[5:])
                return regain(w)
            if cmd == b"\x05" and w:
                return purge(key)
            return

    poller = zmq.Poller()
    poller.register(socks[0], zmq.POLLIN)
    poller.register(socks[1], zmq.POLLIN)
    next_pub = now()
    while not stop:
        ev = dict(poller.poll(10))
        for si in (0, 1):
            if socks[si] in ev:
                for _ in range(500):
                    try:
                        m = socks[si].recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    on_msg(si, m)
        t = now()
        if t >= next_pub:
            seq += 1
            socks[2].send_multipart([b"S0H1", P(">Q", bid), P(">Q", seq)])
            next_pub = t + interval
        for wk, w in list(workers.items()):
            if w.proto == "m" and t >= w.next_hb:
                send(wk, [b"", b"MDPW01", b"\x04"])
                w.next_hb = t + interval
            if t - w.last > a.liveness * w.hb / 1000.0:
                purge(wk)
        for r in list(reqs.values()):
            if t >= r.deadline:
                if r.worker and r.worker in workers:
                    workers[r.worker].held.pop(r.job, None)
                    counters["late"] += 1
                    regain(workers[r.worker])
                else:
                    services[r.service]["queue"].remove(r)
                reply_client(r, 504, b"deadline")
            elif r.worker is None and not services[r.service]["workers"] and \
                    t - r.arrival >= a.no_worker_timeout / 1000.0:
                services[r.service]["queue"].remove(r)
                reply_client(r, 503, b"no worker for service")
    sys.exit(0)


def worker(a):
    ctx = zmq.Context()
    name = (a.name or "worker-%d" % os.getpid()).encode()
    services = [s.encode() for s in a.service.split(",")]
    stop = []
    signal.signal(signal.SIGTERM, lambda *x: stop.append(1))
    while not stop:
        d = ctx.socket(zmq.DEALER)
        d.setsockopt(zmq.LINGER, 0)
        d.connect(a.broker)
        d.send_multipart([b"", b"S0W1", b"\x01", P(">I", a.concurrency), P(">I", 0), bytes([1 if a.idempotent else 0])]
                         + services)
        sub = None
        hb = None
        last = now()
        liveness = 3
        pending = []
        bid = None
        while not stop:
            socks = [d] + ([sub] if sub else [])
            p = zmq.Poller()
            for s in socks:
                p.register(s, zmq.POLLIN)
            ev = dict(p.poll(10))
            t = now()
            reset = False
            if d in ev:
                m = d.recv_multipart()
                last = t
                if m[3:4] == [b"\x06"] or (len(m) > 2 and m[2] == b"\x06"):
                    hb = U(">I", m[3]) / 1000.0
                    liveness = U(">I", m[4])
                    bid = U(">Q", m[6])
                    sub = ctx.socket(zmq.SUB)
                    sub.setsockopt(zmq.LINGER, 0)
                    sub.setsockopt(zmq.SUBSCRIBE, b"S0H1")
                    sub.connect(m[5].decode().replace("*", "127.0.0.1").replace("0.0.0.0", "127.0.0.1"))
                    next_hb = t + hb
                elif m[2] == b"\x02":
                    heapq.heappush(pending, (t + a.delay / 1000.0, m[3], m[6:]))
                elif m[2] == b"\x05":
                    reset = True
            if sub and sub in ev:
                m = sub.recv_multipart()
                last = t
                if bid is not None and U(">Q", m[1]) != bid:
                    reset = True
            while pending and pending[0][0] <= t:
                _, job, body = heapq.heappop(pending)
                d.send_multipart([b"", b"S0W1", b"\x03", job, P(">H", 200), name] + body)
            if hb:
                if t >= next_hb:
                    d.send_multipart([b"", b"S0W1", b"\x04"])
                    next_hb = t + hb
                if t - last > liveness * hb:
                    reset = True
                    time.sleep(1)
            if reset:
                break
        d.close(0)
        if sub:
            sub.close(0)
    sys.exit(0)


def request(a):
    ctx = zmq.Context()
    d = ctx.socket(zmq.DEALER)
    d.setsockopt(zmq.LINGER, 0)
    d.connect(a.broker)
    body = a.body.encode() if a.body is not None else sys.stdin.buffer.read()
    d.send_multipart([b"", b"S0C1", b"\x01", P(">Q", 1), a.service.encode(), P(">I", a.timeout), body])
    if not d.poll(a.timeout + 1000):
        print("504 client timeout", file=sys.stderr)
        sys.exit(1)
    m = d.recv_multipart()
    status = U(">H", m[4])
    if status == 200:
        sys.stdout.buffer.write(b"".join(m[6:]))
        if a.verbose:
            print("200 %s" % m[5].decode(), file=sys.stderr)
        sys.exit(0)
    print("%d %s" % (status, m[5].decode()), file=sys.stderr)
    sys.exit(1)


def main():
    ap = argparse.ArgumentParser()
    sp = ap.add_subparsers(dest="cmd", required=True)
    b = sp.add_parser("broker")
    b.add_argument("--frontend", default="tcp://127.0.0.1:5555")
    b.add_argument("--backend", default="tcp://127.0.0.1:5556")
    b.add_argument("--heartbeat", default="tcp://127.0.0.1:5557")
    for n, dflt in (("heartbeat-interval", 1000), ("liveness", 3), ("no-worker-timeout", 1000),
                    ("request-timeout", 30000), ("max-queue", 10000), ("max-frames", 64),
                    ("max-message-bytes", 8 << 20), ("max-client-inflight", 10000)):
        b.add_argument("--" + n, type=int, default=dflt)
    b.add_argument("--idempotent")
    w = sp.add_parser("worker")
    w.add_argument("--service", required=True)
    w.add_argument("--echo", action="store_true")
    w.add_argument("--broker", default="tcp://127.0.0.1:5556")
    w.add_argument("--concurrency", type=int, default=1)
    w.add_argument("--idempotent", action="store_true")
    w.add_argument("--delay", type=int, default=0)
    w.add_argument("--name")
    r = sp.add_parser("request")
    r.add_argument("--broker", default="tcp://127.0.0.1:5555")
    r.add_argument("--timeout", type=int, default=5000)
    r.add_argument("--verbose", action="store_true")
    r.add_argument("service")
    r.add_argument("body", nargs="?")
    a = ap.parse_args()
    {"broker": broker, "worker": worker, "request": request}[a.cmd](a)


if __name__ == "__main__":
    main()
