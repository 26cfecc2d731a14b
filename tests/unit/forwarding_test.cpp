// SPDX-License-Identifier: Apache-2.0
// Forwarding in the broker core (docs/family.md, "Forwarding"): peers of the family as virtual
// workers whose credit is what they announce. Driven like the core's other tests: a fake outbox,
// a fake clock; a peer's link is socket 3 (frame 0: the link id), requests peers forward here
// arrive on socket 2.
#include <gtest/gtest.h>

#include <cstring>
#include <nlohmann/json.hpp>

#include "protocol/packing.hpp"
#include "support/forwarding_fixture.hpp"

namespace scale0::broker_detail {
namespace {

TEST_F(forwarding_test, a_local_worker_with_credit_is_preferred_and_a_peer_takes_the_rest) {
  ready("w", {"echo"});  // concurrency 1
  peer(7, "echo", 2, 2);
  request("c", 1, "echo");
  EXPECT_EQ(jobs_of("w").size(), 1u);
  EXPECT_TRUE(forwards_on(7).empty());
  request("c", 2, "echo", "second", 1500);
  const auto f = forwards_on(7);
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].service, "echo");
  EXPECT_EQ(f[0].body, strings{"second"});
  EXPECT_EQ(f[0].timeout_ms, 1500u);  // what is left of the client's deadline
  EXPECT_EQ(core->counters().forwarded_out, 1u);
}

TEST_F(forwarding_test, the_peers_reply_reaches_the_client_with_its_own_id_status_and_body) {
  peer(7, "echo", 1, 1);
  request("c", 41, "echo");
  const auto f = forwards_on(7);
  ASSERT_EQ(f.size(), 1u);
  peer_reply(7, f[0].job, 404, "no such thing", "body");
  const auto r = replies_of("c");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(as_u64(r[0][4]), 41u);
  EXPECT_EQ(as_u16(r[0][5]), 404u);
  EXPECT_EQ(r[0][6], "no such thing");
  EXPECT_EQ(r[0][7], "body");
  EXPECT_EQ(core->requests_pending(), 0u);
  // A second reply for the same job is dropped.
  peer_reply(7, f[0].job, 200, "", "again");
  EXPECT_TRUE(replies_of("c").empty());
  EXPECT_EQ(core->counters().dropped_unknown_reply, 1u);
}

TEST_F(forwarding_test, a_forward_takes_a_unit_of_credit_and_its_reply_gives_it_back) {
  peer(7, "echo", 1, 1);
  request("c", 1, "echo");
  request("c", 2, "echo");
  auto f = forwards_on(7);
  ASSERT_EQ(f.size(), 1u);  // the second waits
  EXPECT_EQ(core->queued("echo"), 1u);
  peer_reply(7, f[0].job, 200, "", "r");
  f = forwards_on(7);
  ASSERT_EQ(f.size(), 1u);  // the credit came back: the second goes
  EXPECT_EQ(core->queued("echo"), 0u);
  // A STATE resets the credit to what the peer says: none.
  core->peer_capacity(7, "echo", 1, 0, 0, false, now);
  peer_reply(7, f[0].job, 200, "", "r");  // gives one back
  request("c", 3, "echo");
  EXPECT_EQ(forwards_on(7).size(), 1u);
  request("c", 4, "echo");
  EXPECT_TRUE(forwards_on(7).empty());
}

TEST_F(forwarding_test, peers_with_credit_take_turns) {
  peer(7, "echo", 4, 4);
  peer(8, "echo", 4, 4);
  for (std::uint64_t i = 1; i <= 6; ++i) request("c", i, "echo");
  EXPECT_EQ(forwards_on(7).size(), 3u);
  EXPECT_EQ(forwards_on(8).size(), 3u);
}

TEST_F(forwarding_test, a_request_a_peer_forwarded_here_is_never_forwarded_again) {
  peer(7, "echo", 1, 5);
  forwarded_in("Lpeer", 9, "echo");
  EXPECT_TRUE(forwards_on(7).empty());
  EXPECT_EQ(core->queued("echo"), 1u);
  EXPECT_EQ(core->counters().forwarded_in, 1u);
  // A local client's request behind it still goes to the peer.
  request("c", 1, "echo");
  EXPECT_EQ(forwards_on(7).size(), 1u);
  // The local worker that comes takes the forwarded-in request; its reply goes back to the link.
  ready("w", {"echo"});
  const auto jobs = jobs_of("w");
  ASSERT_EQ(jobs.size(), 1u);
  reply("w", as_u64(jobs[0][4]));
  const auto back = out.take("Lpeer");
  ASSERT_EQ(back.size(), 1u);
  EXPECT_EQ(back[0][2].substr(0, 5), std::string("S0C2\x02"));
}

TEST_F(forwarding_test, a_forwarded_in_request_without_a_local_worker_gets_503_not_a_hop) {
  options.no_worker_timeout = 200ms;
  reset(options);
  peer(7, "echo", 3, 0);  // workers there, all busy
  forwarded_in("Lpeer", 9, "echo");
  request("c", 1, "echo");
  advance(300ms);
  const auto back = out.take("Lpeer");
  ASSERT_EQ(back.size(), 1u);  // the peer's request: no worker here
  const std::string& packed = back[0][2];
  protocol::packing::reader r(std::string_view(packed).substr(5));
  EXPECT_EQ(r.u64(), 9u);
  EXPECT_EQ(r.u16(), 503u);
  // The local client's request waits: the family has workers for it.
  EXPECT_TRUE(replies_of("c").empty());
  EXPECT_EQ(core->queued("echo"), 1u);
}

TEST_F(forwarding_test, a_peer_lost_holding_a_request_gives_502_unless_idempotent) {
  peer(7, "echo", 1, 1);
  request("c", 1, "echo");
  ASSERT_EQ(forwards_on(7).size(), 1u);
  core->peer_down(7, "lost", now);
  const auto r = replies_of("c");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(as_u16(r[0][5]), 502u);
  EXPECT_EQ(r[0][6], "peer broker lost while holding the request");
  EXPECT_EQ(core->peer_count(), 0u);
  EXPECT_EQ(core->requests_pending(), 0u);
}

TEST_F(forwarding_test, an_idempotent_request_lost_with_a_peer_goes_once_more_elsewhere) {
  peer(7, "echo", 1, 1, true);  // the peer says its workers of echo are idempotent
  peer(8, "echo", 1, 1, true);
  request("c", 1, "echo");
  auto a = forwards_on(7);
  ASSERT_EQ(a.size(), 1u);
  core->peer_down(7, "lost", now);
  auto b = forwards_on(8);
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(core->counters().redispatched, 1u);
  EXPECT_TRUE(replies_of("c").empty());
  // Lost a second time: no third attempt.
  peer(9, "echo", 1, 1, true);
  core->peer_down(8, "lost", now);
  EXPECT_TRUE(forwards_on(9).empty());
  const auto r = replies_of("c");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(as_u16(r[0][5]), 502u);
}

TEST_F(forwarding_test, this_brokers_policy_beats_what_the_peer_says) {
  options.service_policies["echo"].idempotent = false;
  reset(options);
  peer(7, "echo", 1, 1, true);
  peer(8, "echo", 1, 1, true);
  request("c", 1, "echo");
  ASSERT_EQ(forwards_on(7).size(), 1u);
  core->peer_down(7, "lost", now);
  EXPECT_TRUE(forwards_on(8).empty());
  ASSERT_EQ(replies_of("c").size(), 1u);
}

TEST_F(forwarding_test, the_deadline_stays_here_and_a_late_reply_is_dropped) {
  peer(7, "echo", 1, 1);
  request("c", 1, "echo", "x", 300);
  const auto f = forwards_on(7);
  ASSERT_EQ(f.size(), 1u);
  advance(310ms);
  auto r = replies_of("c");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(as_u16(r[0][5]), 504u);
  peer_reply(7, f[0].job, 200, "", "late");
  EXPECT_TRUE(replies_of("c").empty());
  EXPECT_EQ(core->counters().dropped_late_reply, 1u);
  EXPECT_EQ(core->requests_pending(), 0u);
}

TEST_F(forwarding_test, a_draining_peer_gets_nothing_new) {
  peer(7, "echo", 1, 5);
  core->peer_updated(7, true, "tcp://10.0.0.7:5555", "tcp://10.0.0.7:5556", now);
  request("c", 1, "echo");
  EXPECT_TRUE(forwards_on(7).empty());
  core->peer_updated(7, false, "tcp://10.0.0.7:5555", "tcp://10.0.0.7:5556", now);
  EXPECT_EQ(forwards_on(7).size(), 1u);  // the queued request goes when it takes work again
}

TEST_F(forwarding_test, a_link_that_refuses_a_forward_blocks_the_peer_until_its_next_state) {
  peer(7, "echo", 1, 5);
  out.full.insert(link_name(7));
  request("c", 1, "echo");
  EXPECT_EQ(core->queued("echo"), 1u);
  EXPECT_EQ(core->peer_count(), 1u);  // not lost: its link is busy
  out.full.clear();
  request("c", 2, "echo");
  EXPECT_TRUE(forwards_on(7).empty());  // no credit until the peer speaks again
  core->peer_capacity(7, "echo", 1, 5, 0, false, now);
  const auto f = forwards_on(7);
  ASSERT_EQ(f.size(), 2u);
  EXPECT_EQ(f[0].body, strings{"x"});
}

TEST_F(forwarding_test, a_blocked_peer_is_tried_again_even_when_its_state_does_not_change) {
  // A STATE that says the same as before is not passed on by the family: the peer must not stay
  // blocked for ever because its link was reconnecting once (found by the partition test).
  peer(7, "echo", 1, 5);
  out.full.insert(link_name(7));
  request("c", 1, "echo");
  EXPECT_TRUE(forwards_on(7).empty());
  advance(50ms);
  EXPECT_TRUE(forwards_on(7).empty());  // still refusing: blocked again
  out.full.clear();
  advance(150ms);
  EXPECT_EQ(forwards_on(7).size(), 1u);
  EXPECT_EQ(core->queued("echo"), 0u);
}

TEST_F(forwarding_test, a_service_gone_from_a_peer_is_not_forwarded_and_its_requests_wait) {
  options.no_worker_timeout = 200ms;
  reset(options);
  peer(7, "echo", 1, 1);
  core->peer_capacity(7, "echo", 0, 0, 0, false, now);
  request("c", 1, "echo");
  EXPECT_TRUE(forwards_on(7).empty());
  advance(250ms);
  const auto r = replies_of("c");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(as_u16(r[0][5]), 503u);
}

TEST_F(forwarding_test, what_this_broker_announces_is_its_own_capacity_only) {
  core->track_capacity(true);
  ready("w", {"echo"}, 2, protocol::flag_idempotent);
  peer(7, "echo", 5, 5);
  peer(7, "other", 1, 1);
  std::vector<service_capacity> changed;
  core->take_capacity_changes(changed);
  std::map<std::string, service_capacity> by_name;
  for (const auto& c : changed) by_name[std::string(c.service)] = c;
  ASSERT_TRUE(by_name.contains("echo"));
  EXPECT_EQ(by_name["echo"].workers, 1u);
  EXPECT_EQ(by_name["echo"].idle, 2u);
  EXPECT_TRUE(by_name["echo"].idempotent);
  if (by_name.contains("other")) {
    EXPECT_EQ(by_name["other"].workers, 0u);
  }
}

TEST_F(forwarding_test, mmi_and_status_know_the_familys_workers_but_list_only_local_ones) {
  peer(7, "echo", 2, 2);
  deliver(0, {"mc", "", "MDPC01", "mmi.service", "echo"});
  auto r = out.take("mc");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].back(), "200");
  request("c", 1, "echo");
  const auto status = nlohmann::json::parse(core->status_json(now));
  EXPECT_TRUE(status["workers"].empty());
  EXPECT_EQ(status["forwarded_out"], 1);
  EXPECT_EQ(status["services"][0]["family_workers"], 2);
  EXPECT_EQ(status["services"][0]["workers"], 0);
  EXPECT_NE(core->metrics_text(now).find("scale0_family_forwarded_total{direction=\"out\"} 1"),
            std::string::npos);
}

TEST_F(forwarding_test, a_majordomo_client_is_answered_in_its_own_framing) {
  peer(7, "echo", 1, 1);
  deliver(0, {"mc", "", "MDPC01", "echo", "hi"});
  const auto f = forwards_on(7);
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].body, strings{"hi"});
  peer_reply(7, f[0].job, 200, "", "HI");
  const auto r = out.take("mc");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0], (strings{"mc", "", "MDPC01", "echo", "HI"}));
}

TEST_F(forwarding_test, a_service_a_peer_announces_is_kept_while_it_does) {
  options.service_ttl = 100ms;
  options.no_worker_timeout = 100ms;
  reset(options);
  peer(7, "echo", 1, 1);
  advance(3s);
  EXPECT_EQ(core->service_count(), 1u);
  core->peer_down(7, "left", now);
  advance(3s);
  EXPECT_EQ(core->service_count(), 0u);
}

TEST_F(forwarding_test, garbage_on_a_link_or_from_an_unknown_link_is_dropped) {
  peer(7, "echo", 1, 1);
  frames junk = make({"", "S0C2\x09"});
  core->on_peer_reply(7, junk, false, now);
  frames other = make({"", "S0C2\x02"});
  core->on_peer_reply(99, other, false, now);
  EXPECT_EQ(core->counters().dropped_malformed, 2u);
  // A worker command on the peer endpoint is not served.
  deliver(peer_socket, {"Lx", "", "S0W1", "\x01", u32(1), u32(0), std::string(1, '\0'), "echo"});
  EXPECT_EQ(core->worker_count(), 0u);
  EXPECT_EQ(core->counters().dropped_malformed, 3u);
}

TEST_F(forwarding_test, shutdown_answers_forwarded_requests_and_sends_nothing_on_links) {
  peer(7, "echo", 1, 1);
  request("c", 1, "echo");
  ASSERT_EQ(forwards_on(7).size(), 1u);
  core->shutdown(now);
  EXPECT_TRUE(out.take(link_name(7)).empty());
  const auto r = replies_of("c");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(as_u16(r[0][5]), 503u);
}

// ---- drain and redirect (CHANGEBROKER / 301) ----

TEST_F(forwarding_test, a_draining_broker_hands_a_new_request_back_with_a_peers_frontend) {
  ready("w", {"echo"});
  peer(7, "echo", 1, 0);  // takes work, no credit for echo
  core->begin_drain(now);
  request("c", 5, "echo", "body");
  const auto r = replies_of("c");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(as_u64(r[0][4]), 5u);
  EXPECT_EQ(as_u16(r[0][5]), 301u);
  EXPECT_EQ(r[0][6], "tcp://10.0.0.7:5555");
  EXPECT_EQ((strings(r[0].begin() + 7, r[0].end())), (strings{"echo", "body"}));
  EXPECT_EQ(core->counters().redirected_clients, 1u);
  EXPECT_EQ(core->requests_pending(), 0u);  // not taken
}

TEST_F(forwarding_test, a_redirect_goes_to_a_peer_with_credit_for_the_service_first) {
  peer(7, "echo", 1, 0);
  peer(8, "echo", 1, 3);
  core->begin_drain(now);
  for (std::uint64_t i = 1; i <= 3; ++i) request("c", i, "echo");
  for (const auto& r : replies_of("c")) EXPECT_EQ(r[6], "tcp://10.0.0.8:5555");
}

TEST_F(forwarding_test, without_a_peer_that_takes_work_a_draining_broker_says_503) {
  peer(7, "echo", 1, 1);
  core->peer_updated(7, true, "tcp://10.0.0.7:5555", "tcp://10.0.0.7:5556", now);
  core->begin_drain(now);
  request("c", 1, "echo");
  deliver(0, {"mc", "", "MDPC01", "echo", "hi"});  // Majordomo: never redirected
  const auto r = replies_of("c");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(as_u16(r[0][5]), 503u);
  EXPECT_EQ(out.take("mc")[0][4], "503");
}

TEST_F(forwarding_test, what_a_draining_broker_holds_finishes_and_its_idle_workers_move) {
  ready("busy", {"echo"});
  ready("idle", {"echo"}, 1, 0);
  request("c", 1, "echo");  // to busy (longest waiting)
  const auto job = jobs_of("busy");
  ASSERT_EQ(job.size(), 1u);
  peer(7, "echo", 1, 0);
  core->begin_drain(now);
  // The idle worker moves at once, to the peer's backend.
  const auto moved = disconnects_of("idle");
  ASSERT_EQ(moved.size(), 1u);
  EXPECT_EQ(as_u16(moved[0][4]), 301u);
  EXPECT_EQ(moved[0][5], "tcp://10.0.0.7:5556");
  ASSERT_EQ(out.departures.size(), 1u);
  EXPECT_EQ(out.departures[0].why, worker_departure::moved);
  EXPECT_EQ(out.departures[0].detail, "moved to a peer (tcp://10.0.0.7:5556)");
  EXPECT_TRUE(disconnects_of("busy").empty());  // busy: stays
  reply("busy", as_u64(job[0][4]));
  ASSERT_EQ(replies_of("c").size(), 1u);
  EXPECT_TRUE(core->drained());
  advance(10ms);
  const auto later = disconnects_of("busy");
  ASSERT_EQ(later.size(), 1u);
  EXPECT_EQ(as_u16(later[0][4]), 301u);
  EXPECT_EQ(core->worker_count(), 0u);
  EXPECT_EQ(core->counters().redirected_workers, 2u);
  // A worker that registers now is sent on at once.
  ready("late", {"echo"});
  const auto sent_on = out.take("late");
  ASSERT_EQ(sent_on.size(), 1u);
  EXPECT_EQ(as_u16(sent_on[0][4]), 301u);
  EXPECT_EQ(core->worker_count(), 0u);
}

TEST_F(forwarding_test, a_worker_moves_to_the_peer_that_needs_its_services_most) {
  peer(7, "echo", 3, 3);                                // plenty
  core->peer_capacity(8, "echo", 0, 0, 0, false, now);  // not up yet: ignored
  peer(8, "echo", 1, 0);
  core->peer_capacity(8, "echo", 1, 0, 9, false, now);  // nine waiting there
  ready("w", {"echo"});
  core->begin_drain(now);
  const auto moved = disconnects_of("w");
  ASSERT_EQ(moved.size(), 1u);
  EXPECT_EQ(moved[0][5], "tcp://10.0.0.8:5556");
}

TEST_F(forwarding_test, queued_requests_keep_the_workers_that_can_take_them) {
  ready("w", {"echo"});
  request("c", 1, "echo");
  request("c", 2, "echo");  // queued behind it
  peer(7, "other", 1, 1);
  core->begin_drain(now);
  auto jobs = jobs_of("w");
  ASSERT_EQ(jobs.size(), 1u);
  reply("w", as_u64(jobs[0][4]));
  advance(10ms);
  jobs = jobs_of("w");
  ASSERT_EQ(jobs.size(), 1u);  // it took the queued one: not moved
  reply("w", as_u64(jobs[0][4]));
  advance(10ms);
  const auto moved = disconnects_of("w");
  ASSERT_EQ(moved.size(), 1u);
  EXPECT_EQ(as_u16(moved[0][4]), 301u);
}

TEST_F(forwarding_test, a_forward_handed_back_by_a_draining_peer_goes_elsewhere_once_more) {
  peer(7, "echo", 1, 1);
  peer(8, "echo", 1, 1);
  request("c", 1, "echo");
  auto f = forwards_on(7);
  ASSERT_EQ(f.size(), 1u);
  peer_reply(7, f[0].job, 301, "broker draining", "");
  EXPECT_TRUE(replies_of("c").empty());
  f = forwards_on(8);
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].body, strings{"x"});
  EXPECT_EQ(core->counters().handed_back, 1u);
  request("c", 2, "echo");  // peer 7 gets nothing new
  EXPECT_TRUE(forwards_on(7).empty());
  peer_reply(8, f[0].job, 200, "", "done");
  ASSERT_EQ(replies_of("c").size(), 1u);
}

TEST_F(forwarding_test, a_draining_broker_hands_a_peers_forward_back) {
  ready("w", {"echo"});
  core->begin_drain(now);
  forwarded_in("Lpeer", 9, "echo");
  const auto back = out.take("Lpeer");
  ASSERT_EQ(back.size(), 1u);
  const std::string& packed = back[0][2];
  protocol::packing::reader r(std::string_view(packed).substr(5));
  EXPECT_EQ(r.u64(), 9u);
  EXPECT_EQ(r.u16(), 301u);
}

TEST_F(forwarding_test, a_drain_settles_after_a_quiet_spell_and_workers_left_at_shutdown_move) {
  options.heartbeat_interval = 200ms;
  reset(options);
  ready("w", {"echo"});
  request("c", 1, "echo");
  ASSERT_EQ(jobs_of("w").size(), 1u);
  peer(7, "echo", 1, 0);
  core->begin_drain(now);
  EXPECT_FALSE(core->drain_settled(now));
  advance(150ms);
  request("c", 2, "echo");  // redirected: the quiet spell starts again
  advance(150ms);
  EXPECT_FALSE(core->drain_settled(now));
  advance(60ms);
  EXPECT_TRUE(core->drain_settled(now));
  // The drain timeout passed with the worker still holding its request: shutdown sends it on.
  core->shutdown(now);
  const auto d = disconnects_of("w");
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(as_u16(d[0][4]), 301u);
  EXPECT_EQ(d[0][5], "tcp://10.0.0.7:5556");
}

// ---- the configuration network ----

TEST_F(forwarding_test, a_reload_that_changes_the_tables_is_announced_and_workers_get_config) {
  deliver(1, {"w2", "",
              std::string("S0W2\x01") + u32(1) + u32(0) + std::string(1, '\0') +
                  std::string(1, '\4') + "echo"});
  ASSERT_EQ(out.take("w2").size(), 1u);  // WELCOME only: a worker that never says CONFIG gets none
  deliver(1, {"w2", "", std::string("S0W2\x08") + u64(0)});  // the library's: "I know none"
  auto first = out.take("w2");
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0][2].substr(0, 7), std::string("S0W2\x08\x00\xc8", 7));  // 200
  broker_options o = options;
  o.service_policies["echo"].request_timeout = 5000ms;
  core->reconfigure(o, now);
  EXPECT_TRUE(core->take_policy_change());
  EXPECT_FALSE(core->take_policy_change());
  EXPECT_EQ(core->policy_version(), 2u);
  EXPECT_EQ(core->policy_origin(), 42u);
  const auto pushed = out.take("w2");
  ASSERT_EQ(pushed.size(), 1u);
  frames f = make({"", pushed[0][2]});
  const auto d = protocol::decode_for_worker(f);
  ASSERT_EQ(d.kind, protocol::worker_inbound_kind::config);
  EXPECT_EQ(d.policy_version, 2u);
  EXPECT_EQ(d.status, 200u);
  const auto entries = protocol::config_services(d.list, d.count);
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].service, "echo");
  EXPECT_EQ(entries[0].request_timeout_ms, 5000u);
  // A worker that says it knows an older version gets 426 and the policy.
  deliver(1, {"w2", "", std::string("S0W2\x08") + u64(1)});
  const auto stale = out.take("w2");
  ASSERT_EQ(stale.size(), 1u);
  frames g = make({"", stale[0][2]});
  EXPECT_EQ(protocol::decode_for_worker(g).status, 426u);
  deliver(1, {"w2", "", std::string("S0W2\x08") + u64(2)});  // current: nothing
  EXPECT_TRUE(out.take("w2").empty());
}

TEST_F(forwarding_test, a_newer_family_policy_is_adopted_and_an_unrelated_reload_keeps_it) {
  std::map<std::string, service_policy, std::less<>> tables;
  tables["echo"].max_queue = 3;
  EXPECT_TRUE(core->adopt_policy(5, 7, tables, now));
  EXPECT_FALSE(core->adopt_policy(5, 7, tables, now));  // the same: not newer
  EXPECT_FALSE(core->adopt_policy(4, 99, {}, now));     // older
  EXPECT_EQ(core->policy_version(), 5u);
  EXPECT_EQ(core->policy_origin(), 7u);
  EXPECT_FALSE(core->take_policy_change());  // adopted, not ours to announce
  broker_options o = options;                // the same file as at start: its tables did not change
  o.heartbeat_interval = 500ms;
  core->reconfigure(o, now);
  EXPECT_EQ(core->service_policies().at("echo").max_queue, 3u);
  EXPECT_EQ(core->policy_version(), 5u);
  // A reload whose file changed its tables wins, with the next version.
  o.service_policies["echo"].max_queue = 9;
  core->reconfigure(o, now);
  EXPECT_EQ(core->policy_version(), 6u);
  EXPECT_EQ(core->policy_origin(), 42u);
  EXPECT_TRUE(core->take_policy_change());
  EXPECT_EQ(core->service_policies().at("echo").max_queue, 9u);
}

}  // namespace
}  // namespace scale0::broker_detail
