// SPDX-License-Identifier: Apache-2.0
#include "worker/worker_core.hpp"

#include <algorithm>
#include <utility>

#include "protocol/reasons.hpp"
#include "scale0/error.hpp"

namespace scale0::detail {

using std::chrono::milliseconds;

std::string resolve_endpoint(const std::string& advertised, const std::string& broker) {
  const auto host_of = [](const std::string& ep, std::size_t& begin, std::size_t& end) {
    begin = ep.find("://");
    end = ep.rfind(':');
    if (begin == std::string::npos || end == std::string::npos || end <= begin + 3) return false;
    begin += 3;
    return true;
  };
  std::size_t ab, ae, bb, be;
  if (!host_of(advertised, ab, ae)) return advertised;
  const std::string host = advertised.substr(ab, ae - ab);
  if (host != "*" && host != "0.0.0.0") return advertised;
  if (!host_of(broker, bb, be)) return advertised;
  return advertised.substr(0, ab) + broker.substr(bb, be - bb) + advertised.substr(ae);
}

worker_core::worker_core(const worker_options& options, std::vector<std::string> brokers, io& out)
    : options_(options),
      brokers_(std::move(brokers)),
      io_(out),
      backoff_(options.reconnect_min),
      ask_batches_(options.batches && options.protocol_version == protocol::version_2) {
  if (brokers_.empty()) throw error(status::bad_request, "a worker needs a broker endpoint");
}

void worker_core::start(time_point now) {
  connect(now);
  last_turn_ = now;
}

// ---- connection ----

void worker_core::connect(time_point now) {
  ++epoch_;
  held_ = 0;  // what earlier connections handed us is answered to nobody
  holding_until_ = {};
  io_.open(brokers_[current_]);
  connected_ = true;
  out_.clear();
  std::vector<std::string_view> names(options_.services.begin(), options_.services.end());
  std::uint8_t flags = options_.idempotent ? protocol::flag_idempotent : 0;
  if (moved_ && options_.protocol_version == protocol::version_2) flags |= protocol::flag_moved;
  if (ask_batches_) flags |= protocol::flag_batches;
  moved_ = false;  // only the READY to the broker we were sent to
  batches_ = false;
  protocol::append_worker_ready(out_, options_.concurrency,
                                static_cast<std::uint32_t>(options_.heartbeat_interval.count()),
                                flags, names, options_.protocol_version, options_.name);
  send(out_);
  state_ = worker_state::registering;
  const auto guess = std::max(options_.heartbeat_interval, milliseconds(1000));
  broker_alive_until_ = now + guess * 3;
}

void worker_core::close_connection() {
  box_.take(flushed_);  // replies for a broker that is gone
  flushed_.clear();
  batches_ = false;
  if (!connected_) return;
  io_.close();
  connected_ = false;
}

// The broker is lost: the next broker of the list at once, or, when the whole list has failed
// since the last registration (always, with one broker), after a backoff.
void worker_core::lose_broker(time_point now, const std::string& why) {
  const std::string& lost = brokers_[current_];
  const std::size_t next = (current_ + 1) % brokers_.size();
  const bool round_over = failed_ + 1 >= brokers_.size();
  if (brokers_.size() == 1)
    io_.event("lost broker (" + why + "); reconnecting in " + std::to_string(backoff_.count()) +
              " ms");
  else if (round_over)
    io_.event("lost broker " + lost + " (" + why +
              "); no broker of the list answered: reconnecting to " + brokers_[next] + " in " +
              std::to_string(backoff_.count()) + " ms");
  else
    io_.event("lost broker " + lost + " (" + why + "); trying " + brokers_[next] + " now");
  // If the broker was only stalled, it reads this before anything else from this connection
  // and stops sending to it, instead of finding out when a request it sent is lost.
  // 204 says it holds nothing: a request still on its way here never ran and may go elsewhere.
  out_.clear();
  if (held_ == 0)
    protocol::append_worker_disconnect(out_, status::no_content, "holding nothing",
                                       options_.protocol_version);
  else
    protocol::append_worker_disconnect(out_, 0, {}, options_.protocol_version);
  send(out_);
  close_connection();
  held_ = 0;  // their replies have no connection to go on
  holding_until_ = {};
  state_ = worker_state::connecting;
  current_ = next;
  if (!round_over) {
    ++failed_;
    connect(now);
    return;
  }
  failed_ = 0;
  reconnect_at_ = now + backoff_;
  backoff_ = std::min(backoff_ * 2, options_.reconnect_max);
}

bool worker_core::valid_broker_endpoint(std::string_view ep) noexcept {
  if (ep.size() > 255 || !(ep.starts_with("tcp://") || ep.starts_with("ipc://")) || ep.size() < 7)
    return false;
  for (const char c : ep)
    if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f)
      return false;
  return true;
}

void worker_core::move_to(time_point now, const std::string& endpoint, const std::string& why) {
  io_.event(why + "; moving to " + endpoint);
  close_connection();
  held_ = 0;
  holding_until_ = {};
  const auto it = std::find(brokers_.begin(), brokers_.end(), endpoint);
  if (it == brokers_.end()) {
    // Bounded: a broker list never grows past its own size plus this many learned endpoints.
    if (brokers_.size() >= max_brokers) brokers_.pop_back();
    brokers_.push_back(endpoint);
    current_ = brokers_.size() - 1;
  } else {
    current_ = static_cast<std::size_t>(it - brokers_.begin());
  }
  failed_ = 0;
  ++moves_;
  moved_ = true;
  connect(now);
}

void worker_core::send(protocol::frames& msg) {
  flush();  // what is held goes first
  if (connected_) io_.send(msg);
}

void worker_core::flush() {
  if (box_.empty()) return;
  box_.take(flushed_);
  if (connected_) io_.send(flushed_);
}

// ---- input ----

void worker_core::on_broker_message(time_point now, protocol::frames& msg) {
  const auto d = protocol::decode_for_worker(msg);
  using k = protocol::worker_inbound_kind;
  if (d.kind == k::invalid) return;
  broker_alive_until_ = now + broker_interval_ * liveness_;
  silence_reported_ = false;
  switch (d.kind) {
    case k::welcome: {
      if (state_ == worker_state::ready && d.broker_id == broker_id_) {
        // S0/2: the broker changed the interval it grants (its fleet grew or shrank).
        interval_ = milliseconds(std::max<std::uint32_t>(d.heartbeat_ms, 10));
        next_heartbeat_ = std::min(next_heartbeat_, now + interval_);
        return;
      }
      if (state_ != worker_state::registering) return;
      interval_ = milliseconds(std::max<std::uint32_t>(d.heartbeat_ms, 10));
      broker_interval_ = milliseconds(std::max<std::uint32_t>(d.broker_heartbeat_ms, 10));
      liveness_ = std::max<std::uint32_t>(d.liveness, 1);
      broker_id_ = d.broker_id;
      batches_ = ask_batches_;  // the READY's flags were taken
      io_.subscribe(resolve_endpoint(std::string(d.endpoint), brokers_[current_]));
      state_ = worker_state::ready;
      backoff_ = options_.reconnect_min;
      failed_ = 0;
      broker_alive_until_ = now + broker_interval_ * liveness_;
      next_heartbeat_ = now + interval_;
      io_.event("registered with " + brokers_[current_] + " (heartbeat " +
                std::to_string(interval_.count()) + " ms)");
      if (options_.protocol_version == protocol::version_2) {
        // The policy version we know (0: none): the broker answers with CONFIG unless we are
        // current (426 when we knew an older one), and pushes every change from now on.
        out_.clear();
        protocol::append_worker_config_version(out_, policy_version_);
        send(out_);
      }
      return;
    }
    case k::request: {
      if (state_ != worker_state::ready && state_ != worker_state::stopping) return;
      queued_job j{epoch_, d.job_id, {}};
      j.work.service.assign(d.service);
      j.work.time_left = milliseconds(d.timeout_ms);
      holding_until_ = std::max(holding_until_, now + j.work.time_left);
      ++held_;
      for (std::size_t i = d.first; i < msg.size(); ++i) j.work.body.push_back(std::move(msg[i]));
      ++in_flight_;
      io_.run_job(std::move(j));
      return;
    }
    case k::disconnect: {
      std::string why = "broker sent DISCONNECT";
      if (d.status != 0) {
        why += ' ';
        why += std::to_string(d.status);
        why += ' ';
        why.append(d.message);
      }
      if (state_ == worker_state::stopping) {
        close_connection();
        return;
      }
      // A draining broker of a family sends us to a peer (the one that needs our services most):
      // register there at once; it joins the list of brokers if it was not in it.
      if (d.status == status::moved && valid_broker_endpoint(d.message)) {
        move_to(now, std::string(d.message), why);
        return;
      }
      // A broker from before batches refuses the flag: register again without it, at once.
      if (state_ == worker_state::registering && ask_batches_ && d.status == status::bad_request &&
          d.message == reasons::unknown_ready_flags) {
        ask_batches_ = false;
        io_.event(why + "; registering again without batches");
        close_connection();
        connect(now);
        return;
      }
      // Known to us as ready: the broker restarted or expired us, so register again at once.
      // Refused while registering, the broker going away (503), or our key no longer allowed
      // (403: its handshakes would be refused until an operator lists it again), or sent to
      // something that is not an endpoint (301): the broker is lost (the next of the list, or a
      // backoff).
      if (state_ == worker_state::ready && d.status != status::unavailable &&
          d.status != status::forbidden && d.status != status::moved) {
        io_.event(why + "; registering again");
        close_connection();
        connect(now);
      } else {
        lose_broker(now, why);
      }
      return;
    }
    case k::stopping:
      stopping_acked_ = true;
      return;
    case k::config: {
      // The policy of our services (the broker enforces it; we report it). 426: the version we
      // announced was stale.
      policy_version_ = d.policy_version;
      std::string text = "policy version " + std::to_string(d.policy_version);
      if (d.status == status::upgrade_required) text += " (ours was stale: 426)";
      for (const auto& c : protocol::config_services(d.list, d.count)) {
        text += "; ";
        text.append(c.service);
        text += ": request-timeout " + std::to_string(c.request_timeout_ms) + " ms, max-queue " +
                std::to_string(c.max_queue) + ", max-concurrency " +
                (c.max_concurrency == 0 ? std::string("none") : std::to_string(c.max_concurrency)) +
                ", idempotent " +
                (c.idempotent == 1   ? "yes"
                 : c.idempotent == 2 ? "no"
                                     : "as the workers say");
      }
      io_.event(text);
      return;
    }
    default:
      return;
  }
}

void worker_core::on_heartbeat(time_point now, const protocol::frames& msg) {
  protocol::heartbeat hb;
  if (!protocol::decode_heartbeat(msg, hb)) return;
  if (state_ == worker_state::ready && hb.broker_id != broker_id_) {
    io_.event("broker restarted; registering again");
    close_connection();
    connect(now);
    return;
  }
  broker_alive_until_ = now + broker_interval_ * liveness_;
  silence_reported_ = false;
}

void worker_core::on_result(time_point, std::uint64_t job_epoch, std::uint64_t id,
                            job_result&& result) {
  if (in_flight_ > 0) --in_flight_;
  if (job_epoch != epoch_) return;  // the broker that sent it is gone
  // The latest deadline is that of every request received since the connection last held
  // nothing: an upper bound of the deadlines of those still held.
  if (held_ > 0 && --held_ == 0) holding_until_ = {};
  if (!connected_) return;
  out_.clear();
  protocol::append_worker_reply(out_, id, result.status, result.message, options_.protocol_version);
  for (auto& b : result.body) out_.push_back(std::move(b));
  if (batches_ && box_.batchable(out_)) {
    if (!box_.fits(out_)) flush();
    box_.add(out_);  // sent by flush(), at the latest before the loop waits
    return;
  }
  send(out_);
}

// ---- stop ----

void worker_core::stop(time_point now) {
  if (state_ == worker_state::stopping || state_ == worker_state::stopped) return;
  begin_stop(now);
}

void worker_core::begin_stop(time_point now) {
  io_.stopping();
  drain_deadline_ = now + options_.drain_timeout;
  if (state_ == worker_state::ready) {
    out_.clear();
    protocol::append_worker_stopping(out_, options_.protocol_version);
    send(out_);
    ack_deadline_ = now + broker_interval_ * liveness_;
  } else {
    // Registering: the broker may already have us on its books.
    out_.clear();
    protocol::append_worker_disconnect(out_, 0, {}, options_.protocol_version);
    send(out_);
    close_connection();
  }
  state_ = worker_state::stopping;
}

// True when the graceful stop is complete.
bool worker_core::stop_done(time_point now) {
  const bool acked = stopping_acked_ || !connected_ || now >= ack_deadline_;
  if (acked && held_ == 0) {
    out_.clear();
    protocol::append_worker_disconnect(out_, 0, {}, options_.protocol_version);
    send(out_);
    return true;
  }
  if (now >= drain_deadline_) {
    // Tell the broker now, so it answers (or re-dispatches) what this worker still holds at
    // once instead of after heartbeat expiry.
    io_.event("drain timeout: " + std::to_string(held_) + " requests still in flight");
    out_.clear();
    protocol::append_worker_disconnect(out_, 0, {}, options_.protocol_version);
    send(out_);
    return true;
  }
  return false;
}

// ---- timers ----

void worker_core::tick(time_point now) {
  if (state_ == worker_state::stopped) return;
  // The loop sleeps at most max_sleep: a much longer gap means this process was stopped or
  // starved (or an inline handler ran long). What the broker sent meanwhile is still on its
  // way from the kernel into the sockets: read it before judging the broker silent.
  if (now - last_turn_ > stall_gap)
    broker_alive_until_ = std::max(broker_alive_until_, now + broker_interval_);
  last_turn_ = now;
  if (state_ == worker_state::stopping && stop_done(now)) {
    close_connection();
    state_ = worker_state::stopped;
    return;
  }
  if (state_ == worker_state::connecting && now >= reconnect_at_) connect(now);
  if ((state_ == worker_state::ready || state_ == worker_state::stopping) && connected_ &&
      now >= next_heartbeat_) {
    out_.clear();
    protocol::append_worker_heartbeat(out_, options_.protocol_version);
    send(out_);
    next_heartbeat_ = now + interval_;
  }
  if ((state_ == worker_state::registering || state_ == worker_state::ready) &&
      now >= broker_alive_until_) {
    // A silent broker may only be stalled. While this connection holds requests, it stays
    // open until they are answered or their deadlines pass: closing it would lose replies a
    // returning broker is waiting for (and its clients would get 502).
    if (state_ == worker_state::ready && held_ > 0 && now < holding_until_) {
      if (!silence_reported_) {
        io_.event("broker silent; holding " + std::to_string(held_) +
                  " requests on this connection until they are answered");
        silence_reported_ = true;
      }
    } else {
      lose_broker(now, "no heartbeat for " + std::to_string(liveness_) + " intervals");
    }
  }
}

worker_core::time_point worker_core::next_wake(time_point now) const noexcept {
  auto wake = now + max_sleep;
  if (state_ == worker_state::connecting) wake = std::min(wake, reconnect_at_);
  if (state_ == worker_state::ready)
    wake = std::min(
        {wake, next_heartbeat_, now < broker_alive_until_ ? broker_alive_until_ : holding_until_});
  return wake;
}

}  // namespace scale0::detail
