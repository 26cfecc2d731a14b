# SPDX-License-Identifier: Apache-2.0
"""Request smuggling through `scale0 gateway`, black-box.

client (raw socket) -> scale0 gateway -> scale0 broker -> scale0 worker --http (sidecar) -> Recorder

One stack for the whole process (recorder.gateway_stack()): routes
`host=app.local,prefix=/admin,service=admin.internal` (+ `host=tunnel.local,connect=yes,...` when the
binary knows rule 15), host routing otherwise, `--default-service app.local`, sidecars for
`app.local` and `admin.internal`, each in front of its own Recorder.

One test per vector of vectors.VECTORS (test_<name>): fresh connection, the raw bytes, every
answer read (bounded), then the answer statuses, closed-or-open, exactly the requests the apps saw
(method, target, selected fields, body) and the invariants that hold for every vector (nothing with
`smuggled` in its target ever reaches an app, one Content-Length matching the body, no hop-by-hop
field). Each vector names the rule of /tmp/http_rules.md and the RFC section or attack it exercises.

TrustedProxyTests (rule 19, trusted peer) and UnderscoreOptionTests (rule 18's
--underscores-in-headers) start a second gateway on the same broker.
"""

import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import recorder as R  # noqa: E402
import vectors as VX  # noqa: E402
import harness  # noqa: E402


class RequestSmugglingTests(unittest.TestCase):
    """One test per vector (generated below)."""

    @classmethod
    def setUpClass(cls):
        if not harness.binary_available():
            raise unittest.SkipTest("scale0 binary not found at %s (set SCALE0_BIN)" % harness.BIN)
        cls.stack = R.gateway_stack()

    def run_and_judge(self, v):
        st = self.stack
        self.assertTrue(st.alive(), "a process of the stack died:\n" + st.stderr_text())
        res = VX.gateway_result(v)
        problems = VX.judge(res)
        if v.needs == "connect_route" and not st.connect_route:
            problems.insert(0, "the gateway refused the route `host=%s,connect=yes,...` (rule 15)" % R.TUNNEL_HOST)
        if problems:
            self.fail("\n".join(problems) + "\n" + VX.describe(res))
        self.assertTrue(st.alive(), "a process of the stack died after %s:\n%s" % (v.name, st.stderr_text()))


def _make_test(v):
    def test(self):
        self.run_and_judge(v)
    test.__doc__ = "%s: %s" % (v.rule, v.why)
    test.__name__ = "test_" + v.name
    return test


for _v in VX.VECTORS:
    setattr(RequestSmugglingTests, "test_" + _v.name, _make_test(_v))


class TableTests(unittest.TestCase):
    def test_table_is_big_and_every_vector_documented(self):
        """The table holds at least 100 vectors, each naming its rule and its point."""
        self.assertGreaterEqual(len(VX.VECTORS), 100)
        for v in VX.VECTORS:
            self.assertTrue(v.rule and v.why, v.name)
            self.assertIsInstance(v.raw, bytes, v.name)

    def test_vectors_that_must_be_refused_carry_a_smuggled_request(self):
        """Most refused vectors carry SMUG: the invariant "never reaches an app" is then tested."""
        refused = [v for v in VX.VECTORS if isinstance(v.status, int) and v.status >= 400 and v.close]
        carrying = [v for v in refused if VX.MARK.encode() in v.raw]
        self.assertGreaterEqual(len(carrying), len(refused) * 0.8, [v.name for v in refused if v not in carrying])


class _SecondGateway(unittest.TestCase):
    """A second gateway with extra flags, on the process's broker and sidecars."""

    extra = ()

    @classmethod
    def setUpClass(cls):
        if not harness.binary_available():
            raise unittest.SkipTest("scale0 binary not found at %s (set SCALE0_BIN)" % harness.BIN)
        cls.stack = R.gateway_stack()
        cls.gw = harness.Gateway(cls.stack.broker.frontend, cls.stack.routes(False), extra=cls.extra,
                                 default_service=R.APP_HOST)
        cls.start_error = None
        try:
            cls.gw.start()
        except harness.BrokerStartError as e:
            cls.start_error = str(e)

    @classmethod
    def tearDownClass(cls):
        cls.gw.kill()
        cls.gw.cleanup()

    def send(self, raw):
        if self.start_error:
            self.fail("the gateway refused %r: %s" % (list(self.extra), self.start_error[-1500:]))
        self.stack.clear()
        ex = R.send_raw(self.gw.listen, raw, total=1.5, quiet=0.1)
        self.stack.barrier()
        seen, errs = self.stack.seen()
        self.assertEqual(ex.statuses, [200], ex)
        self.assertEqual(len(seen), 1, seen)
        return seen[0]


class TrustedProxyTests(_SecondGateway):
    """Rule 19, trusted peer (`--trusted-proxies 127.0.0.1/32`): the client's forwarding fields are
    kept and the peer appended."""

    extra = ("--trusted-proxies", "127.0.0.1/32,::1/128")

    def test_x_forwarded_for_appended(self):
        q = self.send(VX.head(VX.G(b"/t"), VX.HOST, b"X-Forwarded-For: 1.2.3.4", b"X-Forwarded-For: 5.6.7.8"))
        self.assertEqual(q.get_all("X-Forwarded-For"), ["1.2.3.4, 5.6.7.8, 127.0.0.1"], q)

    def test_forwarded_appended(self):
        q = self.send(VX.head(VX.G(b"/t"), VX.HOST, b"Forwarded: for=1.2.3.4;proto=https"))
        self.assertEqual(q.get_all("Forwarded"), ["for=1.2.3.4;proto=https, for=127.0.0.1;proto=http"], q)

    def test_client_proto_host_real_ip_kept(self):
        q = self.send(VX.head(VX.G(b"/t"), VX.HOST, b"X-Forwarded-Proto: https",
                              b"X-Forwarded-Host: www.example.com", b"X-Real-IP: 1.2.3.4"))
        self.assertEqual(q.get_all("X-Forwarded-Proto"), ["https"], q)
        self.assertEqual(q.get_all("X-Forwarded-Host"), ["www.example.com"], q)
        self.assertEqual(q.get_all("X-Real-IP"), ["1.2.3.4"], q)

    def test_defaults_when_the_client_sent_none(self):
        q = self.send(VX.head(VX.G(b"/t"), VX.HOST))
        self.assertEqual(q.get_all("X-Forwarded-For"), ["127.0.0.1"], q)
        self.assertEqual(q.get_all("X-Forwarded-Proto"), ["http"], q)
        self.assertEqual(q.get_all("X-Real-IP"), ["127.0.0.1"], q)
        self.assertEqual(q.get_all("Forwarded"), ["for=127.0.0.1;proto=http"], q)
        self.assertEqual(q.get_all("X-Forwarded-Host"), [], q)


class UnderscoreOptionTests(_SecondGateway):
    """Rule 18: `--underscores-in-headers` keeps field names with `_`."""

    extra = ("--underscores-in-headers",)

    def test_underscore_fields_kept(self):
        q = self.send(VX.head(VX.G(b"/u"), VX.HOST, b"X_Custom: 1", b"X-Other: 2"))
        self.assertEqual(q.get_all("X_Custom"), ["1"], q)
        self.assertEqual(q.get_all("X-Other"), ["2"], q)

    def test_forwarding_fields_still_replaced(self):
        """Even with underscores kept, the client's X-Forwarded-For is replaced (untrusted peer)."""
        q = self.send(VX.head(VX.G(b"/u"), VX.HOST, b"X-Forwarded-For: 6.6.6.6"))
        self.assertEqual(q.get_all("X-Forwarded-For"), ["127.0.0.1"], q)


if __name__ == "__main__":
    unittest.main()
