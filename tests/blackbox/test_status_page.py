# SPDX-License-Identifier: Apache-2.0
"""The status page (docs/operations.md, "The status page") in a real browser: headless Chromium
(Debian package chromium; scripts/setup.sh installs it) loads / from the broker's metrics listener,
its script reads /status.json, and the rendered DOM is checked against `scale0 status --json` taken
with the traffic stopped: the services, the workers and their counts; a service name holding
<, &, and quotes shows as text (no element made of it). A screenshot is written under the build
directory (SCALE0_ARTIFACTS, default <build>/artifacts); with SCALE0_UPDATE_SCREENSHOT=1 it is also
copied to docs/status-page.png (the README's). A worker killed with SIGKILL leaves the table, and
its expiry is in the events list. The gateway's listener serves the page for its routes. The page
is read-only (405 for anything but GET and HEAD) and sent with no-store, nosniff and a CSP that
admits only its own script and style.

Skipped only when chromium is not installed. Every wait is bounded; the file takes about 20 s."""

import http.client
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from html.parser import HTMLParser

from harness import BIN, HERE, run_cli, Scale0TestCase, Scale0Worker, scrape, wait_until

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Service and worker names are printable UTF-8 and may hold what HTML gives meaning to.
ODD = 'odd <b id="x">&amp; "quoted"</b> \'caf\u00e9\''
ODD_WORKER = 'w<i>&"2"'
REPO = os.path.dirname(os.path.dirname(HERE))


def artifacts_dir():
    d = os.environ.get("SCALE0_ARTIFACTS")
    if not d:  # <build>/apps/scale0/scale0 -> <build>/artifacts
        d = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(BIN)))),
                         "artifacts")
    os.makedirs(d, exist_ok=True)
    return d


class Dom(HTMLParser):
    """What the test reads of the rendered page: the rows of each table (cell text by the cell's
    column, its data-col), the events (kind, departure, text), and every tag name seen."""

    def __init__(self, text):
        super().__init__(convert_charrefs=True)
        self.tables = {}
        self.events = []
        self.tags = []
        self.attrs_seen = []
        self._table = None
        self._row = None
        self._cell = None
        self._event = None
        self._depth = 0
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        self.attrs_seen.append((tag, a))
        if tag == "table":
            self._table = self.tables.setdefault(a.get("id", ""), [])
        elif tag == "tr" and self._table is not None:
            self._row = {"_attrs": a}
        elif tag == "td" and self._row is not None:
            self._cell = [a.get("data-col", ""), []]
        elif tag == "li" and "event" in (a.get("class") or "").split():
            self._event = [a.get("data-kind"), a.get("data-departure"), []]

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None and self._row is not None:
            self._row[self._cell[0]] = "".join(self._cell[1]).strip()
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if len(self._row) > 1:  # not the header
                self._table.append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None
        elif tag == "li" and self._event is not None:
            self.events.append((self._event[0], self._event[1], "".join(self._event[2])))
            self._event = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[1].append(data)
        if self._event is not None:
            self._event[2].append(data)

    def rows(self, table, cls):
        return [r for r in self.tables.get(table, [])
                if cls in (r["_attrs"].get("class") or "").split()]


class StatusPageTest(Scale0TestCase):

    def setUp(self):
        super().setUp()
        if CHROMIUM is None:
            self.skipTest("chromium is not installed (Debian package chromium; scripts/setup.sh "
                          "installs it): the status page's browser test cannot run")
        self.profile = tempfile.mkdtemp(prefix="scale0-chromium-")
        self.addCleanup(shutil.rmtree, self.profile, True)

    def chromium(self, url, *extra):
        """Chromium, headless, on `url`: the page's script runs (virtual time: three polls)."""
        cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--disable-extensions", "--disable-background-networking", "--disable-sync",
               "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio",
               "--user-data-dir=" + self.profile, "--virtual-time-budget=2500"] + list(extra) + [url]
        p = subprocess.run(cmd, capture_output=True, timeout=60)
        self.assertEqual(p.returncode, 0, "chromium failed: %s" % p.stderr.decode(errors="replace")[-2000:])
        return p.stdout.decode("utf-8", "replace")

    def dom(self, hostport):
        text = self.chromium("http://%s/" % hostport, "--dump-dom")
        d = Dom(text)
        self.assertIn('data-loaded="1"', text, "the page's script read /status.json:\n" + text[-3000:])
        return d, text

    def screenshot(self, hostport, name, *extra, size="1280,900"):
        path = os.path.join(artifacts_dir(), name)
        if os.path.exists(path):
            os.remove(path)
        self.chromium("http://%s/" % hostport, "--screenshot=" + path, "--window-size=" + size,
                      *extra)
        self.assertTrue(os.path.getsize(path) > 1000, "a screenshot at " + path)
        return path

    def status(self, broker):
        p = run_cli(["status", "--json", "--broker", broker.frontend, "--timeout", "3000ms"])
        self.assertEqual(p.returncode, 0, p.stderr)
        return json.loads(p.stdout)

    def workers_of(self, broker, n):
        def check():
            s = self.status(broker)
            return s if len(s["workers"]) == n else None
        return wait_until("%d workers registered" % n, check, 10)[0]

    def request(self, broker, service, count, timeout="2000ms"):
        return run_cli(["request", "--broker", broker.frontend, "--count", str(count),
                        "--timeout", timeout, service, "x"])

    def test_page_shows_services_workers_and_counts_as_status_does(self):
        broker = self.start_broker()
        w1 = Scale0Worker(broker.backend, ["echo", ODD], name="w-one", concurrency=4)
        w2 = Scale0Worker(broker.backend, ["echo"], name=ODD_WORKER)
        for w in (w1, w2):
            self.addCleanup(w.cleanup)
        self.workers_of(broker, 2)
        self.assertEqual(self.request(broker, "echo", 30).returncode, 0)
        self.assertEqual(self.request(broker, ODD, 10).returncode, 0)
        self.request(broker, "nobody.here", 1, timeout="300ms")  # an error: 503, no worker
        # Traffic has stopped: the counts the page shows are those of `scale0 status` now.
        want = self.status(broker)
        d, text = self.dom(broker.metrics)

        services = {r["name"]: r for r in d.rows("services-table", "service")}
        self.assertEqual(set(services), {s["name"] for s in want["services"]}, text[-3000:])
        for s in want["services"]:
            with self.subTest(service=s["name"]):
                row = services[s["name"]]
                self.assertEqual([int(row[c]) for c in ("workers", "idle", "queue", "inflight")],
                                 [s["workers"], s["idle_slots"], s["queue_depth"], s["in_flight"]])
        workers = {r["_attrs"]["data-id"]: r for r in d.rows("workers-table", "worker")}
        self.assertEqual(set(workers), {w["id"] for w in want["workers"]})
        for w in want["workers"]:
            with self.subTest(worker=w["name"]):
                row = workers[w["id"]]
                self.assertEqual(row["name"], w["name"])
                self.assertEqual(row["address"], w["address"])
                self.assertEqual(row["protocol"], w["protocol"])
                self.assertEqual(row["services"], ", ".join(w["services"]))
                self.assertEqual([int(row["concurrency"]), int(row["inflight"])],
                                 [w["concurrency"], w["in_flight"]])
        # The odd names are text: no <b> or <i> element, and the text is the name.
        self.assertNotIn("b", d.tags)
        self.assertNotIn("i", d.tags)
        self.assertFalse(any(a.get("id") == "x" for _, a in d.attrs_seen))
        self.assertIn(ODD, services)
        self.assertIn(ODD_WORKER, {r["name"] for r in workers.values()})
        # Recent events: the workers joined, the error.
        kinds = [k for k, _, _ in d.events]
        self.assertEqual(kinds.count("worker_joined"), 2, d.events)
        self.assertIn("request_error", kinds)
        # The screenshots, with light traffic going: light and dark, and a phone's width.
        update = os.environ.get("SCALE0_UPDATE_SCREENSHOT") == "1"
        slow = Scale0Worker(broker.backend, ["thumbnail"], name="thumb-1", delay="15ms",
                            concurrency=2)
        self.addCleanup(slow.cleanup)
        self.workers_of(broker, 3)
        stop = threading.Event()
        traffic = [threading.Thread(target=self.traffic, args=(broker, svc, n, stop), daemon=True)
                   for svc, n in (("echo", 20), ("thumbnail", 5), (ODD, 3), ("mail", 1))]
        for t in traffic:
            t.start()
        try:
            # Regenerating the README's picture: long enough for a few steps of the history.
            time.sleep(35 if update else 2.5)
            self.screenshot(broker.metrics, "status-page.png")
            self.screenshot(broker.metrics, "status-page-dark.png", "--force-dark-mode",
                            "--blink-settings=preferredColorScheme=0")
            self.screenshot(broker.metrics, "status-page-phone.png", size="390,1600")
        finally:
            stop.set()
            for t in traffic:
                t.join(15)
        if update:
            shutil.copyfile(os.path.join(artifacts_dir(), "status-page.png"),
                            os.path.join(REPO, "docs", "status-page.png"))

    def traffic(self, broker, service, count, stop):
        """`count` requests for `service` about every 0.2 s until `stop` (errors included)."""
        for _ in range(1000):
            if stop.is_set():
                return
            self.request(broker, service, count, timeout="300ms")
            stop.wait(0.2)

    def test_killed_worker_leaves_the_table_and_its_expiry_is_an_event(self):
        broker = self.start_broker(heartbeat_interval=100, liveness=3)
        stay = Scale0Worker(broker.backend, ["echo"], name="stays")
        gone = Scale0Worker(broker.backend, ["echo"], name="killed")
        for w in (stay, gone):
            self.addCleanup(w.cleanup)
        before = self.workers_of(broker, 2)
        killed_id = [w["id"] for w in before["workers"] if w["name"] == "killed"][0]
        d, _ = self.dom(broker.metrics)
        self.assertEqual({r["name"] for r in d.rows("workers-table", "worker")}, {"stays", "killed"})
        gone.sigkill()
        after = self.workers_of(broker, 1)
        d, text = self.dom(broker.metrics)
        self.assertEqual({r["name"] for r in d.rows("workers-table", "worker")}, {"stays"})
        self.assertEqual([w["name"] for w in after["workers"]], ["stays"])
        left = [(k, dep, t) for k, dep, t in d.events if k == "worker_left" and killed_id in t]
        self.assertEqual(len(left), 1, d.events)
        self.assertIn(left[0][1], ("expired", "unreachable"), left)
        self.assertIn("bad", text[text.find('data-kind="worker_left"') - 200:], "coloured as a failure")

    def test_read_only_and_headers(self):
        broker = self.start_broker()
        host, port = broker.metrics.rsplit(":", 1)
        for method in ("GET", "HEAD"):
            c = http.client.HTTPConnection(host, int(port), timeout=5)
            c.request(method, "/")
            r = c.getresponse()
            body = r.read()
            c.close()
            with self.subTest(method=method):
                self.assertEqual(r.status, 200)
                self.assertEqual(r.getheader("Content-Type"), "text/html; charset=utf-8")
                self.assertEqual(r.getheader("Cache-Control"), "no-store")
                self.assertEqual(r.getheader("X-Content-Type-Options"), "nosniff")
                csp = r.getheader("Content-Security-Policy")
                self.assertRegex(csp, r"default-src 'none'; script-src 'nonce-[A-Za-z0-9+/]{22}'")
                self.assertNotIn("unsafe", csp)
                self.assertNotIn("http", csp)  # no other origin
                if method == "GET":
                    nonce = csp.split("'nonce-")[1].split("'")[0]
                    self.assertIn(('<script nonce="%s">' % nonce).encode(), body)
                    self.assertNotIn(b"http://", body.replace(b"http://www.w3.org/2000/svg", b""))
                    self.assertNotIn(b"https://", body)
                else:
                    self.assertEqual(body, b"")
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            c = http.client.HTTPConnection(host, int(port), timeout=5)
            c.request(method, "/", body=b"x")
            r = c.getresponse()
            r.read()
            c.close()
            self.assertEqual((method, r.status, r.getheader("Allow")), (method, 405, "GET, HEAD"))
        c = http.client.HTTPConnection(host, int(port), timeout=5)
        c.request("GET", "/status.json")
        r = c.getresponse()
        j = json.loads(r.read())
        c.close()
        self.assertEqual(r.getheader("Cache-Control"), "no-store")
        self.assertEqual(r.getheader("Content-Type"), "application/json")
        want = self.status(broker)
        self.assertEqual(j["broker_id"], want["broker_id"])
        self.assertEqual(set(j), set(want), "the same fields as scale0 status --json")
        self.assertEqual(j["events_limit"], 256)
        m = scrape(broker)  # the events ring is a budget like the others
        self.assertEqual(m['scale0_budget_limit{budget="status_events"}'], 256)
        self.assertEqual(m['scale0_budget_used{budget="status_events"}'], len(j["events"]))

    def test_gateway_page_shows_its_routes(self):
        broker = self.start_broker()
        self.http_worker(broker, ["api"])
        gw = self.start_gateway(broker, routes=["prefix=/api,service=api,name=api",
                                                "host=static.test,service=files"])
        for _ in range(5):
            c = http.client.HTTPConnection(gw.host, gw.port, timeout=5)
            c.request("GET", "/api/x", headers={"Host": "a.test"})
            r = c.getresponse()
            r.read()
            self.assertEqual(r.status, 200)
            c.close()
        d, text = self.dom(gw.metrics)
        routes = {r["name"]: r for r in d.rows("routes-table", "route")}
        self.assertEqual(set(routes), {"api", "files"}, text[-2000:])
        self.assertEqual(routes["api"]["requests"], "5")
        self.assertEqual(routes["api"]["prefix"], "/api")
        self.assertEqual(routes["files"]["host"], "static.test")
        self.assertEqual(routes["files"]["requests"], "0")
        self.assertEqual(d.rows("workers-table", "worker"), [])  # a gateway has none
