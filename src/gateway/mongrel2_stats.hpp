// SPDX-License-Identifier: Apache-2.0
// The Mongrel2 front door's metrics (docs/http.md, "Mongrel2 as the front door"): plain counters
// the loop's thread updates and the metrics thread reads, the families built at scrape time as
// the gateway's are (metrics/exposition.hpp).
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

struct mongrel2_stats {
  std::mutex mu;  // guards the maps
  std::map<std::string, std::map<unsigned, std::uint64_t>, std::less<>> requests;  // route, code
  std::map<std::string, metrics::latency_histogram, std::less<>> latency;          // route
  std::atomic<std::uint64_t> inflight{0};
  std::atomic<std::uint64_t> malformed_messages{0};
  std::atomic<std::uint64_t> broker_unknown_replies{0};

  // An answer published: its route's label, its status code and the time since the request came.
  void record(std::string_view route, unsigned code, std::chrono::steady_clock::duration took);
  std::string render();
};

}  // namespace scale0::gateway_detail
