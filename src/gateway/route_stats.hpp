// SPDX-License-Identifier: Apache-2.0
// Requests answered by route and status code, and their latency by route: what the HTTP gateway
// and the Mongrel2 front door both count. Their thread records; the metrics thread copies the
// counts into metric families under the lock and writes the text after it (metrics/exposition).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "metrics/latency_histogram.hpp"

namespace scale0::metrics {
class exposition;
}

namespace scale0::gateway_detail {

class route_stats {
 public:
  // A route rule as the status page shows it.
  struct rule {
    std::string name;  // its metrics label
    std::string host, prefix, service;
    std::int64_t timeout_ms = 0;  // 0: the front door's default
  };
  void record(std::string_view route, unsigned code, std::chrono::steady_clock::duration took);

  // `<prefix>_requests_total{route,code}` and `<prefix>_request_duration_seconds{route}`, with
  // their help texts.
  void add_to(metrics::exposition& e, std::string_view prefix, std::string_view requests_help,
              std::string_view duration_help) const;

  // The rules in force (set at start and by each reload), for status_routes().
  void set_rules(std::vector<rule> rules);
  // The "routes" array of the status JSON: each rule with what was counted under its label, then
  // labels no rule has now (requests routed by host, rules a reload removed). Copies under the
  // lock, writes after it.
  void status_routes(nlohmann::json& out) const;

 private:
  mutable std::mutex mu_;
  std::vector<rule> rules_;
  std::map<std::string, std::map<unsigned, std::uint64_t>, std::less<>> requests_;  // route, code
  std::map<std::string, metrics::latency_histogram, std::less<>> latency_;          // route
};

}  // namespace scale0::gateway_detail
