// SPDX-License-Identifier: Apache-2.0
// The HTTP gateway's metrics (docs/http.md, "Metrics"): counters the gateway's thread updates and
// the metrics thread reads, and the families built from them at scrape time
// (metrics/exposition.hpp).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "route_stats.hpp"

namespace scale0::gateway_detail {

// Counters the gateway's thread updates and the metrics thread reads.
struct gateway_stats {
  route_stats routes;
  std::atomic<std::uint64_t> connections_total{0};
  std::atomic<std::uint64_t> connections_rejected{0};
  std::atomic<std::uint64_t> broker_unknown_replies{0};
  std::atomic<std::uint64_t> connections_open{0};
  std::atomic<std::uint64_t> inflight{0};
  std::atomic<std::uint64_t> trailer_fields_dropped{0};
  std::atomic<std::uint64_t> tls_handshakes_ok{0};
  std::atomic<std::uint64_t> tls_handshakes_failed{0};
  std::atomic<std::uint64_t> tls_handshakes_timed_out{0};

  void record(std::string_view route, unsigned code, std::chrono::steady_clock::duration took) {
    routes.record(route, code, took);
  }
  std::string render() const;

  // For the status page (/status.json), set once before the metrics listener starts.
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  std::string listen;
  std::string broker;
  std::string status_json(bool draining) const;
};

}  // namespace scale0::gateway_detail
