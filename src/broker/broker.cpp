// SPDX-License-Identifier: Apache-2.0
// The public, embeddable broker: option checks and a thin shell around the event loop.
#include "scale0/broker.hpp"

#include "common/host_port.hpp"
#include "common/text.hpp"
#include "event_loop.hpp"
#include "protocol/peer_codec.hpp"
#include "scale0/error.hpp"
#include "scale0/protocol.hpp"
#include "scale0/security.hpp"

namespace scale0 {
namespace {

// The family's settings (docs/family.md).
void validate_family(const broker_options& o) {
  auto fail = [](const std::string& what) { throw error(status::bad_request, what); };
  if (o.peer_listen.empty()) {
    if (!o.peers.empty())
      fail("--peer needs a family: give --peer-listen (where the other brokers' links connect)");
    return;
  }
  const bool ipc = o.peer_listen.rfind("ipc://", 0) == 0;
  if (o.peer_listen.rfind("tcp://", 0) != 0 && !ipc)
    fail("invalid --peer-listen '" + o.peer_listen + "': expected tcp://host:port or ipc://path");
  if (!o.peer_secret_key.empty() && !security::valid_z85_key(o.peer_secret_key))
    fail("the peer secret key is not 40 characters of Z85");
  if (!o.insecure && o.peer_secret_key.empty() && !detail::loopback_endpoint(o.peer_listen))
    fail("protected mode: --peer-listen " + o.peer_listen +
         " is reachable from other machines without CURVE: give --peer-cert (the family's "
         "secret certificate, from scale0 keygen), bind a loopback address (or ipc://), or pass "
         "--insecure on a network you trust");
  for (const auto& p : o.peers)
    if (!protocol::peer::valid_endpoint(p))
      fail("invalid --peer '" + escape_text(p) +
           "': expected tcp://host:port (port 1-65535) or ipc://path, at most 255 bytes");
  if (o.peers.size() > o.max_peers)
    fail("more --peer endpoints (" + std::to_string(o.peers.size()) + ") than --max-peers");
  if (o.max_peers < 1 || o.max_peers > 4096) fail("max peers must be 1-4096");
  if (!protocol::peer::valid_family(o.family))
    fail("invalid --family '" + escape_text(o.family) + "': 1-255 bytes of printable UTF-8");
  if (o.fallback_families.size() > protocol::peer::max_fallback_families)
    fail("more than 8 --fallback-family names");
  for (std::size_t i = 0; i < o.fallback_families.size(); ++i) {
    const std::string& f = o.fallback_families[i];
    if (!protocol::peer::valid_family(f))
      fail("invalid --fallback-family '" + escape_text(f) + "': 1-255 bytes of printable UTF-8");
    if (f == o.family) fail("--fallback-family '" + escape_text(f) + "' is this broker's family");
    for (std::size_t k = 0; k < i; ++k)
      if (o.fallback_families[k] == f)
        fail("--fallback-family '" + escape_text(f) + "' is given twice");
  }
  const struct {
    const char* flag;
    const std::string& advertised;
    const std::string& bound;
    const char* bound_flag;
  } advertised[] = {{"--advertise-peer", o.advertise_peer, o.peer_listen, "--peer-listen"},
                    {"--advertise-frontend", o.advertise_frontend, o.frontend, "--frontend"},
                    {"--advertise-backend", o.advertise_backend, o.backend, "--backend"}};
  for (const auto& a : advertised) {
    if (!a.advertised.empty() && !protocol::peer::valid_endpoint(a.advertised))
      fail("invalid " + std::string(a.flag) + " '" + escape_text(a.advertised) +
           "': expected tcp://host:port (port 1-65535) or ipc://path, at most 255 bytes");
    // Other brokers cannot connect to a wildcard: the peer endpoint is what every peer links to;
    // the frontend and backend are what a family with peers tells about this broker.
    const bool needed = &a.advertised == &o.advertise_peer || !o.peers.empty();
    if (needed && a.advertised.empty() && detail::wildcard_endpoint(a.bound))
      fail(std::string(a.bound_flag) + " " + a.bound +
           " binds every address, which other brokers cannot connect to: give " + a.flag +
           " tcp://ADDRESS:PORT, the address they reach this broker at");
  }
}

}  // namespace

void broker_options::validate() const {
  auto fail = [](const std::string& what) { throw error(status::bad_request, what); };
  for (const auto* ep : {&frontend, &backend, &heartbeat})
    if (!insecure && curve_secret_key.empty() && !detail::loopback_endpoint(*ep))
      fail("protected mode: " + *ep +
           " is reachable from other machines and CURVE is off. Make keys with `scale0 keygen "
           "NAME` and give --curve-cert NAME_secret with --worker-keys and --client-keys (see "
           "docs/security.md), bind a loopback address, or pass --insecure");
  if (!insecure && !metrics_listen.empty() && !detail::loopback_listen(metrics_listen))
    fail("protected mode: --metrics-listen " + metrics_listen +
         " serves plain HTTP to other machines; bind a loopback address (and scrape through a "
         "proxy) or pass --insecure");
  if (handshake_timeout.count() <= 0) fail("handshake-timeout must be positive");
  if (curve_secret_key.empty()) {
    if (!worker_keys.empty() || !client_keys.empty() || any_client_key || admin_keys)
      fail(
          "worker, client and admin keys need CURVE: give the broker's certificate "
          "(--curve-cert)");
  } else {
    if (!security::valid_z85_key(curve_secret_key))
      fail("the broker's CURVE secret key is not a 40-character Z85 key");
    if (client_keys.empty() && !any_client_key)
      fail(
          "CURVE is on but no client may connect: give --client-keys FILE (the keys allowed to "
          "call, and what), or --client-keys any (any key: encrypted, not authenticated)");
  }
  for (const auto* ep : {&frontend, &backend, &heartbeat}) {
    const auto sep = ep->find("://");
    const auto scheme = ep->substr(0, sep);
    if (sep == std::string::npos || (scheme != "tcp" && scheme != "ipc" && scheme != "inproc"))
      fail("invalid endpoint '" + *ep + "': expected tcp://host:port, ipc://path or inproc://name");
  }
  if (heartbeat_interval.count() < 10) fail("heartbeat interval must be at least 10 ms");
  if (liveness < 1 || liveness > 100) fail("liveness must be 1-100");
  if (no_worker_timeout.count() < 1) fail("no-worker timeout must be at least 1 ms");
  if (request_timeout.count() < 1) fail("request timeout must be at least 1 ms");
  if (drain_timeout.count() < 0) fail("drain timeout must not be negative");
  if (max_frames < 8) fail("max frames must be at least 8");
  if (max_message_bytes < 1024) fail("max message bytes must be at least 1024");
  if (max_queue < 1) fail("max queue must be at least 1");
  if (max_services < 1) fail("max services must be at least 1");
  if (max_client_inflight < 1) fail("max client in-flight must be at least 1");
  if (mdp_heartbeat_interval.count() < 10) fail("MDP heartbeat interval must be at least 10 ms");
  if (max_heartbeat_interval < heartbeat_interval)
    fail("max heartbeat interval must be at least the heartbeat interval");
  if (max_queue_bytes < 1024) fail("max queue bytes must be at least 1024");
  if (max_total_queue_bytes < max_queue_bytes)
    fail("max total queue bytes must be at least max queue bytes");
  if (max_worker_services < 1 || max_worker_services > protocol::max_services_per_worker)
    fail("max worker services must be 1-64");
  if (service_ttl.count() < 0) fail("service TTL must not be negative");
  if (max_client_backlog_bytes < 1024) fail("max client backlog bytes must be at least 1024");
  if (max_total_backlog_bytes < max_client_backlog_bytes)
    fail("max total backlog bytes must be at least max client backlog bytes");
  validate_family(*this);
  if (service_policies.size() > max_service_policies)
    fail("too many service policies (at most " + std::to_string(max_service_policies) + ")");
  for (const auto& [name, p] : service_policies) {
    const std::string where = "service policy '" + escape_text(name) + "': ";
    if (!protocol::valid_service_name(name))
      fail(where + "a service name is 1-255 bytes of printable UTF-8");
    if (name.starts_with("mmi.") || name.starts_with("scale0."))
      fail(where + "names starting with mmi. or scale0. are reserved");
    if (p.request_timeout && p.request_timeout->count() < 1)
      fail(where + "request timeout must be at least 1 ms");
    if (p.max_queue && *p.max_queue < 1) fail(where + "max queue must be at least 1");
    if (p.max_concurrency &&
        (*p.max_concurrency < 1 || *p.max_concurrency > protocol::max_concurrency))
      fail(where + "max concurrency must be 1-" + std::to_string(protocol::max_concurrency));
  }
}

struct broker::impl {
  explicit impl(const broker_options& o) : loop(o) {}
  broker_detail::event_loop loop;
};

broker::broker(broker_options options) {
  options.validate();
  impl_ = std::make_unique<impl>(options);
}

broker::~broker() = default;

const bound_endpoints& broker::endpoints() const noexcept {
  return impl_->loop.endpoints();
}
std::string broker::metrics_endpoint() const {
  return impl_->loop.metrics_endpoint();
}
void broker::on_event(std::function<void(const broker_event&)> h) {
  impl_->loop.on_event(std::move(h));
}
void broker::on_reload(std::function<std::optional<broker_options>()> h) {
  impl_->loop.on_reload(std::move(h));
}
void broker::run() {
  impl_->loop.run();
}
void broker::stop() noexcept {
  impl_->loop.stop();
}
void broker::drain() noexcept {
  impl_->loop.drain();
}
void broker::request_reload() noexcept {
  impl_->loop.request_reload();
}
bool broker::draining() const noexcept {
  return impl_->loop.draining();
}
std::optional<std::string> broker::metrics(std::chrono::milliseconds wait) {
  return impl_->loop.query("metrics", wait);
}
std::optional<std::string> broker::status_json(std::chrono::milliseconds wait) {
  return impl_->loop.query("status", wait);
}

}  // namespace scale0
