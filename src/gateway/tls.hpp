// SPDX-License-Identifier: Apache-2.0
// TLS for the HTTP front door (docs/security.md): a server context made from PEM files, and the
// byte stream a connection reads and writes, plain TCP or TLS over it, chosen per connection.
#pragma once

// clang-format off
#include <utility>  // before Asio: Boost 1.74 uses std::exchange without including it
// clang-format on

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <memory>
#include <optional>
#include <string>

namespace scale0::gateway_detail {

// TLS 1.2 and 1.3 only, ALPN "http/1.1" (a client offering only other protocols is refused with
// no_application_protocol), no renegotiation, no compression. `cert_file` holds the certificate
// chain (leaf first), `key_file` its private key, both PEM. Throws scale0::error (400) naming
// the file and OpenSSL's reason.
std::shared_ptr<boost::asio::ssl::context> make_tls_context(const std::string& cert_file,
                                                            const std::string& key_file);

// The connection's bytes. The TLS layer refers to the socket member: not movable.
class front_stream {
 public:
  using tcp = boost::asio::ip::tcp;
  using tls_stream = boost::asio::ssl::stream<tcp::socket&>;
  using executor_type = tcp::socket::executor_type;

  front_stream(tcp::socket socket, std::shared_ptr<boost::asio::ssl::context> tls)
      : socket_(std::move(socket)), context_(std::move(tls)) {
    if (context_) tls_.emplace(socket_, *context_);
  }
  front_stream(const front_stream&) = delete;
  front_stream& operator=(const front_stream&) = delete;

  executor_type get_executor() { return socket_.get_executor(); }
  tcp::socket& socket() noexcept { return socket_; }
  bool is_tls() const noexcept { return tls_.has_value(); }
  tls_stream& tls() { return *tls_; }

  template <class MutableBuffers, class Handler>
  void async_read_some(const MutableBuffers& buffers, Handler&& handler) {
    if (tls_)
      tls_->async_read_some(buffers, std::forward<Handler>(handler));
    else
      socket_.async_read_some(buffers, std::forward<Handler>(handler));
  }

  template <class ConstBuffers, class Handler>
  void async_write_some(const ConstBuffers& buffers, Handler&& handler) {
    if (tls_)
      tls_->async_write_some(buffers, std::forward<Handler>(handler));
    else
      socket_.async_write_some(buffers, std::forward<Handler>(handler));
  }

 private:
  tcp::socket socket_;
  std::shared_ptr<boost::asio::ssl::context> context_;  // outlives tls_ (a reload replaces it)
  std::optional<tls_stream> tls_;
};

}  // namespace scale0::gateway_detail
