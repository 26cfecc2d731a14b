// SPDX-License-Identifier: Apache-2.0
// A service's requests and errors over the last five minutes, in fixed steps, for the status
// page's sparklines: kept by the broker (a page opened now shows the past five minutes at once),
// bounded (30 steps of 10 s), and advanced from the heartbeat tick, never on a request's path.
// Memory: 2 × 30 × 4 bytes of counts + 32 bytes of bookkeeping = 272 bytes per service (2.7 MB
// at the default 10,000 services).
#pragma once

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>

namespace scale0::broker_detail {

struct traffic_history {
  static constexpr std::size_t points = 30;
  static constexpr std::chrono::seconds step{10};
  using time_point = std::chrono::steady_clock::time_point;

  // Counts per closed step; slot `pos` is the next to be written (the oldest once `filled` is
  // `points`).
  std::array<std::uint32_t, points> requests{};
  std::array<std::uint32_t, points> errors{};
  std::uint32_t pos = 0;
  std::uint32_t filled = 0;         // steps closed so far, at most `points`
  time_point next{};                // when the open step closes
  std::uint64_t base_requests = 0;  // the service's totals when the open step began
  std::uint64_t base_errors = 0;

  void start(time_point now, std::uint64_t total_requests, std::uint64_t total_errors) noexcept {
    *this = traffic_history{};
    next = now + step;
    base_requests = total_requests;
    base_errors = total_errors;
  }

  // Closes every step that ended by `now`: the first gets what was counted since it began, the
  // others (the tick did not run: a stall) get nothing. A gap longer than the whole history
  // leaves zeros throughout. At most `points` + 1 turns.
  void advance(time_point now, std::uint64_t total_requests, std::uint64_t total_errors) noexcept {
    if (now < next) return;
    auto clamp = [](std::uint64_t v) {
      return static_cast<std::uint32_t>(std::min<std::uint64_t>(v, UINT32_MAX));
    };
    close(clamp(total_requests - base_requests), clamp(total_errors - base_errors));
    next += step;
    base_requests = total_requests;
    base_errors = total_errors;
    if (now - next >= step * static_cast<int>(points)) {
      const auto missed = (now - next) / step;
      next += step * missed;
      for (std::size_t i = 0; i < points; ++i) close(0, 0);
    }
    while (now >= next) {
      close(0, 0);
      next += step;
    }
  }

  // Calls f(requests, errors) for each closed step, oldest first.
  template <class F>
  void for_each(F&& f) const {
    const std::uint32_t first = filled < points ? 0 : pos;
    for (std::uint32_t i = 0; i < filled; ++i) {
      const auto at = static_cast<std::uint32_t>((first + i) % points);
      f(requests[at], errors[at]);
    }
  }

 private:
  void close(std::uint32_t r, std::uint32_t e) noexcept {
    requests[pos] = r;
    errors[pos] = e;
    pos = static_cast<std::uint32_t>((pos + 1) % points);
    if (filled < points) ++filled;
  }
};

}  // namespace scale0::broker_detail
