// SPDX-License-Identifier: Apache-2.0
// NATS echo responder of the comparison: one connection, subscribed to SUBJECT in queue group
// QUEUE (so N responders share the requests as N Scale0 workers do), and every MSG with a reply
// subject is published straight back to it with the same payload.
//
//   bench_nats_echo --server 127.0.0.1:4222 [--subject echo] [--queue echo-workers]
//
// Prints "ready" once the server has confirmed the subscription (PING/PONG). Replies to everything
// that a read brought in go out in one write. Stops (status 0) on SIGTERM/SIGINT or when the server
// closes the connection.
#include <csignal>
#include <cstdio>
#include <string>

#include "bench_common.hpp"
#include "nats_conn.hpp"

int main(int argc, char** argv) {
  CLI::App app{"NATS echo responder (queue group) for the comparison benchmarks"};
  std::string server = "127.0.0.1:4222";
  std::string subject = "echo";
  std::string queue_group = "echo-workers";
  app.add_option("--server", server, "nats-server host:port");
  app.add_option("--subject", subject, "Subject to serve");
  app.add_option("--queue", queue_group, "Queue group");
  CLI11_PARSE(app, argc, argv);
  bench::install_stop_signals();
  std::signal(SIGPIPE, SIG_IGN);

  try {
    bench::nats_conn c(server, "bench-echo");
    long echoed = 0;
    char header[512];
    auto on_msg = [&](const bench::nats_msg& m) {
      if (m.reply.empty()) return;
      const int n =
          std::snprintf(header, sizeof header, "PUB %.*s %zu\r\n", static_cast<int>(m.reply.size()),
                        m.reply.data(), m.payload.size());
      if (n <= 0 || static_cast<std::size_t>(n) >= sizeof header) return;
      c.queue(std::string_view(header, static_cast<std::size_t>(n)));
      c.queue(m.payload);
      c.queue("\r\n");
      ++echoed;
    };
    c.queue("SUB " + subject + " " + queue_group + " 1\r\n");
    if (!c.sync(5000, on_msg)) {
      std::fprintf(stderr, "bench_nats_echo: %s\n", c.error().c_str());
      return 1;
    }
    std::printf("ready\n");
    std::fflush(stdout);
    while (bench::stop_requested == 0) {
      const short ev = c.wait(static_cast<short>(POLLIN | (c.want_write() ? POLLOUT : 0)), 200);
      if ((ev & (POLLIN | POLLHUP | POLLERR)) != 0) {
        if (!c.read_some() || !c.parse(on_msg)) {
          // The server going away is the end of the service (it is stopped with us), not a failure
          // of ours: a client missing replies reports them as lost.
          if (bench::stop_requested != 0 || c.closed_by_server()) break;
          std::fprintf(stderr, "bench_nats_echo: %s\n", c.error().c_str());
          return 1;
        }
      }
      if (!c.flush()) {
        std::fprintf(stderr, "bench_nats_echo: %s\n", c.error().c_str());
        return 1;
      }
    }
    std::fprintf(stderr, "bench_nats_echo: echoed %ld\n", echoed);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_nats_echo: %s\n", e.what());
    return 1;
  }
  return 0;
}
