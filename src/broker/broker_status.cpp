// SPDX-License-Identifier: Apache-2.0
// What the broker tells about itself: the scale0.status JSON answer and the Prometheus text
// exposition. Both are built only when asked, off the hot path.
#include <algorithm>
#include <nlohmann/json.hpp>
#include <sstream>

#include "broker_core.hpp"
#include "common/text.hpp"

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

// Prometheus label values: backslash, double quote and newline escaped, and valid UTF-8 whatever
// bytes a name holds (the decoder admits only printable UTF-8 names; this is the second line).
std::string label(std::string_view v) {
  return prometheus_label_value(v);
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
  std::ostringstream o;
  auto family = [&](const char* name, const char* type, const char* help) {
    o << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n';
  };
  family("scale0_requests_total", "counter", "Requests by service and outcome status code.");
  for (const service_entry& S : services_) {
    if (!S.used) continue;
    const std::string svc = label(S.name);
    o << "scale0_requests_total{service=\"" << svc << "\",code=\"200\"} " << S.replies_ok << '\n';
    for (const auto& [code, n] : S.errors)
      o << "scale0_requests_total{service=\"" << svc << "\",code=\"" << code << "\"} " << n << '\n';
  }
  family("scale0_request_duration_seconds", "histogram",
         "Time from a request's arrival to its reply.");
  for (const service_entry& S : services_) {
    if (!S.used) continue;
    write_prometheus(o, "scale0_request_duration_seconds", "service", label(S.name), S.latency);
  }
  auto per_service = [&](const char* name, const char* help, auto value) {
    family(name, "gauge", help);
    for (const service_entry& S : services_)
      if (S.used) o << name << "{service=\"" << label(S.name) << "\"} " << value(S) << '\n';
  };
  per_service("scale0_workers", "Workers registered for the service.",
              [](const service_entry& S) { return S.workers; });
  per_service("scale0_queue_depth", "Requests waiting for a worker.",
              [](const service_entry& S) { return S.queue.size; });
  per_service("scale0_in_flight", "Requests held by workers.",
              [](const service_entry& S) { return S.in_flight; });
  per_service("scale0_queue_bytes", "Body bytes of the requests waiting for a worker.",
              [](const service_entry& S) { return S.queue_bytes; });
  const broker_counters& c = counters_;
  family("scale0_refused_total", "counter",
         "CURVE refusals by endpoint and reason: keys not listed (unknown_key), peers without "
         "CURVE (not_curve), broken handshakes (protocol_error), handshakes not finished in time "
         "or abandoned (handshake_unfinished), services a key may not serve or call "
         "(service_not_allowed), scale0.status without an admin key (status_not_allowed), workers "
         "of removed keys (key_revoked).");
  for (const auto& [where, n] : c.refused)
    o << "scale0_refused_total{endpoint=\"" << where.first << "\",reason=\"" << where.second
      << "\"} " << n << '\n';
  family("scale0_dropped_messages_total", "counter", "Messages dropped, by reason.");
  o << "scale0_dropped_messages_total{reason=\"malformed\"} " << c.dropped_malformed << '\n'
    << "scale0_dropped_messages_total{reason=\"unknown_reply\"} " << c.dropped_unknown_reply << '\n'
    << "scale0_dropped_messages_total{reason=\"late_reply\"} " << c.dropped_late_reply << '\n'
    << "scale0_dropped_messages_total{reason=\"unroutable\"} " << c.dropped_unroutable << '\n'
    << "scale0_dropped_messages_total{reason=\"client_backlog_full\"} " << c.dropped_backlog
    << '\n';
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
      {"heartbeat_interval_ms", longest_interval_ms,
       static_cast<std::uint64_t>(std::max(
           options_.max_heartbeat_interval.count(),
           std::chrono::duration_cast<std::chrono::milliseconds>(fleet_interval()).count()))},
  };
  if (status_source_ != nullptr) status_source_->add_budgets(budgets);
  family("scale0_budget_used", "gauge",
         "What peers use of each bounded resource (per_service / per_client: the largest one).");
  for (const auto& b : budgets)
    o << "scale0_budget_used{budget=\"" << b.name << "\"} " << b.used << '\n';
  family("scale0_budget_limit", "gauge", "The limit of each bounded resource.");
  for (const auto& b : budgets)
    o << "scale0_budget_limit{budget=\"" << b.name << "\"} " << b.limit << '\n';
  family("scale0_client_backlog_messages", "gauge",
         "Answers held for clients whose queue is full (not reading).");
  o << "scale0_client_backlog_messages " << backlog_messages_ << '\n';
  family("scale0_clients_backlogged", "gauge", "Clients with answers held for them.");
  o << "scale0_clients_backlogged " << backlogged_.size() << '\n';
  family("scale0_errors_total", "counter", "Error replies made by the broker, by status code.");
  for (const auto& [code, n] : c.errors)
    o << "scale0_errors_total{code=\"" << code << "\"} " << n << '\n';
  auto single = [&](const char* name, const char* type, const char* help, auto value) {
    family(name, type, help);
    o << name << ' ' << value << '\n';
  };
  single("scale0_worker_expired_total", "counter", "Workers purged for missing heartbeats.",
         c.workers_expired);
  single("scale0_heartbeats_missed_total", "counter",
         "Worker heartbeat intervals that passed in silence.", c.heartbeats_missed);
  single("scale0_workers_joined_total", "counter", "Worker registrations.", c.workers_joined);
  single("scale0_workers_left_total", "counter", "Workers removed for any reason.", c.workers_left);
  single("scale0_redispatched_total", "counter",
         "Idempotent requests re-dispatched after a worker loss.", c.redispatched);
  family("scale0_family_forwarded_total", "counter",
         "Requests sent to a peer of the family (out), and accepted from one (in).");
  o << "scale0_family_forwarded_total{direction=\"out\"} " << c.forwarded_out << '\n'
    << "scale0_family_forwarded_total{direction=\"in\"} " << c.forwarded_in << '\n';
  family("scale0_family_redirected_total", "counter",
         "While draining: requests handed back to clients (301), workers sent to a peer, and "
         "this broker's forwards a draining peer handed back; workers sent to a peer that "
         "needs them more (rebalanced_worker).");
  o << "scale0_family_redirected_total{what=\"client_request\"} " << c.redirected_clients << '\n'
    << "scale0_family_redirected_total{what=\"worker\"} " << c.redirected_workers << '\n'
    << "scale0_family_redirected_total{what=\"handed_back\"} " << c.handed_back << '\n'
    << "scale0_family_redirected_total{what=\"rebalanced_worker\"} " << c.rebalanced_workers
    << '\n';
  single("scale0_family_fallback_forwarded_total", "counter",
         "Requests sent to a broker of a fallback family (also counted in forwarded out).",
         c.forwarded_fallback);
  single("scale0_requests_pending", "gauge", "Requests accepted and not yet answered.",
         requests_pending());
  single("scale0_policy_version", "gauge",
         "Version of the service policy: 1 at start, one more on each reload that changes it.",
         policy_version_);
  single("scale0_draining", "gauge", "1 while the broker drains before stopping.",
         draining_ ? 1 : 0);
  single("scale0_uptime_seconds", "gauge", "Seconds since the broker started.",
         std::chrono::duration<double>(now - started_).count());
  if (status_source_ != nullptr) status_source_->add_metrics(o, now);
  return o.str();
}

void write_prometheus(std::ostream& o, std::string_view name, std::string_view label,
                      std::string_view value, const latency_histogram& h) {
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < latency_histogram::bounds.size(); ++i) {
    cumulative += h.counts[i];
    o << name << "_bucket{" << label << "=\"" << value << "\",le=\"" << latency_histogram::bounds[i]
      << "\"} " << cumulative << '\n';
  }
  o << name << "_bucket{" << label << "=\"" << value << "\",le=\"+Inf\"} " << h.count << '\n';
  o << name << "_sum{" << label << "=\"" << value << "\"} " << h.sum << '\n';
  o << name << "_count{" << label << "=\"" << value << "\"} " << h.count << '\n';
}

}  // namespace scale0::broker_detail
