# SPDX-License-Identifier: Apache-2.0
"""Worker names on the wire (docs/protocol.md, S0/2 READY): a native worker's READY carries a
display name in a frame after its fields (`scale0 worker --name`, default host:pid); the broker shows it in
`scale0 status` (JSON and table) and refuses a name that is not 1-64 bytes of printable UTF-8."""

import re
import struct
import unittest

from harness import Scale0TestCase, run_cli, str8, u8, u32, wait_until

S0W2 = b"S0W2"
READY, WELCOME, DISCONNECT = 1, 6, 5


def ready_v2(name, services=(b"svc",)):
    packed = S0W2 + u8(READY) + u32(1) + u32(0) + u8(0)
    for s in services:
        packed += str8(s)
    return [b"", packed] + ([] if name is None else [name])


class WorkerNameTest(Scale0TestCase):

    def workers_by_name(self, b):
        return {w.get("name"): w for w in self.status_json(b)["workers"]}

    def test_cli_worker_name_and_default_host_pid_are_shown(self):
        b = self.start_broker()
        self.scale0_worker(b, ["echo"], name="api-1 \u00e9t\u00e9")
        unnamed = self.scale0_worker(b, ["echo"])
        wait_until("both workers registered", lambda: len(self.status_json(b)["workers"]) == 2, 20)
        names = self.workers_by_name(b)
        self.assertIn("api-1 \u00e9t\u00e9", names)
        default = [n for n in names if n != "api-1 \u00e9t\u00e9"][0]
        self.assertRegex(default, r"^.+:%d$" % unnamed.proc.p.pid, "default: host:pid")
        # the table shows names, not ids, and the granted heartbeat interval
        r = run_cli(["status", "--broker", b.frontend], timeout=20)
        self.assertEqual(r.returncode, 0, r.stderr)
        text = r.stdout.decode()
        self.assertIn("HEARTBEAT", text)
        self.assertIn("api-1 \u00e9t\u00e9", text)
        self.assertIn(default, text)

    def test_raw_named_ready_registers_and_invalid_names_are_refused(self):
        b = self.start_broker()
        p = self.raw(b.backend)
        p.send(ready_v2(b"raw-7"))
        m = p.recv(5.0)
        self.assertTrue(m is not None and m[1][:5] == S0W2 + u8(WELCOME), "WELCOME: %r" % (m,))
        self.assertEqual(self.workers_by_name(b)["raw-7"]["protocol"], "S0W2")
        for bad, what in ((b"", "empty"), (b"a\x1bb", "an escape"), (b"\xff", "not UTF-8"),
                          (b"n" * 65, "65 bytes"), (b"a\nb", "a newline")):
            with self.subTest(what):
                q = self.raw(b.backend)
                q.send(ready_v2(bad, services=(b"bad-" + what.encode(),)))
                m = q.recv(5.0)
                self.assertIsNotNone(m, what)
                self.assertEqual(m[1][:5], S0W2 + u8(DISCONNECT), "%s: %r" % (what, m))
                self.assertEqual(struct.unpack(">H", m[1][5:7])[0], 400, "%s: %r" % (what, m))
                q.close()
        # two frames after the fields are refused too
        q = self.raw(b.backend)
        q.send(ready_v2(b"a", services=(b"two",)) + [b"b"])
        m = q.recv(5.0)
        self.assertEqual(m[1][:5], S0W2 + u8(DISCONNECT), m)
        # no name: shown by its id, as before names
        q = self.raw(b.backend)
        q.send(ready_v2(None, services=(b"anon",)))
        m = q.recv(5.0)
        self.assertEqual(m[1][:5], S0W2 + u8(WELCOME), m)
        # nothing invalid registered; 64 bytes is a valid name
        q = self.raw(b.backend)
        q.send(ready_v2(b"n" * 64, services=(b"long",)))
        m = q.recv(5.0)
        self.assertEqual(m[1][:5], S0W2 + u8(WELCOME), m)
        names = self.workers_by_name(b)
        self.assertEqual(sorted(names), sorted(["", "raw-7", "n" * 64]))

    def test_invalid_cli_name_is_a_usage_error(self):
        r = run_cli(["worker", "--service", "x", "--echo", "--name", "a\tb"], timeout=20)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn(b"name", r.stderr)


if __name__ == "__main__":
    unittest.main()
