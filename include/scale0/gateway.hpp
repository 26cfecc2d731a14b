// SPDX-License-Identifier: Apache-2.0
// The HTTP gateway: an asynchronous HTTP/1.1 server that turns each request into a Scale0 request
// (docs/http.md), routed to a service by host and path rules, and maps the reply back. One thread
// owns the listening socket, every connection and the broker connection.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "scale0/security.hpp"

namespace scale0 {

struct gateway_options {
  std::string listen = "127.0.0.1:8080";        // host:port; port 0 picks a free one
  std::string broker = "tcp://127.0.0.1:5555";  // the broker's frontend
  std::vector<std::string> routes;              // rules, tried in order (docs/http.md)
  std::string default_service;                  // for requests without a host
  std::chrono::milliseconds timeout{30000};     // request deadline when the route gives none
  std::size_t max_connections = 10000;
  std::size_t max_inflight = 10000;
  std::size_t max_body = 8 << 20;
  std::size_t max_header = 16384;
  std::chrono::milliseconds header_timeout{10000};
  std::chrono::milliseconds body_timeout{30000};
  std::chrono::milliseconds idle_timeout{60000};
  std::chrono::milliseconds send_timeout{30000};
  unsigned retry_after = 1;  // seconds, in Retry-After of 503 answers
  std::chrono::milliseconds drain_timeout{10000};
  std::string metrics_listen = "127.0.0.1:9556";  // empty: no metrics endpoint
  // Peers whose X-Forwarded-For, Forwarded, X-Forwarded-Proto/-Host and X-Real-IP are kept and
  // extended ("10.0.0.0/8,::1/128"); from everyone else they are replaced.
  std::string trusted_proxies;
  bool underscores_in_headers = false;  // keep header fields whose names hold '_'
  // Protected mode: a listen or metrics address other than loopback is refused (the gateway
  // speaks plain HTTP) unless this is set.
  bool insecure = false;
  // HTTPS (TLS 1.2/1.3, ALPN http/1.1): the certificate chain and its private key, PEM files,
  // read again by reload(). Both empty: plain HTTP.
  std::string tls_cert;
  std::string tls_key;
  security::curve_client curve{};  // CURVE to the broker (docs/security.md)
  // Notable events in words (accept failures, messages from the broker that make no sense).
  // Called on the gateway's thread.
  std::function<void(const std::string&)> on_event;
  // Called on the gateway's thread when a drain begins (drain()): for service managers (systemd
  // STOPPING=1).
  std::function<void()> on_drain;
  // Called on the gateway's thread after reload(): the options to run with from now on, or
  // nullopt to keep the running ones. What can change without a restart is applied (routes,
  // default_service, timeouts, max_connections, max_inflight, max_body, max_header, retry_after,
  // drain_timeout, trusted_proxies, underscores_in_headers, the TLS files) to requests read from
  // then on; listen, broker and metrics_listen stay. An invalid set is reported through on_event
  // and the running options kept.
  std::function<std::optional<gateway_options>()> on_reload;
};

// Throws scale0::error (400) saying what is wrong with `options` (timeouts, limits, routes),
// without binding or connecting anything.
void check_gateway_options(const gateway_options& options);

class gateway {
 public:
  // Validates the options, binds the listener and the metrics endpoint, connects to the broker.
  // Throws scale0::error (400) on a bad option or an address that cannot be bound.
  explicit gateway(gateway_options options);
  ~gateway();
  gateway(const gateway&) = delete;
  gateway& operator=(const gateway&) = delete;

  // Serves until stop(), or until a drain() has finished.
  void run();
  // Stops at once. Safe from another thread or a signal handler.
  void stop() noexcept;
  // Stops accepting, closes idle connections, answers the requests in progress (with
  // `Connection: close`), then returns from run(); after drain_timeout it stops regardless.
  // Safe from another thread or a signal handler.
  void drain() noexcept;
  // Asks the gateway's thread to reload (gateway_options::on_reload). Safe from another thread or
  // a signal handler.
  void reload() noexcept;

  std::string endpoint() const;          // host:port actually listened on
  std::string metrics_endpoint() const;  // host:port, or "" when off

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace scale0
