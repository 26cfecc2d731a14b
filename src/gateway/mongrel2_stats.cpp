// SPDX-License-Identifier: Apache-2.0
#include "mongrel2_stats.hpp"

#include "metrics/exposition.hpp"

namespace scale0::gateway_detail {

void mongrel2_stats::record(std::string_view route, unsigned code,
                            std::chrono::steady_clock::duration took) {
  std::lock_guard lock(mu);
  auto r = requests.find(route);
  if (r == requests.end())
    r = requests.emplace(std::string(route), std::map<unsigned, std::uint64_t>{}).first;
  ++r->second[code];
  auto l = latency.find(route);
  if (l == latency.end())
    l = latency.emplace(std::string(route), metrics::latency_histogram{}).first;
  l->second.record(took);
}

std::string mongrel2_stats::render() {
  metrics::exposition e;
  const auto n = [](auto v) { return static_cast<double>(v); };
  std::lock_guard lock(mu);
  e.counter("scale0_mongrel2_requests_total",
            "HTTP requests from Mongrel2 answered, by route and status code.");
  for (const auto& [route, codes] : requests)
    for (const auto& [code, count] : codes)
      e.add(n(count), {{"route", route}, {"code", std::to_string(code)}});
  e.histogram("scale0_mongrel2_request_duration_seconds",
              "Time from a request received from Mongrel2 to its answer published, by route.");
  for (const auto& [route, h] : latency) e.add(h, {{"route", route}});
  e.gauge("scale0_mongrel2_requests_in_flight", "Requests waiting for the broker.")
      .add(n(inflight.load()));
  e.counter("scale0_mongrel2_malformed_messages_total",
            "Messages from Mongrel2 dropped: unreadable, or not an HTTP request (JSON/XML socket "
            "messages, WebSocket frames).")
      .add(n(malformed_messages.load()));
  e.counter("scale0_mongrel2_broker_unknown_replies_total",
            "Replies from the broker for no request in progress (late or after a disconnect).")
      .add(n(broker_unknown_replies.load()));
  return e.text();
}

}  // namespace scale0::gateway_detail
