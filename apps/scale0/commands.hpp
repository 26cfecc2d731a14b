// SPDX-License-Identifier: Apache-2.0
// Each subcommand registers itself on the root CLI11 app; its callback stores the exit status.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <thread>

namespace scale0::cli {

void add_broker_command(CLI::App& root, int& exit_code);
void add_worker_command(CLI::App& root, int& exit_code);
void add_request_command(CLI::App& root, int& exit_code);
void add_status_command(CLI::App& root, int& exit_code);
void add_bench_command(CLI::App& root, int& exit_code);
void add_gateway_command(CLI::App& root, int& exit_code);
void add_mongrel2_command(CLI::App& root, int& exit_code);
void add_keygen_command(CLI::App& root, int& exit_code);

// Installs SIGINT/SIGTERM handlers that call `stop` (which must be async-signal-safe).
void on_stop_signal(void (*stop)() noexcept);

// For commands with nothing to reload (worker, mongrel2): while one lives, SIGHUP is logged
// ("SIGHUP: nothing to reload") and otherwise changes nothing, instead of ending the process
// (the default disposition). The handler only writes to a pipe; a thread of its own logs.
class hangup_logger {
 public:
  explicit hangup_logger(std::string command);
  ~hangup_logger();
  hangup_logger(const hangup_logger&) = delete;
  hangup_logger& operator=(const hangup_logger&) = delete;

 private:
  std::string command_;
  int pipe_[2] = {-1, -1};
  std::thread thread_;
};

}  // namespace scale0::cli
