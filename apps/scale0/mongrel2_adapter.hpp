// SPDX-License-Identifier: Apache-2.0
// `scale0 mongrel2`: a Mongrel2 handler that carries each HTTP request into the broker and the
// worker's response back (docs/http.md, "Mongrel2 as the front door"). One thread, one zmq poll
// loop; the protocol work is in src/gateway/mongrel2_codec.
#pragma once

#include <atomic>
#include <cstddef>
#include <string>
#include <vector>

#include "scale0/security.hpp"

namespace scale0::cli {

struct mongrel2_options {
  std::string send_spec;  // Mongrel2 pushes requests here (we connect a PULL)
  std::string recv_spec;  // Mongrel2 subscribes to replies here (we connect a PUB)
  std::string broker = "tcp://127.0.0.1:5555";
  std::vector<std::string> routes;
  std::string default_service;
  long timeout_ms = 30000;
  std::size_t max_inflight = 10000;
  std::size_t max_message = 16u << 20;
  unsigned retry_after_s = 1;
  std::string sender_id;        // our socket identity; empty: a fresh UUID
  std::string trusted_proxies;  // REMOTE_ADDRs whose forwarding fields are kept (CIDR,...)
  bool underscores_in_headers = false;
  security::curve_client curve{};  // CURVE to the broker (docs/security.md)
};

// Runs until `stop` becomes true. Prints the ready line on stdout once connected. Returns the exit
// status; throws scale0::error (400) for bad options (route rules, endpoints).
int run_mongrel2(const mongrel2_options& o, const std::atomic<bool>& stop);

}  // namespace scale0::cli
