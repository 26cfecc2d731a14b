# SPDX-License-Identifier: Apache-2.0
"""`python -m scale0 request|worker|status` against the real broker, with the C++ CLI on the
other side (interop both ways)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from conftest import BIN, HERE, Broker, Proc, cpp_worker, wait_service

ENV = dict(os.environ, PYTHONPATH=os.path.dirname(HERE) + os.pathsep + HERE)


def py(*args: str, timeout: float = 15) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scale0", *args], capture_output=True, timeout=timeout, env=ENV)


def test_request_to_cpp_worker(broker: Broker, procs: list) -> None:
    procs.append(cpp_worker(broker, "echo"))
    out = py("request", "--broker", broker.frontend, "echo", "hi there")
    assert (out.returncode, out.stdout) == (0, b"hi there")
    out = py("request", "--broker", broker.frontend, "--timeout", "2", "nosuch", "x")
    assert out.returncode == 5 and out.stderr.startswith(b"503 ")
    out = py("request", "--broker", broker.frontend, "mmi.service", "nosuch")
    assert (out.returncode, out.stdout) == (0, b"404")


def test_worker_echo_and_wsgi_to_cpp_client(broker: Broker, procs: list) -> None:
    w = Proc([sys.executable, "-m", "scale0", "worker", "--broker", broker.backend, "--service", "pyecho,other",
              "--concurrency", "2", "--name", "py-cli"], env=ENV)
    procs.append(w)
    wsgi = Proc([sys.executable, "-m", "scale0", "worker", "--broker", broker.backend, "--service", "web",
                 "--wsgi", "wsgiref.simple_server:demo_app"], env=ENV)
    procs.append(wsgi)
    wait_service(broker, "pyecho")
    wait_service(broker, "web")
    out = subprocess.run([BIN, "request", "--broker", broker.frontend, "pyecho", "from c++"], capture_output=True,
                         timeout=10)
    assert (out.returncode, out.stdout) == (0, b"from c++")
    out = subprocess.run([BIN, "request", "--broker", broker.frontend, "web", "GET / HTTP/1.1\r\nHost: web\r\n\r\n"],
                         capture_output=True, timeout=10)
    assert out.returncode == 0 and out.stdout.startswith(b"HTTP/1.1 200 OK\r\n")
    status = py("status", "--broker", broker.frontend, "--json")
    assert status.returncode == 0
    doc = json.loads(status.stdout)
    assert "py-cli" in [x["name"] for x in doc["workers"]]
    table = py("status", "--broker", broker.frontend)
    assert table.returncode == 0 and b"pyecho" in table.stdout
    # SIGTERM: a graceful stop, exit 0, the service gone.
    w.p.send_signal(signal.SIGTERM)
    assert w.p.wait(timeout=10) == 0
    assert "stopped" in w.stderr()
    wait_service(broker, "pyecho", present=False, timeout=5)


def test_status_without_broker() -> None:
    out = py("status", "--broker", "tcp://127.0.0.1:9", "--timeout", "0.3")
    assert out.returncode == 3


def test_a_key_that_starts_with_a_dash_is_taken_as_the_option_value() -> None:
    """Z85 keys may start with '-' (found when a random test key did): argparse would take it for
    an option; the CLI joins it to its option."""
    from scale0.__main__ import _join_values
    assert _join_values(["request", "--curve-server-key", "-abc", "svc"]) == [
        "request", "--curve-server-key=-abc", "svc"]
    assert _join_values(["--curve-cert", "f", "x"]) == ["--curve-cert=f", "x"]
    assert _join_values(["--curve-server-key"]) == ["--curve-server-key"]
