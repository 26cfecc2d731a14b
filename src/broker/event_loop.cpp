// SPDX-License-Identifier: Apache-2.0
#include "event_loop.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <random>

#include "common/host_port.hpp"
#include "receive.hpp"
#include "scale0/error.hpp"
#include "security/curve_socket.hpp"

namespace scale0::broker_detail {
namespace {

// Messages read from one socket before the other socket and the timers get a turn. Large enough to
// amortise the poll, small enough that heartbeats are never starved by a flood.
constexpr std::size_t batch = 256;

// libzmq's limit per frame: twice the message limit (a message's own check answers 413 first), and
// never below a whole batch's packed frame.
std::int64_t frame_limit(std::size_t max_message_bytes) {
  return static_cast<std::int64_t>(
      std::max<std::size_t>(max_message_bytes * 2, protocol::max_batch_packed));
}

std::string last_endpoint(const zmq::socket_t& s) {
  return s.get(zmq::sockopt::last_endpoint);
}

// A host name is bound at its first address; an IPv6 literal needs ZMQ_IPV6.
void bind(zmq::socket_t& s, const std::string& endpoint, const char* what) {
  try {
    const std::string where = detail::bind_endpoint(endpoint);
    if (detail::ipv6_endpoint(where)) s.set(zmq::sockopt::ipv6, 1);
    s.bind(where);
  } catch (const zmq::error_t& e) {
    // Not the configuration's fault (an address in use, not this machine's): 503, a run-time
    // failure, where invalid settings are 400.
    throw error(status::unavailable,
                std::string("cannot bind ") + what + " endpoint " + endpoint + ": " + e.what());
  }
}

// "tcp://ADDRESS:PORT" of a connected socket's peer, "ipc" for a Unix socket; "unknown" when the
// fd is gone, or is not (any more) a connection to `local_port` (another socket of this process
// may have taken the number meanwhile).
std::string peer_address(int fd, int local_port) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "unknown";
  if (ss.ss_family == AF_UNIX) return "ipc";
  const int port = ss.ss_family == AF_INET
                       ? ntohs(reinterpret_cast<const sockaddr_in*>(&ss)->sin_port)
                       : ntohs(reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_port);
  if (port != local_port) return "unknown";
  len = sizeof ss;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "unknown";
  char host[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
    ::inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
    return "tcp://" + std::string(host) + ":" + std::to_string(ntohs(a->sin_port));
  }
  if (ss.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    ::inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
    return "tcp://[" + std::string(host) + "]:" + std::to_string(ntohs(a->sin6_port));
  }
  return "unknown";
}

// The port of a bound "tcp://host:port" endpoint; -1 for others.
int endpoint_port(const std::string& endpoint) {
  if (endpoint.rfind("tcp://", 0) != 0) return -1;
  const auto colon = endpoint.rfind(':');
  try {
    return colon == std::string::npos ? -1 : std::stoi(endpoint.substr(colon + 1));
  } catch (const std::exception&) {
    return -1;
  }
}

// [service."NAME"] tables as CONFIG carries them, and back.
std::vector<protocol::peer::policy_entry> policy_entries(
    const std::map<std::string, service_policy, std::less<>>& tables) {
  namespace pp = protocol::peer;
  std::vector<pp::policy_entry> out;
  out.reserve(tables.size());
  for (const auto& [name, p] : tables) {
    pp::policy_entry e;
    e.service = name;
    if (p.request_timeout) {
      e.set |= pp::policy_timeout;
      e.timeout_ms = static_cast<std::uint32_t>(
          std::clamp<std::int64_t>(p.request_timeout->count(), 0, UINT32_MAX));
    }
    if (p.max_queue) {
      e.set |= pp::policy_max_queue;
      e.max_queue = static_cast<std::uint32_t>(std::min<std::size_t>(*p.max_queue, UINT32_MAX));
    }
    if (p.idempotent) {
      e.set |= pp::policy_idempotent;
      e.idempotent = *p.idempotent ? 1 : 0;
    }
    if (p.max_concurrency) {
      e.set |= pp::policy_max_concurrency;
      e.max_concurrency = *p.max_concurrency;
    }
    out.push_back(e);
  }
  return out;
}

std::map<std::string, service_policy, std::less<>> policy_tables(
    std::span<const protocol::peer::policy_entry> entries) {
  namespace pp = protocol::peer;
  std::map<std::string, service_policy, std::less<>> out;
  for (const auto& e : entries) {
    service_policy p;
    if (e.set & pp::policy_timeout) p.request_timeout = std::chrono::milliseconds(e.timeout_ms);
    if (e.set & pp::policy_max_queue) p.max_queue = e.max_queue;
    if (e.set & pp::policy_idempotent) p.idempotent = e.idempotent != 0;
    if (e.set & pp::policy_max_concurrency) p.max_concurrency = e.max_concurrency;
    out.insert_or_assign(std::string(e.service), p);
  }
  return out;
}

std::uint64_t random_broker_id() {
  std::random_device rd;
  return (std::uint64_t{rd()} << 32) ^ rd();
}

}  // namespace

event_loop::event_loop(const broker_options& options)
    : options_(options),
      context_(1),
      routers_{zmq::socket_t(context_, zmq::socket_type::router),
               zmq::socket_t(context_, zmq::socket_type::router)},
      pub_(context_, zmq::socket_type::pub),
      control_(context_, zmq::socket_type::router) {
  // Replies to a client never exceed its requests in flight, and requests to a worker never exceed
  // its credit: with the send HWM above both bounds a full queue cannot drop a reply silently.
  const int hwm = static_cast<int>(
      std::max<std::size_t>(options.max_client_inflight, protocol::max_concurrency) + 1024);
  for (auto& r : routers_) {
    r.set(zmq::sockopt::router_mandatory, 1);
    r.set(zmq::sockopt::sndhwm, hwm);
    r.set(zmq::sockopt::rcvhwm, 10000);
    r.set(zmq::sockopt::maxmsgsize, frame_limit(options.max_message_bytes));
    r.set(zmq::sockopt::linger, 500);
    r.set(zmq::sockopt::handshake_ivl, static_cast<int>(options.handshake_timeout.count()));
  }
  pub_.set(zmq::sockopt::handshake_ivl, static_cast<int>(options.handshake_timeout.count()));
  pub_.set(zmq::sockopt::linger, 0);
  control_.set(zmq::sockopt::linger, 0);
  if (!options.curve_secret_key.empty() || !options.peer_secret_key.empty()) {
    // The ZAP handler is this loop: its socket is bound before any CURVE endpoint, so no handshake
    // can happen without it; libzmq refuses a handshake it cannot ask about (fails closed).
    zap_ = zmq::socket_t(context_, zmq::socket_type::rep);
    zap_.set(zmq::sockopt::linger, 0);
    zap_.bind("inproc://zeromq.zap.01");
    if (!options.peer_secret_key.empty())
      peer_public_key_ = security::public_for_secret(options.peer_secret_key);
  }
  if (!options.curve_secret_key.empty()) {
    load_grants(options);
    security::apply_curve_server(routers_[0], options.curve_secret_key, "frontend");
    security::apply_curve_server(routers_[1], options.curve_secret_key, "backend");
    security::apply_curve_server(pub_, options.curve_secret_key, "heartbeat");
    watch_handshakes(routers_[0], 0);
    watch_handshakes(routers_[1], 1);
    watch_handshakes(pub_, 2);
  }
  bind(routers_[0], options.frontend, "frontend");
  bind(routers_[1], options.backend, "backend");
  bind(pub_, options.heartbeat, "heartbeat");
  endpoints_ = {last_endpoint(routers_[0]), last_endpoint(routers_[1]), last_endpoint(pub_), ""};
  monitor_ports_[0] = endpoint_port(endpoints_.frontend);
  monitor_ports_[1] = endpoint_port(endpoints_.backend);
  monitor_ports_[2] = endpoint_port(endpoints_.heartbeat);
  control_endpoint_ =
      "inproc://scale0-control-" + std::to_string(reinterpret_cast<std::uintptr_t>(this));
  control_.bind(control_endpoint_);
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) throw error(status::unavailable, "eventfd failed");
  broker_id_ = random_broker_id();
  const auto now = clock::now();
  core_ = std::make_unique<broker_core>(options_, *this, broker_id_, endpoints_.heartbeat, now);
  if (!options.peer_listen.empty()) {
    peer_links_ = std::make_unique<peer_links>(context_, options_,
                                               [this](const broker_event& e) { event(e); });
    if (!options.peer_secret_key.empty()) watch_handshakes(peer_links_->router(), 3);
    endpoints_.peer = peer_links_->bind(options.peer_listen);
    monitor_ports_[3] = endpoint_port(endpoints_.peer);
    // What other brokers are told: the flag, else the bound endpoint (a wildcard bind cannot be
    // advertised: validate() asked for the flag where it is needed; elsewhere it is left out).
    auto advertised = [](const std::string& flag, const std::string& bound) {
      if (!flag.empty()) return flag;
      return detail::wildcard_endpoint(bound) ? std::string() : bound;
    };
    family_settings fs;
    fs.broker_id = broker_id_;
    fs.family = options.family;
    fs.fallback_families = options.fallback_families;
    fs.peer_endpoint = advertised(options.advertise_peer, endpoints_.peer);
    fs.frontend = advertised(options.advertise_frontend, endpoints_.frontend);
    fs.backend = advertised(options.advertise_backend, endpoints_.backend);
    fs.heartbeat_interval = options.heartbeat_interval;
    fs.liveness = options.liveness;
    fs.max_peers = options.max_peers;
    fs.max_services = options.max_services;
    family_ = std::make_unique<family_core>(std::move(fs), *peer_links_, now);
    family_->set_listener(this);
    core_->set_advertised(family_->settings().frontend, family_->settings().backend);
    peer_links_->set_forwarding(
        {[this](std::string_view routing_id) { return family_->alive_connection(routing_id); },
         [this](frames& msg, bool oversized) {
           core_->on_message(peer_socket, msg, oversized, clock::now(), nullptr);
         },
         [this](std::uint32_t link, frames& msg, bool oversized) {
           core_->on_peer_reply(link, msg, oversized, clock::now());
         }});
    peer_links_->attach(*family_, options.peers, now);
    core_->set_status_source(family_.get());
    core_->track_capacity(true);
  }
  if (!options.metrics_listen.empty()) {
    metrics_ = std::make_unique<metrics::metrics_server>(
        options.metrics_listen,
        metrics::metrics_server::handlers{
            [this] { return query("metrics", std::chrono::milliseconds(2000)); },
            [this] { return !draining(); },
            [this] { return query("status", std::chrono::milliseconds(2000)); }});
  }
  core_->set_status_extras(endpoints_, metrics_ ? metrics_->endpoint() : std::string(), &events_);
}

void event_loop::watch_handshakes(zmq::socket_t& s, int i) {
  const std::string ep = "inproc://scale0-monitor-" +
                         std::to_string(reinterpret_cast<std::uintptr_t>(this)) + "-" +
                         std::to_string(i);
  if (zmq_socket_monitor(s.handle(), ep.c_str(),
                         ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED |
                             ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                             ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL) != 0)
    throw error(status::unavailable, "cannot monitor handshakes");
  monitors_[i] = zmq::socket_t(context_, zmq::socket_type::pair);
  monitors_[i].set(zmq::sockopt::linger, 0);
  monitors_[i].connect(ep);
}

event_loop::~event_loop() {
  metrics_.reset();  // its thread queries this loop: stop it first
  // The endpoints go before the ZAP handler: a CURVE socket whose handler is gone would let any key
  // in (libzmq without ZAP_ENFORCE_DOMAIN), even for the moment of destruction.
  for (auto& r : routers_) r.close();
  pub_.close();
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

std::string event_loop::metrics_endpoint() const {
  return metrics_ ? metrics_->endpoint() : std::string();
}

void event_loop::wake() noexcept {
  const std::uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof one);
}

void event_loop::stop() noexcept {
  stop_requested_ = true;
  wake();
}

void event_loop::drain() noexcept {
  drain_requested_ = true;
  wake();
}

void event_loop::request_reload() noexcept {
  reload_requested_ = true;
  wake();
}

std::optional<std::string> event_loop::query(std::string_view what,
                                             std::chrono::milliseconds wait) {
  const bool metrics = what == "metrics";
  if (!metrics && what != "status") return std::nullopt;
  std::uint64_t ticket = 0;
  {
    std::lock_guard lock(scrapes_mu_);
    ticket = ++scrape_ticket_;
  }
  const std::string ask = std::string(what) + ' ' + std::to_string(ticket);
  try {
    zmq::socket_t req(context_, zmq::socket_type::req);
    req.set(zmq::sockopt::linger, 0);
    req.connect(control_endpoint_);
    req.send(zmq::buffer(ask), zmq::send_flags::none);
    zmq::pollitem_t item{req.handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, wait) <= 0) return std::nullopt;
    zmq::message_t reply;
    if (!req.recv(reply)) return std::nullopt;
  } catch (const zmq::error_t&) {
    return std::nullopt;  // the context is going away
  }
  scrape made;
  {
    std::lock_guard lock(scrapes_mu_);
    const auto it = scrapes_.find(ticket);
    if (it == scrapes_.end()) return std::nullopt;
    made = std::move(it->second);
    scrapes_.erase(it);
  }
  // On this thread, not the loop's.
  if (metrics) return made.families.text();
  if (!made.status) return std::nullopt;
  return write_status_json(*made.status);
}

// Answers queries with copies of the loop's state (query() writes the text from them). An asker
// that gave up leaves its copy: copies made more than a minute ago are dropped.
void event_loop::handle_control() {
  for (;;) {
    zmq::message_t id, empty, what;
    if (!control_.recv(id, zmq::recv_flags::dontwait)) return;
    (void)control_.recv(empty);
    (void)control_.recv(what);
    const auto now = clock::now();
    const std::string_view ask = what.to_string_view();
    const auto space = ask.find(' ');
    std::uint64_t ticket = 0;
    for (char c : ask.substr(space == std::string_view::npos ? ask.size() : space + 1))
      ticket = ticket * 10 + static_cast<std::uint64_t>(c - '0');
    scrape made;
    made.made = now;
    if (ask.starts_with("metrics "))
      made.families = core_->metrics(now);
    else
      made.status = std::make_unique<status_snapshot>(core_->snapshot_status(now));
    {
      std::lock_guard lock(scrapes_mu_);
      std::erase_if(scrapes_,
                    [&](const auto& e) { return now - e.second.made > std::chrono::minutes(1); });
      scrapes_.insert_or_assign(ticket, std::move(made));
    }
    control_.send(id, zmq::send_flags::sndmore);
    control_.send(zmq::message_t(), zmq::send_flags::sndmore);
    control_.send(zmq::message_t(), zmq::send_flags::none);
  }
}

void event_loop::load_grants(const broker_options& o) {
  for (auto& g : grants_) g.clear();
  for (const auto& k : o.client_keys) {
    access_grant& g = grants_[0][k.key];
    g.key = k.key;
    g.call = true;
    g.globs.insert(g.globs.end(), k.globs.begin(), k.globs.end());
  }
  for (const auto& k : o.worker_keys) {
    access_grant& g = grants_[1][k.key];
    g.key = k.key;
    g.serve = true;
    g.globs.insert(g.globs.end(), k.globs.begin(), k.globs.end());
  }
  for (auto& [key, g] : grants_[0]) g.status = !o.admin_keys;
  if (o.admin_keys)
    for (const auto& k : *o.admin_keys) {  // on the frontend, even if not a client key
      access_grant& g = grants_[0][k];
      g.key = k;
      g.status = true;
    }
  any_client_ = access_grant{};
  any_client_.call = true;
  any_client_.any = true;
}

// 27/ZAP: one request per handshake, answered at once from the key lists. A key is let in on the
// endpoint whose list names it (any key on the frontend with --client-keys any); the heartbeat PUB
// takes a key of either list. The User-Id of the reply is the key, which every message of that
// connection then carries (grant_of).
void event_loop::handle_zap() {
  for (;;) {
    std::vector<zmq::message_t> req;
    zmq::message_t part;
    if (!zap_.recv(part, zmq::recv_flags::dontwait)) return;
    req.push_back(std::move(part));
    while (req.back().more() && req.size() < 16) {
      zmq::message_t next;
      if (!zap_.recv(next)) break;
      req.push_back(std::move(next));
    }
    auto frame = [&req](std::size_t i) {
      return i < req.size() ? req[i].to_string_view() : std::string_view();
    };
    std::string key;
    std::string_view refused;
    std::string_view label = "unknown_key";  // scale0_refused_total's reason
    const std::string_view domain = frame(2);
    if (frame(0) != "1.0" || frame(5) != "CURVE" || req.size() < 7 || req[6].size() != 32) {
      refused = "not a CURVE handshake";
      label = "not_curve";
    } else {
      char text[41];
      zmq_z85_encode(text, static_cast<const std::uint8_t*>(req[6].data()), 32);
      key.assign(text, 40);
      const bool client = options_.any_client_key || grants_[0].contains(key);
      const bool worker = grants_[1].contains(key);
      if (domain == "peer")
        refused = key == peer_public_key_ ? "" : "key not the family's peer key";
      else if (domain == "frontend" && !client)
        refused = "key not in the client keys";
      else if (domain == "backend" && !worker)
        refused = "key not in the worker keys";
      else if (domain == "heartbeat" && !client && !worker)
        refused = "unknown key";
      else if (domain != "frontend" && domain != "backend" && domain != "heartbeat" &&
               domain != "peer")
        refused = "unknown ZAP domain";
    }
    if (!refused.empty()) {
      core_->note_refusal(domain, label);
      const std::string detail = "CURVE handshake refused on " + std::string(domain) + ": " +
                                 std::string(refused) + (key.empty() ? "" : " " + key);
      event({event_kind::refused, {}, frame(3), {}, status::forbidden, detail});
    }
    const bool ok = refused.empty();
    zap_.send(zmq::buffer(std::string_view("1.0")), zmq::send_flags::sndmore);
    zap_.send(zmq::buffer(frame(1)), zmq::send_flags::sndmore);
    zap_.send(zmq::buffer(std::string_view(ok ? "200" : "400")), zmq::send_flags::sndmore);
    zap_.send(zmq::buffer(ok ? std::string_view("OK") : refused), zmq::send_flags::sndmore);
    zap_.send(zmq::buffer(std::string_view(key)), zmq::send_flags::sndmore);
    zap_.send(zmq::message_t(), zmq::send_flags::none);
  }
}

// Handshakes libzmq failed on its own: a peer without CURVE (mechanism mismatch), a broken CURVE
// handshake, or one not finished (the handshake timeout, or the peer left first). Refusals by the
// key lists are ZAP's and counted there. libzmq's monitor names no peer in a failure, only the fd
// of the DISCONNECTED that follows it (one I/O thread: nothing comes between), so the peer's
// address is read from the fd when its ACCEPTED is read. It is kept only when that cannot be
// another connection's: the fd must still be a connection to this endpoint's port, and no later
// ACCEPTED of the same fd may have been emitted before the address was read (the monitor is read
// again right after, to see). Otherwise the address is "unknown", never someone else's.
void event_loop::handle_monitors() {
  static constexpr std::string_view endpoint_names[watched_endpoints] = {"frontend", "backend",
                                                                         "heartbeat", "peer"};
  for (int i = 0; i < watched_endpoints; ++i) {
    if (!monitors_[i]) continue;
    handshake_watch& watch = watches_[i];
    monitor_batch_.clear();
    last_accepted_.clear();
    auto read_more = [&] {
      while (monitor_batch_.size() < 8192) {
        zmq::message_t head;
        if (!monitors_[i].recv(head, zmq::recv_flags::dontwait)) return;
        zmq::message_t ignored;
        if (head.more()) (void)monitors_[i].recv(ignored);
        if (head.size() < 6) continue;
        monitor_event e;
        std::memcpy(&e.kind, head.data(), 2);
        std::memcpy(&e.value, static_cast<const char*>(head.data()) + 2, 4);
        if (e.kind == ZMQ_EVENT_ACCEPTED) last_accepted_[e.value] = monitor_batch_.size();
        monitor_batch_.push_back(e);
      }
    };
    read_more();
    auto report = [&](std::string_view address) {
      const std::string text = "handshake refused on " + std::string(endpoint_names[i]) + ": " +
                               std::string(watch.failed_detail);
      event({event_kind::refused, {}, address, {}, status::forbidden, text});
      watch.failed_detail = {};
    };
    for (std::size_t n = 0; n < monitor_batch_.size(); ++n) {
      const monitor_event e = monitor_batch_[n];
      const int fd = static_cast<int>(e.value);
      if (e.kind == ZMQ_EVENT_ACCEPTED) {
        std::string address =
            last_accepted_[e.value] == n ? peer_address(fd, monitor_ports_[i]) : "";
        read_more();  // an ACCEPTED of the same fd emitted before the address was read shows now
        if (last_accepted_[e.value] != n) address = "unknown";
        watch.peers[fd] = std::move(address);
      } else if (e.kind == ZMQ_EVENT_DISCONNECTED) {
        const auto it = watch.peers.find(fd);
        if (!watch.failed_detail.empty()) report(it != watch.peers.end() ? it->second : "unknown");
        if (it != watch.peers.end()) watch.peers.erase(it);
      } else {  // a handshake failed
        if (!watch.failed_detail.empty()) report("unknown");
        std::string_view reason = "handshake_unfinished";
        watch.failed_detail =
            "closed before the CURVE handshake finished (the handshake timeout, or the peer left)";
        if (e.kind == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL) {
          const bool plaintext = e.value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH;
          reason = plaintext ? "not_curve" : "protocol_error";
          watch.failed_detail = plaintext ? "a peer without CURVE (its mechanism is not CURVE)"
                                          : "a broken ZeroMQ or CURVE handshake";
        }
        core_->note_refusal(endpoint_names[i], reason);
      }
    }
  }
}

// The grant of the key the message in inbox_ came with; nullptr when CURVE is off.
const access_grant* event_loop::grant_of(std::uint8_t socket) {
  if (options_.curve_secret_key.empty()) return nullptr;
  if (inbox_.size() < 2) return &nothing_;  // fail closed
  const char* user = zmq_msg_gets(inbox_[1].handle(), "User-Id");
  if (user == nullptr) return &nothing_;
  if (socket == 0 && options_.any_client_key) {
    const auto it = grants_[0].find(std::string_view(user));
    return it != grants_[0].end() ? &it->second : &any_client_;
  }
  const auto it = grants_[socket].find(std::string_view(user));
  return it != grants_[socket].end() ? &it->second : &nothing_;
}

void event_loop::event(const broker_event& e) {
  events_.push(e, clock::now());
  if (event_handler_) event_handler_(e);
}

// Stop, drain and reload requests arrive as flags set by other threads or signal handlers.
void event_loop::handle_requests(clock::time_point now) {
  std::uint64_t ignored;
  [[maybe_unused]] auto n = ::read(wake_fd_, &ignored, sizeof ignored);
  if (reload_requested_.exchange(false) && reload_handler_) {
    if (auto next = reload_handler_()) {
      core_->reconfigure(*next, now);
      announce_policy(now);
      if (!options_.curve_secret_key.empty()) {  // the key lists were read again with the rest
        options_.client_keys = next->client_keys;
        options_.worker_keys = next->worker_keys;
        options_.any_client_key = next->any_client_key;
        options_.admin_keys = next->admin_keys;
        load_grants(options_);
        core_->revoke_workers(
            [this](const std::string& key) -> const access_grant* {
              const auto it = grants_[1].find(key);
              return it != grants_[1].end() ? &it->second : nullptr;
            },
            now);
      }
      // The loop enforces frame and byte limits itself; endpoints need a restart.
      options_.drain_timeout = next->drain_timeout;
      options_.max_frames = next->max_frames;
      options_.max_message_bytes = next->max_message_bytes;
      for (auto& r : routers_)  // applies to connections made from now on
        r.set(zmq::sockopt::maxmsgsize, frame_limit(next->max_message_bytes));
      event({event_kind::reloaded, {}, {}, {}, 0, "configuration reloaded"});
    }
  }
  if (drain_requested_.exchange(false) && !core_->draining()) {
    core_->begin_drain(now);
    if (family_) family_->begin_drain(now);
    draining_ = true;
    drain_deadline_ = now + options_.drain_timeout;
    event({event_kind::draining, {}, {}, {}, 0, "new requests get 503; accepted ones may finish"});
  }
}

void event_loop::run() {
  // The control socket (scrapes from the metrics thread) by its descriptor: an edge that says
  // it may have input, read until empty then (handle_control's last call is a read that finds
  // nothing), so a turn spends no check of it. The routers are polled as sockets: the loop
  // sends on them, which can take the edge of their descriptor.
  zmq_pollitem_t items[4] = {{routers_[0].handle(), 0, ZMQ_POLLIN, 0},
                             {routers_[1].handle(), 0, ZMQ_POLLIN, 0},
                             {nullptr, control_.get(zmq::sockopt::fd), ZMQ_POLLIN, 0},
                             {nullptr, wake_fd_, ZMQ_POLLIN, 0}};
  constexpr int polled = 4;
  // Then ZAP (CURVE anywhere) and the handshake monitors there are: read whenever the loop turns.
  std::vector<zmq_pollitem_t> security_items;
  if (zap_) security_items.push_back({zap_.handle(), 0, ZMQ_POLLIN, 0});
  for (auto& m : monitors_)
    if (m) security_items.push_back({m.handle(), 0, ZMQ_POLLIN, 0});
  last_progress_ = clock::now();
  for (;;) {
    auto now = clock::now();
    last_progress_ = now;
    if (core_->draining() &&
        // With peers (forwarding here included: dependents), a quiet spell first, so forwards on
        // their way are handed back rather than lost with the process.
        ((core_->drained() && ((!core_->has_peers() && (!family_ || family_->alive_count() == 0)) ||
                               core_->drain_settled(now))) ||
         now >= drain_deadline_))
      break;
    const auto wait = std::chrono::ceil<std::chrono::milliseconds>(next_wakeup(now) - now).count();
    poll_items_.assign(items, items + polled);
    poll_items_.insert(poll_items_.end(), security_items.begin(), security_items.end());
    if (peer_links_) peer_links_->add_poll_items(poll_items_);
    core_->flush(now);  // nothing held waits across a sleep
    const int rc = zmq_poll(poll_items_.data(), static_cast<int>(poll_items_.size()),
                            static_cast<long>(std::clamp<std::int64_t>(wait, 0, 1000)));
    for (int i = 0; i < polled; ++i) items[i].revents = poll_items_[i].revents;
    if (rc < 0 && zmq_errno() != EINTR)
      throw error(status::unavailable, std::string("zmq_poll: ") + zmq_strerror(zmq_errno()));
    if (stop_requested_) break;
    if (rc > 0 && (items[3].revents & ZMQ_POLLIN)) handle_requests(clock::now());
    if (rc <= 0 || (items[2].revents & ZMQ_POLLIN)) handle_control();  // and on timer wakes
    // After a wake-up by input, a router the poll found empty is not read this first round
    // (zmq_poll reports what a socket holds: one that gets input now wakes the next poll).
    bool first = rc > 0;
    if (zap_) {
      handle_zap();
      handle_monitors();
    }
    family_turn(note_progress(clock::now()));
    // Drain everything readable: handling one message per wake-up is what made heartbeats go
    // missing in the original prototype. Timers get a turn between batches. The backend goes
    // first, so replies and heartbeats are read before new requests are dispatched.
    for (;;) {
      const bool read_backend = !first || (items[1].revents & ZMQ_POLLIN);
      const bool read_frontend = !first || (items[0].revents & ZMQ_POLLIN);
      first = false;
      const std::size_t b = read_backend ? drain_socket(1, batch) : 0;
      const std::size_t a = read_frontend ? drain_socket(0, batch) : 0;
      // Forwarded requests and the replies to forwards are traffic like the rest.
      const std::size_t p = peer_links_ ? peer_links_->service(now, batch) : 0;
      core_->flush(now);  // what this batch of input had for each peer, one message each
      now = note_progress(clock::now());  // timers dispatch too
      if (now >= core_->next_wakeup(now)) core_->on_tick(now);
      if (family_ && now >= next_family_turn_) family_turn(now);
      if (a < batch && b < batch && p < batch) {
        core_->on_input_drained(now);
        core_->flush(now);
        break;
      }
      // Under sustained load poll() is not reached: serve control queries and handshakes, and
      // look at stop/drain/reload requests here too.
      handle_control();
      if (zap_) {
        handle_zap();
        handle_monitors();
      }
      if (stop_requested_ || drain_requested_ || reload_requested_) break;
    }
  }
  core_->shutdown(clock::now());
  if (family_) {
    peer_links_->set_close_linger(200);  // the BYEs may leave
    family_->shutdown(clock::now());
  }
}

clock::time_point event_loop::next_wakeup(clock::time_point now) const {
  const auto next = core_->next_wakeup(now);
  return family_ ? std::min(next, family_->next_wakeup(now, core_->capacity_changed())) : next;
}

// Under a flood of client and worker messages this runs at most every 10 ms (the family's timers
// are hundreds of milliseconds); when the loop waits, on every wake-up.
void event_loop::family_turn(clock::time_point now) {
  if (!family_) return;
  next_family_turn_ = now + std::chrono::milliseconds(10);
  peer_links_->service(now, batch);
  if (core_->capacity_changed() && family_->round_due(now)) {
    core_->take_capacity_changes(capacity_);
    family_->set_local_capacity(capacity_, now);
  }
  family_->on_tick(now);
}

// Called before anything that may dispatch (reading a message, running timers). The loop never
// sleeps longer than a quarter heartbeat interval (the expiry scan) or a second: a gap well beyond
// that means the process was stopped or starved, and what workers sent meanwhile is read before
// another request is dispatched.
clock::time_point event_loop::note_progress(clock::time_point now) {
  const auto longest_sleep =
      std::min<clock::duration>(options_.heartbeat_interval / 4, std::chrono::milliseconds(1000));
  const auto gap = std::max<clock::duration>(2 * longest_sleep, std::chrono::milliseconds(100));
  if (now - last_progress_ > gap) {
    settle_after_stall();
    now = clock::now();
  }
  last_progress_ = now;
  return now;
}

// After a stall, libzmq's I/O thread needs a moment to move what the kernel buffered into the
// sockets' queues: with dispatch held, read the backend alone for a short while (replies,
// DISCONNECTs, and the ends of closed connections) before anything is dispatched.
void event_loop::settle_after_stall() {
  last_progress_ = clock::now();  // the reads below are not a stall
  core_->hold_dispatch(true, clock::now());
  const auto until = clock::now() + std::chrono::milliseconds(20);
  zmq_pollitem_t backend{routers_[1].handle(), 0, ZMQ_POLLIN, 0};
  while (clock::now() < until) {
    if (drain_socket(1, batch) == 0) zmq_poll(&backend, 1, 2);
  }
  // Asking for the events makes each socket take in the ends of closed connections now.
  for (auto& r : routers_) (void)r.get(zmq::sockopt::events);
  core_->on_input_drained(clock::now());
  core_->hold_dispatch(false, clock::now());
  core_->flush(clock::now());
}

// Counts the messages handled: each entry of a batch is one.
std::size_t event_loop::drain_socket(std::uint8_t socket, std::size_t budget) {
  std::size_t n = 0;
  bool oversized = false;
  while (n < budget) {
    // Before a message is read, not after: settling reads the backend into the same inbox.
    const auto now = note_progress(clock::now());
    if (!receive(routers_[socket], oversized)) break;
    const access_grant* who = grant_of(socket);
    // A batch is its entries, one after another, each under the limits of a message of its own.
    // A malformed one goes to the core whole, which answers it as such.
    if (!oversized && batch_.open(inbox_, 1)) {  // open() checks it is a batch
      core_->note_batched_input(true, batch_.size());
      std::size_t bytes = 0;
      while (batch_.next(entry_, bytes)) {
        ++n;
        deliver(socket, entry_, bytes > options_.max_message_bytes, now, who);
      }
      core_->note_batched_input(false);
      continue;
    }
    ++n;
    deliver(socket, inbox_, oversized, now, who);
  }
  return n;
}

void event_loop::deliver(std::uint8_t socket, frames& msg, bool oversized, clock::time_point now,
                         const access_grant* who) {
  try {
    core_->on_message(socket, msg, oversized, now, who);
  } catch (const std::exception& e) {
    // Nothing from the network may end the loop (the decoder itself never throws; this is for
    // resource exhaustion and bugs): report it and go on with the next message.
    event({event_kind::dropped, {}, {}, {}, 0, e.what()});
  }
}

// Reads one whole multipart message into inbox_. Frames past the frame limit are read and
// discarded (a multipart message cannot be left half-read); `oversized` reports either limit.
bool event_loop::receive(zmq::socket_t& socket, bool& oversized) {
  std::size_t bytes = 0;
  // Frame 0 is the identity, not counted. A whole batch is kept, whatever the frame limit: each
  // of its entries is held to the limits.
  const std::size_t keep = std::max(options_.max_frames + 1, protocol::max_batch_frames + 3);
  const std::size_t count = receive_message(socket.handle(), inbox_, keep, discard_, bytes);
  if (count == 0) return false;
  if (count <= protocol::max_batch_frames + 3 && protocol::is_batch(inbox_, 1)) {
    oversized = false;
    return true;
  }
  oversized =
      count > options_.max_frames + 1 || bytes - inbox_.front().size() > options_.max_message_bytes;
  return true;
}

void event_loop::peer_up(const peer_info& p) {
  if (!p.member && p.fallback_rank == 0) return;  // a dependent only: never forwarded to
  const auto now = clock::now();
  core_->peer_up(p.link, p.endpoint, p.frontend, p.backend, p.fallback_rank, now);
  if (p.draining) core_->peer_updated(p.link, true, p.frontend, p.backend, now);
}

void event_loop::peer_capacity(const peer_info& p, std::string_view service,
                               const struct peer_capacity& c) {
  core_->peer_capacity(p.link, service, c.workers, c.idle, c.queued, c.idempotent, clock::now());
}

void event_loop::peer_updated(const peer_info& p) {
  core_->peer_updated(p.link, p.draining, p.frontend, p.backend, clock::now());
}

void event_loop::peer_down(const peer_info& p, std::string_view why) {
  core_->peer_down(p.link, why, clock::now());
}

void event_loop::peer_config(std::uint64_t version, std::uint64_t origin,
                             std::span<const protocol::peer::policy_entry> tables) {
  if (core_->adopt_policy(version, origin, policy_tables(tables), clock::now()))
    event({event_kind::reloaded,
           {},
           {},
           {},
           0,
           "service policy version " + std::to_string(version) + " from the family (broker " +
               broker_id_hex(origin) + ")"});
}

void event_loop::announce_policy(clock::time_point now) {
  if (!core_->take_policy_change() || !family_) return;
  const auto entries = policy_entries(core_->service_policies());
  family_->set_policy(core_->policy_version(), core_->policy_origin(), entries, now);
}

delivery event_loop::send(std::uint8_t socket, frames& msg) {
  if (socket == peer_socket) return peer_links_->send_to_peer(msg);
  if (socket == link_socket) {
    std::uint32_t link = 0;
    if (msg.empty() || msg[0].size() != sizeof link) return delivery::gone;
    std::memcpy(&link, msg[0].data(), sizeof link);
    return peer_links_->send_on_link(link, msg);
  }
  // With ROUTER_MANDATORY: EAGAIN when the peer's queue is full, EHOSTUNREACH when it is gone.
  const int e = send_message(routers_[socket].handle(), msg);
  return e == 0 ? delivery::sent : e == EAGAIN ? delivery::full : delivery::gone;
}

void event_loop::publish(frames& msg) {
  for (std::size_t i = 0; i < msg.size(); ++i)
    zmq_msg_send(msg[i].handle(), pub_.handle(),
                 ZMQ_DONTWAIT | (i + 1 < msg.size() ? ZMQ_SNDMORE : 0));
}

}  // namespace scale0::broker_detail
