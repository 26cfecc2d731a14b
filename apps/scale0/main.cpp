// SPDX-License-Identifier: Apache-2.0
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <string>

#include "commands.hpp"
#include "exit_status.hpp"
#include "logging.hpp"
#include "scale0/version.hpp"

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

namespace {
std::atomic<int> hangup_fd{-1};
struct sigaction previous_hangup {};
extern "C" void handle_hangup(int) {
  const int saved = errno;
  if (const int fd = hangup_fd.load(); fd >= 0) {
    const char h = 'h';
    [[maybe_unused]] auto n = ::write(fd, &h, 1);
  }
  errno = saved;
}
}  // namespace

hangup_logger::hangup_logger(std::string command) : command_(std::move(command)) {
  if (::pipe2(pipe_, O_CLOEXEC) != 0) return;  // then SIGHUP keeps its default
  ::fcntl(pipe_[1], F_SETFL, O_NONBLOCK);      // a flood of signals must not block the handler
  thread_ = std::thread([this] {
    char c = 0;
    for (;;) {
      const auto n = ::read(pipe_[0], &c, 1);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0 || c == 'q') return;
      log(spdlog::level::info, "SIGHUP: nothing to reload", {{"command", command_}});
    }
  });
  hangup_fd = pipe_[1];
  struct sigaction sa {};
  sa.sa_handler = handle_hangup;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGHUP, &sa, &previous_hangup);
}

hangup_logger::~hangup_logger() {
  if (!thread_.joinable()) return;
  sigaction(SIGHUP, &previous_hangup, nullptr);
  hangup_fd = -1;
  const char q = 'q';
  while (::write(pipe_[1], &q, 1) < 0 && errno == EINTR) {
  }
  thread_.join();
  ::close(pipe_[0]);
  ::close(pipe_[1]);
}
}  // namespace scale0::cli

int main(int argc, char** argv) {
  // Logs go to stderr: stdout carries command output (reply bodies, the broker's ready line).
  scale0::cli::setup_logging("info", "text");
  std::signal(SIGPIPE, SIG_IGN);
  CLI::App app{"Scale0: a dynamic, service-oriented, least-recently-used load balancer on ZeroMQ"};
  const std::string version = "scale0 " + std::string(scale0::version()) + " (commit " +
                              std::string(scale0::commit()) + ")";
  app.set_version_flag("--version", version, "Print the version and the commit, and exit");
  app.require_subcommand(1);
  int exit_code = 0;
  app.add_subcommand("version", "Print the version and the commit")->callback([&] {
    std::printf("%s\n", version.c_str());
  });
  scale0::cli::add_broker_command(app, exit_code);
  scale0::cli::add_worker_command(app, exit_code);
  scale0::cli::add_request_command(app, exit_code);
  scale0::cli::add_status_command(app, exit_code);
  scale0::cli::add_bench_command(app, exit_code);
  scale0::cli::add_gateway_command(app, exit_code);
  scale0::cli::add_mongrel2_command(app, exit_code);
  scale0::cli::add_keygen_command(app, exit_code);
  namespace exit_status = scale0::cli::exit_status;
  const std::string conventions =
      std::string(exit_status::help) +
      "\nDurations in milliseconds also take a unit: 500ms, 2s, 1m, 1h.";
  app.footer(conventions);
  for (CLI::App* sub : app.get_subcommands({}))
    sub->footer(sub->get_footer().empty() ? conventions : sub->get_footer() + "\n\n" + conventions);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version are "errors" of exit code 0; every other is a usage error (2), never
    // CLI11's own codes.
    return app.exit(e) == 0 ? exit_status::ok : exit_status::usage;
  }
  return exit_code;
}
