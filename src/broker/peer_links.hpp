// SPDX-License-Identifier: Apache-2.0
// The family's sockets, owned by the event loop and used only on its thread: the peer ROUTER where
// other brokers' links connect, one DEALER per outgoing link (with a socket monitor that reports
// each connection made or lost), and the resolver of the configured peers. It implements
// family_io for the family core and feeds the core what it reads.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "family_core.hpp"
#include "peer_resolver.hpp"
#include "scale0/security.hpp"

namespace scale0::broker_detail {

class peer_links final : public family_io {
 public:
  peer_links(zmq::context_t& context, const broker_options& options,
             std::function<void(const broker_event&)> events);
  ~peer_links() override;

  // Binds the peer ROUTER; returns the endpoint bound (a `*` port resolved). Throws scale0::error.
  std::string bind(const std::string& endpoint);
  // The peer ROUTER, for a socket monitor of its handshakes (before bind).
  zmq::socket_t& router() noexcept { return router_; }
  // The core to feed; the configured peers are resolved from now on (IP literals at once).
  void attach(family_core& core, const std::vector<std::string>& configured, time_point now);

  // For the loop's wait: the peer ROUTER, the resolver and every link's monitor.
  void add_poll_items(std::vector<zmq_pollitem_t>& items);
  // Reads what is ready (at most `budget` peer messages) and hands it to the core. Returns how
  // many peer messages it read.
  std::size_t service(time_point now, std::size_t budget);
  // Links closed from now on keep their queue this long (the BYEs of a shutdown).
  void set_close_linger(int ms) noexcept { close_linger_ms_ = ms; }

  // Forwarding (docs/family.md): a peer's link brings S0/2 requests besides S0P1, and this
  // broker's links bring back the replies to its own forwards. The loop hands both to the broker
  // core. `oversized`: more frames or bytes than the broker's limits.
  struct forwarding {
    // Whether the connection with this routing id is an alive peer of the family (others are not
    // served).
    std::function<bool(std::string_view routing_id)> accept;
    std::function<void(frames& msg, bool oversized)> request;  // frame 0: the routing id
    std::function<void(std::uint32_t link, frames& msg, bool oversized)> reply;
  };
  void set_forwarding(forwarding f) { forwarding_ = std::move(f); }
  // Sends on the peer ROUTER (frame 0: a routing id), as the core's outbox does on its ROUTERs.
  delivery send_to_peer(frames& msg);
  // Sends msg[1..] on link `link` (frame 0 names the link to the core). Not sent (no connection,
  // or its queue full, or no such link): `full`, and the frames are untouched.
  delivery send_on_link(std::uint32_t link, frames& msg);

  // family_io
  void open_link(std::uint32_t link, const std::string& endpoint,
                 std::string_view routing_id) override;
  void close_link(std::uint32_t link) override;
  bool send(std::uint32_t link, frames& msg) override;
  void event(const broker_event& e) override;

 private:
  struct link {
    zmq::socket_t dealer;
    zmq::socket_t monitor;
  };
  bool receive(bool& oversized);
  void read_monitor(std::uint32_t id, link& l, time_point now);
  std::size_t read_replies(std::uint32_t id, link& l, std::size_t budget);
  bool is_request() const noexcept;

  // The links have a context (an I/O thread) of their own: connecting to a host name learned from
  // a peer resolves it on that thread, which must not hold up the clients' and workers' I/O.
  // Declared before the links, so it is destroyed after them (waiting for their linger).
  zmq::context_t links_context_{1};
  const std::chrono::milliseconds reconnect_max_;
  const std::chrono::milliseconds handshake_timeout_;
  security::curve_client curve_;  // the family's key pair for links, and as the server's key
  zmq::socket_t router_;
  std::map<std::uint32_t, link> links_;
  std::unique_ptr<peer_resolver> resolver_;
  family_core* core_ = nullptr;
  std::function<void(const broker_event&)> events_;
  forwarding forwarding_;
  const std::size_t max_frames_;         // of a forwarded request or reply, as on the frontend
  const std::size_t max_message_bytes_;  // likewise
  frames inbox_;
  zmq::message_t discard_;
  std::vector<zmq_pollitem_t> items_;  // scratch: service()'s poll
  std::vector<std::uint32_t> ids_;
  int close_linger_ms_ = 0;
};

}  // namespace scale0::broker_detail
