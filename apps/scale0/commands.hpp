// Each subcommand registers itself on the root CLI11 app; its callback stores the exit status.
#pragma once

#include <CLI/CLI.hpp>

namespace scale0::cli {

void add_broker_command(CLI::App& root, int& exit_code);
void add_worker_command(CLI::App& root, int& exit_code);
void add_request_command(CLI::App& root, int& exit_code);
void add_status_command(CLI::App& root, int& exit_code);
void add_bench_command(CLI::App& root, int& exit_code);
void add_gateway_command(CLI::App& root, int& exit_code);
void add_mongrel2_command(CLI::App& root, int& exit_code);

// Installs SIGINT/SIGTERM handlers that call `stop` (which must be async-signal-safe).
void on_stop_signal(void (*stop)() noexcept);

}  // namespace scale0::cli
