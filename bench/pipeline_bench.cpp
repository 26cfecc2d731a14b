// SPDX-License-Identifier: Apache-2.0
// End-to-end throughput of one broker: a pipelined client, in-process echo workers, all over
// loopback TCP. Prints requests/s and checks every reply (id and body).
//   pipeline_bench [requests] [window] [workers] [concurrency] [size] [hold]
// hold 1: the client sends each refill of the window between hold() and flush() (in BATCHes).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "scale0/broker.hpp"
#include "scale0/client.hpp"
#include "scale0/worker.hpp"

using namespace std::chrono_literals;

int main(int argc, char** argv) {
  const long requests = argc > 1 ? std::atol(argv[1]) : 200000;
  const long window = argc > 2 ? std::atol(argv[2]) : 1000;
  const int workers = argc > 3 ? std::atoi(argv[3]) : 2;
  const auto concurrency = static_cast<std::uint32_t>(argc > 4 ? std::atoi(argv[4]) : 64);
  const auto size = static_cast<std::size_t>(argc > 5 ? std::atol(argv[5]) : 32);
  const bool hold = argc > 6 && std::atoi(argv[6]) != 0;

  scale0::broker_options bo;
  bo.frontend = bo.backend = bo.heartbeat = "tcp://127.0.0.1:*";
  scale0::broker b(bo);
  std::thread broker_thread([&] { b.run(); });

  std::vector<std::unique_ptr<scale0::worker>> ws;
  std::vector<std::thread> wts;
  for (int i = 0; i < workers; ++i) {
    scale0::worker_options wo;
    wo.broker = b.endpoints().backend;
    wo.services = {"echo"};
    wo.concurrency = concurrency;
    wo.inline_handler = true;
    ws.push_back(std::make_unique<scale0::worker>(wo, [](scale0::job& j) {
      scale0::job_result r;
      r.body = std::move(j.body);
      return r;
    }));
    wts.emplace_back([w = ws.back().get()] { w->run(); });
  }
  scale0::client c(b.endpoints().frontend);
  while (c.request("mmi.service", "echo", 1000ms) != "200") std::this_thread::sleep_for(10ms);
  std::this_thread::sleep_for(200ms);  // let every worker register

  const std::string body(size, 'x');
  long sent = 0, received = 0, bad = 0;
  const auto start = std::chrono::steady_clock::now();
  const auto give_up = start + 120s;
  while (received < requests && std::chrono::steady_clock::now() < give_up) {
    if (hold) c.hold();
    while (sent < requests && sent - received < window) {
      c.send("echo", body, 30000ms);
      ++sent;
    }
    if (hold) c.flush();
    // What has arrived is taken before the window is refilled.
    for (auto r = c.receive(1000ms); r; r = c.receive(0ms)) {
      ++received;
      if (r->status != 200 || r->text() != body) ++bad;
    }
  }
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf(
      "requests %ld window %ld workers %d x %u size %zu%s: %.0f req/s, %ld bad, %ld missing\n",
      requests, window, workers, concurrency, size, hold ? " hold" : "",
      static_cast<double>(received) / secs, bad, requests - received);
  for (auto& w : ws) w->stop();
  for (auto& t : wts) t.join();
  b.stop();
  broker_thread.join();
  return bad == 0 && received == requests ? 0 : 1;
}
