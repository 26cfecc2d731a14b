// SPDX-License-Identifier: Apache-2.0
// A native HTTP worker on the worker library: `GET /` answers a small fixed body, `POST` (any
// path) echoes the request body, anything else is 404 or 405. The requests and responses are the
// HTTP encoding of docs/http.md, so a front door (scale0 gateway) or an S0/1 client can call it.
//
//   scale0_http_worker_example --service www.example.com [--broker tcp://127.0.0.1:5556]
//                              [--concurrency 4]
#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>

#include "scale0/error.hpp"
#include "scale0/http.hpp"
#include "scale0/worker.hpp"

namespace {

scale0::worker* running = nullptr;
extern "C" void stop_running(int) {
  if (running != nullptr) running->stop();  // stop() is async-signal-safe
}

scale0::http::response text(unsigned status, std::string body) {
  scale0::http::response r;
  r.status = status;
  r.set("Content-Type", "text/plain; charset=utf-8");
  r.body = std::move(body);
  return r;
}

scale0::http::response handle(const scale0::http::request& req) {
  if (req.method == "POST") {
    scale0::http::response r;
    r.set("Content-Type", req.header("Content-Type").value_or("application/octet-stream"));
    r.body = req.body;
    return r;
  }
  if (req.path() != "/") return text(404, "not found\n");
  if (req.method != "GET" && req.method != "HEAD") {
    scale0::http::response r = text(405, "method not allowed\n");
    r.set("Allow", "GET, HEAD, POST");
    return r;
  }
  return text(200, "hello from scale0\n");
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"A native Scale0 HTTP worker: GET / says hello, POST echoes the body"};
  scale0::worker_options o;
  app.add_option("--service", o.services, "Services served (comma-separated)")
      ->required()
      ->delimiter(',');
  app.add_option("--broker", o.broker, "Broker endpoint")->capture_default_str();
  app.add_option("--concurrency", o.concurrency, "Requests held at once")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  CLI11_PARSE(app, argc, argv);
  o.inline_handler = true;  // the handler never blocks: no thread hop per request
  try {
    scale0::worker w(o, scale0::http::serve(handle));
    running = &w;
    std::signal(SIGINT, stop_running);
    std::signal(SIGTERM, stop_running);
    w.run();
    running = nullptr;
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "http_worker_example: %s\n", e.what());
    return 1;
  }
}
