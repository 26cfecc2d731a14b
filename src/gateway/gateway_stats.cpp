// SPDX-License-Identifier: Apache-2.0
#include "gateway_stats.hpp"

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

}  // namespace scale0::gateway_detail
