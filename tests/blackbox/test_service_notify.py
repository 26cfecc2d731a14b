# SPDX-License-Identifier: Apache-2.0
"""systemd readiness (sd_notify, docs/operations.md): the gateway reports READY=1 once listening,
a worker once set up (its status line then says where it registered); both STOPPING=1 when a
graceful stop begins; the gateway RELOADING=1 then READY=1 around a SIGHUP. Checked with a NOTIFY_SOCKET of the test's own, as systemd would give."""

import os
import signal
import socket
import subprocess
import tempfile
import unittest

from harness import BIN, Scale0TestCase, now


class NotifySocket:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="scale0-notify-")
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.seen = []

    def wait_for(self, state, timeout=15.0):
        deadline = now() + timeout
        while now() < deadline:
            if any(state in m for m in self.seen):
                return True
            self.sock.settimeout(max(0.01, deadline - now()))
            try:
                self.seen.append(self.sock.recv(4096).decode())
            except socket.timeout:
                break
        return any(state in m for m in self.seen)

    def close(self):
        self.sock.close()
        os.unlink(self.path)
        os.rmdir(self.dir)


def spawn(args, notify):
    env = dict(os.environ, NOTIFY_SOCKET=notify.path)
    return subprocess.Popen([BIN] + args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)


class ServiceNotifyTest(Scale0TestCase):

    def notify(self):
        n = NotifySocket()
        self.addCleanup(n.close)
        return n

    def reap(self, p):
        def stop():
            if p.poll() is None:
                p.kill()
            p.wait(10)
            p.stderr.close()
        self.addCleanup(stop)
        return p

    def test_gateway_ready_reloading_stopping(self):
        b = self.start_broker()
        n = self.notify()
        with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
            f.write('listen = "127.0.0.1:0"\nbroker = "%s"\nmetrics-listen = ""\n' % b.frontend)
        self.addCleanup(os.unlink, f.name)
        g = self.reap(spawn(["gateway", "--config", f.name], n))
        self.assertTrue(n.wait_for("READY=1"), "gateway READY=1: %r" % n.seen)
        g.send_signal(signal.SIGHUP)
        self.assertTrue(n.wait_for("RELOADING=1"), "gateway RELOADING=1: %r" % n.seen)
        ready_after = lambda: [m for m in n.seen if "READY=1" in m and "RELOADING" not in m]
        deadline = now() + 10
        while len(ready_after()) < 2 and now() < deadline:
            n.wait_for("never", timeout=0.2)
        self.assertGreaterEqual(len(ready_after()), 2, "READY=1 again after the reload: %r" % n.seen)
        g.send_signal(signal.SIGTERM)
        self.assertTrue(n.wait_for("STOPPING=1"), "gateway STOPPING=1: %r" % n.seen)
        self.assertEqual(g.wait(15), 0)

    def test_worker_ready_then_registered_in_its_status_then_stopping(self):
        n = self.notify()
        b = self.start_broker()
        w = self.reap(spawn(["worker", "--broker", b.backend, "--service", "notify", "--echo"], n))
        self.assertTrue(n.wait_for("READY=1"), "worker READY=1: %r" % n.seen)
        self.assertTrue(n.wait_for("STATUS=registered with " + b.backend),
                        "the status line says where it registered: %r" % n.seen)
        w.send_signal(signal.SIGTERM)
        self.assertTrue(n.wait_for("STOPPING=1"), "worker STOPPING=1: %r" % n.seen)
        self.assertEqual(w.wait(15), 0)

    def test_worker_without_a_broker_starts_and_says_so(self):
        # A broker away must not fail the worker's start (its unit would loop): READY=1 once set
        # up, and no registration in its status.
        n = self.notify()
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()  # nobody listens there
        w = self.reap(spawn(["worker", "--broker", "tcp://127.0.0.1:%d" % port, "--service", "x",
                             "--echo"], n))
        self.assertTrue(n.wait_for("READY=1"), "READY=1: %r" % n.seen)
        n.wait_for("never", timeout=1.0)
        self.assertFalse([m for m in n.seen if "STATUS=registered" in m], n.seen)
        w.send_signal(signal.SIGTERM)
        self.assertTrue(n.wait_for("STOPPING=1"), "STOPPING=1: %r" % n.seen)


if __name__ == "__main__":
    unittest.main()
