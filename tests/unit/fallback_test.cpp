// SPDX-License-Identifier: Apache-2.0
// Fallback families and worker balancing in the broker core (docs/family.md, "Fallback families",
// "Balancing workers (NEEDBROKER)"): brokers of a fallback family take a request only when the
// family has no worker for its service, the first family first; a registering or idle worker is
// sent to the member that needs its services more, and never bounces back.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "support/forwarding_fixture.hpp"

namespace scale0::broker_detail {
namespace {

class fallback_test : public forwarding_test {
 protected:
  // An S0/2 READY for `service` (concurrency 1); flags: protocol::flag_moved, say.
  void ready_v2(const std::string& id, const std::string& service = "echo",
                std::uint8_t flags = 0) {
    deliver(1, {id, "",
                "S0W2\x01" + u32(1) + u32(0) + std::string(1, static_cast<char>(flags)) +
                    std::string(1, static_cast<char>(service.size())) + service});
  }
  // The S0/2 DISCONNECTs `id` got: (status, message).
  std::vector<std::pair<std::uint16_t, std::string>> moves_of(const std::string& id) {
    std::vector<std::pair<std::uint16_t, std::string>> got;
    for (auto& m : out.take(id)) {
      if (m.size() != 3 || m[2].substr(0, 5) != "S0W2\x05") continue;
      protocol::packing::reader r(std::string_view(m[2]).substr(5));
      const std::uint16_t code = r.u16();
      got.emplace_back(code, std::string(r.str16()));
    }
    return got;
  }
  std::uint32_t workers_here(const std::string& service) {
    const auto j = nlohmann::json::parse(core->status_json(now));
    for (const auto& s : j["services"])
      if (s["name"] == service) return s["workers"].get<std::uint32_t>();
    return 0;
  }
};

// ---- Fallback families ----

TEST_F(fallback_test, a_fallback_broker_takes_a_request_only_when_the_family_has_no_worker) {
  peer(7, "echo", 1, 1, false, 1);  // a broker of the first fallback family
  request("c", 1, "echo");
  ASSERT_EQ(forwards_on(7).size(), 1u);
  EXPECT_EQ(core->counters().forwarded_fallback, 1u);
  EXPECT_EQ(core->counters().forwarded_out, 1u);
}

TEST_F(fallback_test, a_member_with_a_worker_but_no_credit_keeps_the_request_in_the_family) {
  peer(7, "echo", 1, 5, false, 1);  // a fallback with plenty of credit
  peer(8, "echo", 1, 0);            // a member with a busy worker
  request("c", 1, "echo");
  EXPECT_TRUE(forwards_on(7).empty());
  EXPECT_TRUE(forwards_on(8).empty());  // waits here for the family's credit
  peer(8, "echo", 1, 1);
  EXPECT_EQ(forwards_on(8).size(), 1u);
  EXPECT_TRUE(forwards_on(7).empty());
  EXPECT_EQ(core->counters().forwarded_fallback, 0u);
}

TEST_F(fallback_test, a_local_worker_keeps_the_request_in_the_family_too) {
  ready("w", {"echo"});
  peer(7, "echo", 1, 5, false, 1);
  request("c", 1, "echo");
  request("c", 2, "echo");  // the local worker is busy: the second waits for it
  EXPECT_EQ(jobs_of("w").size(), 1u);
  EXPECT_TRUE(forwards_on(7).empty());
}

TEST_F(fallback_test, what_waits_goes_to_a_fallback_when_the_family_loses_its_last_worker) {
  peer(7, "echo", 1, 1, false, 1);  // a fallback with credit
  peer(8, "echo", 1, 0);            // the family's only worker, busy
  request("c", 1, "echo");
  request("c", 2, "echo");
  EXPECT_TRUE(forwards_on(7).empty());
  core->peer_capacity(8, "echo", 0, 0, 0, false, now);  // the member's worker is gone
  EXPECT_EQ(forwards_on(7).size(), 1u) << "at once, not at the next request";
  peer(7, "echo", 1, 1, false, 1);  // its credit back
  EXPECT_EQ(forwards_on(7).size(), 1u);
  EXPECT_EQ(core->counters().forwarded_fallback, 2u);
}

TEST_F(fallback_test, what_waits_goes_to_a_fallback_when_the_last_local_worker_leaves) {
  peer(7, "echo", 1, 5, false, 1);
  ready("w", {"echo"});
  request("c", 1, "echo");  // at w
  request("c", 2, "echo");  // waits for w
  EXPECT_TRUE(forwards_on(7).empty());
  deliver(1, {"w", "", "S0W1", "\x05"});  // w leaves (DISCONNECT)
  EXPECT_EQ(forwards_on(7).size(), 1u);
}

TEST_F(fallback_test, the_first_fallback_family_with_credit_comes_first) {
  peer(7, "echo", 1, 1, false, 2);  // the second fallback family
  peer(8, "echo", 1, 1, false, 1);  // the first
  request("c", 1, "echo");
  EXPECT_EQ(forwards_on(8).size(), 1u);
  EXPECT_TRUE(forwards_on(7).empty());
  request("c", 2, "echo");  // the first family has no credit left: the second takes it
  EXPECT_EQ(forwards_on(7).size(), 1u);
  EXPECT_EQ(core->counters().forwarded_fallback, 2u);
}

TEST_F(fallback_test, a_request_waits_for_fallback_credit_and_gets_503_only_without_any_worker) {
  reset([] {
    broker_options o;
    o.no_worker_timeout = 200ms;
    return o;
  }());
  up.clear();
  peer(7, "echo", 1, 0, false, 1);  // a fallback worker, busy
  request("c", 1, "echo");
  advance(300ms);
  EXPECT_TRUE(replies_of("c").empty()) << "a fallback has a worker: the request waits";
  peer(7, "echo", 1, 1, false, 1);
  EXPECT_EQ(forwards_on(7).size(), 1u);
  request("c", 2, "nothing");  // nobody anywhere
  advance(300ms);
  const auto r = replies_of("c");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(as_u16(r[0][5]), 503u);
}

TEST_F(fallback_test, a_fallback_broker_lost_holding_a_request_gives_502) {
  peer(7, "echo", 1, 1, false, 1);
  request("c", 1, "echo");
  ASSERT_EQ(forwards_on(7).size(), 1u);
  core->peer_down(7, "silent", now);
  const auto r = replies_of("c");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(as_u16(r[0][5]), 502u);
}

TEST_F(fallback_test, fallbacks_are_not_redirect_targets_nor_in_the_familys_lists) {
  peer(7, "echo", 1, 1, false, 1);
  ready("w", {"echo"});
  core->begin_drain(now);
  EXPECT_TRUE(disconnects_of("w").empty()) << "a worker is never sent to another family";
  request("c", 1, "echo");
  const auto r = replies_of("c");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(as_u16(r[0][5]), 503u) << "a client is never sent to another family";
}

TEST_F(fallback_test, status_tells_the_familys_workers_from_the_fallbacks) {
  peer(7, "echo", 2, 2, false, 1);
  peer(8, "echo", 3, 3);
  const auto j = nlohmann::json::parse(core->status_json(now));
  ASSERT_EQ(j["services"].size(), 1u);
  EXPECT_EQ(j["services"][0]["family_workers"], 3);
  EXPECT_EQ(j["services"][0]["fallback_workers"], 2);
  core->peer_down(7, "gone", now);
  const auto k = nlohmann::json::parse(core->status_json(now));
  EXPECT_EQ(k["services"][0]["fallback_workers"], 0);
}

// ---- Balancing workers ----

TEST_F(fallback_test, registering_workers_are_shared_with_a_member_that_has_fewer) {
  peer(7, "other", 1, 1);  // a member without echo workers
  ready_v2("w1");
  EXPECT_TRUE(moves_of("w1").empty()) << "one worker here against none there: it stays";
  ready_v2("w2");
  auto m = moves_of("w2");
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0].first, 301u);
  EXPECT_EQ(m[0].second, "tcp://10.0.0.7:5556");
  ready_v2("w3");
  EXPECT_TRUE(moves_of("w3").empty()) << "the worker sent counts as the peer's: 2 here, 1 there";
  ready_v2("w4");
  EXPECT_EQ(moves_of("w4").size(), 1u);
  EXPECT_EQ(workers_here("echo"), 2u);
  EXPECT_EQ(core->counters().rebalanced_workers, 2u);
}

TEST_F(fallback_test, a_worker_never_bounces_back_to_a_broker_that_sent_it) {
  peer(7, "echo", 2, 2);  // the peer has two
  ready_v2("w1");
  ready_v2("w2");
  ready_v2("w3");  // three here against two there: 3 >= 2 + 2 is false
  EXPECT_TRUE(moves_of("w1").empty());
  EXPECT_TRUE(moves_of("w2").empty());
  EXPECT_TRUE(moves_of("w3").empty());
  ready_v2("w4");  // four against two: one goes
  EXPECT_EQ(moves_of("w4").size(), 1u);
}

TEST_F(fallback_test, a_worker_a_broker_sent_here_is_not_sent_on_before_its_senders_state) {
  // The sender's STATE has not told yet that it lost the worker: this broker's view says the
  // sender has none, so the rule alone would send the worker straight back.
  peer(7, "other", 1, 1);
  ready_v2("w1");
  ready_v2("w2", "echo", protocol::flag_moved);
  EXPECT_TRUE(moves_of("w2").empty()) << "not at registration";
  auto heartbeats_for = [&](std::chrono::milliseconds d) {
    for (const auto end = now + d; now < end;) {
      deliver(1, {"w1", "", "S0W2\x04"});
      deliver(1, {"w2", "", "S0W2\x04"});
      advance(250ms);
    }
  };
  heartbeats_for(1750ms);  // not within the settling time (2 heartbeat intervals) either
  EXPECT_TRUE(moves_of("w2").empty());
  EXPECT_TRUE(moves_of("w1").empty()) << "nor another worker of the service in its place";
  EXPECT_EQ(core->counters().rebalanced_workers, 0u);
  heartbeats_for(1250ms);  // settled, and the peer still has none: now one may go
  EXPECT_EQ(core->counters().rebalanced_workers, 1u);
}

TEST_F(fallback_test, idle_workers_move_one_per_peer_per_heartbeat_interval) {
  const std::vector<std::string> ids{"w1", "w2", "w3", "w4"};
  for (const auto& w : ids) ready_v2(w);  // no peer yet: all stay
  EXPECT_EQ(workers_here("echo"), 4u);
  peer(7, "other", 1, 1);  // a member comes up (a restarted broker, say)
  std::set<std::string> moved;
  std::vector<std::uint32_t> here;  // after each heartbeat interval
  for (int round = 0; round < 5; ++round) {
    for (int step = 0; step < 4; ++step) {  // the workers heartbeat; the peer tells what arrived
      for (const auto& w : ids)
        if (!moved.contains(w)) deliver(1, {w, "", "S0W2\x04"});
      advance(250ms);
      for (const auto& w : ids)
        for (const auto& [code, to] : moves_of(w))
          if (code == 301 && to == "tcp://10.0.0.7:5556") moved.insert(w);
      if (!moved.empty()) {
        const auto n = static_cast<std::uint32_t>(moved.size());
        peer(7, "echo", n, n);
      }
    }
    here.push_back(workers_here("echo"));
  }
  EXPECT_EQ(here, (std::vector<std::uint32_t>{3, 2, 2, 2, 2}))
      << "one per interval, until this broker has no more than the peer";
  EXPECT_EQ(moved.size(), 2u);
  EXPECT_EQ(core->counters().rebalanced_workers, 2u);
  ASSERT_EQ(out.departures.size(), 2u);
  for (const auto& left : out.departures) {
    EXPECT_EQ(left.why, worker_departure::rebalanced);
    EXPECT_EQ(left.detail, "sent to a peer that needs it more (tcp://10.0.0.7:5556)");
  }
}

TEST_F(fallback_test, busy_majordomo_and_stopping_workers_and_queued_work_keep_workers_here) {
  peer(7, "other", 1, 1);
  for (const char* w : {"m1", "m2", "m3"}) deliver(1, {w, "", "MDPW01", "\x01", "echo"});
  advance(2500ms);
  EXPECT_EQ(workers_here("echo"), 3u) << "Majordomo workers cannot be moved";
  EXPECT_EQ(core->counters().rebalanced_workers, 0u);
}

TEST_F(fallback_test, a_worker_holding_a_request_is_not_moved_while_it_does) {
  peer(7, "other", 1, 1);
  // Two S0/2 workers registered while the peer had its own echo workers; it loses them.
  peer(7, "echo", 2, 0);
  ready_v2("w1");
  ready_v2("w2");
  request("c", 1, "echo");
  request("c", 2, "echo");  // both busy
  peer(7, "echo", 0, 0);
  advance(2500ms);
  EXPECT_EQ(workers_here("echo"), 2u);
  EXPECT_EQ(core->counters().rebalanced_workers, 0u);
}

TEST_F(fallback_test, no_balancing_when_turned_off_or_towards_a_fallback_family) {
  reset([] {
    broker_options o;
    o.rebalance_workers = false;
    return o;
  }());
  up.clear();
  peer(7, "other", 1, 1);
  for (const char* w : {"w1", "w2", "w3", "w4"}) ready_v2(w);
  advance(2500ms);
  EXPECT_EQ(workers_here("echo"), 4u);
  reset({});
  up.clear();
  peer(7, "other", 1, 1, false, 1);  // a fallback broker: workers stay in their family
  for (const char* w : {"w1", "w2", "w3", "w4"}) ready_v2(w);
  advance(2500ms);
  EXPECT_EQ(workers_here("echo"), 4u);
}

}  // namespace
}  // namespace scale0::broker_detail
