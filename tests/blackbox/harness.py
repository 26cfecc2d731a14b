# SPDX-License-Identifier: Apache-2.0
"""Black-box test harness for Scale0.

Written only from docs/protocol.md (S0/1 + Majordomo interop), docs/http.md (the gateway and the
HTTP encoding) and the ZeroMQ RFC 7/MDP and 8/MMI.
Nothing here knows how the broker is implemented.

This module holds Scale0TestCase, a unittest.TestCase base class that cleans everything up, even
on failure, and re-exports every public name of the parts, so tests keep `from harness import X`
and `import harness`. The parts, each importing only those before it:
  * harness_wire: protocol constants, packing helpers (u8..u64, str8/str16, PackedReader), b_,
    frames_of, now, short;
  * harness_procs: BIN/HERE/PYTHON/VERBOSE, the cleanup list of child processes, free_port(), ep(),
    Proc, Broker (start / stop / kill a `scale0 broker`), Scale0Worker (a `scale0 worker`
    process), first_line(), run_cli() for `scale0 request` and friends;
  * harness_sockets: RawPeer (a bare DEALER for sending arbitrary frames) and NativeClient (S0/1
    client on a DEALER, pipelining by request-id);
  * harness_workers: NativeWorker, an S0/1 worker in a background thread (READY, WELCOME, SUB to
    the PUB heartbeat, HEARTBEAT, REPLY, DISCONNECT, STOPPING), scriptable per test;
  * harness_mdp: MdpClient (REQ or DEALER) and MdpWorker (DEALER, RFC 7 heartbeats);
  * harness_status: status JSON helpers, scrape() of /metrics, family_status(), peers_of(),
    wait_until();
  * harness_gateway: Gateway (a `scale0 gateway`);
  * harness_http: HttpWorker (native S0/1 worker speaking the HTTP encoding of docs/http.md, driven
    by X-Test-* request fields), RawHttp (a hand-driven HTTP connection) and the HTTP helpers.

Every wait is bounded in time and every loop in count.
"""

import json
import sys
import time
import unittest

import zmq

from harness_gateway import Gateway, GATEWAY_READY_RE
from harness_http import (body_pattern, chunked, ConnectionClosed, ENC_FIELD_RE, ENC_REQUEST_LINE_RE,
                          encode_http_response, EncodingError, http_call, http_request_bytes, HttpRequestEnc,
                          HttpResponse, HttpWorker, parse_http_request_encoding, RawHttp, REASONS,
                          split_frames, TOKEN_RE)
from harness_mdp import MdpClient, MdpJob, MdpReply, MdpWorker
from harness_procs import (BIN, await_ready, binary_available, Broker, BrokerStartError, drain_stdout, ep, first_line, read_ready_line, frames_of_str,
                           free_port, HERE, Proc, PYTHON, READY_RE, run_cli, Scale0Worker, VERBOSE)
from harness_sockets import make_socket, NativeClient, parse_client_reply, RawPeer, Reply
from harness_status import (counter_sum, family_status, flatten, peers_of, scrape, service_workers,
                            wait_until)
from harness_wire import (b_, C_HDR, C_PING, C_PONG, C_REPLY, C_REQUEST, du16, du32, du64, frames_of, H_HDR,
                          M_DISCONNECT, M_HEARTBEAT, M_READY, M_REPLY, M_REQUEST, MDPC, MDPW, now,
                          PackedReader, short, str16, str8, u16, u32, u64, u8, W_DISCONNECT, W_HDR,
                          W_HEARTBEAT, W_READY, W_REPLY, W_REQUEST, W_STOPPING, W_WELCOME)
from harness_workers import Job, NativeWorker, parse_disconnect, Welcome

__all__ = [
    "read_ready_line",
    "await_ready",
    "drain_stdout",
    "BIN", "Broker", "BrokerStartError", "C_HDR", "C_PING", "C_PONG", "C_REPLY", "C_REQUEST",
    "ConnectionClosed", "ENC_FIELD_RE", "ENC_REQUEST_LINE_RE", "EncodingError", "GATEWAY_READY_RE", "Gateway",
    "HERE", "H_HDR", "HttpRequestEnc", "HttpResponse", "HttpWorker", "Job", "MDPC", "MDPW", "M_DISCONNECT",
    "M_HEARTBEAT", "M_READY", "M_REPLY", "M_REQUEST", "MdpClient", "MdpJob", "MdpReply", "MdpWorker",
    "NativeClient", "NativeWorker", "PYTHON", "PackedReader", "Proc", "READY_RE", "REASONS", "RawHttp",
    "RawPeer", "Reply", "Scale0TestCase", "Scale0Worker", "TOKEN_RE", "VERBOSE", "W_DISCONNECT", "W_HDR",
    "W_HEARTBEAT", "W_READY", "W_REPLY", "W_REQUEST", "W_STOPPING", "W_WELCOME", "Welcome", "b_",
    "binary_available", "body_pattern", "chunked", "counter_sum", "du16", "du32", "du64",
    "encode_http_response", "ep", "family_status", "first_line", "flatten", "frames_of", "frames_of_str",
    "free_port", "http_call", "http_request_bytes", "make_socket", "now", "parse_client_reply",
    "parse_disconnect", "parse_http_request_encoding", "peers_of", "run_cli", "scrape", "service_workers",
    "short", "split_frames", "str16", "str8", "u16", "u32", "u64", "u8", "wait_until",
]


# ---------------------------------------------------------------------------------------------
# Test case base
# ---------------------------------------------------------------------------------------------
class Scale0TestCase(unittest.TestCase):
    """Base class: a zmq context, helpers to start brokers/workers, cleanup on any outcome."""

    def setUp(self):
        if not binary_available():
            self.skipTest("scale0 binary not found at %s (set SCALE0_BIN)" % BIN)
        self.ctx = zmq.Context()
        self.addCleanup(self._destroy_ctx)
        self._brokers = []
        self._threads = []
        self._sockets = []

    def _stop_peers(self):
        """Stops the test's peer threads and closes its sockets (each at most once)."""
        threads, self._threads = self._threads, []
        sockets, self._sockets = self._sockets, []
        for t in threads:
            try:
                t.stop()
            except Exception:
                pass
        for s in sockets:
            try:
                s.close()
            except Exception:
                pass

    def _destroy_ctx(self):
        self._stop_peers()
        self.ctx.destroy(linger=0)

    # --- brokers ---
    def start_broker(self, **kw):
        b = Broker(**kw)
        self.addCleanup(self._cleanup_broker, b)
        b.start()
        self._brokers.append(b)
        return b

    def _cleanup_broker(self, b):
        failed = self._failed()
        b.kill()
        if VERBOSE or failed:
            text = b.stderr_text()
            if text:
                sys.stderr.write("\n----- broker stderr (%s) -----\n%s\n-----\n" % (self.id(), text[-6000:]))
        b.cleanup()

    def _failed(self):
        """True if this test has already recorded a failure or error (best effort)."""
        outcome = getattr(self, "_outcome", None)
        result = getattr(outcome, "result", None)
        try:
            return any(t is self for t, _ in list(result.failures) + list(result.errors))
        except Exception:
            return False

    # --- workers ---
    def native_worker(self, broker_or_ep, services, wait=True, **kw):
        endpoint = broker_or_ep.backend if isinstance(broker_or_ep, Broker) else broker_or_ep
        w = NativeWorker(self.ctx, endpoint, services, **kw)
        self._threads.append(w)
        w.start()
        if wait:
            w.wait_welcome(10.0)
        return w

    def mdp_worker(self, broker_or_ep, service, **kw):
        endpoint = broker_or_ep.backend if isinstance(broker_or_ep, Broker) else broker_or_ep
        w = MdpWorker(self.ctx, endpoint, service, **kw)
        self._threads.append(w)
        w.start()
        return w

    def scale0_worker(self, broker_or_ep, services, **kw):
        endpoint = broker_or_ep.backend if isinstance(broker_or_ep, Broker) else broker_or_ep
        w = Scale0Worker(endpoint, services, **kw)
        self.addCleanup(w.cleanup)
        return w

    # --- clients ---
    def client(self, broker_or_ep):
        endpoint = broker_or_ep.frontend if isinstance(broker_or_ep, Broker) else broker_or_ep
        c = NativeClient(self.ctx, endpoint)
        self._sockets.append(c)
        return c

    def raw(self, endpoint):
        r = RawPeer(self.ctx, endpoint)
        self._sockets.append(r)
        return r

    def mdp_client(self, broker_or_ep, kind="req"):
        endpoint = broker_or_ep.frontend if isinstance(broker_or_ep, Broker) else broker_or_ep
        c = MdpClient(self.ctx, endpoint, kind)
        self._sockets.append(c)
        return c

    # --- queries ---
    def mmi_service(self, broker, service, client=None):
        c = client or self.client(broker)
        r = c.request("mmi.service", [b_(service)], wait=10.0)
        self.assertEqual(r.status, 200, "mmi.service should answer with status 200: %r" % (r,))
        self.assertEqual(len(r.body), 1, "mmi.service body should be one frame: %r" % (r,))
        return r.body[0]

    def wait_mmi(self, broker, service, expect=b"200", timeout=10.0, client=None):
        """Poll mmi.service until it answers expect; returns the elapsed seconds."""
        c = client or self.client(broker)
        t0 = now()
        last = None
        for _ in range(1000):
            last = self.mmi_service(broker, service, c)
            if last == expect:
                return now() - t0
            if now() - t0 > timeout:
                break
            time.sleep(0.05)
        self.fail("mmi.service %r did not become %r within %.1fs (last %r)" % (service, expect, timeout, last))

    def status_json(self, broker, client=None):
        c = client or self.client(broker)
        r = c.request("scale0.status", [], wait=10.0)
        self.assertEqual(r.status, 200, "scale0.status should answer 200: %r" % (r,))
        self.assertGreaterEqual(len(r.body), 1, "scale0.status should have a JSON body")
        try:
            return json.loads(r.body[0].decode("utf-8"))
        except ValueError as e:
            self.fail("scale0.status body is not JSON (%s): %r" % (e, r.body[0][:300]))

    def wait_names(self, broker, service, names, timeout=20.0, window=None, client=None):
        """Send pipelined echo requests until every worker name in names has answered.
        Proves those `scale0 worker` processes are registered. Returns the replies seen."""
        c = client or self.client(broker)
        want = set(b_(n) for n in names)
        seen = set()
        replies = []
        t0 = now()
        # Bounded by time and by count. A worker that starts late (seconds under ASan) must not
        # find the rounds used up by one that started early: a round that finds no new name
        # waits 20 ms before the next.
        for _ in range(2000):
            if seen >= want or now() - t0 > timeout:
                break
            before = len(seen)
            rids = [c.send_request(service, b"warmup", timeout_ms=int(timeout * 1000))
                    for _ in range(window or len(want))]
            for rid in rids:
                r = c.get_reply(rid, max(0.5, timeout - (now() - t0)) + 2)
                if r is not None:
                    replies.append(r)
                    if r.status == 200:
                        seen.add(r.message)
            if len(seen) == before and not seen >= want:
                time.sleep(0.02)
        if not seen >= want:
            self.fail("workers %r of service %r not all serving within %.1fs (seen %r, last replies %r)"
                      % (want, service, timeout, seen, replies[-3:]))
        return replies

    # --- HTTP (docs/http.md) ---
    def start_gateway(self, broker_or_ep, routes=(), **kw):
        """A `scale0 gateway` to the broker's frontend (see Gateway for the arguments)."""
        endpoint = broker_or_ep.frontend if isinstance(broker_or_ep, Broker) else broker_or_ep
        g = Gateway(endpoint, routes, **kw)
        self.addCleanup(self._cleanup_gateway, g)
        g.start()
        return g

    def _cleanup_gateway(self, g):
        failed = self._failed()
        g.kill()
        if VERBOSE or failed:
            text = g.stderr_text()
            if text:
                sys.stderr.write("\n----- gateway stderr (%s) -----\n%s\n-----\n" % (self.id(), text[-6000:]))
        g.cleanup()

    def http_worker(self, broker_or_ep, services, wait=True, **kw):
        """An HttpWorker (native S0/1, HTTP encoding) for services."""
        endpoint = broker_or_ep.backend if isinstance(broker_or_ep, Broker) else broker_or_ep
        w = HttpWorker(self.ctx, endpoint, services, **kw)
        self._threads.append(w)
        w.start()
        if wait:
            w.wait_welcome(10.0)
        return w

    def raw_http(self, gateway_or_addr, **kw):
        """A RawHttp connection to the gateway, closed at cleanup."""
        addr = gateway_or_addr.listen if isinstance(gateway_or_addr, Gateway) else gateway_or_addr
        c = RawHttp(addr, **kw)
        self.addCleanup(c.close)
        return c

    def assertAlive(self, broker):
        self.assertTrue(broker.alive(), "broker process died (rc=%r); stderr tail:\n%s"
                        % (broker.proc.poll(), broker.stderr_text()[-3000:]))

    def assertServes(self, broker, service=b"sanity", endpoint=None):
        """The broker answers a normal request end to end (registers a fresh echo worker)."""
        self.assertAlive(broker)
        w = self.native_worker(endpoint or broker.backend, [service], mode="echo")
        c = self.client(broker)
        r = c.request(service, [b"still", b"alive"], timeout_ms=5000, wait=10.0)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, [b"still", b"alive"])
        w.stop()
