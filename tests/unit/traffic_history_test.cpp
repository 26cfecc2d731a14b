// SPDX-License-Identifier: Apache-2.0
// A service's five minutes of traffic for the status page: fixed steps, bounded, gaps as zeros.
#include "broker/traffic_history.hpp"

#include <gtest/gtest.h>

#include <utility>
#include <vector>

namespace scale0::broker_detail {
namespace {

using namespace std::chrono_literals;
using pairs = std::vector<std::pair<std::uint32_t, std::uint32_t>>;

pairs steps(const traffic_history& h) {
  pairs out;
  h.for_each([&](std::uint32_t r, std::uint32_t e) { out.emplace_back(r, e); });
  return out;
}

TEST(traffic_history, closes_a_step_every_ten_seconds_with_what_it_counted) {
  traffic_history h;
  const traffic_history::time_point t0{};
  h.start(t0, 0, 0);
  h.advance(t0 + 9s, 50, 1);
  EXPECT_TRUE(steps(h).empty());
  h.advance(t0 + 10s, 100, 2);
  h.advance(t0 + 20s, 130, 2);
  EXPECT_EQ(steps(h), (pairs{{100, 2}, {30, 0}}));
  EXPECT_EQ(h.base_requests, 130u);
  EXPECT_EQ(h.next, t0 + 30s);
}

TEST(traffic_history, keeps_thirty_steps_oldest_first) {
  traffic_history h;
  const traffic_history::time_point t0{};
  h.start(t0, 0, 0);
  std::uint64_t total = 0;
  for (std::uint32_t i = 1; i <= 45; ++i) {
    total += i;
    h.advance(t0 + i * traffic_history::step, total, 0);
  }
  const auto s = steps(h);
  ASSERT_EQ(s.size(), traffic_history::points);
  EXPECT_EQ(s.front().first, 16u);
  EXPECT_EQ(s.back().first, 45u);
}

TEST(traffic_history, a_stall_leaves_zeros_and_a_long_one_only_zeros) {
  traffic_history h;
  const traffic_history::time_point t0{};
  h.start(t0, 0, 0);
  h.advance(t0 + 35s, 40, 4);  // three steps closed at once: the first gets the counts
  EXPECT_EQ(steps(h), (pairs{{40, 4}, {0, 0}, {0, 0}}));
  h.advance(t0 + 2h, 50, 4);  // far longer than the history: bounded work, zeros throughout
  const auto s = steps(h);
  ASSERT_EQ(s.size(), traffic_history::points);
  for (const auto& p : s) EXPECT_EQ(p, (std::pair<std::uint32_t, std::uint32_t>{0, 0}));
  EXPECT_GT(h.next, t0 + 2h);
  EXPECT_LE(h.next, t0 + 2h + traffic_history::step);
}

TEST(traffic_history, is_small) {
  static_assert(sizeof(traffic_history) <= 280, "the per-service cost the comment states");
}

}  // namespace
}  // namespace scale0::broker_detail
