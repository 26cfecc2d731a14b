// SPDX-License-Identifier: Apache-2.0
// The Mongrel2 front door's metrics (docs/http.md, "Mongrel2 as the front door"): plain counters
// the loop's thread updates and the metrics thread reads, the families built at scrape time as
// the gateway's are (metrics/exposition.hpp).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "route_stats.hpp"

namespace scale0::gateway_detail {

struct mongrel2_stats {
  route_stats routes;
  std::atomic<std::uint64_t> inflight{0};
  std::atomic<std::uint64_t> malformed_messages{0};
  std::atomic<std::uint64_t> broker_unknown_replies{0};

  // An answer published: its route's label, its status code and the time since the request came.
  void record(std::string_view route, unsigned code, std::chrono::steady_clock::duration took) {
    routes.record(route, code, took);
  }
  std::string render() const;
};

}  // namespace scale0::gateway_detail
