// SPDX-License-Identifier: Apache-2.0
// Native C++ HTTP worker of the HTTP comparison (bench/http/run): scale0::worker serving the HTTP
// encoding through scale0::http::serve. GET and HEAD of any path get 200 with the fixed body of
// bench_http.hpp; other methods get 405. The handler never blocks, so it runs inline on the
// worker's I/O thread (no thread hop per request) while the worker holds up to --concurrency
// requests.
//
//   bench_http_worker --broker tcp://127.0.0.1:5556 --service hello [--concurrency 64]
//
// Prints "ready" once the worker is running (registration follows asynchronously: check with
// `scale0 status`). Stops gracefully on SIGTERM/SIGINT.
#include <CLI/CLI.hpp>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <exception>
#include <string>

#include "bench_http.hpp"
#include "scale0/http.hpp"
#include "scale0/worker.hpp"

namespace {

std::atomic<scale0::worker*> running{nullptr};

extern "C" void on_stop_signal(int) {
  // stop() is documented as safe from a signal handler.
  if (scale0::worker* w = running.load(); w != nullptr) w->stop();
}

scale0::http::response answer(const scale0::http::request& r) {
  scale0::http::response out;
  if (r.method != "GET" && r.method != "HEAD") {
    out.status = 405;
    out.set("Allow", "GET, HEAD");
    return out;
  }
  out.set("Content-Type", bench::http::content_type);
  out.body = bench::http::body;
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"HTTP worker for the HTTP comparison benchmark"};
  scale0::worker_options o;
  o.concurrency = 64;
  o.inline_handler = true;
  std::string service = "hello";
  app.add_option("--broker", o.broker, "The broker's worker endpoint")->capture_default_str();
  app.add_option("--service", service, "Service to serve")->capture_default_str();
  app.add_option("--concurrency", o.concurrency, "Requests held at once")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  CLI11_PARSE(app, argc, argv);
  o.services = {service};

  try {
    scale0::worker w(o, scale0::http::serve(answer));
    running = &w;
    std::signal(SIGTERM, on_stop_signal);
    std::signal(SIGINT, on_stop_signal);
    std::printf("ready\n");
    std::fflush(stdout);
    w.run();
    running = nullptr;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_http_worker: %s\n", e.what());
    return 1;
  }
  return 0;
}
