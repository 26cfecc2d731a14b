// SPDX-License-Identifier: Apache-2.0
#include "status_page.hpp"

namespace scale0::metrics {
namespace {

// The page. @NONCE@ is replaced by the response's nonce. The script builds every element with
// createElement and puts data in with textContent or setAttribute: names from the network (service
// and worker names may hold <, &, quotes) are never parsed as HTML.
constexpr std::string_view page = R"page(<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>Scale0 status</title>
<style nonce="@NONCE@">
:root { --fg: #1d1f21; --muted: #666a70; --bg: #ffffff; --panel: #f5f6f7; --line: #d9dcdf;
  --bad: #c62828; --warn: #a15c00; --ok: #2e7d32; --spark: #4a5568; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #e3e5e8; --muted: #9aa0a6; --bg: #16181b; --panel: #1f2226; --line: #33373c;
    --bad: #ff6b6b; --warn: #f0b429; --ok: #7bd88f; --spark: #b8c0cc; }
}
* { box-sizing: border-box; }
body { margin: 0; padding: 12px 16px 32px; font: 14px/1.4 system-ui, -apple-system, "Segoe UI",
  Roboto, sans-serif; color: var(--fg); background: var(--bg); }
header { display: flex; flex-wrap: wrap; align-items: baseline; gap: 4px 16px; }
h1 { font-size: 18px; margin: 0; }
h2 { font-size: 15px; margin: 20px 0 6px; }
.muted { color: var(--muted); }
.bad { color: var(--bad); font-weight: 600; }
.warn { color: var(--warn); font-weight: 600; }
.badge { border: 1px solid currentColor; border-radius: 4px; padding: 0 5px; font-size: 12px; }
dl.facts { display: grid; grid-template-columns: repeat(auto-fill, minmax(190px, 1fr));
  gap: 2px 16px; margin: 8px 0 0; padding: 8px 10px; background: var(--panel);
  border-radius: 6px; }
dl.facts div { min-width: 0; }
dl.facts dt { color: var(--muted); font-size: 12px; }
dl.facts dd { margin: 0; overflow-wrap: anywhere; font-variant-numeric: tabular-nums; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line);
  vertical-align: middle; }
th { font-size: 12px; color: var(--muted); font-weight: 600; white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.name { overflow-wrap: anywhere; max-width: 28em; }
svg { display: block; }
svg .req { fill: none; stroke: var(--spark); stroke-width: 1.5; }
svg .err { fill: none; stroke: var(--bad); stroke-width: 1.5; }
svg .bar { fill: var(--spark); }
ol#events { list-style: none; margin: 0; padding: 0; max-height: 24em; overflow-y: auto; }
ol#events li { padding: 3px 0; border-bottom: 1px solid var(--line); overflow-wrap: anywhere; }
ol#events .age { display: inline-block; min-width: 6em; color: var(--muted);
  font-variant-numeric: tabular-nums; }
ol#events .kind { display: inline-block; min-width: 9em; }
#state { font-size: 12px; }
.empty { color: var(--muted); padding: 6px 0; }
@media (max-width: 760px) {
  table, thead, tbody, tr, td { display: block; width: 100%; }
  thead { display: none; }
  tr { border: 1px solid var(--line); border-radius: 6px; margin: 0 0 8px; padding: 4px 8px; }
  td { border: 0; padding: 2px 0; display: flex; justify-content: space-between; gap: 12px;
    text-align: right; }
  td.num { text-align: right; }
  td::before { content: attr(data-label); color: var(--muted); font-size: 12px; text-align: left;
    flex: none; }
  td.name { max-width: none; font-weight: 600; }
}
</style>
</head>
<body>
<header>
  <h1 id="title">Scale0</h1>
  <span id="badges"></span>
  <span id="state" class="muted">loading…</span>
</header>
<dl class="facts" id="facts"></dl>
<section id="services-section">
  <h2 id="services-title">Services</h2>
  <div id="services"></div>
</section>
<section id="workers-section">
  <h2>Workers</h2>
  <div id="workers"></div>
</section>
<section id="family-section" hidden>
  <h2>Family</h2>
  <div id="family"></div>
</section>
<section id="events-section">
  <h2>Recent events</h2>
  <ol id="events"></ol>
</section>
<script nonce="@NONCE@">
"use strict";
(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const errSamples = new Map();  // name -> [[t, errors total], ...], the last few polls
  let lastOk = 0;

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    if (attrs) for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function svg(tag, attrs) {
    const e = document.createElementNS(SVG, tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    return e;
  }
  function num(x) { return typeof x === "number" && isFinite(x) ? x : 0; }
  function fmtRate(x) {
    x = num(x);
    if (x === 0) return "0";
    if (x < 10) return x.toFixed(1);
    return Math.round(x).toLocaleString("en");
  }
  function fmtMs(ms) {
    ms = num(ms);
    if (ms < 1) return ms.toFixed(2) + " ms";
    if (ms < 1000) return (ms < 10 ? ms.toFixed(1) : Math.round(ms)) + " ms";
    const s = ms / 1000;
    if (s < 60) return s.toFixed(s < 10 ? 1 : 0) + " s";
    if (s < 3600) return Math.floor(s / 60) + " min " + Math.floor(s % 60) + " s";
    if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
    return Math.floor(s / 86400) + " d " + Math.floor((s % 86400) / 3600) + " h";
  }
  // A percentile, or a dash when nothing was measured.
  function latency(ms, counts) {
    let n = 0;
    for (const c of counts || []) n += num(c);
    return n === 0 ? "–" : fmtMs(ms);
  }
  function sumValues(o) {
    let n = 0;
    if (o && typeof o === "object") for (const k in o) n += num(o[k]);
    return n;
  }
  function fact(dl, label, value, cls) {
    const d = el("div");
    d.appendChild(el("dt", null, label));
    d.appendChild(el("dd", cls ? { class: cls } : null, value));
    dl.appendChild(d);
  }
  function replace(id, node) {
    const box = document.getElementById(id);
    box.replaceChildren(node);
  }
  // A table: cols = [[label, class], ...]; rows = [{cls, attrs, cells: [text | Node | {v, cls}]}].
  function table(id, cols, rows, emptyText) {
    if (rows.length === 0) return el("div", { class: "empty" }, emptyText);
    const t = el("table", { id: id });
    const hr = el("tr");
    for (const c of cols) hr.appendChild(el("th", c[1] ? { class: c[1] } : null, c[0]));
    t.appendChild(el("thead")).appendChild(hr);
    const body = t.appendChild(el("tbody"));
    for (const r of rows) {
      const tr = el("tr", r.attrs || null);
      if (r.cls) tr.setAttribute("class", r.cls);
      r.cells.forEach(function (v, i) {
        const col = cols[i];
        const cls0 = col[1] || "";
        const td = el("td", { "data-label": col[0], "data-col": cls0.split(" ").pop() });
        let cls = cls0;
        if (v && typeof v === "object" && !(v instanceof Node)) {
          if (v.cls) cls += " " + v.cls;
          v = v.v;
        }
        if (cls) td.setAttribute("class", cls.trim());
        if (v instanceof Node) td.appendChild(v); else td.textContent = String(v);
        tr.appendChild(td);
      });
      body.appendChild(tr);
    }
    return t;
  }
  // Requests (and errors, in red) per second over the last five minutes, one point per step.
  function sparkline(history) {
    const w = 120, h = 24;
    const req = ((history && history.requests) || []).slice();
    const err = ((history && history.errors) || []).slice();
    const step = num(history && history.step_seconds) || 10;
    // The open step, scaled to a whole one, once it has run for a second.
    const open = num(history && history.open_seconds);
    if (open >= 1) {
      req.push(num(history.open_requests) * step / open);
      err.push(num(history.open_errors) * step / open);
    }
    const s = svg("svg", { width: w, height: h, viewBox: "0 0 " + w + " " + h, class: "spark",
                           role: "img" });
    let max = 0;
    for (const v of req) max = Math.max(max, num(v));
    for (const v of err) max = Math.max(max, num(v));
    const title = svg("title", {});
    title.textContent = req.length === 0 ? "no history yet"
        : "last " + fmtMs(req.length * step * 1000) + ": up to " + fmtRate(max / step) +
          " requests/s";
    s.appendChild(title);
    if (req.length === 0) return s;
    const n = 31;  // the history's length and the open step: a short one is drawn at the right
    function points(vals) {
      const off = n - vals.length;
      return vals.map(function (v, i) {
        const x = ((off + i) / (n - 1)) * (w - 2) + 1;
        const y = h - 1 - (max > 0 ? (num(v) / max) * (h - 2) : 0);
        return x.toFixed(1) + "," + y.toFixed(1);
      }).join(" ");
    }
    if (req.length === 1) {  // one step so far: a dot
      const p = points(req).split(",");
      s.appendChild(svg("circle", { cx: p[0], cy: p[1], r: 1.5, class: "bar" }));
      return s;
    }
    s.appendChild(svg("polyline", { points: points(req), class: "req" }));
    if (err.some(function (v) { return num(v) > 0; }))
      s.appendChild(svg("polyline", { points: points(err), class: "err" }));
    return s;
  }
  // The latency histogram of the recent window: one bar per bucket (bounds in ms).
  function histogram(counts, bounds) {
    const w = 90, h = 24;
    counts = counts || [];
    const s = svg("svg", { width: w, height: h, viewBox: "0 0 " + w + " " + h, role: "img" });
    let max = 0, total = 0;
    for (const c of counts) { max = Math.max(max, num(c)); total += num(c); }
    const title = svg("title", {});
    const parts = [];
    counts.forEach(function (c, i) {
      if (num(c) > 0) {
        const hi = i < bounds.length ? "≤ " + fmtMs(bounds[i]) : "> " + fmtMs(bounds[bounds.length - 1]);
        parts.push(hi + ": " + c);
      }
    });
    title.textContent = total === 0 ? "no replies in the window" : parts.join(", ");
    s.appendChild(title);
    if (max === 0) return s;
    const bw = w / Math.max(counts.length, 1);
    counts.forEach(function (c, i) {
      const bh = (num(c) / max) * (h - 1);
      if (bh > 0)
        s.appendChild(svg("rect", { x: (i * bw + 0.5).toFixed(1), y: (h - bh).toFixed(1),
                                    width: (bw - 1).toFixed(1), height: bh.toFixed(1),
                                    class: "bar" }));
    });
    return s;
  }
  // Errors per second: from this page's own polls once it has two, else the last history step.
  function errorRate(name, total, history, now) {
    let xs = errSamples.get(name);
    if (!xs) { xs = []; errSamples.set(name, xs); }
    xs.push([now, total]);
    while (xs.length > 11) xs.shift();
    if (xs.length >= 2) {
      const dt = (xs[xs.length - 1][0] - xs[0][0]) / 1000;
      if (dt > 0) return Math.max(0, (xs[xs.length - 1][1] - xs[0][1]) / dt);
    }
    const e = (history && history.errors) || [];
    return e.length ? num(e[e.length - 1]) / (num(history.step_seconds) || 10) : 0;
  }

  // The title, the draining badge and the first facts: the same for a broker and a gateway.
  function renderHead(title, s) {
    document.getElementById("title").textContent = title;
    const badges = document.getElementById("badges");
    badges.replaceChildren();
    if (s.draining) badges.appendChild(el("span", { class: "badge warn", id: "draining" }, "draining"));
    const facts = document.getElementById("facts");
    facts.replaceChildren();
    fact(facts, "uptime", fmtMs(s.uptime_ms));
    fact(facts, "state", s.draining ? "draining" : "serving", s.draining ? "warn" : null);
    return facts;
  }

  function renderBroker(s, now) {
    const facts = renderHead("Scale0 broker " + (s.broker_id || ""), s);
    fact(facts, "heartbeat interval", fmtMs(s.heartbeat_interval_ms) + " × liveness " + num(s.liveness));
    const ep = s.endpoints || {};
    const names = { frontend: "frontend (clients)", backend: "backend (workers)",
                    heartbeat: "heartbeat (PUB)", peer: "peer (family)", metrics: "metrics" };
    for (const k of ["frontend", "backend", "heartbeat", "peer", "metrics"])
      if (ep[k]) fact(facts, names[k], ep[k]);
    const c = s.counters || {};
    fact(facts, "requests", num(c.requests).toLocaleString("en"));
    fact(facts, "pending", num(c.requests_pending).toLocaleString("en"));
    fact(facts, "workers joined / left / expired",
         num(c.workers_joined) + " / " + num(c.workers_left) + " / " + num(c.workers_expired),
         num(c.workers_expired) > 0 ? "bad" : null);
    const bounds = s.latency_bounds_ms || [];
    const services = (s.services || []).slice().sort(function (a, b) {
      return String(a.name) < String(b.name) ? -1 : String(a.name) > String(b.name) ? 1 : 0;
    });
    const seen = new Set();
    const rows = services.map(function (S) {
      seen.add(S.name);
      const errTotal = sumValues(S.errors);
      const er = typeof S.errors_per_second === "number" ? S.errors_per_second
          : errorRate(S.name, errTotal, S.history, now);
      return {
        cls: "service", attrs: { "data-name": String(S.name) },
        cells: [
          String(S.name), num(S.workers), num(S.idle_slots),
          { v: num(S.queue_depth), cls: num(S.queue_depth) > 0 && num(S.workers) === 0 ? "warn" : "" },
          num(S.in_flight), fmtRate(S.requests_per_second),
          { v: fmtRate(er), cls: er > 0 ? "bad" : "" },
          sparkline(S.history), latency(S.latency_p50_ms, S.latency_histogram),
          latency(S.latency_p99_ms, S.latency_histogram),
          histogram(S.latency_histogram, bounds)
        ]
      };
    });
    for (const k of Array.from(errSamples.keys())) if (!seen.has(k)) errSamples.delete(k);
    document.getElementById("services-title").textContent = "Services (" + rows.length + ")";
    replace("services", table("services-table", [
      ["service", "name"], ["workers", "num workers"], ["idle", "num idle"],
      ["queue", "num queue"], ["in flight", "num inflight"], ["req/s", "num rps"],
      ["err/s", "num eps"], ["last 5 min", "spark"], ["p50", "num p50"], ["p99", "num p99"],
      ["latency", "hist"]
    ], rows, "No services yet."));
    const workers = (s.workers || []).slice().sort(function (a, b) {
      const x = String(a.name || a.id), y = String(b.name || b.id);
      return x < y ? -1 : x > y ? 1 : 0;
    });
    replace("workers", table("workers-table", [
      ["worker", "name"], ["address", "address"], ["protocol", "protocol"],
      ["services", "services"], ["concurrency", "num concurrency"], ["in flight", "num inflight"],
      ["last seen", "num seen"], ["heartbeat", "num hb"]
    ], workers.map(function (W) {
      const late = num(W.last_seen_ms) > 2 * num(W.heartbeat_interval_ms) && num(W.heartbeat_interval_ms) > 0;
      return {
        cls: "worker" + (W.stopping ? " warn" : ""), attrs: { "data-id": String(W.id) },
        cells: [
          W.name ? String(W.name) : String(W.id), String(W.address || ""), String(W.protocol || ""),
          (W.services || []).map(String).join(", "), num(W.concurrency), num(W.in_flight),
          { v: fmtMs(W.last_seen_ms) + " ago", cls: late ? "bad" : "" },
          fmtMs(W.heartbeat_interval_ms)
        ]
      };
    }), "No workers connected."));
    renderFamily(s.family);
    renderEvents(s.events || [], s.events_limit);
  }

  function renderFamily(f) {
    const sec = document.getElementById("family-section");
    if (!f || typeof f !== "object") { sec.hidden = true; return; }
    sec.hidden = false;
    const peers = f.peers || [];
    replace("family", table("family-table", [
      ["peer", "name"], ["state", "state"], ["broker", "broker"], ["frontend", "frontend"],
      ["services", "num"], ["workers", "num"], ["last heard", "num"]
    ], peers.map(function (p) {
      const st = String(p.state || "") + (p.draining ? ", draining" : "");
      const svc = p.services || [];
      let w = 0;
      for (const x of svc) w += num(x.workers);
      return {
        cls: "peer", cells: [
          String(p.endpoint || ""), { v: st, cls: p.state === "lost" ? "bad" : p.draining ? "warn" : "" },
          String(p.broker_id || ""), String(p.frontend || ""), svc.length, w,
          p.last_heard_ms === null || p.last_heard_ms === undefined ? "never" : fmtMs(p.last_heard_ms) + " ago"
        ]
      };
    }), "Family " + String(f.name || "") + ": no peers yet."));
  }

  function eventText(e) {
    const parts = [];
    if (e.service) parts.push(String(e.service));
    if (e.worker) parts.push(String(e.worker));
    if (e.address) parts.push(String(e.address));
    if (e.code) parts.push(String(e.code));
    if (e.detail) parts.push(String(e.detail));
    let t = parts.join(" · ");
    if (num(e.count) > 1) t += " (×" + num(e.count) + ")";
    return t;
  }
  function renderEvents(events, limit) {
    const ol = document.getElementById("events");
    ol.replaceChildren();
    if (events.length === 0) {
      ol.appendChild(el("li", { class: "empty" }, "Nothing happened yet."));
      return;
    }
    for (const e of events) {
      const bad = e.kind === "request_error" || e.kind === "dropped" || e.kind === "refused" ||
          e.kind === "peer_down" || (e.kind === "worker_left" &&
          ["expired", "unreachable", "protocol_error", "key_revoked"].indexOf(e.departure) >= 0);
      const li = el("li", { class: "event " + String(e.kind) + (bad ? " bad-event" : ""),
                            "data-kind": String(e.kind), "data-departure": String(e.departure || "") });
      li.appendChild(el("span", { class: "age" }, fmtMs(e.age_ms) + " ago"));
      const kind = String(e.kind).replace(/_/g, " ") + (e.departure ? " (" + e.departure + ")" : "");
      li.appendChild(el("span", { class: "kind" + (bad ? " bad" : e.kind === "draining" ? " warn" : "") }, kind));
      li.appendChild(el("span", { class: "text" }, " " + eventText(e)));
      ol.appendChild(li);
    }
    if (limit) ol.setAttribute("title", "the last " + limit + " events are kept");
  }

  function renderGateway(s, now) {
    const facts = renderHead("Scale0 gateway " + (s.listen || ""), s);
    fact(facts, "listen", String(s.listen || ""));
    fact(facts, "broker", String(s.broker || ""));
    fact(facts, "connections open", num(s.connections_open));
    fact(facts, "connections", num(s.connections_total));
    fact(facts, "in flight", num(s.in_flight));
    fact(facts, "unknown broker replies", num(s.broker_unknown_replies));
    const bounds = s.latency_bounds_ms || [];
    const routes = s.routes || [];
    const rows = routes.map(function (R) {
      const key = "route:" + R.name;
      const errTotal = sumValues(R.errors);
      const er = errorRate(key, errTotal, null, now);
      const rr = errorRate(key + ":all", num(R.requests), null, now);
      return {
        cls: "route", attrs: { "data-name": String(R.name) },
        cells: [
          String(R.name), String(R.host || "*"), String(R.prefix || "/"),
          String(R.service || "(the host)"), num(R.requests), fmtRate(rr),
          { v: fmtRate(er), cls: er > 0 ? "bad" : "" },
          latency(R.latency_p50_ms, R.latency_histogram),
          latency(R.latency_p99_ms, R.latency_histogram), histogram(R.latency_histogram, bounds)
        ]
      };
    });
    document.getElementById("services-title").textContent = "Routes (" + rows.length + ")";
    replace("services", table("routes-table", [
      ["route", "name"], ["host", "host"], ["prefix", "prefix"], ["service", "service"],
      ["requests", "num requests"], ["req/s", "num rps"], ["err/s", "num eps"],
      ["p50", "num p50"], ["p99", "num p99"], ["latency", "hist"]
    ], rows, "No routes."));
    document.getElementById("workers-section").hidden = true;
    document.getElementById("events-section").hidden = true;
    document.getElementById("family-section").hidden = true;
  }

  function setState(text, bad) {
    const st = document.getElementById("state");
    st.textContent = text;
    st.setAttribute("class", bad ? "bad" : "muted");
  }

  let busy = false;
  function poll() {
    if (busy) return;
    busy = true;
    fetch("status.json", { cache: "no-store", credentials: "same-origin" })
      .then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.json();
      })
      .then(function (s) {
        const now = Date.now();
        if (s && s.kind === "gateway") renderGateway(s, now); else renderBroker(s || {}, now);
        lastOk = now;
        setState("updated " + new Date(now).toLocaleTimeString(), false);
        document.body.setAttribute("data-loaded", "1");
      })
      .catch(function (e) {
        setState("not answering (" + String(e && e.message || e) + ")" +
                 (lastOk ? ", last update " + new Date(lastOk).toLocaleTimeString() : ""), true);
      })
      .finally(function () { busy = false; });
  }
  poll();
  setInterval(poll, 1000);
})();
</script>
</body>
</html>
)page";

}  // namespace

std::string status_page_html(std::string_view nonce) {
  std::string out;
  out.reserve(page.size() + 64);
  constexpr std::string_view mark = "@NONCE@";
  std::size_t from = 0;
  for (std::size_t at; (at = page.find(mark, from)) != std::string_view::npos;) {
    out.append(page.substr(from, at - from));
    out.append(nonce);
    from = at + mark.size();
  }
  out.append(page.substr(from));
  return out;
}

std::string status_page_csp(std::string_view nonce) {
  const std::string n(nonce);
  return "default-src 'none'; script-src 'nonce-" + n + "'; style-src 'nonce-" + n +
         "'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; "
         "frame-ancestors 'none'";
}

}  // namespace scale0::metrics
