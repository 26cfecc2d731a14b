// SPDX-License-Identifier: Apache-2.0
#include "broker/timer_wheel.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>

namespace scale0::broker_detail {
namespace {

using namespace std::chrono_literals;
using time_point = timer_wheel::time_point;

const time_point t0 = time_point{} + 100h;

TEST(timer_wheel, fires_entries_when_due_and_not_before) {
  timer_wheel w(t0);
  w.schedule(1, t0 + 10ms);
  w.schedule(2, t0 + 5ms);
  std::vector<std::uint32_t> due;
  w.expire(t0 + 4ms, due);
  EXPECT_TRUE(due.empty());
  w.expire(t0 + 5ms, due);
  EXPECT_EQ(due, std::vector<std::uint32_t>{2});
  due.clear();
  w.expire(t0 + 20ms, due);
  EXPECT_EQ(due, std::vector<std::uint32_t>{1});
  EXPECT_EQ(w.size(), 0u);
}

TEST(timer_wheel, cancel_and_reschedule) {
  timer_wheel w(t0);
  w.schedule(1, t0 + 10ms);
  w.cancel(1);
  w.schedule(2, t0 + 10ms);
  w.schedule(2, t0 + 30ms);  // moves it
  std::vector<std::uint32_t> due;
  w.expire(t0 + 20ms, due);
  EXPECT_TRUE(due.empty());
  w.expire(t0 + 30ms, due);
  EXPECT_EQ(due, std::vector<std::uint32_t>{2});
}

TEST(timer_wheel, entries_beyond_the_horizon_wait_for_their_time) {
  timer_wheel w(t0, 2ms, 64);  // horizon 128 ms
  w.schedule(7, t0 + 1000ms);
  std::vector<std::uint32_t> due;
  for (auto t = t0; t < t0 + 999ms; t += 3ms) w.expire(t, due);
  EXPECT_TRUE(due.empty());
  w.expire(t0 + 1000ms, due);
  EXPECT_EQ(due, std::vector<std::uint32_t>{7});
}

TEST(timer_wheel, a_long_pause_fires_everything_due_once) {
  timer_wheel w(t0, 2ms, 64);
  for (std::uint32_t i = 0; i < 100; ++i) w.schedule(i, t0 + std::chrono::milliseconds(i * 7));
  std::vector<std::uint32_t> due;
  w.expire(t0 + 10s, due);
  std::sort(due.begin(), due.end());
  ASSERT_EQ(due.size(), 100u);
  for (std::uint32_t i = 0; i < 100; ++i) EXPECT_EQ(due[i], i);
}

TEST(timer_wheel, randomized_against_a_reference) {
  std::mt19937 rng(7);
  timer_wheel w(t0, 2ms, 128);
  std::vector<std::optional<time_point>> ref(500);
  auto now = t0;
  for (int step = 0; step < 20000; ++step) {
    const auto id = static_cast<std::uint32_t>(rng() % ref.size());
    if (rng() % 3 == 0) {
      w.cancel(id);
      ref[id].reset();
    } else {
      const auto when = now + std::chrono::milliseconds(rng() % 600);
      w.schedule(id, when);
      ref[id] = when;
    }
    now += std::chrono::microseconds(rng() % 3000);
    std::vector<std::uint32_t> due;
    w.expire(now, due);
    std::sort(due.begin(), due.end());
    std::vector<std::uint32_t> want;
    for (std::uint32_t i = 0; i < ref.size(); ++i)
      if (ref[i] && *ref[i] <= now) {
        want.push_back(i);
        ref[i].reset();
      }
    ASSERT_EQ(due, want) << "step " << step;
    ASSERT_LE(w.next_due(now), now + 2ms * 128 + 2ms);
  }
}

}  // namespace
}  // namespace scale0::broker_detail
