// SPDX-License-Identifier: Apache-2.0
// The gateway's link to the broker: requests out on the DEALER, replies in and handed to the
// connection waiting for them. The DEALER's ZMQ_FD is watched by the gateway's io_context.
// clang-format off
#include <utility>  // before Asio: Boost 1.74 uses std::exchange without including it
// clang-format on

#include <algorithm>
#include <boost/asio/post.hpp>
#include <iterator>
#include <limits>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "gateway_server.hpp"
#include "scale0/error.hpp"
#include "scale0/protocol.hpp"

namespace scale0::gateway_detail {

using error_code = boost::system::error_code;

bool server::send_request(std::uint64_t id, std::string_view service,
                          std::chrono::milliseconds timeout, const std::string& wire) {
  outbound.clear();
  protocol::append_client_request(outbound, id, service,
                                  static_cast<std::uint32_t>(std::min<long long>(
                                      timeout.count(), std::numeric_limits<std::uint32_t>::max())),
                                  protocol::version_2);
  outbound.emplace_back(wire.data(), wire.size());
  if (box.batchable(outbound)) {  // sent by flush_requests(), at the end of this turn
    if (!box.fits(outbound)) flush_requests();
    box.add(outbound);
    box_ids.push_back(id);
    if (!flush_posted) {
      flush_posted = true;
      asio::post(io, [this] {
        flush_posted = false;
        flush_requests();
      });
    }
    return true;
  }
  flush_requests();  // in order
  bool sent = false;
  try {
    sent = zmq::send_multipart(dealer, outbound, zmq::send_flags::dontwait).has_value();
  } catch (const zmq::error_t& e) {
    if (opt.on_event) opt.on_event(std::string("send to broker failed: ") + e.what());
  }
  after_send();
  return sent;
}

void server::flush_requests() {
  if (box.empty()) return;
  box.take(outbound);
  bool sent = false;
  try {
    sent = zmq::send_multipart(dealer, outbound, zmq::send_flags::dontwait).has_value();
  } catch (const zmq::error_t& e) {
    if (opt.on_event) opt.on_event(std::string("send to broker failed: ") + e.what());
  }
  if (!sent) {  // as a single request refused by the socket: 503 for each
    const protocol::frames none;
    for (const std::uint64_t id : box_ids) {
      const auto it = pending.find(id);
      if (it == pending.end()) continue;
      auto s = std::move(it->second);
      pending.erase(it);
      s->on_reply(status::unavailable, "the broker is not taking requests", none, 0);
    }
  }
  box_ids.clear();
  after_send();
}

// ZMQ_FD is edge-like: it only says "the socket's state may have changed", and a send may consume
// that signal while processing commands. So the fd is waited on only after a receive has said
// EAGAIN (libzmq processes pending commands before saying so, which re-arms the fd), and sends are
// followed by one such receive per turn of the loop, however many requests the turn sent. Asking
// ZMQ_EVENTS per send or per receive would cost a poll() and a getpid() each.
void server::after_send() {
  schedule_read_broker();
}

void server::schedule_read_broker() {
  if (dealer_posted) return;
  dealer_posted = true;
  asio::post(io, [this] {
    dealer_posted = false;
    read_broker();
  });
}

void server::wait_broker() {
  if (dealer_waiting) return;
  dealer_waiting = true;
  dealer_fd.async_wait(asio::posix::stream_descriptor::wait_read, [this](error_code ec) {
    dealer_waiting = false;
    if (!ec) read_broker();
  });
}

void server::read_broker() {
  for (int n = 0; n < 256; ++n) {
    inbound.clear();
    if (!zmq::recv_multipart(dealer, std::back_inserter(inbound), zmq::recv_flags::dontwait))
      return wait_broker();
    if (!protocol::is_batch(inbound, 0)) {
      on_broker_message();
    } else if (batch_in.open(inbound, 0)) {  // its entries, in order
      std::size_t bytes = 0;
      while (batch_in.next(entry, bytes)) {
        inbound.swap(entry);
        on_broker_message();
        inbound.swap(entry);
      }
    }
  }
  schedule_read_broker();  // more may be waiting: let HTTP work run in between, then continue
}

void server::on_broker_message() {
  const auto m = protocol::decode_for_client(inbound);
  if (m.kind != protocol::client_inbound_kind::reply) return;
  const auto it = pending.find(m.id);
  if (it == pending.end()) {
    ++stats.broker_unknown_replies;
    return;
  }
  auto s = std::move(it->second);
  pending.erase(it);
  s->on_reply(m.status, m.message, inbound, m.first);
}

}  // namespace scale0::gateway_detail
