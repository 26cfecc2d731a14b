// SPDX-License-Identifier: Apache-2.0
// A small HTTP/1.1 listener (Boost.Beast, one thread) for /metrics, /healthz and /readyz, and the
// status page (/ and /status.json), used by the broker and the gateway. /metrics is what the
// `metrics` handler gives, then scale0_build_info and the process_* families; /status.json is what
// the `status` handler gives; / is the page (status_page.hpp), which reads /status.json. Read-only:
// GET and HEAD, anything else 405. Beast stays inside metrics_server.cpp so no other translation
// unit pays for it.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>  // Boost 1.74 Asio uses std::exchange without including <utility>

namespace scale0::metrics {

class metrics_server {
 public:
  struct handlers {
    std::function<std::optional<std::string>()> metrics;  // nothing: the broker did not answer
    std::function<bool()> ready;                          // false while draining
    // The status JSON (nothing: not answered in time); empty: no status page.
    std::function<std::optional<std::string>()> status;
  };

  // Listens on "host:port" (port 0: any free port). Throws scale0::error when the address is
  // invalid or cannot be bound.
  metrics_server(const std::string& listen, handlers h);
  ~metrics_server();
  metrics_server(const metrics_server&) = delete;
  metrics_server& operator=(const metrics_server&) = delete;

  std::string endpoint() const;  // host:port actually bound

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace scale0::metrics
