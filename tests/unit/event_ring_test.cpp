// SPDX-License-Identifier: Apache-2.0
// The recent-events ring of the status page: bounded in entries and bytes, oldest first, runs of
// the same error kept as one entry with a count.
#include "broker/event_ring.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace scale0::broker_detail {
namespace {

using namespace std::chrono_literals;
using time_point = event_ring::time_point;

broker_event joined(const std::string& worker) {
  return {event_kind::worker_joined, worker, "127.0.0.1", "echo", 0, "S0W2"};
}

std::vector<event_ring::entry> entries(const event_ring& r) {
  std::vector<event_ring::entry> out;
  r.copy_to(out);
  return out;
}

TEST(event_ring, keeps_the_last_capacity_events_oldest_first) {
  event_ring r(4);
  const time_point t0{};
  std::vector<std::string> names;
  for (int i = 0; i < 10; ++i) names.push_back("w" + std::to_string(i));
  for (int i = 0; i < 10; ++i) r.push(joined(names[static_cast<std::size_t>(i)]), t0 + i * 1s);
  EXPECT_EQ(r.size(), 4u);
  EXPECT_EQ(r.capacity(), 4u);
  EXPECT_EQ(r.total(), 10u);
  const auto e = entries(r);
  ASSERT_EQ(e.size(), 4u);
  for (std::size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(e[i].worker, "w" + std::to_string(6 + i));
    EXPECT_EQ(e[i].at, t0 + std::chrono::seconds(6 + i));
  }
}

TEST(event_ring, before_it_is_full_holds_what_came) {
  event_ring r(256);
  r.push(joined("a"), {});
  r.push(joined("b"), {});
  const auto e = entries(r);
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(e[0].worker, "a");
  EXPECT_EQ(e[1].worker, "b");
  EXPECT_EQ(e[1].kind, event_kind::worker_joined);
}

TEST(event_ring, a_run_of_the_same_error_is_one_entry_with_a_count) {
  event_ring r(8);
  const broker_event err{event_kind::request_error, {}, {}, "svc", 503, "no worker"};
  r.push(joined("a"), {});
  for (int i = 0; i < 1000; ++i) r.push(err, time_point{} + i * 1ms);
  r.push({event_kind::request_error, {}, {}, "svc", 504, "deadline"}, {});
  r.push(err, {});
  const auto e = entries(r);
  ASSERT_EQ(e.size(), 4u);
  EXPECT_EQ(e[1].count, 1000u);
  EXPECT_EQ(e[1].at, time_point{} + 999ms);  // the last of them
  EXPECT_EQ(e[2].code, 504);
  EXPECT_EQ(e[3].count, 1u);  // not next to the first run
  EXPECT_EQ(r.total(), 1003u);
}

TEST(event_ring, worker_events_are_never_coalesced) {
  event_ring r(8);
  r.push(joined("a"), {});
  r.push(joined("a"), {});
  EXPECT_EQ(r.size(), 2u);
}

TEST(event_ring, texts_are_cut_at_a_character_boundary) {
  event_ring r(2);
  std::string long_detail(event_ring::max_text - 1, 'x');
  long_detail += "\xc3\xa9tail";  // é across the cut
  std::string service(10000, 's');
  r.push({event_kind::request_error, "w", "addr", service, 500, long_detail}, {});
  r.push({event_kind::request_error, "w", "addr", service, 500, long_detail}, {});
  const auto e = entries(r);
  ASSERT_EQ(e.size(), 2u) << "what was cut is never taken for the same text";
  EXPECT_EQ(e[0].service.size(), event_ring::max_text);
  EXPECT_EQ(e[0].detail, std::string(event_ring::max_text - 1, 'x'));
}

TEST(event_ring, every_kind_has_a_name) {
  for (auto k : {event_kind::worker_joined, event_kind::worker_left, event_kind::service_created,
                 event_kind::service_removed, event_kind::request_error, event_kind::dropped,
                 event_kind::draining, event_kind::reloaded, event_kind::refused,
                 event_kind::peer_up, event_kind::peer_down})
    EXPECT_NE(event_ring::kind_name(k), "unknown");
}

}  // namespace
}  // namespace scale0::broker_detail
