// SPDX-License-Identifier: Apache-2.0
// Echo server of the comparison: sends every multipart message it receives straight back.
//
//   bench_echo_server --bind EP      ROUTER, bound: the "direct" path's server. The ROUTER's
//                                    identity frame routes each echo back to the DEALER client.
//   bench_echo_server --connect EP   DEALER, connected to the DEALER back end of zmq_proxy: the
//                                    proxy path's worker. It receives [client-identity, "", id,
//                                    payload] and sends the same frames back, which is exactly the
//                                    envelope the proxy's ROUTER front needs to route the reply.
//                                    (A REP socket would also work but holds one request at a
//                                    time in its state machine; the DEALER echo has no such limit,
//                                    like the ROUTER echo server of the direct path.)
//
// One thread, one socket, no per-message work beyond receive and send. High-water marks are
// unlimited so a large window is never dropped. Stops on SIGTERM/SIGINT.
#include <csignal>
#include <cstdio>
#include <string>
#include <vector>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "bench_common.hpp"

int main(int argc, char** argv) {
  CLI::App app{"Echo server for the comparison benchmarks"};
  std::string bind_ep;
  std::string connect_ep;
  auto* b = app.add_option("--bind", bind_ep, "ROUTER: bind this endpoint (direct path)");
  app.add_option("--connect", connect_ep, "DEALER: connect to this endpoint (zmq_proxy back end)")
      ->excludes(b);
  CLI11_PARSE(app, argc, argv);
  if (bind_ep.empty() == connect_ep.empty()) {
    std::fprintf(stderr, "bench_echo_server: give --bind EP or --connect EP\n");
    return 2;
  }
  bench::install_stop_signals();

  zmq::context_t ctx(1);
  zmq::socket_t s(ctx, bind_ep.empty() ? zmq::socket_type::dealer : zmq::socket_type::router);
  s.set(zmq::sockopt::sndhwm, 0);
  s.set(zmq::sockopt::rcvhwm, 0);
  s.set(zmq::sockopt::linger, 0);
  try {
    if (!bind_ep.empty()) {
      s.bind(bind_ep);
    } else {
      s.connect(connect_ep);
    }
  } catch (const zmq::error_t& e) {
    std::fprintf(stderr, "bench_echo_server: %s: %s\n",
                 (bind_ep.empty() ? connect_ep : bind_ep).c_str(), e.what());
    return 1;
  }
  std::printf("ready\n");
  std::fflush(stdout);

  std::vector<zmq::message_t> frames;
  zmq::pollitem_t item{s.handle(), 0, ZMQ_POLLIN, 0};
  while (bench::stop_requested == 0) {
    try {
      if (zmq::poll(&item, 1, std::chrono::milliseconds(200)) == 0) continue;
      // Drain what is there (bounded), echoing each message as it comes.
      for (int i = 0; i < 4096; ++i) {
        frames.clear();
        if (!zmq::recv_multipart(s, std::back_inserter(frames), zmq::recv_flags::dontwait)) break;
        zmq::send_multipart(s, frames);
      }
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) continue;
      std::fprintf(stderr, "bench_echo_server: %s\n", e.what());
      return 1;
    }
  }
  return 0;
}
