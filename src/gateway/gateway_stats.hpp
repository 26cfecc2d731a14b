// SPDX-License-Identifier: Apache-2.0
// The HTTP gateway's metrics (docs/http.md, "Metrics"): counters the gateway's thread updates and
// the metrics thread reads, and the families built from them at scrape time
// (metrics/exposition.hpp).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

#include "metrics/latency_histogram.hpp"

namespace scale0::gateway_detail {

// Counters read by the metrics thread; the gateway thread updates them under the mutex.
struct gateway_stats {
  std::mutex mu;
  std::map<std::string, std::map<unsigned, std::uint64_t>, std::less<>> requests;  // route, code
  std::map<std::string, metrics::latency_histogram, std::less<>> latency;          // route
  std::uint64_t connections_total = 0;
  std::uint64_t connections_rejected = 0;
  std::uint64_t broker_unknown_replies = 0;
  std::atomic<std::uint64_t> connections_open{0};
  std::atomic<std::uint64_t> inflight{0};
  std::atomic<std::uint64_t> trailer_fields_dropped{0};
  std::atomic<std::uint64_t> tls_handshakes_ok{0};
  std::atomic<std::uint64_t> tls_handshakes_failed{0};
  std::atomic<std::uint64_t> tls_handshakes_timed_out{0};

  void record(std::string_view route, unsigned code, std::chrono::steady_clock::duration took);
  std::string render();
};

}  // namespace scale0::gateway_detail
