// SPDX-License-Identifier: Apache-2.0
#include "metrics_server.hpp"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <random>
#include <thread>

#include "common/host_port.hpp"
#include "exposition.hpp"
#include "scale0/error.hpp"
#include "status_page.hpp"

namespace scale0::metrics {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

constexpr int max_connections = 64;
constexpr auto idle_timeout = std::chrono::seconds(10);

// 132 random bits in base64 digits: the page's script and style carry it, and the CSP admits
// only those.
std::string make_nonce() {
  static constexpr char digits[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::random_device rd;  // the system's random source, not a seeded generator
  std::string out;
  for (int i = 0; i < 22; ++i) out += digits[rd() % 64];
  return out;
}

// One keep-alive connection: read a request, answer it, repeat until the peer closes or idles.
class session : public std::enable_shared_from_this<session> {
 public:
  session(tcp::socket socket, const metrics_server::handlers& h, int& open)
      : stream_(std::move(socket)), handlers_(h), open_(open) {
    ++open_;
  }
  ~session() { --open_; }

  void start() { read(); }

 private:
  void read() {
    request_ = {};
    stream_.expires_after(idle_timeout);
    http::async_read(stream_, buffer_, request_,
                     [self = shared_from_this()](beast::error_code ec, std::size_t) {
                       if (!ec) self->respond();
                     });
  }

  void respond() {
    auto res = std::make_shared<http::response<http::string_body>>();
    res->version(request_.version());
    res->keep_alive(request_.keep_alive());
    res->set(http::field::server, "scale0");
    const std::string_view target(request_.target().data(), request_.target().size());
    const std::string_view path = target.substr(0, target.find('?'));
    auto text = [&](http::status st, std::string body,
                    const char* type = "text/plain; charset=utf-8") {
      res->result(st);
      res->set(http::field::content_type, type);
      res->body() = std::move(body);
    };
    if (request_.method() != http::verb::get && request_.method() != http::verb::head) {
      text(http::status::method_not_allowed, "only GET and HEAD\n");
      res->set(http::field::allow, "GET, HEAD");
    } else if (path == "/metrics") {
      if (auto m = handlers_.metrics()) {
        exposition process;
        add_build_info(process);
        add_process_metrics(process);
        text(http::status::ok, std::move(*m) + process.text(),
             "text/plain; version=0.0.4; charset=utf-8");
      } else
        text(http::status::service_unavailable, "the broker did not answer\n");
    } else if (path == "/" && handlers_.status) {
      const std::string nonce = make_nonce();
      text(http::status::ok, status_page_html(nonce), "text/html; charset=utf-8");
      res->set("Content-Security-Policy", status_page_csp(nonce));
      res->set("X-Frame-Options", "DENY");
      res->set("Referrer-Policy", "no-referrer");
    } else if (path == "/status.json" && handlers_.status) {
      if (auto j = handlers_.status())
        text(http::status::ok, std::move(*j), "application/json");
      else
        text(http::status::service_unavailable, "not answered in time\n");
      res->set("Content-Security-Policy", "default-src 'none'; sandbox");
    } else if (path == "/healthz") {
      // Alive means the event loop answers, not just that this thread runs.
      if (handlers_.metrics())
        text(http::status::ok, "ok\n");
      else
        text(http::status::service_unavailable, "event loop not answering\n");
    } else if (path == "/readyz") {
      if (handlers_.ready())
        text(http::status::ok, "ready\n");
      else
        text(http::status::service_unavailable, "draining\n");
    } else {
      text(http::status::not_found, handlers_.status
                                        ? "not found: try /, /status.json, /metrics, /healthz or "
                                          "/readyz\n"
                                        : "not found: try /metrics, /healthz or /readyz\n");
    }
    // What is here changes every second and says how the system runs: never kept, never sniffed.
    res->set(http::field::cache_control, "no-store");
    res->set("X-Content-Type-Options", "nosniff");
    res->prepare_payload();
    if (request_.method() == http::verb::head) {  // same headers, no body
      const auto length = res->body().size();
      res->body().clear();
      res->content_length(length);
    }
    http::async_write(stream_, *res,
                      [self = shared_from_this(), res](beast::error_code ec, std::size_t) {
                        if (!ec && res->keep_alive()) self->read();
                      });
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  http::request<http::string_body> request_;
  const metrics_server::handlers& handlers_;
  int& open_;
};

}  // namespace

struct metrics_server::impl {
  impl(const std::string& listen, handlers h) : handlers_(std::move(h)), acceptor(io) {
    const auto hp = detail::parse_host_port(listen, "metrics listen address");
    boost::system::error_code ec;
    const auto address = asio::ip::make_address(hp.host, ec);
    if (ec) throw error(status::bad_request, "invalid metrics listen address " + listen);
    const tcp::endpoint ep(address, hp.port);
    acceptor.open(ep.protocol(), ec);
    if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor.bind(ep, ec);
    if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec)
      throw error(status::unavailable,
                  "cannot listen for metrics on " + listen + ": " + ec.message());
    accept();
    thread = std::thread([this] { io.run(); });
  }

  ~impl() {
    io.stop();
    thread.join();
  }

  void accept() {
    acceptor.async_accept([this](beast::error_code ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted) return;
      if (!ec) {
        if (open < max_connections) {
          std::make_shared<session>(std::move(socket), handlers_, open)->start();
        }  // else: over the cap, the socket closes here
      }
      accept();
    });
  }

  // Sessions still queued in `io` are destroyed with it and touch `handlers_` and `open`: both
  // are declared first so they outlive it.
  handlers handlers_;
  int open = 0;  // touched only on the io thread
  asio::io_context io{1};
  tcp::acceptor acceptor;
  std::thread thread;
};

metrics_server::metrics_server(const std::string& listen, handlers h)
    : impl_(std::make_unique<impl>(listen, std::move(h))) {}
metrics_server::~metrics_server() = default;

std::string metrics_server::endpoint() const {
  const auto ep = impl_->acceptor.local_endpoint();
  return detail::format_host_port(ep.address().to_string(), ep.port());
}

}  // namespace scale0::metrics
