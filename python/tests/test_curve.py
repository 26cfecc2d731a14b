# SPDX-License-Identifier: Apache-2.0
"""CURVE (docs/security.md): zcert files read in Python, and a broker started with
--curve-cert, --worker-keys and --client-keys: listed Python clients and workers get through, an
unlisted client key and a wrong server key get no answer (a local 504; a worker never registers),
and interop with the C++ `scale0 worker` / `scale0 request` under CURVE."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Iterator, Optional

import pytest
import zmq

import scale0
import scale0.aio
from scale0.curve import Curve, curve_from, load_certificate, parse_certificate, public_key_from, valid_z85_key
from conftest import BIN, HERE, Broker, Proc, wait_service

ENV = dict(os.environ, PYTHONPATH=os.path.dirname(HERE) + os.pathsep + HERE)


@dataclass
class Cert:
    path: str  # the public certificate; path + "_secret" the secret one
    public: str

    @property
    def secret_path(self) -> str:
        return self.path + "_secret"


def keygen(path: str) -> Cert:
    out = subprocess.run([BIN, "keygen", path], capture_output=True, timeout=10, check=True)
    return Cert(path, out.stdout.decode().split()[-1])


@dataclass
class Setup:
    broker: Broker
    server: Cert
    worker: Cert
    client: Cert
    other: Cert  # listed nowhere

    def curve(self, who: Optional[Cert]) -> Curve:
        """A Curve trusting the broker (its public certificate file) with who's key pair
        (None: ephemeral)."""
        return Curve(self.server.path, who.secret_path if who else None)


@pytest.fixture
def secure(tmp_path: "os.PathLike[str]") -> Iterator[Setup]:
    if not os.access(BIN, os.X_OK):
        pytest.skip("no scale0 binary at %s (set SCALE0_BIN)" % BIN)
    d = str(tmp_path)
    server, worker, client, other = (keygen(os.path.join(d, n)) for n in ("broker", "worker", "client", "other"))
    with open(os.path.join(d, "workers"), "w") as f:
        f.write("# workers\n%s *\n" % worker.public)
    with open(os.path.join(d, "clients"), "w") as f:
        f.write("%s echo,pyecho,cppecho\n" % client.public)
    b = Broker(extra=["--curve-cert", server.secret_path, "--worker-keys", os.path.join(d, "workers"),
                      "--client-keys", os.path.join(d, "clients"), "--no-worker-timeout", "500"])
    try:
        yield Setup(b, server, worker, client, other)
    finally:
        b.kill()


def echo(job: scale0.Job) -> bytes:
    return job.body


def start(w: scale0.Worker) -> threading.Thread:
    t = threading.Thread(target=w.run, daemon=True)
    t.start()
    return t


def stop(w: scale0.Worker, t: threading.Thread) -> None:
    w.stop()
    t.join(timeout=10)
    assert not t.is_alive(), "the worker did not stop"


# -- keys and certificates ---------------------------------------------------------------------


def test_certificates_from_keygen(tmp_path: "os.PathLike[str]") -> None:
    if not os.access(BIN, os.X_OK):
        pytest.skip("no scale0 binary")
    c = keygen(os.path.join(str(tmp_path), "k"))
    pub, sec = load_certificate(c.secret_path)
    assert pub == c.public and valid_z85_key(sec) and zmq.curve_public(sec.encode()).decode() == pub
    assert load_certificate(c.path) == (c.public, "")
    assert public_key_from(c.path) == public_key_from(c.secret_path) == public_key_from(c.public) == c.public
    with pytest.raises(scale0.Error) as e:
        Curve(c.public, c.path)  # a public certificate cannot be the own key pair
    assert e.value.status == 400 and "secret" in e.value.message
    cv = Curve(c.path, public_key=pub, secret_key=sec)
    assert (cv.server_key, cv.public_key, cv.ephemeral) == (c.public, c.public, False)
    assert sec not in repr(cv)


def test_certificate_parsing() -> None:
    pub, sec = (k.decode() for k in zmq.curve_keypair())
    czmq = ('#   ****  Generated on 2026-01-01 by CZMQ  ****\n#   ZeroMQ CURVE **Secret** Certificate\n\n'
            'metadata\n    name = "x # y"\ncurve\n    public-key = "%s"\n    secret-key = \'%s\'\n' % (pub, sec))
    assert parse_certificate(czmq) == (pub, sec)
    assert parse_certificate('curve\n    secret-key = "%s"\n' % sec) == (pub, sec)  # public key derived
    bare = next(k for k in (zmq.curve_keypair()[0].decode() for _ in range(100)) if "#" not in k)
    assert parse_certificate('curve\n    public-key = %s # a comment\n' % bare) == (bare, "")  # a bare value
    other_pub = zmq.curve_keypair()[0].decode()
    for text, what in [("metadata\n", "not a certificate"),
                       ('metadata\n    public-key = "%s"\n' % pub, "not a certificate"),  # not in curve
                       ('curve\n    public-key = "short"\n', "public-key is not"),
                       ('curve\n    public-key = "%s"\n    secret-key = "%s"\n' % (other_pub, sec), "does not belong")]:
        with pytest.raises(scale0.Error) as e:
            parse_certificate(text, "f")
        assert e.value.status == 400 and what in e.value.message, text
    assert not valid_z85_key("#" * 40) and not valid_z85_key(pub[:39]) and valid_z85_key(pub)
    for bad in [dict(server_key="nope"), dict(server_key=pub, public_key=pub),
                dict(server_key=pub, secret_key="x" * 40 + "y"),
                dict(server_key=pub, public_key=other_pub, secret_key=sec)]:
        with pytest.raises(scale0.Error):
            Curve(**bad)  # type: ignore[arg-type]
    assert curve_from(None, None) is None and curve_from("", "") is None
    with pytest.raises(scale0.Error):
        curve_from(None, "cert_secret")
    with pytest.raises(scale0.Error) as e:
        load_certificate("/nonexistent/cert")
    assert "cannot read" in e.value.message


# -- against a CURVE broker ---------------------------------------------------------------------


def test_listed_client_and_worker(secure: Setup) -> None:
    b = secure.broker
    w = scale0.Worker(b.backend, ["pyecho"], echo, curve=secure.curve(secure.worker), concurrency=4)
    t = start(w)
    try:
        wait_service(b, "pyecho", curve=secure.curve(secure.client))
        with scale0.Client(b.frontend, timeout=2.0, curve=secure.curve(secure.client)) as c:
            assert c.request("pyecho", b"over curve") == b"over curve"
            assert c.ping(1.0)

        async def many() -> list:
            async with scale0.aio.Client(b.frontend, curve=Curve(secure.server.public, secure.client.secret_path)) as ac:
                return list(await asyncio.gather(*(ac.request("pyecho", b"%d" % i) for i in range(50))))
        assert asyncio.run(many()) == [b"%d" % i for i in range(50)]
        # The worker follows the broker's PUB heartbeat under CURVE: still registered once, after
        # several broker intervals with no traffic.
        time.sleep(1.0)
        assert w.registrations == 1 and w.state == scale0.worker.State.READY
        # A listed client calling a service outside its globs: 403 for that request.
        with scale0.Client(b.frontend, timeout=2.0, curve=secure.curve(secure.client)) as c:
            r = c.call("elsewhere", b"x")
            assert (r.status, r.local) == (403, False)
    finally:
        stop(w, t)


def test_unlisted_client_key_gets_no_answer(secure: Setup) -> None:
    """docs/security.md: a key not in the list is refused in the handshake; nothing it sends
    reaches the broker, so the request ends in the library's own 504 (no reply in time)."""
    b = secure.broker
    for who in (secure.other, None, secure.worker):  # unlisted, ephemeral, a worker key on the frontend
        with scale0.Client(b.frontend, timeout=0.4, curve=secure.curve(who)) as c:
            r = c.call("echo", b"x")
            assert (r.status, r.local) == (504, True), (who, r)
            assert not c.ping(0.2)


def test_wrong_server_key_never_connects(secure: Setup) -> None:
    b = secure.broker
    wrong = Curve(secure.other.public, secure.client.secret_path)  # not the broker's key
    with scale0.Client(b.frontend, timeout=0.4, curve=wrong) as c:
        r = c.call("echo", b"x")
        assert (r.status, r.local) == (504, True)
    events: list = []
    w = scale0.Worker(b.backend, ["pyecho"], echo, curve=Curve(secure.other.public, secure.worker.secret_path),
                      on_event=events.append)
    t = start(w)
    try:
        time.sleep(1.5)
        assert w.registrations == 0 and w.state != scale0.worker.State.READY
    finally:
        stop(w, t)
    # Nor does a plaintext (NULL) worker, nor an unlisted worker key.
    for curve in (None, secure.curve(secure.other)):
        w = scale0.Worker(b.backend, ["pyecho"], echo, curve=curve)
        t = start(w)
        try:
            time.sleep(0.8)
            assert w.registrations == 0
        finally:
            stop(w, t)
    wait_service(b, "pyecho", present=False, curve=secure.curve(secure.client), timeout=2)


def test_interop_with_cpp_cli(secure: Setup, procs: list) -> None:
    b = secure.broker
    # C++ worker <- Python CLI and Python client.
    procs.append(Proc([BIN, "worker", "--broker", b.backend, "--service", "cppecho", "--echo",
                       "--curve-server-key", secure.server.public, "--curve-cert", secure.worker.secret_path]))
    wait_service(b, "cppecho", curve=secure.curve(secure.client))
    out = subprocess.run([sys.executable, "-m", "scale0", "request", "--broker", b.frontend,
                          "--curve-server-key", secure.server.path, "--curve-cert", secure.client.secret_path,
                          "cppecho", "from python"], capture_output=True, timeout=15, env=ENV)
    assert (out.returncode, out.stdout) == (0, b"from python"), out.stderr
    out = subprocess.run([sys.executable, "-m", "scale0", "request", "--broker", b.frontend, "--timeout", "0.5",
                          "--curve-server-key", secure.server.public, "cppecho", "ephemeral"],
                         capture_output=True, timeout=15, env=ENV)
    assert out.returncode == 3 and out.stderr.startswith(b"504 "), out
    # Python CLI worker <- C++ client.
    procs.append(Proc([sys.executable, "-m", "scale0", "worker", "--broker", b.backend, "--service", "pyecho",
                       "--curve-server-key", secure.server.path, "--curve-cert", secure.worker.secret_path], env=ENV))
    wait_service(b, "pyecho", curve=secure.curve(secure.client))
    out = subprocess.run([BIN, "request", "--broker", b.frontend, "--curve-server-key", secure.server.path,
                          "--curve-cert", secure.client.secret_path, "pyecho", "from c++"],
                         capture_output=True, timeout=10)
    assert (out.returncode, out.stdout) == (0, b"from c++"), out.stderr
