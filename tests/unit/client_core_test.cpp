// SPDX-License-Identifier: Apache-2.0
// The client library's core on a fake clock: one test per row of the client state table in
// docs/protocol.md, plus the failover rules. A fake io records what the core opens and sends.
#include "client/client_core.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/host_port.hpp"
#include "protocol/batch.hpp"
#include "scale0/error.hpp"

namespace scale0::detail {
namespace {

using namespace std::chrono_literals;
using protocol::frames;

struct sent_request {
  std::string broker;
  std::uint64_t id = 0;
  std::string service;
  std::uint32_t timeout_ms = 0;
  std::string body;
};

class fake_io : public client_core::io {
 public:
  void open(const std::string& endpoint) override {
    opened.push_back(endpoint);
    current = endpoint;
  }
  bool send(frames& msg) override {
    if (full) return false;
    frames with_identity;
    with_identity.emplace_back("id", 2);
    for (auto& f : msg) with_identity.emplace_back(f.data(), f.size());
    sent.push_back(protocol::is_batch(with_identity, 1) ? "batch" : "single");
    if (protocol::is_batch(with_identity, 1)) {  // its entries, as if sent one by one
      protocol::batch_reader r;
      EXPECT_TRUE(r.open(with_identity, 1));
      batch_sizes.push_back(r.size());
      frames entry;
      std::size_t bytes = 0;
      while (r.next(entry, bytes)) take(entry);
      return true;
    }
    take(with_identity);
    return true;
  }
  void take(frames& with_identity) {
    const auto d = protocol::decode_inbound(with_identity);
    if (d.kind == protocol::inbound_kind::client_ping) {
      ++pings;
      pinged_after.push_back(requests.size());
      return;
    }
    if (d.kind == protocol::inbound_kind::client_hello) {
      hellos.push_back(current);
      hello_flags.push_back(d.flags);
      return;
    }
    EXPECT_EQ(d.kind, protocol::inbound_kind::client_request);
    std::string body;
    for (std::size_t i = d.first; i < with_identity.size(); ++i)
      body.append(static_cast<const char*>(with_identity[i].data()), with_identity[i].size());
    requests.push_back({current, d.id, std::string(d.service), d.timeout_ms, body});
  }
  std::vector<std::string> opened;
  std::string current;
  std::vector<sent_request> requests;
  int pings = 0;
  std::vector<std::string> hellos;  // the connection each HELLO went on
  std::vector<std::uint8_t> hello_flags;
  std::vector<std::string> sent;          // "single" or "batch", per message sent
  std::vector<std::size_t> batch_sizes;   // entries per batch
  std::vector<std::size_t> pinged_after;  // requests sent before each PING
  bool full = false;
};

frames reply_frames(std::uint64_t id, std::uint16_t code, const std::string& body) {
  frames f;  // the appender writes the delimiter
  protocol::append_client_reply(f, id, code, code == 200 ? "" : "why", protocol::version_2);
  f.emplace_back(body.data(), body.size());
  return f;
}

frames pong_frames() {
  frames f;
  protocol::append_client_pong(f, protocol::version_2);
  return f;
}

frames body_of(const std::string& s) {
  frames f;
  f.emplace_back(s.data(), s.size());
  return f;
}

struct client_core_table : ::testing::Test {
  time_point t0 = time_point{} + 1000h;
  fake_io io;
  std::unique_ptr<client_core> core;

  void make(std::vector<std::string> brokers = {"tcp://a:1"}, bool idempotent = false) {
    client_core_options o;
    o.brokers = std::move(brokers);
    o.idempotent = idempotent;
    core = std::make_unique<client_core>(o, io);
    core->start(t0);
  }
  std::uint64_t call(time_point now, const std::string& body, milliseconds timeout, int retries) {
    client_core::request_options o;
    o.timeout = timeout;
    o.give_up_at = now + timeout + 250ms;
    o.retries = retries;
    o.waited = true;
    frames b = body_of(body);
    return core->send(now, "echo", b, o).value();
  }
  std::uint64_t pipeline(time_point now, const std::string& body, milliseconds timeout = 0ms) {
    client_core::request_options o;
    o.timeout = timeout;
    if (timeout > 0ms) o.give_up_at = now + timeout + 1000ms;
    frames b = body_of(body);
    return core->send(now, "echo", b, o).value();
  }
  // Time passes as the shell's loop sees it: a tick at every wake-up the core asks for.
  void tick_to(time_point end) {
    while (clock_ < end) {
      clock_ = std::min(end, std::max(core->next_wake(clock_), clock_ + 1ms));
      core->tick(clock_);
    }
  }
  time_point clock_ = t0;
  void answer(time_point now, std::uint64_t id, std::uint16_t code = 200, std::string body = "ok") {
    frames f = reply_frames(id, code, body);
    core->on_message(now, f);
  }
};

TEST_F(client_core_table, idle_request_sends_a_request_with_a_new_id) {
  make();
  EXPECT_EQ(io.opened, std::vector<std::string>{"tcp://a:1"});
  const auto a = pipeline(t0, "x", 700ms);
  const auto b = pipeline(t0, "y");
  EXPECT_NE(a, b);
  ASSERT_EQ(io.requests.size(), 2u);
  EXPECT_EQ(io.requests[0].id, a);
  EXPECT_EQ(io.requests[0].service, "echo");
  EXPECT_EQ(io.requests[0].timeout_ms, 700u);
  EXPECT_EQ(io.requests[0].body, "x");
  EXPECT_EQ(io.requests[1].timeout_ms, 0u);
  EXPECT_EQ(core->outstanding(), 2u);
}

TEST_F(client_core_table, waiting_reply_with_the_id_is_the_answer) {
  make();
  const auto id = call(t0, "x", 1000ms, 0);
  EXPECT_FALSE(core->take_call(id));
  answer(t0 + 5ms, id, 200, "pong");
  auto r = core->take_call(id);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->text(), "pong");
  EXPECT_FALSE(r->local);
  EXPECT_EQ(core->outstanding(), 0u);
  EXPECT_FALSE(core->take());  // a call's answer is not a pipelined one
}

TEST_F(client_core_table, waiting_error_reply_keeps_its_status) {
  make();
  const auto id = call(t0, "x", 1000ms, 0);
  answer(t0 + 5ms, id, 503, "");
  auto r = core->take_call(id);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 503);
  EXPECT_EQ(r->message, "why");
}

TEST_F(client_core_table, pipelined_replies_are_handed_out_in_order_of_arrival) {
  make();
  const auto a = pipeline(t0, "a");
  const auto b = pipeline(t0, "b");
  answer(t0 + 1ms, b);
  answer(t0 + 2ms, a);
  EXPECT_EQ(core->take()->id, b);
  EXPECT_EQ(core->take()->id, a);
  EXPECT_FALSE(core->take());
}

TEST_F(client_core_table, waiting_reply_with_another_id_is_discarded) {
  make();
  const auto id = call(t0, "x", 1000ms, 0);
  answer(t0 + 1ms, id + 100);
  answer(t0 + 2ms, id);
  answer(t0 + 3ms, id);  // a duplicate: the request already has its outcome
  EXPECT_TRUE(core->take_call(id));
  EXPECT_EQ(core->stale_replies(), 2u);
  EXPECT_FALSE(core->take());
}

TEST_F(client_core_table, garbage_from_the_broker_is_ignored) {
  make();
  const auto id = pipeline(t0, "x");
  frames f = body_of("not a reply");
  core->on_message(t0 + 1ms, f);
  EXPECT_FALSE(core->take());
  EXPECT_EQ(core->outstanding(), 1u);
  (void)id;
}

TEST_F(client_core_table, waiting_an_interval_of_silence_sends_a_ping_once_per_interval) {
  make();
  pipeline(t0, "x");
  core->on_connected(t0);
  tick_to(t0 + 999ms);
  EXPECT_EQ(io.pings, 0);
  EXPECT_LE(core->next_wake(t0 + 999ms), t0 + 1000ms);
  tick_to(t0 + 1000ms);
  EXPECT_EQ(io.pings, 1);
  tick_to(t0 + 1500ms);
  EXPECT_EQ(io.pings, 1);
  tick_to(t0 + 2000ms);
  EXPECT_EQ(io.pings, 2);
}

TEST_F(client_core_table, idle_client_neither_pings_nor_loses_its_broker) {
  make();
  core->on_connected(t0);
  tick_to(t0 + 1h);
  EXPECT_EQ(io.pings, 0);
  EXPECT_EQ(io.opened.size(), 1u);
  // Silence while idle does not count: the first request starts the clock again.
  pipeline(t0 + 1h, "x");
  tick_to(t0 + 1h + 2999ms);
  EXPECT_EQ(io.opened.size(), 1u);
}

TEST_F(client_core_table, waiting_a_pong_keeps_the_broker_alive) {
  make();
  pipeline(t0, "x");
  core->on_connected(t0);
  for (int i = 1; i <= 10; ++i) {
    tick_to(t0 + i * 1000ms);
    frames p = pong_frames();
    core->on_message(t0 + i * 1000ms + 1ms, p);
  }
  EXPECT_EQ(io.opened.size(), 1u);
  EXPECT_EQ(core->pongs(), 10u);
  EXPECT_EQ(core->outstanding(), 1u);
}

TEST_F(client_core_table, waiting_liveness_intervals_of_silence_fail_over_to_the_next_broker) {
  make({"tcp://a:1", "tcp://b:1"});
  const auto id = pipeline(t0, "x");
  core->on_connected(t0);
  tick_to(t0 + 2999ms);
  EXPECT_EQ(io.opened.size(), 1u);
  tick_to(t0 + 3000ms);
  EXPECT_EQ(io.opened, (std::vector<std::string>{"tcp://a:1", "tcp://b:1"}));
  EXPECT_EQ(core->broker(), "tcp://b:1");
  EXPECT_EQ(core->failovers(), 1u);
  // Not idempotent and it may have reached the lost broker: the library ends it with 502.
  auto r = core->take();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->id, id);
  EXPECT_EQ(r->status, status::worker_lost);
  EXPECT_TRUE(r->local);
  EXPECT_NE(r->message.find("broker lost"), std::string::npos);
  EXPECT_EQ(io.requests.size(), 1u);  // not sent again
}

TEST_F(client_core_table, failover_sends_an_idempotent_request_once_more_with_the_time_left) {
  make({"tcp://a:1", "tcp://b:1"}, /*idempotent=*/true);
  const auto id = pipeline(t0, "x", 10000ms);
  core->on_connected(t0);
  tick_to(t0 + 3000ms);
  ASSERT_EQ(io.requests.size(), 2u);
  EXPECT_EQ(io.requests[1].broker, "tcp://b:1");
  EXPECT_EQ(io.requests[1].id, id);
  EXPECT_EQ(io.requests[1].body, "x");
  EXPECT_EQ(io.requests[1].service, "echo");
  EXPECT_EQ(io.requests[1].timeout_ms, 7000u);
  EXPECT_FALSE(core->take());
  // Lost again: it was sent once more already, so now it ends in 502.
  core->on_connected(t0 + 3001ms);
  tick_to(t0 + 6001ms);
  auto r = core->take();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, status::worker_lost);
  EXPECT_EQ(io.opened.back(), "tcp://a:1");  // round the list
}

TEST_F(client_core_table, failover_sends_again_what_never_reached_a_broker_idempotent_or_not) {
  make({"tcp://down:1", "tcp://b:1"});
  const auto id = pipeline(t0, "x");  // the connection never completes its handshake
  tick_to(t0 + 3000ms);
  ASSERT_EQ(io.requests.size(), 2u);
  EXPECT_EQ(io.requests[1].broker, "tcp://b:1");
  EXPECT_EQ(io.requests[1].id, id);
  EXPECT_FALSE(core->take());
  core->on_connected(t0 + 3010ms);
  answer(t0 + 3020ms, id);
  EXPECT_EQ(core->take()->status, 200);
}

TEST_F(client_core_table, failover_keeps_the_order_requests_were_sent_in) {
  make({"tcp://a:1", "tcp://b:1"}, true);
  std::vector<std::uint64_t> ids;
  for (int i = 0; i < 50; ++i) ids.push_back(pipeline(t0, std::to_string(i)));
  core->on_connected(t0);
  tick_to(t0 + 3000ms);
  ASSERT_EQ(io.requests.size(), 100u);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(io.requests[50 + i].id, ids[i]);
}

TEST_F(client_core_table, failover_with_a_deadline_already_past_ends_in_504) {
  make({"tcp://a:1", "tcp://b:1"}, true);
  pipeline(t0, "x", 2000ms);  // its local deadline is 3000 ms; the broker's was 2000 ms
  core->on_connected(t0);
  tick_to(t0 + 3000ms);
  auto r = core->take();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, status::deadline);
  EXPECT_EQ(io.requests.size(), 1u);
}

TEST_F(client_core_table, failover_send_queue_full_ends_in_503) {
  make({"tcp://a:1", "tcp://b:1"}, true);
  pipeline(t0, "x");
  core->on_connected(t0);
  io.full = true;
  tick_to(t0 + 3000ms);
  auto r = core->take();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, status::unavailable);
}

TEST_F(client_core_table, send_queue_full_sends_nothing_and_keeps_the_body) {
  make();
  io.full = true;
  frames b = body_of("keep me");
  client_core::request_options o;
  EXPECT_FALSE(core->send(t0, "echo", b, o));
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(std::string(static_cast<const char*>(b[0].data()), b[0].size()), "keep me");
  EXPECT_EQ(core->outstanding(), 0u);
}

TEST_F(client_core_table, waiting_timeout_no_retries_left_is_504_from_the_library) {
  make();
  const auto id = call(t0, "x", 1000ms, 0);
  core->on_connected(t0);
  frames p = pong_frames();
  core->on_message(t0 + 1100ms, p);  // the broker answers: only slow
  tick_to(t0 + 1249ms);
  EXPECT_FALSE(core->take_call(id));
  tick_to(t0 + 1250ms);
  auto r = core->take_call(id);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, status::deadline);
  EXPECT_TRUE(r->local);
  EXPECT_EQ(io.opened.size(), 1u);  // an answering broker is kept
  answer(t0 + 1300ms, id);          // its late answer is not a second outcome
  EXPECT_FALSE(core->take_call(id));
  EXPECT_EQ(core->stale_replies(), 1u);
}

TEST_F(client_core_table, waiting_timeout_from_a_silent_broker_is_504_and_moves_on) {
  make({"tcp://a:1", "tcp://b:1"});
  const auto id = call(t0, "x", 500ms, 0);
  core->on_connected(t0);
  tick_to(t0 + 750ms);  // 750 ms of silence is less than an interval: not lost yet
  EXPECT_EQ(core->take_call(id)->status, status::deadline);
  EXPECT_EQ(io.opened.size(), 1u);
  const auto next = call(t0 + 750ms, "y", 2000ms, 0);
  tick_to(t0 + 3000ms);  // 2.25 s of silence with a PING out: a 504, and the broker is lost
  // (liveness would say so at 3.75 s; the deadline says it first)
  EXPECT_EQ(core->take_call(next)->status, status::deadline);
  EXPECT_EQ(io.opened.back(), "tcp://b:1");
}

TEST_F(client_core_table,
       waiting_timeout_retries_left_broker_answering_sends_again_on_the_same_connection) {
  make();
  const auto id = call(t0, "x", 1000ms, 2);
  core->on_connected(t0);
  frames p = pong_frames();
  core->on_message(t0 + 1000ms, p);
  tick_to(t0 + 1250ms);
  ASSERT_EQ(io.requests.size(), 2u);
  EXPECT_EQ(io.requests[1].id, id);
  EXPECT_EQ(io.requests[1].timeout_ms, 1000u);  // a whole new attempt
  EXPECT_EQ(io.requests[1].service, "echo");
  EXPECT_EQ(io.opened.size(), 1u);
  answer(t0 + 1300ms, id);
  EXPECT_EQ(core->take_call(id)->status, 200);
}

TEST_F(client_core_table,
       waiting_timeout_retries_left_broker_never_reached_sends_again_on_a_fresh_connection) {
  make();  // one broker: Lazy Pirate on a fresh connection to the same one
  const auto id = call(t0, "x", 500ms, 2);
  tick_to(t0 + 750ms);
  ASSERT_EQ(io.opened.size(), 2u);
  EXPECT_EQ(io.opened[1], "tcp://a:1");
  ASSERT_EQ(io.requests.size(), 2u);
  EXPECT_EQ(io.requests[1].id, id);
  EXPECT_EQ(io.requests[1].timeout_ms, 500u);
  tick_to(t0 + 1500ms);
  EXPECT_EQ(io.requests.size(), 3u);
  tick_to(t0 + 2250ms);  // retries exhausted
  auto r = core->take_call(id);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, status::deadline);
  EXPECT_EQ(io.requests.size(), 3u);
}

TEST_F(client_core_table, lazy_pirate_failover_resends_other_requests_only_when_they_may_be) {
  make({"tcp://a:1", "tcp://b:1"});
  const auto piped = pipeline(t0, "p");
  core->on_connected(t0);
  const auto id = call(t0, "x", 900ms, 1);
  tick_to(t0 + 1150ms);  // the call's retry; 1150 ms of silence is under two intervals
  EXPECT_EQ(io.opened.size(), 1u);
  EXPECT_EQ(io.requests.size(), 3u);
  tick_to(t0 + 2300ms);  // second timeout, no retries left: 504, and the broker is lost
  EXPECT_EQ(core->take_call(id)->status, status::deadline);
  EXPECT_EQ(io.opened.size(), 2u);
  auto r = core->take();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->id, piped);
  EXPECT_EQ(r->status, status::worker_lost);
}

TEST_F(client_core_table, waiting_a_pause_of_the_caller_is_not_silence_of_the_broker) {
  make({"tcp://a:1", "tcp://b:1"});
  pipeline(t0, "x", 30000ms);
  core->on_connected(t0);
  core->tick(t0 + 5000ms);  // the application did other work for 5 s: nobody ran the client
  EXPECT_EQ(io.opened.size(), 1u);
  EXPECT_EQ(io.pings, 1);  // asked now instead
  clock_ = t0 + 5000ms;
  tick_to(t0 + 6999ms);
  EXPECT_EQ(io.opened.size(), 1u);  // the broker has liveness - 1 more intervals to answer
  frames p = pong_frames();
  core->on_message(t0 + 6999ms, p);
  tick_to(t0 + 9998ms);
  EXPECT_EQ(io.opened.size(), 1u);
  EXPECT_EQ(core->outstanding(), 1u);
  // A broker silent after that answer is still found out, liveness intervals after it.
  tick_to(t0 + 9999ms);
  EXPECT_EQ(io.opened.size(), 2u);
}

TEST_F(client_core_table, waiting_a_loop_that_oversleeps_its_wake_up_still_finds_a_lost_broker) {
  make({"tcp://a:1", "tcp://b:1"});
  pipeline(t0, "x");
  core->on_connected(t0);
  for (int i = 1; i <= 4; ++i) core->tick(t0 + i * 1010ms);  // each poll a little late
  EXPECT_EQ(io.opened.size(), 2u);
}

TEST_F(client_core_table, waiting_connection_closed_after_a_handshake_fails_over_at_once) {
  make({"tcp://a:1", "tcp://b:1"});
  const auto id = pipeline(t0, "x");
  core->on_connected(t0);
  core->on_disconnected(t0 + 10ms);
  EXPECT_EQ(io.opened.back(), "tcp://b:1");
  auto r = core->take();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->id, id);
  EXPECT_EQ(r->status, status::worker_lost);
}

TEST_F(client_core_table, waiting_connection_closed_before_any_handshake_waits_for_liveness) {
  make({"tcp://a:1", "tcp://b:1"});
  pipeline(t0, "x");
  core->on_disconnected(t0 + 10ms);  // a refused handshake: no spinning from broker to broker
  EXPECT_EQ(io.opened.size(), 1u);
  tick_to(t0 + 3000ms);
  EXPECT_EQ(io.opened.size(), 2u);
  EXPECT_EQ(io.requests.size(), 2u);  // never reached a broker: sent to the next one
}

TEST_F(client_core_table, idle_connection_closed_changes_nothing) {
  make({"tcp://a:1", "tcp://b:1"});
  core->on_connected(t0);
  core->on_disconnected(t0 + 10ms);
  EXPECT_EQ(io.opened.size(), 1u);
}

TEST_F(client_core_table, a_message_from_the_broker_means_the_connection_is_up) {
  make({"tcp://a:1", "tcp://b:1"});
  pipeline(t0, "x");
  frames p = pong_frames();
  core->on_message(t0 + 1ms, p);  // no handshake event seen, but the broker answered
  tick_to(t0 + 3001ms);
  auto r = core->take();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, status::worker_lost);  // it may have reached it: not sent again
  EXPECT_EQ(io.requests.size(), 1u);
}

TEST_F(client_core_table, pipelined_request_with_a_timeout_gets_504_a_second_after_it) {
  make();
  const auto id = pipeline(t0, "x", 200ms);
  core->on_connected(t0);
  frames p = pong_frames();
  core->on_message(t0 + 1000ms, p);
  tick_to(t0 + 1199ms);
  EXPECT_FALSE(core->take());
  EXPECT_LE(core->next_wake(t0 + 1199ms), t0 + 1200ms);
  tick_to(t0 + 1200ms);
  auto r = core->take();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->id, id);
  EXPECT_EQ(r->status, status::deadline);
}

TEST_F(client_core_table, every_request_ends_in_exactly_one_outcome_through_failovers) {
  // A ledger: 300 requests, mixed answers, broker losses, late and duplicate replies.
  make({"tcp://a:1", "tcp://b:1", "tcp://c:1"}, false);
  std::map<std::uint64_t, int> outcomes;
  std::vector<std::uint64_t> ids;
  time_point now = t0;
  core->on_connected(now);
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 100; ++i) ids.push_back(pipeline(now, "r", i % 3 ? 0ms : 1500ms));
    for (std::size_t i = 0; i < ids.size(); i += 4) answer(now + 1ms, ids[i]);
    for (std::size_t i = 0; i < ids.size(); i += 8) answer(now + 2ms, ids[i]);  // duplicates
    now += 1ms;
    for (int step = 0; step < 40; ++step) {
      now += 100ms;
      core->tick(now);
    }
    core->on_connected(now);
    while (auto r = core->take()) ++outcomes[r->id];
  }
  EXPECT_EQ(core->outstanding(), 0u);
  EXPECT_EQ(outcomes.size(), ids.size());
  for (const auto& [id, n] : outcomes) EXPECT_EQ(n, 1) << id;
}

TEST(endpoint_list, is_split_on_commas_and_an_empty_item_refused) {
  EXPECT_EQ(split_endpoint_list("tcp://a:1"), std::vector<std::string>{"tcp://a:1"});
  EXPECT_EQ(split_endpoint_list("tcp://a:1, tcp://b:2"),
            (std::vector<std::string>{"tcp://a:1", "tcp://b:2"}));
  EXPECT_THROW(split_endpoint_list(""), error);
  EXPECT_THROW(split_endpoint_list("tcp://a:1,,tcp://b:2"), error);
  EXPECT_THROW(split_endpoint_list("tcp://a:1,"), error);
  EXPECT_THROW(split_endpoint_list(",tcp://a:1"), error);
  EXPECT_THROW(split_endpoint_list(" , "), error);
}

}  // namespace
}  // namespace scale0::detail

// ---- redirects (a draining broker of a family: 301, the request handed back) ----

namespace scale0::detail {
namespace {

struct client_redirect : client_core_table {
  // The draining broker's answer: 301, the target, then the request handed back.
  void redirect(time_point now, std::uint64_t id, const std::string& target,
                const std::string& body) {
    frames f;
    protocol::append_client_reply(f, id, status::moved, target, protocol::version_2);
    f.emplace_back("echo", 4);
    f.emplace_back(body.data(), body.size());
    core->on_message(now, f);
  }
};

TEST_F(client_redirect, a_request_handed_back_goes_to_the_target_and_gets_one_answer) {
  make({"tcp://a:1"});
  const auto id = pipeline(t0, "x", 900ms);
  redirect(t0 + 1ms, id, "tcp://b:1", "x");
  EXPECT_EQ(io.opened, (std::vector<std::string>{"tcp://a:1", "tcp://b:1"}));
  ASSERT_EQ(io.requests.size(), 2u);
  EXPECT_EQ(io.requests[1].broker, "tcp://b:1");
  EXPECT_EQ(io.requests[1].id, id);
  EXPECT_EQ(io.requests[1].service, "echo");
  EXPECT_EQ(io.requests[1].body, "x");
  EXPECT_EQ(io.requests[1].timeout_ms, 899u);  // what is left of its time
  EXPECT_FALSE(core->take());
  answer(t0 + 5ms, id, 200, "done");
  auto r = core->take();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body.size(), 1u);
  EXPECT_FALSE(core->take());
  EXPECT_EQ(core->redirects(), 1u);
  EXPECT_EQ(core->failovers(), 0u);
  EXPECT_EQ(core->broker(), "tcp://b:1");
}

TEST_F(client_redirect, the_move_waits_for_what_the_old_broker_holds_and_holds_new_requests) {
  make({"tcp://a:1"});
  const auto held_there = pipeline(t0, "1");
  const auto bounced = pipeline(t0, "2");
  redirect(t0 + 1ms, bounced, "tcp://b:1", "2");
  EXPECT_EQ(io.opened.size(), 1u);             // "1" is still at a
  const auto later = pipeline(t0 + 2ms, "3");  // held for the move
  EXPECT_EQ(io.requests.size(), 2u);
  answer(t0 + 3ms, held_there, 200, "one");  // the old broker's answer comes on the old connection
  EXPECT_EQ(io.opened.back(), "tcp://b:1");
  ASSERT_EQ(io.requests.size(), 4u);
  EXPECT_EQ(io.requests[2].id, bounced);
  EXPECT_EQ(io.requests[3].id, later);
  EXPECT_EQ(io.requests[3].broker, "tcp://b:1");
  answer(t0 + 4ms, bounced);
  answer(t0 + 4ms, later);
  int answers = 0;
  while (core->take()) ++answers;
  EXPECT_EQ(answers, 3);
  EXPECT_EQ(core->outstanding(), 0u);
}

TEST_F(client_redirect, the_old_broker_lost_while_moving_sends_everything_held_to_the_target) {
  make({"tcp://a:1", "tcp://c:1"});
  core->on_connected(t0);
  const auto at_a = pipeline(t0, "1");  // not idempotent
  const auto bounced = pipeline(t0, "2");
  redirect(t0 + 1ms, bounced, "tcp://b:1", "2");
  clock_ = t0 + 1ms;
  tick_to(t0 + 4s);                          // a says nothing more
  EXPECT_EQ(io.opened.back(), "tcp://b:1");  // the target, not the next of the list
  bool got_502 = false;
  while (auto r = core->take()) {
    EXPECT_EQ(r->id, at_a);
    got_502 = r->status == status::worker_lost && r->local;
  }
  EXPECT_TRUE(got_502);
  ASSERT_FALSE(io.requests.empty());
  EXPECT_EQ(io.requests.back().id, bounced);  // never reached a broker: sent whatever it is
  EXPECT_EQ(io.requests.back().broker, "tcp://b:1");
}

TEST_F(client_redirect, a_request_bounced_too_often_or_to_a_non_endpoint_ends_in_a_local_503) {
  make({"tcp://a:1"});
  const auto id = pipeline(t0, "x");
  redirect(t0, id, "tcp://b:1", "x");
  redirect(t0, id, "tcp://c:1", "x");
  redirect(t0, id, "tcp://d:1", "x");
  EXPECT_FALSE(core->take());
  redirect(t0, id, "tcp://e:1", "x");  // the fourth
  auto r = core->take();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, status::unavailable);
  EXPECT_TRUE(r->local);
  const auto other = pipeline(t0, "y");
  redirect(t0, other, "not an endpoint", "y");
  r = core->take();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, status::unavailable);
  EXPECT_EQ(core->outstanding(), 0u);
}

TEST_F(client_redirect, learned_endpoints_are_bounded_and_the_configured_ones_stay) {
  make({"tcp://a:1"});
  for (int i = 0; i < 100; ++i) {
    const auto id = pipeline(t0, "x");
    redirect(t0, id, "tcp://h" + std::to_string(i) + ":1", "x");
    answer(t0, id);
    (void)core->take();
  }
  EXPECT_EQ(core->broker(), "tcp://h99:1");
  EXPECT_EQ(core->redirects(), 100u);
  ASSERT_EQ(core->brokers().size(), 1u + client_core::max_learned);
  EXPECT_EQ(core->brokers().front(), "tcp://a:1");  // configured: kept
  EXPECT_EQ(core->brokers().back(), "tcp://h99:1");
  EXPECT_EQ(core->brokers()[1], "tcp://h36:1");  // the oldest learned ones made room
}

}  // namespace
}  // namespace scale0::detail

// ---- the family's WELCOME: frontends to fail over to, services that may go twice ----

namespace scale0::detail {
namespace {

struct client_welcome : client_core_table {
  void welcome(time_point now, const std::vector<std::string_view>& frontends,
               const std::vector<std::string_view>& idempotent) {
    frames f;
    protocol::append_client_welcome(f, 77, frontends, idempotent);
    core->on_message(now, f);
  }
};

TEST_F(client_welcome, every_connection_starts_with_hello) {
  make({"tcp://a:1", "tcp://b:1"});
  EXPECT_EQ(io.hellos, std::vector<std::string>{"tcp://a:1"});
  core->on_connected(t0);
  pipeline(t0, "x");
  clock_ = t0;
  tick_to(t0 + 3s);  // a is silent: the next one, with a HELLO again
  EXPECT_EQ(io.hellos, (std::vector<std::string>{"tcp://a:1", "tcp://b:1"}));
}

TEST_F(client_welcome, hello_says_the_client_takes_batches_and_asks_again_without_if_refused) {
  make({"tcp://a:1"});
  EXPECT_EQ(io.hello_flags, std::vector<std::uint8_t>{protocol::hello_batches});
  // A broker from before batches: 400 with request-id 0 to a HELLO with a flags byte.
  frames refused = reply_frames(0, status::bad_request, "");
  core->on_message(t0, refused);
  EXPECT_EQ(io.hello_flags, (std::vector<std::uint8_t>{protocol::hello_batches, 0}));
  welcome(t0, {"tcp://a:1", "tcp://b:1"}, {});
  EXPECT_EQ(core->welcomes(), 1u);
  // Once welcomed, a stray 400 with id 0 asks nothing again.
  frames stray = reply_frames(0, status::bad_request, "");
  core->on_message(t0, stray);
  EXPECT_EQ(io.hello_flags.size(), 2u);
}

TEST_F(client_welcome, one_seed_is_enough_the_family_frontends_are_where_it_fails_over) {
  make({"tcp://seed:1"});
  welcome(t0, {"tcp://seed:1", "tcp://b:1", "tcp://c:1"}, {});
  EXPECT_EQ(core->brokers(), (std::vector<std::string>{"tcp://seed:1", "tcp://b:1", "tcp://c:1"}));
  EXPECT_EQ(core->welcomes(), 1u);
  core->on_connected(t0);
  pipeline(t0, "x");
  clock_ = t0;
  tick_to(t0 + 3s);
  EXPECT_EQ(io.opened.back(), "tcp://b:1");
}

TEST_F(client_welcome, a_service_the_family_calls_idempotent_is_sent_once_more_on_failover) {
  make({"tcp://a:1", "tcp://b:1"});
  welcome(t0, {}, {"echo"});
  core->on_connected(t0);
  const auto id = pipeline(t0, "x");
  clock_ = t0;
  tick_to(t0 + 3s);
  EXPECT_FALSE(core->take());  // not 502: sent again through b
  ASSERT_EQ(io.requests.size(), 2u);
  EXPECT_EQ(io.requests[1].broker, "tcp://b:1");
  EXPECT_EQ(io.requests[1].id, id);
}

TEST_F(client_welcome, a_welcome_that_breaks_the_rules_is_ignored) {
  make({"tcp://a:1"});
  frames f;
  protocol::append_client_welcome(f, 77, {"http://nope"}, {});
  core->on_message(t0, f);
  EXPECT_EQ(core->welcomes(), 0u);
  EXPECT_EQ(core->brokers().size(), 1u);
}

// ---- hold() and flush(): a pipelined sender's requests as BATCHes ----

struct client_hold : client_welcome {
  // The broker's WELCOME, with its flags byte when the HELLO had one.
  void welcome_with(std::optional<std::uint8_t> flags) {
    frames f;
    protocol::append_client_welcome(f, 77, {}, {}, flags);
    core->on_message(t0, f);
  }
  std::vector<std::uint64_t> ids_sent() const {
    std::vector<std::uint64_t> ids;
    for (const auto& r : io.requests) ids.push_back(r.id);
    return ids;
  }
};

TEST_F(client_hold, held_requests_leave_at_flush_as_one_batch_in_order) {
  make();
  welcome_with(protocol::hello_batches);
  ASSERT_TRUE(core->batches());
  io.sent.clear();
  core->hold();
  std::vector<std::uint64_t> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(pipeline(t0, "b" + std::to_string(i), 900ms));
  EXPECT_TRUE(io.requests.empty());  // held
  core->flush();
  EXPECT_EQ(io.sent, std::vector<std::string>{"batch"});
  EXPECT_EQ(ids_sent(), ids);
  EXPECT_EQ(io.requests[3].body, "b3");
  EXPECT_EQ(io.requests[3].timeout_ms, 900u);
  // flush() ended the holding: the next request goes at once, alone.
  pipeline(t0, "now");
  EXPECT_EQ(io.sent, (std::vector<std::string>{"batch", "single"}));
  for (const auto id : ids) answer(t0, id);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(core->take()->status, 200);
}

TEST_F(client_hold, one_held_request_goes_alone) {
  make();
  welcome_with(protocol::hello_batches);
  io.sent.clear();
  core->hold();
  pipeline(t0, "x");
  core->flush();
  EXPECT_EQ(io.sent, std::vector<std::string>{"single"});
  EXPECT_EQ(io.requests.size(), 1u);
}

TEST_F(client_hold, without_the_brokers_word_requests_go_one_by_one) {
  make();
  core->hold();  // no WELCOME yet: the broker may be one from before batches
  pipeline(t0, "a");
  pipeline(t0, "b");
  EXPECT_EQ(io.requests.size(), 2u);
  welcome_with(std::nullopt);  // a WELCOME without flags: it does not take batches
  EXPECT_FALSE(core->batches());
  pipeline(t0, "c");
  EXPECT_EQ(io.requests.size(), 3u);
  EXPECT_EQ(std::count(io.sent.begin(), io.sent.end(), "batch"), 0);
}

TEST_F(client_hold, a_full_batch_goes_at_once_and_the_rest_waits_for_flush) {
  make();
  welcome_with(protocol::hello_batches);
  core->hold();
  const auto n = protocol::max_batch_entries + 10;
  for (std::size_t i = 0; i < n; ++i) pipeline(t0, "x");
  EXPECT_EQ(io.requests.size(), protocol::max_batch_entries);
  core->flush();
  EXPECT_EQ(io.batch_sizes, (std::vector<std::size_t>{protocol::max_batch_entries, 10}));
  EXPECT_EQ(io.requests.size(), n);
}

TEST_F(client_hold, a_ping_never_overtakes_a_held_request) {
  make();
  welcome_with(protocol::hello_batches);
  core->hold();
  pipeline(t0, "a");
  pipeline(t0, "b");
  core->ping(t0);
  EXPECT_EQ(io.pinged_after, std::vector<std::size_t>{2});
  EXPECT_TRUE(core->holding());  // a PING sends what is held but does not end the holding
}

TEST_F(client_hold, held_requests_the_full_queue_refuses_end_in_503_each) {
  make();
  welcome_with(protocol::hello_batches);
  core->hold();
  const auto a = pipeline(t0, "a");
  const auto b = pipeline(t0, "b");
  io.full = true;
  core->flush();
  std::set<std::uint64_t> ended;
  while (auto r = core->take()) {
    EXPECT_EQ(r->status, status::unavailable);
    EXPECT_TRUE(r->local);
    ended.insert(r->id);
  }
  EXPECT_EQ(ended, (std::set<std::uint64_t>{a, b}));
  EXPECT_EQ(core->outstanding(), 0u);
}

TEST_F(client_hold, held_requests_go_to_their_broker_before_a_failover_decides_their_fate) {
  make({"tcp://a:1", "tcp://b:1"});
  welcome_with(protocol::hello_batches);
  core->on_connected(t0);
  core->hold();
  const auto a = pipeline(t0, "a");
  const auto b = pipeline(t0, "b");
  core->on_disconnected(t0);  // a closed: what it may hold is lost (not idempotent: 502)
  ASSERT_EQ(io.requests.size(), 2u);
  EXPECT_EQ(io.requests[0].broker, "tcp://a:1");
  EXPECT_EQ(io.batch_sizes, std::vector<std::size_t>{2});
  std::set<std::uint64_t> ended;
  while (auto r = core->take()) ended.insert(r->id);
  EXPECT_EQ(ended, (std::set<std::uint64_t>{a, b}));
  EXPECT_FALSE(core->batches());  // b has not said it takes batches yet
}

}  // namespace
}  // namespace scale0::detail
