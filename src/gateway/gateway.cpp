// SPDX-License-Identifier: Apache-2.0
// The HTTP gateway (docs/http.md). One io_context on one thread owns the acceptor, every HTTP
// connection and the DEALER to the broker; the DEALER's ZMQ_FD is watched by the same reactor, so a
// request goes from the HTTP parser to the broker and its reply back without a thread hop.
#include "scale0/gateway.hpp"

// clang-format off
#include <utility>  // before Asio: Boost 1.74 uses std::exchange without including it
// clang-format on

#include <sys/eventfd.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cstdio>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <unordered_map>
#include <unordered_set>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "common/host_port.hpp"
#include "common/text.hpp"
#include "http/beast_codec.hpp"
#include "http/encoding.hpp"
#include "http/message_parser.hpp"
#include "metrics/exposition.hpp"
#include "metrics/latency_histogram.hpp"
#include "metrics/metrics_server.hpp"
#include "request_rules.hpp"
#include "routes.hpp"
#include "scale0/error.hpp"
#include "scale0/protocol.hpp"
#include "security/curve_socket.hpp"
#include "tls.hpp"

namespace scale0 {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;
using clock_type = std::chrono::steady_clock;
using gateway_detail::route_choice;
using gateway_detail::router;

std::string_view sv(beast::string_view s) noexcept {
  return {s.data(), s.size()};
}

// Counters read by the metrics thread; the gateway thread updates them under the mutex.
struct gateway_stats {
  std::mutex mu;
  std::map<std::string, std::map<unsigned, std::uint64_t>, std::less<>> requests;  // route, code
  std::map<std::string, metrics::latency_histogram, std::less<>> latency;          // route
  std::uint64_t connections_total = 0;
  std::uint64_t connections_rejected = 0;
  std::uint64_t broker_unknown_replies = 0;
  std::atomic<std::uint64_t> connections_open{0};
  std::atomic<std::uint64_t> inflight{0};
  std::atomic<std::uint64_t> trailer_fields_dropped{0};
  std::atomic<std::uint64_t> tls_handshakes_ok{0};
  std::atomic<std::uint64_t> tls_handshakes_failed{0};
  std::atomic<std::uint64_t> tls_handshakes_timed_out{0};

  void record(std::string_view route, unsigned code, clock_type::duration took) {
    std::lock_guard lock(mu);
    auto r = requests.find(route);
    if (r == requests.end())
      r = requests.emplace(std::string(route), std::map<unsigned, std::uint64_t>{}).first;
    ++r->second[code];
    auto l = latency.find(route);
    if (l == latency.end())
      l = latency.emplace(std::string(route), metrics::latency_histogram{}).first;
    l->second.record(took);
  }

  std::string render() {
    metrics::exposition e;
    const auto n = [](auto v) { return static_cast<double>(v); };
    std::lock_guard lock(mu);
    e.counter("scale0_gateway_requests_total", "HTTP requests answered, by route and status code.");
    for (const auto& [route, codes] : requests)
      for (const auto& [code, count] : codes)
        e.add(n(count), {{"route", route}, {"code", std::to_string(code)}});
    e.histogram("scale0_gateway_request_duration_seconds",
                "Time from a whole request read to its response written, by route.");
    for (const auto& [route, h] : latency) e.add(h, {{"route", route}});
    e.gauge("scale0_gateway_requests_in_flight", "Requests waiting for the broker.")
        .add(n(inflight.load()));
    e.gauge("scale0_gateway_connections_open", "HTTP connections open now.")
        .add(n(connections_open.load()));
    e.counter("scale0_gateway_connections_total", "HTTP connections accepted.")
        .add(n(connections_total));
    e.counter("scale0_gateway_connections_rejected_total",
              "Connections answered 503 and closed because --max-connections were open.")
        .add(n(connections_rejected));
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
        .add(n(broker_unknown_replies));
    return e.text();
  }
};

class session;

}  // namespace

namespace gateway_detail {
struct server {
  explicit server(gateway_options o);
  ~server();

  void accept();
  void sweep();
  void watch_control();
  void begin_drain();
  void maybe_finish_drain();
  void apply_reload();
  void reload_tls();

  // Broker link.
  bool send_request(std::uint64_t id, std::string_view service, std::chrono::milliseconds timeout,
                    const std::string& wire);
  void wait_broker();
  void read_broker();
  void after_send();
  void schedule_read_broker();
  void on_broker_message();

  // Sessions refer to these until the io_context has destroyed the last of them: declared first.
  gateway_options opt;
  std::shared_ptr<const router> routes;  // replaced whole by a reload
  gateway_detail::trusted_proxies trusted;
  std::shared_ptr<asio::ssl::context> tls;  // null: plain HTTP; replaced whole by a reload
  gateway_stats stats;
  std::unordered_map<std::uint64_t, std::shared_ptr<session>> pending;
  std::unordered_set<session*> sessions;
  bool shutting_down = false;
  bool draining = false;
  asio::io_context io{1};
  tcp::acceptor acceptor{io};
  asio::steady_timer accept_retry{io};
  asio::steady_timer drain_deadline{io};
  asio::steady_timer sweep_timer{io};
  std::chrono::milliseconds sweep_interval{50};
  std::vector<std::shared_ptr<session>> expired;  // reused by every sweep
  int control_fd = -1;  // eventfd: stop()/drain() from any thread or a signal handler
  asio::posix::stream_descriptor control{io};
  std::atomic<bool> stop_requested{false};
  std::atomic<bool> drain_requested{false};
  std::atomic<bool> reload_requested{false};

  zmq::context_t zctx{1};
  zmq::socket_t dealer{zctx, zmq::socket_type::dealer};
  asio::posix::stream_descriptor dealer_fd{io};
  bool dealer_waiting = false;
  bool dealer_posted = false;
  protocol::frames inbound;
  protocol::frames outbound;
  std::uint64_t next_id = 1;
  std::uint64_t request_id_seed = 0;
  std::uint64_t request_id_count = 0;

  std::unique_ptr<metrics::metrics_server> metrics;
};
}  // namespace gateway_detail

using gateway_detail::server;
struct gateway::impl : server {
  using server::server;
};

namespace {

// One HTTP connection: read a request, send it to the broker, write the answer, repeat. Requests
// pipelined by the client wait in `buffer_` and are read only after the previous answer is
// written, so answers go out in order.
class session : public std::enable_shared_from_this<session> {
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

  // The gateway is draining: an idle connection closes now, a busy one after its answer.
  void on_drain() {
    if (phase_ == phase::handshake) ++g_.stats.tls_handshakes_failed;  // cut short
    if (phase_ == phase::idle || phase_ == phase::handshake) close();
  }

  void on_reply(std::uint16_t code, std::string_view message, const protocol::frames& f,
                std::size_t first) {
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

  bool expired(clock_type::time_point now) const { return deadline_ <= now; }
  void expire() {
    disarm();
    on_timeout();
  }

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
          auto keep = it->second;
          pending.erase(it);
          keep->on_broker_silent();
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

std::string answer_rejected(unsigned retry_after) {
  const std::string body = "503 Service Unavailable: too many connections\n";
  return "HTTP/1.1 503 Service Unavailable\r\nServer: scale0\r\nContent-Type: text/plain; "
         "charset=utf-8\r\nRetry-After: " +
         std::to_string(retry_after) +
         "\r\nConnection: close\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" +
         body;
}

}  // namespace

namespace {
router make_router(const gateway_options& o) {
  std::vector<gateway_detail::route> parsed;
  for (std::size_t i = 0; i < o.routes.size(); ++i)
    parsed.push_back(gateway_detail::parse_route(o.routes[i], i));
  if (o.default_service.size() > protocol::max_service_name)
    throw error(status::bad_request, "default-service must be at most 255 bytes");
  return router(std::move(parsed), o.default_service);
}

// A tenth of the shortest timeout, between 5 and 50 ms: timeouts fire within 10% late.
std::chrono::milliseconds sweep_interval_for(const gateway_options& o) {
  std::chrono::milliseconds interval{50};
  for (auto t : {o.header_timeout, o.body_timeout, o.idle_timeout, o.send_timeout, o.timeout})
    interval = std::min(interval, std::max(std::chrono::milliseconds(5), t / 10));
  return interval;
}
}  // namespace

void check_gateway_options(const gateway_options& opt) {
  if (opt.timeout.count() <= 0 || opt.header_timeout.count() <= 0 ||
      opt.body_timeout.count() <= 0 || opt.idle_timeout.count() <= 0 ||
      opt.send_timeout.count() <= 0 || opt.drain_timeout.count() < 0)
    throw error(status::bad_request, "timeouts must be positive");
  constexpr std::chrono::milliseconds longest{std::chrono::hours(24 * 24)};  // about 2^31 ms
  for (auto t : {opt.timeout, opt.header_timeout, opt.body_timeout, opt.idle_timeout,
                 opt.send_timeout, opt.drain_timeout})
    if (t > longest) throw error(status::bad_request, "timeouts are at most 24 days");
  if (opt.max_connections == 0 || opt.max_inflight == 0 || opt.max_header < 64)
    throw error(status::bad_request,
                "max-connections and max-inflight must be at least 1, "
                "max-header at least 64");
  if (opt.max_header > 1 << 20) throw error(status::bad_request, "max-header is at most 1 MiB");
  (void)make_router(opt);
  (void)gateway_detail::trusted_proxies(opt.trusted_proxies);
  if (opt.tls_cert.empty() != opt.tls_key.empty())
    throw error(status::bad_request, "TLS needs both --tls-cert and --tls-key");
  if (!opt.insecure && opt.tls_cert.empty() && !detail::loopback_listen(opt.listen))
    throw error(
        status::bad_request,
        "protected mode: --listen " + opt.listen +
            " serves plain HTTP to other machines; give --tls-cert and --tls-key, listen on "
            "a loopback address behind a TLS proxy, or pass --insecure (see "
            "docs/security.md)");
  if (!opt.insecure && !opt.metrics_listen.empty() && !detail::loopback_listen(opt.metrics_listen))
    throw error(status::bad_request, "protected mode: --metrics-listen " + opt.metrics_listen +
                                         " serves plain HTTP to other machines; bind a loopback "
                                         "address or pass --insecure");
}

server::server(gateway_options o) : opt(std::move(o)) {
  check_gateway_options(opt);
  routes = std::make_shared<const router>(make_router(opt));
  trusted = gateway_detail::trusted_proxies(opt.trusted_proxies);
  if (!opt.tls_cert.empty()) tls = gateway_detail::make_tls_context(opt.tls_cert, opt.tls_key);
  request_id_seed = std::random_device{}() * 0x100000000ull + std::random_device{}();

  const auto hp = detail::parse_host_port(opt.listen, "listen address");
  beast::error_code ec;
  const auto address = asio::ip::make_address(hp.host, ec);
  if (ec) throw error(status::bad_request, "invalid listen address " + opt.listen);
  const tcp::endpoint ep(address, hp.port);
  acceptor.open(ep.protocol(), ec);
  if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(ep, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) throw error(status::unavailable, "cannot listen on " + opt.listen + ": " + ec.message());

  try {
    security::apply_curve_client(dealer, opt.curve);
    dealer.set(zmq::sockopt::linger, 0);
    const int hwm = static_cast<int>(std::min<std::size_t>(opt.max_inflight * 2 + 100, 1 << 30));
    dealer.set(zmq::sockopt::sndhwm, hwm);
    dealer.set(zmq::sockopt::rcvhwm, hwm);
    if (detail::ipv6_endpoint(opt.broker)) dealer.set(zmq::sockopt::ipv6, 1);
    dealer.connect(opt.broker);
  } catch (const zmq::error_t& e) {
    throw error(status::bad_request, "cannot connect to broker " + opt.broker + ": " + e.what());
  }
  const int zfd = ::dup(dealer.get(zmq::sockopt::fd));
  if (zfd < 0) throw error(status::bad_request, "cannot watch the broker socket");
  dealer_fd.assign(zfd);

  control_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (control_fd < 0) throw error(status::bad_request, "cannot create an eventfd");
  control.assign(::dup(control_fd));

  if (!opt.metrics_listen.empty()) {
    metrics::metrics_server::handlers h;
    h.metrics = [this]() -> std::optional<std::string> { return stats.render(); };
    h.ready = [this] { return !drain_requested.load(); };
    metrics = std::make_unique<metrics::metrics_server>(opt.metrics_listen, std::move(h));
  }
  sweep_interval = sweep_interval_for(opt);
  accept();
  sweep();
  watch_control();
  read_broker();  // receives until EAGAIN first: an edge before the first wait is not lost
}

server::~server() {
  metrics.reset();
  shutting_down = true;
  pending.clear();
  if (control_fd >= 0) ::close(control_fd);
}

void server::accept() {
  acceptor.async_accept([this](beast::error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted || !acceptor.is_open()) return;
    if (ec) {
      // Out of descriptors or memory: try again shortly rather than spin.
      if (opt.on_event) opt.on_event("accept failed: " + ec.message());
      accept_retry.expires_after(std::chrono::milliseconds(50));
      accept_retry.async_wait([this](beast::error_code e) {
        if (!e) accept();
      });
      return;
    }
    beast::error_code ignore;
    socket.set_option(tcp::no_delay(true), ignore);
    {
      std::lock_guard lock(stats.mu);
      ++stats.connections_total;
    }
    if (sessions.size() >= opt.max_connections) {
      {
        std::lock_guard lock(stats.mu);
        ++stats.connections_rejected;
      }
      if (tls) {  // a plain-text 503 means nothing to a TLS client, and a handshake costs CPU
        beast::error_code e;
        socket.close(e);
        return accept();
      }
      auto s = std::make_shared<tcp::socket>(std::move(socket));
      auto text = std::make_shared<std::string>(answer_rejected(opt.retry_after));
      asio::async_write(*s, asio::buffer(*text), [s, text](beast::error_code, std::size_t) {
        beast::error_code e;
        s->shutdown(tcp::socket::shutdown_send, e);
        s->close(e);
      });
    } else {
      std::make_shared<session>(*this, std::move(socket), tls)->start();
    }
    accept();
  });
}

void server::sweep() {
  sweep_timer.expires_after(sweep_interval);
  sweep_timer.async_wait([this](beast::error_code ec) {
    if (ec) return;
    const auto now = clock_type::now();
    for (auto* s : sessions)
      if (s->expired(now)) expired.push_back(s->shared_from_this());
    for (auto& s : expired) s->expire();  // may close sessions: not while walking the set
    expired.clear();
    sweep();
  });
}

void server::watch_control() {
  control.async_wait(asio::posix::stream_descriptor::wait_read, [this](beast::error_code ec) {
    if (ec) return;
    std::uint64_t v = 0;
    while (::read(control_fd, &v, sizeof v) > 0) {
    }
    if (stop_requested) return io.stop();
    if (drain_requested && !draining) begin_drain();
    if (reload_requested.exchange(false)) apply_reload();
    watch_control();
  });
}

// On the io thread, like every reader of `opt` and `routes`: no request sees half of each. A
// request already routed keeps its router (and the metrics label that points into it) alive.
void server::apply_reload() {
  std::optional<gateway_options> next;
  try {
    if (opt.on_reload) next = opt.on_reload();
    if (next) {
      check_gateway_options(*next);
      auto next_routes = std::make_shared<const router>(make_router(*next));
      gateway_detail::trusted_proxies next_trusted(next->trusted_proxies);
      next->listen = opt.listen;  // these need a restart
      next->broker = opt.broker;
      next->metrics_listen = opt.metrics_listen;
      if (next->tls_cert.empty() != opt.tls_cert.empty()) {  // so does turning TLS on or off
        next->tls_cert = opt.tls_cert;
        next->tls_key = opt.tls_key;
      }
      next->on_event = std::move(opt.on_event);
      next->on_reload = std::move(opt.on_reload);
      next->on_drain = std::move(opt.on_drain);
      opt = std::move(*next);
      routes = std::move(next_routes);
      trusted = std::move(next_trusted);
      sweep_interval = sweep_interval_for(opt);
    }
  } catch (const std::exception& e) {
    if (opt.on_event)
      opt.on_event(std::string("reload failed; keeping the running configuration: ") + e.what());
  }
  reload_tls();
}

// The certificate and key are read again on every reload, with or without a --config file (a
// renewed certificate is the common case). Connections open keep the context they started with.
void server::reload_tls() {
  if (!tls) return;
  try {
    tls = gateway_detail::make_tls_context(opt.tls_cert, opt.tls_key);
    if (opt.on_event) opt.on_event("TLS certificate and key read again from " + opt.tls_cert);
  } catch (const std::exception& e) {
    if (opt.on_event)
      opt.on_event(std::string("TLS reload failed; keeping the running certificate: ") + e.what());
  }
}

void server::begin_drain() {
  draining = true;
  if (opt.on_drain) opt.on_drain();
  beast::error_code ec;
  acceptor.close(ec);
  accept_retry.cancel();
  std::vector<session*> now(sessions.begin(), sessions.end());
  for (auto* s : now) s->on_drain();
  drain_deadline.expires_after(opt.drain_timeout);
  drain_deadline.async_wait([this](beast::error_code e) {
    if (!e) io.stop();
  });
  maybe_finish_drain();
}

void server::maybe_finish_drain() {
  if (draining && !shutting_down && sessions.empty()) asio::post(io, [this] { io.stop(); });
}

bool server::send_request(std::uint64_t id, std::string_view service,
                          std::chrono::milliseconds timeout, const std::string& wire) {
  outbound.clear();
  protocol::append_client_request(outbound, id, service,
                                  static_cast<std::uint32_t>(std::min<long long>(
                                      timeout.count(), std::numeric_limits<std::uint32_t>::max())),
                                  protocol::version_2);
  outbound.emplace_back(wire.data(), wire.size());
  bool sent = false;
  try {
    sent = zmq::send_multipart(dealer, outbound, zmq::send_flags::dontwait).has_value();
  } catch (const zmq::error_t& e) {
    if (opt.on_event) opt.on_event(std::string("send to broker failed: ") + e.what());
  }
  after_send();
  return sent;
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
  dealer_fd.async_wait(asio::posix::stream_descriptor::wait_read, [this](beast::error_code ec) {
    dealer_waiting = false;
    if (!ec) read_broker();
  });
}

void server::read_broker() {
  for (int n = 0; n < 256; ++n) {
    inbound.clear();
    if (!zmq::recv_multipart(dealer, std::back_inserter(inbound), zmq::recv_flags::dontwait))
      return wait_broker();
    on_broker_message();
  }
  schedule_read_broker();  // more may be waiting: let HTTP work run in between, then continue
}

void server::on_broker_message() {
  const auto m = protocol::decode_for_client(inbound);
  if (m.kind != protocol::client_inbound_kind::reply) return;
  const auto it = pending.find(m.id);
  if (it == pending.end()) {
    std::lock_guard lock(stats.mu);
    ++stats.broker_unknown_replies;
    return;
  }
  auto s = std::move(it->second);
  pending.erase(it);
  s->on_reply(m.status, m.message, inbound, m.first);
}

gateway::gateway(gateway_options options) : impl_(std::make_unique<impl>(std::move(options))) {}
gateway::~gateway() = default;

void gateway::run() {
  impl_->io.run();
}

void gateway::stop() noexcept {
  impl_->stop_requested = true;
  const std::uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(impl_->control_fd, &one, sizeof one);
}

void gateway::drain() noexcept {
  impl_->drain_requested = true;
  const std::uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(impl_->control_fd, &one, sizeof one);
}

void gateway::reload() noexcept {
  impl_->reload_requested = true;
  const std::uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(impl_->control_fd, &one, sizeof one);
}

std::string gateway::endpoint() const {
  beast::error_code ec;
  const auto ep = impl_->acceptor.local_endpoint(ec);
  if (ec) return {};
  return detail::format_host_port(ep.address().to_string(), ep.port());
}

std::string gateway::metrics_endpoint() const {
  return impl_->metrics ? impl_->metrics->endpoint() : std::string();
}

}  // namespace scale0
