// SPDX-License-Identifier: Apache-2.0
// The HTTP sidecar's Beast half: encoded requests go to an HTTP/1.1 app over pooled keep-alive
// connections, the app's responses come back in the encoding (docs/http.md).
//
// Each connection owns an io_context and drives Beast's asynchronous operations to completion on
// the calling thread: that is a synchronous call with a deadline (tcp_stream's expiry), which the
// synchronous Beast calls cannot give.
#include <poll.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <cctype>
#include <charconv>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "beast_codec.hpp"
#include "encoding.hpp"
#include "message_parser.hpp"
#include "scale0/error.hpp"
#include "scale0/http.hpp"
#include "scale0/http_sidecar.hpp"

namespace scale0::http {
namespace {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
using steady = std::chrono::steady_clock;

std::string_view sv(beast::string_view s) noexcept {
  return {s.data(), s.size()};
}

bool visible_ascii(std::string_view s) {
  for (const char c : s)
    if (static_cast<unsigned char>(c) <= ' ' || static_cast<unsigned char>(c) >= 127) return false;
  return true;
}

// One connection to the app. Not shared: a request takes it from the pool and gives it back.
struct app_connection {
  asio::io_context ioc{1};
  beast::tcp_stream stream{ioc};
  beast::flat_buffer buffer;

  bool open() const { return stream.socket().is_open(); }
  // An idle connection has nothing to read: readable means the app closed it (or broke it).
  bool closed_by_peer() {
    pollfd p{stream.socket().native_handle(), POLLIN, 0};
    return ::poll(&p, 1, 0) != 0;
  }
  void close() {
    beast::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream.close();
    buffer.clear();
  }
};

// Runs one asynchronous operation to completion on the connection's own io_context, so the
// stream's expiry bounds it.
template <class Start>
beast::error_code run_op(app_connection& c, Start&& start) {
  beast::error_code result = asio::error::would_block;
  start([&result](beast::error_code ec, auto&&...) { result = ec; });
  c.ioc.restart();
  c.ioc.run();
  return result;
}

beast::error_code connect(app_connection& c, const app_url& app, steady::time_point deadline) {
  c.close();
  tcp::resolver resolver(c.ioc);
  beast::error_code ec;
  const auto endpoints = resolver.resolve(app.host, std::to_string(app.port), ec);
  if (ec) return ec;
  c.stream.expires_at(deadline);
  ec = run_op(c, [&](auto handler) { c.stream.async_connect(endpoints, std::move(handler)); });
  if (!ec) c.stream.socket().set_option(tcp::no_delay(true), ec);
  return ec;
}

// Trailer fields of the app's chunked responses are dropped, never promoted to header fields.
using response_parser = http_detail::message_parser<false>;

// Sends `req` and reads one final response into `parser` (1xx interim responses are skipped).
beast::error_code exchange(app_connection& c, http_detail::beast_request& req,
                           std::unique_ptr<response_parser>& parser, const forward_options& o,
                           steady::time_point deadline) {
  const bool head = req.method() == bhttp::verb::head;
  c.stream.expires_at(deadline);
  beast::error_code ec =
      run_op(c, [&](auto handler) { bhttp::async_write(c.stream, req, std::move(handler)); });
  if (ec) return ec;
  for (int interim = 0; interim < 8; ++interim) {
    parser = std::make_unique<response_parser>();
    // A chunk line or trailer section is bounded only by the buffer (the head and the chunk
    // sizes by the parser's limits).
    c.buffer.max_size(std::max(c.buffer.size(), o.max_response_header + 65536));
    parser->body_limit(o.max_response_body);
    parser->header_limit(static_cast<std::uint32_t>(o.max_response_header));
    if (head) parser->skip(true);
    // The head first: framing the front door will refuse is judged before any body is read,
    // not after waiting for a close that a keep-alive app never sends.
    ec = run_op(c, [&](auto handler) {
      bhttp::async_read_header(c.stream, c.buffer, *parser, std::move(handler));
    });
    if (ec) return ec;
    if (!http_detail::framing_problem(parser->get(), parser->chunked()).empty())
      return bhttp::error::bad_transfer_encoding;
    if (!parser->is_done())
      ec = run_op(c, [&](auto handler) {
        bhttp::async_read(c.stream, c.buffer, *parser, std::move(handler));
      });
    if (ec) return ec;
    const unsigned code = parser->get().result_int();
    if (code >= 200 || code == 101) return ec;
  }
  return bhttp::error::bad_status;
}

// Methods a client may repeat (RFC 9110, 9.2.2).
bool idempotent(bhttp::verb v) {
  using bhttp::verb;
  return v == verb::get || v == verb::head || v == verb::options || v == verb::trace ||
         v == verb::put || v == verb::delete_;
}

// The app closed a keep-alive connection under our request before answering anything.
bool stale(const beast::error_code& ec) {
  return ec == bhttp::error::end_of_stream || ec == asio::error::eof ||
         ec == asio::error::connection_reset || ec == asio::error::broken_pipe ||
         ec == asio::error::connection_aborted;
}

// The request as the app should see it: under the base path, without hop-by-hop fields, Host as
// the client sent it (or the app's own when the client sent none).
void prepare(http_detail::beast_request& req, const app_url& app) {
  if (!app.base_path.empty() && !req.target().empty() && req.target().front() == '/')
    req.target(app.base_path + std::string(sv(req.target())));
  const std::vector<std::string> listed = http_detail::connection_listed(req);
  for (auto it = req.begin(); it != req.end();) {
    const std::string_view name = sv(it->name_string());
    bool drop = hop_by_hop(name);
    for (const auto& l : listed) drop = drop || http_detail::iequals(name, l);
    it = drop ? req.erase(it) : std::next(it);
  }
  if (req.find(bhttp::field::host) == req.end()) req.set(bhttp::field::host, app.authority());
  req.version(11);
  req.keep_alive(true);
  req.prepare_payload();
}

// Shared by the copies of the handler: the app's address and the idle connections.
class forwarder {
 public:
  explicit forwarder(forward_options o)
      : options_(std::move(o)), app_(parse_app_url(options_.url)) {}

  job_result forward(job& j) {
    http_detail::beast_request req;
    if (auto problem = http_detail::parse_request_into(j.text(), req); !problem.empty())
      return job_result::failure(status::bad_request, "not an encoded HTTP request: " + problem);
    prepare(req, app_);
    const bool head = req.method() == bhttp::verb::head;
    const auto timeout = j.time_left.count() > 0 ? j.time_left : options_.default_timeout;
    const auto deadline = steady::now() + timeout;
    for (int attempt = 0;; ++attempt) {
      std::unique_ptr<app_connection> c = take();
      if (c->open() && c->closed_by_peer()) c->close();
      const bool reused = c->open();
      if (!reused) {
        if (auto ec = connect(*c, app_, deadline))
          return ec == beast::error::timeout
                     ? app_down(status::deadline, "cannot connect to the app at " +
                                                      app_.authority() + " within " +
                                                      std::to_string(timeout.count()) + " ms")
                     : app_down(status::worker_lost, "cannot connect to the app at " +
                                                         app_.authority() + ": " + ec.message());
      }
      std::unique_ptr<response_parser> parser;
      const beast::error_code ec = exchange(*c, req, parser, options_, deadline);
      if (!ec) {
        if (std::string problem = http_detail::framing_problem(parser->get(), parser->chunked());
            !problem.empty()) {
          c->close();  // what follows on this connection cannot be trusted either
          return job_result::failure(
              status::worker_lost,
              "the app at " + app_.authority() + " answered with unusable framing: " + problem);
        }
        // A 101 or an answer to CONNECT may have turned the connection into a tunnel.
        const bool keep = !parser->need_eof() && parser->get().keep_alive() &&
                          c->buffer.size() == 0 && parser->get().result_int() != 101 &&
                          req.method() != bhttp::verb::connect;
        std::string wire = http_detail::encode_app_response(parser->get(), head);
        if (keep) give_back(std::move(c));
        return job_result::ok(wire);
      }
      const bool got_some = parser && parser->got_some();
      c->close();
      if (reused && attempt == 0 && !got_some && stale(ec) && idempotent(req.method())) continue;
      return failed(ec, timeout);
    }
  }

 private:
  job_result failed(const beast::error_code& ec, std::chrono::milliseconds timeout) {
    if (ec == bhttp::error::body_limit)
      return job_result::failure(status::worker_lost,
                                 "the app's response body is larger than " +
                                     std::to_string(options_.max_response_body) + " bytes");
    if (ec == bhttp::error::header_limit)
      return job_result::failure(status::worker_lost,
                                 "the app's response header is larger than " +
                                     std::to_string(options_.max_response_header) + " bytes");
    // The client's deadline: 504, as the broker answers at that same moment.
    if (ec == beast::error::timeout)
      return app_down(status::deadline, "the app at " + app_.authority() +
                                            " did not answer within " +
                                            std::to_string(timeout.count()) + " ms");
    if (ec.category() == bhttp::make_error_code(bhttp::error::end_of_stream).category() &&
        ec != bhttp::error::end_of_stream && ec != bhttp::error::partial_message)
      return job_result::failure(status::worker_lost,
                                 "the app at " + app_.authority() +
                                     " answered something that is not HTTP: " + ec.message());
    return app_down(status::worker_lost,
                    "the app at " + app_.authority() + " failed: " + ec.message());
  }

  job_result app_down(std::uint16_t code, std::string what) {
    if (options_.on_app_error) options_.on_app_error(what);
    return job_result::failure(code, std::move(what));
  }

  std::unique_ptr<app_connection> take() {
    {
      std::lock_guard lock(mu_);
      if (!idle_.empty()) {
        auto c = std::move(idle_.back());
        idle_.pop_back();
        return c;
      }
    }
    return std::make_unique<app_connection>();
  }

  void give_back(std::unique_ptr<app_connection> c) {
    std::lock_guard lock(mu_);
    idle_.push_back(std::move(c));
  }

  forward_options options_;
  app_url app_;
  std::mutex mu_;
  std::vector<std::unique_ptr<app_connection>> idle_;
};

std::uint16_t parse_port(std::string_view s, bool& ok) {
  unsigned v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  ok = !s.empty() && ec == std::errc{} && end == s.data() + s.size() && v >= 1 && v <= 65535;
  return static_cast<std::uint16_t>(v);
}

}  // namespace

std::string app_url::authority() const {
  const bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

std::string app_url::text() const {
  return "http://" + authority() + base_path;
}

app_url parse_app_url(std::string_view url) {
  const auto bad = [url](const std::string& why) {
    return error(status::bad_request, "bad URL '" + std::string(url) + "': " + why +
                                          " (expected http://host:port[/base-path])");
  };
  constexpr std::string_view scheme = "http://";
  if (url.size() >= 8 && http_detail::iequals(url.substr(0, 8), "https://"))
    throw bad("https is not supported");
  if (url.size() < scheme.size() || !http_detail::iequals(url.substr(0, scheme.size()), scheme))
    throw bad("it must start with http://");
  if (!visible_ascii(url)) throw bad("spaces or control characters");
  const std::string_view rest = url.substr(scheme.size());
  const std::size_t slash = std::min(rest.find('/'), rest.size());
  const std::string_view authority = rest.substr(0, slash);
  std::string_view path = rest.substr(slash);
  if (rest.find_first_of("?#") != std::string_view::npos) throw bad("no query or fragment");
  if (authority.find('@') != std::string_view::npos) throw bad("no user info");
  app_url out;
  std::string_view host;
  std::string_view port;
  bool has_port = false;
  if (!authority.empty() && authority.front() == '[') {
    const std::size_t close = authority.find(']');
    if (close == std::string_view::npos) throw bad("unclosed '['");
    host = authority.substr(1, close - 1);
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty() && after.front() != ':') throw bad("unexpected text after ']'");
    has_port = !after.empty();
    if (has_port) port = after.substr(1);
  } else {
    const std::size_t colon = authority.find(':');
    host = authority.substr(0, colon);
    has_port = colon != std::string_view::npos;
    if (has_port) port = authority.substr(colon + 1);
    if (port.find(':') != std::string_view::npos) throw bad("IPv6 addresses go in [brackets]");
  }
  if (host.empty()) throw bad("no host");
  if (has_port) {
    bool ok = false;
    out.port = parse_port(port, ok);
    if (!ok) throw bad("the port must be 1-65535");
  }
  while (!path.empty() && path.back() == '/') path.remove_suffix(1);
  out.host = std::string(host);
  out.base_path = std::string(path);
  return out;
}

job_handler make_http_forwarder(forward_options options) {
  auto f = std::make_shared<forwarder>(std::move(options));
  return [f](job& j) { return f->forward(j); };
}

std::string probe_app(const probe_options& o) {
  const app_url app = parse_app_url(o.url);
  if (!o.health_path.empty() && (o.health_path.front() != '/' || !visible_ascii(o.health_path)))
    throw error(status::bad_request,
                "bad health path '" + o.health_path + "': a path starting with '/', no spaces");
  const auto deadline = steady::now() + o.timeout;
  app_connection c;
  if (auto ec = connect(c, app, deadline))
    return "cannot connect to " + app.authority() + ": " +
           (ec == beast::error::timeout ? "timed out" : ec.message());
  if (o.health_path.empty()) {
    c.close();
    return {};
  }
  http_detail::beast_request req{bhttp::verb::get, o.health_path, 11};
  req.set(bhttp::field::host, app.authority());
  req.set(bhttp::field::user_agent, "scale0-sidecar");
  req.keep_alive(false);
  forward_options limits;
  limits.max_response_body = 1u << 20;
  std::unique_ptr<response_parser> parser;
  const beast::error_code ec = exchange(c, req, parser, limits, deadline);
  c.close();
  if (ec)
    return "GET " + o.health_path + ": " +
           (ec == beast::error::timeout
                ? "no answer within " + std::to_string(o.timeout.count()) + " ms"
                : ec.message());
  const unsigned code = parser->get().result_int();
  if (code < 200 || code >= 400)
    return "GET " + o.health_path + " answered " + std::to_string(code);
  return {};
}

}  // namespace scale0::http
