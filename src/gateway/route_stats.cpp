// SPDX-License-Identifier: Apache-2.0
#include "route_stats.hpp"

#include <nlohmann/json.hpp>

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

void route_stats::set_rules(std::vector<rule> rules) {
  std::lock_guard lock(mu_);
  rules_ = std::move(rules);
}

void route_stats::status_routes(nlohmann::json& out) const {
  std::vector<rule> rules;
  std::map<std::string, std::map<unsigned, std::uint64_t>, std::less<>> requests;
  std::map<std::string, metrics::latency_histogram, std::less<>> latency;
  {
    std::lock_guard lock(mu_);
    rules = rules_;
    requests = requests_;
    latency = latency_;
  }
  using metrics::latency_histogram;
  auto entry = [&](const std::string& label) {
    nlohmann::json e = {{"name", label}};
    std::uint64_t total = 0;
    nlohmann::json codes = nlohmann::json::object(), errors = nlohmann::json::object();
    if (const auto it = requests.find(label); it != requests.end())
      for (const auto& [code, n] : it->second) {
        total += n;
        codes[std::to_string(code)] = n;
        if (code >= 400) errors[std::to_string(code)] = n;
      }
    latency_histogram::buckets b{};
    if (const auto it = latency.find(label); it != latency.end()) b = it->second.counts;
    e["requests"] = total;
    e["codes"] = std::move(codes);
    e["errors"] = std::move(errors);
    e["latency_p50_ms"] = latency_histogram::quantile(b, 0.50) * 1000;
    e["latency_p99_ms"] = latency_histogram::quantile(b, 0.99) * 1000;
    e["latency_histogram"] = b;
    return e;
  };
  out = nlohmann::json::array();
  std::map<std::string, bool, std::less<>> listed;
  for (const rule& r : rules) {
    nlohmann::json e = entry(r.name);
    e["rule"] = true;
    e["host"] = r.host;
    e["prefix"] = r.prefix;
    e["service"] = r.service;
    e["timeout_ms"] = r.timeout_ms;
    out.push_back(std::move(e));
    listed[r.name] = true;
  }
  for (const auto& [label, codes] : requests)
    if (!listed.contains(label)) {
      nlohmann::json e = entry(label);
      e["rule"] = false;
      out.push_back(std::move(e));
    }
}

}  // namespace scale0::gateway_detail
