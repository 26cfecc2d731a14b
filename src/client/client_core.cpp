// SPDX-License-Identifier: Apache-2.0
#include "client/client_core.hpp"

#include <algorithm>

#include "common/host_port.hpp"
#include "scale0/error.hpp"

namespace scale0::detail {
namespace {

std::uint32_t to_wire(milliseconds t) {
  return static_cast<std::uint32_t>(std::clamp<std::int64_t>(t.count(), 0, UINT32_MAX));
}

std::string ms_text(milliseconds t) {
  return std::to_string(t.count()) + " ms";
}

}  // namespace

client_core::client_core(client_core_options options, io& out)
    : options_(std::move(options)), io_(out), brokers_(options_.brokers) {
  if (brokers_.empty()) throw error(status::bad_request, "a client needs a broker endpoint");
  options_.liveness = std::max<std::uint32_t>(options_.liveness, 1);
  options_.heartbeat_interval = std::max(options_.heartbeat_interval, milliseconds(1));
}

// A fresh connection: S0/2 asks the broker about its family first (HELLO; a broker that does not
// know it answers 501 with id 0, which matches no request and is ignored), and says it takes
// batches (a broker from before batches answers that 400 with id 0: HELLO again, without).
void client_core::open_connection(const std::string& endpoint) {
  // What is held goes to the connection it was meant for, as if sent just before: the failover
  // rules then decide its fate with everything else outstanding there.
  send_held();
  batches_ = false;
  io_.open(endpoint);
  if (options_.protocol_version != protocol::version_2) return;
  hello(protocol::hello_batches);
}

void client_core::hello(std::uint8_t flags) {
  hello_flags_ = flags;
  out_.clear();
  protocol::append_client_hello(out_, flags);
  io_.send(out_);
}

void client_core::start(time_point now) {
  current_ = 0;
  last_tick_ = now;
  open_connection(brokers_[current_]);
  connected_ = false;
  heard_ = now;
  next_ping_ = now + options_.heartbeat_interval;
}

std::optional<std::uint64_t> client_core::send(time_point now, std::string_view service,
                                               protocol::frames& body, const request_options& o) {
  const std::uint64_t id = next_id_;
  pending p;
  p.body = std::move(body);
  p.timeout_ms = to_wire(o.timeout);
  p.sent_at = now;
  p.give_up_at = o.give_up_at;
  p.retries = std::max(o.retries, 0);
  p.resends = options_.idempotent || idempotent_.contains(service) ? 1 : 0;
  p.waited = o.waited;
  // Until the connection is known to be up, nothing sent on it has reached a broker: keep the
  // body, so a failover can send it to the next one whatever it is.
  // A request that is not kept can never be sent again (a failover ends it): its service name
  // is not kept either (no allocation for a long name).
  const bool keep = p.retries > 0 || p.resends > 0 || !connected_ || moving_to_.has_value();
  if (keep) p.service.assign(service);
  if (moving_to_) {
    // A draining broker sent us elsewhere: this waits for the move (what is still at the old
    // broker is answered first).
    p.held = true;
    ++held_;
  } else if (!transmit(id, service, p, keep, p.timeout_ms)) {
    body = std::move(p.body);
    return std::nullopt;
  }
  ++next_id_;
  if (pending_.empty()) {  // silence counts from when there is something to wait for
    heard_ = now;
    next_ping_ = now + options_.heartbeat_interval;
  }
  auto [it, _] = pending_.emplace(id, std::move(p));
  if (it->second.give_up_at) arm(id, *it->second.give_up_at);
  maybe_move(now);
  return id;
}

bool client_core::transmit(std::uint64_t id, std::string_view service, pending& p, bool keep_body,
                           std::uint32_t timeout_ms) {
  out_.clear();
  protocol::append_client_request(out_, id, service, timeout_ms, options_.protocol_version);
  const std::size_t head = out_.size();
  for (auto& f : p.body) {
    out_.emplace_back();
    if (keep_body)
      out_.back().copy(f);
    else
      out_.back().move(f);
  }
  if (holding_ && batches_ && box_.batchable(out_)) {
    if (!box_.fits(out_)) send_held();
    box_.add(out_);
    boxed_.push_back(id);
    if (!keep_body) p.body.clear();
    return true;
  }
  if (io_.send(out_)) {
    if (!keep_body) p.body.clear();
    return true;
  }
  if (!keep_body)
    for (std::size_t i = 0; i < p.body.size(); ++i) p.body[i].move(out_[head + i]);
  return false;
}

void client_core::flush() {
  holding_ = false;
  send_held();
}

void client_core::send_held() {
  if (box_.empty()) return;
  box_.take(batch_out_);
  if (!io_.send(batch_out_)) {
    for (const std::uint64_t id : boxed_)
      if (const auto it = pending_.find(id); it != pending_.end())
        finish(id, it->second, status::unavailable,
               "client send queue full: is the broker reachable?");
  }
  boxed_.clear();
}

bool client_core::ping(time_point now) {
  (void)now;
  send_held();  // a PING never overtakes a held request
  out_.clear();
  protocol::append_client_ping(out_, options_.protocol_version);
  return io_.send(out_);
}

void client_core::on_message(time_point now, protocol::frames& in) {
  const auto d = protocol::decode_for_client(in);
  if (d.kind == protocol::client_inbound_kind::invalid) return;
  heard_ = now;
  connected_ = true;  // whatever the monitor said: the broker is there
  if (d.kind == protocol::client_inbound_kind::pong) {
    ++pongs_;
    return;
  }
  if (d.kind == protocol::client_inbound_kind::welcome) {
    // The family: its frontends join the list (failover goes there too), and what the broker
    // knows may be sent twice is sent once more through another broker when this one is lost.
    for (const std::string_view ep : protocol::welcome_endpoints(d.endpoint_list, d.endpoints))
      learn(std::string(ep));
    idempotent_.clear();
    for (const std::string_view s : protocol::welcome_services(d.service_list, d.services))
      idempotent_.emplace(s);
    ++welcomes_;
    batches_ = hello_flags_ != 0 && (d.flags & protocol::hello_batches) != 0;
    hello_flags_ = 0;
    return;
  }
  if (d.kind == protocol::client_inbound_kind::reply && d.id == 0 &&
      d.status == status::bad_request && hello_flags_ != 0) {
    hello(0);  // a broker from before batches refused the flags byte
    return;
  }
  const auto it = pending_.find(d.id);
  if (it == pending_.end()) {  // a late answer to a request that already has its outcome
    ++stale_;
    return;
  }
  if (d.status == status::moved && !it->second.held)
    return redirected(now, d.id, it->second, d.message, in, d.first);
  reply r;
  r.id = d.id;
  r.status = d.status;
  r.message.assign(d.message);
  for (std::size_t i = d.first; i < in.size(); ++i) r.body.push_back(std::move(in[i]));
  const bool waited = it->second.waited;
  erase(it);
  deliver(std::move(r), waited);
  maybe_move(now);
}

void client_core::erase(std::unordered_map<std::uint64_t, pending>::iterator it) {
  if (it->second.held) --held_;
  pending_.erase(it);
}

namespace {
bool valid_target(std::string_view ep) {
  if (ep.size() > 255 || ep.size() < 7 || !(ep.starts_with("tcp://") || ep.starts_with("ipc://")))
    return false;
  return std::all_of(ep.begin(), ep.end(), [](char c) {
    return static_cast<unsigned char>(c) > 0x20 && static_cast<unsigned char>(c) < 0x7f;
  });
}
}  // namespace

void client_core::redirected(time_point now, std::uint64_t id, pending& p, std::string_view target,
                             protocol::frames& in, std::size_t first) {
  // The broker did not take it and hands it back: its service, then its body.
  if (!valid_target(target) || first >= in.size())
    return finish(id, p, status::unavailable,
                  "the broker redirected to something that is not an endpoint");
  if (++p.redirects > max_redirects)
    return finish(id, p, status::unavailable, "redirected too many times: no broker takes work");
  p.service.assign(protocol::view(in[first]));
  p.body.clear();
  for (std::size_t i = first + 1; i < in.size(); ++i) p.body.push_back(std::move(in[i]));
  p.held = true;
  ++held_;
  moving_to_ = std::string(target);
  maybe_move(now);
}

void client_core::maybe_move(time_point now) {
  if (!moving_to_ || held_ != pending_.size()) return;
  const std::string target = std::move(*moving_to_);
  moving_to_.reset();
  ++redirects_;
  current_ = learn(target);
  open_connection(brokers_[current_]);
  connected_ = false;
  heard_ = now;
  next_ping_ = now + options_.heartbeat_interval;
  std::vector<std::uint64_t> ids;
  ids.reserve(pending_.size());
  for (const auto& [id, p] : pending_) ids.push_back(id);
  std::sort(ids.begin(), ids.end());
  for (const std::uint64_t id : ids) {
    pending& p = pending_.at(id);
    p.held = false;
    --held_;
    resend(now, id, p);
  }
}

std::size_t client_core::learn(const std::string& endpoint) {
  const auto it = std::find(brokers_.begin(), brokers_.end(), endpoint);
  if (it != brokers_.end()) return static_cast<std::size_t>(it - brokers_.begin());
  if (learned_ >= max_learned) {
    // The oldest learned one makes room (the configured ones stay), unless it is the broker in
    // use: then the next oldest.
    std::size_t gone = options_.brokers.size();
    if (gone == current_) ++gone;
    brokers_.erase(brokers_.begin() + static_cast<std::ptrdiff_t>(gone));
    if (current_ > gone) --current_;
    --learned_;
  }
  brokers_.push_back(endpoint);
  ++learned_;
  return brokers_.size() - 1;
}

bool client_core::resend(time_point now, std::uint64_t id, pending& p) {
  // What is left of the attempt's deadline goes with it (0 stays the broker's default).
  std::uint32_t left = p.timeout_ms;
  if (p.timeout_ms != 0) {
    const auto spent = std::chrono::duration_cast<milliseconds>(now - p.sent_at);
    if (spent.count() >= p.timeout_ms) {
      finish(id, p, status::deadline, "no reply within " + ms_text(spent));
      return false;
    }
    left -= static_cast<std::uint32_t>(spent.count());
  }
  if (!transmit(id, p.service, p, true, left)) {
    finish(id, p, status::unavailable, "client send queue full: is the broker reachable?");
    return false;
  }
  return true;
}

void client_core::on_connected(time_point now) {
  connected_ = true;
  heard_ = std::max(heard_, now);
}

void client_core::on_disconnected(time_point now) {
  // Answers to what the broker holds would go to this connection's routing id, which is gone
  // with it (a reconnection gets a new one): what is outstanding is lost now, not in liveness
  // intervals. A connection that never completed a handshake is left to the liveness rule (a
  // broker that refuses every handshake must not make the client spin).
  if (!connected_ || pending_.empty()) return;
  fail_over(now, status::worker_lost,
            "broker lost: its connection " + brokers_[current_] + " closed", 0);
}

void client_core::deliver(reply&& r, bool waited) {
  if (waited)
    call_answer_ = std::move(r);
  else
    answers_.push_back(std::move(r));
}

void client_core::finish(std::uint64_t id, pending& p, std::uint16_t code, std::string message) {
  reply r;
  r.id = id;
  r.status = code;
  r.message = std::move(message);
  r.local = true;
  const bool waited = p.waited;
  erase(pending_.find(id));
  deliver(std::move(r), waited);
}

void client_core::arm(std::uint64_t id, time_point at) {
  // Entries of answered requests stay in the heap until their time; rebuild it when they are
  // most of it, so a fast pipelined client does not grow it without bound.
  if (deadlines_.size() > 2 * pending_.size() + 1024) {
    std::vector<deadline> live;
    live.reserve(pending_.size() + 1);
    for (const auto& [pid, p] : pending_)
      if (p.give_up_at) live.emplace_back(*p.give_up_at, pid);
    deadlines_ = decltype(deadlines_)(std::greater<>{}, std::move(live));
  }
  deadlines_.emplace(at, id);
}

void client_core::tick(time_point now) {
  // The caller did not run the client for over two intervals (it was busy elsewhere; a loop
  // that runs sleeps at most about one): nobody sent PINGs meanwhile, so that silence says
  // nothing about the broker. It counts as one interval of silence, and a PING goes now.
  const auto interval = options_.heartbeat_interval;
  if (now - last_tick_ > 2 * interval) heard_ = std::max(heard_, now - interval);
  last_tick_ = now;
  expire(now);
  if (pending_.empty()) return;
  if (now - heard_ >= interval * options_.liveness) {
    fail_over(now, status::worker_lost,
              "broker lost: no answer from " + brokers_[current_] + " for " +
                  ms_text(std::chrono::duration_cast<milliseconds>(now - heard_)),
              0);
    return;
  }
  if (now >= next_ping_ && now - heard_ >= interval) {
    ping(now);
    next_ping_ = now + interval;
  }
}

void client_core::expire(time_point now) {
  while (!deadlines_.empty() && deadlines_.top().first <= now) {
    const auto [at, id] = deadlines_.top();
    deadlines_.pop();
    const auto it = pending_.find(id);
    if (it == pending_.end() || it->second.give_up_at != at) continue;  // answered, or re-armed
    pending& p = it->second;
    if (p.held && p.retries > 0) {  // not at any broker: nothing to retry yet
      --p.retries;
      p.give_up_at = now + (at - p.sent_at);
      p.sent_at = now;
      arm(id, *p.give_up_at);
      continue;
    }
    // A broker never reached, or one that has not answered even a PING for an interval, is
    // taken for lost: a Lazy Pirate retry goes to the next broker on a fresh connection (so the
    // copy still queued on this one is never delivered), and so does everything else outstanding.
    // (Two intervals: after one, a PING is out and its answer may be on its way.)
    const bool lost = !connected_ || now - heard_ >= 2 * options_.heartbeat_interval;
    if (p.retries > 0) {
      if (lost) {
        fail_over(now, status::worker_lost,
                  "broker lost: no answer from " + brokers_[current_] + " within the timeout", id);
        continue;
      }
      --p.retries;
      const auto wait = at - p.sent_at;
      p.sent_at = now;
      p.give_up_at = now + wait;
      if (transmit(id, p.service, p, p.retries > 0 || p.resends > 0, p.timeout_ms))
        arm(id, *p.give_up_at);
      else
        finish(id, p, status::unavailable, "client send queue full: is the broker reachable?");
      continue;
    }
    const auto waited = std::chrono::duration_cast<milliseconds>(now - p.sent_at);
    finish(id, p, status::deadline, "no reply within " + ms_text(waited));
    // A broker that answers would have sent its own 504 first: this one is gone. Move on, so the
    // next request does not wait for it too (and this one is never delivered to it later).
    if (lost)
      fail_over(now, status::worker_lost,
                "broker lost: no answer from " + brokers_[current_] + " within the timeout", 0);
  }
}

void client_core::fail_over(time_point now, std::uint16_t code, const std::string& why,
                            std::uint64_t retried_id) {
  ++failovers_;
  const bool was_connected = connected_;
  if (moving_to_) {  // lost while moving: go where the old broker sent us
    current_ = learn(*moving_to_);
    moving_to_.reset();
  } else {
    current_ = (current_ + 1) % brokers_.size();
  }
  open_connection(brokers_[current_]);
  connected_ = false;
  heard_ = now;
  next_ping_ = now + options_.heartbeat_interval;
  std::vector<std::uint64_t> ids;
  ids.reserve(pending_.size());
  for (const auto& [id, p] : pending_) ids.push_back(id);
  std::sort(ids.begin(), ids.end());  // sent again in the order they were first sent
  for (const std::uint64_t id : ids) {
    pending& p = pending_.at(id);
    if (id == retried_id) {  // Lazy Pirate: a whole new attempt
      --p.retries;
      const auto wait = *p.give_up_at - p.sent_at;
      p.sent_at = now;
      p.give_up_at = now + wait;
    } else if (!was_connected || p.held) {
      // never reached the old broker: sent again whatever it is, with what is left of its time
    } else if (p.resends > 0) {
      --p.resends;
    } else if (p.retries > 0) {
      --p.retries;
    } else {
      finish(id, p, code, why);
      continue;
    }
    if (p.held) {
      p.held = false;
      --held_;
    }
    if (!resend(now, id, p)) continue;
    if (p.give_up_at && id == retried_id) arm(id, *p.give_up_at);
  }
}

time_point client_core::next_wake(time_point now) const {
  time_point wake = now + std::chrono::hours(1);
  if (!deadlines_.empty()) wake = std::min(wake, deadlines_.top().first);
  if (!pending_.empty()) {
    const auto interval = options_.heartbeat_interval;
    wake = std::min(wake, heard_ + interval * options_.liveness);
    wake = std::min(wake, std::max(next_ping_, heard_ + interval));
  }
  return wake;
}

std::optional<reply> client_core::take_call(std::uint64_t id) {
  if (!call_answer_ || call_answer_->id != id) return std::nullopt;
  std::optional<reply> r = std::move(call_answer_);
  call_answer_.reset();
  return r;
}

std::optional<reply> client_core::take() {
  if (answers_.empty()) return std::nullopt;
  reply r = std::move(answers_.front());
  answers_.pop_front();
  return r;
}

}  // namespace scale0::detail
