// SPDX-License-Identifier: Apache-2.0
// The broker core's test fixture: a fake outbox that records what the core sends, and a core on
// a fake clock with helpers that speak S0/1 for clients and workers. Shared by the core's tests.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "broker/broker_core.hpp"
#include "support/frames.hpp"

namespace scale0::broker_detail {

using namespace std::chrono_literals;
using protocol::frames;
using strings = std::vector<std::string>;

struct sent_message {
  std::uint8_t socket;
  strings parts;
};

class fake_outbox : public outbox {
 public:
  delivery send(std::uint8_t socket, frames& msg) override {
    strings parts;
    for (auto& f : msg) parts.emplace_back(protocol::view(f));
    if (unreachable.contains(parts.at(0))) return delivery::gone;
    if (full.contains(parts.at(0))) return delivery::full;
    sent.push_back({socket, std::move(parts)});
    return delivery::sent;
  }
  void event(const broker_event& e) override {
    if (e.kind == event_kind::worker_left)
      departures.push_back({std::string(e.worker), e.departure, std::string(e.detail)});
  }
  void publish(frames& msg) override {
    strings parts;
    for (auto& f : msg) parts.emplace_back(protocol::view(f));
    published.push_back(std::move(parts));
  }
  // Messages sent to `identity`, removed from the record.
  std::vector<strings> take(const std::string& identity) {
    std::vector<strings> out;
    std::erase_if(sent, [&](sent_message& m) {
      if (m.parts[0] != identity) return false;
      out.push_back(std::move(m.parts));
      return true;
    });
    return out;
  }
  // worker_left events: the worker (hex), why, and the detail in words.
  struct departure {
    std::string worker;
    worker_departure why;
    std::string detail;
  };
  std::vector<sent_message> sent;
  std::vector<strings> published;
  std::vector<departure> departures;
  std::set<std::string> unreachable;
  std::set<std::string> full;  // peers whose queue is full (not reading)
};

using scale0_test::make;

inline std::string u64(std::uint64_t v) {
  return std::string(protocol::view(protocol::u64_frame(v)));
}
inline std::string u32(std::uint32_t v) {
  return std::string(protocol::view(protocol::u32_frame(v)));
}
inline std::string u16(std::uint16_t v) {
  return std::string(protocol::view(protocol::u16_frame(v)));
}
inline std::uint64_t as_u64(const std::string& s) {
  zmq::message_t m(s.data(), s.size());
  return protocol::read_u64(m);
}
inline std::uint16_t as_u16(const std::string& s) {
  zmq::message_t m(s.data(), s.size());
  return protocol::read_u16(m);
}

class core_test : public ::testing::Test {
 protected:
  core_test() { reset({}); }

  void reset(broker_options o) {
    options = std::move(o);
    core = std::make_unique<broker_core>(options, out, 42, "tcp://127.0.0.1:5557", now);
  }

  void deliver(std::uint8_t socket, const strings& parts, bool oversized = false) {
    frames f = make(parts);
    core->on_message(socket, f, oversized, now);
  }
  void advance(std::chrono::milliseconds d) {
    // Step in small increments, as the event loop would wake.
    const auto end = now + d;
    while (now < end) {
      now = std::min(end, now + 5ms);
      core->on_tick(now);
    }
  }

  void ready(const std::string& id, const strings& services, std::uint32_t concurrency = 1,
             std::uint8_t flags = 0, std::uint32_t heartbeat_ms = 0) {
    strings parts{
        id, "", "S0W1", "\x01", u32(concurrency), u32(heartbeat_ms), std::string(1, char(flags))};
    parts.insert(parts.end(), services.begin(), services.end());
    deliver(1, parts);
  }
  void request(const std::string& client, std::uint64_t id, const std::string& service,
               const std::string& body = "x", std::uint32_t timeout_ms = 0) {
    deliver(0, {client, "", "S0C1", "\x01", u64(id), service, u32(timeout_ms), body});
  }
  void reply(const std::string& worker, std::uint64_t job, const std::string& body = "r",
             std::uint16_t code = 200) {
    deliver(1, {worker, "", "S0W1", "\x03", u64(job), u16(code), "msg", body});
  }
  void heartbeat(const std::string& worker) { deliver(1, {worker, "", "S0W1", "\x04"}); }

  // Requests received by `worker` (frames: identity "" S0W1 0x02 job service timeout body...).
  std::vector<strings> jobs_of(const std::string& worker) {
    std::vector<strings> jobs;
    for (auto& m : out.take(worker))
      if (m.size() > 3 && m[2] == "S0W1" && m[3] == "\x02") jobs.push_back(m);
    return jobs;
  }
  // Replies received by `client` (identity "" S0C1 0x02 id status message body...).
  std::vector<strings> replies_of(const std::string& client) {
    std::vector<strings> r;
    for (auto& m : out.take(client))
      if (m.size() > 3 && m[2] == "S0C1" && m[3] == "\x02") r.push_back(m);
    return r;
  }

  broker_options options;
  fake_outbox out;
  time_point now = time_point{} + 1000h;
  std::unique_ptr<broker_core> core;
};

}  // namespace scale0::broker_detail
