// The scale0.status management answer: JSON, built off the hot path (only when asked).
#include <nlohmann/json.hpp>

#include "broker_core.hpp"

namespace scale0::broker_detail {
namespace {

nlohmann::json errors_json(const std::map<std::uint16_t, std::uint64_t>& errors) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [code, count] : errors) j[std::to_string(code)] = count;
  return j;
}

std::string hex(std::string_view bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

double millis(clock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

}  // namespace

std::string broker_core::status_json(time_point now) const {
  nlohmann::json services = nlohmann::json::array();
  for (const service_entry& S : services_) {
    if (!S.used) continue;
    std::size_t idle = 0;
    for (std::uint32_t m = S.lru.head; m != npos; m = members_[m].link.next) {
      const worker_entry& W = workers_[members_[m].worker];
      idle += W.concurrency - W.in_flight;
    }
    services.push_back({{"name", S.name},
                        {"workers", S.workers},
                        {"idle_slots", idle},
                        {"queue_depth", S.queue.size},
                        {"in_flight", S.in_flight},
                        {"idempotent", S.idempotent},
                        {"requests", S.requests},
                        {"replies", S.replies},
                        {"errors", errors_json(S.errors)}});
  }
  nlohmann::json workers = nlohmann::json::array();
  for (const worker_entry& W : workers_) {
    if (!W.used) continue;
    nlohmann::json names = nlohmann::json::array();
    for (std::uint32_t m : W.memberships) names.push_back(services_[members_[m].service].name);
    workers.push_back({{"id", hex(W.identity)},
                       {"protocol", W.mdp ? "MDPW01" : "S0W1"},
                       {"services", names},
                       {"concurrency", W.concurrency},
                       {"in_flight", W.in_flight},
                       {"idempotent", W.idempotent},
                       {"stopping", W.stopping},
                       {"heartbeat_interval_ms", millis(W.interval)},
                       {"last_seen_ms", millis(now - W.last_seen)},
                       {"connected_ms", millis(now - W.joined)}});
  }
  const broker_counters& c = counters_;
  nlohmann::json j = {{"broker_id", hex(std::string_view(reinterpret_cast<const char*>(&broker_id_),
                                                         sizeof broker_id_))},
                      {"heartbeat_interval_ms", millis(options_.heartbeat_interval)},
                      {"liveness", options_.liveness},
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
                          {"unroutable", c.dropped_unroutable}}},
                        {"workers_joined", c.workers_joined},
                        {"workers_left", c.workers_left},
                        {"workers_expired", c.workers_expired},
                        {"heartbeats_missed", c.heartbeats_missed},
                        {"redispatched", c.redispatched},
                        {"requests_pending", requests_pending()}}}};
  return j.dump();
}

}  // namespace scale0::broker_detail
