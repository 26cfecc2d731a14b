// SPDX-License-Identifier: Apache-2.0
// What the gateway's loop (gateway_server.hpp) asks of an HTTP connection. The connection itself,
// and Beast's HTTP with it, lives in session.cpp: the loop and the broker link compile without it.
#pragma once

// clang-format off
#include <utility>  // before Asio: Boost 1.74 uses std::exchange without including it
// clang-format on

#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

#include "scale0/protocol.hpp"

namespace boost::asio::ssl {
class context;
}

namespace scale0::gateway_detail {

struct server;

class connection {
 public:
  virtual ~connection() = default;

  // The gateway is draining: an idle connection closes now, a busy one after its answer.
  virtual void on_drain() = 0;
  // The broker's reply to this connection's request: a status, its message, and the body in
  // `f` from `first` on.
  virtual void on_reply(std::uint16_t code, std::string_view message, const protocol::frames& f,
                        std::size_t first) = 0;
  // The deadline of the current phase has passed (checked by the gateway's sweep).
  virtual bool expired(std::chrono::steady_clock::time_point now) const = 0;
  virtual void expire() = 0;
  virtual std::shared_ptr<connection> share() = 0;
};

// A new connection on `socket`, TLS when `tls` is not null, started: it registers itself in the
// server's sessions and leaves them when destroyed.
void start_session(server& g, boost::asio::ip::tcp::socket socket,
                   std::shared_ptr<boost::asio::ssl::context> tls);

}  // namespace scale0::gateway_detail
