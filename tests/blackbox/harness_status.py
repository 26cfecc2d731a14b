# SPDX-License-Identifier: Apache-2.0
"""Black-box harness, reading a broker's state: the status JSON helpers (flatten, counter_sum,
service_workers), scrape() of /metrics, family_status() (`scale0 status --json`) and peers_of()
for the family table, and wait_until(), which polls a check until it holds or the time is up.
"""

import json
import time

from harness_procs import run_cli
from harness_wire import now


def flatten(obj, prefix=""):
    """Flatten JSON to {dotted.path: value} (list indices become path parts)."""
    out = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(flatten(v, "%s.%s" % (prefix, k) if prefix else str(k)))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.update(flatten(v, "%s.%d" % (prefix, i) if prefix else str(i)))
    else:
        out[prefix] = obj
    return out


def counter_sum(status_json, suffix):
    """Sum of the numeric leaves whose flattened path ends with suffix; None if there is none."""
    vals = [v for k, v in flatten(status_json).items()
            if (k == suffix or k.endswith("." + suffix)) and isinstance(v, (int, float))
            and not isinstance(v, bool)]
    return sum(vals) if vals else None


def service_workers(status_json, name):
    """Number of workers the status JSON lists for service name (protocol.md: "services (workers,
    idle slots, queue depth, counters)"). Accepts services as a list of objects with a name, or an
    object keyed by name; workers as a count or a list. None if the service is not listed."""
    services = status_json.get("services") if isinstance(status_json, dict) else None
    entry = None
    if isinstance(services, dict):
        entry = services.get(name)
    elif isinstance(services, list):
        for e in services:
            if isinstance(e, dict) and (e.get("name") == name or e.get("service") == name):
                entry = e
                break
    if entry is None:
        return None
    w = entry.get("workers") if isinstance(entry, dict) else None
    if isinstance(w, list):
        return len(w)
    if isinstance(w, int) and not isinstance(w, bool):
        return w
    raise AssertionError("service %r in scale0.status has no worker count: %r" % (name, entry))


def scrape(broker):
    """/metrics of a broker as {series (with its labels): value}."""
    import urllib.request
    with urllib.request.urlopen("http://%s/metrics" % broker.metrics, timeout=5) as r:
        text = r.read().decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def family_status(broker, timeout_ms=3000):
    """`scale0 status --json` of a broker (through its frontend), parsed."""
    r = run_cli(["status", "--broker", broker.frontend, "--json", "--timeout", str(timeout_ms)], timeout=20)
    if r.returncode != 0:
        raise AssertionError("scale0 status of %s failed: %r" % (broker.frontend, r.stderr))
    return json.loads(r.stdout.decode())


def peers_of(st):
    """The family table of a status document, by peer endpoint."""
    return {p["endpoint"]: p for p in st["family"]["peers"]}


def wait_until(what, check, timeout, every=0.1):
    """Polls check() until it returns something true; returns (value, seconds). An AssertionError
    from check() counts as not yet; at the timeout, AssertionError with the last result."""
    t0 = now()
    last = None
    for _ in range(100000):
        try:
            last = check()
        except AssertionError as e:
            last = e
        if last and not isinstance(last, AssertionError):
            return last, now() - t0
        if now() - t0 > timeout:
            break
        time.sleep(every)
    raise AssertionError("%s not within %.1f s (last: %r)" % (what, timeout, last))
