// SPDX-License-Identifier: Apache-2.0
// The Scale0 worker: registers services with a broker, runs a handler on up to `concurrency`
// requests at once (replies in any order), heartbeats, fails over to the next broker of its list
// (then reconnects with exponential backoff) when the broker falls silent, re-registers after a
// broker restart, and stops gracefully.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "scale0/security.hpp"

namespace scale0 {

struct job {
  std::string service;
  std::vector<zmq::message_t> body;
  std::chrono::milliseconds time_left{0};  // until the client's deadline
  std::string text() const;                // the body frames concatenated
};

struct job_result {
  std::uint16_t status = 200;
  std::string message;
  std::vector<zmq::message_t> body;
  static job_result ok(std::string_view body, std::string message = {});
  static job_result failure(std::uint16_t status, std::string message);
};

// Runs on one of the worker's handler threads. An exception becomes a 500 reply with its text.
using job_handler = std::function<job_result(job&)>;

struct worker_options {
  // The broker's endpoint, or a list of brokers separated by commas, in order of preference
  // ("tcp://a:5556,tcp://b:5556"; an endpoint cannot hold a comma). The worker registers with the
  // first. When it loses its broker (silence, registration not answered, DISCONNECT 503/403) it
  // registers with the next one at once; only once every broker of the list has failed in a row
  // does it wait reconnect_min, doubling up to reconnect_max, before the next round. Registering
  // resets that backoff. One string rather than a vector: the CLI's --broker passes the list
  // through as it is, and a one-endpoint list behaves exactly as a lone endpoint.
  std::string broker = "tcp://127.0.0.1:5556";
  security::curve_client curve{};  // CURVE to the broker (docs/security.md); off by default
  std::vector<std::string> services;
  std::uint32_t concurrency = 1;
  bool idempotent = false;  // requests may be re-dispatched if this worker dies holding them
  std::chrono::milliseconds heartbeat_interval{0};  // ask for a longer interval; 0: the broker's
  std::chrono::milliseconds reconnect_min{1000};
  std::chrono::milliseconds reconnect_max{32000};
  std::chrono::milliseconds drain_timeout{30000};  // stop(): longest wait for requests in flight
  // Run the handler on the worker's own I/O thread instead of a pool of `concurrency` threads:
  // no thread hop per request, for handlers that never block (an echo, a lookup in memory).
  // The worker still holds up to `concurrency` requests; they are handled one after another.
  bool inline_handler = false;
  // Wire framing: 2 (S0/2, compact: fields packed in one frame) or 1 (S0/1, for older brokers).
  std::uint8_t protocol_version = 2;
  // S0/2: take requests and send replies in batches (docs/protocol.md, "Batches"): what one turn
  // of the worker's loop has to send leaves as one message. Never waits for more. A broker that
  // predates batches refuses the READY flag; the worker then registers again without it.
  bool batches = true;
  // Shown by the broker (`scale0 status`, its logs): 1-64 bytes of printable UTF-8, sent in READY
  // (S0/2 only). Empty: host:pid.
  std::string name;
  // Called (on the worker's thread) with human-readable events: registered, lost broker, ...
  std::function<void(const std::string&)> on_event;
  // Called on the worker's thread when a graceful stop begins: for service managers (systemd
  // STOPPING=1). Registrations are events (on_event).
  std::function<void()> on_stopping;
};

// host:pid: the name of a worker that is given none.
std::string default_worker_name();

class worker {
 public:
  // Throws scale0::error (400) on invalid options, including a broker list with an empty item or an
  // endpoint ZeroMQ cannot parse.
  worker(worker_options options, job_handler handler);
  ~worker();
  worker(const worker&) = delete;
  worker& operator=(const worker&) = delete;

  // Serves until stop(), then finishes what it holds and disconnects.
  void run();
  // Asks run() to stop gracefully. Safe from another thread or a signal handler.
  void stop() noexcept;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace scale0
