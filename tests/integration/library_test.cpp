// SPDX-License-Identifier: Apache-2.0
// The public libraries against an embedded broker over real loopback TCP: client (sync, pipelined,
// Lazy Pirate), worker (concurrency, errors, graceful stop, re-registration after a restart,
// failover along a broker list). The worker's protocol timing (heartbeats, liveness, backoff,
// stalls, stop deadlines) is tested on a fake clock in tests/unit/worker_core_test.cpp; these
// keep real round trips and wait on conditions, bounded.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "scale0/broker.hpp"
#include "scale0/client.hpp"
#include "scale0/error.hpp"
#include "scale0/worker.hpp"

namespace scale0 {
namespace {

using namespace std::chrono_literals;

// A broker running on its own thread, on ports the system picks (or the given ones).
class running_broker {
 public:
  explicit running_broker(broker_options o = loopback())
      : b_(std::move(o)), t_([this] { b_.run(); }) {}
  ~running_broker() {
    b_.stop();
    t_.join();
  }
  const bound_endpoints& endpoints() const { return b_.endpoints(); }
  broker& get() { return b_; }
  // A 1 s heartbeat (3 s of liveness): these tests are about the libraries, not liveness, and
  // under ThreadSanitizer on a loaded 2-core machine a busy worker's thread has gone unscheduled
  // for over 300 ms, was expired and its requests answered 502. Tests that need a fast heartbeat
  // ask for one.
  static broker_options loopback() {
    broker_options o;
    o.frontend = o.backend = o.heartbeat = "tcp://127.0.0.1:*";
    o.heartbeat_interval = 1000ms;
    return o;
  }

 private:
  broker b_;
  std::thread t_;
};

class running_worker {
 public:
  running_worker(worker_options o, job_handler h)
      : w_(std::move(o), std::move(h)), t_([this] { w_.run(); }) {}
  ~running_worker() { stop(); }
  void stop() {
    if (!t_.joinable()) return;
    w_.stop();
    t_.join();
  }

 private:
  worker w_;
  std::thread t_;
};

worker_options options_for(const running_broker& b, std::vector<std::string> services,
                           std::uint32_t concurrency = 1) {
  worker_options o;
  o.broker = b.endpoints().backend;
  o.services = std::move(services);
  o.concurrency = concurrency;
  o.reconnect_min = 100ms;
  return o;
}

job_result echo(job& j) {
  job_result r;
  r.message = "echoed";
  r.body = std::move(j.body);  // frames pass through untouched
  return r;
}

// Waits until the broker knows a worker for `service`.
void await_service(client& c, const std::string& service) {
  for (int i = 0; i < 200; ++i) {
    if (c.request("mmi.service", service, 1000ms) == "200") return;
    std::this_thread::sleep_for(10ms);
  }
  FAIL() << "no worker registered for " << service;
}

// The loop copies its counters into metric families; the asking thread writes the text. Scrapes
// from several threads at once each get a whole text, and one that gave up at once (its families
// made later, never taken) confuses none of them.
TEST(library, concurrent_metrics_scrapes_each_get_a_whole_text) {
  running_broker b;
  running_worker w(options_for(b, {"echo"}), echo);
  client c(b.endpoints().frontend);
  await_service(c, "echo");
  for (int i = 0; i < 20; ++i) EXPECT_EQ(c.request("echo", "x", 2000ms), "x");
  for (int i = 0; i < 3; ++i) (void)b.get().metrics(0ms);
  std::atomic<int> whole{0};
  std::vector<std::thread> scrapers;
  for (int t = 0; t < 4; ++t)
    scrapers.emplace_back([&] {
      for (int i = 0; i < 25; ++i) {
        const auto m = b.get().metrics(10000ms);
        if (m && m->starts_with("# HELP scale0_requests_total ") &&
            m->find("\nscale0_requests_total{service=\"echo\",code=\"200\"} ") !=
                std::string::npos &&
            m->find("\nscale0_draining 0\n") != std::string::npos)
          ++whole;
      }
    });
  for (int i = 0; i < 50; ++i) EXPECT_EQ(c.request("echo", "y", 2000ms), "y");
  for (auto& t : scrapers) t.join();
  EXPECT_EQ(whole.load(), 100);
  const auto last = b.get().metrics(5000ms);
  ASSERT_TRUE(last.has_value());
  EXPECT_NE(last->find("scale0_requests_total{service=\"echo\",code=\"200\"} 70\n"),
            std::string::npos)
      << *last;
}

TEST(library, synchronous_request_round_trip) {
  running_broker b;
  running_worker w(options_for(b, {"echo"}), echo);
  client c(b.endpoints().frontend);
  await_service(c, "echo");
  EXPECT_EQ(c.request("echo", "hello", 2000ms), "hello");
  std::vector<zmq::message_t> body;
  body.emplace_back("a", 1);
  body.emplace_back("bc", 2);
  const reply r = c.call("echo", std::move(body), 2000ms);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.message, "echoed");
  ASSERT_EQ(r.body.size(), 2u);
  EXPECT_EQ(r.text(), "abc");
}

TEST(library, s01_and_s02_clients_and_workers_mix_through_one_broker) {
  running_broker b;
  auto o1 = options_for(b, {"mixed"});
  o1.protocol_version = 1;
  auto o2 = options_for(b, {"mixed"});
  o2.protocol_version = 2;
  std::atomic<int> by_v1{0}, by_v2{0};
  running_worker w1(o1, [&](job& j) {
    ++by_v1;
    return job_result::ok("v1:" + j.text(), "from v1");
  });
  running_worker w2(o2, [&](job& j) {
    ++by_v2;
    return job_result::ok("v2:" + j.text(), "from v2");
  });
  client_options c1o;
  c1o.protocol_version = 1;
  client c1(b.endpoints().frontend, c1o);
  client c2(b.endpoints().frontend);  // S0/2 by default
  await_service(c2, "mixed");
  // Until both workers have served (the second may register a moment after the first), and at
  // least 20 requests: every reply comes back whole, whichever framings met.
  for (int i = 0; i < 400 && (i < 20 || by_v1 == 0 || by_v2 == 0); ++i) {
    client& c = i % 2 ? c1 : c2;
    const std::string body = "r" + std::to_string(i);
    std::vector<zmq::message_t> f;
    f.emplace_back(body.data(), body.size());
    const reply r = c.call("mixed", std::move(f));
    ASSERT_EQ(r.status, status::ok);
    const std::string text = r.text();
    EXPECT_TRUE(text == "v1:" + body || text == "v2:" + body) << text;
    EXPECT_EQ(r.message, text.substr(0, 2) == "v1" ? "from v1" : "from v2");
    if (by_v1 == 0 || by_v2 == 0) std::this_thread::sleep_for(5ms);
  }
  EXPECT_GT(by_v1.load(), 0);
  EXPECT_GT(by_v2.load(), 0);
  EXPECT_THROW(client(b.endpoints().frontend, client_options{.protocol_version = 3}), error);
}

TEST(library, errors_are_thrown_with_their_status) {
  broker_options o = running_broker::loopback();
  o.no_worker_timeout = 100ms;
  running_broker b(o);
  running_worker w(options_for(b, {"fail"}),
                   [](job&) -> job_result { throw std::runtime_error("boom"); });
  client c(b.endpoints().frontend);
  await_service(c, "fail");
  try {
    c.request("fail", "x", 2000ms);
    FAIL() << "expected an error";
  } catch (const error& e) {
    EXPECT_EQ(e.code(), status::worker_failed);
    EXPECT_NE(std::string(e.what()).find("boom"), std::string::npos);
  }
  try {
    c.request("nobody", "x", 2000ms);
    FAIL() << "expected an error";
  } catch (const error& e) {
    EXPECT_EQ(e.code(), status::unavailable);
  }
}

TEST(library, pipelined_client_gets_every_reply_exactly_once) {
  running_broker b;
  running_worker w1(options_for(b, {"echo"}, 8), echo);
  running_worker w2(options_for(b, {"echo"}, 8), echo);
  client c(b.endpoints().frontend);
  await_service(c, "echo");
  constexpr int total = 5000, window = 200;
  std::map<std::uint64_t, std::string> expected;
  std::set<std::uint64_t> seen;
  int sent = 0;
  const auto give_up = std::chrono::steady_clock::now() + 30s;
  while (static_cast<int>(seen.size()) < total && std::chrono::steady_clock::now() < give_up) {
    while (sent < total && sent - static_cast<int>(seen.size()) < window) {
      const std::string body = "m" + std::to_string(sent++);
      expected[c.send("echo", body, 5000ms)] = body;
    }
    auto r = c.receive(1000ms);
    if (!r) continue;
    ASSERT_EQ(r->status, 200);
    ASSERT_TRUE(expected.contains(r->id));
    EXPECT_EQ(r->text(), expected[r->id]);
    EXPECT_TRUE(seen.insert(r->id).second) << "duplicate reply " << r->id;
  }
  EXPECT_EQ(seen.size(), static_cast<std::size_t>(total));
  EXPECT_FALSE(c.receive(100ms).has_value());
}

// hold() and flush(): what a pipelined sender sends between them reaches the broker in BATCHes
// (counted in its metrics), and every request still gets exactly its own reply, once.
TEST(library, a_holding_client_sends_batches_and_gets_every_reply_exactly_once) {
  running_broker b;
  running_worker w(options_for(b, {"echo"}, 64), echo);
  client c(b.endpoints().frontend);
  await_service(c, "echo");
  const auto counter = [&](const std::string& name) {
    const auto m = b.get().metrics(5000ms);
    if (!m) return -1.0;
    const auto at = m->find("\n" + name + " ");
    return at == std::string::npos ? -1.0 : std::stod(m->substr(at + name.size() + 2));
  };
  const double before = counter("scale0_batch_entries_total{direction=\"in\"}");
  ASSERT_GE(before, 0.0);
  constexpr int total = 3000, window = 300;
  std::map<std::uint64_t, std::string> expected;
  std::set<std::uint64_t> seen;
  int sent = 0;
  const auto give_up = std::chrono::steady_clock::now() + 30s;
  while (static_cast<int>(seen.size()) < total && std::chrono::steady_clock::now() < give_up) {
    c.hold();
    while (sent < total && sent - static_cast<int>(seen.size()) < window) {
      const std::string body = "h" + std::to_string(sent++);
      expected[c.send("echo", body, 5000ms)] = body;
    }
    c.flush();
    for (auto r = c.receive(1000ms); r; r = c.receive(0ms)) {
      ASSERT_EQ(r->status, 200) << r->message;
      ASSERT_TRUE(expected.contains(r->id));
      EXPECT_EQ(r->text(), expected[r->id]);
      EXPECT_TRUE(seen.insert(r->id).second) << "duplicate reply " << r->id;
    }
  }
  EXPECT_EQ(seen.size(), static_cast<std::size_t>(total));
  EXPECT_FALSE(c.receive(100ms).has_value());
  const double batches = counter("scale0_batches_total{direction=\"in\"}");
  const double entries = counter("scale0_batch_entries_total{direction=\"in\"}") - before;
  EXPECT_GT(batches, 0.0);
  // Nearly all of it travelled in batches: a turn's requests leave together.
  EXPECT_GE(entries, total / 2.0);
  EXPECT_GT(entries / batches, 2.0);
}

TEST(library, worker_runs_up_to_its_concurrency_at_once) {
  running_broker b;
  // Each handler waits (bounded) until four run at once: no sleeping for overlap to happen.
  std::mutex m;
  std::condition_variable cv;
  int running = 0, peak = 0;
  running_worker w(options_for(b, {"slow"}, 4), [&](job& j) {
    std::unique_lock lock(m);
    peak = std::max(peak, ++running);
    cv.notify_all();
    cv.wait_for(lock, 5s, [&] { return peak >= 4; });
    --running;
    return job_result::ok(j.text());
  });
  client c(b.endpoints().frontend);
  await_service(c, "slow");
  for (int i = 0; i < 12; ++i) c.send("slow", "x", 5000ms);
  int replies = 0;
  for (int i = 0; i < 12; ++i)
    if (auto r = c.receive(3000ms); r && r->status == 200) ++replies;
  EXPECT_EQ(replies, 12);
  std::lock_guard lock(m);
  EXPECT_EQ(peak, 4);
}

TEST(library, lazy_pirate_retries_until_the_broker_is_there) {
  broker_options o = running_broker::loopback();
  std::optional<running_broker> first(std::in_place, o);
  o.frontend = first->endpoints().frontend;
  o.backend = first->endpoints().backend;
  o.heartbeat = first->endpoints().heartbeat;
  first.reset();  // the ports are now known and free; nobody listens

  // Retries to spare (9 s): the broker comes at 0.7 s, but under ThreadSanitizer on a loaded
  // machine its worker has taken over 2 s more to register.
  client c(o.frontend, {300ms, 30});
  std::thread late([&] {
    std::this_thread::sleep_for(700ms);
    static std::optional<running_broker> b;
    static std::optional<running_worker> w;
    b.emplace(o);
    worker_options wo;
    wo.broker = o.backend;
    wo.services = {"echo"};
    w.emplace(wo, echo);
  });
  std::string reply;
  try {
    reply = c.request("echo", "eventually");
  } catch (const error& e) {
    ADD_FAILURE() << "status " << static_cast<int>(e.code()) << ": " << e.what();
  }
  late.join();  // also when the request failed: a joinable thread's destructor would terminate
  EXPECT_EQ(reply, "eventually");
}

TEST(library, retries_exhausted_gives_504) {
  client c("tcp://127.0.0.1:1", {100ms, 2});
  const auto start = std::chrono::steady_clock::now();
  try {
    c.request("echo", "x");
    FAIL();
  } catch (const error& e) {
    EXPECT_EQ(e.code(), status::deadline);
  }
  EXPECT_GE(std::chrono::steady_clock::now() - start, 300ms);
}

TEST(library, graceful_stop_finishes_what_the_worker_holds) {
  running_broker b;
  // The handler holds its request until the broker has the worker as stopping.
  std::mutex m;
  std::condition_variable cv;
  bool started = false, release = false;
  auto w = std::make_unique<running_worker>(options_for(b, {"slow"}), [&](job& j) {
    std::unique_lock lock(m);
    started = true;
    cv.notify_all();
    cv.wait_for(lock, 10s, [&] { return release; });
    return job_result::ok(j.text());
  });
  client c(b.endpoints().frontend);
  client observer(b.endpoints().frontend);
  await_service(c, "slow");
  const auto id = c.send("slow", "finish me", 5000ms);
  {
    std::unique_lock lock(m);
    ASSERT_TRUE(cv.wait_for(lock, 5s, [&] { return started; }));
  }
  std::thread stopper([&] { w->stop(); });
  // STOPPING reached the broker: the worker gets nothing more, and still holds the request.
  bool stopping = false;
  for (int i = 0; i < 500 && !stopping; ++i) {
    stopping = observer.request("scale0.status", "", 1000ms).find("\"stopping\":true") !=
               std::string::npos;
    if (!stopping) std::this_thread::sleep_for(10ms);
  }
  EXPECT_TRUE(stopping);
  {
    std::lock_guard lock(m);
    release = true;
  }
  cv.notify_all();
  auto r = c.receive(3000ms);
  stopper.join();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->id, id);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->text(), "finish me");
  // Its DISCONNECT travels on another connection than this client's request: allow it to land.
  std::string registered = "200";
  for (int i = 0; i < 100 && registered == "200"; ++i) {
    registered = c.request("mmi.service", "slow", 1000ms);
    if (registered == "200") std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(registered, "404");
}

TEST(library, worker_registers_again_after_a_broker_restart) {
  broker_options o = running_broker::loopback();
  o.heartbeat_interval = 100ms;  // the worker notices the broker gone within 300 ms
  auto b = std::make_unique<running_broker>(o);
  o.frontend = b->endpoints().frontend;
  o.backend = b->endpoints().backend;
  o.heartbeat = b->endpoints().heartbeat;
  running_worker w(options_for(*b, {"echo"}), echo);
  {
    client c(o.frontend);
    await_service(c, "echo");
  }
  b.reset();
  b = std::make_unique<running_broker>(o);
  client c(o.frontend);
  await_service(c, "echo");
  EXPECT_EQ(c.request("echo", "again", 2000ms), "again");
}

TEST(library, worker_fails_over_to_the_next_broker_of_its_list) {
  broker_options o = running_broker::loopback();
  o.heartbeat_interval = 100ms;  // the worker notices its broker gone within 300 ms
  auto first = std::make_unique<running_broker>(o);
  running_broker second(o);
  worker_options wo = options_for(*first, {"echo"});
  wo.broker = first->endpoints().backend + "," + second.endpoints().backend;
  std::mutex m;
  std::vector<std::string> events;
  wo.on_event = [&](const std::string& e) {
    std::lock_guard lock(m);
    events.push_back(e);
  };
  running_worker w(wo, echo);
  {
    client c(first->endpoints().frontend);
    await_service(c, "echo");  // the first of the list is the preferred broker
    EXPECT_EQ(c.request("echo", "first", 2000ms), "first");
  }
  first.reset();
  client c(second.endpoints().frontend);
  await_service(c, "echo");  // at once: the backoff waits for a whole round of the list
  EXPECT_EQ(c.request("echo", "second", 2000ms), "second");
  std::lock_guard lock(m);
  // The broker's CONFIG after each registration is reported too ("policy version ..."): not the
  // subject here.
  std::erase_if(events, [](const std::string& e) { return e.starts_with("policy version"); });
  ASSERT_GE(events.size(), 3u);
  EXPECT_EQ(events[0],
            "registered with " + wo.broker.substr(0, wo.broker.find(',')) + " (heartbeat 100 ms)");
  EXPECT_NE(events[1].find("; trying " + second.endpoints().backend + " now"), std::string::npos)
      << events[1];
  EXPECT_EQ(events[2], "registered with " + second.endpoints().backend + " (heartbeat 100 ms)");
}

TEST(library, worker_refuses_a_bad_broker_list) {
  const auto code_for = [](const std::string& brokers) -> int {
    worker_options o;
    o.broker = brokers;
    o.services = {"echo"};
    try {
      worker w(o, echo);
      return 0;
    } catch (const error& e) {
      return e.code();
    }
  };
  EXPECT_EQ(code_for("tcp://127.0.0.1:5556"), 0);
  EXPECT_EQ(code_for("tcp://127.0.0.1:5556,tcp://127.0.0.1:5656"), 0);
  EXPECT_EQ(code_for("tcp://127.0.0.1:5556,nonsense"), status::bad_request);
  EXPECT_EQ(code_for("tcp://127.0.0.1:5556,"), status::bad_request);
  EXPECT_EQ(code_for(""), status::bad_request);
}

TEST(library, broker_reports_address_in_use) {
  running_broker b;
  broker_options o = running_broker::loopback();
  o.frontend = b.endpoints().frontend;
  try {
    broker second(o);
    FAIL() << "bound twice";
  } catch (const error& e) {
    EXPECT_NE(std::string(e.what()).find("frontend"), std::string::npos);
  }
}

TEST(library, client_ping) {
  running_broker b;
  client c(b.endpoints().frontend);
  EXPECT_TRUE(c.ping(1000ms));
  client nobody("tcp://127.0.0.1:1");
  EXPECT_FALSE(nobody.ping(100ms));
}

}  // namespace
}  // namespace scale0
