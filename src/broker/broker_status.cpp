// SPDX-License-Identifier: Apache-2.0
// What the broker tells about itself: the scale0.status JSON answer and the Prometheus text
// exposition. Both are built only when asked, off the hot path.
#include "broker_status.hpp"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "broker_core.hpp"
#include "metrics/exposition.hpp"

namespace scale0::broker_detail {
namespace {

double millis(clock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

// Whole milliseconds, for settings (which are given in ms).
std::int64_t whole_millis(clock::duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

}  // namespace

// A service's effective policy (docs/operations.md, "Service policies").
policy_status broker_core::policy_of(const service_entry& S) const {
  return {S.configured, whole_millis(S.request_timeout), S.max_queue,
          S.idempotent == idempotency::yes     ? "yes"
          : S.idempotent == idempotency::never ? "never"
                                               : "worker",
          S.max_concurrency};
}

// Plain copies only: this runs on the loop's thread (write_status_json makes the JSON).
status_snapshot broker_core::snapshot_status(time_point now) const {
  status_snapshot s;
  s.now = now;
  s.broker_id =
      hex_id(std::string_view(reinterpret_cast<const char*>(&broker_id_), sizeof broker_id_));
  s.uptime_ms = millis(now - started_);
  s.draining = draining_;
  s.heartbeat_interval_ms = millis(options_.heartbeat_interval);
  s.liveness = options_.liveness;
  s.frontend = status_endpoints_.frontend;
  s.backend = status_endpoints_.backend;
  s.heartbeat =
      status_endpoints_.heartbeat.empty() ? heartbeat_endpoint_ : status_endpoints_.heartbeat;
  s.peer = status_endpoints_.peer;
  s.metrics = status_metrics_endpoint_;
  s.policy.version = policy_version_;
  s.policy.origin = broker_id_hex(policy_origin_);
  s.policy.request_timeout_ms = whole_millis(options_.request_timeout);
  s.policy.max_queue = options_.max_queue;
  s.policy.idempotent = options_.idempotent_services;
  for (const auto& [name, p] : options_.service_policies) {
    if (const auto it = service_by_name_.find(name); it != service_by_name_.end()) {
      s.policy.services.emplace_back(name, policy_of(services_[it->second]));
    } else {  // configured, not known yet: what it would get
      service_entry S;
      S.name = name;
      apply_policy(S);
      s.policy.services.emplace_back(name, policy_of(S));
    }
  }
  s.services.reserve(service_by_name_.size());
  for (const service_entry& S : services_) {
    if (!S.used) continue;
    service_status& o = s.services.emplace_back();
    o.name = S.name;
    for (std::uint32_t m = S.lru.head; m != npos; m = members_[m].link.next)
      o.idle_slots += free_slots_of(m);
    o.workers = S.workers;
    o.queue_depth = S.queue.size;
    o.queue_bytes = S.queue_bytes;
    o.in_flight = S.in_flight;
    o.family_workers = S.peer_workers - S.fallback_workers;
    o.fallback_workers = S.fallback_workers;
    o.forwarded = S.forwarded;
    o.idempotent = S.idempotent == idempotency::yes;
    o.policy = policy_of(S);
    o.requests = S.requests;
    o.replies = S.replies;
    o.errors.assign(S.errors.begin(), S.errors.end());
    // Rates and percentiles over the last few heartbeat intervals (the oldest snapshot kept).
    const auto& oldest = S.window[(S.window_pos + 1) % S.window.size()];
    o.window_seconds = std::chrono::duration<double>(now - oldest.at).count();
    o.window_requests = S.requests - oldest.requests;
    std::uint64_t errors = 0;
    for (const auto& e : S.errors) errors += e.second;
    o.window_errors = errors - oldest.errors;
    for (std::size_t i = 0; i < o.window_latency.size(); ++i)
      o.window_latency[i] = S.latency.counts[i] - oldest.latency[i];
    o.history = S.history;
  }
  for (const worker_entry& W : workers_) {
    if (!W.used || W.peer) continue;  // peers are in the family table
    worker_status& o = s.workers.emplace_back();
    o.id = hex_id(W.identity);
    o.name = W.name;
    o.address = W.address;
    o.protocol = W.mdp ? "MDPW01" : W.version == protocol::version_2 ? "S0W2" : "S0W1";
    o.services.reserve(W.memberships.size());
    for (std::uint32_t m : W.memberships)
      o.services.emplace_back(services_[members_[m].service].name, members_[m].in_flight);
    o.concurrency = W.concurrency;
    o.in_flight = W.in_flight;
    o.idempotent = W.idempotent;
    o.stopping = W.stopping;
    o.heartbeat_interval_ms = millis(W.interval);
    o.last_seen_ms = millis(now - W.last_seen);
    o.connected_ms = millis(now - W.joined);
  }
  const broker_counters& c = counters_;
  auto& k = s.counters;
  k.requests = c.requests;
  k.replies = c.replies;
  k.errors = c.errors;
  k.malformed = c.dropped_malformed;
  k.unknown_reply = c.dropped_unknown_reply;
  k.late_reply = c.dropped_late_reply;
  k.unroutable = c.dropped_unroutable;
  k.backlog = c.dropped_backlog;
  k.workers_joined = c.workers_joined;
  k.workers_left = c.workers_left;
  k.workers_expired = c.workers_expired;
  k.heartbeats_missed = c.heartbeats_missed;
  k.redispatched = c.redispatched;
  k.redirected_clients = c.redirected_clients;
  k.redirected_workers = c.redirected_workers;
  k.handed_back = c.handed_back;
  k.forwarded_out = c.forwarded_out;
  k.forwarded_in = c.forwarded_in;
  k.forwarded_fallback = c.forwarded_fallback;
  k.rebalanced_workers = c.rebalanced_workers;
  k.requests_pending = requests_pending();
  if (events_ != nullptr) {
    s.has_events = true;
    events_->copy_to(s.events);
    s.events_capacity = events_->capacity();
  }
  if (status_source_ != nullptr) s.family = status_source_->status_writer(now);
  return s;
}

std::string broker_core::status_json(time_point now) const {
  return write_status_json(snapshot_status(now));
}

namespace {

nlohmann::json policy_json(const policy_status& p) {
  return {{"configured", p.configured},
          {"request_timeout_ms", p.request_timeout_ms},
          {"max_queue", p.max_queue},
          {"idempotent", p.idempotent},
          {"max_concurrency",
           p.max_concurrency == 0 ? nlohmann::json(nullptr) : nlohmann::json(p.max_concurrency)}};
}

std::string_view departure_name(worker_departure d) {
  switch (d) {
    case worker_departure::none:
      return "";
    case worker_departure::disconnected:
      return "disconnected";
    case worker_departure::shutdown:
      return "shutdown";
    case worker_departure::expired:
      return "expired";
    case worker_departure::unreachable:
      return "unreachable";
    case worker_departure::protocol_error:
      return "protocol_error";
    case worker_departure::key_revoked:
      return "key_revoked";
    case worker_departure::moved:
      return "moved";
    case worker_departure::rebalanced:
      return "rebalanced";
  }
  return "";
}

nlohmann::json service_json(const service_status& S, time_point now) {
  nlohmann::json errors = nlohmann::json::object();
  for (const auto& [code, count] : S.errors) errors[std::to_string(code)] = count;
  const double span = S.window_seconds;
  nlohmann::json buckets = nlohmann::json::array();
  for (auto n : S.window_latency) buckets.push_back(n);
  nlohmann::json req = nlohmann::json::array(), err = nlohmann::json::array();
  S.history.for_each([&](std::uint32_t r, std::uint32_t e) {
    req.push_back(r);
    err.push_back(e);
  });
  // The step still open: what it counted so far, and for how long (a page opened now draws it).
  std::uint64_t errors_total = 0;
  for (const auto& [code, count] : S.errors) errors_total += count;
  const auto open_for = now - (S.history.next - traffic_history::step);
  return {{"name", S.name},
          {"workers", S.workers},
          {"idle_slots", S.idle_slots},
          {"queue_depth", S.queue_depth},
          {"queue_bytes", S.queue_bytes},
          {"in_flight", S.in_flight},
          {"family_workers", S.family_workers},
          {"fallback_workers", S.fallback_workers},
          {"forwarded", S.forwarded},
          {"idempotent", S.idempotent},
          {"policy", policy_json(S.policy)},
          {"requests", S.requests},
          {"replies", S.replies},
          {"requests_per_second", span > 0 ? static_cast<double>(S.window_requests) / span : 0.0},
          {"errors_per_second", span > 0 ? static_cast<double>(S.window_errors) / span : 0.0},
          {"latency_p50_ms", latency_histogram::quantile(S.window_latency, 0.50) * 1000},
          {"latency_p99_ms", latency_histogram::quantile(S.window_latency, 0.99) * 1000},
          {"latency_histogram", buckets},
          {"window_seconds", span},
          {"errors", errors},
          {"history",
           {{"step_seconds", traffic_history::step.count()},
            {"requests", std::move(req)},
            {"errors", std::move(err)},
            {"open_requests", S.requests - S.history.base_requests},
            {"open_errors", errors_total - S.history.base_errors},
            {"open_seconds", std::chrono::duration<double>(open_for).count()}}}};
}

nlohmann::json worker_json(const worker_status& W) {
  nlohmann::json names = nlohmann::json::array();
  nlohmann::json held = nlohmann::json::object();  // requests it holds, by service
  for (const auto& [name, n] : W.services) {
    names.push_back(name);
    held[name] = n;
  }
  return {{"id", W.id},
          {"name", W.name},
          {"address", W.address},
          {"protocol", W.protocol},
          {"services", std::move(names)},
          {"concurrency", W.concurrency},
          {"in_flight", W.in_flight},
          {"in_flight_by_service", std::move(held)},
          {"idempotent", W.idempotent},
          {"stopping", W.stopping},
          {"heartbeat_interval_ms", W.heartbeat_interval_ms},
          {"last_seen_ms", W.last_seen_ms},
          {"connected_ms", W.connected_ms}};
}

nlohmann::json events_json(const status_snapshot& s) {
  nlohmann::json out = nlohmann::json::array();
  for (auto it = s.events.rbegin(); it != s.events.rend(); ++it) {  // newest first
    const event_ring::entry& e = *it;
    out.push_back({{"kind", event_ring::kind_name(e.kind)},
                   {"age_ms", millis(s.now - e.at)},
                   {"count", e.count},
                   {"worker", e.worker},
                   {"address", e.address},
                   {"service", e.service},
                   {"code", e.code},
                   {"departure", departure_name(e.departure)},
                   {"detail", e.detail}});
  }
  return out;
}

}  // namespace

std::string write_status_json(const status_snapshot& s) {
  nlohmann::json services = nlohmann::json::array();
  for (const service_status& S : s.services) services.push_back(service_json(S, s.now));
  nlohmann::json workers = nlohmann::json::array();
  for (const worker_status& W : s.workers) workers.push_back(worker_json(W));
  nlohmann::json configured = nlohmann::json::array();
  for (const auto& [name, p] : s.policy.services) {
    nlohmann::json e = policy_json(p);
    e["name"] = name;
    configured.push_back(std::move(e));
  }
  nlohmann::json policy = {{"version", s.policy.version},
                           {"origin", s.policy.origin},
                           {"defaults",
                            {{"request_timeout_ms", s.policy.request_timeout_ms},
                             {"max_queue", s.policy.max_queue},
                             {"idempotent", s.policy.idempotent}}},
                           {"services", configured}};
  nlohmann::json errors = nlohmann::json::object();
  for (const auto& [code, count] : s.counters.errors) errors[std::to_string(code)] = count;
  nlohmann::json bounds = nlohmann::json::array();
  for (double b : latency_histogram::bounds) bounds.push_back(b * 1000);
  const auto& c = s.counters;
  nlohmann::json j = {{"broker_id", s.broker_id},
                      {"uptime_ms", s.uptime_ms},
                      {"draining", s.draining},
                      {"heartbeat_interval_ms", s.heartbeat_interval_ms},
                      {"liveness", s.liveness},
                      {"endpoints",
                       {{"frontend", s.frontend},
                        {"backend", s.backend},
                        {"heartbeat", s.heartbeat},
                        {"peer", s.peer},
                        {"metrics", s.metrics}}},
                      {"latency_bounds_ms", bounds},
                      {"policy", policy},
                      {"forwarded_out", c.forwarded_out},
                      {"forwarded_in", c.forwarded_in},
                      {"services", services},
                      {"workers", workers},
                      {"counters",
                       {{"requests", c.requests},
                        {"replies", c.replies},
                        {"errors", errors},
                        {"dropped",
                         {{"malformed", c.malformed},
                          {"unknown_reply", c.unknown_reply},
                          {"late_reply", c.late_reply},
                          {"unroutable", c.unroutable},
                          {"client_backlog_full", c.backlog}}},
                        {"workers_joined", c.workers_joined},
                        {"workers_left", c.workers_left},
                        {"workers_expired", c.workers_expired},
                        {"heartbeats_missed", c.heartbeats_missed},
                        {"redispatched", c.redispatched},
                        {"redirected_clients", c.redirected_clients},
                        {"redirected_workers", c.redirected_workers},
                        {"handed_back", c.handed_back},
                        {"forwarded_fallback", c.forwarded_fallback},
                        {"rebalanced_workers", c.rebalanced_workers},
                        {"requests_pending", c.requests_pending}}}};
  if (s.has_events) {
    j["events"] = events_json(s);
    j["events_limit"] = s.events_capacity;
  }
  if (s.family) s.family(j);
  // Service names are bytes, not necessarily UTF-8: replace what JSON cannot carry.
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string broker_core::metrics_text(time_point now) const {
  return metrics(now).text();
}

metrics::exposition broker_core::metrics(time_point now) const {
  metrics::exposition e;
  const broker_counters& c = counters_;
  const auto n = [](auto v) { return static_cast<double>(v); };
  e.counter("scale0_requests_total",
            "Requests accepted for a service, by service and outcome status code.");
  for (const service_entry& S : services_) {
    if (!S.used) continue;
    e.add(n(S.replies_ok), {{"service", S.name}, {"code", "200"}});
    for (const auto& [code, count] : S.errors)
      e.add(n(count), {{"service", S.name}, {"code", std::to_string(code)}});
  }
  e.counter("scale0_requests_refused_total",
            "Requests answered with an error before they were accepted for a service, by status "
            "code (malformed, too large, not allowed, draining, too many in flight, no worker).");
  for (const auto& [code, count] : c.refused_requests)
    e.add(n(count), {{"code", std::to_string(code)}});
  e.histogram("scale0_request_duration_seconds",
              "Time from a request's arrival to its reply, by service.");
  for (const service_entry& S : services_)
    if (S.used) e.add(S.latency, {{"service", S.name}});
  auto per_service = [&](const char* name, const char* help, auto value) {
    e.gauge(name, help);
    for (const service_entry& S : services_)
      if (S.used) e.add(n(value(S)), {{"service", S.name}});
  };
  per_service("scale0_workers", "Workers registered for the service.",
              [](const service_entry& S) { return S.workers; });
  per_service("scale0_queue_depth", "Requests waiting for a worker.",
              [](const service_entry& S) { return S.queue.size; });
  per_service("scale0_queue_bytes", "Body bytes of the requests waiting for a worker.",
              [](const service_entry& S) { return S.queue_bytes; });
  per_service("scale0_requests_in_flight", "Requests held by workers.",
              [](const service_entry& S) { return S.in_flight; });
  e.counter(
      "scale0_refused_total",
      "CURVE refusals by endpoint and reason: keys not listed (unknown_key), peers without "
      "CURVE (not_curve), broken handshakes (protocol_error), handshakes not finished in time "
      "or abandoned (handshake_unfinished), services a key may not serve or call "
      "(service_not_allowed), scale0.status without an admin key (status_not_allowed), "
      "workers of removed keys (key_revoked).");
  for (const auto& [where, count] : c.refused)
    e.add(n(count), {{"endpoint", where.first}, {"reason", where.second}});
  e.counter("scale0_dropped_messages_total", "Messages dropped, by reason.")
      .add(n(c.dropped_malformed), {{"reason", "malformed"}})
      .add(n(c.dropped_unknown_reply), {{"reason", "unknown_reply"}})
      .add(n(c.dropped_late_reply), {{"reason", "late_reply"}})
      .add(n(c.dropped_unroutable), {{"reason", "unroutable"}})
      .add(n(c.dropped_backlog), {{"reason", "client_backlog_full"}});
  // Every budget a peer can spend, with its limit (docs/operations.md, "Budgets").
  std::uint64_t longest_interval_ms = 0;
  std::uint64_t biggest_client_backlog = 0;
  std::uint64_t biggest_queue_bytes = 0;
  std::uint64_t longest_queue = 0;
  for (const worker_entry& W : workers_)
    if (W.used && !W.peer)
      longest_interval_ms = std::max<std::uint64_t>(
          longest_interval_ms,
          std::chrono::duration_cast<std::chrono::milliseconds>(W.interval).count());
  for (const auto& [key, client] : clients_)
    biggest_client_backlog = std::max<std::uint64_t>(biggest_client_backlog, client.backlog_bytes);
  for (const service_entry& S : services_) {
    if (!S.used) continue;
    biggest_queue_bytes = std::max<std::uint64_t>(biggest_queue_bytes, S.queue_bytes);
    longest_queue = std::max<std::uint64_t>(longest_queue, S.queue.size);
  }
  std::vector<budget_line> budgets = {
      {"services", service_by_name_.size(), options_.max_services},
      {"unserved_services", unserved_services_, options_.max_unserved_services},
      {"queue_per_service", longest_queue, options_.max_queue},
      {"queue_bytes_per_service", biggest_queue_bytes, options_.max_queue_bytes},
      {"queue_bytes", queue_bytes_, options_.max_total_queue_bytes},
      {"client_backlog_bytes_per_client", biggest_client_backlog,
       options_.max_client_backlog_bytes},
      {"client_backlog_bytes", backlog_bytes_, options_.max_total_backlog_bytes},
      {"heartbeat_interval_seconds", longest_interval_ms,
       static_cast<std::uint64_t>(std::max(
           options_.max_heartbeat_interval.count(),
           std::chrono::duration_cast<std::chrono::milliseconds>(fleet_interval()).count())),
       0.001},
  };
  if (events_ != nullptr)
    budgets.push_back({"status_events", events_->size(), events_->capacity()});
  if (status_source_ != nullptr) status_source_->add_budgets(budgets);
  e.gauge("scale0_budget_used",
          "What peers use of each bounded resource (per_service / per_client: the largest one).");
  for (const auto& b : budgets) e.add(n(b.used) * b.scale, {{"budget", b.name}});
  e.gauge("scale0_budget_limit", "The limit of each bounded resource.");
  for (const auto& b : budgets) e.add(n(b.limit) * b.scale, {{"budget", b.name}});
  e.gauge("scale0_client_backlog_messages",
          "Answers held for clients whose queue is full (not reading).")
      .add(n(backlog_messages_));
  e.gauge("scale0_clients_backlogged", "Clients with answers held for them.")
      .add(n(backlogged_.size()));
  e.counter("scale0_workers_joined_total", "Worker registrations.").add(n(c.workers_joined));
  e.counter("scale0_workers_left_total", "Workers removed for any reason.").add(n(c.workers_left));
  e.counter("scale0_workers_expired_total",
            "Workers removed for missing heartbeats (also counted in workers_left).")
      .add(n(c.workers_expired));
  e.counter("scale0_heartbeats_missed_total", "Worker heartbeat intervals that passed in silence.")
      .add(n(c.heartbeats_missed));
  e.counter("scale0_redispatched_total", "Idempotent requests re-dispatched after a worker loss.")
      .add(n(c.redispatched));
  e.counter("scale0_family_forwarded_total",
            "Requests sent to a peer of the family (out), and accepted from one (in).")
      .add(n(c.forwarded_out), {{"direction", "out"}})
      .add(n(c.forwarded_in), {{"direction", "in"}});
  e.counter("scale0_family_redirected_total",
            "While draining: requests handed back to clients (301), workers sent to a peer, and "
            "this broker's forwards a draining peer handed back; workers sent to a peer that "
            "needs them more (rebalanced_worker).")
      .add(n(c.redirected_clients), {{"what", "client_request"}})
      .add(n(c.redirected_workers), {{"what", "worker"}})
      .add(n(c.handed_back), {{"what", "handed_back"}})
      .add(n(c.rebalanced_workers), {{"what", "rebalanced_worker"}});
  e.counter("scale0_family_fallback_forwarded_total",
            "Requests sent to a broker of a fallback family (also counted in forwarded out).")
      .add(n(c.forwarded_fallback));
  e.counter("scale0_batches_total",
            "BATCH messages (several messages for one peer in one) received and sent "
            "(docs/protocol.md, \"Batches\").")
      .add(n(c.batches_in), {{"direction", "in"}})
      .add(n(c.batches_out), {{"direction", "out"}});
  e.counter("scale0_batch_entries_total", "Messages carried in BATCHes received and sent.")
      .add(n(c.batch_entries_in), {{"direction", "in"}})
      .add(n(c.batch_entries_out), {{"direction", "out"}});
  e.gauge("scale0_requests_pending", "Requests accepted and not yet answered.")
      .add(n(requests_pending()));
  e.gauge("scale0_policy_version",
          "Version of the service policy: 1 at start, one more on each reload that changes it.")
      .add(n(policy_version_));
  e.gauge("scale0_draining", "1 while the broker drains before stopping.").add(draining_ ? 1 : 0);
  if (status_source_ != nullptr) status_source_->add_metrics(e, now);
  return e;
}

}  // namespace scale0::broker_detail
