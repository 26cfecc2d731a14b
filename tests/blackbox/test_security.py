# SPDX-License-Identifier: Apache-2.0
"""Security (issue 11), black-box: CURVE encryption and authentication with ZAP, per-key service
permissions, `scale0 keygen`, the handshake timeout, SIGHUP key reload, refusal metrics and logs,
protected mode, Majordomo 0.1 peers with CURVE options, and TLS at the HTTP gateway.

Written from the text of issue 11, docs/protocol.md and docs/http.md only. Every broker, gateway and
worker listens on 127.0.0.1, except in the protected-mode checks, which run the process in a
network namespace of its own (loopback only) and kill it as soon as it says it is ready. Key pairs are made by libzmq (pyzmq's curve_keypair) and written as
CZMQ's zcert_save would (security_peers.write_zcert). Every wait is bounded.

Interface used (issue 11): `scale0 keygen NAME`; broker `--curve-cert FILE --worker-keys FILE
--client-keys FILE|any --handshake-timeout MS --insecure`; clients, workers and the gateway
`--curve-server-key KEY|FILE --curve-cert FILE`; gateway `--tls-cert FILE --tls-key FILE`. Key list
lines are `<public-key> <service-glob>[,<service-glob>...]`, `#` lines are comments.
"""

import json
import os
import re
import select
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import unittest
import http.client

import zmq
from zmq.utils import z85

from harness import (BIN, W_HDR, W_READY, Broker, MdpWorker, NativeClient, NativeWorker, Proc,
                     Scale0TestCase, free_port, now, parse_disconnect, run_cli, u8, u32)
from security_peers import (Z85_RE, KeyPair, CurveMdpWorker, StuckTlsClient, curve_context, curve_socket,
                            handshake_probe, make_tls_cert, mdp_request, metrics_samples, metrics_text,
                            new_keypair, parse_zpl, write_key_list, write_zcert)

OPENSSL = shutil.which("openssl")
CURL = shutil.which("curl")

INTERVAL = 200          # broker heartbeat interval (ms) unless a test says otherwise
NO_WORKER_MS = 500      # --no-worker-timeout for the refusal tests
REFUSED_WINDOW = 1.0    # s a refused peer is given to (wrongly) get an answer


def read(path):
    with open(path) as f:
        return f.read()


class Cert:
    """A key pair written as a zcert pair: `path` (public) and `secret_path`."""

    def __init__(self, kp, path, secret_path):
        self.kp, self.path, self.secret_path = kp, path, secret_path

    @property
    def public(self):
        return self.kp.public

    @property
    def public_text(self):
        return self.kp.public_text


class SecurityTestCase(Scale0TestCase):

    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="scale0-sec-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self._curve_ctxs = []
        self.addCleanup(self._close_curve)
        self.broker_cert = None

    def _close_curve(self):
        self._stop_peers()  # the peers first: some use the contexts below
        for c in self._curve_ctxs:
            try:
                c.destroy(linger=0)
            except Exception:
                pass

    # --- keys ------------------------------------------------------------------------------------
    def cert(self, name, hash_inside=False, metadata=None):
        kp = new_keypair(hash_inside=hash_inside)
        path, secret = write_zcert(os.path.join(self.tmp, name), kp, metadata)
        return Cert(kp, path, secret)

    def key_file(self, name, entries):
        """entries: [(Cert or KeyPair, [globs])], or the string "any" (returned as is)."""
        if entries == "any":
            return "any"
        return write_key_list(os.path.join(self.tmp, name),
                              [(c.kp if isinstance(c, Cert) else c, globs) for c, globs in entries])

    def curve_broker(self, workers, clients, extra=(), **kw):
        """A broker with CURVE on: --curve-cert (a fresh zcert), --worker-keys, --client-keys
        (None: the option is left out)."""
        self.broker_cert = self.cert("broker")
        args = ["--curve-cert", self.broker_cert.secret_path,
                "--worker-keys", self.key_file("worker_keys", workers)]
        if clients is not None:
            args += ["--client-keys", self.key_file("client_keys", clients)]
        kw.setdefault("heartbeat_interval", INTERVAL)
        kw.setdefault("no_worker_timeout", NO_WORKER_MS)
        return self.start_broker(extra=args + list(extra), **kw)

    # --- peers -------------------------------------------------------------------------------------
    def cctx(self, kp):
        """A zmq context whose sockets are CURVE clients of the broker with key pair kp (None:
        plaintext)."""
        c = curve_context(self.broker_cert.public if self.broker_cert else None, kp)
        self._curve_ctxs.append(c)
        return c

    @staticmethod
    def _kp(who):
        return who.kp if isinstance(who, Cert) else who

    def curve_client(self, b, who, endpoint=None):
        c = NativeClient(self.cctx(self._kp(who)), endpoint or b.frontend)
        self._sockets.append(c)
        return c

    def curve_worker(self, b, who, services, endpoint=None, wait=True, **kw):
        w = NativeWorker(self.cctx(self._kp(who)), endpoint or b.backend, services, **kw)
        self._threads.append(w)
        w.start()
        if wait:
            w.wait_welcome(10.0)
        return w

    def cli_worker(self, b, cert, services, name, server_key=None, extra=()):
        """A `scale0 worker --echo` with --curve-cert cert's secret file and --curve-server-key
        (default: the broker's public key in Z85). cert None: no CURVE options at all."""
        args = []
        if cert is not None:
            args += ["--curve-server-key", server_key or self.broker_cert.public_text,
                     "--curve-cert", cert.secret_path]
        return self.scale0_worker(b, services, name=name, extra=args + list(extra))

    # --- assertions ---------------------------------------------------------------------------------
    def assertHandshake(self, who, endpoint, ok, what):
        kp = self._kp(who) if who is not None else None
        outcome, seen = handshake_probe(self.broker_cert.public, kp, endpoint,
                                        timeout=3.0 if ok else 2.0)
        if ok:
            self.assertEqual(outcome, "succeeded", "%s: the CURVE handshake should succeed (events %r)"
                             % (what, seen))
        else:
            self.assertNotEqual(outcome, "succeeded", "%s: must be refused in the handshake (events %r)"
                                % (what, seen))

    def assertNoAnswer(self, peer_recv, what, timeout=REFUSED_WINDOW):
        got = peer_recv(timeout)
        self.assertIsNone(got, "%s: a refused peer got an answer: %r" % (what, got))

    def assertNotRegistered(self, b, client, service, what):
        self.assertEqual(self.mmi_service(b, service, client), b"404",
                         "%s: mmi.service %r must say 404 (nothing registered)" % (what, service))
        r = client.request(service, [b"for a refused worker"], timeout_ms=5000, wait=10.0)
        self.assertEqual(r.status, 503, "%s: a request for %r must get 503 after the no-worker "
                         "timeout, got %r" % (what, service, r))

    def serve_control(self, b, client, service="ok.svc"):
        """A listed worker for `service` must be registered (the refusal windows below are at least
        as long as a legitimate registration takes)."""
        self.wait_mmi(b, service, timeout=10.0, client=client)
        time.sleep(0.3)


UNSHARE = shutil.which("unshare")
IP = shutil.which("ip")


def private_net(args):
    """args run in a network namespace of their own (loopback only, up): a server there may bind
    0.0.0.0 without listening on any address of this machine. Needs root."""
    if os.geteuid() != 0 or not UNSHARE or not IP:
        raise unittest.SkipTest("binding 0.0.0.0 is tested in a private network namespace: needs "
                                "root, unshare and ip")
    return [UNSHARE, "--net", "--", "sh", "-c", '"$0" link set lo up && exec "$@"', IP] + list(args)


def launch_until_ready_or_exit(args, timeout=10.0):
    """Runs args in a private network namespace (private_net); returns (outcome, rc, stdout,
    stderr) with outcome "ready" (a `ready ...` line was printed: the process is killed at once),
    "exit" or "timeout" (killed)."""
    p = Proc(private_net(args), capture_stdout=True)
    try:
        fd = p.p.stdout.fileno()
        buf = b""
        outcome = "timeout"
        deadline = now() + timeout
        while now() < deadline:
            r, _, _ = select.select([fd], [], [], 0.02)
            if r:
                chunk = os.read(fd, 4096)
                if not chunk:
                    outcome = "exit"
                    break
                buf += chunk
                if re.search(rb"^ready ", buf, re.M):
                    p.kill()
                    outcome = "ready"
                    break
            elif p.poll() is not None:
                outcome = "exit"
                break
        rc = p.wait(3.0) if outcome == "exit" else None
        if p.poll() is None:
            p.kill()
        return outcome, rc, buf.decode("utf-8", "replace"), p.stderr_text()
    finally:
        p.cleanup()


# =============================================================================================
# 1. Keys: `scale0 keygen` and CZMQ certificates
# =============================================================================================
class KeygenTest(SecurityTestCase):

    def keygen(self, name):
        base = os.path.join(self.tmp, name)
        r = run_cli(["keygen", base], timeout=10)
        self.assertEqual(r.returncode, 0, "scale0 keygen %s failed: %r" % (base, r.stderr[-1000:]))
        return base, base + "_secret", r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")

    def test_keygen_writes_a_zcert_pair_and_prints_the_public_key(self):
        base, secret_path, out, err = self.keygen("node1")
        self.assertTrue(os.path.isfile(base), "keygen NAME writes NAME (the public certificate)")
        self.assertTrue(os.path.isfile(secret_path), "keygen NAME writes NAME_secret")
        mode = os.stat(secret_path).st_mode & 0o777
        self.assertEqual(mode, 0o600, "NAME_secret must be created with mode 0600, is %o" % mode)
        pub_text = read(base)
        sec_text = read(secret_path)
        pub_doc, sec_doc = parse_zpl(pub_text), parse_zpl(sec_text)
        self.assertIn("curve", pub_doc, "the public certificate has a `curve` section: %r" % pub_text)
        self.assertIn("curve", sec_doc, "the secret certificate has a `curve` section: %r" % sec_text)
        pub = pub_doc["curve"].get("public-key")
        self.assertIsNotNone(pub, "curve/public-key in the public certificate: %r" % pub_text)
        self.assertRegex(pub, Z85_RE, "the public key is Z85, 40 characters")
        self.assertNotIn("secret-key", pub_doc["curve"], "the public certificate must hold no secret key")
        self.assertEqual(sec_doc["curve"].get("public-key"), pub, "NAME_secret holds the same public key")
        sec = sec_doc["curve"].get("secret-key")
        self.assertIsNotNone(sec, "curve/secret-key in NAME_secret: %r" % sec_text)
        self.assertRegex(sec, Z85_RE, "the secret key is Z85, 40 characters")
        self.assertEqual(zmq.curve_public(sec.encode()), pub.encode(),
                         "the two keys must be a CURVE key pair (public derived from secret)")
        self.assertNotIn(sec, pub_text)
        self.assertIn(pub, out, "keygen prints the public key on stdout")
        self.assertNotIn(sec, out + err, "keygen must never print the secret key")
        # a second run makes another key pair
        base2, _, out2, _ = self.keygen("node2")
        pub2 = parse_zpl(read(base2))["curve"]["public-key"]
        self.assertNotEqual(pub, pub2, "two keygen runs gave the same key")

    def test_keygen_certificates_work_end_to_end(self):
        """Certificates from `scale0 keygen`, used as files: broker --curve-cert, worker --curve-cert
        and --curve-server-key given as the path of the broker's public certificate."""
        certs = {}
        for name in ("kbroker", "kworker", "kclient"):
            for attempt in range(5):
                base, secret_path, _, _ = self.keygen("%s%d" % (name, attempt))
                doc = parse_zpl(read(secret_path))["curve"]
                # a key list cannot hold a key starting with `#` (a comment line): make another
                if not doc["public-key"].startswith("#"):
                    break
            certs[name] = Cert(KeyPair(doc["public-key"], doc["secret-key"]), base, secret_path)
        self.broker_cert = certs["kbroker"]
        b = self.start_broker(heartbeat_interval=INTERVAL, extra=[
            "--curve-cert", certs["kbroker"].secret_path,
            "--worker-keys", self.key_file("wk", [(certs["kworker"], ["keygen.*"])]),
            "--client-keys", self.key_file("ck", [(certs["kclient"], ["keygen.*"])])])
        self.cli_worker(b, certs["kworker"], ["keygen.echo"], "w-keygen", server_key=certs["kbroker"].path)
        c = self.curve_client(b, certs["kclient"])
        self.wait_names(b, "keygen.echo", ["w-keygen"], timeout=10.0, client=c)
        r = c.request("keygen.echo", [b"made by keygen"], timeout_ms=5000)
        self.assertEqual((r.status, r.body), (200, [b"made by keygen"]), r)

    def test_hand_written_czmq_certificates_load(self):
        """Certificates written as CZMQ's zcert_save writes them (header comments, metadata entries,
        a `curve` section) load as they are, for the broker and for a worker."""
        meta = {"name": "scale0 test", "email": "ops@example.com", "organization": "Example Ltd"}
        self.broker_cert = self.cert("zbroker", metadata=meta)
        wc = self.cert("zworker", metadata=meta)
        cc = self.cert("zclient", hash_inside=True)
        self.assertIn("# ", read(self.broker_cert.secret_path))
        b = self.start_broker(heartbeat_interval=INTERVAL, extra=[
            "--curve-cert", self.broker_cert.secret_path,
            "--worker-keys", self.key_file("wk", [(wc, ["czmq.*"])]),
            "--client-keys", self.key_file("ck", [(cc, ["czmq.*"])])])
        self.assertHandshake(cc, b.frontend, True, "a client using the hand-written broker certificate's key")
        self.cli_worker(b, wc, ["czmq.echo"], "w-czmq", server_key=self.broker_cert.path)
        c = self.curve_client(b, cc)
        self.wait_names(b, "czmq.echo", ["w-czmq"], timeout=10.0, client=c)
        r = c.request("czmq.echo", [b"zcert"], timeout_ms=5000)
        self.assertEqual((r.status, r.body), (200, [b"zcert"]), r)


# =============================================================================================
# 2-8, 10, 11. The broker with CURVE
# =============================================================================================
class CurveBrokerTest(SecurityTestCase):

    # --- 2. allowed peers are served --------------------------------------------------------------
    def test_allowed_worker_serves_listed_client(self):
        wc = self.cert("worker", hash_inside=True)   # a `#` inside a key is not a comment
        cc = self.cert("client", hash_inside=True)
        b = self.curve_broker([(wc, ["echo.*", "exact.name"])], [(cc, ["echo.*"])])
        self.assertHandshake(wc, b.backend, True, "a listed worker key on the backend")
        self.assertHandshake(cc, b.frontend, True, "a listed client key on the frontend")
        self.cli_worker(b, wc, ["echo.a"], "w-allowed")
        c = self.curve_client(b, cc)
        self.wait_names(b, "echo.a", ["w-allowed"], timeout=10.0, client=c)
        for i in range(3):
            r = c.request("echo.a", [b"secret payload %d" % i, b"two"], timeout_ms=5000)
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.message, b"w-allowed")
            self.assertEqual(r.body, [b"secret payload %d" % i, b"two"])
        self.assertAlive(b)

    def test_request_cli_with_curve_options(self):
        wc = self.cert("worker")
        cc = self.cert("client")
        b = self.curve_broker([(wc, ["echo.*"])], [(cc, ["echo.*"])])
        self.curve_worker(b, wc, ["echo.cli"])
        r = run_cli(["request", "--broker", b.frontend, "--timeout", "5000",
                     "--curve-server-key", self.broker_cert.path, "--curve-cert", cc.secret_path,
                     "echo.cli", "via the cli"], timeout=10)
        self.assertEqual(r.returncode, 0, "scale0 request with --curve-server-key FILE --curve-cert FILE: %r"
                         % r.stderr[-1000:])
        self.assertEqual(r.stdout.strip(), b"via the cli")

    def test_bench_cli_with_curve_options(self):
        cert = self.cert("bench")  # one certificate for the spawned workers and the clients
        b = self.curve_broker([(cert, ["bench.echo"])], [(cert, ["bench.echo"])])
        r = run_cli(["bench", "--broker", b.frontend, "--backend", b.backend, "--service", "bench.echo",
                     "--spawn-workers", "1", "--clients", "2", "--window", "20", "--requests", "400",
                     "--json", "--curve-server-key", self.broker_cert.public_text,
                     "--curve-cert", cert.secret_path], timeout=60)
        self.assertEqual(r.returncode, 0, "scale0 bench over CURVE: %r" % r.stderr[-1000:])
        summary = json.loads(r.stdout)
        self.assertEqual(summary.get("received"), 400, summary)
        # and a certificate the broker does not know gets nothing through
        stranger = self.cert("stranger")
        r = run_cli(["bench", "--broker", b.frontend, "--service", "bench.echo", "--requests", "5",
                     "--timeout", "300", "--curve-server-key", self.broker_cert.public_text,
                     "--curve-cert", stranger.secret_path], timeout=60)
        self.assertNotEqual(r.returncode, 0, "an unlisted key must not be served: %r" % r.stdout[-500:])

    # --- 3. refused workers and clients ---------------------------------------------------------------
    def test_unknown_worker_key_refused(self):
        good = self.cert("worker")
        stranger = self.cert("stranger")
        cc = self.cert("client")
        b = self.curve_broker([(good, ["www.example.com", "ok.*"])], [(cc, ["*"])])
        self.assertHandshake(stranger, b.backend, False, "an unlisted worker key")
        # the stranger announces a service the listed key may serve: the key decides
        self.cli_worker(b, stranger, ["www.example.com"], "w-stranger")
        raw = self.curve_worker(b, stranger, ["www.example.com"], wait=False)
        self.cli_worker(b, good, ["ok.svc"], "w-good")
        c = self.curve_client(b, cc)
        self.serve_control(b, c)
        self.assertFalse(raw.welcome_evt.wait(0.5), "an unlisted worker key got WELCOME: %r" % raw.welcome)
        self.assertNotRegistered(b, c, "www.example.com", "unlisted worker key")
        self.assertEqual(raw.jobs, [], "an unlisted worker got requests")
        self.assertAlive(b)

    def test_plaintext_worker_refused(self):
        good = self.cert("worker")
        cc = self.cert("client")
        b = self.curve_broker([(good, ["*"])], [(cc, ["*"])])
        self.assertHandshake(None, b.backend, False, "a plaintext (NULL mechanism) worker")
        self.cli_worker(b, None, ["plain.svc"], "w-plain")                 # no CURVE options
        raw = self.native_worker(b, ["plain.svc"], wait=False)             # plaintext pyzmq worker
        self.cli_worker(b, good, ["ok.svc"], "w-good")
        c = self.curve_client(b, cc)
        self.serve_control(b, c)
        self.assertFalse(raw.welcome_evt.wait(0.5), "a plaintext worker got WELCOME: %r" % raw.welcome)
        self.assertNotRegistered(b, c, "plain.svc", "plaintext worker")
        self.assertAlive(b)

    def test_worker_key_on_frontend_refused(self):
        wc = self.cert("worker")
        cc = self.cert("client")
        b = self.curve_broker([(wc, ["*"])], [(cc, ["*"])])
        self.assertHandshake(wc, b.frontend, False, "a worker key on the frontend")
        # as a worker on the frontend (docs/protocol.md lets a worker use either endpoint)
        w = self.curve_worker(b, wc, ["wrong.door"], endpoint=b.frontend, wait=False)
        # as a client on the frontend
        as_client = self.curve_client(b, wc)
        as_client.send_request("mmi.service", [b"wrong.door"])
        self.assertNoAnswer(as_client.recv_reply, "a worker key used as a client on the frontend")
        self.assertFalse(w.welcome_evt.wait(0.2), "a worker key registered on the frontend: %r" % w.welcome)
        # the same key on the backend is fine (the refusal is about the endpoint)
        self.curve_worker(b, wc, ["right.door"])
        c = self.curve_client(b, cc)
        self.assertEqual(self.mmi_service(b, "right.door", c), b"200")
        self.assertEqual(self.mmi_service(b, "wrong.door", c), b"404")

    def test_client_key_on_backend_refused(self):
        wc = self.cert("worker")
        cc = self.cert("client")
        b = self.curve_broker([(wc, ["*"])], [(cc, ["*"])])
        self.assertHandshake(cc, b.backend, False, "a client key on the backend")
        self.curve_worker(b, wc, ["svc"])
        # as a client on the backend (docs/protocol.md lets a client use either endpoint)
        on_backend = self.curve_client(b, cc, endpoint=b.backend)
        on_backend.send_request("svc", [b"through the worker door"], timeout_ms=3000)
        self.assertNoAnswer(on_backend.recv_reply, "a client key used on the backend")
        # as a worker on the backend
        w = self.curve_worker(b, cc, ["client.posing"], wait=False)
        self.assertFalse(w.welcome_evt.wait(0.5), "a client key registered as a worker: %r" % w.welcome)
        c = self.curve_client(b, cc)
        self.assertEqual(self.mmi_service(b, "client.posing", c), b"404")
        r = c.request("svc", [b"front door"], timeout_ms=5000)
        self.assertEqual((r.status, r.body), (200, [b"front door"]), "the same client key on the frontend")

    def test_unknown_and_plaintext_clients_refused(self):
        wc = self.cert("worker")
        cc = self.cert("client")
        stranger = self.cert("stranger")
        b = self.curve_broker([(wc, ["*"])], [(cc, ["*"])])
        self.curve_worker(b, wc, ["svc"])
        self.assertHandshake(stranger, b.frontend, False, "an unlisted client key")
        self.assertHandshake(None, b.frontend, False, "a plaintext client")
        s = self.curve_client(b, stranger)
        s.send_request("svc", [b"x"], timeout_ms=3000)
        p = NativeClient(self.ctx, b.frontend)
        self._sockets.append(p)
        p.send_request("svc", [b"x"], timeout_ms=3000)
        self.assertNoAnswer(s.recv_reply, "an unlisted client key")
        self.assertNoAnswer(p.recv_reply, "a plaintext client", timeout=0.2)
        c = self.curve_client(b, cc)
        self.assertEqual(c.request("svc", [b"ok"], timeout_ms=5000).status, 200)

    # --- 4. a worker announcing a service outside its globs -------------------------------------
    def test_worker_service_outside_its_globs_gets_403(self):
        wc = self.cert("worker")
        cc = self.cert("client")
        b = self.curve_broker([(wc, ["echo.*"])], [(cc, ["*"])])
        c = self.curve_client(b, cc)
        ctx = self.cctx(wc.kp)
        dealer = curve_socket(ctx, zmq.DEALER, b.backend, self.broker_cert.public, wc.kp)
        # S0/1 READY for an allowed service and a forbidden one: 403, nothing registered
        dealer.send_multipart([b"", W_HDR, u8(W_READY), u32(1), u32(0), u8(0), b"echo.a", b"www.example.com"])
        m = dealer.recv_multipart() if dealer.poll(5000, zmq.POLLIN) else None
        self.assertIsNotNone(m, "no answer to a READY announcing a service outside the key's globs")
        d = parse_disconnect(m)
        self.assertIsNotNone(d, "expected DISCONNECT, got %r" % (m,))
        self.assertEqual(d[0], 403, "DISCONNECT status for a service outside the globs: %r" % (m,))
        self.assertEqual(self.mmi_service(b, "www.example.com", c), b"404")
        self.assertEqual(self.mmi_service(b, "echo.a", c), b"404",
                         "nothing is registered, not even the allowed service of a refused READY")
        dealer.close(0)
        # the same key announcing only what it may serve is welcome
        ok = self.curve_worker(b, wc, ["echo.a"])
        self.assertIsNotNone(ok.welcome)
        self.assertEqual(self.mmi_service(b, "echo.a", c), b"200")
        self.assertEqual(self.mmi_service(b, "www.example.com", c), b"404")
        self.assertAlive(b)

    def test_mdp_worker_service_outside_its_globs_not_registered(self):
        wc = self.cert("worker")
        cc = self.cert("client")
        b = self.curve_broker([(wc, ["legacy.*"])], [(cc, ["*"])])
        c = self.curve_client(b, cc)
        bad = MdpWorker(self.cctx(wc.kp), b.backend, "www.example.com", hb_ms=500)
        good = MdpWorker(self.cctx(wc.kp), b.backend, "legacy.ok", hb_ms=500)
        for w in (bad, good):
            self._threads.append(w)
            w.start()
        self.wait_mmi(b, "legacy.ok", timeout=10.0, client=c)
        self.assertTrue(bad.wait_disconnect(5.0), "an MDP worker announcing a service outside its globs "
                        "must get DISCONNECT")
        self.assertEqual(self.mmi_service(b, "www.example.com", c), b"404")
        r = c.request("www.example.com", [b"x"], timeout_ms=5000)
        self.assertEqual(r.status, 503, r)
        self.assertEqual(bad.jobs, [])

    # --- 5. a client calling a service outside its globs ---------------------------------------------
    def test_client_service_outside_its_globs_gets_403(self):
        wc = self.cert("worker")
        cc = self.cert("client")
        b = self.curve_broker([(wc, ["*"])], [(cc, ["echo.*"])])
        w = self.curve_worker(b, wc, ["echo.a", "payroll"])
        c = self.curve_client(b, cc)
        r = c.request("payroll", [b"give me everything"], timeout_ms=5000)
        self.assertEqual(r.status, 403, "a service outside the client's globs: %r" % r)
        self.assertEqual(w.jobs, [], "the forbidden request reached a worker")
        deadline = now() + 5.0
        lines = []
        while now() < deadline and not lines:
            lines = [l for l in b.stderr_text().splitlines() if "refused" in l and "payroll" in l]
            time.sleep(0.05)
        self.assertTrue(lines, "the refusal is logged")
        self.assertIn(cc.public_text, lines[0], "with the client's public key: %r" % lines[0])
        self.assertRegex(lines[0], r"address=(tcp://)?127\.0\.0\.1\b", "and its address: %r" % lines[0])
        r = c.request("echo.a", [b"allowed"], timeout_ms=5000)
        self.assertEqual((r.status, r.body), (200, [b"allowed"]), r)
        # mmi.* is allowed to every authenticated client, whatever its globs
        r = c.request("mmi.service", [b"payroll"], timeout_ms=5000)
        self.assertEqual((r.status, r.body), (200, [b"200"]), "mmi.service for an authenticated client: %r" % r)
        self.assertEqual(len(w.jobs), 1)

    # --- 6. --client-keys any, and no --client-keys ---------------------------------------------------
    def test_client_keys_any_accepts_a_fresh_key(self):
        wc = self.cert("worker")
        b = self.curve_broker([(wc, ["*"])], "any")
        self.curve_worker(b, wc, ["open.svc"])
        fresh = new_keypair()   # never written anywhere, listed nowhere
        self.assertHandshake(fresh, b.frontend, True, "any client key with --client-keys any")
        c = self.curve_client(b, fresh)
        r = c.request("open.svc", [b"hello"], timeout_ms=5000)
        self.assertEqual((r.status, r.body), (200, [b"hello"]), r)
        # `any` is encrypted, not open: a plaintext client is still refused
        self.assertHandshake(None, b.frontend, False, "a plaintext client with --client-keys any")
        # and the backend still wants listed worker keys
        self.assertHandshake(fresh, b.backend, False, "an unlisted worker key with --client-keys any")

    # --- scale0.status: listed client keys, or only --admin-keys -------------------------------------
    def test_status_answers_listed_clients_not_any_keys(self):
        wc = self.cert("worker")
        b = self.curve_broker([(wc, ["*"])], "any")
        self.curve_worker(b, wc, ["open.svc"])
        c = self.curve_client(b, new_keypair())
        r = c.request("scale0.status", [], timeout_ms=5000)
        self.assertEqual(r.status, 403, "with --client-keys any a fresh key is encrypted, not "
                         "authenticated: no status for it: %r" % (r,))
        r = c.request("mmi.service", [b"open.svc"], timeout_ms=5000)
        self.assertEqual((r.status, r.body), (200, [b"200"]), r)
        cc = self.cert("client")
        b2 = self.curve_broker([(wc, ["*"])], [(cc, ["echo.*"])])
        r = self.curve_client(b2, cc).request("scale0.status", [], timeout_ms=5000)
        self.assertEqual(r.status, 200, "without --admin-keys a listed client key may ask: %r" % (r,))
        self.assertIn("services", json.loads(r.body[0]))

    def test_admin_keys_limit_status_and_grant_nothing_else(self):
        wc, cc, ac = self.cert("worker"), self.cert("client"), self.cert("admin")
        admin_file = os.path.join(self.tmp, "admin_keys")
        with open(admin_file, "w") as f:
            f.write("# operators\n%s\n" % ac.public_text)
        b = self.curve_broker([(wc, ["*"])], [(cc, ["*"])], extra=["--admin-keys", admin_file])
        w = self.curve_worker(b, wc, ["echo.a"])
        r = self.curve_client(b, cc).request("scale0.status", [], timeout_ms=5000)
        self.assertEqual(r.status, 403, "a client key that is not an admin key: %r" % (r,))
        admin = self.curve_client(b, ac)  # listed only as an admin key: admitted on the frontend
        r = admin.request("scale0.status", [], timeout_ms=5000)
        self.assertEqual(r.status, 200, r)
        self.assertIn("echo.a", r.body[0].decode())
        r = admin.request("echo.a", [b"x"], timeout_ms=5000)
        self.assertEqual(r.status, 403, "an admin key may not call services: %r" % (r,))
        self.assertEqual(w.jobs, [])
        out = run_cli(["status", "--broker", b.frontend, "--json", "--curve-server-key", self.broker_cert.path,
                       "--curve-cert", ac.secret_path], timeout=10)
        self.assertEqual(out.returncode, 0, out.stderr[-1000:])
        self.assertIn("echo.a", out.stdout.decode())
        samples = metrics_samples(metrics_text(b.metrics))
        self.assertTrue(any(n == "scale0_refused_total" and l.get("reason") == "status_not_allowed" and v >= 1
                            for n, l, v in samples), "the refusal is counted")

    def test_curve_without_client_keys_refuses_to_start(self):
        self.broker_cert = self.cert("broker")
        wk = self.key_file("wk", [(self.cert("worker"), ["*"])])
        b = Broker(heartbeat_interval=INTERVAL, extra=["--curve-cert", self.broker_cert.secret_path,
                                                       "--worker-keys", wk])
        b.ports = (free_port(), free_port(), free_port())
        outcome, rc, out, err = launch_until_ready_or_exit(b.args(), timeout=10.0)
        self.assertEqual(outcome, "exit", "--curve-cert without --client-keys must refuse to start "
                         "(outcome %s, stderr %r)" % (outcome, err[-1000:]))
        self.assertNotEqual(rc, 0)
        self.assertIn("client-keys", err, "the broker must say why: name --client-keys (stderr %r)" % err[-1000:])
        self.assertNotRegex(err.lower(), r"(unknown|unrecognized|not expected).*(curve-cert|worker-keys)",
                            "refused for the missing --client-keys, not for an unknown option")

    # --- 7. the handshake timeout ----------------------------------------------------------------------
    def test_silent_connections_closed_after_handshake_timeout(self):
        wc = self.cert("worker")
        cc = self.cert("client")
        b = self.curve_broker([(wc, ["*"])], [(cc, ["*"])], extra=["--handshake-timeout", "500"])
        self.curve_worker(b, wc, ["svc"])
        fport = int(b.frontend.rsplit(":", 1)[1])
        bport = int(b.backend.rsplit(":", 1)[1])
        socks = []
        try:
            t0 = now()
            for i in range(105):
                s = socket.create_connection(("127.0.0.1", fport if i < 100 else bport), timeout=5.0)
                s.setblocking(False)
                socks.append(s)
            # a legitimate client is served meanwhile
            c = self.curve_client(b, cc)
            r = c.request("svc", [b"meanwhile"], timeout_ms=5000)
            self.assertEqual((r.status, r.body), (200, [b"meanwhile"]), r)
            open_ = {s.fileno(): s for s in socks}
            closed_at = {}
            deadline = t0 + 0.5 + 4.5
            while open_ and now() < deadline:
                r_, _, _ = select.select(list(open_.values()), [], [], 0.05)
                for s in r_:
                    try:
                        data = s.recv(4096)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    if not data:
                        closed_at[s.fileno()] = now() - t0
                        del open_[s.fileno()]
            self.assertEqual(len(open_), 0, "%d of 105 silent connections still open %.1fs after a 500 ms "
                             "handshake timeout" % (len(open_), now() - t0))
            self.assertGreaterEqual(min(closed_at.values()), 0.3,
                                    "silent connections closed before the handshake timeout")
            r = c.request("svc", [b"after"], timeout_ms=5000)
            self.assertEqual((r.status, r.body), (200, [b"after"]), r)
            self.assertAlive(b)
            counted = {(l.get("endpoint"), l.get("reason")): v
                       for n, l, v in metrics_samples(metrics_text(b.metrics)) if n == "scale0_refused_total"}
            self.assertEqual(counted.get(("frontend", "handshake_unfinished")), 100, counted)
            self.assertEqual(counted.get(("backend", "handshake_unfinished")), 5, counted)
        finally:
            for s in socks:
                s.close()

    def test_plaintext_zeromq_peer_counted_and_logged_with_its_address(self):
        wc = self.cert("worker")
        b = self.curve_broker([(wc, ["*"])], "any")
        host, port = b.backend[len("tcp://"):].rsplit(":", 1)
        # A ZMTP 3.0 greeting offering the NULL mechanism (RFC 23): what a ZeroMQ peer without CURVE
        # sends, in two steps as libzmq does (the signature, then the rest once the server's has
        # come). Raw sockets, so that each attempt is one connection whose address the test knows.
        greeting = b"\xff" + b"\x00" * 8 + b"\x7f" + b"\x03\x00" + b"NULL".ljust(20, b"\x00") + b"\x00" * 32
        ours = set()
        for _ in range(3):
            with socket.create_connection((host, int(port)), timeout=5.0) as s:
                ours.add("tcp://%s:%d" % s.getsockname())
                s.sendall(greeting[:10])
                s.recv(10)
                time.sleep(0.2)
                s.sendall(greeting[10:])
                deadline = now() + 5.0
                try:
                    while now() < deadline and s.recv(4096):
                        pass  # the broker's greeting, then the close
                except OSError:
                    pass
        deadline = now() + 5.0
        counted = 0
        while now() < deadline and counted < 3:
            counted = sum(v for n, l, v in metrics_samples(metrics_text(b.metrics))
                          if n == "scale0_refused_total" and l == {"endpoint": "backend", "reason": "not_curve"})
            time.sleep(0.05)
        self.assertEqual(counted, 3, "each ZeroMQ peer without CURVE is counted as not_curve")
        deadline = now() + 5.0
        lines = []
        while now() < deadline and len(lines) < 3:
            lines = [l for l in b.stderr_text().splitlines() if "without CURVE" in l]
            time.sleep(0.05)
        self.assertEqual(len(lines), 3, "each refusal is logged: %r" % lines)
        addresses = [re.search(r"address=(\S+)", l).group(1) for l in lines]
        # The peer's address (best effort: "unknown" when the connection was gone before the broker
        # read its ACCEPTED event), never another connection's or the broker's own.
        for a in addresses:
            self.assertTrue(a == "unknown" or a in ours, "%r not one of %r" % (addresses, ours))
        self.assertTrue(any(a in ours for a in addresses), "some refusal names the peer: %r" % addresses)

    # --- 8. SIGHUP removes a key ---------------------------------------------------------------------
    def test_sighup_removing_a_worker_key_disconnects_that_worker(self):
        interval = 300
        keep = self.cert("keep")
        drop = self.cert("drop")
        cc = self.cert("client")
        b = self.curve_broker([(keep, ["keep.*"]), (drop, ["drop.*"])], [(cc, ["*"])],
                              heartbeat_interval=interval)
        self.cli_worker(b, keep, ["keep.me"], "w-keep")
        dropped = self.cli_worker(b, drop, ["drop.me"], "w-drop")
        c = self.curve_client(b, cc)
        self.wait_names(b, "keep.me", ["w-keep"], timeout=10.0, client=c)
        self.wait_names(b, "drop.me", ["w-drop"], timeout=10.0, client=c)
        self.key_file("worker_keys", [(keep, ["keep.*"])])  # rewrites the broker's --worker-keys file
        t0 = now()
        b.proc.signal(signal.SIGHUP)
        self.wait_mmi(b, "drop.me", expect=b"404", timeout=10.0, client=c)
        elapsed = now() - t0
        bound = 2 * interval / 1000.0 + 1.5
        self.assertLessEqual(elapsed, bound, "the removed key's worker was still registered %.2fs after "
                             "SIGHUP (one heartbeat interval is %d ms)" % (elapsed, interval))
        time.sleep(1.2)  # its worker tries again (after a back-off): it must stay out
        self.assertEqual(self.mmi_service(b, "drop.me", c), b"404", "the removed key came back")
        told = [l for l in dropped.proc.stderr_text().splitlines() if "403" in l]
        self.assertTrue(told, "the worker was told DISCONNECT 403")
        self.assertIn("reconnecting in", told[0], "a worker whose key was removed backs off instead of "
                      "handshaking again at once: %r" % told[0])
        r = c.request("keep.me", [b"still here"], timeout_ms=5000)
        self.assertEqual((r.status, r.message, r.body), (200, b"w-keep", [b"still here"]),
                         "a key still listed keeps its worker across SIGHUP")
        self.assertAlive(b)

    # --- 10. Majordomo 0.1 peers with CURVE options ---------------------------------------------------
    def test_mdp_worker_and_client_with_curve_interoperate(self):
        wc = self.cert("mdpworker")
        cc = self.cert("mdpclient")
        b = self.curve_broker([(wc, ["legacy.*"])], [(cc, ["legacy.*"])])
        w = CurveMdpWorker(b.backend, self.broker_cert.public, wc.kp, "legacy.echo", hb_ms=500)
        self._threads.append(w)
        w.start()
        c = self.curve_client(b, cc)
        self.wait_mmi(b, "legacy.echo", timeout=10.0, client=c)
        ctx = self.cctx(None)
        for i in range(3):
            got = mdp_request(ctx, b.frontend, self.broker_cert.public, cc.kp, "legacy.echo",
                              [b"hello %d" % i, b"two"], timeout=10.0)
            self.assertIsNotNone(got, "MDP client with CURVE options: no reply")
            self.assertEqual(got, (b"legacy.echo", [b"mdp:hello %d" % i, b"two"]))
        self.assertIsNone(w.error, w.error)
        self.assertEqual(len(w.jobs), 3)
        self.assertEqual(w.disconnects, [])
        # the same MDP client with an unlisted key is refused
        got = mdp_request(ctx, b.frontend, self.broker_cert.public, new_keypair(), "legacy.echo", [b"x"],
                          timeout=REFUSED_WINDOW)
        self.assertIsNone(got, "an MDP client with an unlisted key got a reply")

    # --- 11. refusals in /metrics and in the log -----------------------------------------------------
    @staticmethod
    def refusals(b, endpoint_name, endpoint):
        """{(name, labels): value} of the refusal counters whose labels name the endpoint."""
        port = endpoint.rsplit(":", 1)[1]
        out = {}
        for name, labels, value in metrics_samples(metrics_text(b.metrics)):
            if not re.search(r"refus|auth|reject|den(y|ied)", name, re.I):
                continue
            if any(v == endpoint_name or endpoint_name in v.lower() or v == endpoint or v.endswith(":" + port)
                   for v in labels.values()):
                out[(name, tuple(sorted(labels.items())))] = value
        return out

    def assertRefusalCounted(self, b, endpoint_name, endpoint, before, what):
        grown = {}
        for _ in range(100):
            after = self.refusals(b, endpoint_name, endpoint)
            grown = {k: v for k, v in after.items() if v > before.get(k, 0)}
            if grown:
                break
            time.sleep(0.05)
        self.assertTrue(grown, "%s: no refusal counter (name with refus/auth, a label naming the %s) grew; "
                        "matching samples: %r" % (what, endpoint_name, after))
        for (name, labels), v in grown.items():
            self.assertGreaterEqual(len(labels), 2, "refusals are counted by endpoint and reason: %s%r"
                                    % (name, labels))

    def test_refusals_counted_in_metrics_by_endpoint_and_reason(self):
        wc = self.cert("worker")
        cc = self.cert("client")
        b = self.curve_broker([(wc, ["*"])], [(cc, ["*"])])
        self.assertIsNotNone(b.metrics, "the ready line names the metrics address")
        before_back = self.refusals(b, "backend", b.backend)
        before_front = self.refusals(b, "frontend", b.frontend)
        self.assertHandshake(self.cert("stranger"), b.backend, False, "an unlisted worker key")
        self.assertRefusalCounted(b, "backend", b.backend, before_back, "unknown worker key on the backend")
        self.assertHandshake(wc, b.frontend, False, "a worker key on the frontend")
        self.assertRefusalCounted(b, "frontend", b.frontend, before_front, "worker key on the frontend")

    def test_refusal_logged_with_public_key_and_address_secrets_never(self):
        wc = self.cert("worker")
        cc = self.cert("client")
        stranger = self.cert("stranger")
        b = self.curve_broker([(wc, ["*"])], [(cc, ["*"])])
        w = self.cli_worker(b, wc, ["svc"], "w-log")
        c = self.curve_client(b, cc)
        self.wait_names(b, "svc", ["w-log"], timeout=10.0, client=c)
        self.assertHandshake(stranger, b.backend, False, "an unlisted worker key")
        key_z85 = stranger.public_text
        key_hex = z85.decode(stranger.public).hex()
        line = None
        for _ in range(100):
            text = b.stderr_text()
            line = next((ln for ln in text.split("\n") if key_z85 in ln or key_hex in ln.lower()), None)
            if line:
                break
            time.sleep(0.05)
        self.assertIsNotNone(line, "a refusal is logged with the key's public part; broker log:\n%s"
                             % b.stderr_text()[-2000:])
        self.assertIn("127.0.0.1", line, "a refusal is logged with the peer address: %r" % line)
        logs = b.stderr_text() + w.proc.stderr_text()
        for cert in (self.broker_cert, wc, cc, stranger):
            self.assertNotIn(cert.kp.secret_text, logs, "a secret key appeared in a log")
        r = run_cli(["broker", "--curve-cert", self.broker_cert.secret_path,
                     "--worker-keys", os.path.join(self.tmp, "worker_keys"),
                     "--client-keys", os.path.join(self.tmp, "client_keys"), "--print-config"], timeout=10)
        self.assertEqual(r.returncode, 0, "--print-config with CURVE options: %r" % r.stderr[-1000:])
        self.assertNotIn(self.broker_cert.kp.secret, r.stdout + r.stderr, "the secret key in --print-config")


# =============================================================================================
# 9. Protected mode
# =============================================================================================
class ProtectedModeTest(SecurityTestCase):

    def broker_args(self, frontend_host="127.0.0.1", extra=()):
        ports = (free_port(), free_port(), free_port())
        return [BIN, "broker", "--frontend", "tcp://%s:%d" % (frontend_host, ports[0]),
                "--backend", "tcp://127.0.0.1:%d" % ports[1], "--heartbeat", "tcp://127.0.0.1:%d" % ports[2],
                "--metrics-listen", "127.0.0.1:0"] + list(extra)

    def test_nonloopback_frontend_without_curve_refuses_to_start(self):
        outcome, rc, out, err = launch_until_ready_or_exit(self.broker_args("0.0.0.0"))
        self.assertEqual(outcome, "exit", "a broker binding 0.0.0.0 without CURVE must refuse to start "
                         "(it printed %r)" % out[-300:])
        self.assertNotEqual(rc, 0)
        self.assertRegex(err, r"keygen", "the message says how to make keys (scale0 keygen): %r" % err[-1000:])

    def test_nonloopback_frontend_with_insecure_starts(self):
        outcome, rc, out, err = launch_until_ready_or_exit(self.broker_args("0.0.0.0", ["--insecure"]))
        self.assertEqual(outcome, "ready", "--insecure lets a broker bind 0.0.0.0 without CURVE "
                         "(rc %r, stderr %r)" % (rc, err[-1000:]))

    def test_nonloopback_frontend_with_curve_starts(self):
        self.broker_cert = self.cert("broker")
        extra = ["--curve-cert", self.broker_cert.secret_path,
                 "--worker-keys", self.key_file("wk", [(self.cert("w"), ["*"])]),
                 "--client-keys", "any"]
        outcome, rc, out, err = launch_until_ready_or_exit(self.broker_args("0.0.0.0", extra))
        self.assertEqual(outcome, "ready", "with CURVE a broker may bind 0.0.0.0 (rc %r, stderr %r)"
                         % (rc, err[-1000:]))

    def test_nonloopback_metrics_and_gateway_without_security_refuse_to_start(self):
        args = self.broker_args()
        i = args.index("--metrics-listen")
        args[i + 1] = "0.0.0.0:%d" % free_port()
        outcome, rc, out, err = launch_until_ready_or_exit(args)
        self.assertEqual(outcome, "exit", "--metrics-listen 0.0.0.0 without --insecure must refuse to start")
        self.assertNotEqual(rc, 0)
        self.assertTrue(err.strip(), "and say why on stderr")
        g = [BIN, "gateway", "--listen", "0.0.0.0:%d" % free_port(), "--broker", "tcp://127.0.0.1:%d" % free_port(),
             "--metrics-listen", "127.0.0.1:0"]
        outcome, rc, out, err = launch_until_ready_or_exit(g)
        self.assertEqual(outcome, "exit", "a gateway listening on 0.0.0.0 without TLS must refuse to start")
        self.assertNotEqual(rc, 0)
        self.assertTrue(err.strip(), "and say why on stderr")
        outcome, rc, out, err = launch_until_ready_or_exit(g[:2] + ["--listen", "0.0.0.0:%d" % free_port()]
                                                           + g[4:] + ["--insecure"])
        self.assertEqual(outcome, "ready", "a gateway with --insecure may listen on 0.0.0.0 (stderr %r)"
                         % err[-1000:])

    @unittest.skipUnless(OPENSSL, "openssl is not installed (needed to make the test certificate)")
    def test_gateway_with_tls_may_listen_on_any_address(self):
        cert, key = make_tls_cert(self.tmp)
        g = [BIN, "gateway", "--listen", "0.0.0.0:%d" % free_port(), "--broker",
             "tcp://127.0.0.1:%d" % free_port(), "--metrics-listen", "127.0.0.1:0"]
        outcome, rc, out, err = launch_until_ready_or_exit(g + ["--tls-cert", cert, "--tls-key", key])
        self.assertEqual(outcome, "ready", "TLS lets a gateway listen on 0.0.0.0 (stderr %r)" % err[-1000:])
        outcome, rc, out, err = launch_until_ready_or_exit(g + ["--tls-cert", cert])
        self.assertEqual(outcome, "exit", "--tls-cert without --tls-key must refuse to start")
        self.assertIn("--tls-key", err)


# =============================================================================================
# 12. HTTPS at the gateway
# =============================================================================================
@unittest.skipUnless(OPENSSL, "openssl is not installed (needed to make the test certificate)")
class GatewayTlsTest(SecurityTestCase):
    HEADER_TIMEOUT = 1000

    @classmethod
    def setUpClass(cls):
        cls.tls_dir = tempfile.mkdtemp(prefix="scale0-tls-")
        cls.tls_cert, cls.tls_key = make_tls_cert(cls.tls_dir)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tls_dir, True)

    def tls_gateway(self):
        b = self.start_broker(heartbeat_interval=INTERVAL)
        w = self.http_worker(b, ["tls.web"])
        g = self.start_gateway(b, ["host=127.0.0.1,service=tls.web"], header_timeout=self.HEADER_TIMEOUT,
                               extra=["--tls-cert", self.tls_cert, "--tls-key", self.tls_key])
        return b, w, g

    def https_get(self, g, path, cafile=None):
        """GET over HTTPS, the server verified against cafile (default: the class's certificate)."""
        ctx = ssl.create_default_context(cafile=cafile or self.tls_cert)
        conn = http.client.HTTPSConnection(g.host, g.port, context=ctx, timeout=10)
        try:
            conn.request("GET", path)
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    @unittest.skipUnless(CURL, "curl is not installed")
    def test_https_through_the_gateway_with_curl(self):
        b, w, g = self.tls_gateway()
        p = subprocess.run([CURL, "-sS", "--max-time", "8", "--cacert", self.tls_cert, "-o", "-",
                            "-w", "\nCURL-RESULT %{http_code} %{http_version} %{scheme}",
                            "https://%s/tls-check?x=1" % g.listen],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10)
        out = p.stdout.decode("utf-8", "replace")
        self.assertEqual(p.returncode, 0, "curl --cacert over HTTPS failed: %r" % p.stderr[-1000:])
        body, _, result = out.rpartition("\nCURL-RESULT ")
        code, version, scheme = result.split()
        self.assertEqual(code, "200", out)
        self.assertEqual(version, "1.1", "ALPN http/1.1: %r" % out)
        self.assertEqual(scheme.lower(), "https")
        req = w.next_http(5.0)
        self.assertIsNotNone(req, "the worker got no request")
        self.assertEqual(req.target, "/tls-check?x=1")
        self.assertEqual(req.get_all("X-Forwarded-Proto"), ["https"], req.headers)
        fwd = req.get_all("Forwarded")
        if fwd:
            self.assertIn("proto=https", fwd[-1], "Forwarded says the request came over HTTPS: %r" % fwd)
        self.assertEqual(json.loads(body)["target"], "/tls-check?x=1")
        w.check()

    def test_openssl_s_client_tls12_tls13_and_alpn(self):
        b, w, g = self.tls_gateway()
        for version, flag in (("TLSv1.2", "-tls1_2"), ("TLSv1.3", "-tls1_3")):
            req = b"GET /s-client HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
            p = subprocess.run([OPENSSL, "s_client", "-connect", g.listen, "-CAfile", self.tls_cert,
                                "-alpn", "http/1.1", flag, "-ign_eof"],
                               input=req, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10)
            out = p.stdout.decode("utf-8", "replace")
            self.assertIn("ALPN protocol: http/1.1", out, "%s: ALPN http/1.1 negotiated: %s" % (version, out[-2000:]))
            self.assertIn(version, out, out[-2000:])
            self.assertRegex(out, r"Verify return code: 0 \(ok\)", out[-2000:])
            self.assertRegex(out, r"HTTP/1\.1 200", "%s: the response over TLS: %s" % (version, out[-2000:]))
        self.assertEqual(len(w.http_requests), 2)
        for r in w.http_requests:
            self.assertEqual(r.get_all("X-Forwarded-Proto"), ["https"], r.headers)

    def served_cert(self, g):
        """The DER certificate the gateway presents now (not verified: it may be any)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with socket.create_connection((g.host, g.port), timeout=5) as raw:
            with ctx.wrap_socket(raw) as tls:
                return tls.getpeercert(binary_form=True)

    def test_sighup_reads_the_certificate_again(self):
        b = self.start_broker(heartbeat_interval=INTERVAL)
        w = self.http_worker(b, ["tls.web"])
        first_dir = tempfile.mkdtemp(prefix="scale0-tls-a-", dir=self.tmp)
        second_dir = tempfile.mkdtemp(prefix="scale0-tls-b-", dir=self.tmp)
        first = make_tls_cert(first_dir)
        second = make_tls_cert(second_dir)
        cert, key = os.path.join(self.tmp, "live-cert.pem"), os.path.join(self.tmp, "live-key.pem")
        shutil.copy(first[0], cert)
        shutil.copy(first[1], key)
        g = self.start_gateway(b, ["host=127.0.0.1,service=tls.web"], extra=["--tls-cert", cert, "--tls-key", key])
        der = lambda path: ssl.PEM_cert_to_DER_cert(read(path))
        self.assertEqual(self.served_cert(g), der(first[0]))
        shutil.copy(second[0], cert)
        shutil.copy(second[1], key)
        g.proc.signal(signal.SIGHUP)
        deadline = now() + 5.0
        while now() < deadline and self.served_cert(g) != der(second[0]):
            time.sleep(0.05)
        self.assertEqual(self.served_cert(g), der(second[0]), "SIGHUP: the renewed certificate is served")
        # A broken pair on the next SIGHUP keeps the running certificate (and the gateway).
        with open(key, "w") as f:
            f.write("not a key\n")
        g.proc.signal(signal.SIGHUP)
        time.sleep(0.5)
        self.assertEqual(self.served_cert(g), der(second[0]))
        status, body = self.https_get(g, "/still", second[0])
        self.assertEqual(status, 200, body[:300])

    def test_alpn_without_http11_is_refused_and_plain_http_is_not_answered(self):
        b, w, g = self.tls_gateway()
        req = b"GET /alpn HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        p = subprocess.run([OPENSSL, "s_client", "-connect", g.listen, "-CAfile", self.tls_cert,
                            "-alpn", "h2,http/1.1", "-ign_eof"],
                           input=req, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10)
        out = p.stdout.decode("utf-8", "replace")
        self.assertIn("ALPN protocol: http/1.1", out, "h2 offered first, http/1.1 chosen: %s" % out[-2000:])
        self.assertRegex(out, r"HTTP/1\.1 200")
        p = subprocess.run([OPENSSL, "s_client", "-connect", g.listen, "-CAfile", self.tls_cert,
                            "-alpn", "h2"],
                           input=req, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10)
        both = (p.stdout + p.stderr).decode("utf-8", "replace")
        self.assertNotIn("HTTP/1.1 200", both, "a client offering only h2 is not answered in HTTP/1.1")
        self.assertRegex(both, r"no application protocol|alert number 120",
                         "refused with no_application_protocol: %s" % both[-2000:])
        # Plain HTTP on the TLS port: no HTTP answer, the connection is closed, nothing breaks.
        with socket.create_connection((g.host, g.port), timeout=5) as s:
            s.sendall(req)
            got = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
        self.assertNotIn(b"HTTP/1.1", got)
        status, body = self.https_get(g, "/after")
        self.assertEqual(status, 200, body[:300])
        m = metrics_text(g.metrics)
        self.assertRegex(m, r'scale0_gateway_tls_handshakes_total\{result="failed"\} [2-9]')
        self.assertRegex(m, r'scale0_gateway_tls_handshakes_total\{result="ok"\} [2-9]')

    def test_unfinished_tls_handshake_closed_after_header_timeout(self):
        b, w, g = self.tls_gateway()
        stuck = StuckTlsClient(g.host, g.port)
        self.addCleanup(stuck.close)
        # a legitimate HTTPS client is served meanwhile
        status, body = self.https_get(g, "/meanwhile")
        self.assertEqual(status, 200, body[:300])
        elapsed = stuck.wait_closed(self.HEADER_TIMEOUT / 1000.0 + 4.0)
        self.assertIsNotNone(elapsed, "a client that never finishes the TLS handshake is still connected "
                             "%.1fs after a %d ms header timeout" % (self.HEADER_TIMEOUT / 1000.0 + 4.0,
                                                                     self.HEADER_TIMEOUT))
        self.assertGreater(stuck.received, 0, "the server answered the ClientHello (it speaks TLS)")
        self.assertGreaterEqual(elapsed, 0.5, "closed before the header timeout (%.2fs)" % elapsed)
        status, body = self.https_get(g, "/after")
        self.assertEqual(status, 200, body[:300])
        self.assertRegex(metrics_text(g.metrics), r'scale0_gateway_tls_handshakes_total\{result="timeout"\} [1-9]')


if __name__ == "__main__":
    unittest.main()
