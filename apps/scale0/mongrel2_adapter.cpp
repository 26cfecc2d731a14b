// SPDX-License-Identifier: Apache-2.0
#include "mongrel2_adapter.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <deque>
#include <map>
#include <optional>
#include <random>
#include <unordered_map>
#include <zmq.hpp>

#include "gateway/mongrel2_codec.hpp"
#include "gateway/routes.hpp"
#include "logging.hpp"
#include "scale0/error.hpp"
#include "scale0/protocol.hpp"
#include "security/curve_socket.hpp"

namespace scale0::cli {
namespace {

namespace m2 = mongrel2_detail;
using clock_type = std::chrono::steady_clock;
using spdlog::level::debug;
using spdlog::level::info;
using spdlog::level::warn;

constexpr int max_batch = 1024;  // messages read from one socket per wake-up
constexpr auto idle_poll = std::chrono::milliseconds(100);  // how soon a stop request is seen
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

class adapter {
 public:
  explicit adapter(const mongrel2_options& o)
      : o_(o),
        pull_(ctx_, zmq::socket_type::pull),
        pub_(ctx_, zmq::socket_type::xpub),
        broker_(ctx_, zmq::socket_type::dealer),
        id_prefix_(random_hex(12)) {
    std::vector<gateway_detail::route> routes;
    for (std::size_t i = 0; i < o.routes.size(); ++i)
      routes.push_back(gateway_detail::parse_route(o.routes[i], i + 1));
    router_ = gateway_detail::router(std::move(routes), o.default_service);
    trusted_ = gateway_detail::trusted_proxies(o.trusted_proxies);
    rules_.trusted = &trusted_;
    rules_.keep_underscores = o.underscores_in_headers;
    const std::string identity = o.sender_id.empty() ? fresh_uuid() : o.sender_id;
    for (zmq::socket_t* s : {&pull_, &pub_, &broker_}) {
      s->set(zmq::sockopt::linger, 0);
      s->set(zmq::sockopt::rcvhwm, 100000);
      s->set(zmq::sockopt::sndhwm, 100000);
    }
    pull_.set(zmq::sockopt::routing_id, identity);
    pub_.set(zmq::sockopt::routing_id, identity);
    pub_.set(zmq::sockopt::linger, 1000);  // answers given while stopping still go out
    connect(pull_, o.send_spec, "--send-spec");
    connect(pub_, o.recv_spec, "--recv-spec");
    security::apply_curve_client(broker_, o.curve);
    connect(broker_, o.broker, "--broker");
  }

  int run(const std::atomic<bool>& stop) {
    std::printf("ready send=%s recv=%s broker=%s\n", o_.send_spec.c_str(), o_.recv_spec.c_str(),
                o_.broker.c_str());
    std::fflush(stdout);
    log(info, "mongrel2 handler ready",
        {{"send_spec", o_.send_spec}, {"recv_spec", o_.recv_spec}, {"broker", o_.broker}});
    while (!stop.load()) {
      try {
        step();
      } catch (const zmq::error_t& e) {
        if (e.num() == EINTR) continue;  // a signal: the loop condition decides
        log(spdlog::level::err, "zmq error in the loop", {{"error", e.what()}});
      } catch (const std::exception& e) {
        log(spdlog::level::err, "error in the loop", {{"error", e.what()}});
      }
    }
    shut_down();
    return 0;
  }

 private:
  // One wake-up: wait for any socket or the next deadline, drain what is readable, expire.
  void step() {
    zmq::pollitem_t items[] = {{pull_.handle(), 0, ZMQ_POLLIN, 0},
                               {pub_.handle(), 0, ZMQ_POLLIN, 0},
                               {broker_.handle(), 0, ZMQ_POLLIN, 0}};
    zmq::poll(items, 3, poll_timeout());
    if (items[0].revents & ZMQ_POLLIN) read_mongrel2();
    if (items[1].revents & ZMQ_POLLIN) read_subscriptions();
    if (items[2].revents & ZMQ_POLLIN) read_broker();
    expire(clock_type::now());
    if (const auto held = limiter_.flush())
      log(warn, "log lines suppressed by the rate limit", {{"count", held}});
  }

  // One HTTP request from Mongrel2, from arrival until its answer has been published.
  struct pending {
    std::string conn;  // "sender conn_id": the connection's key
    std::string sender;
    std::string conn_id;
    std::string request_id;
    bool keep_alive = true;
    bool head = false;
    std::optional<std::string> answer;  // ready, waiting for earlier requests on the connection
    std::multimap<clock_type::time_point, std::uint64_t>::iterator deadline;
    bool has_deadline = false;
  };

  static void connect(zmq::socket_t& s, const std::string& endpoint, const char* flag) {
    try {
      s.connect(endpoint);
    } catch (const zmq::error_t& e) {
      throw error(status::bad_request, std::string(flag) + " '" + endpoint + "': " + e.what());
    }
  }

  std::chrono::milliseconds poll_timeout() const {
    if (deadlines_.empty()) return idle_poll;
    const auto left =
        std::chrono::ceil<std::chrono::milliseconds>(deadlines_.begin()->first - clock_type::now());
    return std::clamp(left, std::chrono::milliseconds(0), idle_poll);
  }

  void malformed(std::string_view what, std::string_view problem) {
    ++malformed_;
    std::uint64_t held = 0;
    if (!limiter_.allow(held)) return;
    if (held > 0) log(warn, "log lines suppressed by the rate limit", {{"count", held}});
    log(warn, what, {{"reason", std::string(problem)}});
  }

  // ---- Mongrel2 → broker ----

  void read_mongrel2() {
    for (int i = 0; i < max_batch; ++i) {
      zmq::message_t msg;
      if (!pull_.recv(msg, zmq::recv_flags::dontwait)) return;
      on_mongrel2(std::string_view(static_cast<const char*>(msg.data()), msg.size()));
    }
  }

  void on_mongrel2(std::string_view message) {
    m2::m2_request r;
    if (auto problem = m2::parse_request(message, r, {o_.max_message, 1024}); !problem.empty())
      return malformed("malformed Mongrel2 message dropped", problem);
    switch (r.kind) {
      case m2::m2_kind::disconnect:
        return forget(r.sender + " " + r.conn_id);
      case m2::m2_kind::other:
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
    if (choice.connect_refused) return admit_answered(id, std::move(p), 405, choice.problem);
    if (choice.service.empty()) return admit_answered(id, std::move(p), 400, choice.problem);
    if (inflight_.size() >= o_.max_inflight)
      return admit_answered(id, std::move(p), 503, "too many requests in flight");
    const long timeout_ms =
        choice.timeout.count() > 0 ? static_cast<long>(choice.timeout.count()) : o_.timeout_ms;
    protocol::frames f;
    protocol::append_client_request(f, id, choice.service, static_cast<std::uint32_t>(timeout_ms),
                                    protocol::version_2);
    f.push_back(protocol::str_frame(h.wire));
    if (!send_frames(f))
      return admit_answered(id, std::move(p), 503, "the broker connection is backed up");
    ++requests_;
    const std::string conn = p.conn;
    auto& slot = inflight_.emplace(id, std::move(p)).first->second;
    slot.deadline = deadlines_.emplace(
        clock_type::now() + std::chrono::milliseconds(timeout_ms) + broker_grace, id);
    slot.has_deadline = true;
    conns_[conn].push_back(id);
  }

  bool send_frames(protocol::frames& f) {
    for (std::size_t i = 0; i < f.size(); ++i) {
      const auto more = i + 1 < f.size() ? zmq::send_flags::sndmore : zmq::send_flags::none;
      if (!broker_.send(f[i], more | zmq::send_flags::dontwait)) return i != 0;
    }
    return true;
  }

  // An answer made here, queued behind any earlier request on the same connection.
  void admit_answered(std::uint64_t id, pending p, unsigned code, const std::string& text) {
    p.answer = m2::error_response(code, one_line(text), p.head, p.keep_alive, p.request_id,
                                  code == 503 ? o_.retry_after_s : 0);
    const std::string conn = p.conn;
    inflight_.emplace(id, std::move(p));
    conns_[conn].push_back(id);
    flush(conn);
  }

  // The client went away: its requests still in the broker are forgotten, their replies dropped.
  void forget(const std::string& conn) {
    if (const std::size_t n = drop_connection(conn); n > 0)
      log(debug, "client disconnected", {{"connection", conn}, {"forgotten", n}});
  }

  // Forgets the connection and its requests; returns how many were still pending.
  std::size_t drop_connection(const std::string& conn) {
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
    forgotten_ += n;
    return n;
  }

  // ---- broker → Mongrel2 ----

  void read_broker() {
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

  void on_broker(const protocol::frames& f) {
    const auto in = protocol::decode_for_client(f);
    if (in.kind != protocol::client_inbound_kind::reply) {
      ++dropped_replies_;
      return malformed("unexpected message from the broker dropped", "not a REPLY");
    }
    const auto it = inflight_.find(in.id);
    if (it == inflight_.end() || it->second.answer) {
      ++dropped_replies_;  // the client disconnected, or we answered 504 already
      return;
    }
    pending& p = it->second;
    if (in.status == status::ok) {
      std::string wire;
      for (std::size_t i = in.first; i < f.size(); ++i) wire.append(protocol::view(f[i]));
      std::string out;
      if (auto problem = m2::client_response(wire, p.head, p.keep_alive, p.request_id, out);
          problem.empty()) {
        p.answer = std::move(out);
      } else {
        malformed("malformed worker response answered 502", problem);
        p.answer = m2::error_response(502, "the worker's reply is not a well-formed HTTP response",
                                      p.head, p.keep_alive, p.request_id);
      }
    } else {
      const unsigned code = m2::http_status_for(in.status);
      std::string text = "upstream status " + std::to_string(in.status);
      if (!in.message.empty()) text += ": " + std::string(in.message);
      p.answer = m2::error_response(code, one_line(text), p.head, p.keep_alive, p.request_id,
                                    code == 503 ? o_.retry_after_s : 0);
    }
    settle(p);
  }

  void settle(pending& p) {
    if (p.has_deadline) deadlines_.erase(p.deadline);
    p.has_deadline = false;
    flush(std::string(p.conn));
  }

  // Publishes the connection's answers that are ready, in the order its requests came.
  void flush(const std::string& conn) {
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
      ++answered_;
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
  void publish(std::string message) {
    if (!subscribed_) {
      if (held_.size() < o_.max_inflight) held_.push_back(std::move(message));
      return;
    }
    pub_.send(zmq::buffer(message), zmq::send_flags::dontwait);
  }

  void read_subscriptions() {
    for (int i = 0; i < max_batch; ++i) {
      zmq::message_t m;
      if (!pub_.recv(m, zmq::recv_flags::dontwait)) break;
      if (m.size() > 0 && static_cast<const char*>(m.data())[0] == 1 && !subscribed_) {
        subscribed_ = true;
        log(info, "Mongrel2 subscribed", {{"recv_spec", o_.recv_spec}});
      }
    }
    if (subscribed_ && !held_.empty()) {
      for (auto& m : held_) pub_.send(zmq::buffer(m), zmq::send_flags::dontwait);
      held_.clear();
    }
  }

  // No answer from the broker by the request's deadline + 1 s: 504.
  void expire(clock_type::time_point now) {
    while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
      const std::uint64_t id = deadlines_.begin()->second;
      deadlines_.erase(deadlines_.begin());
      const auto it = inflight_.find(id);
      if (it == inflight_.end()) continue;
      pending& p = it->second;
      p.has_deadline = false;
      ++expired_;
      p.answer = m2::error_response(504, "no answer from the broker in time", p.head, p.keep_alive,
                                    p.request_id);
      flush(std::string(p.conn));
    }
  }

  void shut_down() {
    for (auto& [id, p] : inflight_)
      if (!p.answer) {
        p.keep_alive = false;
        p.answer = m2::error_response(503, "the Mongrel2 handler is shutting down", p.head, false,
                                      p.request_id, o_.retry_after_s);
      }
    std::vector<std::string> conns;
    for (const auto& [conn, ids] : conns_) conns.push_back(conn);
    for (const auto& conn : conns) flush(conn);
    log(info, "mongrel2 handler stopped",
        {{"requests", requests_},
         {"answered", answered_},
         {"expired", expired_},
         {"forgotten", forgotten_},
         {"dropped_replies", dropped_replies_},
         {"malformed", malformed_}});
  }

  const mongrel2_options& o_;
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
  log_limiter limiter_{10};
  std::uint64_t requests_ = 0, answered_ = 0, expired_ = 0, forgotten_ = 0, dropped_replies_ = 0,
                malformed_ = 0;
};

}  // namespace

int run_mongrel2(const mongrel2_options& o, const std::atomic<bool>& stop) {
  adapter a(o);
  return a.run(stop);
}

}  // namespace scale0::cli
