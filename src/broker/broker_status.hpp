// SPDX-License-Identifier: Apache-2.0
// The broker's status (scale0.status, /status.json) in two steps: the loop copies what it needs
// into plain structs (broker_core::status_snapshot, cheap: no JSON, no formatting), and whoever
// asked writes the JSON from the copy (write_status_json), on its own thread when that is not the
// loop's. At 10,000 services writing the JSON takes far longer than the copy (bench/micro,
// BM_status_*).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <utility>
#include <vector>

#include "event_ring.hpp"
#include "metrics/latency_histogram.hpp"
#include "traffic_history.hpp"

namespace scale0::broker_detail {

// A service's effective policy (docs/operations.md, "Service policies").
struct policy_status {
  bool configured = false;
  std::int64_t request_timeout_ms = 0;
  std::size_t max_queue = 0;
  const char* idempotent = "worker";  // "yes", "never" or "worker"
  std::uint32_t max_concurrency = 0;  // 0: no cap (null in JSON)
};

struct service_status {
  std::string name;
  std::uint32_t workers = 0;
  std::size_t idle_slots = 0;
  std::size_t queue_depth = 0;
  std::size_t queue_bytes = 0;
  std::uint32_t in_flight = 0;
  std::uint32_t family_workers = 0;
  std::uint32_t fallback_workers = 0;
  std::uint64_t forwarded = 0;
  bool idempotent = false;
  policy_status policy;
  std::uint64_t requests = 0;
  std::uint64_t replies = 0;
  std::vector<std::pair<std::uint16_t, std::uint64_t>> errors;  // by status code
  // The last few heartbeat intervals: their length, the requests and the latencies in them.
  double window_seconds = 0;
  std::uint64_t window_requests = 0;
  std::uint64_t window_errors = 0;
  metrics::latency_histogram::buckets window_latency{};
  traffic_history history;
};

struct worker_status {
  std::string id;  // hex identity
  std::string name;
  std::string address;
  const char* protocol = "";
  std::vector<std::pair<std::string, std::uint32_t>> services;  // name, requests it holds
  std::uint32_t concurrency = 0;
  std::uint32_t in_flight = 0;
  bool idempotent = false;
  bool stopping = false;
  double heartbeat_interval_ms = 0;
  double last_seen_ms = 0;
  double connected_ms = 0;
};

struct status_snapshot {
  std::string broker_id;
  double uptime_ms = 0;
  bool draining = false;
  double heartbeat_interval_ms = 0;
  std::uint32_t liveness = 0;
  // Where it listens ("" : unknown, for a core that was not told).
  std::string frontend, backend, heartbeat, peer, metrics;
  struct {
    std::uint64_t version = 0;
    std::string origin;
    std::int64_t request_timeout_ms = 0;
    std::size_t max_queue = 0;
    std::vector<std::string> idempotent;
    std::vector<std::pair<std::string, policy_status>> services;  // every configured table
  } policy;
  std::vector<service_status> services;
  std::vector<worker_status> workers;
  // The core's counters, as they are.
  struct {
    std::uint64_t requests = 0, replies = 0;
    std::map<std::uint16_t, std::uint64_t> errors;
    std::uint64_t malformed = 0, unknown_reply = 0, late_reply = 0, unroutable = 0, backlog = 0;
    std::uint64_t workers_joined = 0, workers_left = 0, workers_expired = 0;
    std::uint64_t heartbeats_missed = 0, redispatched = 0;
    std::uint64_t redirected_clients = 0, redirected_workers = 0, handed_back = 0;
    std::uint64_t forwarded_out = 0, forwarded_in = 0, forwarded_fallback = 0;
    std::uint64_t rebalanced_workers = 0;
    std::size_t requests_pending = 0;
  } counters;
  // Recent events, oldest first; none without a ring (a core not run by the event loop).
  bool has_events = false;
  std::vector<event_ring::entry> events;
  std::size_t events_capacity = 0;
  std::chrono::steady_clock::time_point now{};
  // The family's part, already copied by the family (status_source::status_writer); empty: none.
  std::function<void(nlohmann::json&)> family;
};

// The JSON of scale0.status (docs/operations.md, "Observing"). Any thread.
std::string write_status_json(const status_snapshot& s);

}  // namespace scale0::broker_detail
