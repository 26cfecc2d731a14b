# SPDX-License-Identifier: Apache-2.0
"""Helpers for the security suite (test_security.py), written from issue 11 (CURVE, ZAP, key lists,
protected mode, TLS at the gateway), docs/protocol.md and RFC 7/MDP; nothing here knows how the
broker is implemented.

  * KeyPair / new_keypair(): CURVE key pairs made by libzmq (pyzmq's curve_keypair), Z85 text;
  * write_zcert(): a certificate pair exactly as CZMQ's zcert_save writes it (ZPL text);
    parse_zpl(): reads one back, strictly enough to check what `scale0 keygen` writes;
  * write_key_list(): a --worker-keys / --client-keys file (`<public-key> <glob>[,<glob>...]`);
  * curve_context(): a zmq.Context whose every new socket is a CURVE client with given keys
    (pyzmq applies a context's default options to each socket it creates), so the harness's
    NativeClient / NativeWorker / MdpWorker / MdpClient speak CURVE unchanged;
  * curve_socket(): one socket with the CURVE options set explicitly, then connected;
  * handshake_probe(): connects a socket and reports, from its monitor, whether the ZMTP
    handshake succeeded or failed (and how);
  * CurveMdpWorker: a plain Majordomo 0.1 worker on a socket with CURVE options;
  * metrics_samples(): a lenient Prometheus text reader;
  * make_tls_cert(), StuckTlsClient: a self-signed certificate (openssl) and a TLS client that
    sends its ClientHello and then never finishes the handshake.
"""

import http.client
import os
import re
import socket
import ssl
import subprocess
import threading
import time

import zmq
from zmq.utils.monitor import recv_monitor_message

MDPC = b"MDPC01"
MDPW = b"MDPW01"
Z85_RE = re.compile(r"^[0-9a-zA-Z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}$")


def now():
    return time.monotonic()


# ---------------------------------------------------------------------------------------------
# Keys and certificates
# ---------------------------------------------------------------------------------------------
class KeyPair:
    def __init__(self, public, secret):
        self.public = public if isinstance(public, bytes) else public.encode()
        self.secret = secret if isinstance(secret, bytes) else secret.encode()

    @property
    def public_text(self):
        return self.public.decode("ascii")

    @property
    def secret_text(self):
        return self.secret.decode("ascii")

    def __repr__(self):
        return "KeyPair(public=%s)" % self.public_text


def new_keypair(hash_inside=False):
    """A fresh CURVE key pair. The public key never starts with `#` (issue 11: a line of a key
    list whose first non-blank character is `#` is a comment, so such a key could not be listed)
    nor with `-` (a command-line parser could take it for an option). hash_inside: the public
    key holds a `#` after its first character (a key list has no trailing comments)."""
    for _ in range(5000):
        pub, sec = zmq.curve_keypair()
        if pub[:1] in (b"#", b"-"):
            continue
        if hash_inside and b"#" not in pub[1:]:
            continue
        return KeyPair(pub, sec)
    raise AssertionError("could not generate a suitable key pair")


ZCERT_PUBLIC_HEADER = (
    "#   ****  Generated on {date} by CZMQ  ****\n"
    "#   ZeroMQ CURVE Public Certificate\n"
    "#   Exchange securely, or use a secure mechanism to verify the contents\n"
    "#   of this file after exchange. Store public certificates in your home\n"
    "#   directory, in the .curve subdirectory.\n"
    "\n")
ZCERT_SECRET_HEADER = (
    "#   ****  Generated on {date} by CZMQ  ****\n"
    "#   ZeroMQ CURVE **Secret** Certificate\n"
    "#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.\n"
    "\n")


def write_zcert(base, kp, metadata=None):
    """Writes `base` (public certificate) and `base_secret` (both keys, mode 0600) in the text
    format of CZMQ's zcert_save (ZPL, 4-space indentation). Returns (public path, secret path)."""
    date = time.strftime("%Y-%m-%d %H:%M:%S")
    meta = "metadata\n"
    for k, v in (metadata or {}).items():
        meta += '    %s = "%s"\n' % (k, v)
    public = ZCERT_PUBLIC_HEADER.format(date=date) + meta + 'curve\n    public-key = "%s"\n' % kp.public_text
    secret = (ZCERT_SECRET_HEADER.format(date=date) + meta + 'curve\n    public-key = "%s"\n'
              '    secret-key = "%s"\n' % (kp.public_text, kp.secret_text))
    with open(base, "w") as f:
        f.write(public)
    sec_path = base + "_secret"
    fd = os.open(sec_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret)
    os.chmod(sec_path, 0o600)
    return base, sec_path


def parse_zpl(text):
    """ZPL (ZeroMQ RFC 4) into nested dicts: {"metadata": {...}, "curve": {"public-key": ...}}.
    Comments and blank lines are skipped; indentation is 4 spaces per level; values may be
    quoted. Raises AssertionError on a line that is not ZPL."""
    root = {}
    stack = [(-1, root)]
    for no, line in enumerate(text.split("\n"), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        indent = len(line) - len(line.lstrip(" "))
        if indent % 4:
            raise AssertionError("ZPL line %d: indentation of %d spaces is not a multiple of 4: %r"
                                 % (no, indent, line))
        level = indent // 4
        body = line.strip()
        m = re.match(r'^([A-Za-z0-9$\-_@.&+/]+)\s*(?:=\s*(?:"([^"]*)"|\'([^\']*)\'|(\S.*?)))?\s*$', body)
        if not m:
            raise AssertionError("ZPL line %d is not `name [= value]`: %r" % (no, line))
        while stack and stack[-1][0] >= level:
            stack.pop()
        if not stack or stack[-1][0] != level - 1:
            raise AssertionError("ZPL line %d is indented too deep: %r" % (no, line))
        parent = stack[-1][1]
        name = m.group(1)
        value = next((g for g in m.groups()[1:] if g is not None), None)
        node = {}
        if value is not None:
            parent[name] = value
        else:
            parent[name] = node
        stack.append((level, node))
    return root


def write_key_list(path, entries, header=True):
    """A --worker-keys / --client-keys file: one `<public-key> <glob>[,<glob>...]` line per
    (KeyPair or Z85 text, [globs]) entry, with comment and blank lines around them (written
    atomically: a reloading broker never sees half a file)."""
    lines = []
    if header:
        lines += ["# keys allowed on this endpoint: <public-key> <service-glob>[,<service-glob>...]",
                  "", "   # an indented comment"]
    for key, globs in entries:
        k = key.public_text if isinstance(key, KeyPair) else key
        lines.append("%s %s" % (k, ",".join(globs)))
        if header:
            lines.append("")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------------------------------------
# CURVE sockets
# ---------------------------------------------------------------------------------------------
def curve_context(server_public, kp):
    """A context whose sockets are all CURVE clients of server_public with key pair kp (kp None:
    a plaintext context, for symmetry)."""
    ctx = zmq.Context()
    if kp is not None:
        ctx.setsockopt(zmq.CURVE_SERVERKEY, server_public)
        ctx.setsockopt(zmq.CURVE_PUBLICKEY, kp.public)
        ctx.setsockopt(zmq.CURVE_SECRETKEY, kp.secret)
    ctx.setsockopt(zmq.LINGER, 0)
    return ctx


def set_curve(s, server_public, kp):
    """CURVE client options on s, set explicitly as any Majordomo peer would (none when kp is None)."""
    if kp is not None:
        s.setsockopt(zmq.CURVE_SERVERKEY, server_public)
        s.setsockopt(zmq.CURVE_PUBLICKEY, kp.public)
        s.setsockopt(zmq.CURVE_SECRETKEY, kp.secret)


def curve_socket(ctx, kind, endpoint, server_public, kp, identity=None):
    """One socket, CURVE options set on it explicitly (as any Majordomo peer would), connected."""
    s = ctx.socket(kind)
    s.setsockopt(zmq.LINGER, 0)
    set_curve(s, server_public, kp)
    if identity is not None:
        s.setsockopt(zmq.IDENTITY, identity)
    s.connect(endpoint)
    return s


HANDSHAKE_EVENTS = {
    zmq.EVENT_HANDSHAKE_SUCCEEDED: "succeeded",
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: "failed-auth",
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "failed-protocol",
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "failed-no-detail",
}


def handshake_probe(server_public, kp, endpoint, timeout=3.0, kind=zmq.DEALER):
    """Connects a socket (CURVE with kp, or plaintext when kp is None) and watches its monitor.
    Returns ("succeeded" | "failed-auth" | "failed-protocol" | "failed-no-detail" | "none",
    [event names seen]); returns at the first handshake outcome or after timeout."""
    ctx = zmq.Context()
    s = None
    mon = None
    seen = []
    try:
        s = ctx.socket(kind)
        s.setsockopt(zmq.LINGER, 0)
        set_curve(s, server_public, kp)
        mon = s.get_monitor_socket(zmq.EVENT_ALL)
        s.connect(endpoint)
        deadline = now() + timeout
        for _ in range(10000):
            left = deadline - now()
            if left <= 0:
                break
            if not mon.poll(int(left * 1000) + 1, zmq.POLLIN):
                break
            ev = recv_monitor_message(mon)
            name = HANDSHAKE_EVENTS.get(ev["event"])
            seen.append(name or "event-%#x(%s)" % (ev["event"], ev.get("value")))
            if name is not None:
                return name, seen
        return "none", seen
    finally:
        if s is not None:
            try:
                s.disable_monitor()
            except zmq.ZMQError:
                pass
            s.close(0)
        if mon is not None:
            mon.close(0)
        ctx.destroy(linger=0)


# ---------------------------------------------------------------------------------------------
# A Majordomo 0.1 worker (RFC 7) on a socket with CURVE options, nothing else changed
# ---------------------------------------------------------------------------------------------
class CurveMdpWorker(threading.Thread):
    """MDP/Worker 0.1: READY for one service, HEARTBEAT every hb_ms, echoes each REQUEST's body
    with `prefix` added to its first frame. Records DISCONNECTs."""

    def __init__(self, endpoint, server_public, kp, service, hb_ms=500, prefix=b"mdp:"):
        super().__init__(daemon=True)
        self.endpoint, self.server_public, self.kp = endpoint, server_public, kp
        self.service = service if isinstance(service, bytes) else service.encode()
        self.hb_ms, self.prefix = hb_ms, prefix
        self.jobs = []
        self.disconnects = []
        self.disconnect_evt = threading.Event()
        self.error = None
        self._halt = threading.Event()

    def stop(self):
        self._halt.set()
        if self.is_alive():
            self.join(5.0)

    def run(self):
        ctx = zmq.Context()
        s = None
        try:
            s = curve_socket(ctx, zmq.DEALER, self.endpoint, self.server_public, self.kp)
            s.send_multipart([b"", MDPW, b"\x01", self.service])
            next_hb = now() + self.hb_ms / 1000.0
            for _ in range(10 ** 7):
                if self._halt.is_set():
                    break
                if now() >= next_hb:
                    s.send_multipart([b"", MDPW, b"\x04"])
                    next_hb = now() + self.hb_ms / 1000.0
                if not s.poll(20, zmq.POLLIN):
                    continue
                m = s.recv_multipart()
                if len(m) < 3 or m[0] != b"" or m[1] != MDPW:
                    continue
                if m[2] == b"\x02" and len(m) >= 5 and m[4] == b"":
                    body = list(m[5:])
                    self.jobs.append((m[3], body))
                    if body:
                        body[0] = self.prefix + body[0]
                    s.send_multipart([b"", MDPW, b"\x03", m[3], b""] + body)
                elif m[2] == b"\x05":
                    self.disconnects.append(m)
                    self.disconnect_evt.set()
        except Exception as e:  # reported by the test
            self.error = repr(e)
        finally:
            if s is not None:
                s.close(0)
            ctx.destroy(linger=0)


def mdp_request(ctx, endpoint, server_public, kp, service, body, timeout=10.0):
    """One MDP/Client 0.1 request on a fresh REQ socket with CURVE options; (service, body frames)
    or None if no reply within timeout."""
    s = curve_socket(ctx, zmq.REQ, endpoint, server_public, kp)
    try:
        s.send_multipart([MDPC, service if isinstance(service, bytes) else service.encode()] + list(body))
        if not s.poll(int(timeout * 1000), zmq.POLLIN):
            return None
        m = s.recv_multipart()
        if len(m) < 3 or m[0] != MDPC:
            raise AssertionError("malformed MDP client reply: %r" % (m,))
        return m[1], list(m[2:])
    finally:
        s.close(0)


# ---------------------------------------------------------------------------------------------
# Prometheus text (lenient: the security suite only looks for counters)
# ---------------------------------------------------------------------------------------------
_SAMPLE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?[ \t]+(\S+)(?:[ \t]+-?\d+)?$")
_LABEL_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\.)*)"\s*,?')


def metrics_text(hostport, timeout=5.0):
    host, port = hostport.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("GET", "/metrics")
        r = conn.getresponse()
        body = r.read().decode("utf-8", "replace")
        if r.status != 200:
            raise AssertionError("GET /metrics: %d %r" % (r.status, body[:300]))
        return body
    finally:
        conn.close()


def metrics_samples(text):
    """[(name, {label: value}, float value)] of every sample line."""
    out = []
    for line in text.split("\n"):
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE_RE.match(line)
        if not m:
            continue
        labels = {}
        for lm in _LABEL_RE.finditer(m.group(2) or ""):
            labels[lm.group(1)] = lm.group(2)
        try:
            value = float(m.group(3))
        except ValueError:
            continue
        out.append((m.group(1), labels, value))
    return out


# ---------------------------------------------------------------------------------------------
# TLS
# ---------------------------------------------------------------------------------------------
def make_tls_cert(directory):
    """A self-signed certificate for 127.0.0.1 (CN and subjectAltName IP); (cert.pem, key.pem)."""
    cert = os.path.join(directory, "cert.pem")
    key = os.path.join(directory, "key.pem")
    p = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", key, "-out", cert],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10)
    if p.returncode != 0:
        raise AssertionError("openssl req failed: %r" % p.stderr[-2000:])
    return cert, key


class StuckTlsClient:
    """Connects, sends a real ClientHello (Python's ssl on memory BIOs), reads whatever the
    server answers, and never sends anything more: the handshake never finishes."""

    def __init__(self, host, port):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.incoming, self.outgoing, server_side=False)
        try:
            self.obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        hello = self.outgoing.read()
        if not hello or hello[0] != 0x16:
            raise AssertionError("could not make a ClientHello: %r" % hello[:20])
        self.sock = socket.create_connection((host, port), timeout=5.0)
        self.sock.sendall(hello)
        self.t_sent = now()
        self.received = 0

    def wait_closed(self, timeout):
        """Reads (and discards) until the server closes; returns the seconds from the ClientHello
        to the close, or None if still open after timeout."""
        deadline = now() + timeout
        self.sock.settimeout(0.05)
        for _ in range(100000):
            if now() >= deadline:
                return None
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return now() - self.t_sent
            if not data:
                return now() - self.t_sent
            self.received += len(data)
        return None

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

