// SPDX-License-Identifier: Apache-2.0
#include "route_stats.hpp"

#include "metrics/exposition.hpp"

namespace scale0::gateway_detail {

void route_stats::record(std::string_view route, unsigned code,
                         std::chrono::steady_clock::duration took) {
  std::lock_guard lock(mu_);
  auto r = requests_.find(route);
  if (r == requests_.end())
    r = requests_.emplace(std::string(route), std::map<unsigned, std::uint64_t>{}).first;
  ++r->second[code];
  auto l = latency_.find(route);
  if (l == latency_.end())
    l = latency_.emplace(std::string(route), metrics::latency_histogram{}).first;
  l->second.record(took);
}

void route_stats::add_to(metrics::exposition& e, std::string_view prefix,
                         std::string_view requests_help, std::string_view duration_help) const {
  const std::string p(prefix);
  std::lock_guard lock(mu_);
  e.counter(p + "_requests_total", requests_help);
  for (const auto& [route, codes] : requests_)
    for (const auto& [code, count] : codes)
      e.add(static_cast<double>(count), {{"route", route}, {"code", std::to_string(code)}});
  e.histogram(p + "_request_duration_seconds", duration_help);
  for (const auto& [route, h] : latency_) e.add(h, {{"route", route}});
}

}  // namespace scale0::gateway_detail
