// SPDX-License-Identifier: Apache-2.0
// Steady state allocates nothing in the broker core: after warm-up, request → dispatch → reply
// cycles make no call to operator new (libzmq's own buffers for frames over 33 bytes are malloc'd
// by libzmq and are not the core's doing; the frames here are small). The worker core allocates
// only the job it hands to the handler.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>

#include "broker/broker_core.hpp"
#include "support/job_sink.hpp"
#include "worker/worker_core.hpp"

namespace {
std::atomic<bool> counting{false};
std::atomic<long> allocations{0};
}  // namespace

// Replacing the global allocation functions is the point here; GCC mistakes the pairing.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void* operator new(std::size_t n) {
  if (counting.load(std::memory_order_relaxed)) allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}

namespace scale0::broker_detail {
namespace {

using namespace std::chrono_literals;

void fill(frames& f, std::initializer_list<std::string_view> parts) {
  f.clear();
  for (auto p : parts) f.emplace_back(p.data(), p.size());
}

std::string be(std::uint64_t v, int width) {
  std::string s;
  for (int b = width - 1; b >= 0; --b) s += static_cast<char>(v >> (8 * b));
  return s;
}

// Request → dispatch → reply cycles with two workers, in the given framing for both sides; returns
// the allocations made after warm-up. `policy`: the service has a policy whose max-concurrency of
// 1 takes each worker out of the LRU on every request and back on every reply. `track`: the
// family's capacity tracking is on (docs/family.md), its changes taken every 1000 cycles (200 ms,
// a STATE round).
long steady_state_allocations(int version, bool policy = false, bool track = false) {
  broker_options options;
  if (policy) {
    service_policy& p = options.service_policies["echo"];
    p.max_concurrency = 1;
    p.request_timeout = std::chrono::milliseconds(5000);
    p.max_queue = 100;
    p.idempotent = true;
  }
  job_sink out;
  auto now = clock::time_point{} + 1h;
  broker_core core(options, out, 1, "tcp://127.0.0.1:5557", now);
  core.track_capacity(track);
  std::vector<service_capacity> changes;
  frames msg;
  msg.reserve(16);
  // Built before counting starts: the cycles only copy them into frames (at most 33 bytes each:
  // libzmq keeps those inline).
  const std::string ready_v1 = be(4, 4) + be(0, 4) + be(0, 1);  // concurrency 4, heartbeat 0
  const std::string ready_v2 = "S0W2\x01" + ready_v1 +
                               "\x04"
                               "echo";
  std::string request = "S0C2\x01" + be(0, 8) + be(5000, 4) +
                        "\x04"
                        "echo";
  std::string reply = "S0W2\x03" + be(0, 8) + be(200, 2) + be(0, 2);
  for (std::string_view w : {"worker-a", "worker-b"}) {
    if (version == 2) {
      fill(msg, {w, "", ready_v2});
    } else {
      fill(msg, {w, "", "S0W1", "\x01", std::string_view(ready_v1).substr(0, 4),
                 std::string_view(ready_v1).substr(4, 4), std::string_view(ready_v1).substr(8, 1),
                 "echo"});
    }
    core.on_message(1, msg, false, now);
  }
  const char timeout[] = {0, 0, 0x13, static_cast<char>(0x88)};  // 5000 ms
  auto put_u64 = [](std::string& s, std::size_t at, std::uint64_t v) {
    for (int b = 0; b < 8; ++b) s[at + b] = static_cast<char>(v >> (56 - 8 * b));
  };
  auto cycle = [&](std::uint64_t i) {
    char id[8];
    for (int b = 0; b < 8; ++b) id[b] = static_cast<char>(i >> (56 - 8 * b));
    if (version == 2) {
      put_u64(request, 5, i);
      fill(msg, {"client-1", "", request, "payload"});
    } else {
      fill(msg, {"client-1", "", "S0C1", "\x01", {id, 8}, "echo", {timeout, 4}, "payload"});
    }
    core.on_message(0, msg, false, now);
    char job[8];
    for (int b = 0; b < 8; ++b) job[b] = static_cast<char>(out.last_job >> (56 - 8 * b));
    const std::string_view worker = (i % 2) ? "worker-b" : "worker-a";
    if (version == 2) {
      put_u64(reply, 5, out.last_job);
      fill(msg, {worker, "", reply, "reply"});
    } else {
      fill(msg, {worker, "", "S0W1", "\x03", {job, 8}, {"\x00\xc8", 2}, "", "reply"});
    }
    core.on_message(1, msg, false, now);
    now += 200us;  // 12000 cycles span 2.4 s: heartbeat ticks and expiry scans included
    core.on_tick(now);
    if (track && i % 1000 == 0) {
      core.take_capacity_changes(changes);
      EXPECT_EQ(changes.size(), 1u);  // echo, however many times it changed
    }
  };
  for (std::uint64_t i = 0; i < 2000; ++i) cycle(i);  // warm-up: slots, maps, wheel grow once
  const long sent_before = out.sent;
  allocations = 0;
  counting = true;
  for (std::uint64_t i = 2000; i < 12000; ++i) cycle(i);
  counting = false;
  EXPECT_EQ(core.counters().replies, 12000u);
  EXPECT_EQ(core.counters().dropped_unknown_reply, 0u);
  EXPECT_EQ(core.counters().dropped_malformed, 0u);
  EXPECT_EQ(out.sent - sent_before, 20000);  // one request to a worker, one reply to the client
  return allocations.load();
}

// S0/2 with batches: a worker that takes them, a client that sends them; two requests per turn, so
// each turn sends one batch of two requests to the worker and one of two replies to the client.
long batched_allocations() {
  broker_options options;
  job_sink out;
  auto now = clock::time_point{} + 1h;
  broker_core core(options, out, 1, "tcp://127.0.0.1:5557", now);
  frames msg;
  msg.reserve(16);
  const std::string ready = "S0W2\x01" + be(64, 4) + be(0, 4) +
                            std::string(1, static_cast<char>(protocol::flag_batches)) +
                            "\x04"
                            "echo";
  fill(msg, {"worker-a", "", ready});
  core.on_message(1, msg, false, now);
  core.flush(now);
  std::string request = "S0C2\x01" + be(0, 8) + be(5000, 4) +
                        "\x04"
                        "echo";
  std::string reply = "S0W2\x03" + be(0, 8) + be(200, 2) + be(0, 2);
  auto put_u64 = [](std::string& s, std::size_t at, std::uint64_t v) {
    for (int b = 0; b < 8; ++b) s[at + b] = static_cast<char>(v >> (56 - 8 * b));
  };
  auto turn = [&](std::uint64_t i) {
    core.note_batched_input(true);  // as the loop does for a BATCH's entries
    for (std::uint64_t k = 0; k < 2; ++k) {
      put_u64(request, 5, 2 * i + k);
      fill(msg, {"client-1", "", request, "payload"});
      core.on_message(0, msg, false, now);
    }
    core.note_batched_input(false);
    core.flush(now);
    const std::uint64_t jobs[2] = {out.jobs[0], out.jobs[1]};
    for (std::uint64_t job : jobs) {
      put_u64(reply, 5, job);
      fill(msg, {"worker-a", "", reply, "reply"});
      core.on_message(1, msg, false, now);
    }
    core.flush(now);
    now += 200us;
    core.on_tick(now);
  };
  for (std::uint64_t i = 0; i < 2000; ++i) turn(i);
  const long sent_before = out.sent;
  const long batched_before = out.batches;
  const std::uint64_t replies_before = core.counters().replies;
  allocations = 0;
  counting = true;
  for (std::uint64_t i = 2000; i < 7000; ++i) turn(i);
  counting = false;
  EXPECT_EQ(core.counters().replies - replies_before, 10000u);
  EXPECT_EQ(core.counters().dropped_unknown_reply, 0u);
  EXPECT_EQ(out.sent - sent_before, 10000);  // per turn: one batch to a worker, one to the client
  EXPECT_EQ(out.batches - batched_before, 10000);
  return allocations.load();
}

TEST(allocation, steady_state_cycles_with_batches_allocate_nothing) {
  EXPECT_EQ(batched_allocations(), 0);
}

TEST(allocation, steady_state_request_reply_cycles_allocate_nothing) {
  EXPECT_EQ(steady_state_allocations(1), 0);
}

TEST(allocation, steady_state_cycles_in_compact_framing_allocate_nothing) {
  EXPECT_EQ(steady_state_allocations(2), 0);
}

TEST(allocation, steady_state_cycles_with_family_capacity_tracking_allocate_nothing) {
  EXPECT_EQ(steady_state_allocations(1, false, true), 0);
  EXPECT_EQ(steady_state_allocations(2, true, true), 0);
}

TEST(allocation, steady_state_cycles_under_a_service_policy_allocate_nothing) {
  EXPECT_EQ(steady_state_allocations(1, true), 0);
  EXPECT_EQ(steady_state_allocations(2, true), 0);
}

}  // namespace
}  // namespace scale0::broker_detail

namespace scale0::detail {
namespace {

using namespace std::chrono_literals;

// Takes each job as a handler thread would, and lets the core's sends go as a socket would.
class handing_io : public worker_core::io {
 public:
  void open(const std::string&) override {}
  void close() override {}
  void send(protocol::frames& msg) override {
    ++sent;
    msg.clear();
  }
  void subscribe(const std::string&) override {}
  void run_job(worker_core::queued_job&& j) override { job = std::move(j); }
  void event(const std::string&) override {}
  worker_core::queued_job job;
  long sent = 0;
};

// REQUEST → handler → REPLY cycles, with heartbeats both ways; returns the allocations made after
// warm-up.
long worker_allocations(std::uint8_t version, long cycles, bool batches = false) {
  worker_options options;
  options.services = {"echo"};
  options.concurrency = 4;
  options.protocol_version = version;
  options.batches = batches;
  handing_io io;
  auto now = std::chrono::steady_clock::time_point{} + 1h;
  worker_core core(options, {"tcp://127.0.0.1:5556"}, io);
  core.start(now);
  protocol::frames msg;
  msg.reserve(16);
  protocol::append_worker_welcome(msg, 100, 3, "tcp://*:5557", 7, version);
  core.on_broker_message(now, msg);
  const auto cycle = [&](std::uint64_t i) {
    msg.clear();
    protocol::append_worker_request(msg, i, "echo", 5000, version);
    msg.emplace_back("body", 4);
    core.on_broker_message(now, msg);
    job_result r;
    r.body = std::move(io.job.work.body);  // an echo
    core.on_result(now, io.job.epoch, io.job.id, std::move(r));
    if (i % 50 == 0) {
      msg.clear();
      protocol::append_heartbeat(msg, 7, i);
      core.on_heartbeat(now, msg);
    }
    now += 200us;  // 12000 cycles span 2.4 s: the worker's heartbeats included
    core.tick(now);
  };
  // With batches, the replies of two cycles leave together (as two results in one loop turn).
  const auto turn = [&](std::uint64_t i) {
    cycle(i);
    if (i % 2 == 1) core.flush();
  };
  for (std::uint64_t i = 0; i < 2000; ++i) turn(i);
  const long sent_before = io.sent;
  allocations = 0;
  counting = true;
  for (std::uint64_t i = 2000; i < 2000 + static_cast<std::uint64_t>(cycles); ++i) turn(i);
  counting = false;
  EXPECT_EQ(core.state(), worker_state::ready);
  EXPECT_EQ(core.batches(), batches);
  EXPECT_GT(io.sent - sent_before, batches ? cycles / 2 : cycles);  // replies, and heartbeats
  return allocations.load();
}

// The one allocation per request is the body vector of the scale0::job given to the handler (its
// frames are moved into it, not copied): as before the core was split out of worker.cpp.
TEST(allocation, worker_core_cycles_allocate_only_the_jobs_body_vector) {
  EXPECT_EQ(worker_allocations(protocol::version_1, 10000), 10000);
  EXPECT_EQ(worker_allocations(protocol::version_2, 10000), 10000);
  EXPECT_EQ(worker_allocations(protocol::version_2, 10000, true), 10000);
}

}  // namespace
}  // namespace scale0::detail
