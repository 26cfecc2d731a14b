// SPDX-License-Identifier: Apache-2.0
#include "mongrel2_stats.hpp"

#include "metrics/exposition.hpp"

namespace scale0::gateway_detail {

std::string mongrel2_stats::render() const {
  metrics::exposition e;
  const auto n = [](auto v) { return static_cast<double>(v); };
  routes.add_to(e, "scale0_mongrel2",
                "HTTP requests from Mongrel2 answered, by route and status code.",
                "Time from a request received from Mongrel2 to its answer published, by route.");
  e.gauge("scale0_mongrel2_requests_in_flight", "Requests waiting for the broker.")
      .add(n(inflight.load()));
  e.counter("scale0_mongrel2_malformed_messages_total",
            "Messages from Mongrel2 dropped: unreadable, or not an HTTP request (JSON/XML socket "
            "messages, WebSocket frames).")
      .add(n(malformed_messages.load()));
  e.counter("scale0_mongrel2_broker_unknown_replies_total",
            "Replies from the broker for no request in progress (late or after a disconnect).")
      .add(n(broker_unknown_replies.load()));
  return e.text();
}

}  // namespace scale0::gateway_detail
