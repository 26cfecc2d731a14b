// SPDX-License-Identifier: Apache-2.0
// The embeddable Scale0 broker: binds its endpoints on construction, runs its event loop in run().
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "scale0/security.hpp"

namespace scale0 {

// One service's policy from the configuration (`[service."NAME"]` in the broker's TOML file,
// docs/operations.md). Each setting left unset falls back on the broker-wide one.
struct service_policy {
  std::optional<std::chrono::milliseconds> request_timeout;  // used when a request gives 0
  std::optional<std::size_t> max_queue;                      // queued requests of this service
  // true: its requests may be re-dispatched once when their worker is lost, whatever the worker
  // declared; false: never, even if the worker declared it idempotent or the service is listed in
  // idempotent_services. Unset: the list or the worker's flag decides.
  std::optional<bool> idempotent;
  // At most this many of its requests held by one worker at once (1-1024); unset: no cap beyond
  // the worker's own concurrency.
  std::optional<std::uint32_t> max_concurrency;

  bool operator==(const service_policy&) const = default;
};

// Service policies a configuration may hold.
inline constexpr std::size_t max_service_policies = 10000;

struct broker_options {
  std::string frontend = "tcp://127.0.0.1:5555";   // clients (and workers)
  std::string backend = "tcp://127.0.0.1:5556";    // workers (and clients)
  std::string heartbeat = "tcp://127.0.0.1:5557";  // PUB: broker heartbeats
  std::chrono::milliseconds heartbeat_interval{1000};
  std::uint32_t liveness = 3;
  // Native worker heartbeats per second the broker aims to receive at most: the interval granted
  // to native workers grows with their number (docs/protocol.md, "Heartbeat intervals as the
  // fleet grows"); the broker's own PUB heartbeat stays at heartbeat_interval. 0: no scaling.
  std::uint32_t max_worker_heartbeats = 500;
  std::chrono::milliseconds no_worker_timeout{1000};
  std::chrono::milliseconds request_timeout{30000};  // used when a request gives 0
  std::size_t max_frames = 128;                      // a READY for 64 services is 71 frames
  std::size_t max_message_bytes = 8u << 20;
  std::size_t max_queue = 10000;  // queued requests per service
  std::size_t max_services = 10000;
  std::size_t max_client_inflight = 10000;  // accepted and unanswered, plus answers it has not read
  // Majordomo workers cannot negotiate: they are judged by MDP's own cadence (7/MDP's reference
  // worker heartbeats every 2.5 s), and one holding a request is kept until that request's
  // deadline plus one liveness period (it cannot heartbeat while its handler runs).
  std::chrono::milliseconds mdp_heartbeat_interval{2500};
  // The longest heartbeat interval a native worker may ask for (a longer request is cut to this).
  std::chrono::milliseconds max_heartbeat_interval{60000};
  std::size_t max_queue_bytes = std::size_t{128} << 20;      // bytes of queued requests per service
  std::size_t max_total_queue_bytes = std::size_t{1} << 30;  // ... over all services
  std::size_t max_unserved_services = 1000;      // services nobody serves (made by client requests)
  std::size_t max_worker_services = 64;          // services one worker may announce (1-64)
  std::chrono::milliseconds service_ttl{10000};  // an unserved, idle service is forgotten after
  // Answers held for a client whose ZeroMQ queue is full (it is not reading), per client and in
  // all.
  std::size_t max_client_backlog_bytes = std::size_t{64} << 20;
  std::size_t max_total_backlog_bytes = std::size_t{256} << 20;
  std::vector<std::string> idempotent_services;  // for Majordomo workers, which cannot declare it
  // Per-service overrides, by service name (at most max_service_policies; names as on the wire,
  // not reserved). Reloadable: see broker_core::reconfigure.
  std::map<std::string, service_policy, std::less<>> service_policies;
  std::chrono::milliseconds drain_timeout{10000};  // drain(): longest wait for accepted requests
  // HTTP listener for /metrics, /healthz and /readyz, e.g. "127.0.0.1:9555"; empty: none.
  std::string metrics_listen;

  // CURVE (docs/security.md). The broker's secret key (Z85) turns it on for the frontend, the
  // backend and the heartbeat PUB; a ZAP handler then admits only the keys listed here: worker
  // keys on the backend, client keys on the frontend, either on the heartbeat PUB.
  std::string curve_secret_key;
  std::vector<security::key_grant> worker_keys;  // keys and the services each may serve
  std::vector<security::key_grant> client_keys;  // keys and the services each may call
  bool any_client_key = false;                   // accept any client key (encrypted only)
  // Keys that may ask scale0.status on the frontend (they need not be client keys). Unset: every
  // listed client key may; an `any` key never may.
  std::optional<std::vector<std::string>> admin_keys;
  // A connection must finish its ZeroMQ handshake (CURVE's included) within this: silent TCP
  // connections to the ports are closed, not held.
  std::chrono::milliseconds handshake_timeout{5000};
  // Protected mode: a tcp:// endpoint that is not loopback needs CURVE, and a non-loopback
  // metrics_listen is refused (plain HTTP), unless this is set.
  bool insecure = false;

  // The family (docs/family.md): brokers in a full mesh that tell each other their capacity.
  // The ROUTER where other brokers' links connect; "" (the library's default): no family.
  // `scale0 broker` defaults to tcp://127.0.0.1:5558. Without peer_secret_key, one other
  // machines can reach needs `insecure`.
  std::string peer_listen;
  // Brokers to join: tcp://HOST:PORT or ipc://PATH. A host name stands for each address it
  // resolves to, resolved again every 30 s.
  std::vector<std::string> peers;
  std::string family = "default";  // 1-255 bytes of printable UTF-8, like a service name
  // Families whose brokers take requests for a service no broker of this family has a worker
  // for, in order of preference (at most 8; docs/family.md, "Fallback families").
  std::vector<std::string> fallback_families;
  // Point S0/2 workers at the family broker that needs their services more, at registration and
  // while they idle (docs/family.md, "Balancing workers").
  bool rebalance_workers = true;
  // How other brokers (and, later, clients and workers sent on) reach this one; "": the bound
  // endpoint. A wildcard bind (`*`, 0.0.0.0, ::) cannot be advertised: peer_listen on one needs
  // advertise_peer, and with `peers` set the frontend and backend need theirs too.
  std::string advertise_frontend;
  std::string advertise_backend;
  std::string advertise_peer;
  std::size_t max_peers = 256;  // peers kept (configured, learned and this broker's own aliases)
  // CURVE on the peer port (docs/family.md, "Security"): the secret key (Z85) of the certificate
  // every broker that links to this one shares (its family, and the families it falls back on or
  // that fall back on it). The peer ROUTER then admits only that key, and links present it.
  std::string peer_secret_key;

  // Throws scale0::error (400) naming the first invalid option.
  void validate() const;
};

// Something an operator may want to know about. Views are valid only during the call.
enum class event_kind : std::uint8_t {
  worker_joined,    // worker, address, service (comma-separated list), detail
  worker_left,      // worker, address, departure, detail: why (disconnected, heartbeat expired...)
  service_created,  // service
  service_removed,  // service
  request_error,    // service, code, detail: every error reply the broker makes
  dropped,   // detail: what was dropped (malformed, unknown reply, late reply, unroutable, backlog)
  draining,  // detail
  reloaded,  // detail
  refused,   // address, code, detail: a CURVE handshake or a service the key may not use
  // The family (docs/family.md): address is the peer's endpoint, worker its broker id (hex).
  peer_up,    // worker, address, detail: alive, or restarted
  peer_down,  // worker, address, detail: why (silent, left, restarted, forgotten, itself)
};
// Why a worker left (worker_left events), for a program that acts on it without reading the
// detail, which says it in words (and may say more: the peer a worker was sent to, the rule it
// broke). Values may be added.
enum class worker_departure : std::uint8_t {
  none,            // not a worker_left event
  disconnected,    // it sent DISCONNECT
  shutdown,        // the broker stopped
  expired,         // silent for `liveness` heartbeat intervals
  unreachable,     // a send to it failed: its connection is gone, or it does not read
  protocol_error,  // it broke the protocol: a second READY, an invalid command, a READY too large
  key_revoked,     // a reload removed its CURVE key, or a service the key may serve
  moved,           // sent to a peer of the family by this broker's drain
  rebalanced,      // sent to a peer of the family that needs its services more
};
struct broker_event {
  event_kind kind;
  std::string_view worker;   // hex identity
  std::string_view address;  // peer address, when known
  std::string_view service;
  std::uint16_t code = 0;
  std::string_view detail;
  worker_departure departure = worker_departure::none;  // worker_left: why
};

struct bound_endpoints {
  std::string frontend;
  std::string backend;
  std::string heartbeat;
  std::string peer;  // the peer ROUTER ("" without a family)
};

class broker {
 public:
  // Binds every endpoint; throws scale0::error when an option is invalid or an endpoint cannot be
  // bound (for instance, address in use).
  explicit broker(broker_options options);
  ~broker();
  broker(const broker&) = delete;
  broker& operator=(const broker&) = delete;

  // The endpoints actually bound (a `*` port resolved to the port the system chose).
  const bound_endpoints& endpoints() const noexcept;
  std::string metrics_endpoint() const;  // host:port of the metrics listener, "" if none

  // Called on the event loop's thread for every event. Set before run().
  void on_event(std::function<void(const broker_event&)> handler);
  // Called on the event loop's thread after request_reload(): returns the new options, or nothing
  // to keep the current ones. Set before run().
  void on_reload(std::function<std::optional<broker_options>()> handler);

  // Runs the event loop until stop(), or until a drain completes; then tells every worker
  // DISCONNECT and answers whatever is still pending with 503.
  void run();

  // Asks run() to return at once. Safe from another thread or a signal handler.
  void stop() noexcept;
  // Graceful stop: new requests get 503 at once, accepted ones finish (up to drain_timeout), then
  // run() returns. Safe from another thread or a signal handler.
  void drain() noexcept;
  // Asks the loop to call the reload handler. Safe from another thread or a signal handler.
  void request_reload() noexcept;

  // Thread-safe snapshots, answered by the loop (nothing if it does not answer within `wait`).
  std::optional<std::string> metrics(
      std::chrono::milliseconds wait = std::chrono::milliseconds(2000));
  std::optional<std::string> status_json(
      std::chrono::milliseconds wait = std::chrono::milliseconds(2000));
  bool draining() const noexcept;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace scale0
