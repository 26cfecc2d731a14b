// SPDX-License-Identifier: Apache-2.0
#include "peer_links.hpp"

#include <unistd.h>

#include <cstring>

#include "common/host_port.hpp"
#include "receive.hpp"
#include "scale0/error.hpp"
#include "security/curve_socket.hpp"

namespace scale0::broker_detail {
namespace {

// A STATE of 1000 entries with 255-byte names is about 268 KB; PEERS of max-peers endpoints less.
// A forwarded request may be as large as the frontend allows.
constexpr std::int64_t max_peer_message = std::int64_t{4} << 20;

}  // namespace

peer_links::peer_links(zmq::context_t& context, const broker_options& options,
                       std::function<void(const broker_event&)> events)
    : reconnect_max_(std::max<std::chrono::milliseconds>(options.heartbeat_interval,
                                                         std::chrono::milliseconds(1000))),
      handshake_timeout_(options.handshake_timeout),
      router_(context, zmq::socket_type::router),
      events_(std::move(events)),
      max_frames_(options.max_frames),
      max_message_bytes_(options.max_message_bytes) {
  router_.set(zmq::sockopt::linger, 0);
  // Replies to forwarded requests go back on the connection they came on; one that is gone is
  // reported (the core counts it), a full one held in the core's backlog.
  router_.set(zmq::sockopt::router_mandatory, 1);
  router_.set(zmq::sockopt::sndhwm, 20000);
  // A link that reconnects by itself keeps its routing id: its new connection replaces one this
  // side may still hold (half-open after a partition) instead of being refused.
  router_.set(zmq::sockopt::router_handover, 1);
  router_.set(zmq::sockopt::rcvhwm, 10000);
  router_.set(zmq::sockopt::maxmsgsize,
              std::max<std::int64_t>(max_peer_message,
                                     static_cast<std::int64_t>(options.max_message_bytes) * 2));
  router_.set(zmq::sockopt::handshake_ivl, static_cast<int>(handshake_timeout_.count()));
  if (!options.peer_secret_key.empty()) {
    // One key pair for the whole peer network: the ROUTER serves with it (the loop's ZAP handler
    // admits only its public key, domain "peer"), and every link presents it.
    const std::string pub = security::public_for_secret(options.peer_secret_key);
    curve_ = {pub, pub, options.peer_secret_key};
    security::apply_curve_server(router_, options.peer_secret_key, "peer");
  }
}

peer_links::~peer_links() {
  for (auto& [id, l] : links_) {
    zmq_socket_monitor(l.dealer.handle(), nullptr, 0);
    l.dealer.set(zmq::sockopt::linger, close_linger_ms_);
  }
  links_.clear();
  router_.close();
}

std::string peer_links::bind(const std::string& endpoint) {
  try {
    const std::string where = detail::bind_endpoint(endpoint);
    if (detail::ipv6_endpoint(where)) router_.set(zmq::sockopt::ipv6, 1);
    router_.bind(where);
  } catch (const zmq::error_t& e) {
    throw error(status::unavailable,
                "cannot bind peer-listen endpoint " + endpoint + ": " + e.what());
  }
  return router_.get(zmq::sockopt::last_endpoint);
}

void peer_links::attach(family_core& core, const std::vector<std::string>& configured,
                        time_point now) {
  core_ = &core;
  if (configured.empty()) return;
  resolver_ = std::make_unique<peer_resolver>(configured);
  if (auto peers = resolver_->take()) core_->set_configured(*peers, now);
}

void peer_links::add_poll_items(std::vector<zmq_pollitem_t>& items) {
  items.push_back({router_.handle(), 0, ZMQ_POLLIN, 0});
  if (resolver_ && resolver_->fd() >= 0) items.push_back({nullptr, resolver_->fd(), ZMQ_POLLIN, 0});
  for (auto& [id, l] : links_) {
    items.push_back({l.monitor.handle(), 0, ZMQ_POLLIN, 0});
    items.push_back({l.dealer.handle(), 0, ZMQ_POLLIN, 0});  // replies to forwards
  }
}

std::size_t peer_links::service(time_point now, std::size_t budget) {
  if (core_ == nullptr) return 0;
  // What is readable now, in one poll: the monitors are many and mostly quiet.
  std::vector<zmq_pollitem_t>& items = items_;
  std::vector<std::uint32_t>& ids = ids_;
  items.clear();
  ids.clear();
  items.push_back({router_.handle(), 0, ZMQ_POLLIN, 0});
  for (auto& [id, l] : links_) {
    items.push_back({l.monitor.handle(), 0, ZMQ_POLLIN, 0});
    items.push_back({l.dealer.handle(), 0, ZMQ_POLLIN, 0});
    ids.push_back(id);
  }
  std::size_t n = 0;
  if (zmq_poll(items.data(), static_cast<int>(items.size()), 0) > 0) {
    for (std::size_t i = 1; i < items.size(); ++i) {
      if ((items[i].revents & ZMQ_POLLIN) == 0) continue;
      const auto it = links_.find(ids[(i - 1) / 2]);  // a link closed meanwhile is gone
      if (it == links_.end()) continue;
      if ((i - 1) % 2 == 0) {
        read_monitor(it->first, it->second, now);
      } else {
        n += read_replies(it->first, it->second, budget);
      }
    }
  }
  if (resolver_)
    if (auto peers = resolver_->take()) core_->set_configured(*peers, now);
  if ((items[0].revents & ZMQ_POLLIN) != 0) {
    bool oversized = false;
    for (std::size_t k = 0; k < budget && receive(oversized); ++k, ++n) {
      try {
        if (is_request()) {
          if (forwarding_.accept && forwarding_.accept(protocol::view(inbox_[0]))) {
            forwarding_.request(inbox_, oversized);
          } else {
            events_({event_kind::dropped,
                     {},
                     {},
                     {},
                     0,
                     "peer message: a request from a connection that is not an alive peer"});
          }
          continue;
        }
        core_->on_message(inbox_, now);
      } catch (const std::exception& e) {
        // Nothing a peer sends may end the loop (the decoder never throws; this is for resource
        // exhaustion and bugs).
        events_({event_kind::dropped, {}, {}, {}, 0, e.what()});
      }
    }
  }
  return n;
}

// One whole message of the peer ROUTER into inbox_: at most as many frames as a request may have
// (S0P1 messages have three), the rest read and discarded.
bool peer_links::receive(bool& oversized) {
  std::size_t bytes = 0;
  const std::size_t count =
      receive_message(router_.handle(), inbox_, max_frames_ + 1, discard_, bytes);
  if (count == 0) return false;
  oversized = count > inbox_.size() || bytes - inbox_.front().size() > max_message_bytes_;
  return true;
}

// A native client's message (a forwarded request, or a PING), not S0P1.
bool peer_links::is_request() const noexcept {
  return inbox_.size() >= 3 && protocol::view(inbox_[2]).starts_with("S0C");
}

std::size_t peer_links::read_replies(std::uint32_t id, link& l, std::size_t budget) {
  std::size_t n = 0;
  for (; n < budget; ++n) {
    std::size_t bytes = 0;
    const std::size_t count =
        receive_message(l.dealer.handle(), inbox_, max_frames_ + 1, discard_, bytes);
    if (count == 0) break;
    const bool oversized = count > inbox_.size() || bytes > max_message_bytes_;
    try {
      if (forwarding_.reply) forwarding_.reply(id, inbox_, oversized);
    } catch (const std::exception& e) {
      events_({event_kind::dropped, {}, {}, {}, 0, e.what()});
    }
    if (!links_.contains(id)) break;  // closed meanwhile (its peer was found lost)
  }
  return n;
}

delivery peer_links::send_to_peer(frames& msg) {
  const int e = send_message(router_.handle(), msg);
  return e == 0 ? delivery::sent : e == EAGAIN ? delivery::full : delivery::gone;
}

// Frame 0 (the core's name for the link) stays; the rest goes.
delivery peer_links::send_on_link(std::uint32_t id, frames& msg) {
  const auto it = links_.find(id);
  if (it == links_.end()) return delivery::full;
  return send_message(it->second.dealer.handle(), msg, 1) == 0 ? delivery::sent : delivery::full;
}

// A link's connection was made (the ZeroMQ handshake done: its pipe is attached, so what is sent
// now goes on it) or lost.
void peer_links::read_monitor(std::uint32_t id, link& l, time_point now) {
  for (int i = 0; i < 64; ++i) {
    zmq::message_t head;
    if (!l.monitor.recv(head, zmq::recv_flags::dontwait)) return;
    if (head.more()) {
      zmq::message_t address;
      (void)l.monitor.recv(address);
    }
    if (head.size() < 6) continue;
    std::uint16_t kind = 0;
    std::memcpy(&kind, head.data(), 2);
    if (kind == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
      core_->on_link_connected(id, now);
    } else if (kind == ZMQ_EVENT_DISCONNECTED) {
      core_->on_link_disconnected(id, now);
    }
    if (!links_.contains(id)) return;  // the core closed it meanwhile
  }
}

void peer_links::open_link(std::uint32_t id, const std::string& endpoint,
                           std::string_view routing_id) {
  link l{zmq::socket_t(links_context_, zmq::socket_type::dealer),
         zmq::socket_t(links_context_, zmq::socket_type::pair)};
  l.dealer.set(zmq::sockopt::linger, 0);
  // Nothing is queued without a connection: a message sent then is refused (and counted), and a
  // new connection starts with HELLO, PEERS and a full STATE, never with stale messages.
  l.dealer.set(zmq::sockopt::immediate, 1);
  l.dealer.set(zmq::sockopt::sndhwm, 10000);  // forwards besides S0P1
  l.dealer.set(zmq::sockopt::rcvhwm, 20000);  // their replies
  l.dealer.set(zmq::sockopt::routing_id, zmq::buffer(routing_id));
  l.dealer.set(zmq::sockopt::reconnect_ivl, 100);
  l.dealer.set(zmq::sockopt::reconnect_ivl_max, static_cast<int>(reconnect_max_.count()));
  l.dealer.set(zmq::sockopt::handshake_ivl, static_cast<int>(handshake_timeout_.count()));
  security::apply_curve_client(l.dealer, curve_);
  const std::string monitor = "inproc://scale0-link-" +
                              std::to_string(reinterpret_cast<std::uintptr_t>(this)) + "-" +
                              std::to_string(id);
  if (zmq_socket_monitor(l.dealer.handle(), monitor.c_str(),
                         ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_DISCONNECTED) != 0)
    throw error(status::unavailable, "cannot monitor a peer link");
  l.monitor.set(zmq::sockopt::linger, 0);
  l.monitor.connect(monitor);
  if (detail::ipv6_endpoint(endpoint)) l.dealer.set(zmq::sockopt::ipv6, 1);
  try {
    l.dealer.connect(endpoint);
  } catch (const zmq::error_t& e) {
    // An endpoint ZeroMQ refuses to connect to (validated before, so rare): the link stays
    // without a connection, and the peer is never heard from.
    events_({event_kind::dropped,
             {},
             endpoint,
             {},
             0,
             std::string("cannot connect a peer link: ") + e.what()});
  }
  links_.insert_or_assign(id, std::move(l));
}

void peer_links::close_link(std::uint32_t id) {
  const auto it = links_.find(id);
  if (it == links_.end()) return;
  zmq_socket_monitor(it->second.dealer.handle(), nullptr, 0);
  it->second.dealer.set(zmq::sockopt::linger, close_linger_ms_);
  links_.erase(it);
}

bool peer_links::send(std::uint32_t id, frames& msg) {
  const auto it = links_.find(id);
  if (it == links_.end()) return false;
  // Refused: no connection (IMMEDIATE), or the queue full.
  return send_message(it->second.dealer.handle(), msg) == 0;
}

void peer_links::event(const broker_event& e) {
  if (events_) events_(e);
}

}  // namespace scale0::broker_detail
