# SPDX-License-Identifier: Apache-2.0
"""SIGHUP (docs/operations.md, docs/http.md): the gateway re-reads its --config file (routes and
the settings that change without a restart), keeps its running configuration when the file is
bad, and says there is nothing to reload without one; `scale0 worker` and `scale0 mongrel2`
have nothing to reload, log so and carry on. None of them may die of it (SIGHUP's default)."""

import os
import shutil
import signal
import tempfile
import time
import unittest

from harness import Scale0Worker
from test_gateway import WEB, GatewayTestCase
from test_operations import toml_lines, wait_for


class GatewaySighupTest(GatewayTestCase):

    def write_config(self, path, b, routes, **extra):
        settings = {"listen": "127.0.0.1:0", "broker": b.frontend, "metrics-listen": "127.0.0.1:0",
                    "timeout": 5000, "route": routes}
        settings.update(extra)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write("\n".join(toml_lines(settings)) + "\n")
        os.replace(tmp, path)

    def service_of(self, g, target):
        r = self.call(g, target)
        return r.status, (r.json()["service"] if r.status == 200 else None)

    def hup_and_wait(self, g, text):
        """SIGHUP, then wait for `text` in the gateway's log."""
        before = g.stderr_text().count(text)
        g.proc.signal(signal.SIGHUP)
        self.assertTrue(wait_for(lambda: g.stderr_text().count(text) > before, 5.0),
                        "no %r in the gateway's log after SIGHUP:\n%s" % (text, g.stderr_text()[-2000:]))
        self.assertTrue(g.alive(), "the gateway died of SIGHUP")

    def test_reload_applies_new_routes_and_a_bad_file_keeps_them(self):
        b = self.start_broker(no_worker_timeout=300)
        self.http_worker(b, ["old"], name="old")
        self.http_worker(b, ["new"], name="new")
        self.http_worker(b, [WEB], name="web")
        d = tempfile.mkdtemp(prefix="scale0-hup-")
        self.addCleanup(shutil.rmtree, d, True)
        path = os.path.join(d, "gateway.toml")
        self.write_config(path, b, ["prefix=/x,service=old"])
        g = self.start_gateway(b, config=path)
        self.assertEqual(self.service_of(g, "/x/1"), (200, "old"))

        self.write_config(path, b, ["prefix=/x,service=new", "prefix=/y,service=old"])
        self.hup_and_wait(g, "configuration reloaded")
        self.assertEqual(self.service_of(g, "/x/1"), (200, "new"), "the new route takes effect")
        self.assertEqual(self.service_of(g, "/y/1"), (200, "old"))
        self.assertEqual(self.service_of(g, "/other"), (200, WEB))

        # A bad file (a rule with neither host nor prefix, then a TOML syntax error): logged,
        # routes kept.
        self.write_config(path, b, ["service=old"])
        self.hup_and_wait(g, "reload failed")
        self.assertEqual(self.service_of(g, "/x/1"), (200, "new"))
        with open(path, "w") as f:
            f.write("route = [\n")
        self.hup_and_wait(g, "reload failed")
        self.assertEqual(self.service_of(g, "/x/1"), (200, "new"))
        self.assertEqual(self.service_of(g, "/y/1"), (200, "old"))

        # A setting that needs a restart is named, and the rest still applies.
        self.write_config(path, b, ["prefix=/x,service=old"], **{"metrics-listen": "127.0.0.1:1"})
        self.hup_and_wait(g, "configuration reloaded")
        self.assertIn("changes only on restart", g.stderr_text())
        self.assertEqual(self.service_of(g, "/x/1"), (200, "old"))

    def test_reload_without_config_file_is_logged(self):
        b, g, _ = self.setup_gw(routes=["prefix=/x,service=" + WEB])
        self.hup_and_wait(g, "nothing to reload")
        self.assertEqual(self.service_of(g, "/x"), (200, WEB))


class WorkerSighupTest(GatewayTestCase):

    def test_worker_logs_and_still_serves(self):
        b = self.start_broker()
        w = Scale0Worker(b.backend, ["echo"], name="w1")
        self.addCleanup(w.cleanup)
        c = self.client(b)
        self.assertEqual(c.request("echo", [b"a"], timeout_ms=5000, wait=15.0).status, 200)
        w.proc.signal(signal.SIGHUP)
        self.assertTrue(wait_for(lambda: "SIGHUP: nothing to reload" in w.proc.stderr_text(), 5.0),
                        w.proc.stderr_text()[-2000:])
        time.sleep(0.2)
        self.assertTrue(w.alive(), "the worker died of SIGHUP")
        r = c.request("echo", [b"b"], timeout_ms=5000)
        self.assertEqual((r.status, r.body), (200, [b"b"]))


if __name__ == "__main__":
    unittest.main()
