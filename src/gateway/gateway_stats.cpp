// SPDX-License-Identifier: Apache-2.0
#include "gateway_stats.hpp"

#include <nlohmann/json.hpp>

#include "metrics/exposition.hpp"

namespace scale0::gateway_detail {

std::string gateway_stats::render() const {
  metrics::exposition e;
  const auto n = [](auto v) { return static_cast<double>(v); };
  routes.add_to(e, "scale0_gateway", "HTTP requests answered, by route and status code.",
                "Time from a whole request read to its response written, by route.");
  e.gauge("scale0_gateway_requests_in_flight", "Requests waiting for the broker.")
      .add(n(inflight.load()));
  e.gauge("scale0_gateway_connections_open", "HTTP connections open now.")
      .add(n(connections_open.load()));
  e.counter("scale0_gateway_connections_total", "HTTP connections accepted.")
      .add(n(connections_total.load()));
  e.counter("scale0_gateway_connections_rejected_total",
            "Connections answered 503 and closed because --max-connections were open.")
      .add(n(connections_rejected.load()));
  e.counter("scale0_gateway_trailer_fields_dropped_total",
            "Trailer fields of chunked requests read and thrown away (never forwarded).")
      .add(n(trailer_fields_dropped.load()));
  e.counter("scale0_gateway_tls_handshakes_total",
            "TLS handshakes by result: ok, failed (refused or broken by either side), timeout "
            "(not finished within --header-timeout).")
      .add(n(tls_handshakes_ok.load()), {{"result", "ok"}})
      .add(n(tls_handshakes_failed.load()), {{"result", "failed"}})
      .add(n(tls_handshakes_timed_out.load()), {{"result", "timeout"}});
  e.counter("scale0_gateway_broker_unknown_replies_total",
            "Replies from the broker for no request in progress (late or after a disconnect).")
      .add(n(broker_unknown_replies.load()));
  return e.text();
}

// The gateway's status JSON: the same page as the broker's reads it (kind "gateway").
std::string gateway_stats::status_json(bool draining) const {
  nlohmann::json bounds = nlohmann::json::array();
  for (double b : metrics::latency_histogram::bounds) bounds.push_back(b * 1000);
  const auto up = std::chrono::steady_clock::now() - started;
  nlohmann::json j = {{"kind", "gateway"},
                      {"uptime_ms", std::chrono::duration<double, std::milli>(up).count()},
                      {"listen", listen},
                      {"broker", broker},
                      {"draining", draining},
                      {"connections_open", connections_open.load()},
                      {"connections_total", connections_total.load()},
                      {"connections_rejected", connections_rejected.load()},
                      {"in_flight", inflight.load()},
                      {"broker_unknown_replies", broker_unknown_replies.load()},
                      {"latency_bounds_ms", bounds},
                      {"routes", nullptr}};
  routes.status_routes(j["routes"]);
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace scale0::gateway_detail
