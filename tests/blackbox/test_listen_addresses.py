# SPDX-License-Identifier: Apache-2.0
"""Listen addresses as operators write them: host names (resolved to their first address) and
IPv6 literals, for ZeroMQ endpoints and HTTP listeners; printed IPv6 endpoints use brackets."""

import socket
import unittest

from harness import BIN, GATEWAY_READY_RE, READY_RE, Proc, Scale0TestCase, first_line, now, run_cli


def ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


class ListenAddressTest(Scale0TestCase):

    def start(self, args):
        p = Proc([BIN] + args, capture_stdout=True)
        self.addCleanup(p.cleanup)
        line = first_line(p)
        return p, line

    def test_host_names_are_resolved_for_every_endpoint(self):
        p, line = self.start(["broker", "--frontend", "tcp://localhost:*", "--backend", "tcp://localhost:*",
                              "--heartbeat", "tcp://localhost:*", "--peer-listen", "tcp://localhost:*",
                              "--metrics-listen", "localhost:0"])
        m = READY_RE.match(line)
        self.assertIsNotNone(m, "ready line %r; stderr %s" % (line, p.stderr_text()))
        for e in m.groups()[:4]:
            self.assertRegex(e.decode(), r"^tcp://127\.0\.0\.1:\d+$", "localhost is 127.0.0.1")
        self.assertRegex(m.group(5).decode(), r"^127\.0\.0\.1:\d+$")
        # a client given the host name reaches it
        frontend_port = m.group(1).decode().rsplit(":", 1)[1]
        r = run_cli(["request", "--broker", "tcp://localhost:" + frontend_port, "mmi.service", "x"], timeout=20)
        self.assertEqual((r.returncode, r.stdout), (4, b"404"), r.stderr)

    def test_a_name_that_does_not_resolve_is_a_configuration_error(self):
        r = run_cli(["broker", "--frontend", "tcp://no-such-host.invalid:5555", "--metrics-listen", ""],
                    timeout=30)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn(b"no-such-host.invalid", r.stderr)
        r = run_cli(["broker", "--frontend", "tcp://127.0.0.1:*", "--backend", "tcp://127.0.0.1:*",
                     "--heartbeat", "tcp://127.0.0.1:*", "--peer-listen", "tcp://127.0.0.1:*",
                     "--metrics-listen", "no-such-host.invalid:0"], timeout=30)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn(b"no-such-host.invalid", r.stderr)

    def test_protected_mode_refusals_are_configuration_errors(self):
        # Reachable from elsewhere without CURVE/TLS or --insecure: exit 2 (the unit's
        # RestartPreventExitStatus), and a leading zero (octal to the resolver) is not loopback.
        for args in (["broker", "--frontend", "tcp://0.0.0.0:*", "--backend", "tcp://127.0.0.1:*",
                      "--heartbeat", "tcp://127.0.0.1:*", "--peer-listen", "tcp://127.0.0.1:*",
                      "--metrics-listen", ""],
                     ["gateway", "--listen", "0.0.0.0:0", "--broker", "tcp://127.0.0.1:1",
                      "--metrics-listen", ""],
                     ["gateway", "--listen", "0127.0.0.1:0", "--broker", "tcp://127.0.0.1:1",
                      "--metrics-listen", ""]):
            with self.subTest(args[:3]):
                r = run_cli(args, timeout=30)
                self.assertEqual(r.returncode, 2, r.stderr)

    @unittest.skipUnless(ipv6_loopback(), "no IPv6 loopback here")
    def test_ipv6_endpoints_bind_connect_and_print_with_brackets(self):
        p, line = self.start(["broker", "--frontend", "tcp://[::1]:*", "--backend", "tcp://[::1]:*",
                              "--heartbeat", "tcp://[::1]:*", "--peer-listen", "tcp://[::1]:*",
                              "--metrics-listen", "[::1]:0"])
        m = READY_RE.match(line)
        self.assertIsNotNone(m, "ready line %r; stderr %s" % (line, p.stderr_text()))
        for e in m.groups()[:4]:
            self.assertRegex(e.decode(), r"^tcp://\[::1\]:\d+$")
        metrics = m.group(5).decode()
        self.assertRegex(metrics, r"^\[::1\]:\d+$")
        frontend, backend = m.group(1).decode(), m.group(2).decode()
        w = Proc([BIN, "worker", "--broker", backend, "--service", "v6", "--echo", "--name", "six"])
        self.addCleanup(w.cleanup)
        deadline = now() + 15
        while True:
            r = run_cli(["request", "--broker", frontend, "--timeout", "1s", "v6", "over ipv6"], timeout=20)
            if r.returncode == 0 or now() > deadline:
                break
        self.assertEqual((r.returncode, r.stdout), (0, b"over ipv6"), r.stderr)
        # /metrics over IPv6, at the printed address
        host, port = metrics.rsplit(":", 1)
        with socket.create_connection((host.strip("[]"), int(port)), timeout=5) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        self.assertTrue(data.startswith(b"HTTP/1.1 200"), data[:100])

        g = Proc([BIN, "gateway", "--listen", "[::1]:0", "--broker", frontend, "--metrics-listen", ""],
                 capture_stdout=True)
        self.addCleanup(g.cleanup)
        gl = first_line(g)
        gm = GATEWAY_READY_RE.match(gl)
        self.assertIsNotNone(gm, "gateway ready line %r; stderr %s" % (gl, g.stderr_text()))
        self.assertRegex(gm.group(1).decode(), r"^\[::1\]:\d+$")


if __name__ == "__main__":
    unittest.main()
