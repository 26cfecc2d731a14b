#include <csignal>

#include "commands.hpp"
#include "logging.hpp"

namespace scale0::cli {
namespace {
void (*stop_fn)() noexcept = nullptr;
extern "C" void handle_stop(int) {
  if (stop_fn) stop_fn();
}
}  // namespace

void on_stop_signal(void (*stop)() noexcept) {
  stop_fn = stop;
  struct sigaction sa {};
  sa.sa_handler = handle_stop;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}
}  // namespace scale0::cli

int main(int argc, char** argv) {
  // Logs go to stderr: stdout carries command output (reply bodies, the broker's ready line).
  scale0::cli::setup_logging("info", "text");
  std::signal(SIGPIPE, SIG_IGN);
  CLI::App app{"Scale0: a dynamic, service-oriented, least-recently-used load balancer on ZeroMQ"};
  app.require_subcommand(1);
  int exit_code = 0;
  scale0::cli::add_broker_command(app, exit_code);
  scale0::cli::add_worker_command(app, exit_code);
  scale0::cli::add_request_command(app, exit_code);
  scale0::cli::add_status_command(app, exit_code);
  scale0::cli::add_bench_command(app, exit_code);
  scale0::cli::add_gateway_command(app, exit_code);
  scale0::cli::add_mongrel2_command(app, exit_code);
  CLI11_PARSE(app, argc, argv);
  return exit_code;
}
