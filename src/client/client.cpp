// SPDX-License-Identifier: Apache-2.0
#include "scale0/client.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <random>

#include "client/client_core.hpp"
#include "common/host_port.hpp"
#include "protocol/batch.hpp"
#include "scale0/error.hpp"
#include "scale0/protocol.hpp"
#include "security/curve_socket.hpp"

namespace scale0 {
namespace {

using clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// A request's timeout as the wire carries it: 0 to 2^32-1 ms.
milliseconds checked(milliseconds t) {
  if (t.count() < 0) throw error(status::bad_request, "a timeout cannot be negative");
  return std::min(t, milliseconds(UINT32_MAX));
}

}  // namespace

std::string reply::text() const {
  std::string out;
  for (const auto& f : body) out.append(static_cast<const char*>(f.data()), f.size());
  return out;
}

// The shell: one DEALER to the current broker (plus, until its first handshake, a monitor that
// says when it completed), the clock, and a poll loop that feeds the core.
struct client::impl final : detail::client_core::io {
  impl(const std::string& endpoints, client_options o)
      : options(o), core(core_options(endpoints, o), *this) {
    if (options.protocol_version != protocol::version_1 &&
        options.protocol_version != protocol::version_2)
      throw error(status::bad_request, "client protocol_version must be 1 or 2");
    for (const auto& ep : detail::split_endpoint_list(endpoints)) {  // fail here, not at a failover
      zmq::socket_t probe(context, zmq::socket_type::dealer);
      probe.set(zmq::sockopt::linger, 0);
      if (detail::ipv6_endpoint(ep)) probe.set(zmq::sockopt::ipv6, 1);
      try {
        probe.connect(ep);
      } catch (const zmq::error_t& e) {
        throw error(status::bad_request, "cannot connect to " + ep + ": " + e.what());
      }
    }
    core.start(clock::now());
  }

  static detail::client_core_options core_options(const std::string& endpoints,
                                                  const client_options& o) {
    detail::client_core_options c;
    c.brokers = detail::split_endpoint_list(endpoints);
    std::shuffle(c.brokers.begin(), c.brokers.end(), std::mt19937_64(std::random_device{}()));
    c.heartbeat_interval = o.heartbeat_interval;
    c.liveness = o.liveness;
    c.protocol_version = o.protocol_version;
    c.idempotent = o.idempotent;
    return c;
  }

  void open(const std::string& endpoint) override {
    monitor = zmq::socket_t();
    socket = zmq::socket_t(context, zmq::socket_type::dealer);
    security::apply_curve_client(socket, options.curve);
    socket.set(zmq::sockopt::linger, 0);
    socket.set(zmq::sockopt::sndhwm, 100000);
    socket.set(zmq::sockopt::rcvhwm, 100000);
    // The monitor says when the connection completed a handshake (from then on what was sent
    // may have reached the broker) and when it closed (what the broker held is lost with it).
    const std::string name = "inproc://scale0-client-monitor-" + std::to_string(++connections);
    if (zmq_socket_monitor(socket.handle(), name.c_str(),
                           ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_DISCONNECTED) == 0) {
      monitor = zmq::socket_t(context, zmq::socket_type::pair);
      monitor.connect(name);
    } else {
      unmonitored = true;  // then assume the worst: anything sent may have reached a broker
    }
    if (detail::ipv6_endpoint(endpoint)) socket.set(zmq::sockopt::ipv6, 1);
    try {
      socket.connect(endpoint);
    } catch (const zmq::error_t& e) {
      throw error(status::bad_request, "cannot connect to " + endpoint + ": " + e.what());
    }
  }

  // Never blocks: with the send queue full (the broker unreachable for a long time, or not
  // reading) the first frame fails at once and nothing is sent.
  bool send(protocol::frames& msg) override {
    for (std::size_t i = 0; i < msg.size(); ++i) {
      const int flags = ZMQ_DONTWAIT | (i + 1 < msg.size() ? ZMQ_SNDMORE : 0);
      if (zmq_msg_send(msg[i].handle(), socket.handle(), flags) < 0 && i == 0) return false;
    }
    return true;
  }

  protocol::batch_reader batch;
  protocol::frames entry;

  bool receive_one(zmq::socket_t& s) {
    in.clear();
    in.emplace_back();
    if (zmq_msg_recv(in.back().handle(), s.handle(), ZMQ_DONTWAIT) < 0) {
      if (zmq_errno() != EAGAIN && zmq_errno() != EINTR)
        throw error(status::unavailable, zmq_strerror(zmq_errno()));
      return false;
    }
    while (in.back().more()) {
      in.emplace_back();
      if (zmq_msg_recv(in.back().handle(), s.handle(), 0) < 0) break;
    }
    return true;
  }

  // Runs the core until `done()` or `until` passes (never, when not given). False on time out.
  // What the sockets already hold is read before any poll: under load a poll per batch would be
  // a system call for nothing.
  template <class Done>
  bool pump(std::optional<clock::time_point> until, Done done) {
    bool look_at_monitor = true;  // at first, after its descriptor fired, and on timer wakes
    for (;;) {
      if (done()) return true;
      auto now = clock::now();
      bool got = false;
      while (receive_one(socket)) {
        got = true;
        if (!protocol::is_batch(in, 0)) {
          core.on_message(now, in);
        } else if (batch.open(in, 0)) {  // its entries, in order (a malformed one is ignored)
          std::size_t bytes = 0;
          while (batch.next(entry, bytes)) core.on_message(now, entry);
        }
      }
      if (unmonitored) {
        unmonitored = false;
        core.on_connected(now);
      }
      // After the socket: answers that came before the connection closed are taken first.
      while (look_at_monitor && monitor && receive_one(monitor)) {
        std::uint16_t event = 0;
        if (!in.empty() && in[0].size() >= sizeof event)
          std::memcpy(&event, in[0].data(), sizeof event);
        if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) core.on_connected(now);
        if (event == ZMQ_EVENT_DISCONNECTED) core.on_disconnected(now);  // may replace both
      }
      if (got && done()) return true;
      core.tick(now);
      if (done()) return true;
      if (until && now >= *until) return false;
      auto wake = core.next_wake(now);
      if (until) wake = std::min(wake, *until);
      // The monitor is only read from: its descriptor says when it may have something (an
      // edge; it is read until empty then), with no check of the socket on every turn.
      zmq::pollitem_t items[2] = {
          {socket.handle(), 0, ZMQ_POLLIN, 0},
          {nullptr, monitor ? monitor.get(zmq::sockopt::fd) : 0, ZMQ_POLLIN, 0}};
      const auto wait = std::chrono::ceil<milliseconds>(wake - now).count();
      const int n =
          zmq_poll(items, monitor ? 2 : 1, static_cast<long>(std::max<std::int64_t>(wait, 0)));
      if (n < 0 && zmq_errno() != EINTR)
        throw error(status::unavailable, zmq_strerror(zmq_errno()));
      look_at_monitor = n <= 0 || (items[1].revents & ZMQ_POLLIN) != 0;
    }
  }

  client_options options;
  zmq::context_t context{1};
  zmq::socket_t socket;
  zmq::socket_t monitor;
  bool unmonitored = false;
  std::uint64_t connections = 0;
  protocol::frames in;
  detail::client_core core;  // last: its constructor may call open()
};

client::client(std::string endpoint, client_options options)
    : impl_(std::make_unique<impl>(endpoint, options)) {}
client::~client() = default;
client::client(client&&) noexcept = default;
client& client::operator=(client&&) noexcept = default;

reply client::call(std::string_view service, std::vector<zmq::message_t> body,
                   std::optional<milliseconds> timeout) {
  impl_->core.flush();
  const milliseconds t = checked(timeout.value_or(impl_->options.timeout));
  const auto now = clock::now();
  detail::client_core::request_options o;
  o.timeout = t;
  // A little longer than the broker's deadline, so the broker's own 504 arrives first. With 0
  // (the broker's default, unknown here) the broker's 504 or the liveness rule ends it.
  if (t.count() > 0) o.give_up_at = now + t + milliseconds(250);
  o.retries = impl_->options.retries;
  o.waited = true;
  const auto id = impl_->core.send(now, service, body, o);
  if (!id) throw error(status::unavailable, "client send queue full: is the broker reachable?");
  std::optional<reply> r;
  impl_->pump(std::nullopt, [&] { return (r = impl_->core.take_call(*id)).has_value(); });
  if (r->local) throw error(r->status, r->message);
  return std::move(*r);
}

std::string client::request(std::string_view service, std::string_view body,
                            std::optional<milliseconds> timeout) {
  std::vector<zmq::message_t> frames;
  frames.emplace_back(body.data(), body.size());
  reply r = call(service, std::move(frames), timeout);
  if (r.status != status::ok) throw error(r.status, r.message);
  return r.text();
}

std::uint64_t client::send(std::string_view service, std::vector<zmq::message_t> body,
                           milliseconds timeout) {
  const auto now = clock::now();
  detail::client_core::request_options o;
  o.timeout = checked(timeout);
  if (o.timeout.count() > 0) o.give_up_at = now + o.timeout + milliseconds(1000);
  const auto id = impl_->core.send(now, service, body, o);
  if (!id) throw error(status::unavailable, "client send queue full: is the broker reachable?");
  return *id;
}

std::uint64_t client::send(std::string_view service, std::string_view body, milliseconds timeout) {
  std::vector<zmq::message_t> frames;
  frames.emplace_back(body.data(), body.size());
  return send(service, std::move(frames), timeout);
}

void client::hold() {
  impl_->pump(clock::now(), [] { return false; });  // the WELCOME, if it came
  impl_->core.hold();
}

void client::flush() {
  impl_->core.flush();
}

std::optional<reply> client::receive(milliseconds wait) {
  impl_->core.flush();
  if (auto r = impl_->core.take()) return r;
  impl_->pump(clock::now() + wait, [&] { return impl_->core.has_answers(); });
  return impl_->core.take();
}

bool client::ping(milliseconds wait) {
  impl_->core.flush();
  const auto before = impl_->core.pongs();
  if (!impl_->core.ping(clock::now()))
    throw error(status::unavailable, "client send queue full: is the broker reachable?");
  return impl_->pump(clock::now() + wait, [&] { return impl_->core.pongs() > before; });
}

}  // namespace scale0
