// SPDX-License-Identifier: Apache-2.0
// The worker library's core driven directly: a fake io records what it opens, sends and runs, and
// time is whatever the test says it is. No sockets, no threads, no sleeping. The tests are named
// after the rows of docs/protocol.md, "Worker state table (native worker library)".
#include "worker/worker_core.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "common/host_port.hpp"
#include "protocol/batch.hpp"
#include "scale0/error.hpp"

namespace scale0::detail {
namespace {

using namespace std::chrono_literals;
using protocol::frames;
using protocol::inbound_kind;
using time_point = worker_core::time_point;
using strings = std::vector<std::string>;

std::string sent_log(inbound_kind kind) {
  return "send " + std::to_string(static_cast<int>(kind));
}

// A message the core sent, decoded as the broker would read it.
struct sent_message {
  time_point at{};
  std::string to;  // the endpoint of the connection it went on
  inbound_kind kind = inbound_kind::drop;
  std::uint8_t version = 0;
  std::uint16_t status = 0;  // REPLY, DISCONNECT (0: none)
  std::uint64_t id = 0;      // REPLY
  std::string message;       // REPLY
  std::uint32_t concurrency = 0;
  std::uint32_t heartbeat_ms = 0;
  std::uint8_t flags = 0;
  std::string name;  // READY (S0/2)
  strings services;
  strings body;
  std::vector<const void*> body_data;  // where each body frame's bytes were: moved, not copied
};

class fake_io : public worker_core::io {
 public:
  explicit fake_io(const time_point& now) : now_(now) {}

  void open(const std::string& endpoint) override {
    EXPECT_FALSE(open_) << "opened " << endpoint << " over an open connection";
    open_ = true;
    endpoint_ = endpoint;
    opened.push_back(endpoint);
    opened_at.push_back(now_);
    log.push_back("open " + endpoint);
  }
  void close() override {
    EXPECT_TRUE(open_);
    open_ = false;
    subscribed.clear();
    log.push_back("close");
  }
  void send(frames& msg) override {
    EXPECT_TRUE(open_) << "sent on a closed connection";
    if (protocol::is_batch(msg, 0)) {  // recorded as its entries, each as if sent alone
      protocol::batch_reader r;
      EXPECT_TRUE(r.open(msg, 0));
      ++batches;
      frames entry;
      std::size_t bytes = 0;
      while (r.next(entry, bytes)) send(entry);
      return;
    }
    frames f;
    f.emplace_back("w", 1);  // the ROUTER identity the broker would see
    for (auto& m : msg) f.push_back(std::move(m));
    const protocol::inbound in = protocol::decode_inbound(f);
    sent_message s;
    s.at = now_;
    s.to = endpoint_;
    s.kind = in.kind;
    s.version = in.version;
    s.status = in.reply_status;
    s.id = in.id;
    s.message = std::string(in.message);
    s.concurrency = in.concurrency;
    s.heartbeat_ms = in.heartbeat_ms;
    s.flags = in.flags;
    s.name = std::string(in.name);
    if (in.kind == inbound_kind::worker_ready) {
      protocol::service_names names;
      const std::size_t n = protocol::ready_services(f, in, names);
      for (std::size_t i = 0; i < n; ++i) s.services.emplace_back(names[i]);
    }
    if (in.kind == inbound_kind::worker_reply) {
      for (std::size_t i = in.first; i < f.size(); ++i) {
        s.body.emplace_back(protocol::view(f[i]));
        s.body_data.push_back(f[i].data());
      }
    }
    log.push_back(sent_log(in.kind));
    sent.push_back(std::move(s));
  }
  void subscribe(const std::string& endpoint) override {
    EXPECT_TRUE(open_);
    subscribed = endpoint;
    log.push_back("subscribe " + endpoint);
  }
  void run_job(worker_core::queued_job&& job) override { jobs.push_back(std::move(job)); }
  void event(const std::string& what) override { events.push_back(what); }
  void stopping() override { ++stops; }
  int stops = 0;

  // The messages of `kind` sent, removed from the record.
  std::vector<sent_message> take(inbound_kind kind) {
    std::vector<sent_message> out;
    std::erase_if(sent, [&](sent_message& m) {
      if (m.kind != kind) return false;
      out.push_back(std::move(m));
      return true;
    });
    return out;
  }
  bool is_open() const { return open_; }

  std::vector<sent_message> sent;
  int batches = 0;  // BATCH messages sent
  std::vector<worker_core::queued_job> jobs;
  strings events;
  strings opened;
  std::vector<time_point> opened_at;
  std::string subscribed;  // the SUB's endpoint, "" when none
  strings log;

 private:
  const time_point& now_;
  bool open_ = false;
  std::string endpoint_;
};

std::string big(char c) {
  return std::string(100, c);  // above ZeroMQ's inline message size: its bytes live on the heap
}

class worker_core_test : public ::testing::Test {
 protected:
  worker_core_test() {
    options.services = {"echo", "upper"};
    options.concurrency = 4;
    options.batches = false;  // one message per reply; the batch tests turn it on
  }

  void make(const std::string& brokers = "tcp://b1:5556") {
    options.broker = brokers;
    core = std::make_unique<worker_core>(options, split_endpoint_list(brokers), io);
  }
  void start(const std::string& brokers = "tcp://b1:5556") {
    make(brokers);
    core->start(now);
  }

  // Time passes as the I/O loop would see it: a turn (tick) at every wake-up the core asks for.
  void advance(std::chrono::milliseconds d) {
    const auto end = now + d;
    while (now < end) {
      now = std::min(end, std::max(core->next_wake(now), now + 1ms));
      core->tick(now);
    }
  }
  // Time passes with the broker's PUB heartbeats arriving every `every`, as a live broker's.
  void advance_with_broker(std::chrono::milliseconds d, std::chrono::milliseconds every = 100ms,
                           std::uint64_t broker_id = 7) {
    const auto end = now + d;
    auto next_pub = now + every;
    while (now < end) {
      now = std::min({end, next_pub, std::max(core->next_wake(now), now + 1ms)});
      if (now == next_pub) {
        heartbeat(broker_id);
        next_pub += every;
      }
      core->tick(now);
    }
  }

  void deliver(frames& f) { core->on_broker_message(now, f); }
  void welcome(std::uint32_t heartbeat_ms = 100, std::uint32_t liveness = 3,
               std::uint64_t broker_id = 7, const std::string& endpoint = "tcp://*:5557",
               std::uint32_t broker_heartbeat_ms = 0) {
    frames f;
    protocol::append_worker_welcome(f, heartbeat_ms, liveness, endpoint, broker_id,
                                    options.protocol_version, broker_heartbeat_ms);
    deliver(f);
  }
  // Sends a REQUEST; returns the address of its body's bytes.
  const void* request(std::uint64_t job, std::uint32_t timeout_ms = 5000,
                      const std::string& body = big('q')) {
    frames f;
    protocol::append_worker_request(f, job, "echo", timeout_ms, options.protocol_version);
    f.emplace_back(body.data(), body.size());
    const void* data = f.back().data();
    deliver(f);
    return data;
  }
  void disconnect(std::uint16_t status = 0, const std::string& message = {}) {
    frames f;
    protocol::append_worker_disconnect(f, status, message, options.protocol_version);
    deliver(f);
  }
  void stopping() {
    frames f;
    protocol::append_worker_stopping(f, options.protocol_version);
    deliver(f);
  }
  void heartbeat(std::uint64_t broker_id = 7, std::uint64_t sequence = 1) {
    frames f;
    protocol::append_heartbeat(f, broker_id, sequence);
    core->on_heartbeat(now, f);
  }
  // The result of the job the handler was given as number `i` (in order of arrival).
  void answer(std::size_t i, const std::string& body = big('r'), std::uint16_t code = 200) {
    worker_core::queued_job& j = io.jobs.at(i);
    job_result r;
    r.status = code;
    r.message = "done";
    r.body.emplace_back(body.data(), body.size());
    core->on_result(now, j.epoch, j.id, std::move(r));
  }
  // Started and registered (WELCOME: 100 ms both ways, liveness 3), the record cleared.
  void registered(const std::string& brokers = "tcp://b1:5556") {
    start(brokers);
    welcome();
    io.sent.clear();
    io.events.clear();
    io.log.clear();
  }
  std::size_t count(inbound_kind kind) const {
    return static_cast<std::size_t>(
        std::count_if(io.sent.begin(), io.sent.end(), [&](auto& m) { return m.kind == kind; }));
  }

  worker_options options;
  time_point now = time_point{} + 1000h;
  fake_io io{now};
  std::unique_ptr<worker_core> core;
};

// ---- the rows of the table ----

TEST_F(worker_core_test, connecting_socket_open_sends_ready_registering) {
  options.idempotent = true;
  options.heartbeat_interval = 2500ms;
  start();
  EXPECT_EQ(io.opened, strings{"tcp://b1:5556"});
  auto ready = io.take(inbound_kind::worker_ready);
  ASSERT_EQ(ready.size(), 1u);
  EXPECT_EQ(ready[0].version, protocol::version_2);
  EXPECT_EQ(ready[0].concurrency, 4u);
  EXPECT_EQ(ready[0].heartbeat_ms, 2500u);
  EXPECT_EQ(ready[0].flags, protocol::flag_idempotent);
  EXPECT_EQ(ready[0].services, (strings{"echo", "upper"}));
  EXPECT_EQ(core->state(), worker_state::registering);
  EXPECT_EQ(core->epoch(), 1u);
}

TEST_F(worker_core_test, connecting_socket_open_speaks_s0_w1_when_asked) {
  options.protocol_version = protocol::version_1;
  start();
  auto ready = io.take(inbound_kind::worker_ready);
  ASSERT_EQ(ready.size(), 1u);
  EXPECT_EQ(ready[0].version, protocol::version_1);
  welcome(300, 3);  // S0/1 WELCOME: one interval for both directions
  EXPECT_EQ(core->state(), worker_state::ready);
  EXPECT_EQ(core->interval(), 300ms);
  advance_with_broker(1000ms, 300ms);
  EXPECT_EQ(core->state(), worker_state::ready);
  for (auto& hb : io.take(inbound_kind::worker_heartbeat))
    EXPECT_EQ(hb.version, protocol::version_1);
}

TEST_F(worker_core_test, registering_welcome_connects_sub_to_the_heartbeat_endpoint_ready) {
  start();
  welcome(100, 3, 7, "tcp://*:5557");
  EXPECT_EQ(core->state(), worker_state::ready);
  EXPECT_EQ(io.subscribed, "tcp://b1:5557");  // '*': the host the broker was reached at
  ASSERT_EQ(io.events.size(), 1u);
  EXPECT_EQ(io.events[0], "registered with tcp://b1:5556 (heartbeat 100 ms)");
}

TEST_F(worker_core_test, registering_welcome_watches_the_broker_at_its_own_interval) {
  start();
  welcome(1000, 3, 7, "tcp://*:5557", 100);  // S0/2: granted 1 s, the broker's PUB every 100 ms
  EXPECT_EQ(core->interval(), 1000ms);
  const auto t0 = now;
  advance(300ms);
  EXPECT_EQ(core->state(), worker_state::connecting);  // 3 x 100 ms without a word
  EXPECT_EQ(now - t0, 300ms);
  EXPECT_EQ(count(inbound_kind::worker_heartbeat), 0u);  // its own is not due before 1 s
}

TEST_F(worker_core_test, registering_welcome_keeps_a_named_heartbeat_host) {
  start();
  welcome(100, 3, 7, "tcp://10.1.2.3:5557");
  EXPECT_EQ(io.subscribed, "tcp://10.1.2.3:5557");
  EXPECT_EQ(resolve_endpoint("tcp://0.0.0.0:5557", "tcp://broker.example:5556"),
            "tcp://broker.example:5557");
  EXPECT_EQ(resolve_endpoint("ipc:///tmp/hb", "tcp://b:5556"), "ipc:///tmp/hb");
}

TEST_F(worker_core_test, registering_welcome_of_a_stopping_or_ready_worker_is_not_a_registration) {
  registered();
  welcome(100, 3, 8);  // another broker-id while ready: ignored (the PUB heartbeat tells)
  EXPECT_EQ(core->state(), worker_state::ready);
  EXPECT_TRUE(io.log.empty());
}

TEST_F(worker_core_test, ready_request_runs_the_handler) {
  registered();
  const void* body = request(11, 2500, big('a'));
  request(12);
  ASSERT_EQ(io.jobs.size(), 2u);
  const worker_core::queued_job& j = io.jobs[0];
  EXPECT_EQ(j.id, 11u);
  EXPECT_EQ(j.epoch, core->epoch());
  EXPECT_EQ(j.work.service, "echo");
  EXPECT_EQ(j.work.time_left, 2500ms);
  ASSERT_EQ(j.work.body.size(), 1u);
  EXPECT_EQ(j.work.text(), big('a'));
  EXPECT_EQ(j.work.body[0].data(), body);  // the frame was moved, not copied
  EXPECT_EQ(core->in_flight(), 2u);
  EXPECT_TRUE(io.sent.empty());
}

TEST_F(worker_core_test, registering_request_is_ignored) {
  start();
  request(1);
  EXPECT_TRUE(io.jobs.empty());
  EXPECT_EQ(core->in_flight(), 0u);
}

TEST_F(worker_core_test, ready_handler_done_sends_reply) {
  registered();
  request(5);
  const std::string body = big('z');
  job_result r;
  r.status = 201;
  r.message = "made";
  r.body.emplace_back(body.data(), body.size());
  const void* data = r.body[0].data();
  core->on_result(now, io.jobs[0].epoch, io.jobs[0].id, std::move(r));
  auto replies = io.take(inbound_kind::worker_reply);
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0].id, 5u);
  EXPECT_EQ(replies[0].status, 201);
  EXPECT_EQ(replies[0].message, "made");
  EXPECT_EQ(replies[0].body, strings{body});
  EXPECT_EQ(replies[0].body_data[0], data);  // moved, not copied
  EXPECT_EQ(core->in_flight(), 0u);
}

TEST_F(worker_core_test, ready_every_agreed_interval_sends_heartbeat) {
  registered();
  const auto t0 = now;
  advance_with_broker(1000ms);
  auto beats = io.take(inbound_kind::worker_heartbeat);
  ASSERT_EQ(beats.size(), 10u);
  for (std::size_t i = 0; i < beats.size(); ++i) EXPECT_EQ(beats[i].at - t0, 100ms * (i + 1));
  EXPECT_TRUE(io.sent.empty());
}

TEST_F(worker_core_test, ready_welcome_with_the_same_broker_id_takes_its_heartbeat_ms) {
  registered();
  advance_with_broker(50ms);
  welcome(400, 3, 7);  // lengthened: the HEARTBEAT already due in 50 ms still goes
  EXPECT_EQ(core->interval(), 400ms);
  EXPECT_EQ(core->state(), worker_state::ready);
  EXPECT_TRUE(io.subscribed == "tcp://b1:5557" && io.opened.size() == 1u);
  const auto t0 = now;
  advance_with_broker(1000ms);
  auto beats = io.take(inbound_kind::worker_heartbeat);
  ASSERT_EQ(beats.size(), 3u);
  EXPECT_EQ(beats[0].at - t0, 50ms);
  EXPECT_EQ(beats[1].at - t0, 450ms);
  EXPECT_EQ(beats[2].at - t0, 850ms);
  welcome(40, 3, 7);  // shortened: the next one within the new interval
  const auto t1 = now;
  advance_with_broker(100ms);
  beats = io.take(inbound_kind::worker_heartbeat);
  ASSERT_FALSE(beats.empty());
  EXPECT_EQ(beats[0].at - t1, 40ms);
}

TEST_F(worker_core_test, ready_disconnect_from_broker_closes_and_registers_again) {
  registered();
  disconnect(400, "unknown worker");
  EXPECT_EQ(io.log, (strings{"close", "open tcp://b1:5556", sent_log(inbound_kind::worker_ready)}));
  EXPECT_EQ(core->state(), worker_state::registering);
  EXPECT_EQ(core->epoch(), 2u);
  ASSERT_EQ(io.events.size(), 1u);
  EXPECT_EQ(io.events[0], "broker sent DISCONNECT 400 unknown worker; registering again");
  EXPECT_EQ(io.opened_at.back(), now);  // at once: no backoff
}

TEST_F(worker_core_test, ready_new_broker_id_closes_and_registers_again) {
  registered();
  heartbeat(7);
  EXPECT_EQ(core->state(), worker_state::ready);
  heartbeat(8);  // the broker restarted
  EXPECT_EQ(core->state(), worker_state::registering);
  EXPECT_EQ(io.log, (strings{"close", "open tcp://b1:5556", sent_log(inbound_kind::worker_ready)}));
  EXPECT_EQ(io.events, strings{"broker restarted; registering again"});
  welcome(100, 3, 8);
  EXPECT_EQ(core->state(), worker_state::ready);
}

TEST_F(worker_core_test, ready_disconnect_503_or_403_closes_and_waits_backoff) {
  options.reconnect_min = 1000ms;
  options.reconnect_max = 4000ms;
  registered();
  for (std::uint16_t code : {status::unavailable, status::forbidden}) {
    io.sent.clear();
    io.events.clear();
    disconnect(code, "going away");
    EXPECT_EQ(core->state(), worker_state::connecting);
    EXPECT_FALSE(io.is_open());
    auto bye = io.take(inbound_kind::worker_disconnect);
    ASSERT_EQ(bye.size(), 1u);
    EXPECT_EQ(bye[0].status, status::no_content);  // it holds nothing
    ASSERT_EQ(io.events.size(), 1u);
    EXPECT_EQ(io.events[0], "lost broker (broker sent DISCONNECT " + std::to_string(code) +
                                " going away); reconnecting in 1000 ms");
    const auto lost = now;
    const std::size_t opened = io.opened.size();
    advance(999ms);
    EXPECT_EQ(io.opened.size(), opened);
    advance(1ms);
    ASSERT_EQ(io.opened.size(), opened + 1);
    EXPECT_EQ(io.opened_at.back() - lost, 1000ms);
    EXPECT_EQ(core->state(), worker_state::registering);
    welcome();  // registered again: the next loss waits reconnect_min again
  }
}

TEST_F(worker_core_test, ready_disconnect_301_moves_to_the_endpoint_given_at_once) {
  registered("tcp://b1:5556,tcp://b2:5556");
  disconnect(status::moved, "tcp://b3:5556");
  EXPECT_EQ(io.log, (strings{"close", "open tcp://b3:5556", sent_log(inbound_kind::worker_ready)}));
  EXPECT_EQ(io.opened_at.back(), now);  // at once
  EXPECT_EQ(core->state(), worker_state::registering);
  EXPECT_EQ(core->endpoint(), "tcp://b3:5556");
  EXPECT_EQ(core->moves(), 1u);
  ASSERT_EQ(io.events.size(), 1u);
  EXPECT_EQ(io.events[0], "broker sent DISCONNECT 301 tcp://b3:5556; moving to tcp://b3:5556");
  welcome();
  EXPECT_EQ(core->state(), worker_state::ready);
  // Sent back to a broker of its list: that one, no new entry.
  io.log.clear();
  disconnect(status::moved, "tcp://b1:5556");
  EXPECT_EQ(core->endpoint(), "tcp://b1:5556");
  EXPECT_EQ(io.log, (strings{"close", "open tcp://b1:5556", sent_log(inbound_kind::worker_ready)}));
}

TEST_F(worker_core_test, connecting_ready_carries_the_workers_name) {
  options.name = "host-1:42";
  start();
  auto ready = io.take(inbound_kind::worker_ready);
  ASSERT_EQ(ready.size(), 1u);
  EXPECT_EQ(ready[0].name, "host-1:42");
  EXPECT_EQ(ready[0].flags, 0u);
  // every READY: after a DISCONNECT too
  welcome();
  disconnect();
  ready = io.take(inbound_kind::worker_ready);
  ASSERT_FALSE(ready.empty());
  EXPECT_EQ(ready.back().name, "host-1:42");
}

TEST_F(worker_core_test, connecting_s0_1_ready_has_no_name) {
  options.name = "host-1:42";
  options.protocol_version = protocol::version_1;
  start();
  auto ready = io.take(inbound_kind::worker_ready);
  ASSERT_EQ(ready.size(), 1u);
  EXPECT_EQ(ready[0].version, protocol::version_1);
  EXPECT_EQ(ready[0].name, "");
  EXPECT_EQ(ready[0].services, (strings{"echo", "upper"}));
}

TEST_F(worker_core_test, ready_disconnect_301_the_ready_after_a_move_says_so_and_only_that_one) {
  registered("tcp://b1:5556,tcp://b2:5556");
  io.take(inbound_kind::worker_ready);
  disconnect(status::moved, "tcp://b3:5556");
  auto ready = io.take(inbound_kind::worker_ready);
  ASSERT_EQ(ready.size(), 1u);
  EXPECT_EQ(ready[0].flags, protocol::flag_moved);
  // Not answered: the next broker of the list gets a READY without the flag.
  advance(3100ms);
  ready = io.take(inbound_kind::worker_ready);
  ASSERT_FALSE(ready.empty());
  EXPECT_EQ(ready.back().flags, 0u);
  EXPECT_NE(ready.back().to, "tcp://b3:5556");
}

TEST_F(worker_core_test,
       ready_disconnect_301_to_something_that_is_not_an_endpoint_is_a_lost_broker) {
  options.reconnect_min = 1000ms;
  registered();
  disconnect(status::moved, "http://elsewhere");
  EXPECT_EQ(core->state(), worker_state::connecting);
  EXPECT_EQ(core->endpoint(), "tcp://b1:5556");
  EXPECT_EQ(core->moves(), 0u);
  advance(1000ms);
  welcome();
  disconnect(status::moved, std::string("tcp://a\nb:1"));
  EXPECT_EQ(core->state(), worker_state::connecting);
  EXPECT_EQ(core->moves(), 0u);
}

TEST_F(worker_core_test, registering_disconnect_closes_and_waits_backoff) {
  options.reconnect_min = 1000ms;
  options.reconnect_max = 4000ms;
  start();
  // Refused again and again: the wait doubles up to reconnect_max.
  std::vector<std::chrono::milliseconds> waits;
  for (int i = 0; i < 4; ++i) {
    disconnect(403, "key not allowed");
    EXPECT_EQ(core->state(), worker_state::connecting);
    const auto lost = now;
    const std::size_t opened = io.opened.size();
    while (io.opened.size() == opened) advance(1ms);
    waits.push_back(std::chrono::duration_cast<std::chrono::milliseconds>(now - lost));
  }
  EXPECT_EQ(waits, (std::vector<std::chrono::milliseconds>{1000ms, 2000ms, 4000ms, 4000ms}));
  welcome();  // registered: the backoff starts over
  disconnect(503);
  const auto lost = now;
  advance(1000ms);
  EXPECT_EQ(io.opened_at.back() - lost, 1000ms);
}

TEST_F(worker_core_test, ready_liveness_intervals_of_silence_requests_held_keeps_the_connection) {
  registered();
  request(1, 2000);
  const auto t0 = now;
  advance(1900ms);  // the broker is silent: 300 ms of liveness long gone
  EXPECT_EQ(core->state(), worker_state::ready);
  EXPECT_TRUE(io.is_open());
  EXPECT_EQ(
      io.events,
      strings{"broker silent; holding 1 requests on this connection until they are answered"});
  EXPECT_GT(count(inbound_kind::worker_heartbeat), 0u);  // still heartbeating on it
  // Answered: the reply goes out on this connection, then the silent broker is given up.
  answer(0);
  EXPECT_EQ(io.take(inbound_kind::worker_reply).size(), 1u);
  advance(1ms);
  EXPECT_EQ(core->state(), worker_state::connecting);
  auto bye = io.take(inbound_kind::worker_disconnect);
  ASSERT_EQ(bye.size(), 1u);
  EXPECT_EQ(bye[0].status, status::no_content);
  EXPECT_LT(now - t0, 2000ms);
}

TEST_F(worker_core_test, ready_liveness_intervals_of_silence_past_the_held_deadlines_gives_up) {
  registered();
  request(1, 1000);
  const auto t0 = now;
  advance(999ms);
  EXPECT_EQ(core->state(), worker_state::ready);
  advance(1ms);  // the request's deadline: its client has 504, nothing to keep
  EXPECT_EQ(core->state(), worker_state::connecting);
  EXPECT_EQ(now - t0, 1000ms);
  auto bye = io.take(inbound_kind::worker_disconnect);
  ASSERT_EQ(bye.size(), 1u);
  EXPECT_EQ(bye[0].status, 0);  // it still holds one: no 204
}

TEST_F(worker_core_test, ready_liveness_intervals_of_silence_nothing_held_disconnect_204_backoff) {
  registered();
  const auto t0 = now;
  advance(299ms);
  EXPECT_EQ(core->state(), worker_state::ready);
  advance(1ms);  // 3 x 100 ms without a word from the broker
  EXPECT_EQ(core->state(), worker_state::connecting);
  EXPECT_EQ(now - t0, 300ms);
  auto bye = io.take(inbound_kind::worker_disconnect);
  ASSERT_EQ(bye.size(), 1u);
  EXPECT_EQ(bye[0].status, status::no_content);
  EXPECT_EQ(io.log.back(), "close");
  EXPECT_EQ(io.events.back(),
            "lost broker (no heartbeat for 3 intervals); reconnecting in 1000 ms");
  advance(1000ms);
  EXPECT_EQ(io.opened.size(), 2u);
  EXPECT_EQ(core->state(), worker_state::registering);
}

TEST_F(worker_core_test, ready_requests_of_an_earlier_connection_are_not_held_on_this_one) {
  registered();
  request(1, 60000);  // still with its handler when the broker restarts
  disconnect();       // the broker does not know us: register again at once
  welcome();
  io.sent.clear();
  io.events.clear();
  // Its reply would go to nobody: a silent broker is not waited for on its account, and
  // this connection says it holds nothing (204), so the broker may re-queue what it sent.
  advance(300ms);
  EXPECT_EQ(core->state(), worker_state::connecting);
  auto bye = io.take(inbound_kind::worker_disconnect);
  ASSERT_EQ(bye.size(), 1u);
  EXPECT_EQ(bye[0].status, status::no_content);
  answer(0);  // finishes later: dropped
  EXPECT_TRUE(io.take(inbound_kind::worker_reply).empty());
}

TEST_F(worker_core_test, ready_the_held_deadline_is_forgotten_once_nothing_is_held) {
  registered();
  request(1, 60000);
  answer(0);  // answered at once: its 60 s deadline must not keep a later silence waiting
  advance_with_broker(200ms);
  request(2, 500);
  const auto t0 = now;
  advance(500ms);  // silent broker; request 2's deadline passes
  EXPECT_EQ(core->state(), worker_state::connecting);
  EXPECT_EQ(now - t0, 500ms);
}

// For service managers: STOPPING=1 once, when a stop begins.
TEST_F(worker_core_test, any_the_stop_is_told_to_the_shell_once) {
  registered();
  EXPECT_EQ(io.stops, 0);
  core->stop(now);
  core->stop(now);
  EXPECT_EQ(io.stops, 1);
}

TEST_F(worker_core_test, stopping_after_the_broker_was_lost_does_not_wait_for_what_it_held) {
  registered();
  request(1, 1000);
  advance(1000ms);  // silent broker, the request's deadline passed: given up
  ASSERT_EQ(core->state(), worker_state::connecting);
  core->stop(now);
  advance(1ms);
  EXPECT_EQ(core->state(), worker_state::stopped);  // not after the 30 s drain timeout
}

TEST_F(worker_core_test, stopping_does_not_wait_for_requests_of_an_earlier_connection) {
  registered();
  request(1, 60000);
  disconnect();
  welcome();
  core->stop(now);
  stopping();
  advance(1ms);
  EXPECT_EQ(core->state(), worker_state::stopped);
}

TEST_F(worker_core_test, ready_liveness_is_refreshed_by_any_broker_message) {
  registered();
  for (int i = 0; i < 10; ++i) {
    advance(250ms);
    if (i % 2)
      heartbeat();
    else
      request(100 + static_cast<std::uint64_t>(i), 1);  // a job also says the broker lives
  }
  EXPECT_EQ(core->state(), worker_state::ready);
  EXPECT_EQ(io.opened.size(), 1u);
}

TEST_F(worker_core_test, registering_liveness_intervals_of_silence_disconnect_204_backoff) {
  start();
  advance(2999ms);  // registration not answered: 3 x max(asked interval, 1 s)
  EXPECT_EQ(core->state(), worker_state::registering);
  advance(1ms);
  EXPECT_EQ(core->state(), worker_state::connecting);
  auto bye = io.take(inbound_kind::worker_disconnect);
  ASSERT_EQ(bye.size(), 1u);
  EXPECT_EQ(bye[0].status, status::no_content);
  advance(1000ms);
  EXPECT_EQ(io.opened.size(), 2u);
}

TEST_F(worker_core_test, registering_liveness_waits_for_a_longer_asked_interval) {
  options.heartbeat_interval = 2000ms;
  start();
  advance(5999ms);
  EXPECT_EQ(core->state(), worker_state::registering);
  advance(1ms);
  EXPECT_EQ(core->state(), worker_state::connecting);
}

TEST_F(worker_core_test, any_own_process_stopped_reads_the_sockets_for_one_broker_interval) {
  registered();
  advance_with_broker(500ms);
  // The process is stopped for 5 s: the loop's next turn is far past the broker's liveness.
  now += 5000ms;
  core->tick(now);
  EXPECT_EQ(core->state(), worker_state::ready);  // one broker interval (100 ms) to read first
  EXPECT_TRUE(io.events.empty());
  heartbeat();  // what the broker sent meanwhile
  advance_with_broker(1000ms);
  EXPECT_EQ(core->state(), worker_state::ready);
  EXPECT_EQ(io.opened.size(), 1u);

  // Stopped again, and this time the broker really is gone: lost one interval later.
  now += 5000ms;
  core->tick(now);
  EXPECT_EQ(core->state(), worker_state::ready);
  const auto t0 = now;
  advance(100ms);
  EXPECT_EQ(core->state(), worker_state::connecting);
  EXPECT_EQ(now - t0, 100ms);
}

TEST_F(worker_core_test, any_own_process_stopped_then_told_disconnect_registers_again_at_once) {
  registered();
  now += 2000ms;  // frozen; the broker expired us meanwhile
  core->tick(now);
  disconnect(400, "unknown worker");
  EXPECT_EQ(core->state(), worker_state::registering);
  EXPECT_EQ(io.opened_at.back(), now);
  for (const auto& e : io.events) EXPECT_EQ(e.find("lost broker"), std::string::npos) << e;
}

TEST_F(worker_core_test, ready_stop_sends_stopping_stopping) {
  registered();
  core->stop(now);
  EXPECT_EQ(core->state(), worker_state::stopping);
  EXPECT_EQ(io.take(inbound_kind::worker_stopping).size(), 1u);
  core->stop(now);  // once only
  EXPECT_TRUE(io.sent.empty());
  core->tick(now);
  EXPECT_FALSE(core->finished());  // waits for the broker's answer
}

TEST_F(worker_core_test, stopping_stopping_answer_and_nothing_in_flight_disconnect_close_stopped) {
  registered();
  core->stop(now);
  advance_with_broker(50ms);
  stopping();
  EXPECT_FALSE(core->finished());
  core->tick(now);  // the loop's next turn
  EXPECT_TRUE(core->finished());
  EXPECT_EQ(core->state(), worker_state::stopped);
  auto bye = io.take(inbound_kind::worker_disconnect);
  ASSERT_EQ(bye.size(), 1u);
  EXPECT_EQ(bye[0].status, 0);
  EXPECT_EQ(io.log.back(), "close");
  EXPECT_FALSE(io.is_open());
}

TEST_F(worker_core_test, stopping_requests_held_are_finished_before_disconnect) {
  registered();
  request(1);
  request(2);
  core->stop(now);
  stopping();
  request(3);  // sent before the broker read STOPPING: taken too
  advance_with_broker(500ms);
  EXPECT_FALSE(core->finished());
  EXPECT_GT(count(inbound_kind::worker_heartbeat), 0u);  // still heartbeating while it drains
  answer(0);
  answer(2);
  advance(1ms);
  EXPECT_FALSE(core->finished());
  answer(1);
  EXPECT_EQ(io.take(inbound_kind::worker_reply).size(), 3u);
  advance(1ms);
  EXPECT_TRUE(core->finished());
  EXPECT_EQ(io.take(inbound_kind::worker_disconnect).size(), 1u);
}

TEST_F(worker_core_test, stopping_no_stopping_answer_within_liveness_counts_as_answered) {
  registered();
  core->stop(now);
  const auto t0 = now;
  advance(299ms);
  EXPECT_FALSE(core->finished());
  advance(1ms);  // liveness x the broker's interval
  EXPECT_TRUE(core->finished());
  EXPECT_EQ(now - t0, 300ms);
  EXPECT_EQ(io.take(inbound_kind::worker_disconnect).size(), 1u);
}

TEST_F(worker_core_test, stopping_drain_timeout_disconnect_with_requests_still_held) {
  options.drain_timeout = 2000ms;
  registered();
  request(1, 60000);
  core->stop(now);
  stopping();
  const auto t0 = now;
  advance_with_broker(1999ms);
  EXPECT_FALSE(core->finished());
  advance(1ms);
  EXPECT_TRUE(core->finished());
  EXPECT_EQ(now - t0, 2000ms);
  EXPECT_EQ(io.events.back(), "drain timeout: 1 requests still in flight");
  EXPECT_EQ(io.take(inbound_kind::worker_disconnect).size(), 1u);
  EXPECT_FALSE(io.is_open());
}

TEST_F(worker_core_test, registering_stop_disconnect_close_stopped) {
  start();
  io.sent.clear();
  core->stop(now);
  auto bye = io.take(inbound_kind::worker_disconnect);
  ASSERT_EQ(bye.size(), 1u);  // the broker may already have it on its books
  EXPECT_FALSE(io.is_open());
  core->tick(now);
  EXPECT_TRUE(core->finished());
}

TEST_F(worker_core_test, connecting_stop_stopped) {
  registered();
  disconnect(503);
  ASSERT_EQ(core->state(), worker_state::connecting);
  io.sent.clear();
  core->stop(now);
  core->tick(now);
  EXPECT_TRUE(core->finished());
  EXPECT_TRUE(io.sent.empty());  // nothing open to say it on
  advance(5000ms);
  EXPECT_EQ(io.opened.size(), 1u);
}

TEST_F(worker_core_test, stopping_disconnect_from_broker_closes_and_drops_the_results) {
  registered();
  request(1);
  core->stop(now);
  disconnect(503, "draining");
  EXPECT_FALSE(io.is_open());
  EXPECT_EQ(core->state(), worker_state::stopping);
  core->tick(now);
  EXPECT_FALSE(core->finished());  // still runs what it holds
  answer(0);
  EXPECT_TRUE(io.take(inbound_kind::worker_reply).empty());
  core->tick(now);
  EXPECT_TRUE(core->finished());
  EXPECT_EQ(io.opened.size(), 1u);
}

// ---- epochs ----

TEST_F(worker_core_test, a_result_for_an_older_connection_is_dropped) {
  registered();
  request(1);
  const std::uint64_t first = core->epoch();
  disconnect();  // the broker forgot us: a new connection
  welcome();
  ASSERT_NE(core->epoch(), first);
  request(2);
  io.sent.clear();
  answer(0);  // for the broker that sent it, on a connection that is gone
  EXPECT_TRUE(io.sent.empty());
  EXPECT_EQ(core->in_flight(), 1u);
  answer(1);
  auto replies = io.take(inbound_kind::worker_reply);
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0].id, 2u);
  EXPECT_EQ(core->in_flight(), 0u);
}

// ---- broker lists ----

TEST_F(worker_core_test, broker_list_connecting_socket_open_sends_ready_to_the_first) {
  start("tcp://a:5556,tcp://b:5556,tcp://c:5556");
  EXPECT_EQ(io.opened, strings{"tcp://a:5556"});
  EXPECT_EQ(core->endpoint(), "tcp://a:5556");
  welcome();
  EXPECT_EQ(io.events, strings{"registered with tcp://a:5556 (heartbeat 100 ms)"});
}

TEST_F(worker_core_test, broker_list_ready_silence_moves_to_the_next_broker_at_once) {
  registered("tcp://a:5556,tcp://b:5556");
  advance(300ms);
  io.take(inbound_kind::worker_heartbeat);
  ASSERT_EQ(io.opened, (strings{"tcp://a:5556", "tcp://b:5556"}));
  EXPECT_EQ(io.opened_at[1], now);  // no backoff
  EXPECT_EQ(core->state(), worker_state::registering);
  ASSERT_EQ(io.sent.size(), 2u);
  EXPECT_EQ(io.sent[0].kind, inbound_kind::worker_disconnect);  // the 204 goes to the lost one
  EXPECT_EQ(io.sent[0].to, "tcp://a:5556");
  EXPECT_EQ(io.sent[0].status, status::no_content);
  EXPECT_EQ(io.sent[1].kind, inbound_kind::worker_ready);
  EXPECT_EQ(io.sent[1].to, "tcp://b:5556");
  EXPECT_EQ(io.events, strings{"lost broker tcp://a:5556 (no heartbeat for 3 intervals); trying "
                               "tcp://b:5556 now"});
  welcome(100, 3, 9, "tcp://0.0.0.0:6000");
  EXPECT_EQ(core->state(), worker_state::ready);
  EXPECT_EQ(io.subscribed, "tcp://b:6000");  // resolved against the broker it is connected to
}

TEST_F(worker_core_test, broker_list_registering_not_answered_moves_to_the_next_at_once) {
  start("tcp://a:5556,tcp://b:5556");
  advance(3000ms);
  EXPECT_EQ(io.opened, (strings{"tcp://a:5556", "tcp://b:5556"}));
  EXPECT_EQ(io.opened_at[1] - io.opened_at[0], 3000ms);
  EXPECT_EQ(core->state(), worker_state::registering);
}

TEST_F(worker_core_test, broker_list_disconnect_503_or_403_moves_to_the_next_at_once) {
  registered("tcp://a:5556,tcp://b:5556,tcp://c:5556");
  disconnect(503, "draining");
  EXPECT_EQ(core->endpoint(), "tcp://b:5556");
  EXPECT_EQ(io.opened_at.back(), now);
  disconnect(403, "key removed");  // refused while registering: next again
  EXPECT_EQ(core->endpoint(), "tcp://c:5556");
  EXPECT_EQ(io.opened, (strings{"tcp://a:5556", "tcp://b:5556", "tcp://c:5556"}));
  EXPECT_EQ(io.opened_at.back(), now);
}

TEST_F(worker_core_test, broker_list_ready_disconnect_registers_again_with_the_same_broker) {
  registered("tcp://a:5556,tcp://b:5556");
  disconnect(400, "unknown worker");
  heartbeat(8);
  EXPECT_EQ(io.opened, (strings{"tcp://a:5556", "tcp://a:5556"}));
}

TEST_F(worker_core_test, broker_list_backoff_only_after_a_whole_round_failed) {
  options.reconnect_min = 1000ms;
  options.reconnect_max = 2000ms;
  start("tcp://a:5556,tcp://b:5556,tcp://c:5556");
  const auto t0 = now;
  advance(20000ms);  // nobody answers
  const std::vector<std::pair<std::string, std::chrono::milliseconds>> expected = {
      {"tcp://a:5556", 0ms},     {"tcp://b:5556", 3000ms},
      {"tcp://c:5556", 6000ms},  {"tcp://a:5556", 10000ms},  // a round failed: 1 s of backoff
      {"tcp://b:5556", 13000ms}, {"tcp://c:5556", 16000ms},
  };
  ASSERT_GE(io.opened.size(), expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(io.opened[i], expected[i].first) << i;
    EXPECT_EQ(io.opened_at[i] - t0, expected[i].second) << i;
  }
  EXPECT_EQ(io.events[2],
            "lost broker tcp://c:5556 (no heartbeat for 3 intervals); no broker of the list "
            "answered: reconnecting to tcp://a:5556 in 1000 ms");
  advance(6000ms);  // the second round fails too: 2 s (doubled, at reconnect_max)
  ASSERT_GE(io.opened.size(), 7u);
  EXPECT_EQ(io.opened[6], "tcp://a:5556");
  EXPECT_EQ(io.opened_at[6] - t0, 21000ms);
}

TEST_F(worker_core_test, broker_list_backoff_and_round_reset_once_registered) {
  options.reconnect_min = 1000ms;
  start("tcp://a:5556,tcp://b:5556,tcp://c:5556");
  advance(9000ms);  // a, b and c do not answer: a round, then 1 s of backoff (the next: 2 s)
  advance(1000ms);
  ASSERT_EQ(io.opened.size(), 4u);
  EXPECT_EQ(core->endpoint(), "tcp://a:5556");
  advance(3000ms);  // a again: on to b
  EXPECT_EQ(core->endpoint(), "tcp://b:5556");
  welcome();  // registered with b, in the middle of a round
  // Losing b starts a new round: c, then a, at once; then a backoff from reconnect_min again.
  disconnect(503);
  EXPECT_EQ(core->endpoint(), "tcp://c:5556");
  EXPECT_EQ(io.opened_at.back(), now);
  disconnect(503);
  EXPECT_EQ(core->endpoint(), "tcp://a:5556");
  EXPECT_EQ(io.opened_at.back(), now);
  disconnect(503);
  EXPECT_EQ(core->state(), worker_state::connecting);
  const auto lost = now;
  advance(1000ms);
  EXPECT_EQ(io.opened_at.back() - lost, 1000ms);
  EXPECT_EQ(io.opened.back(), "tcp://b:5556");
}

TEST_F(worker_core_test, broker_list_results_for_the_lost_broker_are_dropped) {
  registered("tcp://a:5556,tcp://b:5556");
  request(1, 100);
  advance(300ms);  // silent, and past the held request's deadline: on to b
  EXPECT_EQ(core->endpoint(), "tcp://b:5556");
  welcome();
  io.sent.clear();
  answer(0);
  EXPECT_TRUE(io.sent.empty());
  EXPECT_EQ(core->in_flight(), 0u);
}

}  // namespace
}  // namespace scale0::detail

namespace scale0::detail {
namespace {

TEST_F(worker_core_test, registered_config_is_reported_and_announced_to_the_next_broker) {
  registered("tcp://b1:5556,tcp://b2:5556");
  frames f;
  protocol::append_worker_config(f, status::ok, 4, {{"echo", 5000, 10, 2, 1}});
  deliver(f);
  EXPECT_EQ(core->policy_version(), 4u);
  ASSERT_EQ(io.events.size(), 1u);
  EXPECT_EQ(io.events[0],
            "policy version 4; echo: request-timeout 5000 ms, max-queue 10, max-concurrency 2, "
            "idempotent yes");
  io.sent.clear();
  disconnect(status::moved, "tcp://b2:5556");
  welcome();
  // It tells the new broker the version it knows (a stale one is answered 426 and CONFIG).
  ASSERT_EQ(count(inbound_kind::worker_config), 1u);
  frames stale;
  protocol::append_worker_config(stale, status::upgrade_required, 6, {});
  deliver(stale);
  EXPECT_EQ(core->policy_version(), 6u);
  EXPECT_EQ(io.events.back(), "policy version 6 (ours was stale: 426)");
}

// ---- batches (docs/protocol.md, "Batches") ----

TEST_F(worker_core_test, batches_ready_asks_for_them_in_s0_2_only) {
  options.batches = true;
  start();
  auto ready = io.take(inbound_kind::worker_ready);
  ASSERT_EQ(ready.size(), 1u);
  EXPECT_EQ(ready[0].flags, protocol::flag_batches);
}

TEST_F(worker_core_test, batches_are_not_asked_for_in_s0_1) {
  options.batches = true;
  options.protocol_version = protocol::version_1;
  start();
  auto ready = io.take(inbound_kind::worker_ready);
  ASSERT_EQ(ready.size(), 1u);
  EXPECT_EQ(ready[0].flags, 0);
}

TEST_F(worker_core_test, batches_the_replies_of_a_turn_leave_as_one_message_at_flush) {
  options.batches = true;
  registered();
  EXPECT_TRUE(core->batches());
  for (std::uint64_t job = 1; job <= 3; ++job) request(job);
  for (std::size_t i = 0; i < 3; ++i) answer(i);
  EXPECT_EQ(count(inbound_kind::worker_reply), 0u);  // held until the turn ends
  core->flush();
  auto replies = io.take(inbound_kind::worker_reply);
  ASSERT_EQ(replies.size(), 3u);
  EXPECT_EQ(io.batches, 1);
  for (std::size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(replies[i].id, i + 1);
    EXPECT_EQ(replies[i].body, (strings{big('r')}));
  }
  // One reply alone is a plain REPLY.
  request(4);
  answer(3);
  core->flush();
  EXPECT_EQ(io.take(inbound_kind::worker_reply).size(), 1u);
  EXPECT_EQ(io.batches, 1);
}

TEST_F(worker_core_test, batches_what_is_held_goes_before_any_other_message) {
  options.batches = true;
  registered();
  request(1);
  answer(0);
  core->stop(now);  // STOPPING follows the reply, never overtakes it
  ASSERT_EQ(io.log.size(), 2u);
  EXPECT_EQ(io.log[0], sent_log(inbound_kind::worker_reply));
  EXPECT_EQ(io.log[1], sent_log(inbound_kind::worker_stopping));
}

TEST_F(worker_core_test, batches_a_broker_that_refuses_the_flag_is_asked_again_without_it) {
  options.batches = true;
  start();
  io.sent.clear();
  disconnect(400, "unknown READY flags");  // what a broker from before batches answers
  auto ready = io.take(inbound_kind::worker_ready);
  ASSERT_EQ(ready.size(), 1u);
  EXPECT_EQ(ready[0].flags, 0);
  welcome();
  EXPECT_FALSE(core->batches());
  EXPECT_EQ(core->state(), worker_state::ready);
  request(1);
  answer(0);
  EXPECT_EQ(io.take(inbound_kind::worker_reply).size(), 1u);  // at once, not held
}

TEST_F(worker_core_test, batches_held_replies_for_a_lost_broker_are_not_sent_to_the_next) {
  options.batches = true;
  registered("tcp://b1:5556,tcp://b2:5556");
  request(1);
  answer(0);
  disconnect(503, "going away");  // lost: the next broker of the list
  core->flush();
  EXPECT_EQ(core->endpoint(), "tcp://b2:5556");
  for (const auto& r : io.take(inbound_kind::worker_reply)) EXPECT_EQ(r.to, "tcp://b1:5556");
}
}  // namespace
}  // namespace scale0::detail
