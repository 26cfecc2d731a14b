// SPDX-License-Identifier: Apache-2.0
// NATS request-reply load generator of the comparison: N client threads, each its own connection
// to nats-server with W requests in flight, speaking the NATS text protocol itself (nats_conn.hpp).
//
// Each thread subscribes to its own inbox "_INBOX.<pid>.<thread>.*" and sends every request as
//   PUB <subject> _INBOX.<pid>.<thread>.<id in hex> <size>\r\n<payload>\r\n
// where the payload is derived from the id (the same bytes as the ZeroMQ paths' payload). A reply
// is matched by the id in the subject it arrives on, and its payload checked.
//
// Same options and same report (--json) as bench_raw_client; exits non-zero if any request got no
// reply, an error, or a wrong reply.
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "bench_common.hpp"
#include "nats_conn.hpp"

namespace {

struct client_config {
  bench::load_options load;
  std::string server = "127.0.0.1:4222";
  std::string subject = "echo";
};

class client_thread {
 public:
  client_thread(const client_config& cfg, long quota, int index, bench::thread_stats& st)
      : cfg_(cfg),
        st_(st),
        conn_(cfg.server, "bench-client"),
        inbox_("_INBOX." + std::to_string(::getpid()) + "." + std::to_string(index) + "."),
        table_(static_cast<std::size_t>(cfg.load.window)),
        payload_(std::max<std::size_t>(cfg.load.size, 1)),
        scratch_(std::max<std::size_t>(cfg.load.size, 1)) {
    if (quota > 0) st_.latency_ns.reserve(static_cast<std::size_t>(quota));
    conn_.queue("SUB " + inbox_ + "* 1\r\n");
    if (!conn_.sync(5000, [this](const bench::nats_msg&) { ++st_.wrong; })) {
      throw std::runtime_error(conn_.error());
    }
  }

  void run(const bench::schedule& plan) {
    long measured_sent = 0;
    auto last_progress = bench::clock::now();
    auto on_msg = [this](const bench::nats_msg& m) { handle_reply(m, bench::clock::now()); };
    for (;;) {
      auto now = bench::clock::now();
      bool sending = plan.may_send(now, measured_sent);
      while (sending && !table_.full()) {
        const bool measured = now >= plan.measure_start();
        send(table_.acquire(now, measured));
        ++st_.sent;
        if (measured) ++measured_sent;
        now = bench::clock::now();  // each request's latency starts when it is handed over
        sending = plan.may_send(now, measured_sent);
      }
      if (!sending && table_.empty()) break;
      if (!conn_.flush()) return fail();
      const short ev =
          conn_.wait(static_cast<short>(POLLIN | (conn_.want_write() ? POLLOUT : 0)), 20);
      if ((ev & (POLLIN | POLLHUP | POLLERR)) != 0) {
        if (!conn_.read_some() || !conn_.parse(on_msg)) return fail();
        last_progress = bench::clock::now();
      } else if ((ev & POLLOUT) == 0 && bench::clock::now() - last_progress > plan.drain()) {
        st_.stalled = true;  // no reply for too long: give up on what is in flight
        break;
      }
    }
    st_.lost += static_cast<long>(table_.in_flight());
  }

 private:
  void fail() {
    std::fprintf(stderr, "bench_nats_client: %s\n", conn_.error().c_str());
    ++st_.errors;
    st_.lost += static_cast<long>(table_.in_flight());
  }

  void send(std::uint64_t id) {
    bench::fill_payload(id, payload_.data(), cfg_.load.size);
    char header[512];
    const int n =
        std::snprintf(header, sizeof header, "PUB %s %s%llx %zu\r\n", cfg_.subject.c_str(),
                      inbox_.c_str(), static_cast<unsigned long long>(id), cfg_.load.size);
    conn_.queue(std::string_view(header, static_cast<std::size_t>(n)));
    conn_.queue(std::string_view(payload_.data(), cfg_.load.size));
    conn_.queue("\r\n");
  }

  void handle_reply(const bench::nats_msg& m, bench::clock::time_point now) {
    if (m.subject.size() <= inbox_.size() || m.subject.substr(0, inbox_.size()) != inbox_) {
      ++st_.wrong;
      return;
    }
    std::uint64_t id = 0;
    for (char c : m.subject.substr(inbox_.size())) {
      int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
      if (d < 0) {
        ++st_.wrong;
        return;
      }
      id = (id << 4) | static_cast<std::uint64_t>(d);
    }
    const auto* e = table_.release(id);
    if (e == nullptr) {
      ++st_.wrong;  // unknown, stale or duplicate id
      return;
    }
    ++st_.replies;
    if (!bench::payload_matches(id, m.payload.data(), m.payload.size(), cfg_.load.size, scratch_)) {
      ++st_.wrong;
      return;
    }
    bench::record_latency(st_, *e, now);
  }

  const client_config& cfg_;
  bench::thread_stats& st_;
  bench::nats_conn conn_;
  std::string inbox_;
  bench::inflight_table table_;
  std::vector<char> payload_;
  std::vector<char> scratch_;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"NATS request-reply load generator for the comparison benchmarks"};
  client_config cfg;
  app.add_option("--server", cfg.server, "nats-server host:port");
  app.add_option("--subject", cfg.subject, "Subject the echo responders serve");
  bench::add_load_options(app, cfg.load);
  CLI11_PARSE(app, argc, argv);
  std::signal(SIGPIPE, SIG_IGN);

  std::vector<bench::thread_stats> stats(static_cast<std::size_t>(cfg.load.clients));
  std::vector<std::unique_ptr<client_thread>> clients;
  for (int i = 0; i < cfg.load.clients; ++i) {
    const long quota = bench::quota_for(cfg.load.requests, cfg.load.clients, i);
    try {
      clients.push_back(
          std::make_unique<client_thread>(cfg, quota, i, stats[static_cast<std::size_t>(i)]));
    } catch (const std::exception& e) {
      std::fprintf(stderr, "bench_nats_client: %s: %s\n", cfg.server.c_str(), e.what());
      return 2;
    }
  }
  return bench::run_clients("bench_nats_client", cfg.load, clients, stats, {{"protocol", "nats"}});
}
