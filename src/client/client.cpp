#include "scale0/client.hpp"

#include <algorithm>
#include <cerrno>
#include <deque>
#include <unordered_set>

#include "scale0/error.hpp"
#include "scale0/protocol.hpp"
#include "security/curve_socket.hpp"

namespace scale0 {
namespace {

using clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

std::uint32_t to_wire(milliseconds t) {
  return static_cast<std::uint32_t>(std::clamp<std::int64_t>(t.count(), 0, UINT32_MAX));
}

}  // namespace

std::string reply::text() const {
  std::string out;
  for (const auto& f : body) out.append(static_cast<const char*>(f.data()), f.size());
  return out;
}

struct client::impl {
  impl(std::string ep, client_options o) : endpoint(std::move(ep)), options(o) {
    if (options.protocol_version != protocol::version_1 &&
        options.protocol_version != protocol::version_2)
      throw error(status::bad_request, "client protocol_version must be 1 or 2");
    open();
  }

  void open() {
    socket = zmq::socket_t(context, zmq::socket_type::dealer);
    security::apply_curve_client(socket, options.curve);
    socket.set(zmq::sockopt::linger, 0);
    socket.set(zmq::sockopt::sndhwm, 100000);
    socket.set(zmq::sockopt::rcvhwm, 100000);
    try {
      socket.connect(endpoint);
    } catch (const zmq::error_t& e) {
      throw error(status::bad_request, "cannot connect to " + endpoint + ": " + e.what());
    }
  }

  void send_request(std::uint64_t id, std::string_view service, std::vector<zmq::message_t>& body,
                    milliseconds timeout) {
    out.clear();
    protocol::append_client_request(out, id, service, to_wire(timeout), options.protocol_version);
    for (auto& f : body) out.push_back(std::move(f));
    send_frames();
  }

  // Never blocks: with the send queue full (the broker unreachable for a long time, or not
  // reading) the first frame fails at once, nothing is sent, and the caller hears 503.
  void send_frames() {
    for (std::size_t i = 0; i < out.size(); ++i) {
      const int flags = ZMQ_DONTWAIT | (i + 1 < out.size() ? ZMQ_SNDMORE : 0);
      if (zmq_msg_send(out[i].handle(), socket.handle(), flags) < 0 && i == 0)
        throw error(status::unavailable, "client send queue full: is the broker reachable?");
    }
  }

  // Receives one message within `wait`; false on timeout.
  bool receive_frames(milliseconds wait) {
    zmq::pollitem_t item{socket.handle(), 0, ZMQ_POLLIN, 0};
    const auto until = clock::now() + wait;
    for (;;) {
      in.clear();
      in.emplace_back();
      if (zmq_msg_recv(in.back().handle(), socket.handle(), ZMQ_DONTWAIT) >= 0) break;
      if (zmq_errno() != EAGAIN && zmq_errno() != EINTR)
        throw error(status::unavailable, zmq_strerror(zmq_errno()));
      const auto left = std::chrono::ceil<milliseconds>(until - clock::now()).count();
      if (left <= 0) return false;
      if (zmq_poll(&item, 1, static_cast<long>(left)) < 0 && zmq_errno() != EINTR)
        throw error(status::unavailable, zmq_strerror(zmq_errno()));
    }
    while (in.back().more()) {
      in.emplace_back();
      if (zmq_msg_recv(in.back().handle(), socket.handle(), 0) < 0) break;
    }
    return true;
  }

  reply to_reply(const protocol::client_inbound& d) {
    reply r;
    r.id = d.id;
    r.status = d.status;
    r.message.assign(d.message);
    for (std::size_t i = d.first; i < in.size(); ++i) r.body.push_back(std::move(in[i]));
    return r;
  }

  // The next reply of any kind within `wait`.
  std::optional<reply> receive_any(milliseconds wait) {
    const auto until = clock::now() + wait;
    for (;;) {
      const auto left = std::chrono::duration_cast<milliseconds>(until - clock::now());
      if (!receive_frames(std::max(left, milliseconds(0)))) return std::nullopt;
      const auto d = protocol::decode_for_client(in);
      if (d.kind != protocol::client_inbound_kind::reply) continue;  // stray PONG or garbage
      return to_reply(d);
    }
  }

  std::string endpoint;
  client_options options;
  zmq::context_t context{1};
  zmq::socket_t socket;
  std::uint64_t next_id = 1;
  // Pipelined requests not answered yet, and their replies that arrived while call() or ping()
  // was waiting for something else: receive() hands those out first.
  std::unordered_set<std::uint64_t> pipelined;
  std::deque<reply> backlog;

  // Keeps a reply for receive() if it answers a pipelined request; anything else is stale.
  void keep_if_pipelined(reply&& r) {
    if (pipelined.contains(r.id)) backlog.push_back(std::move(r));
  }
  protocol::frames out;
  protocol::frames in;
};

client::client(std::string endpoint, client_options options)
    : impl_(std::make_unique<impl>(std::move(endpoint), options)) {}
client::~client() = default;
client::client(client&&) noexcept = default;
client& client::operator=(client&&) noexcept = default;

reply client::call(std::string_view service, std::vector<zmq::message_t> body,
                   std::optional<milliseconds> timeout) {
  const milliseconds t = timeout.value_or(impl_->options.timeout);
  const std::uint64_t id = impl_->next_id++;
  for (int attempt = 0;; ++attempt) {
    // Keep a copy of the body while a retry is still possible (reference-counted for big frames).
    std::vector<zmq::message_t> sent;
    const bool may_retry = attempt < impl_->options.retries;
    for (auto& f : body) {
      sent.emplace_back();
      if (may_retry)
        sent.back().copy(f);
      else
        sent.back().move(f);
    }
    impl_->send_request(id, service, sent, t);
    // A little longer than the broker's deadline, so the broker's own 504 arrives first.
    const auto until = clock::now() + t + milliseconds(250);
    for (;;) {
      const auto left = std::chrono::duration_cast<milliseconds>(until - clock::now());
      auto r = impl_->receive_any(std::max(left, milliseconds(0)));
      if (!r) break;
      if (r->id == id) return std::move(*r);
      impl_->keep_if_pipelined(std::move(*r));  // else a reply to an earlier, abandoned call
    }
    // Lazy Pirate: a fresh socket drops what the old one still queued, so a request given up on
    // is never delivered later to a broker that comes back.
    impl_->open();
    impl_->pipelined.clear();  // their replies would have come on the old socket
    if (!may_retry)
      throw error(status::deadline, "no reply within " + std::to_string(t.count()) + " ms");
  }
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
  const std::uint64_t id = impl_->next_id++;
  impl_->send_request(id, service, body, timeout);
  impl_->pipelined.insert(id);
  return id;
}

std::uint64_t client::send(std::string_view service, std::string_view body, milliseconds timeout) {
  std::vector<zmq::message_t> frames;
  frames.emplace_back(body.data(), body.size());
  return send(service, std::move(frames), timeout);
}

std::optional<reply> client::receive(milliseconds wait) {
  if (!impl_->backlog.empty()) {
    reply r = std::move(impl_->backlog.front());
    impl_->backlog.pop_front();
    impl_->pipelined.erase(r.id);
    return r;
  }
  const auto until = clock::now() + wait;
  for (;;) {
    const auto left = std::chrono::duration_cast<milliseconds>(until - clock::now());
    auto r = impl_->receive_any(std::max(left, milliseconds(0)));
    if (!r) return std::nullopt;
    if (impl_->pipelined.erase(r->id) != 0) return r;
    // a late reply to a call() that gave up: not the caller's
  }
}

bool client::ping(milliseconds wait) {
  impl_->out.clear();
  protocol::append_client_ping(impl_->out, impl_->options.protocol_version);
  impl_->send_frames();
  const auto until = clock::now() + wait;
  for (;;) {
    const auto left = std::chrono::duration_cast<milliseconds>(until - clock::now());
    if (!impl_->receive_frames(std::max(left, milliseconds(0)))) return false;
    const auto d = protocol::decode_for_client(impl_->in);
    if (d.kind == protocol::client_inbound_kind::pong) return true;
    if (d.kind == protocol::client_inbound_kind::reply)
      impl_->keep_if_pipelined(impl_->to_reply(d));
  }
}

}  // namespace scale0
