// SPDX-License-Identifier: Apache-2.0
// The HTTP gateway (docs/http.md). One io_context on one thread owns the acceptor, every HTTP
// connection and the DEALER to the broker; the DEALER's ZMQ_FD is watched by the same reactor, so a
// request goes from the HTTP parser to the broker and its reply back without a thread hop. Here:
// the options, accepting, the deadline sweep, stop/drain/reload and the public class; the
// connections are in session.cpp, the broker link in broker_link.cpp, the metrics in
// gateway_stats.cpp.
#include "scale0/gateway.hpp"

// clang-format off
#include <utility>  // before Asio: Boost 1.74 uses std::exchange without including it
// clang-format on

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <random>

#include "common/host_port.hpp"
#include "gateway_server.hpp"
#include "scale0/error.hpp"
#include "security/curve_socket.hpp"
#include "tls.hpp"

namespace scale0 {

using gateway_detail::server;
struct gateway::impl : server {
  using server::server;
};

namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using clock_type = std::chrono::steady_clock;
using error_code = boost::system::error_code;
using gateway_detail::router;

std::string answer_rejected(unsigned retry_after) {
  const std::string body = "503 Service Unavailable: too many connections\n";
  return "HTTP/1.1 503 Service Unavailable\r\nServer: scale0\r\nContent-Type: text/plain; "
         "charset=utf-8\r\nRetry-After: " +
         std::to_string(retry_after) +
         "\r\nConnection: close\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" +
         body;
}

router make_router(const gateway_options& o) {
  std::vector<gateway_detail::route> parsed;
  for (std::size_t i = 0; i < o.routes.size(); ++i)
    parsed.push_back(gateway_detail::parse_route(o.routes[i], i));
  if (o.default_service.size() > protocol::max_service_name)
    throw error(status::bad_request, "default-service must be at most 255 bytes");
  return router(std::move(parsed), o.default_service);
}

// The rules in force, for the status page.
void publish_rules(const router& r, gateway_detail::gateway_stats& stats) {
  std::vector<gateway_detail::route_stats::rule> rules;
  for (const auto& x : r.routes())
    rules.push_back({x.name, x.host, x.prefix, x.service, x.timeout.count()});
  stats.routes.set_rules(std::move(rules));
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
  error_code ec;
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
    stats.listen = opt.listen;
    stats.broker = opt.broker;
    publish_rules(*routes, stats);
    metrics::metrics_server::handlers h;
    h.metrics = [this]() -> std::optional<std::string> { return stats.render(); };
    h.ready = [this] { return !drain_requested.load(); };
    h.status = [this]() -> std::optional<std::string> {
      return stats.status_json(drain_requested.load());
    };
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
  acceptor.async_accept([this](error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted || !acceptor.is_open()) return;
    if (ec) {
      // Out of descriptors or memory: try again shortly rather than spin.
      if (opt.on_event) opt.on_event("accept failed: " + ec.message());
      accept_retry.expires_after(std::chrono::milliseconds(50));
      accept_retry.async_wait([this](error_code e) {
        if (!e) accept();
      });
      return;
    }
    error_code ignore;
    socket.set_option(tcp::no_delay(true), ignore);
    ++stats.connections_total;
    if (sessions.size() >= opt.max_connections) {
      ++stats.connections_rejected;
      if (tls) {  // a plain-text 503 means nothing to a TLS client, and a handshake costs CPU
        error_code e;
        socket.close(e);
        return accept();
      }
      auto s = std::make_shared<tcp::socket>(std::move(socket));
      auto text = std::make_shared<std::string>(answer_rejected(opt.retry_after));
      asio::async_write(*s, asio::buffer(*text), [s, text](error_code, std::size_t) {
        error_code e;
        s->shutdown(tcp::socket::shutdown_send, e);
        s->close(e);
      });
    } else {
      gateway_detail::start_session(*this, std::move(socket), tls);
    }
    accept();
  });
}

void server::sweep() {
  sweep_timer.expires_after(sweep_interval);
  sweep_timer.async_wait([this](error_code ec) {
    if (ec) return;
    const auto now = clock_type::now();
    for (auto* s : sessions)
      if (s->expired(now)) expired.push_back(s->share());
    for (auto& s : expired) s->expire();  // may close sessions: not while walking the set
    expired.clear();
    sweep();
  });
}

void server::watch_control() {
  control.async_wait(asio::posix::stream_descriptor::wait_read, [this](error_code ec) {
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
      publish_rules(*routes, stats);
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
  error_code ec;
  acceptor.close(ec);
  accept_retry.cancel();
  std::vector<gateway_detail::connection*> now(sessions.begin(), sessions.end());
  for (auto* s : now) s->on_drain();
  drain_deadline.expires_after(opt.drain_timeout);
  drain_deadline.async_wait([this](error_code e) {
    if (!e) io.stop();
  });
  maybe_finish_drain();
}

void server::maybe_finish_drain() {
  if (draining && !shutting_down && sessions.empty()) asio::post(io, [this] { io.stop(); });
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
  error_code ec;
  const auto ep = impl_->acceptor.local_endpoint(ec);
  if (ec) return {};
  return detail::format_host_port(ep.address().to_string(), ep.port());
}

std::string gateway::metrics_endpoint() const {
  return impl_->metrics ? impl_->metrics->endpoint() : std::string();
}

}  // namespace scale0