// SPDX-License-Identifier: Apache-2.0
// The broker core driven directly: a fake outbox records what it sends, time is whatever the test
// says it is. No sockets, no sleeping.
#include "broker/broker_core.hpp"

#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "scale0/error.hpp"
#include "support/broker_core_fixture.hpp"

namespace scale0::broker_detail {
namespace {

TEST_F(core_test, welcome_carries_agreed_interval_pub_endpoint_and_broker_id) {
  ready("w1", {"echo"}, 1, 0, 5000);  // asks for longer: granted
  ready("w2", {"echo"}, 1, 0, 100);   // asks for shorter: gets the broker's
  auto m1 = out.take("w1");
  auto m2 = out.take("w2");
  ASSERT_EQ(m1.size(), 1u);
  ASSERT_EQ(m1[0].size(), 8u);
  EXPECT_EQ(m1[0][3], "\x06");
  zmq::message_t hb1(m1[0][4].data(), 4), hb2(m2[0][4].data(), 4);
  EXPECT_EQ(protocol::read_u32(hb1), 5000u);
  EXPECT_EQ(protocol::read_u32(hb2), 1000u);
  EXPECT_EQ(m1[0][6], "tcp://127.0.0.1:5557");
  EXPECT_EQ(as_u64(m1[0][7]), 42u);
}

TEST_F(core_test, idle_workers_take_sequential_requests_in_turn) {
  ready("a", {"echo"});
  ready("b", {"echo"});
  ready("c", {"echo"});
  out.sent.clear();
  std::map<std::string, int> served;
  for (std::uint64_t i = 0; i < 30; ++i) {
    request("client", i, "echo");
    for (std::string w : {"a", "b", "c"}) {
      for (auto& j : jobs_of(w)) {
        ++served[w];
        reply(w, as_u64(j[4]));
      }
    }
  }
  EXPECT_EQ(served["a"], 10);
  EXPECT_EQ(served["b"], 10);
  EXPECT_EQ(served["c"], 10);
  EXPECT_EQ(replies_of("client").size(), 30u);
}

TEST_F(core_test, a_worker_holds_at_most_its_concurrency) {
  ready("w", {"echo"}, 4);
  for (std::uint64_t i = 0; i < 6; ++i) request("c", i, "echo");
  auto jobs = jobs_of("w");
  ASSERT_EQ(jobs.size(), 4u);
  EXPECT_EQ(core->queued("echo"), 2u);
  EXPECT_EQ(core->idle_slots("echo"), 0u);
  reply("w", as_u64(jobs[2][4]));  // out of order is fine
  EXPECT_EQ(jobs_of("w").size(), 1u);
  EXPECT_EQ(core->queued("echo"), 1u);
}

TEST_F(core_test, several_services_route_only_to_their_workers) {
  ready("wa", {"a"});
  ready("wab", {"a", "b"}, 2);
  out.sent.clear();
  request("c", 1, "b");
  EXPECT_EQ(jobs_of("wa").size(), 0u);
  auto j = jobs_of("wab");
  ASSERT_EQ(j.size(), 1u);
  EXPECT_EQ(j[0][5], "b");
}

TEST_F(core_test, reply_reaches_the_client_with_its_request_id_status_and_body) {
  ready("w", {"echo"});
  request("c", 77, "echo", "hello");
  auto j = jobs_of("w");
  ASSERT_EQ(j.size(), 1u);
  EXPECT_EQ(j[0].back(), "hello");
  reply("w", as_u64(j[0][4]), "world", 201);
  auto r = replies_of("c");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(as_u64(r[0][4]), 77u);
  EXPECT_EQ(as_u16(r[0][5]), 201);
  EXPECT_EQ(r[0][6], "msg");
  EXPECT_EQ(r[0][7], "world");
}

TEST_F(core_test, duplicate_and_unknown_replies_are_dropped_and_counted) {
  ready("w", {"echo"});
  request("c", 1, "echo");
  const auto job = as_u64(jobs_of("w")[0][4]);
  reply("w", job);
  reply("w", job);             // duplicate
  reply("w", job + 1);         // never issued
  reply("w", 0xffffffffffff);  // out of range
  EXPECT_EQ(replies_of("c").size(), 1u);
  EXPECT_EQ(core->counters().dropped_unknown_reply, 3u);
}

TEST_F(core_test, a_reply_from_another_worker_is_not_accepted) {
  ready("w1", {"echo"});
  ready("w2", {"echo"});
  request("c", 1, "echo");
  const auto job = as_u64(jobs_of("w1")[0][4]);
  reply("w2", job);
  EXPECT_EQ(replies_of("c").size(), 0u);
  EXPECT_EQ(core->counters().dropped_unknown_reply, 1u);
}

TEST_F(core_test, no_worker_gives_503_after_the_no_worker_timeout) {
  request("c", 5, "nobody");
  advance(900ms);
  EXPECT_EQ(replies_of("c").size(), 0u);
  advance(200ms);
  auto r = replies_of("c");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(as_u16(r[0][5]), status::unavailable);
  EXPECT_EQ(as_u64(r[0][4]), 5u);
}

TEST_F(core_test, a_deadline_that_falls_due_with_the_no_worker_timeout_is_503) {
  request("c", 5, "nobody", "x", 1000);  // the default no-worker timeout is 1 s too
  advance(1000ms);
  auto r = replies_of("c");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(as_u16(r[0][5]), status::unavailable);
  EXPECT_EQ(r[0][6], "no worker for service");
}

TEST_F(core_test, a_deadline_before_the_no_worker_timeout_is_504) {
  request("c", 5, "nobody", "x", 400);
  advance(400ms);
  auto r = replies_of("c");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(as_u16(r[0][5]), status::deadline);
  EXPECT_EQ(r[0][6], "deadline passed while queued");
}

TEST_F(core_test, a_worker_arriving_in_time_serves_the_queued_request) {
  request("c", 5, "late");
  advance(500ms);
  ready("w", {"late"});
  auto j = jobs_of("w");
  ASSERT_EQ(j.size(), 1u);
  reply("w", as_u64(j[0][4]));
  advance(2000ms);
  auto r = replies_of("c");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(as_u16(r[0][5]), 200);
}

TEST_F(core_test, deadline_while_queued_gives_504) {
  ready("w", {"echo"});
  request("c", 1, "echo");            // the worker is now busy
  request("c", 2, "echo", "x", 300);  // queued behind it
  advance(250ms);
  EXPECT_EQ(replies_of("c").size(), 0u);
  advance(100ms);
  auto r = replies_of("c");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(as_u64(r[0][4]), 2u);
  EXPECT_EQ(as_u16(r[0][5]), status::deadline);
}

TEST_F(core_test, deadline_in_flight_gives_504_and_the_late_reply_is_dropped) {
  ready("w", {"echo"});
  request("c", 1, "echo", "x", 200);
  const auto job = as_u64(jobs_of("w")[0][4]);
  heartbeat("w");
  advance(250ms);
  auto r = replies_of("c");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(as_u16(r[0][5]), status::deadline);
  request("c", 2, "echo");  // the worker still holds the first one: this one waits
  EXPECT_EQ(jobs_of("w").size(), 0u);
  reply("w", job);  // late
  EXPECT_EQ(core->counters().dropped_late_reply, 1u);
  EXPECT_EQ(jobs_of("w").size(), 1u);  // credit came back with the late reply
  EXPECT_EQ(replies_of("c").size(), 0u);
}

TEST_F(core_test, a_silent_worker_is_purged_within_liveness_intervals_and_its_request_gets_502) {
  ready("w", {"echo"});
  request("c", 9, "echo");
  ASSERT_EQ(jobs_of("w").size(), 1u);
  advance(2900ms);
  EXPECT_EQ(core->worker_count(), 1u);
  advance(200ms);  // 3 x 1000 ms after its last message, plus one expiry scan
  EXPECT_EQ(core->worker_count(), 0u);
  EXPECT_EQ(core->counters().workers_expired, 1u);
  auto r = replies_of("c");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(as_u16(r[0][5]), status::worker_lost);
}

TEST_F(core_test, a_stalled_loop_reads_queued_heartbeats_before_expiring_anyone) {
  ready("w", {"echo"});
  advance(500ms);
  now += 5s;  // the broker process did not run for 5 s: the worker's heartbeats wait unread
  core->on_tick(now);
  EXPECT_EQ(core->worker_count(), 1u);
  advance(200ms);
  heartbeat("w");  // read once the loop catches up
  advance(2000ms);
  EXPECT_EQ(core->worker_count(), 1u);
  EXPECT_EQ(core->counters().workers_expired, 0u);
  advance(2000ms);  // now it really is silent: purged as usual
  EXPECT_EQ(core->worker_count(), 0u);
}

TEST_F(core_test, expiry_checks_every_worker_not_just_the_first) {
  ready("alive", {"echo"});
  ready("dead", {"echo"});
  for (int i = 0; i < 8; ++i) {
    advance(500ms);
    heartbeat("alive");
  }
  EXPECT_EQ(core->worker_count(), 1u);
  EXPECT_EQ(core->idle_slots("echo"), 1u);
}

TEST_F(core_test, heartbeats_keep_a_worker_alive_and_one_pub_send_per_interval_serves_all) {
  for (int i = 0; i < 50; ++i) ready("w" + std::to_string(i), {"echo"});
  advance(1ms);  // the first heartbeat goes out at once
  out.published.clear();
  for (int i = 0; i < 10; ++i) {
    advance(1000ms);
    for (int k = 0; k < 50; ++k) heartbeat("w" + std::to_string(k));
  }
  EXPECT_EQ(core->worker_count(), 50u);
  ASSERT_EQ(out.published.size(), 10u);
  EXPECT_EQ(out.published[0][0], "S0H1");
  EXPECT_EQ(as_u64(out.published[0][1]), 42u);
  EXPECT_EQ(as_u64(out.published[1][2]), as_u64(out.published[0][2]) + 1);
  EXPECT_EQ(core->counters().heartbeats_missed, 0u);
}

// ---- S0/2 peers and heartbeat intervals that grow with the fleet ----

std::string str8(const std::string& s) {
  return std::string(1, static_cast<char>(s.size())) + s;
}

class fleet_test : public core_test {
 protected:
  // An S0/2 READY for one service.
  void ready_v2(const std::string& id, std::uint32_t heartbeat_ms = 0) {
    deliver(
        1, {id, "", "S0W2\x01" + u32(1) + u32(heartbeat_ms) + std::string(1, '\0') + str8("idle")});
  }
  void heartbeat_v2(const std::string& id) { deliver(1, {id, "", "S0W2\x04"}); }
  // The heartbeat-ms of every WELCOME `id` got (S0/2: packed after "S0W2" 0x06; S0/1: frame 4),
  // taking them from the record.
  std::vector<std::uint32_t> welcomes(const std::string& id) {
    std::vector<std::uint32_t> ms;
    for (auto& m : out.take(id)) {
      if (m.size() == 3 && m[2].substr(0, 5) == "S0W2\x06") {
        zmq::message_t f(m[2].data() + 5, 4);
        ms.push_back(protocol::read_u32(f));
        zmq::message_t base(m[2].data() + 13, 4);
        EXPECT_EQ(protocol::read_u32(base), 1000u) << "broker interval stays the base";
      } else if (m.size() == 8 && m[2] == "S0W1" && m[3] == "\x06") {
        zmq::message_t f(m[4].data(), 4);
        ms.push_back(protocol::read_u32(f));
      }
    }
    return ms;
  }
  std::string name(int i) { return "w" + std::to_string(i); }
};

TEST_F(fleet_test, the_granted_interval_grows_with_the_fleet_to_hold_the_heartbeat_rate) {
  broker_options o;
  o.max_worker_heartbeats = 10;  // per second; base interval 1000 ms
  reset(o);
  for (int i = 0; i < 10; ++i) ready_v2(name(i));
  EXPECT_EQ(welcomes(name(9)), (std::vector<std::uint32_t>{1000}));  // 10 a second: fits
  ready_v2(name(10));
  EXPECT_EQ(welcomes(name(10)), (std::vector<std::uint32_t>{2000}));  // 11 workers: 2 s
  for (int i = 11; i < 35; ++i) ready_v2(name(i));
  EXPECT_EQ(welcomes(name(34)), (std::vector<std::uint32_t>{4000}));  // 35 workers: 4 s
  EXPECT_EQ(core->granted_interval(), 4000ms);

  // Workers that joined earlier are told the new interval at the next broker heartbeat.
  advance(1000ms);
  EXPECT_EQ(welcomes(name(0)), (std::vector<std::uint32_t>{1000, 4000}));
  EXPECT_EQ(welcomes(name(10)), (std::vector<std::uint32_t>{4000}));  // its 2000 was read above
  EXPECT_TRUE(welcomes(name(34)).empty()) << "already at 4 s: no message";

  // At their new interval every worker lives on, and the broker still publishes every second.
  out.published.clear();
  for (int round = 0; round < 5; ++round) {
    advance(4000ms);
    for (int i = 0; i < 35; ++i) heartbeat_v2(name(i));
  }
  EXPECT_EQ(core->worker_count(), 35u);
  EXPECT_EQ(core->counters().workers_expired, 0u);
  EXPECT_EQ(core->counters().heartbeats_missed, 0u);
  EXPECT_EQ(out.published.size(), 20u);
  // 35 workers at 4 s: 8.75 heartbeats a second, under the 10 asked for.
}

TEST_F(fleet_test, liveness_counts_intervals_of_the_granted_length) {
  broker_options o;
  o.max_worker_heartbeats = 1;  // two workers: 2 s each
  reset(o);
  ready_v2("a");
  ready_v2("b");
  EXPECT_EQ(welcomes("b"), (std::vector<std::uint32_t>{2000}));
  advance(1000ms);
  EXPECT_EQ(welcomes("a"), (std::vector<std::uint32_t>{1000, 2000}));
  // "a" goes silent; "b" heartbeats every 2 s. "a" is gone after 3 x 2 s, not 3 x 1 s.
  for (int i = 0; i < 2; ++i) {
    advance(2000ms);
    heartbeat_v2("b");
  }
  EXPECT_EQ(core->worker_count(), 2u) << "5 s of silence is within 3 x 2 s";
  advance(1300ms);
  EXPECT_EQ(core->worker_count(), 1u);
  EXPECT_EQ(core->counters().workers_expired, 1u);
}

TEST_F(fleet_test, a_shrinking_fleet_gets_shorter_intervals_without_false_misses) {
  broker_options o;
  o.max_worker_heartbeats = 2;
  reset(o);
  for (int i = 0; i < 8; ++i) ready_v2(name(i));  // 8 workers: 4 s
  advance(1000ms);
  for (int i = 0; i < 8; ++i) welcomes(name(i));
  for (int i = 2; i < 8; ++i) deliver(1, {name(i), "", "S0W2\x05"});  // 6 leave: 2 left
  advance(1000ms);  // 2 workers need 1 s, less than half of 4 s: told so
  EXPECT_EQ(welcomes(name(0)), (std::vector<std::uint32_t>{1000}));
  // They were last heard 2 s ago under a 4 s interval; the first message after is not a miss.
  heartbeat_v2(name(0));
  heartbeat_v2(name(1));
  for (int i = 0; i < 4; ++i) {
    advance(1000ms);
    heartbeat_v2(name(0));
    heartbeat_v2(name(1));
  }
  EXPECT_EQ(core->worker_count(), 2u);
  EXPECT_EQ(core->counters().heartbeats_missed, 0u);
  advance(3100ms);  // now 3 x 1 s of silence is enough
  EXPECT_EQ(core->worker_count(), 0u);
}

TEST_F(fleet_test, a_short_deadline_after_long_ones_is_still_checked_in_time) {
  ready_v2("slow", 10000);  // deadline 30 s away: the expiry walk has nothing to do for a while
  advance(500ms);
  ready_v2("fast");  // 1 s interval, then silent
  advance(2900ms);
  EXPECT_EQ(core->worker_count(), 2u);
  advance(300ms);  // 3 x 1 s after its READY, plus one expiry scan
  EXPECT_EQ(core->worker_count(), 1u);
  EXPECT_EQ(core->counters().workers_expired, 1u);
  // A worker that joins with a nearer deadline than any the last walk saw is found in time too.
  advance(1000ms);
  ready("x", {"idle"});
  advance(3300ms);
  EXPECT_EQ(core->worker_count(), 1u);
  EXPECT_EQ(core->counters().workers_expired, 2u);
}

TEST_F(fleet_test, s01_workers_are_counted_but_never_sent_an_unsolicited_welcome) {
  broker_options o;
  o.max_worker_heartbeats = 1;
  reset(o);
  ready("old", {"idle"});
  EXPECT_EQ(welcomes("old"), (std::vector<std::uint32_t>{1000}));
  ready_v2("new");
  EXPECT_EQ(welcomes("new"), (std::vector<std::uint32_t>{2000}));
  advance(1500ms);  // heartbeat ticks, within everyone's liveness
  EXPECT_TRUE(welcomes("old").empty());
  ready("also-old", {"idle"});
  EXPECT_EQ(welcomes("also-old"), (std::vector<std::uint32_t>{3000}));
}

TEST_F(fleet_test, zero_rate_keeps_the_broker_interval_and_a_longer_request_is_kept) {
  broker_options o;
  o.max_worker_heartbeats = 0;
  reset(o);
  for (int i = 0; i < 100; ++i) ready_v2(name(i));
  EXPECT_EQ(welcomes(name(99)), (std::vector<std::uint32_t>{1000}));
  o.max_worker_heartbeats = 50;
  reset(o);
  out.sent.clear();
  ready_v2("slow", 7000);
  for (int i = 0; i < 120; ++i) ready_v2(name(i));  // 121 workers: 3 s
  advance(1000ms);
  EXPECT_EQ(welcomes("slow"), (std::vector<std::uint32_t>{7000})) << "never below its request";
  EXPECT_EQ(welcomes(name(0)), (std::vector<std::uint32_t>{1000, 3000}));
}

TEST_F(fleet_test, status_shows_each_workers_framing_and_granted_interval) {
  broker_options o;
  o.max_worker_heartbeats = 1;
  reset(o);
  ready("old", {"idle"});
  ready_v2("new");
  request("c", 1, "scale0.status");
  auto r = replies_of("c");
  ASSERT_EQ(r.size(), 1u);
  const auto j = nlohmann::json::parse(r[0].back());
  std::map<std::string, std::pair<std::string, double>> seen;
  for (const auto& w : j["workers"])
    seen[w["protocol"].get<std::string>()] = {w["id"].get<std::string>(),
                                              w["heartbeat_interval_ms"].get<double>()};
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen["S0W1"].second, 1000);
  EXPECT_EQ(seen["S0W2"].second, 2000);
}

TEST_F(fleet_test, s02_client_gets_its_reply_in_s02_from_an_s01_worker) {
  ready("w1", {"echo"});
  out.take("w1");
  deliver(0, {"c2", "", "S0C2\x01" + u64(5) + u32(0) + str8("echo"), "ping"});
  auto jobs = jobs_of("w1");
  ASSERT_EQ(jobs.size(), 1u);  // S0/1 to the S0/1 worker
  EXPECT_EQ(jobs[0][7], "ping");
  reply("w1", as_u64(jobs[0][4]), "pong");
  auto r = out.take("c2");
  ASSERT_EQ(r.size(), 1u);
  ASSERT_EQ(r[0].size(), 4u);  // identity "" packed body
  EXPECT_EQ(r[0][2], "S0C2\x02" + u64(5) + u16(200) + u16(3) + "msg");
  EXPECT_EQ(r[0][3], "pong");
}

TEST_F(core_test, idempotent_request_of_a_dead_worker_goes_to_another_once) {
  ready("w1", {"echo"}, 1, protocol::flag_idempotent);
  ready("w2", {"echo"}, 1, protocol::flag_idempotent);
  ready("w3", {"echo"}, 1, protocol::flag_idempotent);
  request("c", 1, "echo", "payload");
  ASSERT_EQ(jobs_of("w1").size(), 1u);
  deliver(1, {"w1", "", "S0W1", "\x05"});  // DISCONNECT with the request in flight
  auto j2 = jobs_of("w2");
  ASSERT_EQ(j2.size(), 1u);
  EXPECT_EQ(j2[0].back(), "payload");
  EXPECT_EQ(core->counters().redispatched, 1u);
  deliver(1, {"w2", "", "S0W1", "\x05"});  // the second attempt dies too: no third
  EXPECT_EQ(jobs_of("w3").size(), 0u);
  auto r = replies_of("c");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(as_u16(r[0][5]), status::worker_lost);
}

TEST_F(core_test, operator_listed_idempotent_service_retries_majordomo_work) {
  broker_options o;
  o.idempotent_services = {"echo"};
  reset(o);
  deliver(1, {"m1", "", "MDPW01", "\x01", "echo"});
  deliver(1, {"m2", "", "MDPW01", "\x01", "echo"});
  request("c", 3, "echo", "body");
  auto j = out.take("m1");
  ASSERT_EQ(j.size(), 1u);
  EXPECT_EQ(j[0][2], "MDPW01");
  EXPECT_EQ(j[0][3], "\x02");
  EXPECT_EQ(j[0][4].size(), 8u);  // the client address is the job id
  EXPECT_EQ(j[0][5], "");
  EXPECT_EQ(j[0][6], "body");
  deliver(1, {"m1", "", "MDPW01", "\x05"});
  auto j2 = out.take("m2");
  ASSERT_EQ(j2.size(), 1u);
  deliver(1, {"m2", "", "MDPW01", "\x03", j2[0][4], "", "done"});
  auto r = replies_of("c");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(as_u16(r[0][5]), 200);
  EXPECT_EQ(r[0].back(), "done");
}

// worker_left events say why twice: as a worker_departure (the CLI picks its log level by it) and
// in words (the detail that logs show).
TEST_F(core_test, a_worker_that_leaves_says_why_as_a_type_and_in_words) {
  ready("bye", {"echo"});
  deliver(1, {"bye", "", "S0W1", "\x05"});
  ready("twice", {"echo"});
  ready("twice", {"echo"});
  ready("bad", {"echo"});
  deliver(1, {"bad", "", "S0W1", "\x09"});  // an unknown command
  ready("big", {"echo"});
  deliver(1, {"big", "", "S0W1", "\x01", u32(1), u32(0), std::string(1, '\0'), "echo"}, true);
  ready("gone", {"echo"});
  out.unreachable.insert("gone");
  request("c", 1, "echo");
  core->on_input_drained(now);
  ready("last", {"other"});
  core->shutdown(now);
  using d = worker_departure;
  const std::vector<std::tuple<std::string, worker_departure, std::string>> expected{
      {"bye", d::disconnected, "disconnected"},
      {"twice", d::protocol_error, "sent READY twice"},
      {"bad", d::protocol_error, "unknown command"},
      {"big", d::protocol_error, "READY too large"},
      {"gone", d::unreachable, "unreachable"},
      {"last", d::shutdown, "broker shutting down"},
  };
  ASSERT_EQ(out.departures.size(), expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const auto& [id, why, detail] = expected[i];
    EXPECT_EQ(out.departures[i].worker, hex_id(id)) << id;
    EXPECT_EQ(out.departures[i].why, why) << id;
    EXPECT_EQ(out.departures[i].detail, detail) << id;
  }
}

TEST_F(core_test, a_silent_worker_leaves_as_expired) {
  ready("w", {"echo"});
  advance(3100ms);
  ASSERT_EQ(out.departures.size(), 1u);
  EXPECT_EQ(out.departures[0].why, worker_departure::expired);
  EXPECT_EQ(out.departures[0].detail, "heartbeat expired");
}

TEST_F(core_test, a_worker_that_cannot_be_reached_gives_the_request_to_the_next) {
  ready("gone", {"echo"});
  ready("here", {"echo"});
  out.unreachable.insert("gone");
  request("c", 1, "echo");  // not idempotent, but it was never delivered: not lost
  auto j = jobs_of("here");
  ASSERT_EQ(j.size(), 1u);
  EXPECT_EQ(j[0].back(), "x");
  // Not purged before the loop has read what the sockets hold: a reply may still be unread.
  EXPECT_EQ(core->worker_count(), 2u);
  core->on_input_drained(now);
  EXPECT_EQ(core->worker_count(), 1u);
}

TEST_F(core_test, majordomo_client_gets_errors_as_body_frames_with_its_service) {
  deliver(0, {"mc", "", "MDPC01", "nobody", "hi"});
  advance(1100ms);
  auto r = out.take("mc");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0], (strings{"mc", "", "MDPC01", "nobody", "503", "no worker for service"}));
}

TEST_F(core_test, mmi_service_answers_200_404_and_501) {
  ready("w", {"echo"});
  deliver(0, {"mc", "", "MDPC01", "mmi.service", "echo"});
  deliver(0, {"mc", "", "MDPC01", "mmi.service", "other"});
  deliver(0, {"mc", "", "MDPC01", "mmi.nothing", ""});
  auto r = out.take("mc");
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(r[0], (strings{"mc", "", "MDPC01", "mmi.service", "200"}));
  EXPECT_EQ(r[1], (strings{"mc", "", "MDPC01", "mmi.service", "404"}));
  EXPECT_EQ(r[2], (strings{"mc", "", "MDPC01", "mmi.nothing", "501"}));
}

TEST_F(core_test, status_service_reports_services_workers_and_counters) {
  ready("w", {"echo"}, 3);
  request("c", 1, "echo");
  request("c", 2, "scale0.status");
  auto r = replies_of("c");
  ASSERT_EQ(r.size(), 1u);
  const auto j = nlohmann::json::parse(r[0].back());
  ASSERT_EQ(j["services"].size(), 1u);
  EXPECT_EQ(j["services"][0]["name"], "echo");
  EXPECT_EQ(j["services"][0]["workers"], 1);
  EXPECT_EQ(j["services"][0]["idle_slots"], 2);
  EXPECT_EQ(j["services"][0]["in_flight"], 1);
  EXPECT_EQ(j["workers"][0]["concurrency"], 3);
  EXPECT_EQ(j["counters"]["requests"], 2);
}

TEST_F(core_test, reserved_service_names_and_a_second_ready_get_disconnect) {
  deliver(1, {"m", "", "MDPW01", "\x01", "mmi.foo"});
  auto m = out.take("m");
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0], (strings{"m", "", "MDPW01", "\x05"}));
  ready("w", {"echo"});
  out.take("w");
  ready("w", {"echo"});
  auto d = out.take("w");
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0][3], "\x05");
  EXPECT_EQ(core->worker_count(), 0u);
}

TEST_F(core_test, commands_from_an_unknown_worker_get_disconnect) {
  heartbeat("stranger");
  deliver(1, {"mdp", "", "MDPW01", "\x04"});
  EXPECT_EQ(out.take("stranger").at(0)[3], "\x05");
  EXPECT_EQ(out.take("mdp").at(0)[3], "\x05");
  deliver(1, {"quiet", "", "S0W1", "\x05"});  // DISCONNECT from a stranger: nothing to say
  EXPECT_TRUE(out.take("quiet").empty());
}

TEST_F(core_test, stopping_worker_gets_no_new_work_but_its_replies_are_forwarded) {
  ready("w", {"echo"}, 2);
  request("c", 1, "echo");
  const auto job = as_u64(jobs_of("w")[0][4]);
  deliver(1, {"w", "", "S0W1", "\x07"});
  auto ack = out.take("w");
  ASSERT_EQ(ack.size(), 1u);
  EXPECT_EQ(ack[0][3], "\x07");
  request("c", 2, "echo");
  EXPECT_EQ(jobs_of("w").size(), 0u);
  reply("w", job);
  EXPECT_EQ(replies_of("c").size(), 1u);
  EXPECT_EQ(core->queued("echo"), 1u);
}

TEST_F(core_test, bounded_queue_and_per_client_inflight) {
  broker_options o;
  o.max_queue = 2;
  o.max_client_inflight = 3;
  reset(o);
  request("c1", 1, "s");
  request("c1", 2, "s");
  request("c2", 3, "s");  // queue full
  auto r = replies_of("c2");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(as_u16(r[0][5]), status::unavailable);
  ready("w", {"s"}, 10);
  request("c1", 4, "s");
  request("c1", 5, "s");  // c1 already has 3 in flight
  r = replies_of("c1");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(as_u64(r[0][4]), 5u);
  EXPECT_EQ(as_u16(r[0][5]), status::too_many_requests);
}

TEST_F(core_test, malformed_client_messages_are_answered_and_garbage_is_counted) {
  deliver(0, {"c", "", "S0C1", "\x09", u64(3)});
  deliver(0, {"c", "", "S0C3", "\x01", u64(4)});
  deliver(0, {"c", "", "S0C1", "\x01", u64(5), "", u32(0)});
  deliver(0, {"c"});
  deliver(0, {"c", "junk"});
  request("c", 6, "echo", "big", 0);
  deliver(0, {"c", "", "S0C1", "\x01", u64(7), "echo", u32(0), "huge"}, true);
  auto r = replies_of("c");
  ASSERT_EQ(r.size(), 4u);  // request 6 is still waiting for a worker
  EXPECT_EQ(as_u16(r[0][5]), status::not_implemented);
  EXPECT_EQ(as_u16(r[1][5]), status::bad_version);
  EXPECT_EQ(as_u64(r[1][4]), 4u);
  EXPECT_EQ(as_u16(r[2][5]), status::bad_request);
  EXPECT_EQ(as_u16(r[3][5]), status::too_large);
  EXPECT_EQ(as_u64(r[3][4]), 7u);
  EXPECT_EQ(core->counters().dropped_malformed, 2u);
}

TEST_F(core_test, oversized_request_gets_413) {
  deliver(0, {"c", "", "S0C1", "\x01", u64(7), "echo", u32(0), "huge"}, true);
  auto r = replies_of("c");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(as_u16(r[0][5]), status::too_large);
  EXPECT_EQ(core->service_count(), 0u);
}

TEST_F(core_test, every_request_ends_in_exactly_one_reply_under_churn) {
  // Workers come, go and stall while clients keep asking: each request id gets one reply.
  std::map<std::uint64_t, int> outcomes;
  std::uint64_t next = 1;
  for (int round = 0; round < 40; ++round) {
    const std::string w = "w" + std::to_string(round % 4);
    if (round % 3 == 0) ready(w, {"s"}, 2, round % 2 ? protocol::flag_idempotent : 0);
    for (int k = 0; k < 5; ++k) request("c", next++, "s", "b", 400);
    for (auto& j : jobs_of("w" + std::to_string((round + 1) % 4)))
      if (round % 5 != 0) reply("w" + std::to_string((round + 1) % 4), as_u64(j[4]));
    if (round % 7 == 0) deliver(1, {w, "", "S0W1", "\x05"});
    advance(100ms);
    for (auto& r : replies_of("c")) ++outcomes[as_u64(r[4])];
  }
  core->shutdown(now);
  for (auto& r : replies_of("c")) ++outcomes[as_u64(r[4])];
  ASSERT_EQ(outcomes.size(), next - 1);
  for (const auto& [id, n] : outcomes) EXPECT_EQ(n, 1) << "request " << id;
  EXPECT_EQ(core->requests_pending(), 0u);
}

// ---- the family's capacity tracking (docs/family.md) ----

// What a peer would know of this broker: every take applied in order.
using capacity_view =
    std::map<std::string, std::tuple<std::uint32_t, std::uint32_t, std::uint32_t>>;
void apply_changes(capacity_view& view, const std::vector<service_capacity>& changes) {
  for (const auto& c : changes) {
    if (c.workers == 0 && c.idle == 0 && c.queued == 0) {
      view.erase(std::string(c.service));
    } else {
      view[std::string(c.service)] = {c.workers, c.idle, c.queued};
    }
  }
}
// The truth, from the status JSON.
capacity_view actual(const nlohmann::json& st) {
  capacity_view v;
  for (const auto& s : st["services"]) {
    const auto w = s["workers"].get<std::uint32_t>();
    const auto i = s["idle_slots"].get<std::uint32_t>();
    const auto q = s["queue_depth"].get<std::uint32_t>();
    if (w != 0 || i != 0 || q != 0) v[s["name"].get<std::string>()] = {w, i, q};
  }
  return v;
}

TEST_F(core_test, capacity_changes_are_marked_and_taken_once) {
  std::vector<service_capacity> changes;
  ready("w", {"echo"}, 4);
  EXPECT_FALSE(core->capacity_changed()) << "tracking is off until asked";
  core->track_capacity(true);  // marks what exists
  ASSERT_TRUE(core->capacity_changed());
  core->take_capacity_changes(changes);
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].service, "echo");
  EXPECT_EQ(changes[0].workers, 1u);
  EXPECT_EQ(changes[0].idle, 4u);
  EXPECT_FALSE(core->capacity_changed());
  for (std::uint64_t i = 0; i < 6; ++i) request("c", i, "echo");  // 4 taken, 2 queued
  core->take_capacity_changes(changes);
  ASSERT_EQ(changes.size(), 1u) << "one entry per service, however many changes";
  EXPECT_EQ(changes[0].idle, 0u);
  EXPECT_EQ(changes[0].queued, 2u);
  core->take_capacity_changes(changes);
  EXPECT_TRUE(changes.empty());
}

TEST_F(core_test, capacity_follows_credit_coming_back_and_a_service_forgotten_unread) {
  broker_options o;
  o.service_ttl = 0ms;
  o.no_worker_timeout = 1ms;
  reset(o);
  core->track_capacity(true);
  capacity_view view;
  std::vector<service_capacity> changes;
  ready("w", {"echo"}, 2);
  request("c", 1, "echo");
  request("c", 2, "echo");
  core->take_capacity_changes(changes);
  apply_changes(view, changes);
  EXPECT_EQ(view["echo"], std::make_tuple(1u, 0u, 0u));
  auto jobs = jobs_of("w");
  ASSERT_EQ(jobs.size(), 2u);
  reply("w", as_u64(jobs[0][4]));  // one unit of credit back, nothing queued to take it
  core->take_capacity_changes(changes);
  apply_changes(view, changes);
  EXPECT_EQ(view["echo"], std::make_tuple(1u, 1u, 0u));
  reply("w", as_u64(jobs[1][4]));
  deliver(1, {"w", "", "S0W1", "\x05"});  // leaves: echo has no worker, and is forgotten
  advance(1100ms);                        // at the next heartbeat tick, before any take
  ASSERT_EQ(core->service_count(), 0u);
  core->take_capacity_changes(changes);
  apply_changes(view, changes);
  EXPECT_TRUE(view.empty());
}

TEST_F(core_test, capacity_of_a_forgotten_service_is_taken_as_zero) {
  core->track_capacity(true);
  request("c", 1, "nobody", "x", 50);  // makes the service, queues, then 504s
  advance(100ms);
  std::vector<service_capacity> changes;
  core->take_capacity_changes(changes);  // queued 1, then 0: taken as it is now
  capacity_view view;
  apply_changes(view, changes);
  EXPECT_TRUE(view.empty());
  request("c", 2, "nobody", "x", 50);
  advance(100ms);
  advance(std::chrono::milliseconds(options.service_ttl) + 2000ms);  // forgotten meanwhile
  ASSERT_EQ(core->service_count(), 0u);
  core->take_capacity_changes(changes);
  apply_changes(view, changes);
  EXPECT_TRUE(view.empty());
}

TEST_F(core_test, capacity_taken_at_any_moment_matches_the_status_under_churn) {
  broker_options o;
  o.service_ttl = 300ms;
  o.no_worker_timeout = 200ms;
  reset(o);
  core->track_capacity(true);
  capacity_view view;
  std::vector<service_capacity> changes;
  std::uint64_t next = 1;
  for (int round = 0; round < 60; ++round) {
    const std::string w = "w" + std::to_string(round % 5);
    if (round % 3 == 0) ready(w, {"s", round % 2 ? "t" : "u"}, 1 + round % 3);
    for (int k = 0; k < 4; ++k) request("c", next++, k % 2 ? "s" : "t", "b", 300);
    const std::string r = "w" + std::to_string((round + 2) % 5);
    for (auto& j : jobs_of(r))
      if (round % 4 != 0) reply(r, as_u64(j[4]));
    if (round % 7 == 0) deliver(1, {w, "", "S0W1", "\x05"});
    if (round % 11 == 0) deliver(1, {r, "", "S0W1", "\x07"});
    if (round % 13 == 0) {
      broker_options p = o;
      p.service_policies["s"].max_concurrency = 1;
      core->reconfigure(p, now);
    }
    advance(std::chrono::milliseconds(40 + 20 * (round % 4)));
    replies_of("c");
    core->take_capacity_changes(changes);
    apply_changes(view, changes);
    ASSERT_EQ(view, actual(nlohmann::json::parse(core->status_json(now)))) << "round " << round;
  }
}

// ---- issue 9: budgets, stalls and Majordomo cadence ----

namespace budgets {

// MDP worker frames.
strings mdp_ready(const std::string& id, const std::string& service) {
  return {id, "", "MDPW01", "\x01", service};
}
strings mdp_heartbeat(const std::string& id) {
  return {id, "", "MDPW01", "\x04"};
}

}  // namespace budgets

TEST_F(core_test, answers_to_a_client_that_is_not_reading_wait_in_order_and_then_arrive) {
  ready("w", {"echo"}, 8);
  out.full.insert("c");
  for (std::uint64_t i = 1; i <= 5; ++i) request("c", i, "echo", "b" + std::to_string(i));
  for (auto& j : jobs_of("w")) reply("w", as_u64(j[4]), j.back());
  EXPECT_TRUE(replies_of("c").empty());
  EXPECT_NE(core->metrics_text(now).find("scale0_client_backlog_messages 5"), std::string::npos);
  EXPECT_FALSE(core->drained()) << "answers still held are not delivered yet";
  out.full.erase("c");
  advance(10ms);
  auto r = replies_of("c");
  ASSERT_EQ(r.size(), 5u);
  for (std::uint64_t i = 0; i < 5; ++i) {
    EXPECT_EQ(as_u64(r[i][4]), i + 1) << "held answers keep their order";
    EXPECT_EQ(r[i].back(), "b" + std::to_string(i + 1));
  }
  EXPECT_EQ(core->counters().dropped_unroutable + core->counters().dropped_backlog, 0u);
  EXPECT_TRUE(core->drained());
}

TEST_F(core_test, unread_answers_count_against_the_clients_in_flight_bound) {
  broker_options o;
  o.max_client_inflight = 3;
  reset(o);
  ready("w", {"echo"}, 8);
  out.full.insert("c");
  for (std::uint64_t i = 1; i <= 3; ++i) request("c", i, "echo");
  for (auto& j : jobs_of("w")) reply("w", as_u64(j[4]));  // 3 answers held, none in flight
  request("c", 4, "echo");
  EXPECT_TRUE(jobs_of("w").empty()) << "a client that does not read gets no more work";
  out.full.erase("c");
  advance(10ms);
  auto r = replies_of("c");
  ASSERT_EQ(r.size(), 4u);
  EXPECT_EQ(as_u64(r[3][4]), 4u);
  EXPECT_EQ(as_u16(r[3][5]), 429);
}

TEST_F(core_test, a_backlog_over_its_budget_drops_and_counts_and_a_gone_client_is_forgotten) {
  broker_options o;
  o.max_client_backlog_bytes = 2048;
  o.max_total_backlog_bytes = 2048;
  reset(o);
  ready("w", {"echo"}, 64);
  out.full.insert("c");
  for (std::uint64_t i = 1; i <= 20; ++i) request("c", i, "echo", std::string(200, 'x'));
  for (auto& j : jobs_of("w")) reply("w", as_u64(j[4]), j.back());
  const auto dropped = core->counters().dropped_backlog;
  EXPECT_GT(dropped, 0u);
  EXPECT_LT(dropped, 20u);
  // The client goes away: what it was owed is dropped as unroutable, and the backlog is freed.
  out.full.erase("c");
  out.unreachable.insert("c");
  advance(10ms);
  EXPECT_EQ(core->counters().dropped_unroutable, 20u - dropped);
  EXPECT_TRUE(core->drained());
}

TEST_F(core_test, a_reply_read_after_a_failed_send_is_forwarded_not_502) {
  // A stalled broker: worker "a" replied to job 1, then its connection closed. The broker sends
  // it the next request before reading that reply: the send fails, but the reply still arrives.
  ready("a", {"echo"}, 2);
  ready("b", {"echo"}, 2);
  request("c", 1, "echo");
  auto ja = jobs_of("a");
  ASSERT_EQ(ja.size(), 1u);
  out.unreachable.insert("a");
  request("c", 2, "echo");  // LRU: "b" first (a has waited least) — force "a" with a 3rd
  request("c", 3, "echo");
  reply("a", as_u64(ja[0][4]), "first");  // read after the failed send
  core->on_input_drained(now);
  EXPECT_EQ(core->worker_count(), 1u);
  for (auto& j : jobs_of("b")) reply("b", as_u64(j[4]));
  auto r = replies_of("c");
  std::map<std::uint64_t, std::uint16_t> status;
  for (auto& m : r) status[as_u64(m[4])] = as_u16(m[5]);
  EXPECT_EQ(status, (std::map<std::uint64_t, std::uint16_t>{{1, 200}, {2, 200}, {3, 200}}));
}

TEST_F(core_test, held_dispatch_queues_and_release_dispatches) {
  ready("w", {"echo"}, 2);
  core->hold_dispatch(true, now);
  request("c", 1, "echo");
  EXPECT_TRUE(jobs_of("w").empty());
  EXPECT_EQ(core->queued("echo"), 1u);
  core->hold_dispatch(false, now);
  EXPECT_EQ(jobs_of("w").size(), 1u);
}

TEST_F(core_test, majordomo_workers_are_judged_by_mdps_cadence) {
  // Broker 1 s x 3; an MDP worker heartbeating every 3.4 s (mdwrkapi's 2.5 s, checked only when
  // a broker message arrives) is not expired: MDP workers get 2.5 s x 3.
  deliver(1, budgets::mdp_ready("m", "echo"));
  for (int i = 0; i < 10; ++i) {
    advance(3400ms);
    deliver(1, budgets::mdp_heartbeat("m"));
  }
  EXPECT_EQ(core->counters().workers_expired, 0u);
  EXPECT_EQ(core->worker_count(), 1u);
  advance(7600ms);  // past 2.5 s x 3 of silence
  EXPECT_EQ(core->counters().workers_expired, 1u);
}

TEST_F(core_test, a_busy_majordomo_worker_is_kept_until_its_deadline_plus_liveness) {
  deliver(1, budgets::mdp_ready("m", "slow"));
  request("c", 1, "slow", "x", 20000);
  advance(19000ms);  // silent while it works: kept
  EXPECT_EQ(core->worker_count(), 1u);
  std::string job;
  for (auto& m : out.take("m"))
    if (m.size() > 4 && m[3] == "\x02") job = m[4];
  ASSERT_EQ(job.size(), 8u);
  deliver(1, {"m", "", "MDPW01", "\x03", job, "", "done"});
  auto r = replies_of("c");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(as_u16(r[0][5]), 200);
  EXPECT_EQ(core->counters().heartbeats_missed, 0u) << "working is not missing heartbeats";
  // Frozen with a request: out once the deadline (504 to the client) plus 2.5 s x 3 have passed.
  request("c", 2, "slow", "x", 2000);
  advance(2100ms);
  r = replies_of("c");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(as_u16(r[0][5]), 504);
  EXPECT_EQ(core->worker_count(), 1u);
  advance(7600ms);
  EXPECT_EQ(core->worker_count(), 0u);
}

TEST_F(core_test, the_heartbeat_interval_a_worker_asks_for_is_capped) {
  ready("w", {"echo"}, 1, 0, 0xFFFFFFFFu);
  auto m = out.take("w");
  ASSERT_EQ(m.size(), 1u);
  zmq::message_t hb(m[0][4].data(), 4);
  EXPECT_EQ(protocol::read_u32(hb), 60000u);
  advance(181000ms);  // liveness x the cap
  EXPECT_EQ(core->worker_count(), 0u);
}

TEST_F(core_test, clients_cannot_fill_the_table_with_services_nobody_serves) {
  broker_options o;
  o.max_unserved_services = 3;
  o.max_services = 5;
  reset(o);
  for (std::uint64_t i = 0; i < 6; ++i) request("c", i, "ghost" + std::to_string(i));
  auto r = replies_of("c");
  ASSERT_EQ(r.size(), 3u) << "over the cap: 503 at once, no entry";
  EXPECT_EQ(as_u16(r[0][5]), 503);
  EXPECT_EQ(core->service_count(), 3u);
  advance(1100ms);  // the three queued get their 503 (no worker)
  EXPECT_EQ(replies_of("c").size(), 3u);
  // A worker with four new services: the table (5) makes room by forgetting idle unserved ones.
  ready("w", {"a", "b", "c", "d"});
  auto m = out.take("w");
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0][3], "\x06") << "welcomed, not refused";
  EXPECT_LE(core->service_count(), 5u);
  // Services in use are never forgotten: a fifth and sixth new one do not fit.
  ready("w2", {"e", "f", "g"});
  m = out.take("w2");
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0][3], "\x05");
}

TEST_F(core_test, a_worker_may_announce_only_so_many_services) {
  broker_options o;
  o.max_worker_services = 2;
  reset(o);
  ready("w", {"a", "b", "c"});
  auto m = out.take("w");
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0][3], "\x05");
  EXPECT_EQ(core->worker_count(), 0u);
}

TEST_F(core_test, queued_bytes_are_bounded_per_service_and_in_all) {
  broker_options o;
  o.max_queue_bytes = 2500;
  o.max_total_queue_bytes = 4000;
  reset(o);
  request("c", 1, "a", std::string(1000, 'x'));
  request("c", 2, "a", std::string(1000, 'x'));
  request("c", 3, "a", std::string(1000, 'x'));  // 3000 > 2500
  request("c", 4, "b", std::string(1000, 'x'));
  request("c", 5, "b", std::string(1500, 'x'));  // 2000 + 1000 + 1500 > 4000
  auto r = replies_of("c");
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(as_u64(r[0][4]), 3u);
  EXPECT_EQ(as_u64(r[1][4]), 5u);
  EXPECT_EQ(as_u16(r[0][5]), 503);
  EXPECT_NE(core->metrics_text(now).find("scale0_queue_bytes{service=\"a\"} 2000"),
            std::string::npos);
  ready("w", {"a"}, 8);  // dispatching frees the budget
  EXPECT_NE(core->metrics_text(now).find("scale0_queue_bytes{service=\"a\"} 0"), std::string::npos);
}

TEST_F(core_test, a_worker_leaving_with_disconnect_204_held_nothing_so_its_requests_go_elsewhere) {
  // A request was on its way to "a" when it gave up on a (stalled) broker: it never ran, so even a
  // non-idempotent request goes to another worker. A plain DISCONNECT still means 502.
  ready("a", {"echo"});
  ready("b", {"echo"});
  request("c", 1, "echo", "one");
  ASSERT_EQ(jobs_of("a").size(), 1u);
  deliver(1, {"a", "", "S0W1", "\x05", u16(204), "holding nothing"});
  auto jb = jobs_of("b");
  ASSERT_EQ(jb.size(), 1u);
  EXPECT_EQ(jb[0].back(), "one");
  reply("b", as_u64(jb[0][4]), "one");
  request("c", 2, "echo", "two");
  ASSERT_EQ(jobs_of("b").size(), 1u);
  deliver(1, {"b", "", "S0W1", "\x05"});
  auto r = replies_of("c");
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(as_u16(r[0][5]), 200);
  EXPECT_EQ(as_u16(r[1][5]), 502);
}

TEST_F(core_test, an_mdp_reply_before_ready_gets_disconnect_whatever_its_address) {
  for (const std::string address : {"abc", "12345678", ""}) {
    deliver(1, {"x", "", "MDPW01", "\x03", address, "", "body"});
    auto m = out.take("x");
    ASSERT_EQ(m.size(), 1u) << address;
    EXPECT_EQ(m[0], (strings{"x", "", "MDPW01", "\x05"}));
  }
}

// ---- service policies ([service."NAME"] tables, docs/operations.md) ----

std::uint32_t as_u32(const std::string& s) {
  zmq::message_t m(s.data(), s.size());
  return protocol::read_u32(m);
}

class policy_test : public core_test {
 protected:
  // Options with one service's policy set by `set`.
  template <class F>
  static broker_options with(broker_options o, const std::string& service, F set) {
    set(o.service_policies[service]);
    return o;
  }
  nlohmann::json status() { return nlohmann::json::parse(core->status_json(now)); }
  nlohmann::json service_status(const std::string& name) {
    const nlohmann::json j = status();
    for (const auto& s : j["services"])
      if (s["name"] == name) return s;
    return nullptr;
  }
  std::uint16_t only_status(const std::string& client) {
    auto r = replies_of(client);
    EXPECT_EQ(r.size(), 1u);
    return r.empty() ? 0 : as_u16(r[0][5]);
  }
};

TEST_F(policy_test, a_services_request_timeout_is_the_deadline_when_the_client_gives_0) {
  broker_options o;
  o.request_timeout = 30s;
  reset(with(o, "slow", [](service_policy& p) { p.request_timeout = 200ms; }));
  ready("w", {"slow", "other"}, 4);
  request("c1", 1, "slow", "x", 0);
  request("c2", 2, "other", "x", 0);
  request("c3", 3, "slow", "x", 1000);  // the client's own timeout still wins
  auto jobs = jobs_of("w");
  ASSERT_EQ(jobs.size(), 3u);
  EXPECT_EQ(as_u32(jobs[0][6]), 200u);
  EXPECT_EQ(as_u32(jobs[1][6]), 30000u);
  EXPECT_EQ(as_u32(jobs[2][6]), 1000u);
  advance(199ms);
  EXPECT_TRUE(replies_of("c1").empty());
  advance(10ms);
  EXPECT_EQ(only_status("c1"), status::deadline);
  EXPECT_TRUE(replies_of("c2").empty());
  EXPECT_TRUE(replies_of("c3").empty());
  // Majordomo requests have no timeout of their own: they get the service's.
  deliver(0, {"mc", "", "MDPC01", "slow", "hi"});
  ASSERT_EQ(jobs_of("w").size(), 1u);
  advance(210ms);
  auto m = out.take("mc");
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0][4], "504");
}

TEST_F(policy_test, a_services_max_queue_gives_503_when_full) {
  broker_options o;
  o.max_queue = 1;  // broker-wide
  reset(with(o, "big", [](service_policy& p) { p.max_queue = 3; }));
  ready("w", {"big", "small"}, 2);
  request("c", 1, "big");
  request("c", 2, "small");                                       // the worker is full now
  for (std::uint64_t i = 3; i <= 5; ++i) request("c", i, "big");  // 3 queued: at its cap
  EXPECT_TRUE(replies_of("c").empty());
  request("c", 6, "big");
  auto r = replies_of("c");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(as_u64(r[0][4]), 6u);
  EXPECT_EQ(as_u16(r[0][5]), status::unavailable);
  EXPECT_EQ(r[0][6], "service queue full");
  request("c", 7, "small");  // the broker-wide 1
  request("c", 8, "small");
  r = replies_of("c");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(as_u64(r[0][4]), 8u);
  EXPECT_EQ(as_u16(r[0][5]), status::unavailable);
  EXPECT_EQ(core->queued("big"), 3u);
  EXPECT_EQ(core->queued("small"), 1u);
}

TEST_F(policy_test, idempotent_true_re_dispatches_a_request_whose_worker_did_not_say_so) {
  reset(with({}, "s", [](service_policy& p) { p.idempotent = true; }));
  ready("a", {"s"});  // no idempotent flag
  ready("b", {"s"});
  ready("c", {"s"});
  request("cl", 1, "s", "payload");
  ASSERT_EQ(jobs_of("a").size(), 1u);
  deliver(1, {"a", "", "S0W1", "\x05"});
  auto jb = jobs_of("b");
  ASSERT_EQ(jb.size(), 1u);
  EXPECT_EQ(jb[0].back(), "payload");
  EXPECT_EQ(core->counters().redispatched, 1u);
  deliver(1, {"b", "", "S0W1", "\x05"});  // once only
  EXPECT_TRUE(jobs_of("c").empty());
  EXPECT_EQ(only_status("cl"), status::worker_lost);
}

TEST_F(policy_test, idempotent_true_re_dispatches_majordomo_work_with_its_body) {
  reset(with({}, "s", [](service_policy& p) { p.idempotent = true; }));
  deliver(1, {"m1", "", "MDPW01", "\x01", "s"});
  deliver(1, {"m2", "", "MDPW01", "\x01", "s"});
  request("c", 1, "s", "body");
  ASSERT_EQ(out.take("m1").size(), 1u);
  deliver(1, {"m1", "", "MDPW01", "\x05"});
  auto j = out.take("m2");
  ASSERT_EQ(j.size(), 1u);
  EXPECT_EQ(j[0].back(), "body");
}

TEST_F(policy_test, idempotent_false_beats_the_workers_flag_and_the_idempotent_list) {
  broker_options o;
  o.idempotent_services = {"s"};
  reset(with(o, "s", [](service_policy& p) { p.idempotent = false; }));
  ready("a", {"s"}, 1, protocol::flag_idempotent);
  ready("b", {"s"}, 1, protocol::flag_idempotent);
  request("c", 1, "s");
  ASSERT_EQ(jobs_of("a").size(), 1u);
  deliver(1, {"a", "", "S0W1", "\x05"});
  EXPECT_EQ(only_status("c"), status::worker_lost);
  EXPECT_TRUE(jobs_of("b").empty()) << "never re-sent";
  EXPECT_EQ(core->counters().redispatched, 0u);
  // A request the worker says it never received (DISCONNECT 204) is not a re-send: it goes on.
  ready("d", {"s"}, 1, protocol::flag_idempotent);
  request("c", 2, "s", "two");
  ASSERT_EQ(jobs_of("b").size(), 1u);
  deliver(1, {"b", "", "S0W1", "\x05", u16(204), "holding nothing"});
  auto jd = jobs_of("d");
  ASSERT_EQ(jd.size(), 1u);
  EXPECT_EQ(jd[0].back(), "two");
  const auto svc = service_status("s");
  EXPECT_EQ(svc["policy"]["idempotent"], "never");
  EXPECT_EQ(svc["idempotent"], false);
}

TEST_F(policy_test, without_a_table_the_list_or_the_workers_flag_decides) {
  broker_options o;
  o.idempotent_services = {"listed"};
  reset(o);
  ready("a", {"listed", "flagged", "plain"}, 8, 0);
  ready("f", {"flagged"}, 1, protocol::flag_idempotent);
  ready("b", {"listed", "flagged", "plain"}, 8, 0);
  request("c", 1, "listed");   // to a
  request("c", 2, "plain");    // to a
  request("c", 3, "flagged");  // to a (not idempotent): lost with it
  request("c", 4, "flagged");  // to f (idempotent)
  EXPECT_EQ(jobs_of("a").size(), 3u);
  EXPECT_EQ(jobs_of("f").size(), 1u);
  deliver(1, {"a", "", "S0W1", "\x05"});
  deliver(1, {"f", "", "S0W1", "\x05"});
  std::map<std::uint64_t, std::uint16_t> codes;
  for (auto& r : replies_of("c")) codes[as_u64(r[4])] = as_u16(r[5]);
  EXPECT_EQ(codes, (std::map<std::uint64_t, std::uint16_t>{{2, 502}, {3, 502}}));
  EXPECT_EQ(jobs_of("b").size(), 2u);  // 1 (listed) and 4 (its worker said so)
  EXPECT_EQ(service_status("listed")["policy"]["idempotent"], "yes");
  EXPECT_EQ(service_status("plain")["policy"]["idempotent"], "worker");
}

TEST_F(policy_test, max_concurrency_caps_one_service_and_the_worker_keeps_its_other_credit) {
  reset(with({}, "capped", [](service_policy& p) { p.max_concurrency = 2; }));
  ready("w", {"capped", "other"}, 8);
  for (std::uint64_t i = 1; i <= 5; ++i) request("c", i, "capped");
  auto capped = jobs_of("w");
  ASSERT_EQ(capped.size(), 2u);
  EXPECT_EQ(core->queued("capped"), 3u);
  EXPECT_EQ(core->idle_slots("capped"), 0u);
  EXPECT_EQ(core->idle_slots("other"), 6u);
  for (std::uint64_t i = 6; i <= 8; ++i) request("c", i, "other");
  auto other = jobs_of("w");
  ASSERT_EQ(other.size(), 3u) << "the worker keeps its other credit for its other services";
  reply("w", as_u64(other[0][4]));  // a reply of another service: still at the cap for capped
  EXPECT_TRUE(jobs_of("w").empty());
  reply("w", as_u64(capped[0][4]));  // a reply of capped: it rejoins capped's LRU
  auto next = jobs_of("w");
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(next[0][5], "capped");
  EXPECT_EQ(core->queued("capped"), 2u);
  const auto j = status();
  EXPECT_EQ(j["workers"][0]["in_flight"], 4);
  EXPECT_EQ(j["workers"][0]["in_flight_by_service"]["capped"], 2);
  EXPECT_EQ(j["workers"][0]["in_flight_by_service"]["other"], 2);
  EXPECT_EQ(service_status("capped")["policy"]["max_concurrency"], 2);
  EXPECT_TRUE(service_status("other")["policy"]["max_concurrency"].is_null());
}

TEST_F(policy_test, a_worker_at_the_cap_leaves_the_lru_and_rejoins_at_the_back) {
  reset(with({}, "s", [](service_policy& p) { p.max_concurrency = 1; }));
  ready("a", {"s"}, 4);
  ready("b", {"s"}, 4);
  ready("c", {"s"}, 4);
  for (std::uint64_t i = 1; i <= 4; ++i) request("cl", i, "s");
  auto ja = jobs_of("a"), jb = jobs_of("b"), jc = jobs_of("c");
  ASSERT_EQ(ja.size(), 1u);
  ASSERT_EQ(jb.size(), 1u);
  ASSERT_EQ(jc.size(), 1u);
  EXPECT_EQ(core->queued("s"), 1u);
  reply("b", as_u64(jb[0][4]));  // b rejoins and takes the queued request at once
  jb = jobs_of("b");
  ASSERT_EQ(jb.size(), 1u);
  reply("c", as_u64(jc[0][4]));  // LRU: c
  reply("a", as_u64(ja[0][4]));  // LRU: c, a
  reply("b", as_u64(jb[0][4]));  // LRU: c, a, b
  std::string order;
  for (std::uint64_t i = 5; i <= 7; ++i) {
    request("cl", i, "s");
    for (const std::string w : {"a", "b", "c"})
      if (!jobs_of(w).empty()) order += w;
  }
  EXPECT_EQ(order, "cab");
  EXPECT_EQ(replies_of("cl").size(), 4u);
}

TEST_F(policy_test, a_full_worker_comes_back_only_where_it_is_under_the_cap) {
  reset(with({}, "s", [](service_policy& p) { p.max_concurrency = 1; }));
  ready("w", {"s", "t"}, 2);
  request("c", 1, "s");
  request("c", 2, "t");  // full
  auto j = jobs_of("w");
  ASSERT_EQ(j.size(), 2u);
  request("c", 3, "s");
  request("c", 4, "t");
  EXPECT_TRUE(jobs_of("w").empty());
  reply("w", as_u64(j[1][4]));  // t's reply: credit for t, but s is still at its cap
  auto next = jobs_of("w");
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(next[0][5], "t");
  EXPECT_EQ(core->queued("s"), 1u);
  reply("w", as_u64(j[0][4]));  // s's reply: s may take one again
  next = jobs_of("w");
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(next[0][5], "s");
}

TEST_F(policy_test, an_abandoned_request_still_counts_until_the_worker_answers) {
  reset(with({}, "s", [](service_policy& p) { p.max_concurrency = 1; }));
  ready("w", {"s"}, 4);
  request("c", 1, "s", "x", 100);
  request("c", 2, "s", "x", 5000);
  auto j = jobs_of("w");
  ASSERT_EQ(j.size(), 1u);
  advance(110ms);  // 504 for request 1; the worker still holds it
  EXPECT_EQ(only_status("c"), status::deadline);
  EXPECT_TRUE(jobs_of("w").empty());
  reply("w", as_u64(j[0][4]));  // late: dropped, but the worker is under the cap again
  EXPECT_EQ(jobs_of("w").size(), 1u);
  EXPECT_EQ(core->counters().dropped_late_reply, 1u);
}

TEST_F(policy_test, a_lowered_max_concurrency_takes_effect_as_requests_finish) {
  const broker_options three = with({}, "s", [](service_policy& p) { p.max_concurrency = 3; });
  reset(three);
  EXPECT_EQ(core->policy_version(), 1u);
  ready("w", {"s"}, 8);
  for (std::uint64_t i = 1; i <= 5; ++i) request("c", i, "s");
  auto held = jobs_of("w");
  ASSERT_EQ(held.size(), 3u);
  const broker_options one = with({}, "s", [](service_policy& p) { p.max_concurrency = 1; });
  core->reconfigure(one, now);
  EXPECT_EQ(core->policy_version(), 2u);
  EXPECT_EQ(replies_of("c").size(), 0u) << "nothing it holds is taken back";
  reply("w", as_u64(held[0][4]));
  EXPECT_TRUE(jobs_of("w").empty()) << "2 held: over the new cap of 1";
  reply("w", as_u64(held[1][4]));
  EXPECT_TRUE(jobs_of("w").empty()) << "1 held: at the new cap";
  reply("w", as_u64(held[2][4]));
  auto next = jobs_of("w");
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(core->queued("s"), 1u);
  // Raised again: the worker takes more at once.
  core->reconfigure(three, now);
  EXPECT_EQ(core->policy_version(), 3u);
  EXPECT_EQ(jobs_of("w").size(), 1u);
  EXPECT_EQ(core->queued("s"), 0u);
  core->reconfigure(three, now);  // no change: same version
  EXPECT_EQ(core->policy_version(), 3u);
  EXPECT_EQ(status()["policy"]["version"], 3);
}

TEST_F(policy_test, reloaded_timeout_and_queue_cap_apply_to_new_requests_only) {
  broker_options o;
  o.heartbeat_interval = 10s;  // the worker stays registered without heartbeats
  reset(with(o, "s", [](service_policy& p) {
    p.request_timeout = 1000ms;
    p.max_queue = 3;
  }));
  ready("w", {"s"}, 1);
  request("c", 1, "s", "x", 0);  // held, deadline in 1 s
  for (std::uint64_t i = 2; i <= 4; ++i) request("c", i, "s", "x", 0);
  ASSERT_EQ(jobs_of("w").size(), 1u);
  EXPECT_EQ(core->queued("s"), 3u);
  core->reconfigure(with(o, "s",
                         [](service_policy& p) {
                           p.request_timeout = 5000ms;
                           p.max_queue = 1;
                         }),
                    now);
  EXPECT_EQ(core->queued("s"), 3u) << "a lowered max-queue drops nothing queued";
  request("c", 5, "s");
  EXPECT_EQ(only_status("c"), status::unavailable);
  advance(1010ms);  // the old deadline of the four accepted before the reload
  auto r = replies_of("c");
  EXPECT_EQ(r.size(), 4u);
  for (auto& x : r) EXPECT_EQ(as_u16(x[5]), status::deadline);
  request("c2", 6, "s");  // the queue is empty again: the new 5 s deadline
  advance(2000ms);
  EXPECT_TRUE(replies_of("c2").empty());
  advance(3010ms);
  EXPECT_EQ(only_status("c2"), status::deadline);
}

TEST_F(policy_test, reload_of_the_defaults_a_service_falls_back_on_changes_the_version) {
  reset(with({}, "s", [](service_policy& p) { p.max_queue = 5; }));
  broker_options o = with({}, "s", [](service_policy& p) { p.max_queue = 5; });
  o.heartbeat_interval = 500ms;  // not policy
  core->reconfigure(o, now);
  EXPECT_EQ(core->policy_version(), 1u);
  o.request_timeout = 1000ms;
  core->reconfigure(o, now);
  EXPECT_EQ(core->policy_version(), 2u);
  o.idempotent_services = {"a", "b"};
  core->reconfigure(o, now);
  EXPECT_EQ(core->policy_version(), 3u);
  o.idempotent_services = {"b", "a"};  // the same set
  core->reconfigure(o, now);
  EXPECT_EQ(core->policy_version(), 3u);
  const auto p = status()["policy"];
  EXPECT_EQ(p["defaults"]["request_timeout_ms"], 1000);
  ASSERT_EQ(p["services"].size(), 1u) << "a configured service is listed before it exists";
  EXPECT_EQ(p["services"][0]["name"], "s");
  EXPECT_EQ(p["services"][0]["max_queue"], 5);
  EXPECT_EQ(p["services"][0]["request_timeout_ms"], 1000);
  EXPECT_EQ(p["services"][0]["idempotent"], "worker");
  EXPECT_NE(core->metrics_text(now).find("scale0_policy_version 3"), std::string::npos);
}

TEST_F(policy_test, a_reload_that_makes_majordomo_work_idempotent_does_not_resend_an_empty_body) {
  // The body went to the MDP worker (it could not be sent again then): a reload saying yes
  // afterwards cannot bring it back, so the client gets 502, not an empty request at another
  // worker.
  deliver(1, {"m1", "", "MDPW01", "\x01", "s"});
  deliver(1, {"m2", "", "MDPW01", "\x01", "s"});
  request("c", 1, "s", "body");
  ASSERT_EQ(out.take("m1").size(), 1u);
  core->reconfigure(with({}, "s", [](service_policy& p) { p.idempotent = true; }), now);
  deliver(1, {"m1", "", "MDPW01", "\x05"});
  EXPECT_TRUE(out.take("m2").empty());
  EXPECT_EQ(only_status("c"), status::worker_lost);
}

TEST_F(policy_test, stopping_and_unreachable_workers_stay_out_when_a_reload_raises_a_cap) {
  reset(with({}, "s", [](service_policy& p) { p.max_concurrency = 1; }));
  ready("stop", {"s"}, 4);
  ready("gone", {"s"}, 4);
  request("c", 1, "s");
  request("c", 2, "s");
  auto js = jobs_of("stop");
  ASSERT_EQ(js.size(), 1u);
  ASSERT_EQ(jobs_of("gone").size(), 1u);
  deliver(1, {"stop", "", "S0W1", "\x07"});
  out.take("stop");
  out.unreachable.insert("gone");
  core->reconfigure(with({}, "s", [](service_policy& p) { p.max_concurrency = 4; }), now);
  request("c", 3, "s");
  EXPECT_TRUE(jobs_of("stop").empty());
  reply("stop", as_u64(js[0][4]));
  EXPECT_TRUE(jobs_of("stop").empty());
  EXPECT_EQ(core->queued("s"), 1u);
}

TEST_F(policy_test, every_request_ends_in_exactly_one_reply_under_churn_with_policies) {
  broker_options o;
  o.service_policies["s"].max_concurrency = 2;
  o.service_policies["s"].idempotent = true;
  o.service_policies["t"].max_concurrency = 1;
  o.service_policies["t"].idempotent = false;
  o.service_policies["t"].max_queue = 6;
  reset(o);
  std::map<std::uint64_t, int> outcomes;
  std::uint64_t next = 1;
  for (int round = 0; round < 60; ++round) {
    const std::string w = "w" + std::to_string(round % 4);
    if (round % 3 == 0) ready(w, {"s", "t"}, 3, round % 2 ? protocol::flag_idempotent : 0);
    for (int k = 0; k < 4; ++k) request("c", next++, k % 2 ? "s" : "t", "b", 400);
    const std::string r = "w" + std::to_string((round + 1) % 4);
    for (auto& j : jobs_of(r))
      if (round % 5 != 0) reply(r, as_u64(j[4]));
    if (round % 7 == 0) deliver(1, {w, "", "S0W1", "\x05"});
    if (round % 11 == 0) deliver(1, {w, "", "S0W1", "\x05", u16(204), ""});
    if (round % 13 == 0) deliver(1, {w, "", "S0W1", "\x07"});
    if (round % 9 == 0) {
      broker_options p = o;
      p.service_policies["s"].max_concurrency = 1 + round % 3;
      p.service_policies["t"].max_queue = 2 + round % 5;
      core->reconfigure(p, now);
    }
    // The invariant behind the LRU: no worker holds more of a service than it may.
    const nlohmann::json st = status();
    for (const auto& wj : st["workers"])
      EXPECT_LE(wj["in_flight"].get<int>(), wj["concurrency"].get<int>());
    advance(100ms);
    for (auto& rr : replies_of("c")) ++outcomes[as_u64(rr[4])];
  }
  core->shutdown(now);
  for (auto& rr : replies_of("c")) ++outcomes[as_u64(rr[4])];
  ASSERT_EQ(outcomes.size(), next - 1);
  for (const auto& [id, n] : outcomes) EXPECT_EQ(n, 1) << "request " << id;
  EXPECT_EQ(core->requests_pending(), 0u);
}

}  // namespace
}  // namespace scale0::broker_detail
