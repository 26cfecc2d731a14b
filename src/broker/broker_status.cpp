// SPDX-License-Identifier: Apache-2.0
// What the broker tells about itself: the scale0.status JSON answer and the Prometheus text
// exposition. Both are built only when asked, off the hot path.
#include <algorithm>
#include <nlohmann/json.hpp>

#include "broker_core.hpp"
#include "metrics/exposition.hpp"

namespace scale0::broker_detail {
namespace {

nlohmann::json errors_json(const std::map<std::uint16_t, std::uint64_t>& errors) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [code, count] : errors) j[std::to_string(code)] = count;
  return j;
}

double millis(clock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

// Whole milliseconds, for settings (which are given in ms).
std::int64_t whole_millis(clock::duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

}  // namespace

// A service's effective policy (docs/operations.md, "Service policies").
nlohmann::json broker_core::policy_json(const service_entry& S) const {
  const char* idempotent = S.idempotent == idempotency::yes     ? "yes"
                           : S.idempotent == idempotency::never ? "never"
                                                                : "worker";
  return {{"configured", S.configured},
          {"request_timeout_ms", whole_millis(S.request_timeout)},
          {"max_queue", S.max_queue},
          {"idempotent", idempotent},
          {"max_concurrency",
           S.max_concurrency == 0 ? nlohmann::json(nullptr) : nlohmann::json(S.max_concurrency)}};
}

std::string broker_core::status_json(time_point now) const {
  nlohmann::json services = nlohmann::json::array();
  for (const service_entry& S : services_) {
    if (!S.used) continue;
    std::size_t idle = 0;
    for (std::uint32_t m = S.lru.head; m != npos; m = members_[m].link.next)
      idle += free_slots_of(m);
    // Rates and percentiles over the last few heartbeat intervals (the oldest snapshot kept).
    const auto& oldest = S.window[(S.window_pos + 1) % S.window.size()];
    const double span = std::chrono::duration<double>(now - oldest.at).count();
    latency_histogram::buckets recent{};
    for (std::size_t i = 0; i < recent.size(); ++i)
      recent[i] = S.latency.counts[i] - oldest.latency[i];
    services.push_back({{"name", S.name},
                        {"workers", S.workers},
                        {"idle_slots", idle},
                        {"queue_depth", S.queue.size},
                        {"queue_bytes", S.queue_bytes},
                        {"in_flight", S.in_flight},
                        {"family_workers", S.peer_workers - S.fallback_workers},
                        {"fallback_workers", S.fallback_workers},
                        {"forwarded", S.forwarded},
                        {"idempotent", S.idempotent == idempotency::yes},
                        {"policy", policy_json(S)},
                        {"requests", S.requests},
                        {"replies", S.replies},
                        {"requests_per_second",
                         span > 0 ? static_cast<double>(S.requests - oldest.requests) / span : 0.0},
                        {"latency_p50_ms", latency_histogram::quantile(recent, 0.50) * 1000},
                        {"latency_p99_ms", latency_histogram::quantile(recent, 0.99) * 1000},
                        {"window_seconds", span},
                        {"errors", errors_json(S.errors)}});
  }
  nlohmann::json workers = nlohmann::json::array();
  for (const worker_entry& W : workers_) {
    if (!W.used || W.peer) continue;  // peers are in the family table
    nlohmann::json names = nlohmann::json::array();
    nlohmann::json held = nlohmann::json::object();  // requests it holds, by service
    for (std::uint32_t m : W.memberships) {
      names.push_back(services_[members_[m].service].name);
      held[services_[members_[m].service].name] = members_[m].in_flight;
    }
    workers.push_back({{"id", hex_id(W.identity)},
                       {"name", W.name},
                       {"address", W.address},
                       {"protocol", W.mdp                              ? "MDPW01"
                                    : W.version == protocol::version_2 ? "S0W2"
                                                                       : "S0W1"},
                       {"services", names},
                       {"concurrency", W.concurrency},
                       {"in_flight", W.in_flight},
                       {"in_flight_by_service", held},
                       {"idempotent", W.idempotent},
                       {"stopping", W.stopping},
                       {"heartbeat_interval_ms", millis(W.interval)},
                       {"last_seen_ms", millis(now - W.last_seen)},
                       {"connected_ms", millis(now - W.joined)}});
  }
  // Every configured service, known to the broker yet or not, with its effective policy.
  nlohmann::json configured = nlohmann::json::array();
  for (const auto& [name, p] : options_.service_policies) {
    nlohmann::json e;
    if (const auto it = service_by_name_.find(name); it != service_by_name_.end()) {
      e = policy_json(services_[it->second]);
    } else {
      service_entry S;
      S.name = name;
      apply_policy(S);
      e = policy_json(S);
    }
    e["name"] = name;
    configured.push_back(std::move(e));
  }
  nlohmann::json policy = {{"version", policy_version_},
                           {"origin", broker_id_hex(policy_origin_)},
                           {"defaults",
                            {{"request_timeout_ms", whole_millis(options_.request_timeout)},
                             {"max_queue", options_.max_queue},
                             {"idempotent", options_.idempotent_services}}},
                           {"services", configured}};
  const broker_counters& c = counters_;
  nlohmann::json j = {
      {"broker_id",
       hex_id(std::string_view(reinterpret_cast<const char*>(&broker_id_), sizeof broker_id_))},
      {"uptime_ms", millis(now - started_)},
      {"draining", draining_},
      {"heartbeat_interval_ms", millis(options_.heartbeat_interval)},
      {"liveness", options_.liveness},
      {"policy", policy},
      {"forwarded_out", c.forwarded_out},
      {"forwarded_in", c.forwarded_in},
      {"services", services},
      {"workers", workers},
      {"counters",
       {{"requests", c.requests},
        {"replies", c.replies},
        {"errors", errors_json(c.errors)},
        {"dropped",
         {{"malformed", c.dropped_malformed},
          {"unknown_reply", c.dropped_unknown_reply},
          {"late_reply", c.dropped_late_reply},
          {"unroutable", c.dropped_unroutable},
          {"client_backlog_full", c.dropped_backlog}}},
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
        {"requests_pending", requests_pending()}}}};
  if (status_source_ != nullptr) status_source_->add_status(j, now);
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
