// SPDX-License-Identifier: Apache-2.0
// The Mongrel2 front door: a Mongrel2 handler that carries each HTTP request into the broker and
// the worker's response back (docs/http.md, "Mongrel2 as the front door"). One thread owns the
// sockets (a PULL from Mongrel2, a PUB to it, the DEALER to the broker) in one zmq poll loop; the
// protocol work is pure (src/gateway/mongrel2_codec).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "scale0/security.hpp"

namespace scale0 {

// Something an operator may want to know about. Views are valid only during the call.
enum class mongrel2_event_kind : std::uint8_t {
  subscribed,    // Mongrel2 subscribed to the replies; detail: the recv_spec
  disconnected,  // a client went away; connection: "sender conn_id", count: requests forgotten
  dropped,       // what: the message or answer in words; detail: why (bad input, may repeat fast)
  loop_error,    // what, detail: an error caught in the loop, which carries on
};
struct mongrel2_event {
  mongrel2_event_kind kind;
  std::string_view what;  // the event in words ("malformed Mongrel2 message dropped")
  std::string_view detail;
  std::string_view connection;
  std::uint64_t count = 0;
};

struct mongrel2_options {
  std::string send_spec;  // Mongrel2 pushes requests here (a PULL connects)
  std::string recv_spec;  // Mongrel2 subscribes to replies here (a PUB connects)
  std::string broker = "tcp://127.0.0.1:5555";  // the broker's frontend
  std::vector<std::string> routes;              // rules, tried in order (docs/http.md)
  std::string default_service;                  // for requests without a host
  std::chrono::milliseconds timeout{30000};     // request deadline when the route gives none
  std::size_t max_inflight = 10000;             // requests waiting; beyond: 503
  std::size_t max_message = 16u << 20;          // bytes of one Mongrel2 message; over: dropped
  unsigned retry_after = 1;                     // seconds, in Retry-After of 503 answers
  std::string sender_id;                        // the sockets' identity; empty: a fresh UUID
  std::string trusted_proxies;          // REMOTE_ADDRs whose forwarding fields are kept (CIDR,...)
  bool underscores_in_headers = false;  // keep header fields whose names hold '_'
  std::string metrics_listen;           // host:port of /metrics, /healthz, /readyz; empty: none
  // Protected mode: a metrics address other than loopback is refused (it is plain HTTP) unless
  // this is set.
  bool insecure = false;
  security::curve_client curve{};  // CURVE to the broker (docs/security.md)
  // Called on the front door's thread.
  std::function<void(const mongrel2_event&)> on_event;
};

// What the front door did, for a last log line.
struct mongrel2_totals {
  std::uint64_t requests = 0;         // sent to the broker
  std::uint64_t answered = 0;         // answers published
  std::uint64_t expired = 0;          // answered 504: no reply by the deadline + 1 s
  std::uint64_t forgotten = 0;        // in progress when their client went away
  std::uint64_t dropped_replies = 0;  // messages from the broker for no request in progress
  std::uint64_t malformed = 0;        // dropped or refused input (mongrel2_event_kind::dropped)
};

class mongrel2_front {
 public:
  // Checks the options (routes, endpoints, protected mode), connects the sockets and binds the
  // metrics endpoint. Throws scale0::error (400) on a bad option.
  explicit mongrel2_front(mongrel2_options options);
  ~mongrel2_front();
  mongrel2_front(const mongrel2_front&) = delete;
  mongrel2_front& operator=(const mongrel2_front&) = delete;

  // Serves until stop(); then answers the requests still waiting 503 (closing their connections).
  void run();
  // Makes run() return. Safe from another thread or a signal handler.
  void stop() noexcept;

  std::string metrics_endpoint() const;  // host:port, or "" when off
  mongrel2_totals totals() const;        // after run() has returned

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace scale0
