#include <spdlog/spdlog.h>
#include <unistd.h>

#include <thread>

#include "commands.hpp"
#include "scale0/error.hpp"
#include "scale0/worker.hpp"

namespace scale0::cli {
namespace {

worker* running = nullptr;

struct worker_args {
  worker_options o;
  bool echo = false;
  long delay_ms = 0;
  long heartbeat_ms = 0;
  std::string name;
};

int run_worker(worker_args& a) {
  if (!a.echo) {
    std::fprintf(stderr, "scale0 worker: choose what the worker does: --echo\n");
    return 2;
  }
  if (a.name.empty()) a.name = "echo-" + std::to_string(::getpid());
  a.o.heartbeat_interval = std::chrono::milliseconds(a.heartbeat_ms);
  const std::string name = a.name;
  a.o.on_event = [name](const std::string& what) { spdlog::info("worker {}: {}", name, what); };
  const auto delay = std::chrono::milliseconds(a.delay_ms);
  try {
    worker w(a.o, [name, delay](job& j) {
      if (delay.count() > 0) std::this_thread::sleep_for(delay);
      job_result r;
      r.message = name;  // the reply says who served it
      r.body = std::move(j.body);
      return r;
    });
    running = &w;
    on_stop_signal([]() noexcept { running->stop(); });
    w.run();
    running = nullptr;
    return 0;
  } catch (const error& e) {
    std::fprintf(stderr, "scale0 worker: %s\n", e.message().c_str());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "scale0 worker: %s\n", e.what());
    return 1;
  }
}

}  // namespace

void add_worker_command(CLI::App& root, int& exit_code) {
  auto args = std::make_shared<worker_args>();
  CLI::App* sub = root.add_subcommand("worker", "Run a worker");
  sub->footer(
      "Examples:\n"
      "  scale0 worker --service echo --echo\n"
      "  scale0 worker --service echo,upper --echo --concurrency 8 --idempotent --name w1");
  auto& o = args->o;
  sub->add_option("--service", o.services, "Services served (comma-separated)")
      ->required()
      ->delimiter(',');
  sub->add_flag("--echo", args->echo, "Reply with the request body");
  sub->add_option("--broker", o.broker, "Broker endpoint")->capture_default_str();
  sub->add_option("--concurrency", o.concurrency, "Requests held at once")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  sub->add_flag("--idempotent", o.idempotent, "Requests may be re-dispatched if this worker dies");
  sub->add_option("--heartbeat-interval", args->heartbeat_ms,
                  "Ask for a longer heartbeat interval (ms); 0 takes the broker's")
      ->check(CLI::Range(0L, 3600000L));
  sub->add_option("--delay", args->delay_ms, "Echo: wait this long before replying (ms)")
      ->check(CLI::Range(0L, 3600000L));
  sub->add_option("--name", args->name, "Name put in each reply's message (default echo-PID)");
  sub->callback([args, &exit_code] { exit_code = run_worker(*args); });
}

}  // namespace scale0::cli
