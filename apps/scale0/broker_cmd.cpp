#include <spdlog/spdlog.h>

#include <cstdio>

#include "commands.hpp"
#include "scale0/broker.hpp"
#include "scale0/error.hpp"

namespace scale0::cli {
namespace {

broker* running = nullptr;

struct broker_args {
  broker_options o;
  long heartbeat_ms = 1000;
  long no_worker_ms = 1000;
  long request_timeout_ms = 30000;
};

int run_broker(broker_args& a) {
  a.o.heartbeat_interval = std::chrono::milliseconds(a.heartbeat_ms);
  a.o.no_worker_timeout = std::chrono::milliseconds(a.no_worker_ms);
  a.o.request_timeout = std::chrono::milliseconds(a.request_timeout_ms);
  try {
    broker b(a.o);
    const auto& ep = b.endpoints();
    running = &b;
    on_stop_signal([]() noexcept { running->stop(); });
    spdlog::info(
        "broker listening: frontend {} backend {} heartbeat {} (interval {} ms, liveness {})",
        ep.frontend, ep.backend, ep.heartbeat, a.heartbeat_ms, a.o.liveness);
    std::printf("ready frontend=%s backend=%s heartbeat=%s\n", ep.frontend.c_str(),
                ep.backend.c_str(), ep.heartbeat.c_str());
    std::fflush(stdout);
    b.run();
    running = nullptr;
    spdlog::info("broker stopped");
    return 0;
  } catch (const error& e) {
    std::fprintf(stderr, "scale0 broker: %s\n", e.message().c_str());
    return 1;
  }
}

}  // namespace

void add_broker_command(CLI::App& root, int& exit_code) {
  auto args = std::make_shared<broker_args>();
  CLI::App* sub = root.add_subcommand("broker", "Run a broker");
  sub->footer(
      "Examples:\n"
      "  scale0 broker\n"
      "  scale0 broker --frontend tcp://127.0.0.1:6000 --backend tcp://127.0.0.1:6001 \\\n"
      "                --heartbeat tcp://127.0.0.1:6002 --heartbeat-interval 500 --liveness 5");
  auto& o = args->o;
  sub->add_option("--frontend", o.frontend, "Endpoint for clients")->capture_default_str();
  sub->add_option("--backend", o.backend, "Endpoint for workers")->capture_default_str();
  sub->add_option("--heartbeat", o.heartbeat, "PUB endpoint for broker heartbeats")
      ->capture_default_str();
  sub->add_option("--heartbeat-interval", args->heartbeat_ms, "Heartbeat interval (ms)")
      ->capture_default_str()
      ->check(CLI::Range(10L, 3600000L));
  sub->add_option("--liveness", o.liveness, "Silent intervals before a worker is purged")
      ->capture_default_str()
      ->check(CLI::Range(1, 100));
  sub->add_option("--no-worker-timeout", args->no_worker_ms,
                  "503 after this long with no worker (ms)")
      ->capture_default_str()
      ->check(CLI::Range(1L, 3600000L));
  sub->add_option("--request-timeout", args->request_timeout_ms,
                  "Deadline of requests that give none (ms)")
      ->capture_default_str()
      ->check(CLI::Range(1L, 86400000L));
  sub->add_option("--max-frames", o.max_frames, "Frames per message")
      ->capture_default_str()
      ->check(CLI::Range(8, 100000));
  sub->add_option("--max-message-bytes", o.max_message_bytes, "Bytes per message")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{1024}, std::size_t{1} << 31));
  sub->add_option("--max-queue", o.max_queue, "Queued requests per service")
      ->capture_default_str()
      ->check(CLI::Range(1, 10000000));
  sub->add_option("--max-services", o.max_services, "Number of services")
      ->capture_default_str()
      ->check(CLI::Range(1, 10000000));
  sub->add_option("--max-client-inflight", o.max_client_inflight, "Requests in flight per client")
      ->capture_default_str()
      ->check(CLI::Range(1, 10000000));
  sub->add_option(
         "--idempotent", o.idempotent_services,
         "Services whose requests may be re-dispatched when a worker dies (for Majordomo workers)")
      ->delimiter(',');
  sub->callback([args, &exit_code] { exit_code = run_broker(*args); });
}

}  // namespace scale0::cli
