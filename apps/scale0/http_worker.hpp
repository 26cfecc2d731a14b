// SPDX-License-Identifier: Apache-2.0
// `scale0 worker --http URL`: the sidecar's supervision. The worker takes work only while the app
// answers; when it fails, the worker stops gracefully and a new one registers once it answers
// again.
#pragma once

#include <chrono>

#include "scale0/http_sidecar.hpp"
#include "scale0/worker.hpp"

namespace scale0::cli {

struct http_worker_options {
  http::forward_options forward;
  http::probe_options probe;
  std::chrono::milliseconds health_interval{1000};
  std::string name;  // put in each 200 reply's message
};

// Runs until SIGINT/SIGTERM; returns the exit status. Throws scale0::error (400) on bad options.
int run_http_worker(const worker_options& worker, http_worker_options http);

}  // namespace scale0::cli
