// SPDX-License-Identifier: Apache-2.0
// Request latency as a fixed-bucket histogram (Prometheus-style cumulative buckets are derived
// when rendering). Recording is a short scan over 17 bounds: no allocation, no locks.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>

namespace scale0::metrics {

struct latency_histogram {
  static constexpr std::array<double, 17> bounds = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                                    0.01,   0.025,   0.05,   0.1,   0.25,   0.5,
                                                    1,      2.5,     5,      10,    30};
  using buckets = std::array<std::uint64_t, bounds.size() + 1>;  // the last one is +Inf

  void record(std::chrono::steady_clock::duration d) noexcept {
    const double s = std::chrono::duration<double>(d).count();
    std::size_t i = 0;
    while (i < bounds.size() && s > bounds[i]) ++i;
    ++counts[i];
    ++count;
    sum += s;
  }

  // The q-quantile (0..1) of the observations in `b`, in seconds, interpolated linearly inside its
  // bucket as Prometheus' histogram_quantile() does. 0 when `b` is empty.
  static double quantile(const buckets& b, double q) noexcept {
    std::uint64_t total = 0;
    for (auto c : b) total += c;
    if (total == 0) return 0;
    const double rank = q * static_cast<double>(total);
    double below = 0;
    for (std::size_t i = 0; i < b.size(); ++i) {
      const double here = static_cast<double>(b[i]);
      if (below + here >= rank && here > 0) {
        if (i == bounds.size()) return bounds.back();  // +Inf bucket: the largest finite bound
        const double lo = i == 0 ? 0 : bounds[i - 1];
        return lo + (bounds[i] - lo) * ((rank - below) / here);
      }
      below += here;
    }
    return bounds.back();
  }

  buckets counts{};
  std::uint64_t count = 0;
  double sum = 0;
};

}  // namespace scale0::metrics
