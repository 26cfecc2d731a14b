// SPDX-License-Identifier: Apache-2.0
// The client library's failover over real sockets: a list of two "brokers", one of which takes
// requests and never answers (a ROUTER that reads and drops: a hung or partitioned broker), the
// other a real broker with an echo worker.
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <optional>
#include <thread>

#include "scale0/broker.hpp"
#include "scale0/client.hpp"
#include "scale0/error.hpp"
#include "scale0/worker.hpp"

namespace scale0 {
namespace {

using namespace std::chrono_literals;

// Accepts connections and requests, answers nothing.
class black_hole {
 public:
  black_hole() : socket_(context_, zmq::socket_type::router) {
    socket_.set(zmq::sockopt::linger, 0);
    socket_.bind("tcp://127.0.0.1:*");
    endpoint_ = socket_.get(zmq::sockopt::last_endpoint);
    thread_ = std::thread([this] {
      zmq::message_t m;
      while (!stop_) {
        zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
        zmq::poll(&item, 1, 20ms);
        while (socket_.recv(m, zmq::recv_flags::dontwait)) ++frames_;
      }
    });
  }
  ~black_hole() {
    stop_ = true;
    thread_.join();
  }
  const std::string& endpoint() const { return endpoint_; }
  std::uint64_t frames() const { return frames_; }

 private:
  zmq::context_t context_{1};
  zmq::socket_t socket_;
  std::string endpoint_;
  std::atomic<bool> stop_{false};
  std::atomic<std::uint64_t> frames_{0};
  std::thread thread_;
};

class echo_broker {
 public:
  echo_broker() : broker_(options()), thread_([this] { broker_.run(); }) {
    worker_options w;
    w.broker = broker_.endpoints().backend;
    w.services = {"echo"};
    worker_.emplace(w, [](job& j) {
      job_result r;
      r.body = std::move(j.body);
      return r;
    });
    worker_thread_ = std::thread([this] { worker_->run(); });
  }
  ~echo_broker() {
    worker_->stop();
    worker_thread_.join();
    broker_.stop();
    thread_.join();
  }
  const std::string& frontend() const { return broker_.endpoints().frontend; }

 private:
  static broker_options options() {
    broker_options o;
    o.frontend = o.backend = o.heartbeat = "tcp://127.0.0.1:*";
    o.heartbeat_interval = 1000ms;
    return o;
  }
  broker broker_;
  std::thread thread_;
  std::optional<worker> worker_;
  std::thread worker_thread_;
};

// A client on the list that happens to start on the black hole (the list is taken in random
// order): one whose PING goes unanswered.
client client_on_the_black_hole(const black_hole& hole, const echo_broker& real, bool idempotent) {
  client_options o;
  o.idempotent = idempotent;
  o.heartbeat_interval = 100ms;
  o.liveness = 3;
  o.timeout = 5000ms;
  for (int i = 0; i < 40; ++i) {
    client c(hole.endpoint() + "," + real.frontend(), o);
    const auto before = hole.frames();
    c.ping(300ms);
    if (hole.frames() > before) return c;  // its PING went into the hole
  }
  throw std::runtime_error("never started on the black hole");
}

void await_echo(const echo_broker& real) {
  client c(real.frontend());
  for (int i = 0; i < 300; ++i)
    if (c.request("mmi.service", "echo", 1000ms) == "200") return;
  FAIL() << "the echo worker never registered";
}

TEST(client_failover, idempotent_requests_move_to_the_next_broker_and_succeed) {
  black_hole hole;
  echo_broker real;
  await_echo(real);
  client c = client_on_the_black_hole(hole, real, /*idempotent=*/true);
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::uint64_t> ids;
  for (int i = 0; i < 20; ++i) ids.push_back(c.send("echo", "n" + std::to_string(i), 5000ms));
  std::map<std::uint64_t, std::string> got;
  while (got.size() < ids.size()) {
    auto r = c.receive(3000ms);
    ASSERT_TRUE(r) << "an outcome is missing";
    EXPECT_EQ(r->status, 200) << r->message;
    EXPECT_TRUE(got.emplace(r->id, r->text()).second) << "two outcomes for " << r->id;
  }
  for (std::size_t i = 0; i < ids.size(); ++i) EXPECT_EQ(got[ids[i]], "n" + std::to_string(i));
  // Lost after 3 intervals of 100 ms without an answer, then served by the real broker.
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2000ms);
  EXPECT_GT(hole.frames(), 0u);
  EXPECT_EQ(c.request("echo", "after"), "after");
}

TEST(client_failover, other_requests_on_a_lost_broker_end_in_502_and_the_next_ones_succeed) {
  black_hole hole;
  echo_broker real;
  await_echo(real);
  client c = client_on_the_black_hole(hole, real, /*idempotent=*/false);
  // The PING reached the black hole, so the connection is up: the request may have reached it.
  try {
    c.call("echo", {}, 5000ms);
    ADD_FAILURE() << "a request on a lost broker ended without an error";
  } catch (const error& e) {
    EXPECT_EQ(e.code(), status::worker_lost);
    EXPECT_NE(e.message().find("broker lost"), std::string::npos) << e.message();
  }
  EXPECT_EQ(c.request("echo", "next"), "next");
}

}  // namespace
}  // namespace scale0
