#include "scale0/client.hpp"

#include <algorithm>
#include <cerrno>

#include "scale0/error.hpp"
#include "scale0/protocol.hpp"

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
  impl(std::string ep, client_options o) : endpoint(std::move(ep)), options(o) { open(); }

  void open() {
    socket = zmq::socket_t(context, zmq::socket_type::dealer);
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
    protocol::append_client_request(out, id, service, to_wire(timeout));
    for (auto& f : body) out.push_back(std::move(f));
    send_frames();
  }

  void send_frames() {
    for (std::size_t i = 0; i < out.size(); ++i) {
      const auto flags = i + 1 < out.size() ? zmq::send_flags::sndmore : zmq::send_flags::none;
      if (!socket.send(out[i], flags)) throw error(status::unavailable, "client send queue full");
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

  std::optional<reply> receive(milliseconds wait) {
    const auto until = clock::now() + wait;
    for (;;) {
      const auto left = std::chrono::duration_cast<milliseconds>(until - clock::now());
      if (!receive_frames(std::max(left, milliseconds(0)))) return std::nullopt;
      const auto d = protocol::decode_for_client(in);
      if (d.kind != protocol::client_inbound_kind::reply) continue;  // stray PONG or garbage
      reply r;
      r.id = d.id;
      r.status = d.status;
      r.message.assign(d.message);
      for (std::size_t i = d.first; i < in.size(); ++i) r.body.push_back(std::move(in[i]));
      return r;
    }
  }

  std::string endpoint;
  client_options options;
  zmq::context_t context{1};
  zmq::socket_t socket;
  std::uint64_t next_id = 1;
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
      auto r = impl_->receive(std::max(left, milliseconds(0)));
      if (!r) break;
      if (r->id == id) return std::move(*r);
      // a reply to an earlier, abandoned request: discard
    }
    if (!may_retry)
      throw error(status::deadline, "no reply within " + std::to_string(t.count()) + " ms");
    impl_->open();  // Lazy Pirate: a fresh socket drops whatever the old one had queued
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
  return id;
}

std::uint64_t client::send(std::string_view service, std::string_view body, milliseconds timeout) {
  std::vector<zmq::message_t> frames;
  frames.emplace_back(body.data(), body.size());
  return send(service, std::move(frames), timeout);
}

std::optional<reply> client::receive(milliseconds wait) {
  return impl_->receive(wait);
}

bool client::ping(milliseconds wait) {
  impl_->out.clear();
  protocol::append_client_ping(impl_->out);
  impl_->send_frames();
  const auto until = clock::now() + wait;
  for (;;) {
    const auto left = std::chrono::duration_cast<milliseconds>(until - clock::now());
    if (!impl_->receive_frames(std::max(left, milliseconds(0)))) return false;
    if (protocol::decode_for_client(impl_->in).kind == protocol::client_inbound_kind::pong)
      return true;
  }
}

}  // namespace scale0
