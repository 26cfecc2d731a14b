// SPDX-License-Identifier: Apache-2.0
// One HTTP connection of the gateway (docs/http.md), from the first byte read to the close: the
// request read with Beast's parser and judged by the front door's rules (request_rules.hpp),
// routed, sent to the broker through the server (broker_link.cpp), and the answer written.
#include "session.hpp"

// clang-format off
#include <utility>  // before Asio: Boost 1.74 uses std::exchange without including it
// clang-format on

#include <algorithm>
#include <array>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "gateway_server.hpp"
#include "http/beast_codec.hpp"
#include "http/encoding.hpp"
#include "http/message_parser.hpp"
#include "request_rules.hpp"
#include "routes.hpp"
#include "scale0/error.hpp"
#include "scale0/protocol.hpp"
#include "tls.hpp"

namespace scale0::gateway_detail {
namespace {

namespace beast = boost::beast;
namespace bhttp = beast::http;
using clock_type = std::chrono::steady_clock;

std::string_view sv(beast::string_view s) noexcept {
  return {s.data(), s.size()};
}

// One HTTP connection: read a request, send it to the broker, write the answer, repeat. Requests
// pipelined by the client wait in `buffer_` and are read only after the previous answer is
// written, so answers go out in order.
class session final : public connection, public std::enable_shared_from_this<session> {
 public:
  static constexpr std::size_t chunk_line_limit = 65536;

  session(server& g, tcp::socket socket, std::shared_ptr<asio::ssl::context> tls)
      : g_(g), stream_(std::move(socket), std::move(tls)) {
    g_.sessions.insert(this);
    ++g_.stats.connections_open;
    beast::error_code ec;
    const auto remote = stream_.socket().remote_endpoint(ec);
    if (!ec) peer_ = remote.address().to_string();
  }
  ~session() {
    g_.sessions.erase(this);
    --g_.stats.connections_open;
    g_.maybe_finish_drain();
  }

  void start() {
    if (!stream_.is_tls()) return read_next();
    // The handshake shares the head's deadline: a client that never finishes it is closed then.
    phase_ = phase::handshake;
    arm(g_.opt.header_timeout);
    stream_.tls().async_handshake(asio::ssl::stream_base::server,
                                  [self = shared_from_this()](beast::error_code ec) {
                                    if (self->phase_ == phase::closed) return;
                                    if (ec) {
                                      ++self->g_.stats.tls_handshakes_failed;
                                      return self->close();
                                    }
                                    ++self->g_.stats.tls_handshakes_ok;
                                    self->read_next();
                                  });
  }

  void on_drain() override {
    if (phase_ == phase::handshake) ++g_.stats.tls_handshakes_failed;  // cut short
    if (phase_ == phase::idle || phase_ == phase::handshake) close();
  }

  void on_reply(std::uint16_t code, std::string_view message, const protocol::frames& f,
                std::size_t first) override {
    waiting_ = false;
    --g_.stats.inflight;
    if (code != status::ok) return answer_status(code, message);
    std::string joined;
    std::string_view wire;
    if (f.size() == first + 1) {
      wire = protocol::view(f[first]);
    } else {
      for (std::size_t i = first; i < f.size(); ++i) joined.append(protocol::view(f[i]));
      wire = joined;
    }
    res_ = {};
    if (const std::string problem = http_detail::parse_response_into(wire, res_, head_);
        !problem.empty())
      return answer_error(bhttp::status::bad_gateway,
                          "invalid response from the worker: " + problem);
    if (connect_ && res_.result_int() >= 200 && res_.result_int() < 300)
      return answer_error(bhttp::status::bad_gateway,
                          "a 2xx answer to CONNECT opens a tunnel; the gateway carries none");
    if (res_.result_int() < 200)  // 1xx is not a final answer, and the gateway upgrades nothing
      return answer_error(
          bhttp::status::bad_gateway,
          "invalid response from the worker: interim status " + std::to_string(res_.result_int()));
    res_.version(version_);
    if (!head_) res_.prepare_payload();
    res_.set("X-Request-Id", request_id_);
    write_response();
  }

  bool expired(clock_type::time_point now) const override { return deadline_ <= now; }
  void expire() override {
    disarm();
    on_timeout();
  }

  std::shared_ptr<connection> share() override { return shared_from_this(); }

  // The broker never answered within the deadline (plus a grace second).
  void on_broker_silent() {
    waiting_ = false;
    --g_.stats.inflight;
    answer_error(bhttp::status::gateway_timeout, "no answer from the broker");
  }

 private:
  enum class phase { handshake, idle, head, body, waiting, writing, lingering, closed };

  // The deadline of the current phase. The gateway's sweep checks every connection's deadline a
  // few times a second: a request then costs no timer syscalls and no cancelled-wait dispatches.
  void arm(std::chrono::milliseconds d) { deadline_ = clock_type::now() + d; }
  void disarm() { deadline_ = clock_type::time_point::max(); }

  void on_timeout() {
    switch (phase_) {
      case phase::handshake:
        ++g_.stats.tls_handshakes_timed_out;
        return close();
      case phase::idle:
      case phase::writing:
      case phase::lingering:
        return close();
      case phase::head:
      case phase::body:
        if (timed_out_) return close();  // the cancel below found no read to abort
        timed_out_ = true;
        // The read completes with operation_aborted, then 408 is written. A read completion
        // already queued escapes the cancel and the composed read may start another: the
        // deadline stays armed so that one is cut too.
        stream_.socket().cancel();
        arm(std::chrono::seconds(1));
        return;
      case phase::waiting: {
        // The broker always answers by the deadline; silence past it means it is gone.
        auto& pending = g_.pending;
        if (auto it = pending.find(id_); it != pending.end()) {
          const auto keep = it->second;  // *this: erasing the entry must not destroy it
          pending.erase(it);
          on_broker_silent();
        }
        return;
      }
      case phase::closed:
        return;
    }
  }

  void read_next() {
    if (g_.draining) return linger();  // pipelined requests may be unread: no reset
    phase_ = phase::idle;
    if (buffer_.size() > 0) return read_head();
    arm(g_.opt.idle_timeout);
    stream_.async_read_some(buffer_.prepare(4096),
                            [self = shared_from_this()](beast::error_code ec, std::size_t n) {
                              if (ec || self->phase_ == phase::closed) return self->close();
                              self->buffer_.commit(n);
                              self->read_head();
                            });
  }

  void read_head() {
    phase_ = phase::head;
    started_ = clock_type::now();
    timed_out_ = false;  // what the last request left must not shape this one's errors
    head_ = false;
    version_ = 11;
    request_id_.clear();
    label_ = "none";
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(g_.opt.max_header));
    // Beast bounds the head, and the body by its chunk sizes, but not a chunk line or the trailer
    // section: it waits for their end with the bytes in the buffer. Bounding the buffer bounds
    // them (body bytes are consumed as they come).
    buffer_.max_size(std::max(buffer_.size(), g_.opt.max_header + chunk_line_limit));
    parser_->body_limit(g_.opt.max_body);
    arm(g_.opt.header_timeout);
    bhttp::async_read_header(stream_, buffer_, *parser_,
                             [self = shared_from_this()](beast::error_code ec, std::size_t) {
                               if (self->phase_ == phase::closed) return;
                               if (ec) return self->on_read_error(ec);
                               self->on_head();
                             });
  }

  void on_head() {
    auto& req = parser_->get();
    version_ = req.version() == 10 ? 10 : 11;
    head_ = req.method() == bhttp::verb::head;
    fields_.clear();
    for (const auto& f : req) fields_.push_back({sv(f.name_string()), sv(f.value())});
    keep_alive_ = gateway_detail::keep_alive(fields_, version_);  // every Connection field counts
    const auto given_id = sv(req["X-Request-Id"]);
    request_id_ =
        http_detail::valid_request_id(given_id) ? std::string(given_id) : fresh_request_id();
    label_ = "none";
    // What the front door accepts (docs/http.md), decided on the header section alone.
    if (auto refused =
            gateway_detail::admit_head(sv(req.method_string()), sv(req.target()), req.version(),
                                       fields_, parser_->chunked(), target_))
      return refuse(refused);
    connect_ = target_.form == gateway_detail::target_form::authority;
    routes_ = g_.routes;  // label_ points into it until the answer is recorded
    choice_ = routes_->choose(target_.host, target_.path, connect_);
    label_ = choice_.label;
    if (choice_.connect_refused) {
      return answer_error(bhttp::status::method_not_allowed, choice_.problem);
    }
    if (choice_.service.empty()) return answer_error(bhttp::status::bad_request, choice_.problem);
    if (const auto length = parser_->content_length(); length && *length > g_.opt.max_body)
      return answer_error(bhttp::status::payload_too_large,
                          "the body is over " + std::to_string(g_.opt.max_body) + " bytes");
    if (parser_->is_done()) return on_request();
    if (version_ == 11 && target_.wants_continue) {
      phase_ = phase::writing;
      arm(g_.opt.send_timeout);
      static constexpr std::string_view go_on = "HTTP/1.1 100 Continue\r\n\r\n";
      return asio::async_write(stream_, asio::buffer(go_on.data(), go_on.size()),
                               [self = shared_from_this()](beast::error_code ec, std::size_t) {
                                 if (ec) return self->close();
                                 self->read_body();
                               });
    }
    read_body();
  }

  void refuse(const gateway_detail::refusal& r) {
    answer_error(static_cast<bhttp::status>(r.status), r.problem);
  }

  void read_body() {
    phase_ = phase::body;
    arm(g_.opt.body_timeout);
    bhttp::async_read(stream_, buffer_, *parser_,
                      [self = shared_from_this()](beast::error_code ec, std::size_t) {
                        if (ec) return self->on_read_error(ec);
                        self->on_request();
                      });
  }

  void on_read_error(beast::error_code ec) {
    keep_alive_ = false;
    if (timed_out_) {
      return answer_error(bhttp::status::request_timeout, phase_ == phase::head
                                                              ? "the request head took too long"
                                                              : "the request body took too long");
    }
    if (ec == bhttp::error::header_limit)
      return answer_error(
          bhttp::status::request_header_fields_too_large,
          "the request head is over " + std::to_string(g_.opt.max_header) + " bytes");
    if (ec == bhttp::error::buffer_overflow)
      return answer_error(bhttp::status::bad_request,
                          "a chunk line or the trailer section is over " +
                              std::to_string(g_.opt.max_header + chunk_line_limit) + " bytes");
    if (ec == bhttp::error::body_limit)
      return answer_error(bhttp::status::payload_too_large,
                          "the body is over " + std::to_string(g_.opt.max_body) + " bytes");
    if (ec == asio::error::eof || ec == bhttp::error::partial_message ||
        ec == asio::error::connection_reset || ec == asio::error::operation_aborted)
      return close();  // the client went away
    answer_error(bhttp::status::bad_request, "malformed request: " + ec.message());
  }

  void on_request() {
    disarm();
    phase_ = phase::waiting;  // the whole request is read: the connection is in step
    auto& req = parser_->get();
    if (const auto dropped = parser_->trailer_fields(); dropped > 0)
      g_.stats.trailer_fields_dropped += dropped;
    if (connect_) keep_alive_ = false;  // no tunnel follows, whatever the answer
    if (g_.draining) {
      keep_alive_ = false;
      return answer_error(bhttp::status::service_unavailable, "the gateway is shutting down");
    }
    if (g_.pending.size() >= g_.opt.max_inflight)
      return answer_error(bhttp::status::service_unavailable, "too many requests in flight");

    gateway_detail::encode_options eo;
    eo.peer = peer_;
    eo.scheme = stream_.is_tls() ? "https" : "http";
    eo.trusted = g_.trusted.contains(peer_);
    eo.keep_underscores = g_.opt.underscores_in_headers;
    eo.request_id = request_id_;
    gateway_detail::encode_request(sv(req.method_string()), target_, fields_, req.body(), eo,
                                   wire_);
    const auto timeout = choice_.timeout.count() > 0 ? choice_.timeout : g_.opt.timeout;
    id_ = g_.next_id++;
    if (!g_.send_request(id_, choice_.service, timeout, wire_))
      return answer_error(bhttp::status::service_unavailable, "the broker is not taking requests");
    g_.pending.emplace(id_, shared_from_this());
    ++g_.stats.inflight;
    waiting_ = true;
    arm(timeout + std::chrono::seconds(1));
  }

  // A non-200 status from the broker or the worker, mapped as docs/http.md says.
  void answer_status(std::uint16_t code, std::string_view message) {
    std::string text = message.empty() ? std::string(reason_phrase(code)) : std::string(message);
    const unsigned http = http_detail::http_status_for(code);
    if (http == 502 && code != status::worker_lost)
      text = "unexpected status " + std::to_string(code) + ": " + text;
    answer_error(static_cast<bhttp::status>(http), text);
  }

  void answer_error(bhttp::status code, std::string_view text) {
    disarm();
    res_ = {};
    res_.version(version_);
    res_.result(code);
    res_.set(bhttp::field::content_type, "text/plain; charset=utf-8");
    if (code == bhttp::status::service_unavailable)
      res_.set(bhttp::field::retry_after, std::to_string(g_.opt.retry_after));
    if (code == bhttp::status::method_not_allowed)
      res_.set(bhttp::field::allow, "GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH, TRACE");
    res_.set("X-Request-Id", request_id_.empty() ? fresh_request_id() : request_id_);
    std::string body = std::to_string(static_cast<unsigned>(code));
    body.append(" ")
        .append(sv(bhttp::obsolete_reason(code)))
        .append(": ")
        .append(text)
        .append("\n");
    res_.body() = std::move(body);
    res_.prepare_payload();
    if (head_) {
      const auto length = res_.body().size();
      res_.body().clear();
      res_.content_length(length);
    }
    // After a broken or refused request the connection cannot be trusted to be in step.
    if (phase_ == phase::head || phase_ == phase::body || code == bhttp::status::payload_too_large)
      keep_alive_ = false;
    write_response();
  }

  void write_response() {
    if (g_.draining) keep_alive_ = false;
    res_.keep_alive(keep_alive_);
    res_.set(bhttp::field::server, "scale0");
    phase_ = phase::writing;
    timed_out_ = false;
    arm(g_.opt.send_timeout);
    bhttp::async_write(stream_, res_,
                       [self = shared_from_this()](beast::error_code ec, std::size_t) {
                         self->disarm();
                         const auto took = clock_type::now() - self->started_;
                         self->g_.stats.record(self->label_, self->res_.result_int(), took);
                         self->started_ = {};
                         if (ec) return self->close();
                         if (!self->keep_alive_) return self->linger();
                         self->read_next();
                       });
  }

  // After a last answer: half-close, then read and discard what the client still sends (a body
  // we refused, pipelined requests) for a moment, so closing does not reset the connection
  // before the client has read the answer.
  void linger() {
    phase_ = phase::lingering;
    arm(std::chrono::seconds(1));
    if (stream_.is_tls()) {
      // close_notify, then the client's (or its EOF, or the deadline). A client still sending
      // (a refused body, pipelined requests) fails the shutdown: then as for plain TCP, so that
      // closing with its bytes unread does not reset the connection before it read the answer.
      return stream_.tls().async_shutdown([self = shared_from_this()](beast::error_code ec) {
        if (!ec || self->phase_ == phase::closed) return self->close();
        self->half_close_and_discard();
      });
    }
    half_close_and_discard();
  }
  void half_close_and_discard() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    if (ec) return close();
    discard();
  }
  void discard() {
    static std::array<char, 4096> sink;  // the data is thrown away: one buffer serves everyone
    stream_.socket().async_read_some(
        asio::buffer(sink), [self = shared_from_this()](beast::error_code ec, std::size_t n) {
          self->discarded_ += n;
          if (ec || self->discarded_ > (1u << 20)) return self->close();
          self->discard();
        });
  }

  void close() {
    if (phase_ == phase::closed) return;
    const auto keep = shared_from_this();  // erasing the pending entry must not destroy *this
    phase_ = phase::closed;
    disarm();
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    stream_.socket().close(ec);
    if (waiting_) {  // the client left while the broker works: forget the request
      waiting_ = false;
      --g_.stats.inflight;
      g_.pending.erase(id_);
    }
  }

  std::string fresh_request_id() {
    char buf[40];
    std::snprintf(buf, sizeof buf, "%016llx-%llx",
                  static_cast<unsigned long long>(g_.request_id_seed),
                  static_cast<unsigned long long>(++g_.request_id_count));
    return buf;
  }

  server& g_;
  gateway_detail::front_stream stream_;
  clock_type::time_point deadline_ = clock_type::time_point::max();
  beast::flat_buffer buffer_;
  std::optional<http_detail::message_parser<true>> parser_;
  std::vector<gateway_detail::field_ref> fields_;  // the header section, into *parser_
  gateway_detail::request_target target_;
  route_choice choice_;
  bool connect_ = false;
  http_detail::beast_response res_;
  std::string wire_;
  std::string peer_;
  std::string request_id_;
  std::string_view label_ = "none";
  std::shared_ptr<const router> routes_;
  clock_type::time_point started_{};
  std::uint64_t id_ = 0;
  std::size_t discarded_ = 0;
  unsigned version_ = 11;
  phase phase_ = phase::idle;
  bool keep_alive_ = true;
  bool head_ = false;
  bool timed_out_ = false;
  bool waiting_ = false;
};

}  // namespace

void start_session(server& g, tcp::socket socket, std::shared_ptr<asio::ssl::context> tls) {
  std::make_shared<session>(g, std::move(socket), std::move(tls))->start();
}

}  // namespace scale0::gateway_detail
