// SPDX-License-Identifier: Apache-2.0
// Plain HTTP/1.1 backend of the HTTP comparison (bench/http/run): what nginx balances over, and
// the "direct" path's server. One thread, asynchronous Boost.Beast, keep-alive; GET and HEAD of
// any path get 200 with the same headers and body as bench_http_worker (bench_http.hpp), other
// methods 405. The work per request is the same order as the Scale0 worker's: parse one request,
// build one response.
//
//   bench_http_backend [--listen 127.0.0.1:0]
//
// Prints "ready listen=HOST:PORT" (port 0 picks a free port; the line says which). Stops on
// SIGTERM/SIGINT.
#include <CLI/CLI.hpp>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cstdio>
#include <memory>
#include <string>
#include <utility>  // before Asio: Boost 1.74 uses std::exchange without including it

#include "bench_http.hpp"

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

// One client connection: read a request, write its answer, again while the client keeps it alive.
class session : public std::enable_shared_from_this<session> {
 public:
  explicit session(tcp::socket s) : socket_(std::move(s)) {}

  void read() {
    request_ = {};
    http::async_read(socket_, buffer_, request_,
                     [self = shared_from_this()](beast::error_code ec, std::size_t) {
                       if (!ec) self->answer();
                     });
  }

 private:
  void answer() {
    response_ = {};
    response_.version(request_.version());
    response_.keep_alive(request_.keep_alive());
    const auto method = request_.method();
    if (method == http::verb::get || method == http::verb::head) {
      response_.result(http::status::ok);
      response_.set(
          http::field::content_type,
          beast::string_view(bench::http::content_type.data(), bench::http::content_type.size()));
      response_.body() = bench::http::body;
    } else {
      response_.result(http::status::method_not_allowed);
      response_.set(http::field::allow, "GET, HEAD");
    }
    response_.prepare_payload();
    if (method == http::verb::head) response_.body().clear();  // Content-Length stays
    http::async_write(socket_, response_,
                      [self = shared_from_this()](beast::error_code ec, std::size_t) {
                        if (ec) return;
                        if (self->response_.keep_alive()) {
                          self->read();
                        } else {
                          beast::error_code ignored;
                          self->socket_.shutdown(tcp::socket::shutdown_send, ignored);
                        }
                      });
  }

  tcp::socket socket_;
  beast::flat_buffer buffer_;
  http::request<http::string_body> request_;
  http::response<http::string_body> response_;
};

void accept(tcp::acceptor& acceptor) {
  acceptor.async_accept([&acceptor](beast::error_code ec, tcp::socket s) {
    if (ec == asio::error::operation_aborted) return;
    if (!ec) {
      beast::error_code ignored;
      s.set_option(tcp::no_delay(true), ignored);
      std::make_shared<session>(std::move(s))->read();
    }
    accept(acceptor);
  });
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"HTTP backend for the HTTP comparison benchmark"};
  std::string listen = "127.0.0.1:0";
  app.add_option("--listen", listen, "host:port to listen on (port 0: any free port)")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  const auto colon = listen.rfind(':');
  if (colon == std::string::npos) {
    std::fprintf(stderr, "bench_http_backend: --listen wants host:port, got %s\n", listen.c_str());
    return 2;
  }

  try {
    asio::io_context ioc(1);
    const auto address = asio::ip::make_address(listen.substr(0, colon));
    const auto port = static_cast<unsigned short>(std::stoul(listen.substr(colon + 1)));
    tcp::acceptor acceptor(ioc, tcp::endpoint(address, port));
    asio::signal_set signals(ioc, SIGINT, SIGTERM);
    signals.async_wait([&](beast::error_code, int) { ioc.stop(); });
    accept(acceptor);
    const auto bound = acceptor.local_endpoint();
    std::printf("ready listen=%s:%u\n", bound.address().to_string().c_str(), bound.port());
    std::fflush(stdout);
    ioc.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_http_backend: %s: %s\n", listen.c_str(), e.what());
    return 1;
  }
  return 0;
}
