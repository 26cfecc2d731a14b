# SPDX-License-Identifier: Apache-2.0
"""Service policies: the `[service."NAME"]` tables of the broker's configuration file
(docs/operations.md, "Service policies"). The real `scale0 broker` is started with a file; real S0
clients and workers over pyzmq check that each service's request-timeout, max-queue, idempotent and
max-concurrency apply; then the file is changed and SIGHUP sent, and the changes must apply, with
the policy version in `scale0 status --json` one higher (and unchanged by a reload that changes
nothing). A bad table stops the broker with the file, the line and the key.

Every wait is bounded; no sleep is longer than a fraction of a second.
"""

import json
import os
import signal
import unittest

from harness import BIN, now, run_cli
from test_operations import OpsTestCase, distinct_ports, run_until_ready_or_exit, toml_lines


class PolicyTest(OpsTestCase):

    def write_policy(self, name, ports, services, **top):
        """A configuration: the usual test settings (JSON logs), `top` keys, then one table per
        service (services: {name: {key: value}})."""
        lines = toml_lines(self.base_settings(ports, log_format="json", **top))
        for service, keys in services.items():
            lines.append("")
            lines.append("[service.%s]" % json.dumps(service))
            lines += toml_lines(keys)
        return self.write_file(name, "# written by test_policy.py\n" + "\n".join(lines) + "\n")

    def hup(self, b, expect="configuration reloaded"):
        start = len(self.log_json(b))
        b.proc.signal(signal.SIGHUP)
        return self.wait_log(b, lambda o: expect in o.get("msg", ""), 5.0, start,
                             "%r after SIGHUP" % expect)

    def status_cli(self, b):
        res = run_cli(["status", "--broker", b.frontend, "--json", "--timeout", "3000"], timeout=15)
        self.assertEqual(res.returncode, 0, res.stderr)
        return json.loads(res.stdout.decode())

    def policies(self, j):
        return {p["name"]: p for p in j["policy"]["services"]}

    def lost_request(self, b, service, flags):
        """A worker (idempotent flag `flags`) takes a request of `service` and leaves with it
        (DISCONNECT); a spare worker with the same flag is there. Returns (the client's reply,
        the jobs the spare got)."""
        holder = self.native_worker(b, [service], mode="hold", flags=flags)
        c = self.client(b)
        rid = c.send_request(service, b"job", timeout_ms=8000)
        self.assertIsNotNone(holder.next_job(5.0), "the first worker gets the request")
        spare = self.native_worker(b, [service], flags=flags)  # echoes; registered after
        holder.leave()
        r = c.get_reply(rid, 6.0)
        self.assertIsNotNone(r, "one outcome for a request lost with its worker")
        jobs = spare.jobs_within(0.2)
        spare.leave()  # out of the way of the next case
        return r, jobs

    def test_policies_apply_and_a_reload_changes_them_with_a_new_version(self):
        ports = distinct_ports(3)
        services = {
            "slow": {"request-timeout": 300},
            "q": {"max-queue": 1},
            "capped": {"max-concurrency": 2},
            "never": {"idempotent": False},
            "again": {"idempotent": True},
        }
        path = self.write_policy("broker.toml", ports, services, request_timeout=30000,
                                 max_queue=100)
        b = self.start_config_broker(path, ports)

        j = self.status_cli(b)
        self.assertEqual(j["policy"]["version"], 1)
        self.assertEqual(j["policy"]["defaults"]["request_timeout_ms"], 30000)
        p = self.policies(j)
        self.assertEqual(sorted(p), sorted(services), "every table, before its service exists")
        self.assertEqual((p["slow"]["request_timeout_ms"], p["slow"]["max_queue"]), (300, 100))
        self.assertEqual((p["q"]["max_queue"], p["q"]["request_timeout_ms"]), (1, 30000))
        self.assertEqual(p["capped"]["max_concurrency"], 2)
        self.assertIsNone(p["q"]["max_concurrency"])
        self.assertEqual((p["never"]["idempotent"], p["again"]["idempotent"], p["q"]["idempotent"]),
                         ("never", "yes", "worker"))

        c = self.client(b)
        with self.subTest("request-timeout: the service's, when the client gives 0"):
            w = self.native_worker(b, ["slow"], mode="hold")
            t0 = now()
            rid = c.send_request("slow", b"s", timeout_ms=0)
            job = w.next_job(5.0)
            self.assertIsNotNone(job)
            self.assertTrue(0 < job.timeout_ms <= 300, "the worker is told the time left: %r" % job)
            r = c.get_reply(rid, 5.0)
            took = now() - t0
            self.assertEqual(r.status if r else None, 504, r)
            self.assertTrue(0.25 <= took < 2.5, "504 after the service's 300 ms, not 30 s: %.2f s" % took)
            w.reply(job, 200, b"w", job.body)  # late: dropped, and its credit comes back

        with self.subTest("max-queue: the service's cap, 503 above"):
            wq = self.native_worker(b, ["q"], mode="hold")
            r1 = c.send_request("q", b"1", timeout_ms=20000)
            self.assertIsNotNone(wq.next_job(5.0))
            r2 = c.send_request("q", b"2", timeout_ms=20000)
            r3 = c.send_request("q", b"3", timeout_ms=20000)
            rep = c.get_reply(r3, 3.0)
            self.assertEqual((rep.status, rep.message) if rep else None, (503, b"service queue full"))
            self.assertIsNone(c.get_reply(r2, 0.3), "the one queued is kept")

        with self.subTest("max-concurrency: per worker and service, the rest of its credit elsewhere"):
            wc = self.native_worker(b, ["capped", "other"], mode="hold", concurrency=8)
            for _ in range(5):
                c.send_request("capped", b"c", timeout_ms=20000)
            capped = wc.jobs_within(0.5)
            self.assertEqual(len(capped), 2, "at most 2 of capped at once: %r" % capped)
            for _ in range(2):
                c.send_request("other", b"o", timeout_ms=20000)
            other = wc.jobs_within(0.5)
            self.assertEqual([x.service for x in other], [b"other", b"other"])
            wc.reply(capped[0], 200, b"wc", capped[0].body)
            more = wc.jobs_within(0.5)
            self.assertEqual([x.service for x in more], [b"capped"], "a reply of capped lets one more in")
            held_capped = [capped[1], more[0]]
            st = self.status_json(b)
            me = [x for x in st["workers"] if sorted(x["services"]) == ["capped", "other"]][0]
            self.assertEqual(me["in_flight_by_service"], {"capped": 2, "other": 2})

        with self.subTest("idempotent = false beats the worker's flag: 502"):
            r, jobs = self.lost_request(b, "never", flags=1)
            self.assertEqual(r.status, 502, r)
            self.assertEqual(jobs, [], "never re-sent")
        with self.subTest("idempotent = true re-sends a worker's request that did not say so"):
            r, jobs = self.lost_request(b, "again", flags=0)
            self.assertEqual((r.status, r.body), (200, [b"job"]), r)
            self.assertEqual(len(jobs), 1)

        # ---- the file changes; SIGHUP ----
        services = {
            "slow": {"request-timeout": 5000},
            "q": {"max-queue": 2},
            "capped": {"max-concurrency": 1},
            "again": {"idempotent": False},
            # "never" has no table any more: the worker's flag decides
        }
        self.write_policy("broker.toml", ports, services, request_timeout=30000, max_queue=100)
        self.hup(b)
        j = self.status_cli(b)
        self.assertEqual(j["policy"]["version"], 2, "a reload that changes the policy: one more")
        p = self.policies(j)
        self.assertNotIn("never", p)
        self.assertEqual(p["slow"]["request_timeout_ms"], 5000)
        self.assertEqual(p["capped"]["max_concurrency"], 1)
        never = [s for s in j["services"] if s["name"] == "never"][0]
        self.assertEqual((never["policy"]["configured"], never["policy"]["idempotent"]), (False, "worker"))

        with self.subTest("a changed request-timeout applies to new requests"):
            rid = c.send_request("slow", b"s2", timeout_ms=0)
            job = w.next_job(5.0)
            self.assertIsNotNone(job)
            self.assertTrue(3000 < job.timeout_ms <= 5000, job)
            self.assertIsNone(c.get_reply(rid, 0.5), "not 504 after 300 ms any more")
            w.reply(job, 200, b"w", job.body)
            r = c.get_reply(rid, 5.0)
            self.assertEqual((r.status, r.body) if r else None, (200, [b"s2"]))

        with self.subTest("a raised max-queue takes one more"):
            r4 = c.send_request("q", b"4", timeout_ms=20000)
            r5 = c.send_request("q", b"5", timeout_ms=20000)
            rep = c.get_reply(r5, 3.0)
            self.assertEqual(rep.status if rep else None, 503)
            self.assertIsNone(c.get_reply(r4, 0.3))

        with self.subTest("a lowered max-concurrency takes effect as requests finish"):
            self.assertEqual(len(wc.jobs_within(0.3)), 0)
            wc.reply(held_capped[0], 200, b"wc", held_capped[0].body)
            self.assertEqual(wc.jobs_within(0.5), [], "1 held: at the new cap of 1")
            wc.reply(held_capped[1], 200, b"wc", held_capped[1].body)
            more = wc.jobs_within(0.5)
            self.assertEqual([x.service for x in more], [b"capped"], "0 held: one more")

        with self.subTest("idempotent = false after the reload: 502 even from flagged workers"):
            r, jobs = self.lost_request(b, "again", flags=1)
            self.assertEqual(r.status, 502, r)
            self.assertEqual(jobs, [])
        with self.subTest("no table any more: the worker's flag decides"):
            r, jobs = self.lost_request(b, "never", flags=1)
            self.assertEqual((r.status, r.body), (200, [b"job"]), r)

        # The same file again: nothing changed, same version. The table shows it too.
        self.hup(b)
        self.assertEqual(self.status_cli(b)["policy"]["version"], 2)
        res = run_cli(["status", "--broker", b.frontend, "--timeout", "3000"], timeout=15)
        self.assertEqual(res.returncode, 0, res.stderr)
        table = res.stdout.decode()
        self.assertIn("policy version 2", table)
        self.assertRegex(table, r"(?m)^capped\s+30000\s+100\s+worker\s+1$")

        # A bad table on reload: logged with file, line and key; the running policy is kept.
        services["q"] = {"max-queu": 5}
        self.write_policy("broker.toml", ports, services, request_timeout=30000, max_queue=100)
        o = self.hup(b, "reload failed")
        self.assertIn("service.\\\"q\\\".max-queu", json.dumps(o))
        self.assertEqual(self.status_cli(b)["policy"]["version"], 2)
        self.assertAlive(b)

    def test_a_bad_table_stops_the_broker_with_file_line_and_key(self):
        ports = distinct_ports(3)
        for services, line, key in (
                ({"ok": {"max-queue": 5}, "mmi.x": {}}, None, 'service."mmi.x"'),
                ({"echo": {"max-concurrency": 0}}, None, 'service."echo".max-concurrency'),
                ({"echo": {"request-timeout": 10, "retries": 2}}, None, 'service."echo".retries')):
            with self.subTest(key=key):
                path = self.write_policy("bad.toml", ports, services)
                rc, out, err, ready = run_until_ready_or_exit([BIN, "broker", "--config", path])
                self.assertIsNone(ready, "the broker must not start")
                self.assertEqual(rc, 2, err)
                self.assertRegex(err, r"%s:\d+: key '%s'" % (path.replace(".", r"\."),
                                                            key.replace(".", r"\.")))

    def test_print_config_writes_the_tables_back(self):
        ports = distinct_ports(3)
        path = self.write_policy("p.toml", ports, {"a b": {"max-concurrency": 3, "idempotent": True}})
        res = run_cli(["broker", "--config", path, "--print-config"])
        self.assertEqual(res.returncode, 0, res.stderr)
        text = res.stdout.decode()
        self.assertIn("[service.'a b']\nidempotent = true\nmax-concurrency = 3\n", text)
        again = self.write_file("again.toml", text)
        res2 = run_cli(["broker", "--config", again, "--print-config"])
        self.assertEqual(res2.stdout.decode(), text)


if __name__ == "__main__":
    unittest.main()
