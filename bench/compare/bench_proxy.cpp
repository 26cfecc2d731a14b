// SPDX-License-Identifier: Apache-2.0
// The cheapest possible broker: zmq_proxy between a ROUTER front end (clients) and a DEALER back
// end (workers: bench_echo_server --connect). No routing, no services, no heartbeats, no
// accounting: the DEALER deals requests round-robin and the ROUTER routes replies by the identity
// frame the workers echo back.
//
//   bench_proxy --front tcp://127.0.0.1:P1 --back tcp://127.0.0.1:P2
//
// High-water marks are unlimited so a large window is never dropped. Runs until killed.
#include <cstdio>
#include <string>
#include <zmq.hpp>

#include "bench_common.hpp"

int main(int argc, char** argv) {
  CLI::App app{"zmq_proxy(ROUTER front, DEALER back) for the comparison benchmarks"};
  std::string front_ep;
  std::string back_ep;
  app.add_option("--front", front_ep, "ROUTER endpoint for clients")->required();
  app.add_option("--back", back_ep, "DEALER endpoint for workers")->required();
  CLI11_PARSE(app, argc, argv);

  zmq::context_t ctx(1);
  zmq::socket_t front(ctx, zmq::socket_type::router);
  zmq::socket_t back(ctx, zmq::socket_type::dealer);
  for (auto* s : {&front, &back}) {
    s->set(zmq::sockopt::sndhwm, 0);
    s->set(zmq::sockopt::rcvhwm, 0);
    s->set(zmq::sockopt::linger, 0);
  }
  try {
    front.bind(front_ep);
    back.bind(back_ep);
  } catch (const zmq::error_t& e) {
    std::fprintf(stderr, "bench_proxy: bind: %s\n", e.what());
    return 1;
  }
  std::printf("ready\n");
  std::fflush(stdout);
  try {
    zmq::proxy(front, back);
  } catch (const zmq::error_t& e) {
    std::fprintf(stderr, "bench_proxy: %s\n", e.what());
    return 1;
  }
  return 0;
}
