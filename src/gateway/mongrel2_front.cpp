// SPDX-License-Identifier: Apache-2.0
// The Mongrel2 front door's loop (docs/http.md, "Mongrel2 as the front door"). One thread owns the
// PULL from Mongrel2, the PUB to it and the DEALER to the broker: wait for any of them or the next
// deadline, drain what is readable, expire. The protocol work is in mongrel2_codec.
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <map>
#include <optional>
#include <random>
#include <unordered_map>
#include <zmq.hpp>

#include "common/host_port.hpp"
#include "metrics/metrics_server.hpp"
#include "mongrel2_codec.hpp"
#include "mongrel2_stats.hpp"
#include "routes.hpp"
#include "scale0/error.hpp"
#include "scale0/mongrel2.hpp"
#include "scale0/protocol.hpp"
#include "security/curve_socket.hpp"

namespace scale0 {
namespace {

namespace m2 = mongrel2_detail;
using clock_type = std::chrono::steady_clock;

constexpr int max_batch = 1024;  // messages read from one socket per wake-up
constexpr auto idle_poll = std::chrono::milliseconds(100);  // a bound on one wait
const auto broker_grace = std::chrono::seconds(1);          // our deadline: the request's + this

std::string random_hex(std::size_t digits) {
  std::random_device rd;
  std::mt19937_64 rng((static_cast<std::uint64_t>(rd()) << 32) ^ rd());
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  for (std::size_t i = 0; i < digits; ++i) out.push_back(hex[rng() % 16]);
  return out;
}

std::string fresh_uuid() {
  std::string h = random_hex(32);
  return h.substr(0, 8) + "-" + h.substr(8, 4) + "-" + h.substr(12, 4) + "-" + h.substr(16, 4) +
         "-" + h.substr(20);
}

// Replies, errors and messages from workers go into a one-line text body: no control bytes.
std::string one_line(std::string_view s) {
  std::string out(s.substr(0, 200));
  for (auto& c : out)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  return out;
}

// The status code of an answer made by mongrel2_codec ("HTTP/1.1 200 OK\r\n..."), for metrics.
unsigned status_of(std::string_view response) {
  unsigned code = 0;
  for (std::size_t i = 9; i < 12 && i < response.size(); ++i)
    if (response[i] >= '0' && response[i] <= '9') code = code * 10 + (response[i] - '0');
  return code;
}

void connect(zmq::socket_t& s, const std::string& endpoint, const char* flag) {
  try {
    s.connect(endpoint);
  } catch (const zmq::error_t& e) {
    throw error(status::bad_request, std::string(flag) + " '" + endpoint + "': " + e.what());
  }
}

void check(const mongrel2_options& o) {
  if (o.timeout.count() <= 0) throw error(status::bad_request, "the timeout must be positive");
  if (o.max_inflight == 0) throw error(status::bad_request, "max-inflight must be at least 1");
  if (!o.insecure && !o.metrics_listen.empty() && !detail::loopback_listen(o.metrics_listen))
    throw error(status::bad_request, "protected mode: --metrics-listen " + o.metrics_listen +
                                         " serves plain HTTP to other machines; bind a loopback "
                                         "address or pass --insecure");
}

}  // namespace

struct mongrel2_front::impl {
  explicit impl(mongrel2_options o);
  ~impl();

  void run();
  void step();

  // One HTTP request from Mongrel2, from arrival until its answer has been published.
  struct pending {
    std::string conn;  // "sender conn_id": the connection's key
    std::string sender;
    std::string conn_id;
    std::string request_id;
    std::string_view label = "none";  // metrics: the route's label, into router_
    clock_type::time_point arrived;
    bool keep_alive = true;
    bool head = false;
    unsigned code = 0;                  // of the answer
    std::optional<std::string> answer;  // ready, waiting for earlier requests on the connection
    std::multimap<clock_type::time_point, std::uint64_t>::iterator deadline;
    bool has_deadline = false;
  };

  void event(mongrel2_event_kind kind, std::string_view what, std::string_view detail = {},
             std::string_view connection = {}, std::uint64_t count = 0) const {
    if (o_.on_event) o_.on_event({kind, what, detail, connection, count});
  }
  void malformed(std::string_view what, std::string_view problem) {
    ++totals_.malformed;
    event(mongrel2_event_kind::dropped, what, problem);
  }
  std::chrono::milliseconds poll_timeout() const;

  // Mongrel2 → broker.
  void read_mongrel2();
  void on_mongrel2(std::string_view message);
  bool send_frames(protocol::frames& f);
  void admit_answered(std::uint64_t id, pending p, unsigned code, const std::string& text);
  void forget(const std::string& conn);
  std::size_t drop_connection(const std::string& conn);

  // Broker → Mongrel2.
  void read_broker();
  void on_broker(const protocol::frames& f);
  void settle(pending& p);
  void flush(const std::string& conn);
  void publish(std::string message);
  void read_subscriptions();
  void expire(clock_type::time_point now);
  void shut_down();

  mongrel2_options o_;
  zmq::context_t ctx_{1};
  zmq::socket_t pull_;
  zmq::socket_t pub_;
  zmq::socket_t broker_;
  gateway_detail::router router_;
  gateway_detail::trusted_proxies trusted_;
  m2::m2_rules rules_;
  std::string id_prefix_;
  std::uint64_t next_id_ = 1;
  std::unordered_map<std::uint64_t, pending> inflight_;
  std::unordered_map<std::string, std::deque<std::uint64_t>> conns_;
  std::multimap<clock_type::time_point, std::uint64_t> deadlines_;
  bool subscribed_ = false;
  std::vector<std::string> held_;
  mongrel2_totals totals_;
  int control_fd_ = -1;  // eventfd: stop() from any thread or a signal handler
  std::atomic<bool> stop_requested_{false};
  gateway_detail::mongrel2_stats stats_;
  std::unique_ptr<metrics::metrics_server> metrics_;  // last: it reads stats_ until destroyed
};

mongrel2_front::impl::impl(mongrel2_options o)
    : o_(std::move(o)),
      pull_(ctx_, zmq::socket_type::pull),
      pub_(ctx_, zmq::socket_type::xpub),
      broker_(ctx_, zmq::socket_type::dealer),
      id_prefix_(random_hex(12)) {
  check(o_);
  std::vector<gateway_detail::route> routes;
  for (std::size_t i = 0; i < o_.routes.size(); ++i)
    routes.push_back(gateway_detail::parse_route(o_.routes[i], i + 1));
  router_ = gateway_detail::router(std::move(routes), o_.default_service);
  trusted_ = gateway_detail::trusted_proxies(o_.trusted_proxies);
  rules_.trusted = &trusted_;
  rules_.keep_underscores = o_.underscores_in_headers;
  const std::string identity = o_.sender_id.empty() ? fresh_uuid() : o_.sender_id;
  for (zmq::socket_t* s : {&pull_, &pub_, &broker_}) {
    s->set(zmq::sockopt::linger, 0);
    s->set(zmq::sockopt::rcvhwm, 100000);
    s->set(zmq::sockopt::sndhwm, 100000);
  }
  pull_.set(zmq::sockopt::routing_id, identity);
  pub_.set(zmq::sockopt::routing_id, identity);
  pub_.set(zmq::sockopt::linger, 1000);  // answers given while stopping still go out
  connect(pull_, o_.send_spec, "--send-spec");
  connect(pub_, o_.recv_spec, "--recv-spec");
  security::apply_curve_client(broker_, o_.curve);
  connect(broker_, o_.broker, "--broker");
  control_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (control_fd_ < 0) throw error(status::bad_request, "cannot create an eventfd");
  if (!o_.metrics_listen.empty()) {
    metrics::metrics_server::handlers h;
    h.metrics = [this]() -> std::optional<std::string> { return stats_.render(); };
    h.ready = [this] { return !stop_requested_.load(); };
    metrics_ = std::make_unique<metrics::metrics_server>(o_.metrics_listen, std::move(h));
  }
}

mongrel2_front::impl::~impl() {
  metrics_.reset();
  if (control_fd_ >= 0) ::close(control_fd_);
}

void mongrel2_front::impl::run() {
  while (!stop_requested_.load()) {
    try {
      step();
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) continue;  // a signal: the loop condition decides
      event(mongrel2_event_kind::loop_error, "zmq error in the loop", e.what());
    } catch (const std::exception& e) {
      event(mongrel2_event_kind::loop_error, "error in the loop", e.what());
    }
  }
  shut_down();
}

// One wake-up: wait for any socket, a stop or the next deadline, drain what is readable, expire.
void mongrel2_front::impl::step() {
  zmq::pollitem_t items[] = {{pull_.handle(), 0, ZMQ_POLLIN, 0},
                             {pub_.handle(), 0, ZMQ_POLLIN, 0},
                             {broker_.handle(), 0, ZMQ_POLLIN, 0},
                             {nullptr, control_fd_, ZMQ_POLLIN, 0}};
  zmq::poll(items, 4, poll_timeout());
  if (items[0].revents & ZMQ_POLLIN) read_mongrel2();
  if (items[1].revents & ZMQ_POLLIN) read_subscriptions();
  if (items[2].revents & ZMQ_POLLIN) read_broker();
  if (items[3].revents & ZMQ_POLLIN) {
    std::uint64_t v = 0;
    [[maybe_unused]] auto n = ::read(control_fd_, &v, sizeof v);
  }
  expire(clock_type::now());
  stats_.inflight = deadlines_.size();
}

std::chrono::milliseconds mongrel2_front::impl::poll_timeout() const {
  if (deadlines_.empty()) return idle_poll;
  const auto left =
      std::chrono::ceil<std::chrono::milliseconds>(deadlines_.begin()->first - clock_type::now());
  return std::clamp(left, std::chrono::milliseconds(0), idle_poll);
}

// ---- Mongrel2 → broker ----

void mongrel2_front::impl::read_mongrel2() {
  for (int i = 0; i < max_batch; ++i) {
    zmq::message_t msg;
    if (!pull_.recv(msg, zmq::recv_flags::dontwait)) return;
    on_mongrel2(std::string_view(static_cast<const char*>(msg.data()), msg.size()));
  }
}

void mongrel2_front::impl::on_mongrel2(std::string_view message) {
  m2::m2_request r;
  if (auto problem = m2::parse_request(message, r, {o_.max_message, 1024}); !problem.empty()) {
    ++stats_.malformed_messages;
    return malformed("malformed Mongrel2 message dropped", problem);
  }
  switch (r.kind) {
    case m2::m2_kind::disconnect:
      return forget(r.sender + " " + r.conn_id);
    case m2::m2_kind::other:
      ++stats_.malformed_messages;
      return malformed("non-HTTP Mongrel2 message dropped", *r.header("METHOD"));
    case m2::m2_kind::http:
      break;
  }
  const std::uint64_t id = next_id_++;
  const std::string fresh = id_prefix_ + "-" + std::to_string(id);
  pending p;
  p.conn = r.sender + " " + r.conn_id;
  p.sender = r.sender;
  p.conn_id = r.conn_id;
  p.request_id = fresh;
  p.arrived = clock_type::now();
  p.keep_alive = m2::keep_alive(r);
  p.head = m2::is_head(r);
  if (r.header("x-mongrel2-upload-start") != nullptr) {
    if (r.header("x-mongrel2-upload-done") == nullptr) return;  // the done message follows
    p.keep_alive = false;
    return admit_answered(id, std::move(p), 413,
                          "request body over Mongrel2's limits.content_length");
  }
  m2::http_request h;
  if (auto problem = m2::to_http_request(r, fresh, rules_, h); !problem.empty()) {
    malformed("unusable HTTP request refused", problem);
    p.keep_alive = false;
    return admit_answered(id, std::move(p), h.status, problem);
  }
  p.request_id = h.request_id;
  if (h.connect) p.keep_alive = false;  // no tunnel follows
  const auto choice = router_.choose(h.host, h.path, h.connect);
  p.label = choice.label;
  if (choice.connect_refused) return admit_answered(id, std::move(p), 405, choice.problem);
  if (choice.service.empty()) return admit_answered(id, std::move(p), 400, choice.problem);
  if (inflight_.size() >= o_.max_inflight)
    return admit_answered(id, std::move(p), 503, "too many requests in flight");
  const auto timeout = choice.timeout.count() > 0 ? choice.timeout : o_.timeout;
  protocol::frames f;
  protocol::append_client_request(f, id, choice.service,
                                  static_cast<std::uint32_t>(timeout.count()), protocol::version_2);
  f.push_back(protocol::str_frame(h.wire));
  if (!send_frames(f))
    return admit_answered(id, std::move(p), 503, "the broker connection is backed up");
  ++totals_.requests;
  const std::string conn = p.conn;
  auto& slot = inflight_.emplace(id, std::move(p)).first->second;
  slot.deadline = deadlines_.emplace(clock_type::now() + timeout + broker_grace, id);
  slot.has_deadline = true;
  conns_[conn].push_back(id);
}

bool mongrel2_front::impl::send_frames(protocol::frames& f) {
  for (std::size_t i = 0; i < f.size(); ++i) {
    const auto more = i + 1 < f.size() ? zmq::send_flags::sndmore : zmq::send_flags::none;
    if (!broker_.send(f[i], more | zmq::send_flags::dontwait)) return i != 0;
  }
  return true;
}

// An answer made here, queued behind any earlier request on the same connection.
void mongrel2_front::impl::admit_answered(std::uint64_t id, pending p, unsigned code,
                                          const std::string& text) {
  p.code = code;
  p.answer = m2::error_response(code, one_line(text), p.head, p.keep_alive, p.request_id,
                                code == 503 ? o_.retry_after : 0);
  const std::string conn = p.conn;
  inflight_.emplace(id, std::move(p));
  conns_[conn].push_back(id);
  flush(conn);
}

// The client went away: its requests still in the broker are forgotten, their replies dropped.
void mongrel2_front::impl::forget(const std::string& conn) {
  if (const std::size_t n = drop_connection(conn); n > 0)
    event(mongrel2_event_kind::disconnected, "client disconnected", {}, conn, n);
}

// Forgets the connection and its requests; returns how many were still pending.
std::size_t mongrel2_front::impl::drop_connection(const std::string& conn) {
  const auto it = conns_.find(conn);
  if (it == conns_.end()) return 0;
  std::size_t n = 0;
  for (const std::uint64_t id : it->second) {
    const auto p = inflight_.find(id);
    if (p == inflight_.end()) continue;
    if (p->second.has_deadline) deadlines_.erase(p->second.deadline);
    inflight_.erase(p);
    ++n;
  }
  conns_.erase(it);
  totals_.forgotten += n;
  return n;
}

// ---- broker → Mongrel2 ----

void mongrel2_front::impl::read_broker() {
  for (int i = 0; i < max_batch; ++i) {
    protocol::frames f;
    zmq::message_t m;
    if (!broker_.recv(m, zmq::recv_flags::dontwait)) return;
    f.push_back(std::move(m));
    while (f.back().more()) {
      zmq::message_t part;
      if (!broker_.recv(part, zmq::recv_flags::none)) break;
      f.push_back(std::move(part));
    }
    on_broker(f);
  }
}

void mongrel2_front::impl::on_broker(const protocol::frames& f) {
  const auto in = protocol::decode_for_client(f);
  if (in.kind != protocol::client_inbound_kind::reply) {
    ++totals_.dropped_replies;
    return malformed("unexpected message from the broker dropped", "not a REPLY");
  }
  const auto it = inflight_.find(in.id);
  if (it == inflight_.end() || it->second.answer) {
    ++totals_.dropped_replies;  // the client disconnected, or we answered 504 already
    ++stats_.broker_unknown_replies;
    return;
  }
  pending& p = it->second;
  if (in.status == status::ok) {
    std::string wire;
    for (std::size_t i = in.first; i < f.size(); ++i) wire.append(protocol::view(f[i]));
    std::string out;
    if (auto problem = m2::client_response(wire, p.head, p.keep_alive, p.request_id, out);
        problem.empty()) {
      p.code = status_of(out);
      p.answer = std::move(out);
    } else {
      malformed("malformed worker response answered 502", problem);
      p.code = 502;
      p.answer = m2::error_response(502, "the worker's reply is not a well-formed HTTP response",
                                    p.head, p.keep_alive, p.request_id);
    }
  } else {
    const unsigned code = m2::http_status_for(in.status);
    std::string text = "upstream status " + std::to_string(in.status);
    if (!in.message.empty()) text += ": " + std::string(in.message);
    p.code = code;
    p.answer = m2::error_response(code, one_line(text), p.head, p.keep_alive, p.request_id,
                                  code == 503 ? o_.retry_after : 0);
  }
  settle(p);
}

void mongrel2_front::impl::settle(pending& p) {
  if (p.has_deadline) deadlines_.erase(p.deadline);
  p.has_deadline = false;
  flush(std::string(p.conn));
}

// Publishes the connection's answers that are ready, in the order its requests came.
void mongrel2_front::impl::flush(const std::string& conn) {
  const auto c = conns_.find(conn);
  if (c == conns_.end()) return;
  auto& order = c->second;
  while (!order.empty()) {
    const auto it = inflight_.find(order.front());
    if (it == inflight_.end()) {
      order.pop_front();
      continue;
    }
    pending& p = it->second;
    if (!p.answer) return;
    publish(m2::reply_message(p.sender, p.conn_id, *p.answer));
    ++totals_.answered;
    stats_.record(p.label, p.code, clock_type::now() - p.arrived);
    const bool close = !p.keep_alive;
    if (close) publish(m2::reply_message(p.sender, p.conn_id, ""));  // Mongrel2: close it
    if (p.has_deadline) deadlines_.erase(p.deadline);
    inflight_.erase(it);
    order.pop_front();
    if (close) {
      drop_connection(conn);  // anything pipelined after "close" is not answered
      return;
    }
  }
  conns_.erase(c);
}

// Until Mongrel2's SUB has subscribed, a PUB would drop what we send: hold it.
void mongrel2_front::impl::publish(std::string message) {
  if (!subscribed_) {
    if (held_.size() < o_.max_inflight) held_.push_back(std::move(message));
    return;
  }
  pub_.send(zmq::buffer(message), zmq::send_flags::dontwait);
}

void mongrel2_front::impl::read_subscriptions() {
  for (int i = 0; i < max_batch; ++i) {
    zmq::message_t m;
    if (!pub_.recv(m, zmq::recv_flags::dontwait)) break;
    if (m.size() > 0 && static_cast<const char*>(m.data())[0] == 1 && !subscribed_) {
      subscribed_ = true;
      event(mongrel2_event_kind::subscribed, "Mongrel2 subscribed", o_.recv_spec);
    }
  }
  if (subscribed_ && !held_.empty()) {
    for (auto& m : held_) pub_.send(zmq::buffer(m), zmq::send_flags::dontwait);
    held_.clear();
  }
}

// No answer from the broker by the request's deadline + 1 s: 504.
void mongrel2_front::impl::expire(clock_type::time_point now) {
  while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
    const std::uint64_t id = deadlines_.begin()->second;
    deadlines_.erase(deadlines_.begin());
    const auto it = inflight_.find(id);
    if (it == inflight_.end()) continue;
    pending& p = it->second;
    p.has_deadline = false;
    ++totals_.expired;
    p.code = 504;
    p.answer = m2::error_response(504, "no answer from the broker in time", p.head, p.keep_alive,
                                  p.request_id);
    flush(std::string(p.conn));
  }
}

void mongrel2_front::impl::shut_down() {
  for (auto& [id, p] : inflight_)
    if (!p.answer) {
      p.keep_alive = false;
      p.code = 503;
      p.answer = m2::error_response(503, "the Mongrel2 handler is shutting down", p.head, false,
                                    p.request_id, o_.retry_after);
    }
  std::vector<std::string> conns;
  for (const auto& [conn, ids] : conns_) conns.push_back(conn);
  for (const auto& conn : conns) flush(conn);
  stats_.inflight = deadlines_.size();
}

mongrel2_front::mongrel2_front(mongrel2_options options)
    : impl_(std::make_unique<impl>(std::move(options))) {}
mongrel2_front::~mongrel2_front() = default;

void mongrel2_front::run() {
  impl_->run();
}

void mongrel2_front::stop() noexcept {
  impl_->stop_requested_ = true;
  const std::uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(impl_->control_fd_, &one, sizeof one);
}

std::string mongrel2_front::metrics_endpoint() const {
  return impl_->metrics_ ? impl_->metrics_->endpoint() : std::string();
}

mongrel2_totals mongrel2_front::totals() const {
  return impl_->totals_;
}

}  // namespace scale0
