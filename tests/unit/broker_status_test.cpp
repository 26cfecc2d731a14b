// SPDX-License-Identifier: Apache-2.0
// The broker's status in two steps: the snapshot the loop copies, and the JSON written from it on
// another thread (scale0.status, /status.json).
#include "broker/broker_status.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "metrics/exposition.hpp"
#include "support/broker_core_fixture.hpp"

namespace scale0::broker_detail {
namespace {

using namespace std::chrono_literals;

std::set<std::string> keys(const nlohmann::json& j) {
  std::set<std::string> out;
  for (const auto& [k, v] : j.items()) out.insert(k);
  return out;
}

TEST(broker_status, writes_a_snapshot_as_json) {
  status_snapshot s;
  s.broker_id = "00112233";
  s.uptime_ms = 1500;
  s.draining = true;
  s.frontend = "tcp://127.0.0.1:5555";
  service_status& S = s.services.emplace_back();
  S.name = "odd <b>&\"quoted\"";
  S.workers = 2;
  S.idle_slots = 3;
  S.requests = 100;
  S.errors = {{503, 4}, {504, 1}};
  S.window_seconds = 2;
  S.window_requests = 10;
  S.window_errors = 4;
  S.window_latency[3] = 10;
  S.history.start({}, 0, 0);
  S.history.advance(traffic_history::time_point{} + 10s, 60, 3);
  s.now = traffic_history::time_point{} + 15s;
  worker_status& W = s.workers.emplace_back();
  W.id = "abcd";
  W.name = "w<1>";
  W.protocol = "S0W2";
  W.services = {{S.name, 1}};
  s.has_events = true;
  s.events_capacity = 256;
  event_ring ring;
  ring.push({event_kind::worker_joined, "abcd", "127.0.0.1", "echo", 0, "S0W2"}, {});
  ring.push({event_kind::worker_left, "abcd", "127.0.0.1", "", 0, "heartbeat expired",
             worker_departure::expired},
            traffic_history::time_point{} + 5s);
  ring.copy_to(s.events);
  bool family_called = false;
  s.family = [&](nlohmann::json& j) {
    family_called = true;
    j["family"] = {{"name", "f"}};
  };

  const auto j = nlohmann::json::parse(write_status_json(s));
  EXPECT_TRUE(family_called);
  EXPECT_EQ(j["family"]["name"], "f");
  EXPECT_EQ(j["broker_id"], "00112233");
  EXPECT_EQ(j["draining"], true);
  EXPECT_EQ(j["endpoints"]["frontend"], "tcp://127.0.0.1:5555");
  const auto& js = j["services"][0];
  EXPECT_EQ(js["name"], S.name);
  EXPECT_EQ(js["requests_per_second"], 5.0);
  EXPECT_EQ(js["errors"]["503"], 4);
  EXPECT_EQ(js["errors_per_second"], 2.0);
  EXPECT_EQ(js["latency_histogram"][3], 10);
  EXPECT_EQ(js["latency_histogram"].size(), j["latency_bounds_ms"].size() + 1);
  EXPECT_EQ(js["history"]["requests"], nlohmann::json::array({60}));
  EXPECT_EQ(js["history"]["errors"], nlohmann::json::array({3}));
  EXPECT_EQ(js["history"]["open_requests"], 40);
  EXPECT_EQ(js["history"]["open_errors"], 2);
  EXPECT_EQ(js["history"]["open_seconds"], 5.0);
  EXPECT_EQ(j["workers"][0]["in_flight_by_service"][S.name], 1);
  ASSERT_EQ(j["events"].size(), 2u);
  EXPECT_EQ(j["events"][0]["kind"], "worker_left") << "newest first";
  EXPECT_EQ(j["events"][0]["departure"], "expired");
  EXPECT_EQ(j["events"][0]["age_ms"], 10000.0);
  EXPECT_EQ(j["events"][1]["kind"], "worker_joined");
  EXPECT_EQ(j["events_limit"], 256);
}

TEST(broker_status, bytes_that_are_not_utf8_are_replaced) {
  status_snapshot s;
  s.services.emplace_back().name = "bad\xff";
  const auto j = nlohmann::json::parse(write_status_json(s));
  EXPECT_EQ(j["services"][0]["name"], "bad\xef\xbf\xbd");
  EXPECT_FALSE(j.contains("events")) << "no ring, no events";
  EXPECT_FALSE(j.contains("family"));
}

using status_core_test = core_test;

TEST_F(status_core_test, status_json_is_the_snapshot_written) {
  ready("w1", {"echo", "other"}, 4);
  for (std::uint64_t i = 0; i < 5; ++i) request("c", i, "echo");
  for (auto& job : jobs_of("w1")) reply("w1", as_u64(job[4]));
  request("c", 9, "nobody", "x", 10);
  advance(50ms);
  EXPECT_EQ(core->status_json(now), write_status_json(core->snapshot_status(now)));
}

// `scale0 status --json` keeps every field it had (fields may be added).
TEST_F(status_core_test, status_keeps_the_fields_it_had) {
  ready("w1", {"echo"}, 2);
  request("c", 1, "echo");
  const auto j = nlohmann::json::parse(core->status_json(now));
  const std::set<std::string> top = {
      "broker_id", "uptime_ms", "draining",      "heartbeat_interval_ms",
      "liveness",  "policy",    "forwarded_out", "forwarded_in",
      "services",  "workers",   "counters"};
  for (const auto& k : top) EXPECT_TRUE(j.contains(k)) << k;
  const std::set<std::string> service = {"name",           "workers",
                                         "idle_slots",     "queue_depth",
                                         "queue_bytes",    "in_flight",
                                         "family_workers", "fallback_workers",
                                         "forwarded",      "idempotent",
                                         "policy",         "requests",
                                         "replies",        "requests_per_second",
                                         "latency_p50_ms", "latency_p99_ms",
                                         "window_seconds", "errors"};
  const auto have = keys(j["services"][0]);
  for (const auto& k : service) EXPECT_TRUE(have.contains(k)) << k;
  const std::set<std::string> worker = {"id",
                                        "name",
                                        "address",
                                        "protocol",
                                        "services",
                                        "concurrency",
                                        "in_flight",
                                        "in_flight_by_service",
                                        "idempotent",
                                        "stopping",
                                        "heartbeat_interval_ms",
                                        "last_seen_ms",
                                        "connected_ms"};
  const auto whave = keys(j["workers"][0]);
  for (const auto& k : worker) EXPECT_TRUE(whave.contains(k)) << k;
  const std::set<std::string> counters = {"requests",
                                          "replies",
                                          "errors",
                                          "dropped",
                                          "workers_joined",
                                          "workers_left",
                                          "workers_expired",
                                          "heartbeats_missed",
                                          "redispatched",
                                          "redirected_clients",
                                          "redirected_workers",
                                          "handed_back",
                                          "forwarded_fallback",
                                          "rebalanced_workers",
                                          "requests_pending"};
  EXPECT_EQ(keys(j["counters"]), counters);
}

TEST_F(status_core_test, history_fills_from_the_tick_and_stays_bounded) {
  ready("w1", {"echo"}, 1);
  for (int step = 0; step < 40; ++step) {
    request("c", static_cast<std::uint64_t>(step), "echo");
    for (auto& job : jobs_of("w1")) reply("w1", as_u64(job[4]));
    for (int second = 0; second < 10; ++second) {  // 10 s, the worker heard all along
      advance(1s);
      heartbeat("w1");
    }
  }
  const auto j = nlohmann::json::parse(core->status_json(now));
  ASSERT_EQ(j["services"].size(), 1u);
  const auto& h = j["services"][0]["history"];
  EXPECT_EQ(h["step_seconds"], 10);
  ASSERT_EQ(h["requests"].size(), traffic_history::points);
  for (const auto& n : h["requests"]) EXPECT_EQ(n, 1);
}

TEST_F(status_core_test, events_and_their_budget_once_the_loop_gives_a_ring) {
  event_ring ring(8);
  core->set_status_extras({"tcp://f", "tcp://b", "tcp://h", ""}, "127.0.0.1:9555", &ring);
  ring.push({event_kind::worker_joined, "ab", "127.0.0.1", "echo", 0, ""}, now);
  const auto j = nlohmann::json::parse(core->status_json(now));
  EXPECT_EQ(j["endpoints"]["backend"], "tcp://b");
  EXPECT_EQ(j["endpoints"]["metrics"], "127.0.0.1:9555");
  EXPECT_EQ(j["events"].size(), 1u);
  EXPECT_EQ(j["events_limit"], 8);
  const std::string text = core->metrics_text(now);
  EXPECT_NE(text.find("scale0_budget_used{budget=\"status_events\"} 1"), std::string::npos);
  EXPECT_NE(text.find("scale0_budget_limit{budget=\"status_events\"} 8"), std::string::npos);
}

}  // namespace
}  // namespace scale0::broker_detail
