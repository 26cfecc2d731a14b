// SPDX-License-Identifier: Apache-2.0
#include "broker_core.hpp"

#include <algorithm>

#include "protocol/reasons.hpp"
#include "scale0/error.hpp"

namespace scale0::broker_detail {
namespace {

using protocol::inbound_kind;
using protocol::str_frame;
using protocol::view;
using std::chrono::milliseconds;

// A free entry of a table with a free list (the last one freed), or a new one at its end.
template <class T>
std::uint32_t take_index(std::vector<T>& table, std::vector<std::uint32_t>& free) {
  if (!free.empty()) {
    const std::uint32_t i = free.back();
    free.pop_back();
    return i;
  }
  table.emplace_back();
  return static_cast<std::uint32_t>(table.size() - 1);
}

bool reserved_service(std::string_view name) noexcept {
  return name.substr(0, 4) == "mmi." || name.substr(0, 7) == "scale0.";
}

std::uint32_t millis_left(time_point deadline, time_point now) noexcept {
  const auto left = std::chrono::duration_cast<milliseconds>(deadline - now).count();
  return static_cast<std::uint32_t>(std::clamp<std::int64_t>(left, 1, UINT32_MAX));
}

}  // namespace

std::string hex_id(std::string_view bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

std::string broker_id_hex(std::uint64_t id) {
  return hex_id(std::string_view(reinterpret_cast<const char*>(&id), sizeof id));
}

broker_core::broker_core(const broker_options& options, outbox& out, std::uint64_t broker_id,
                         std::string heartbeat_endpoint, time_point now)
    : options_(options),
      out_(out),
      broker_id_(broker_id),
      heartbeat_endpoint_(std::move(heartbeat_endpoint)),
      timers_(now),
      next_heartbeat_(now),
      next_expiry_scan_(now + options.heartbeat_interval),
      started_(now),
      last_tick_(now),
      policy_origin_(broker_id),
      file_policies_(options.service_policies) {}

// ---------------------------------------------------------------------------------------------
// Inbound messages

void broker_core::note_refusal(std::string_view endpoint, std::string_view reason) {
  auto key = std::make_pair(std::string(endpoint), std::string(reason));
  ++counters_.refused[std::move(key)];
}

void broker_core::refuse(std::uint8_t socket, frames& msg, std::string_view reason,
                         std::string_view service, std::string_view what) {
  note_refusal(socket == 0 ? "frontend" : "backend", reason);
  const char* address = msg.size() > 1 ? zmq_msg_gets(msg[1].handle(), "Peer-Address") : nullptr;
  const char* key = msg.size() > 1 ? zmq_msg_gets(msg[1].handle(), "User-Id") : nullptr;
  const std::string detail =
      std::string(what) + " (key " + (key != nullptr ? key : "unknown") + ")";
  out_.event({event_kind::refused,
              {},
              address != nullptr ? address : "",
              service,
              status::forbidden,
              detail});
}

void broker_core::revoke_workers(const grant_lookup& grant_for, time_point now) {
  for (std::uint32_t w = 0; w < workers_.size(); ++w) {
    worker_entry& W = workers_[w];
    if (!W.used || W.curve_key.empty()) continue;
    const access_grant* g = grant_for(W.curve_key);
    bool allowed = g != nullptr;
    for (std::uint32_t m : W.memberships)
      allowed = allowed && g->may_serve(services_[members_[m].service].name);
    if (allowed) continue;
    note_refusal(W.socket == 0 ? "frontend" : "backend", reasons::label_key_revoked);
    const std::string detail =
        std::string(reasons::worker_key_removed) + " (key " + W.curve_key + ")";
    out_.event({event_kind::refused, hex_id(W.identity), W.address, {}, status::forbidden, detail});
    send_disconnect(W, status::forbidden, reasons::key_may_no_longer_serve);
    purge_worker(w, now, worker_departure::key_revoked, reasons::key_revoked);
  }
}

void broker_core::on_message(std::uint8_t socket, frames& msg, bool oversized, time_point now,
                             const access_grant* who) {
  who_ = who;
  const protocol::inbound in = protocol::decode_inbound(msg);
  const bool mdp = in.kind >= inbound_kind::mdp_request;
  if (socket == peer_socket && in.kind != inbound_kind::client_request &&
      in.kind != inbound_kind::client_ping && in.kind != inbound_kind::client_error &&
      in.kind != inbound_kind::client_hello) {
    // A peer forwards S0/2 requests and nothing else on its link.
    drop(counters_.dropped_malformed, reasons::not_a_forward);
    return;
  }
  switch (in.kind) {
    case inbound_kind::drop:
      drop(counters_.dropped_malformed, reasons::malformed_message);
      break;
    case inbound_kind::client_error:
    case inbound_kind::mdp_client_error:  // in.service: an invalid name, echoed to MDP clients
      ++counters_.requests;
      refuse_request({socket, view(msg[0]), mdp, in.id, in.service, in.version}, in.status,
                     in.reason);
      break;
    case inbound_kind::client_request:
    case inbound_kind::mdp_request:
      on_client_request(socket, msg, in, mdp, oversized, now);
      break;
    case inbound_kind::client_hello:
      if (in.flags & protocol::hello_batches) {
        client_entry& c = clients_[make_key(socket, view(msg[0]))];
        c.batches = true;
        c.last_request = now;
      }
      send_client_welcome({socket, view(msg[0]), false, 0, {}, in.version}, in.flags != 0);
      break;
    case inbound_kind::client_ping:
      scratch_.clear();
      scratch_.push_back(std::move(msg[0]));
      protocol::append_client_pong(scratch_, in.version);
      for (std::size_t i = in.first; i < msg.size(); ++i) scratch_.push_back(std::move(msg[i]));
      send_to_client(socket, view(scratch_[0]), scratch_);
      break;
    case inbound_kind::worker_ready:
    case inbound_kind::mdp_ready:
      if (oversized) {
        send_disconnect(socket, view(msg[0]), mdp, in.version, status::too_large,
                        reasons::ready_too_large);
        if (const std::uint32_t w = find_worker(socket, msg[0]); w != npos)
          purge_worker(w, now, worker_departure::protocol_error, reasons::ready_too_large);
      } else {
        on_worker_ready(socket, msg, in, mdp, now);
      }
      break;
    default: {  // every other worker command needs a registered worker
      const std::uint32_t w = find_worker(socket, msg[0]);
      const bool disconnect =
          in.kind == inbound_kind::worker_disconnect || in.kind == inbound_kind::mdp_disconnect;
      if (w == npos) {
        // RFC 7: a valid but unexpected command gets DISCONNECT, so the worker registers again.
        if (in.kind == inbound_kind::worker_error || in.kind == inbound_kind::mdp_worker_error) {
          send_disconnect(socket, view(msg[0]), mdp, in.version, in.status, in.reason);
        } else if (!disconnect) {
          send_disconnect(socket, view(msg[0]), mdp, in.version, status::bad_request,
                          reasons::unknown_worker);
        }
        break;
      }
      touch(workers_[w], now);
      switch (in.kind) {
        case inbound_kind::worker_reply:
        case inbound_kind::mdp_reply:
          on_worker_reply(w, msg, in, mdp, oversized, now);
          break;
        case inbound_kind::worker_stopping:
          on_worker_stopping(w);
          break;
        case inbound_kind::worker_config:
          // The version it knows (0: none yet). From now on it gets CONFIG on every change; now,
          // unless it is current: 426 when it knew an older one.
          workers_[w].wants_config = true;
          if (in.id < policy_version_)
            send_worker_config(workers_[w], in.id == 0 ? status::ok : status::upgrade_required);
          break;
        case inbound_kind::worker_error:
        case inbound_kind::mdp_worker_error:
          send_disconnect(socket, view(msg[0]), mdp, in.version, in.status, in.reason);
          purge_worker(w, now, worker_departure::protocol_error, in.reason);
          break;
        case inbound_kind::worker_disconnect:
          purge_worker(w, now, worker_departure::disconnected, reasons::disconnected,
                       in.reply_status == status::no_content);
          break;
        case inbound_kind::mdp_disconnect:
          purge_worker(w, now, worker_departure::disconnected, reasons::disconnected);
          break;
        default:  // heartbeats: touch() was all they needed
          break;
      }
    }
  }
  flush_dispatch(now);
}

void broker_core::on_client_request(std::uint8_t socket, frames& msg, const protocol::inbound& in,
                                    bool mdp, bool oversized, time_point now) {
  ++counters_.requests;
  const client_ref c{socket, view(msg[0]), mdp, in.id, in.service, in.version};
  if (oversized) return refuse_request(c, status::too_large, reasons::request_too_large);
  if (reserved_service(in.service)) return on_management(c, msg, in.first, now);
  if (who_ != nullptr && !who_->may_call(in.service)) {
    refuse(socket, msg, reasons::label_service_not_allowed, in.service,
           reasons::client_called_forbidden);
    return refuse_request(c, status::forbidden, reasons::key_may_not_call);
  }
  const bool from_peer = socket == peer_socket;
  if (draining_) {
    // A peer's forward goes back to it (it sends the request elsewhere); a native client is sent
    // to a peer that takes work, with its request handed back. Majordomo clients cannot be.
    if (from_peer) {
      last_redirect_ = now;
      return refuse_request(c, status::moved, reasons::broker_draining);
    }
    if (!mdp)
      if (const std::string* target = redirect_client(in.service)) {
        last_redirect_ = now;
        return send_redirect(c, *target, msg, in.first);
      }
    return refuse_request(c, status::unavailable, reasons::broker_draining);
  }

  const std::string& key = make_key(socket, c.identity);
  auto client = clients_.find(key);
  // Answers it has not read yet count too: a client that does not read gets 429s, not more work.
  if (client != clients_.end() &&
      client->second.in_flight + client->second.backlog_answers >= options_.max_client_inflight)
    return refuse_request(c, status::too_many_requests, reasons::client_inflight);

  const std::uint32_t s = find_or_create_service(in.service, now, false);
  if (s == npos)
    return refuse_request(c, status::unavailable,
                          service_by_name_.size() >= options_.max_services
                              ? reasons::too_many_services
                              : reasons::no_worker);
  std::size_t bytes = 0;
  for (std::size_t i = in.first; i < msg.size(); ++i) bytes += msg[i].size();
  service_entry& svc = services_[s];
  // A local worker with credit takes it at once; else a peer with credit, unless the request came
  // from a peer (one hop at most).
  const bool to_worker = !dispatch_held_ && svc.queue.empty() && !svc.lru.empty();
  const std::uint32_t peer_member =
      dispatch_held_ || to_worker || from_peer || svc.forwardable != 0 ? npos : forward_target(svc);
  const bool to_peer = peer_member != npos;
  const bool immediate = to_worker || to_peer;
  if (!immediate && svc.queue.size >= svc.max_queue) {
    count_error(s, status::unavailable);
    return send_error(c, status::unavailable, reasons::queue_full);
  }
  if (!immediate && (svc.queue_bytes + bytes > options_.max_queue_bytes ||
                     queue_bytes_ + bytes > options_.max_total_queue_bytes)) {
    count_error(s, status::unavailable);
    return send_error(c, status::unavailable, reasons::queue_bytes_full);
  }
  if (client == clients_.end()) client = clients_.emplace(key, client_entry{}).first;
  if (batched_input_) client->second.batches = true;
  const bool client_batches = client->second.batches;
  ++client->second.in_flight;
  client->second.last_request = now;
  ++services_[s].requests;
  if (from_peer) ++counters_.forwarded_in;

  const std::uint32_t slot = alloc_slot();
  request_slot& r = slots_[slot];
  r.mdp_client = mdp;
  r.client_version = in.version;
  r.attempts = 0;
  r.client_socket = socket;
  r.bytes = static_cast<std::uint32_t>(std::min<std::size_t>(bytes, UINT32_MAX));
  r.client.assign(c.identity);
  r.client_id = in.id;
  r.service = s;
  r.worker = npos;
  r.member = npos;
  r.body_kept = false;
  r.client_batches = client_batches;
  const auto timeout =
      in.timeout_ms != 0 ? clock::duration(milliseconds(in.timeout_ms)) : svc.request_timeout;
  r.deadline = now + timeout;
  r.enqueued = now;
  r.body.clear();
  for (std::size_t i = in.first; i < msg.size(); ++i) r.body.push_back(std::move(msg[i]));

  if (immediate) return assign(slot, to_worker ? svc.lru.head : peer_member, now);
  enqueue(slot, false, now);
  dispatch(s, now);
}

// mmi.* (RFC 8/MMI) and scale0.* are answered by the broker itself.
void broker_core::on_management(const client_ref& c, frames& msg, std::size_t first,
                                time_point now) {
  std::string body;
  if (c.service == "mmi.service") {
    const std::string name = first < msg.size() ? std::string(view(msg[first])) : std::string();
    const auto it = service_by_name_.find(name);
    // A worker anywhere in the family serves it (a request would be forwarded to it).
    body = it != service_by_name_.end() &&
                   (services_[it->second].workers > 0 || services_[it->second].peer_workers > 0)
               ? "200"
               : "404";
  } else if (c.service.substr(0, 4) == "mmi.") {
    body = "501";
  } else if (c.service == "scale0.status") {
    if (who_ != nullptr && !who_->status) {
      refuse(c.socket, msg, reasons::label_status_not_allowed, c.service,
             reasons::status_without_admin);
      return refuse_request(c, status::forbidden, reasons::status_needs_admin);
    }
    body = status_json(now);
  } else {
    if (!c.mdp) return refuse_request(c, status::not_implemented, reasons::unknown_management);
    body = "501";
  }
  frames reply;
  reply.push_back(str_frame(body));
  send_client_reply(c, status::ok, "", reply, 0);
}

void broker_core::on_worker_ready(std::uint8_t socket, frames& msg, const protocol::inbound& in,
                                  bool mdp, time_point now) {
  const std::string_view identity = view(msg[0]);
  const std::string& key = make_key(socket, identity);
  if (auto it = worker_by_key_.find(key); it != worker_by_key_.end()) {
    const std::uint32_t w = it->second;
    send_disconnect(socket, identity, mdp, in.version, status::bad_request,
                    reasons::already_registered);
    return purge_worker(w, now, worker_departure::protocol_error, reasons::sent_ready_twice);
  }
  if (draining_ && !mdp) {  // a worker registering here now is sent on at once
    const worker_entry none;
    if (const std::string* target = redirect_worker(none)) {
      ++counters_.redirected_workers;
      return send_disconnect(socket, identity, mdp, in.version, status::moved, *target);
    }
  }
  protocol::service_names names{};
  const std::size_t count = protocol::ready_services(msg, in, names);
  if (count > options_.max_worker_services)
    return send_disconnect(socket, identity, mdp, in.version, status::bad_request,
                           reasons::too_many_worker_services);
  std::size_t new_services = 0;
  for (std::size_t i = 0; i < count; ++i) {
    const std::string_view name = names[i];
    if (reserved_service(name))
      return send_disconnect(socket, identity, mdp, in.version, status::bad_request,
                             reasons::reserved_service);
    if (who_ != nullptr && !who_->may_serve(name)) {
      refuse(socket, msg, reasons::label_service_not_allowed, name,
             reasons::worker_announced_forbidden);
      return send_disconnect(socket, identity, mdp, in.version, status::forbidden,
                             reasons::key_may_not_serve);
    }
    bool repeated = false;  // a name listed twice is one service
    for (std::size_t k = 0; k < i && !repeated; ++k) repeated = names[k] == name;
    if (!repeated && !service_by_name_.contains(std::string(name))) ++new_services;
  }
  const bool moved_here = !mdp && (in.flags & protocol::flag_moved) != 0;
  if (!mdp && in.version == protocol::version_2 && new_services == 0 && !draining_ && !moved_here &&
      options_.rebalance_workers && !peer_by_link_.empty()) {
    // NEEDBROKER: a peer of the family that needs these services more gets the worker instead.
    rebalance_services_.clear();
    for (std::size_t i = 0; i < count; ++i) {
      name_key_.assign(names[i]);
      const std::uint32_t s = service_by_name_.at(name_key_);
      if (std::find(rebalance_services_.begin(), rebalance_services_.end(), s) ==
          rebalance_services_.end())
        rebalance_services_.push_back(s);
    }
    if (const std::uint32_t p = needier_peer(rebalance_services_, 1, now); p != npos) {
      ++counters_.rebalanced_workers;
      note_arriving(p, rebalance_services_, now);
      return send_disconnect(socket, identity, mdp, in.version, status::moved, workers_[p].backend);
    }
  }
  if (service_by_name_.size() + new_services > options_.max_services) {
    // Room is made by forgetting services nobody serves and nothing waits for; a worker is
    // refused only when the table is full of services that are in use.
    std::size_t idle_unserved = 0;
    for (const service_entry& S : services_)
      if (S.used && S.workers == 0 && S.peer_members == 0 && S.queue.empty() && S.in_flight == 0)
        ++idle_unserved;
    if (service_by_name_.size() - idle_unserved + new_services > options_.max_services)
      return send_disconnect(socket, identity, mdp, in.version, status::unavailable,
                             reasons::too_many_services);
  }

  const std::uint32_t w = take_index(workers_, free_workers_);
  worker_entry& W = workers_[w];
  W.used = true;
  W.mdp = mdp;
  W.stopping = false;
  W.idempotent = !mdp && (in.flags & protocol::flag_idempotent) != 0;
  W.version = in.version;
  W.batches = !mdp && in.version == protocol::version_2 && (in.flags & protocol::flag_batches);
  W.outgoing = npos;
  W.socket = socket;
  W.identity.assign(identity);
  W.key = key;
  W.curve_key = who_ != nullptr ? who_->key : std::string();
  W.concurrency = mdp ? 1 : in.concurrency;
  W.wants_config = false;
  W.in_flight = 0;
  W.unreachable = false;
  // A worker may ask for a longer interval than the broker's, up to the cap: a silent worker must
  // not be able to stay registered for ever.
  W.requested = std::clamp<clock::duration>(
      milliseconds(in.heartbeat_ms), options_.heartbeat_interval, options_.max_heartbeat_interval);
  W.interval = W.requested;
  W.regranted = false;
  if (mdp) {
    W.requested = W.interval = granted_mdp_interval();
  } else {
    ++native_workers_;
    W.interval = std::max(W.requested, fleet_interval());
  }
  W.last_seen = W.joined = now;
  W.expires = now + W.interval * options_.liveness;
  W.jobs = {};
  W.memberships.clear();
  // Frame 0 is made by the ROUTER; frame 1 came over the wire and carries the metadata.
  const char* address = zmq_msg_gets(msg[1].handle(), "Peer-Address");
  W.address.assign(address != nullptr ? address : "");
  W.name.assign(in.name);
  worker_by_key_.emplace(W.key, w);
  ++counters_.workers_joined;

  for (std::size_t i = 0; i < count; ++i) {
    const std::uint32_t s = find_or_create_service(names[i], now, true);
    if (s == npos) continue;
    const bool duplicate = std::any_of(W.memberships.begin(), W.memberships.end(),
                                       [&](std::uint32_t m) { return members_[m].service == s; });
    if (duplicate) continue;
    const std::uint32_t m = take_index(members_, free_members_);
    members_[m] = membership{};
    members_[m].worker = w;
    members_[m].service = s;
    W.memberships.push_back(m);
    if (services_[s].workers++ == 0 && services_[s].peer_members == 0) --unserved_services_;
    if (W.idempotent) ++services_[s].idempotent_workers;
    if (moved_here)
      services_[s].settled =
          now + std::max<clock::duration>(2 * options_.heartbeat_interval, milliseconds(1000));
    list_push_back(services_[s].lru, m, member_links());
    if (!services_[s].queue.empty()) pending_dispatch_.push_back(s);
  }
  note_worker_capacity(W);
  if (!mdp) send_welcome(W);
  std::string joined;
  for (std::uint32_t m : W.memberships) {
    if (!joined.empty()) joined += ',';
    joined += services_[members_[m].service].name;
  }
  const std::string id = hex_id(W.identity);
  const std::string detail = (mdp                                ? "MDPW01"
                              : W.version == protocol::version_2 ? "S0W2"
                                                                 : "S0W1") +
                             std::string(", concurrency ") + std::to_string(W.concurrency) +
                             (W.idempotent ? ", idempotent" : "") +
                             (W.name.empty() ? std::string() : ", name " + W.name);
  out_.event({event_kind::worker_joined, id, W.address, joined, 0, detail});
}

void broker_core::on_worker_reply(std::uint32_t w, frames& msg, const protocol::inbound& in,
                                  bool mdp, bool oversized, time_point now) {
  const auto slot = static_cast<std::uint32_t>(in.id & 0xffffffffu);
  const auto generation = static_cast<std::uint32_t>(in.id >> 32);
  if (slot >= slots_.size() || slots_[slot].generation != generation || slots_[slot].worker != w ||
      (slots_[slot].state != slot_state::in_flight &&
       slots_[slot].state != slot_state::abandoned)) {
    drop(counters_.dropped_unknown_reply, reasons::unknown_reply);
    return;
  }
  request_slot& r = slots_[slot];
  if (r.state == slot_state::abandoned) {  // the client already got 504
    drop(counters_.dropped_late_reply, reasons::late_reply);
  } else {
    ++counters_.replies;
    ++services_[r.service].replies;
    services_[r.service].latency.record(now - r.enqueued);
    const client_ref c = client_of(r);
    if (oversized) {
      count_error(r.service, status::too_large);
      send_error(c, status::too_large, reasons::reply_too_large);
    } else if (mdp) {
      ++services_[r.service].replies_ok;
      send_client_reply(c, status::ok, "", msg, in.first);
    } else {
      if (in.reply_status == status::ok)
        ++services_[r.service].replies_ok;
      else
        count_error(r.service, in.reply_status);
      send_client_reply(c, in.reply_status, in.message, msg, in.first);
    }
  }
  const std::uint32_t member = r.member;
  finish(slot);
  release_credit(w, member);
}

void broker_core::on_worker_stopping(std::uint32_t w) {
  worker_entry& W = workers_[w];
  if (W.mdp) return;
  W.stopping = true;
  note_worker_capacity(W);
  for (std::uint32_t m : W.memberships)
    list_remove(services_[members_[m].service].lru, m, member_links());
  scratch_.clear();
  scratch_.push_back(str_frame(W.identity));
  protocol::append_worker_stopping(scratch_, W.version);
  send(W.socket, scratch_);
}

// ---------------------------------------------------------------------------------------------
// Dispatch, credit and the wait queue

void broker_core::dispatch(std::uint32_t s, time_point now) {
  if (dispatch_held_) return;  // hold_dispatch(false) dispatches every service
  service_entry& S = services_[s];
  while (!S.queue.empty() && !S.lru.empty()) assign(S.queue.head, S.lru.head, now);
  // No local credit left: a peer with credit takes the oldest request that did not come from a
  // peer (those wait here for a local worker).
  // One pass over the queue: what it skips waits for a local worker.
  for (std::uint32_t slot = S.queue.head; slot != npos && S.forwardable != 0;) {
    const std::uint32_t next = slots_[slot].link.next;  // assign() takes `slot` out of the queue
    if (slots_[slot].client_socket != peer_socket) {
      const std::uint32_t m = forward_target(S);
      if (m == npos) break;
      assign(slot, m, now);
    }
    slot = next;
  }
}

std::uint32_t broker_core::forward_target(const service_entry& S) const noexcept {
  if (!S.peers.empty()) return S.peers.head;
  if (S.fallbacks.empty() || family_workers(S) != 0) return npos;
  std::uint32_t best = npos;  // the lowest rank; the least recently sent to among equals
  std::uint8_t rank = UINT8_MAX;
  for (std::uint32_t m = S.fallbacks.head; m != npos; m = members_[m].link.next)
    if (const std::uint8_t r = workers_[members_[m].worker].fallback_rank; r < rank) {
      best = m;
      rank = r;
    }
  return best;
}

void broker_core::flush_dispatch(time_point now) {
  // Services are dispatched here, not from inside purge/credit handling, so no action re-enters
  // another half-way through.
  while (!pending_dispatch_.empty()) {
    const std::uint32_t s = pending_dispatch_.back();
    pending_dispatch_.pop_back();
    if (services_[s].used) dispatch(s, now);
  }
}

void broker_core::assign(std::uint32_t slot, std::uint32_t member, time_point now) {
  const std::uint32_t w = members_[member].worker;
  const std::uint32_t s = members_[member].service;
  worker_entry& W = workers_[w];
  service_entry& S = services_[s];
  request_slot& r = slots_[slot];

  if (r.state == slot_state::queued) dequeue(slot);
  r.state = slot_state::in_flight;
  r.worker = w;
  r.member = member;
  ++r.attempts;
  list_push_back(W.jobs, slot, slot_links());
  note_worker_capacity(W);  // its credit is shared by all its services
  ++W.in_flight;
  ++members_[member].in_flight;
  ++S.in_flight;
  if (W.peer) {
    // A peer's credit is per service: it goes to the back of the service's peers, if it has more.
    --members_[member].credit;
    list_head& peers = lru_of(member);
    list_remove(peers, member, member_links());
    if (may_take(member)) list_push_back(peers, member, member_links());
  } else if (W.in_flight >= W.concurrency) {
    for (std::uint32_t m : W.memberships)
      list_remove(services_[members_[m].service].lru, m, member_links());
  } else {
    // Still has credit: it has now waited least, so it goes to the back of this service's LRU,
    // unless it now holds as many of this service's requests as the service allows (it stays in
    // its other services' LRUs, and comes back to this one when a reply of this service does).
    list_remove(S.lru, member, member_links());
    if (may_take(member)) list_push_back(S.lru, member, member_links());
  }
  timers_.schedule(slot, r.deadline);

  const std::uint64_t job_id = (std::uint64_t{r.generation} << 32) | slot;
  scratch_.clear();
  scratch_.push_back(str_frame(W.identity));
  if (W.peer) {  // a client of the peer: its reply comes back with the job id
    protocol::append_client_request(scratch_, job_id, S.name, millis_left(r.deadline, now),
                                    protocol::version_2);
  } else if (W.mdp) {
    protocol::append_mdp_worker_request(scratch_, job_id);
  } else {
    protocol::append_worker_request(scratch_, job_id, S.name, millis_left(r.deadline, now),
                                    W.version);
  }
  const std::size_t header = scratch_.size();
  // A request that may be re-dispatched keeps its body (a reference-counted copy, not a memcpy for
  // large frames). So does any request to a native worker: one that leaves saying it holds nothing
  // (DISCONNECT 204) never got it, and it goes to another worker. MDP requests move their body out.
  const bool keep = !W.mdp || (may_retry(r) && r.attempts < 2);
  r.body_kept = keep;
  for (auto& f : r.body) {
    if (keep) {
      scratch_.emplace_back();
      scratch_.back().copy(f);
    } else {
      scratch_.push_back(std::move(f));
    }
  }
  const bool padded = W.mdp && r.body.empty();
  if (padded) scratch_.emplace_back();  // MDP bodies have at least one frame
  if (W.batches && hold_for_worker(w, slot, scratch_, now)) return;  // sent by flush()
  if (out_.send(W.socket, scratch_) == delivery::sent) {
    if (!keep) r.body.clear();
    if (W.peer) {
      ++S.forwarded;
      ++counters_.forwarded_out;
      if (W.fallback_rank != 0) ++counters_.forwarded_fallback;
    }
    return;
  }
  // Never delivered: the request goes back to the head of the queue. The worker gets no more
  // work, but it is not purged yet: a reply it sent before its connection closed may still be
  // unread, and must not be answered 502 (on_input_drained purges it).
  if (!keep) {
    r.body.clear();
    for (std::size_t i = header; i < scratch_.size() - (padded ? 1 : 0); ++i)
      r.body.push_back(std::move(scratch_[i]));
  }
  --r.attempts;
  take_back(slot, now);
  if (W.peer) return block_peer(w, now);  // not lost: its link is busy or reconnecting
  pending_dispatch_.push_back(s);
  mark_unreachable(w, now);
}

void broker_core::block_peer(std::uint32_t w, time_point now) {
  worker_entry& W = workers_[w];
  for (std::uint32_t m : W.memberships) {
    members_[m].credit = 0;
    sync_lru(m);
  }
  // Its credit comes back with its next STATE entry that changes, or after a short wait: a STATE
  // that says the same as before is not passed on, and a link that was reconnecting sends again.
  if (!W.unreachable) {
    W.unreachable = true;
    W.unreachable_since = now;
    blocked_peers_.push_back(w);
  }
}

void broker_core::unblock_peers(time_point now) {
  std::erase_if(blocked_peers_, [&](std::uint32_t w) {
    worker_entry& W = workers_[w];
    if (!W.used || !W.peer || !W.unreachable) return true;  // gone, or unblocked by a STATE
    if (now - W.unreachable_since < peer_retry) return false;
    restore_peer(W);
    return true;
  });
}

void broker_core::restore_peer(worker_entry& W) {
  W.unreachable = false;
  for (std::uint32_t m : W.memberships) {
    members_[m].credit = members_[m].announced_idle;
    sync_lru(m);
    if (members_[m].link.linked && !services_[members_[m].service].queue.empty())
      pending_dispatch_.push_back(members_[m].service);
  }
}

list_head& broker_core::lru_of(std::uint32_t m) noexcept {
  service_entry& S = services_[members_[m].service];
  const worker_entry& W = workers_[members_[m].worker];
  return !W.peer ? S.lru : W.fallback_rank != 0 ? S.fallbacks : S.peers;
}

std::uint32_t broker_core::peer_of(std::uint32_t link) const noexcept {
  const auto it = peer_by_link_.find(link);
  return it == peer_by_link_.end() ? npos : it->second;
}

void broker_core::mark_unreachable(std::uint32_t w, time_point now) {
  worker_entry& W = workers_[w];
  if (W.unreachable) return;
  W.unreachable = true;
  W.unreachable_since = now;
  note_worker_capacity(W);
  for (std::uint32_t m : W.memberships)
    list_remove(services_[members_[m].service].lru, m, member_links());
  unreachable_.push_back(w);
}

void broker_core::purge_unreachable(time_point now, bool all) {
  // Under sustained input the sockets may never be empty: an unreachable worker is then purged
  // one heartbeat interval after it was found so.
  std::erase_if(unreachable_, [&](std::uint32_t w) {
    worker_entry& W = workers_[w];
    if (!W.used || !W.unreachable) return true;  // purged meanwhile (the slot may be reused)
    if (!all && now - W.unreachable_since < options_.heartbeat_interval) return false;
    purge_worker(w, now, worker_departure::unreachable, reasons::unreachable);
    return true;
  });
}

void broker_core::hold_dispatch(bool held, time_point now) {
  dispatch_held_ = held;
  if (held) return;
  for (std::uint32_t s = 0; s < services_.size(); ++s)
    if (services_[s].used && !services_[s].queue.empty()) pending_dispatch_.push_back(s);
  flush_dispatch(now);
}

void broker_core::on_input_drained(time_point now) {
  if (unreachable_.empty()) return;
  purge_unreachable(now, true);
  flush_dispatch(now);
}

void broker_core::enqueue(std::uint32_t slot, bool front, time_point now) {
  request_slot& r = slots_[slot];
  service_entry& S = services_[r.service];
  r.state = slot_state::queued;
  r.worker = npos;
  r.member = npos;
  if (front)
    list_push_front(S.queue, slot, slot_links());
  else
    list_push_back(S.queue, slot, slot_links());
  S.queue_bytes += r.bytes;
  queue_bytes_ += r.bytes;
  if (r.client_socket != peer_socket) ++S.forwardable;
  note_capacity(r.service);
  schedule_queued(slot, now);
}

void broker_core::dequeue(std::uint32_t slot) {
  request_slot& r = slots_[slot];
  service_entry& S = services_[r.service];
  list_remove(S.queue, slot, slot_links());
  S.queue_bytes -= r.bytes;
  queue_bytes_ -= r.bytes;
  if (r.client_socket != peer_socket) --S.forwardable;
  note_capacity(r.service);
}

void broker_core::take_back(std::uint32_t slot, time_point now) {
  request_slot& r = slots_[slot];
  list_remove(workers_[r.worker].jobs, slot, slot_links());
  --workers_[r.worker].in_flight;
  --members_[r.member].in_flight;
  --services_[r.service].in_flight;
  enqueue(slot, true, now);
}

void broker_core::release_credit(std::uint32_t w, std::uint32_t m) {
  worker_entry& W = workers_[w];
  const bool was_full = W.in_flight >= W.concurrency;
  --W.in_flight;
  if (m != npos) --members_[m].in_flight;
  if (W.peer) {  // its reply freed a worker there (until its next STATE says otherwise)
    if (m != npos) {
      ++members_[m].credit;
      sync_lru(m);
    }
    return;
  }
  if (W.stopping || W.unreachable) return;
  note_worker_capacity(W);
  // It is ready again where it may take more, and has waited least: after a full worker's reply,
  // in each of its services (but those where it is still at the service's max-concurrency); else
  // only the reply's own service can have changed.
  if (was_full) {
    for (std::uint32_t mm : W.memberships) sync_lru(mm);
  } else if (m != npos) {
    sync_lru(m);
  }
}

bool broker_core::may_take(std::uint32_t m) const noexcept {
  const membership& M = members_[m];
  const worker_entry& W = workers_[M.worker];
  if (W.peer) return !W.stopping && M.credit > 0;
  if (W.stopping || W.unreachable || W.in_flight >= W.concurrency) return false;
  const std::uint32_t cap = services_[M.service].max_concurrency;
  return cap == 0 || M.in_flight < cap;
}

std::size_t broker_core::free_slots_of(std::uint32_t m) const noexcept {
  if (!may_take(m)) return 0;
  const membership& M = members_[m];
  const worker_entry& W = workers_[M.worker];
  const std::uint32_t cap = services_[M.service].max_concurrency;
  const std::uint32_t credit = W.concurrency - W.in_flight;
  return cap == 0 ? credit : std::min(credit, cap - M.in_flight);
}

void broker_core::sync_lru(std::uint32_t m) {
  service_entry& S = services_[members_[m].service];
  list_head& lru = lru_of(m);
  const bool in = members_[m].link.linked;
  if (in == may_take(m)) return;
  if (in) return list_remove(lru, m, member_links());
  list_push_back(lru, m, member_links());  // it has waited least
  if (!S.queue.empty()) pending_dispatch_.push_back(members_[m].service);
}

void broker_core::finish(std::uint32_t slot) {
  request_slot& r = slots_[slot];
  service_entry& S = services_[r.service];
  if (r.state == slot_state::queued) {
    dequeue(slot);
  } else if (r.worker != npos) {
    list_remove(workers_[r.worker].jobs, slot, slot_links());
  }
  if (r.state == slot_state::in_flight) --S.in_flight;
  // abandoned requests gave their client slot back when the client got 504
  if (r.state == slot_state::queued || r.state == slot_state::in_flight) release_client(r);
  timers_.cancel(slot);
  r.body.clear();
  r.state = slot_state::free;
  r.worker = npos;
  r.member = npos;
  ++r.generation;
  free_slots_.push_back(slot);
}

void broker_core::release_client(const request_slot& r) {
  if (auto it = clients_.find(make_key(r.client_socket, r.client)); it != clients_.end())
    --it->second.in_flight;
}

void broker_core::fail(std::uint32_t slot, std::uint16_t code, std::string_view message) {
  count_error(slots_[slot].service, code);
  send_error(client_of(slots_[slot]), code, message);
  finish(slot);
}

void broker_core::schedule_queued(std::uint32_t slot, time_point now) {
  const request_slot& r = slots_[slot];
  const service_entry& S = services_[r.service];
  time_point check = now + options_.no_worker_timeout;
  if (no_worker_for(r))
    check = std::max(r.enqueued, S.no_worker_since) + options_.no_worker_timeout;
  timers_.schedule(slot, std::min(check, r.deadline));
}

void broker_core::on_timer(std::uint32_t slot, time_point now) {
  request_slot& r = slots_[slot];
  if (r.state == slot_state::queued) {
    const service_entry& S = services_[r.service];
    // When both fall due, "no worker" says more than "deadline": the request could not have been
    // served in any time (a request of 1 s to a service nobody serves, at the default 1 s
    // no-worker timeout, is 503).
    if (no_worker_for(r) &&
        now >= std::max(r.enqueued, S.no_worker_since) + options_.no_worker_timeout)
      return fail(slot, status::unavailable, reasons::no_worker);
    if (now >= r.deadline) return fail(slot, status::deadline, reasons::deadline_queued);
    return schedule_queued(slot, now);
  }
  if (r.state != slot_state::in_flight) return;
  // The worker still holds it (and its credit) until it replies; the client hears now.
  count_error(r.service, status::deadline);
  send_error(client_of(r), status::deadline, reasons::deadline_held);
  release_client(r);
  --services_[r.service].in_flight;
  r.state = slot_state::abandoned;
  r.body.clear();
}

// The configuration decides when it says yes or never; otherwise the worker's flag does.
bool broker_core::may_retry(const request_slot& r) const noexcept {
  switch (services_[r.service].idempotent) {
    case idempotency::yes:
      return true;
    case idempotency::never:
      return false;
    case idempotency::worker:
      break;
  }
  if (r.worker == npos) return false;
  // A peer said whether its workers of the service are idempotent (STATE).
  if (workers_[r.worker].peer) return r.member != npos && members_[r.member].idempotent;
  return workers_[r.worker].idempotent;
}

// A request waits for a worker of the family: a local one, or one a peer announced (one that came
// from a peer can use only a local one).
bool broker_core::no_worker_for(const request_slot& r) const noexcept {
  const service_entry& S = services_[r.service];
  return S.workers == 0 && (r.client_socket == peer_socket || S.peer_workers == 0);
}

// ---------------------------------------------------------------------------------------------
// Workers: liveness, expiry and removal

void broker_core::touch(worker_entry& W, time_point now) {
  const auto gap = now - W.last_seen;
  // A Majordomo worker is silent while its handler runs: that is not a missed heartbeat.
  const bool busy_mdp = W.mdp && W.in_flight != 0;
  if (gap > 2 * W.interval && !W.regranted && !busy_mdp)
    counters_.heartbeats_missed += static_cast<std::uint64_t>(gap / W.interval - 1);
  W.regranted = false;
  W.last_seen = now;
  W.expires = now + W.interval * options_.liveness;
}

void broker_core::purge_worker(std::uint32_t w, time_point now, worker_departure why,
                               std::string_view detail, bool held_nothing) {
  worker_entry& W = workers_[w];
  if (W.outgoing != npos) {  // what it was sent this turn goes before it is forgotten
    flush_outgoing(W.outgoing, now);
    W.outgoing = npos;
  }
  note_worker_capacity(W);
  if (!W.peer)
    out_.event({event_kind::worker_left, hex_id(W.identity), W.address, {}, 0, detail, why});
  for (std::uint32_t m : W.memberships) {
    if (W.peer) continue;  // after its requests: whether one may go again is in its membership
    service_entry& S = services_[members_[m].service];
    list_remove(S.lru, m, member_links());
    if (W.idempotent) --S.idempotent_workers;
    if (--S.workers == 0) {
      S.no_worker_since = now;
      if (S.peer_members == 0) ++unserved_services_;
      fallback_if_orphaned(members_[m].service);
    }
    free_members_.push_back(m);
  }
  while (!W.jobs.empty()) {
    const std::uint32_t slot = W.jobs.head;
    request_slot& r = slots_[slot];
    // held_nothing comes only from native workers, whose requests keep their body (assign).
    // A body that went to an MDP worker is gone (assign keeps it only when the request could be
    // sent again then): such a request is not re-sent, even if a reload made it idempotent since.
    if (r.state == slot_state::in_flight &&
        (held_nothing || (may_retry(r) && r.attempts < 2 && r.body_kept))) {
      if (held_nothing) --r.attempts;  // it never ran
      take_back(slot, now);
      pending_dispatch_.push_back(r.service);
      ++counters_.redispatched;
    } else if (r.state == slot_state::in_flight) {
      fail(slot, status::worker_lost, W.peer ? reasons::peer_lost : reasons::worker_lost);
    } else {
      finish(slot);  // abandoned: its client already had 504
    }
  }
  if (W.peer)
    for (std::uint32_t m : W.memberships) drop_peer_membership(m, now);
  W.used = false;
  W.memberships.clear();
  W.in_flight = 0;
  free_workers_.push_back(w);
  if (W.peer) {
    peer_by_link_.erase(W.link);
    W.peer = false;
    return;
  }
  worker_by_key_.erase(W.key);
  if (!W.mdp) --native_workers_;
  ++counters_.workers_left;
}

// ---------------------------------------------------------------------------------------------
// Forwarding: peers of the family as virtual workers

void broker_core::peer_up(std::uint32_t link, std::string_view name, std::string_view frontend,
                          std::string_view backend, std::uint8_t fallback_rank, time_point now) {
  if (const std::uint32_t old = peer_of(link); old != npos)
    peer_down(link, reasons::peer_restarted, now);
  const std::uint32_t w = take_index(workers_, free_workers_);
  worker_entry& W = workers_[w];
  W.used = true;
  W.peer = true;
  W.fallback_rank = fallback_rank;
  W.link = link;
  W.mdp = false;
  W.stopping = false;
  W.idempotent = false;
  W.unreachable = false;
  W.version = protocol::version_2;
  W.socket = link_socket;
  W.identity.assign(reinterpret_cast<const char*>(&link), sizeof link);
  W.key = make_key(link_socket, W.identity);
  W.curve_key.clear();
  W.address.assign(name);
  W.name.clear();
  W.frontend.assign(frontend);
  W.backend.assign(backend);
  W.concurrency = UINT32_MAX;  // its credit is per service (membership::credit)
  W.in_flight = 0;
  W.interval = W.requested = options_.heartbeat_interval;
  W.regranted = false;
  W.last_seen = W.joined = now;
  W.expires = time_point::max();  // the family judges its liveness
  W.jobs = {};
  W.memberships.clear();
  W.member_by_service.clear();
  W.arriving.clear();
  peer_by_link_[link] = w;
}

void broker_core::peer_capacity(std::uint32_t link, std::string_view service, std::uint32_t workers,
                                std::uint32_t idle, std::uint32_t queued, bool idempotent,
                                time_point now) {
  const std::uint32_t w = peer_of(link);
  if (w == npos) return;
  worker_entry& W = workers_[w];
  name_key_.assign(service);
  const auto known = service_by_name_.find(name_key_);
  std::uint32_t m = npos;
  if (known != service_by_name_.end())
    if (const auto it = W.member_by_service.find(known->second); it != W.member_by_service.end())
      m = it->second;
  if (workers == 0 && idle == 0) {  // gone from that peer
    if (m == npos) return;
    if (members_[m].in_flight == 0) {
      W.member_by_service.erase(members_[m].service);
      std::erase(W.memberships, m);
      drop_peer_membership(m, now);
    } else {  // kept for what it holds, with nothing announced
      service_entry& S = services_[members_[m].service];
      S.peer_workers -= members_[m].announced_workers;
      if (W.fallback_rank != 0) S.fallback_workers -= members_[m].announced_workers;
      members_[m].announced_workers = 0;
      fallback_if_orphaned(members_[m].service);
      members_[m].credit = 0;
      sync_lru(m);
    }
    return flush_dispatch(now);
  }
  if (m == npos) {
    if (reserved_service(service)) return;
    const std::uint32_t s = find_or_create_service(service, now, true);
    if (s == npos) return;  // the table is full of services in use: this one is not forwarded
    m = take_index(members_, free_members_);
    members_[m] = membership{};
    members_[m].worker = w;
    members_[m].service = s;
    W.memberships.push_back(m);
    W.member_by_service.emplace(s, m);
    service_entry& S = services_[s];
    if (S.peer_members++ == 0 && S.workers == 0) --unserved_services_;
  }
  membership& M = members_[m];
  service_entry& S = services_[M.service];
  if (W.unreachable) restore_peer(W);  // it speaks: try it again (unblock_peers forgets it)
  // Workers this broker sent it that its STATE now shows are no longer counted twice.
  for (std::uint32_t arrived = workers > M.announced_workers ? workers - M.announced_workers : 0;
       arrived != 0; --arrived) {
    const auto a = std::find_if(W.arriving.begin(), W.arriving.end(),
                                [&](const auto& e) { return e.first == M.service; });
    if (a == W.arriving.end()) break;
    W.arriving.erase(a);
  }
  S.peer_workers = S.peer_workers - M.announced_workers + workers;
  if (W.fallback_rank != 0) S.fallback_workers = S.fallback_workers - M.announced_workers + workers;
  M.announced_workers = workers;
  M.announced_idle = idle;
  M.announced_queued = queued;
  M.credit = idle;
  M.idempotent = idempotent;
  sync_lru(m);
  if (M.link.linked && !S.queue.empty()) pending_dispatch_.push_back(M.service);
  fallback_if_orphaned(M.service);  // a member announcing none left
  flush_dispatch(now);
}

bool broker_core::drain_settled(time_point now) const noexcept {
  // Peers learn of the drain from a HELLO sent when it began, and stop forwarding here; clients
  // that were sending were redirected and move. The broker stays until a quiet spell: what was
  // on its way here when the drain began is handed back, not lost with the process.
  const auto quiet = options_.heartbeat_interval;
  return now - drain_started_ >= quiet && now - last_redirect_ >= quiet;
}

void broker_core::begin_drain(time_point now) {
  draining_ = true;
  drain_started_ = now;
  move_idle_workers(now);
  flush_dispatch(now);
}

const std::string* broker_core::redirect_client(std::string_view service) {
  name_key_.assign(service);
  if (const auto it = service_by_name_.find(name_key_); it != service_by_name_.end()) {
    for (std::uint32_t m = services_[it->second].peers.head; m != npos; m = members_[m].link.next)
      if (const worker_entry& W = workers_[members_[m].worker]; !W.frontend.empty())
        return &W.frontend;
  }
  // No peer has credit for it: any peer that takes work, in turn.
  const std::size_t n = peer_by_link_.size();
  if (n == 0) return nullptr;
  auto it = peer_by_link_.begin();
  std::advance(it, static_cast<std::ptrdiff_t>(redirect_turn_++ % n));
  for (std::size_t i = 0; i < n; ++i) {
    const worker_entry& W = workers_[it->second];
    if (!W.stopping && W.fallback_rank == 0 && !W.frontend.empty()) return &W.frontend;
    if (++it == peer_by_link_.end()) it = peer_by_link_.begin();
  }
  return nullptr;
}

// The peer whose queues for W's services are longest against its idle credit (a service it does
// not serve counts as a need of one); then the one with the fewest workers for them.
const std::string* broker_core::redirect_worker(const worker_entry& W) {
  const std::string* best = nullptr;
  std::int64_t best_need = 0;
  std::int64_t best_workers = 0;
  for (const auto& [link, p] : peer_by_link_) {
    const worker_entry& P = workers_[p];
    if (P.stopping || P.fallback_rank != 0 || P.backend.empty()) continue;
    std::int64_t need = 0;
    std::int64_t workers = 0;
    for (std::uint32_t wm : W.memberships) {
      const auto it = P.member_by_service.find(members_[wm].service);
      if (it == P.member_by_service.end()) {
        need += 1;
        continue;
      }
      const membership& M = members_[it->second];
      need += std::int64_t{M.announced_queued} - std::int64_t{M.announced_idle};
      workers += M.announced_workers;
    }
    if (best == nullptr || need > best_need || (need == best_need && workers < best_workers)) {
      best = &P.backend;
      best_need = need;
      best_workers = workers;
    }
  }
  return best;
}

void broker_core::move_idle_workers(time_point now) {
  if (peer_by_link_.empty()) return;
  for (std::uint32_t w = 0; w < workers_.size(); ++w) {
    worker_entry& W = workers_[w];
    if (!W.used || W.peer || W.mdp || W.in_flight != 0) continue;
    bool wanted = false;  // something queued here that it could take
    for (std::uint32_t m : W.memberships)
      wanted = wanted || !services_[members_[m].service].queue.empty();
    if (wanted) continue;
    const std::string* target = redirect_worker(W);
    if (target == nullptr) return;  // no peer takes work
    ++counters_.redirected_workers;
    const std::string to = *target;
    send_disconnect(W, status::moved, to);
    purge_worker(w, now, worker_departure::moved,
                 std::string(reasons::moved_to_peer) + " (" + to + ")", true);
  }
}

std::uint32_t broker_core::needier_peer(std::span<const std::uint32_t> services,
                                        std::uint32_t unregistered, time_point now) {
  if (services.empty()) return npos;
  for (std::uint32_t s : services) {
    if (!services_[s].queue.empty()) return npos;  // it has work here
    // A peer just sent a worker of it here, and this broker's view of that peer may not show the
    // loss yet: moving one now could send it straight back.
    if (now < services_[s].settled) return npos;
  }
  std::uint32_t best = npos;
  std::int64_t best_need = 0;
  std::int64_t best_workers = 0;
  for (const auto& [link, p] : peer_by_link_) {
    worker_entry& P = workers_[p];
    if (P.stopping || P.fallback_rank != 0 || P.backend.empty() || P.unreachable) continue;
    std::erase_if(P.arriving, [&](const auto& a) { return a.second <= now; });
    std::int64_t need = 0;
    std::int64_t workers = 0;
    bool qualifies = true;
    for (std::uint32_t s : services) {
      std::int64_t theirs = static_cast<std::int64_t>(std::count_if(
          P.arriving.begin(), P.arriving.end(), [s](const auto& a) { return a.first == s; }));
      const auto it = P.member_by_service.find(s);
      if (it != P.member_by_service.end()) {
        const membership& M = members_[it->second];
        theirs += M.announced_workers;
        need += std::int64_t{M.announced_queued} - std::int64_t{M.announced_idle};
      } else {
        need += 1;
      }
      // After the move this broker keeps at least as many as the peer then has: no bouncing back.
      if (std::int64_t{services_[s].workers} + unregistered < theirs + 2) {
        qualifies = false;
        break;
      }
      workers += theirs;
    }
    if (qualifies &&
        (best == npos || need > best_need || (need == best_need && workers < best_workers))) {
      best = p;
      best_need = need;
      best_workers = workers;
    }
  }
  return best;
}

void broker_core::note_arriving(std::uint32_t peer, std::span<const std::uint32_t> services,
                                time_point now) {
  // Counted as the peer's until its STATE can show the worker (registering takes a round trip,
  // STATE goes a few times a second).
  const time_point until = now + 2 * options_.heartbeat_interval;
  for (std::uint32_t s : services) workers_[peer].arriving.emplace_back(s, until);
}

void broker_core::rebalance_workers(time_point now) {
  next_rebalance_ = now + options_.heartbeat_interval;
  if (!options_.rebalance_workers || draining_ || peer_by_link_.empty()) return;
  rebalanced_to_.clear();
  for (std::uint32_t w = 0; w < workers_.size() && rebalanced_to_.size() < peer_by_link_.size();
       ++w) {
    worker_entry& W = workers_[w];
    if (!W.used || W.peer || W.mdp || W.version != protocol::version_2 || W.stopping ||
        W.unreachable || W.in_flight != 0)
      continue;
    rebalance_services_.clear();
    for (std::uint32_t m : W.memberships) rebalance_services_.push_back(members_[m].service);
    const std::uint32_t p = needier_peer(rebalance_services_, 0, now);
    if (p == npos ||
        std::find(rebalanced_to_.begin(), rebalanced_to_.end(), p) != rebalanced_to_.end())
      continue;
    rebalanced_to_.push_back(p);
    ++counters_.rebalanced_workers;
    note_arriving(p, rebalance_services_, now);
    const std::string to = workers_[p].backend;
    send_disconnect(W, status::moved, to);
    purge_worker(w, now, worker_departure::rebalanced,
                 std::string(reasons::sent_to_needier_peer) + " (" + to + ")", true);
  }
}

void broker_core::send_redirect(const client_ref& c, const std::string& target, frames& msg,
                                std::size_t first) {
  ++counters_.redirected_clients;
  scratch_.clear();
  scratch_.push_back(str_frame(c.identity));
  protocol::append_client_reply(scratch_, c.id, status::moved, target, c.version);
  scratch_.push_back(str_frame(c.service));  // the request, handed back: service, then body
  for (std::size_t i = first; i < msg.size(); ++i) scratch_.push_back(std::move(msg[i]));
  send_to_client(c.socket, c.identity, scratch_);
}

// Takes membership `m` of a peer out of its service (the caller forgets it in the worker).
void broker_core::drop_peer_membership(std::uint32_t m, time_point now) {
  membership& M = members_[m];
  service_entry& S = services_[M.service];
  list_remove(lru_of(m), m, member_links());
  S.peer_workers -= M.announced_workers;
  if (workers_[M.worker].fallback_rank != 0) S.fallback_workers -= M.announced_workers;
  if (--S.peer_members == 0 && S.workers == 0) {
    ++unserved_services_;
    S.no_worker_since = now;
  } else if (S.peer_workers == 0 && S.workers == 0) {
    S.no_worker_since = now;
  }
  fallback_if_orphaned(M.service);
  M = membership{};
  free_members_.push_back(m);
}

void broker_core::peer_updated(std::uint32_t link, bool draining, std::string_view frontend,
                               std::string_view backend, time_point now) {
  const std::uint32_t w = peer_of(link);
  if (w == npos) return;
  workers_[w].frontend.assign(frontend);
  workers_[w].backend.assign(backend);
  if (workers_[w].stopping == draining) return;
  workers_[w].stopping = draining;
  for (std::uint32_t m : workers_[w].memberships) sync_lru(m);
  flush_dispatch(now);
}

void broker_core::peer_down(std::uint32_t link, std::string_view why, time_point now) {
  const std::uint32_t w = peer_of(link);
  if (w == npos) return;
  purge_worker(w, now, worker_departure::none, why);  // the family reports it (peer_down)
  flush_dispatch(now);
}

void broker_core::on_peer_reply(std::uint32_t link, frames& msg, bool oversized, time_point now) {
  const std::uint32_t w = peer_of(link);
  const protocol::client_inbound in = protocol::decode_for_client(msg);
  if (w == npos || in.kind == protocol::client_inbound_kind::invalid) {
    drop(counters_.dropped_malformed, reasons::not_a_peer_reply);
    return;
  }
  if (in.kind != protocol::client_inbound_kind::reply) return;  // a PONG: nothing to do
  const auto slot = static_cast<std::uint32_t>(in.id & 0xffffffffu);
  const auto generation = static_cast<std::uint32_t>(in.id >> 32);
  if (slot >= slots_.size() || slots_[slot].generation != generation || slots_[slot].worker != w ||
      (slots_[slot].state != slot_state::in_flight &&
       slots_[slot].state != slot_state::abandoned)) {
    drop(counters_.dropped_unknown_reply, reasons::unknown_peer_reply);
    return;
  }
  request_slot& r = slots_[slot];
  if (in.status == status::moved && r.state == slot_state::in_flight) {
    // The peer drains and did not take it: back to the head of the queue, not an attempt, and
    // nothing more for that peer (its HELLO says it drains, soon if not yet).
    worker_entry& W = workers_[w];
    --r.attempts;
    ++counters_.handed_back;
    take_back(slot, now);
    W.stopping = true;
    for (std::uint32_t m : W.memberships) sync_lru(m);
    pending_dispatch_.push_back(r.service);
    return flush_dispatch(now);
  }
  if (r.state == slot_state::abandoned) {
    drop(counters_.dropped_late_reply, reasons::late_peer_reply);
  } else {
    service_entry& S = services_[r.service];
    ++counters_.replies;
    ++S.replies;
    S.latency.record(now - r.enqueued);
    const client_ref c = client_of(r);
    if (oversized) {
      count_error(r.service, status::too_large);
      send_error(c, status::too_large, reasons::reply_too_large);
    } else {
      if (in.status == status::ok)
        ++S.replies_ok;
      else
        count_error(r.service, in.status);
      send_client_reply(c, in.status, in.message, msg, in.first);
    }
  }
  const std::uint32_t member = r.member;
  finish(slot);
  release_credit(w, member);
  flush_dispatch(now);
}

// ---------------------------------------------------------------------------------------------
// Time

void broker_core::on_tick(time_point now) {
  due_.clear();
  timers_.expire(now, due_);
  for (std::uint32_t slot : due_)
    if (slots_[slot].state != slot_state::free) on_timer(slot, now);

  // The loop runs timers at least every interval/4. A longer gap means this process did not run
  // (starved of CPU): heartbeats that arrived meanwhile are still unread in the sockets, so give
  // the loop one interval to read them before judging anyone silent.
  if (now - last_tick_ > options_.heartbeat_interval)
    next_expiry_scan_ = std::max(next_expiry_scan_, now + options_.heartbeat_interval);
  last_tick_ = now;
  if (now >= next_expiry_scan_) {
    expire_workers(now);
    next_expiry_scan_ =
        now + std::max<clock::duration>(options_.heartbeat_interval / 4, milliseconds(5));
  }
  if (!unreachable_.empty()) purge_unreachable(now, false);
  if (!blocked_peers_.empty()) unblock_peers(now);
  if (draining_) move_idle_workers(now);
  if (now >= next_rebalance_) rebalance_workers(now);
  if (!backlogged_.empty() && now >= next_backlog_retry_) {
    flush_backlogs();
    next_backlog_retry_ = now + milliseconds(2);
  }
  if (now >= next_heartbeat_) heartbeat_tick(now);
  flush_dispatch(now);
}

void broker_core::expire_workers(time_point now) {
  // Every worker is checked, not just the oldest: one slow worker must not shield the rest.
  for (std::uint32_t w = 0; w < workers_.size(); ++w) {
    worker_entry& W = workers_[w];
    if (!W.used || W.peer || now < W.expires) continue;
    if (W.mdp) {
      // A Majordomo worker cannot heartbeat while it works: it is kept until the deadline of
      // what it holds has passed, plus one liveness period.
      time_point hold{};
      for (std::uint32_t slot = W.jobs.head; slot != npos; slot = slots_[slot].link.next)
        hold = std::max(hold, slots_[slot].deadline);
      if (W.jobs.head != npos && now < hold + W.interval * options_.liveness) continue;
    }
    send_disconnect(W, status::deadline, reasons::heartbeat_expired);
    ++counters_.workers_expired;
    // Its silence counts as missed heartbeats too, beyond the first interval.
    const auto silent = static_cast<std::uint64_t>((now - W.last_seen) / W.interval);
    if (silent > 1) counters_.heartbeats_missed += silent - 1;
    purge_worker(w, now, worker_departure::expired, reasons::heartbeat_expired);
  }
}

clock::duration broker_core::granted_mdp_interval() const noexcept {
  return std::max<clock::duration>(options_.mdp_heartbeat_interval, options_.heartbeat_interval);
}

void broker_core::heartbeat_tick(time_point now) {
  // One PUB send reaches every native worker, however many there are.
  scratch_.clear();
  protocol::append_heartbeat(scratch_, broker_id_, ++heartbeat_sequence_);
  out_.publish(scratch_);
  for (const worker_entry& W : workers_) {
    if (!W.used || !W.mdp) continue;  // Majordomo workers need one each, on their own socket
    scratch_.clear();
    scratch_.push_back(str_frame(W.identity));
    protocol::append_mdp_worker_command(scratch_, protocol::mdp_command::heartbeat);
    send(W.socket, scratch_);
  }
  // Forget services nobody serves or asks for, and clients with nothing in flight.
  const auto ttl = std::max<clock::duration>(options_.no_worker_timeout, options_.service_ttl);
  for (std::uint32_t s = 0; s < services_.size(); ++s) {
    service_entry& S = services_[s];
    if (!S.used) continue;
    S.window_pos = static_cast<std::uint32_t>((S.window_pos + 1) % S.window.size());
    std::uint64_t errors = 0;
    for (const auto& e : S.errors) errors += e.second;
    S.window[S.window_pos] = {now, S.requests, errors, S.latency.counts};
    S.history.advance(now, S.requests, errors);  // the status page's five minutes
    if (S.workers != 0 || S.peer_members != 0 || !S.queue.empty() || S.in_flight != 0 ||
        now - S.no_worker_since < ttl)
      continue;
    remove_service(s);
  }
  // Clients still active keep their entry, so a steady client costs no allocation per request.
  std::erase_if(clients_, [&](const auto& kv) {
    return kv.second.in_flight == 0 && kv.second.backlog.empty() && kv.second.outgoing == npos &&
           now - kv.second.last_request > options_.heartbeat_interval;
  });
  if (native_workers_ != regranted_for_) regrant_intervals();
  next_heartbeat_ += options_.heartbeat_interval;
  if (next_heartbeat_ <= now) next_heartbeat_ = now + options_.heartbeat_interval;
}

// The interval that keeps N native workers under max_worker_heartbeats per second: a whole
// multiple of the broker's interval, never less than it.
clock::duration broker_core::fleet_interval() const noexcept {
  const clock::duration base = options_.heartbeat_interval;
  if (options_.max_worker_heartbeats == 0 || base <= clock::duration::zero()) return base;
  // heartbeats a second at the base interval, then how many base intervals keep it under the rate
  const auto base_ms =
      std::max<std::int64_t>(1, std::chrono::duration_cast<milliseconds>(base).count());
  const std::int64_t per_interval =
      std::max<std::int64_t>(1, std::int64_t{options_.max_worker_heartbeats} * base_ms / 1000);
  const std::int64_t multiple =
      std::max<std::int64_t>(1, (std::int64_t{native_workers_} + per_interval - 1) / per_interval);
  return base * multiple;
}

// As the fleet grows (or shrinks), S0/2 workers are told a new interval with an unsolicited
// WELCOME (S0/1 workers keep what they were granted: S0/1 has no re-grant). Steps of less than a
// quarter are not worth a message to every worker; shrinking waits for a halving, so a fleet
// hovering around a step does not flap.
void broker_core::regrant_intervals() {
  regranted_for_ = native_workers_;
  const clock::duration target = fleet_interval();
  for (worker_entry& W : workers_) {
    if (!W.used || W.mdp || W.peer || W.version != protocol::version_2) continue;
    const clock::duration want = std::max(W.requested, target);
    if (want > W.interval + W.interval / 4) {
      // Longer: the worker may still send at the old pace for a while, which is only early.
      W.expires = std::max(W.expires, W.last_seen + want * options_.liveness);
    } else if (want < W.interval / 2) {
      // Shorter: the current deadline, made with the longer interval, stands until the worker's
      // next message, and that first gap is not counted as missed heartbeats.
      W.regranted = true;
    } else {
      continue;
    }
    W.interval = want;
    send_welcome(W);
  }
}

time_point broker_core::next_wakeup(time_point now) const noexcept {
  const time_point next = std::min({timers_.next_due(now), next_heartbeat_, next_expiry_scan_});
  const time_point soon = blocked_peers_.empty() ? next : std::min(next, now + peer_retry);
  return backlogged_.empty() ? soon : std::min(soon, next_backlog_retry_);
}

void broker_core::shutdown(time_point now) {
  for (std::uint32_t slot = 0; slot < slots_.size(); ++slot) {
    const slot_state st = slots_[slot].state;
    if (st == slot_state::queued || st == slot_state::in_flight) {
      fail(slot, status::unavailable, reasons::broker_shutting_down);
    } else if (st == slot_state::abandoned) {
      finish(slot);
    }
  }
  for (std::uint32_t w = 0; w < workers_.size(); ++w) {
    if (!workers_[w].used) continue;
    // After a drain, a worker still here goes to a peer that takes work, when there is one.
    const std::string* target =
        draining_ && !workers_[w].peer && !workers_[w].mdp ? redirect_worker(workers_[w]) : nullptr;
    if (target != nullptr) {
      ++counters_.redirected_workers;
      send_disconnect(workers_[w], status::moved, std::string(*target));
    } else if (!workers_[w].peer) {
      send_disconnect(workers_[w], status::unavailable, reasons::broker_shutting_down);
    }
    purge_worker(w, now, worker_departure::shutdown, reasons::broker_shutting_down);
  }
  pending_dispatch_.clear();
  unreachable_.clear();
  flush(now);
  // What a client's full queue still refuses now is lost with the broker: counted.
  flush_backlogs();
  for (auto& [key, client] : clients_) {
    counters_.dropped_backlog += client.backlog_answers;
    client.backlog.clear();
    client.backlog_bytes = 0;
    client.backlog_answers = 0;
  }
  backlogged_.clear();
  backlog_bytes_ = backlog_messages_ = 0;
}

// ---------------------------------------------------------------------------------------------
// Sending

bool broker_core::send(std::uint8_t socket, frames& msg) {
  if (!open_outgoing_.empty()) flush_peer(socket, view(msg[0]), last_tick_);
  if (out_.send(socket, msg) == delivery::sent) return true;
  drop(counters_.dropped_unroutable, reasons::unroutable);
  return false;
}

namespace {
// What a held message costs: its bytes and the ZeroMQ message structure of each frame.
std::size_t held_cost(const frames& msg) noexcept {
  std::size_t n = 0;
  for (const auto& f : msg) n += f.size() + sizeof(zmq::message_t);
  return n;
}
}  // namespace

void broker_core::send_to_client(std::uint8_t socket, std::string_view identity, frames& msg,
                                 bool batches) {
  client_entry* held = nullptr;  // the client's entry when it already has a backlog
  // An S0/2 client may take batches: its entry says so. It is looked up only when the client is
  // known to (its request said so), or when something is held for some client: a client that
  // takes no batch costs no lookup.
  const bool v2 = msg.size() > 2 && view(msg[2]).starts_with(protocol::client_header_v2);
  if ((v2 && (batches || !open_outgoing_.empty())) || !backlogged_.empty()) {
    const auto it = clients_.find(make_key(socket, identity));
    client_entry* c = it != clients_.end() ? &it->second : nullptr;
    if (c != nullptr && c->backlog.empty() && c->batches) {
      if (c->outgoing == npos) c->outgoing = open_outgoing(socket, npos, key_);
      outgoing& o = outgoing_[c->outgoing];
      if (o.box.batchable(msg)) {
        if (!o.box.fits(msg)) flush_outgoing(c->outgoing, last_tick_);
        if (c->backlog.empty()) return o.box.add(msg);  // sent by flush()
      } else {
        flush_outgoing(c->outgoing, last_tick_);  // in order
      }
    }
    if (c != nullptr && !c->backlog.empty()) held = c;
  }
  if (held == nullptr) {
    switch (out_.send(socket, msg)) {
      case delivery::sent:
        return;
      case delivery::gone:
        return drop(counters_.dropped_unroutable, reasons::client_gone);
      case delivery::full:
        break;
    }
    // Its queue is full: it is not reading (yet). Hold the answer, in order, within budget.
    held = &clients_.try_emplace(make_key(socket, identity)).first->second;
  }
  const std::size_t cost = held_cost(msg);
  if (held->backlog_bytes + cost > options_.max_client_backlog_bytes ||
      backlog_bytes_ + cost > options_.max_total_backlog_bytes)
    return drop(counters_.dropped_backlog, reasons::backlog_full);
  if (held->backlog.empty()) backlogged_.push_back(make_key(socket, identity));
  held->backlog.push_back({cost, std::move(msg)});
  msg.clear();
  held->backlog_bytes += cost;
  ++held->backlog_answers;
  backlog_bytes_ += cost;
  ++backlog_messages_;
  if (backlogged_.size() == 1) next_backlog_retry_ = last_tick_ + milliseconds(1);
}

// ---------------------------------------------------------------------------------------------
// Batches (docs/protocol.md, "Batches"): what one turn of the loop has for a peer that takes them
// leaves as one message. Only what is already there is put together: nothing waits for more.

std::uint32_t broker_core::open_outgoing(std::uint8_t socket, std::uint32_t worker,
                                         std::string_view key) {
  const std::uint32_t o = take_index(outgoing_, free_outgoing_);
  outgoing& out = outgoing_[o];
  out.socket = socket;
  out.worker = worker;
  out.client_key.assign(key);
  out.jobs.clear();
  open_outgoing_.push_back(o);
  return o;
}

bool broker_core::hold_for_worker(std::uint32_t w, std::uint32_t slot, frames& msg,
                                  time_point now) {
  worker_entry& W = workers_[w];
  if (W.outgoing == npos) W.outgoing = open_outgoing(W.socket, w, {});
  outgoing& o = outgoing_[W.outgoing];
  if (!o.box.batchable(msg)) {
    flush_outgoing(W.outgoing, now);  // in order, then this one alone
    return false;
  }
  if (!o.box.fits(msg)) flush_outgoing(W.outgoing, now);
  if (W.unreachable) return false;  // that flush failed: this one fails alone, and comes back
  o.box.add(msg);
  o.jobs.emplace_back(slot, slots_[slot].generation);
  return true;
}

void broker_core::flush_outgoing(std::uint32_t i, time_point now) {
  outgoing& o = outgoing_[i];
  if (o.box.empty()) return;
  const std::size_t answers = o.box.size();
  if (answers > 1) {
    ++counters_.batches_out;
    counters_.batch_entries_out += answers;
  }
  o.box.take(flushed_);
  const delivery d = out_.send(o.socket, flushed_);
  if (o.worker != npos) {
    if (d != delivery::sent) {
      // Never delivered: as for a single request (assign), each goes back to the head of its
      // queue, and the worker gets no more work until its input has been read.
      for (const auto& [slot, generation] : o.jobs) {
        request_slot& r = slots_[slot];
        if (r.generation != generation || r.state != slot_state::in_flight || r.worker != o.worker)
          continue;
        --r.attempts;
        take_back(slot, now);
        pending_dispatch_.push_back(r.service);
      }
      mark_unreachable(o.worker, now);
    }
    o.jobs.clear();
    return;
  }
  if (d == delivery::sent) return;
  if (d == delivery::gone) {
    for (std::size_t n = 0; n < answers; ++n)
      drop(counters_.dropped_unroutable, reasons::client_gone);
    return;
  }
  // The client's queue is full: the batch is held whole, in order, within the backlog budgets.
  const auto it = clients_.find(o.client_key);
  const std::size_t cost = held_cost(flushed_);
  if (it == clients_.end() || it->second.backlog_bytes + cost > options_.max_client_backlog_bytes ||
      backlog_bytes_ + cost > options_.max_total_backlog_bytes) {
    for (std::size_t n = 0; n < answers; ++n)
      drop(counters_.dropped_backlog, reasons::backlog_full);
    return;
  }
  client_entry& c = it->second;
  if (c.backlog.empty()) backlogged_.push_back(o.client_key);
  c.backlog.push_back({cost, std::move(flushed_), static_cast<std::uint32_t>(answers)});
  flushed_.clear();
  c.backlog_bytes += cost;
  c.backlog_answers += answers;
  backlog_bytes_ += cost;
  backlog_messages_ += answers;
  if (backlogged_.size() == 1) next_backlog_retry_ = last_tick_ + milliseconds(1);
}

void broker_core::flush_peer(std::uint8_t socket, std::string_view identity, time_point now) {
  for (const std::uint32_t i : open_outgoing_) {
    const outgoing& o = outgoing_[i];
    if (o.socket != socket || o.box.empty()) continue;
    const bool match = o.worker != npos ? workers_[o.worker].identity == identity
                                        : std::string_view(o.client_key).substr(1) == identity;
    if (match) return flush_outgoing(i, now);
  }
}

void broker_core::flush(time_point now) {
  // A failed flush may dispatch again, opening more: the list is read as it grows.
  for (std::size_t n = 0; n < open_outgoing_.size(); ++n) flush_outgoing(open_outgoing_[n], now);
  for (const std::uint32_t i : open_outgoing_) {
    outgoing& o = outgoing_[i];
    if (o.worker != npos) {
      if (workers_[o.worker].outgoing == i) workers_[o.worker].outgoing = npos;
    } else if (const auto it = clients_.find(o.client_key);
               it != clients_.end() && it->second.outgoing == i) {
      it->second.outgoing = npos;
    }
    free_outgoing_.push_back(i);
  }
  open_outgoing_.clear();
}

void broker_core::flush_backlogs() {
  for (std::size_t i = 0; i < backlogged_.size();) {
    const std::string& key = backlogged_[i];
    const auto it = clients_.find(key);
    const auto socket = static_cast<std::uint8_t>(key[0]);
    client_entry& c = it->second;
    while (!c.backlog.empty()) {
      held_answer& a = c.backlog.front();
      const delivery d = out_.send(socket, a.msg);
      if (d == delivery::full) break;
      if (d == delivery::gone)
        for (std::uint32_t n = 0; n < a.answers; ++n)
          drop(counters_.dropped_unroutable, reasons::client_gone);
      c.backlog_bytes -= a.bytes;
      c.backlog_answers -= a.answers;
      backlog_bytes_ -= a.bytes;
      backlog_messages_ -= a.answers;
      c.backlog.pop_front();
    }
    if (c.backlog.empty()) {
      backlogged_[i] = std::move(backlogged_.back());
      backlogged_.pop_back();
    } else {
      ++i;
    }
  }
}

void broker_core::refuse_request(const client_ref& c, std::uint16_t code,
                                 std::string_view message) {
  ++counters_.refused_requests[code];
  send_error(c, code, message);
}

void broker_core::send_error(const client_ref& c, std::uint16_t code, std::string_view message) {
  ++counters_.errors[code];
  out_.event({event_kind::request_error, {}, {}, c.service, code, message});
  frames none;
  send_client_reply(c, code, message, none, 0);
}

void broker_core::send_client_reply(const client_ref& c, std::uint16_t code,
                                    std::string_view message, frames& src, std::size_t first) {
  scratch_.clear();
  scratch_.push_back(str_frame(c.identity));
  if (c.mdp) {
    protocol::append_mdp_client_reply(scratch_, c.service);
    if (code != status::ok) {  // errors reach Majordomo clients as MMI-style body frames
      scratch_.push_back(str_frame(std::to_string(code)));
      scratch_.push_back(str_frame(message));
    } else if (first >= src.size()) {
      scratch_.emplace_back();  // MDP bodies have at least one frame
    }
  } else {
    protocol::append_client_reply(scratch_, c.id, code, message, c.version);
  }
  if (!c.mdp || code == status::ok)
    for (std::size_t i = first; i < src.size(); ++i) scratch_.push_back(std::move(src[i]));
  send_to_client(c.socket, c.identity, scratch_, c.batches);
}

void broker_core::send_disconnect(std::uint8_t socket, std::string_view identity, bool mdp,
                                  std::uint8_t version, std::uint16_t code,
                                  std::string_view message) {
  scratch_.clear();
  scratch_.push_back(str_frame(identity));
  if (mdp) {
    protocol::append_mdp_worker_command(scratch_, protocol::mdp_command::disconnect);
  } else {
    protocol::append_worker_disconnect(scratch_, code, message, version);
  }
  send(socket, scratch_);
}

void broker_core::send_disconnect(const worker_entry& W, std::uint16_t code,
                                  std::string_view message) {
  send_disconnect(W.socket, W.identity, W.mdp, W.version, code, message);
}

void broker_core::send_welcome(const worker_entry& W) {
  scratch_.clear();
  scratch_.push_back(str_frame(W.identity));
  const auto ms = std::chrono::duration_cast<milliseconds>(W.interval).count();
  const auto base = std::chrono::duration_cast<milliseconds>(options_.heartbeat_interval).count();
  std::vector<std::string_view> backends;
  if (W.version == protocol::version_2) family_endpoints(false, backends);
  protocol::append_worker_welcome(scratch_, static_cast<std::uint32_t>(ms), options_.liveness,
                                  heartbeat_endpoint_, broker_id_, W.version,
                                  static_cast<std::uint32_t>(base), backends);
  send(W.socket, scratch_);
}

void broker_core::family_endpoints(bool frontends, std::vector<std::string_view>& out) const {
  const std::string& own = frontends ? advertised_frontend_ : advertised_backend_;
  if (own.empty()) return;
  out.push_back(own);
  for (const auto& [link, w] : peer_by_link_) {
    const worker_entry& P = workers_[w];
    const std::string& ep = frontends ? P.frontend : P.backend;
    if (!P.stopping && P.fallback_rank == 0 && !ep.empty()) out.push_back(ep);
  }
}

bool broker_core::family_idempotent(std::uint32_t s) const {
  const service_entry& S = services_[s];
  if (S.idempotent != idempotency::worker) return S.idempotent == idempotency::yes;
  if (family_workers(S) == 0) return false;
  if (S.idempotent_workers != S.workers) return false;
  for (const auto& [link, w] : peer_by_link_) {
    if (workers_[w].fallback_rank != 0) continue;  // the family's own
    const auto it = workers_[w].member_by_service.find(s);
    if (it != workers_[w].member_by_service.end() && members_[it->second].announced_workers != 0 &&
        !members_[it->second].idempotent)
      return false;
  }
  return true;
}

// A client's HELLO (S0/2): the family's frontends, this broker's first, and the services whose
// requests may be sent twice.
void broker_core::send_client_welcome(const client_ref& c, bool flags) {
  std::vector<std::string_view> frontends;
  family_endpoints(true, frontends);
  std::vector<std::string_view> idempotent;
  for (std::uint32_t s = 0;
       s < services_.size() && idempotent.size() < protocol::max_welcome_services; ++s)
    if (services_[s].used && family_idempotent(s)) idempotent.push_back(services_[s].name);
  scratch_.clear();
  scratch_.push_back(str_frame(c.identity));
  // A HELLO with flags is told this broker's: it takes batches.
  protocol::append_client_welcome(
      scratch_, broker_id_, frontends, idempotent,
      flags ? std::optional<std::uint8_t>(protocol::hello_batches) : std::nullopt);
  send_to_client(c.socket, c.identity, scratch_);
}

// ---------------------------------------------------------------------------------------------
// Registries

const std::string& broker_core::make_key(std::uint8_t socket, std::string_view identity) {
  key_.assign(1, static_cast<char>(socket));
  key_.append(identity);
  return key_;
}

std::uint32_t broker_core::find_worker(std::uint8_t socket, const zmq::message_t& identity) {
  const auto it = worker_by_key_.find(make_key(socket, view(identity)));
  return it == worker_by_key_.end() ? npos : it->second;
}

std::uint32_t broker_core::find_or_create_service(std::string_view name, time_point now,
                                                  bool for_worker) {
  name_key_.assign(name);
  if (auto it = service_by_name_.find(name_key_); it != service_by_name_.end()) return it->second;
  // Clients may make only so many services that nobody serves (a request waits in one for a
  // worker); a worker makes room by forgetting such services that nothing waits for.
  if (!for_worker && unserved_services_ >= options_.max_unserved_services) return npos;
  if (service_by_name_.size() >= options_.max_services &&
      (!for_worker || !evict_unserved_service()))
    return npos;
  const std::uint32_t s = take_index(services_, free_services_);
  service_entry& S = services_[s];
  S = service_entry{};
  for (auto& snap : S.window) snap.at = now;
  S.history.start(now, 0, 0);
  S.used = true;
  S.name.assign(name);
  apply_policy(S);
  S.no_worker_since = now;
  ++unserved_services_;
  service_by_name_.emplace(S.name, s);
  out_.event({event_kind::service_created, {}, {}, S.name, 0, {}});
  return s;
}

std::uint32_t broker_core::alloc_slot() {
  return take_index(slots_, free_slots_);
}

void broker_core::remove_service(std::uint32_t s) {
  service_entry& S = services_[s];
  if (S.capacity_dirty) {  // its last change was not taken yet: it leaves with zeros
    removed_capacity_.push_back(S.name);
    S.capacity_dirty = false;
  }
  out_.event({event_kind::service_removed, {}, {}, S.name, 0, {}});
  service_by_name_.erase(S.name);
  if (S.workers == 0 && S.peer_members == 0) --unserved_services_;
  S.used = false;
  free_services_.push_back(s);
}

bool broker_core::evict_unserved_service() {
  std::uint32_t oldest = npos;
  for (std::uint32_t s = 0; s < services_.size(); ++s) {
    const service_entry& S = services_[s];
    if (!S.used || S.workers != 0 || S.peer_members != 0 || !S.queue.empty() || S.in_flight != 0)
      continue;
    if (oldest == npos || S.no_worker_since < services_[oldest].no_worker_since) oldest = s;
  }
  if (oldest == npos) return false;
  remove_service(oldest);
  return true;
}

void broker_core::drop(std::uint64_t& counter, std::string_view what) {
  ++counter;
  out_.event({event_kind::dropped, {}, {}, {}, 0, what});
}

bool broker_core::drained() const noexcept {
  for (const request_slot& r : slots_)
    if (r.state == slot_state::queued || r.state == slot_state::in_flight) return false;
  return backlogged_.empty() && open_outgoing_.empty();
}

namespace {
// What the policy version covers: the service tables and the broker-wide settings they override.
bool same_policy(const broker_options& a, const broker_options& b) {
  if (a.service_policies != b.service_policies || a.request_timeout != b.request_timeout ||
      a.max_queue != b.max_queue)
    return false;
  auto sorted = [](std::vector<std::string> v) {
    std::sort(v.begin(), v.end());
    v.erase(std::unique(v.begin(), v.end()), v.end());
    return v;
  };
  return sorted(a.idempotent_services) == sorted(b.idempotent_services);
}
}  // namespace

void broker_core::reconfigure(const broker_options& options, time_point now) {
  broker_options next = options;
  next.frontend = options_.frontend;
  next.backend = options_.backend;
  next.heartbeat = options_.heartbeat;
  // Tables that did not change in the file since it was last read keep what is in force (a
  // policy adopted from a peer is not undone by an unrelated reload).
  const bool tables_changed = next.service_policies != file_policies_;
  file_policies_ = next.service_policies;
  if (!tables_changed) next.service_policies = options_.service_policies;
  const bool changed = !same_policy(options_, next);
  if (changed) {
    ++policy_version_;
    policy_origin_ = broker_id_;
    policy_announce_ = tables_changed;
  }
  options_ = std::move(next);
  for (std::uint32_t s = 0; s < services_.size(); ++s) {
    if (!services_[s].used) continue;
    apply_policy(services_[s]);
    note_capacity(s);  // a changed max-concurrency changes idle credit
  }
  // A changed max-concurrency moves workers in or out of LRUs: a raised cap lets a worker take
  // more at once; a lowered one keeps what it holds but sends it no more until it is under.
  for (const worker_entry& W : workers_)
    if (W.used)
      for (std::uint32_t m : W.memberships) sync_lru(m);
  if (changed) push_worker_configs();
  flush_dispatch(now);
}

bool broker_core::adopt_policy(std::uint64_t version, std::uint64_t origin,
                               std::map<std::string, service_policy, std::less<>> tables,
                               time_point now) {
  if (std::pair(version, origin) <= std::pair(policy_version_, policy_origin_)) return false;
  policy_version_ = version;
  policy_origin_ = origin;
  options_.service_policies = std::move(tables);
  for (std::uint32_t s = 0; s < services_.size(); ++s) {
    if (!services_[s].used) continue;
    apply_policy(services_[s]);
    note_capacity(s);
  }
  for (const worker_entry& W : workers_)
    if (W.used)
      for (std::uint32_t m : W.memberships) sync_lru(m);
  push_worker_configs();
  flush_dispatch(now);
  return true;
}

void broker_core::push_worker_configs() {
  for (const worker_entry& W : workers_)
    if (W.used && W.wants_config) send_worker_config(W, status::ok);
}

void broker_core::send_worker_config(const worker_entry& W, std::uint16_t code) {
  std::vector<protocol::service_config> entries;
  entries.reserve(W.memberships.size());
  for (std::uint32_t m : W.memberships) {
    const service_entry& S = services_[members_[m].service];
    protocol::service_config c;
    c.service = S.name;
    c.request_timeout_ms = static_cast<std::uint32_t>(std::clamp<std::int64_t>(
        std::chrono::duration_cast<milliseconds>(S.request_timeout).count(), 0, UINT32_MAX));
    c.max_queue = static_cast<std::uint32_t>(std::min<std::size_t>(S.max_queue, UINT32_MAX));
    c.max_concurrency = S.max_concurrency;
    c.idempotent = S.idempotent == idempotency::yes     ? 1
                   : S.idempotent == idempotency::never ? 2
                                                        : 0;
    entries.push_back(c);
  }
  scratch_.clear();
  scratch_.push_back(str_frame(W.identity));
  protocol::append_worker_config(scratch_, code, policy_version_, entries);
  send(W.socket, scratch_);
}

void broker_core::apply_policy(service_entry& S) const {
  const auto it = options_.service_policies.find(S.name);
  const service_policy none;
  const service_policy& p = it != options_.service_policies.end() ? it->second : none;
  S.configured = it != options_.service_policies.end();
  S.request_timeout = p.request_timeout.value_or(options_.request_timeout);
  S.max_queue = p.max_queue.value_or(options_.max_queue);
  S.max_concurrency = p.max_concurrency.value_or(0);
  const bool listed =
      std::find(options_.idempotent_services.begin(), options_.idempotent_services.end(), S.name) !=
      options_.idempotent_services.end();
  if (p.idempotent.has_value()) {
    S.idempotent = *p.idempotent ? idempotency::yes : idempotency::never;
  } else {
    S.idempotent = listed ? idempotency::yes : idempotency::worker;
  }
}

broker_core::client_ref broker_core::client_of(const request_slot& r) const {
  return {r.client_socket,           r.client,         r.mdp_client,    r.client_id,
          services_[r.service].name, r.client_version, r.client_batches};
}

void broker_core::count_error(std::uint32_t service, std::uint16_t code) {
  if (service != npos) ++services_[service].errors[code];
}

std::size_t broker_core::queued(std::string_view service) const {
  const auto it = service_by_name_.find(std::string(service));
  return it == service_by_name_.end() ? 0 : services_[it->second].queue.size;
}

void broker_core::track_capacity(bool on) {
  track_capacity_ = on;
  if (!on) return;
  for (std::uint32_t s = 0; s < services_.size(); ++s)
    if (services_[s].used) note_capacity(s);
}

void broker_core::mark_capacity(std::uint32_t s) {
  services_[s].capacity_dirty = true;
  dirty_capacity_.push_back(s);
}

std::uint32_t broker_core::idle_of(const service_entry& S) const noexcept {
  std::size_t n = 0;
  for (std::uint32_t m = S.lru.head; m != npos; m = members_[m].link.next) n += free_slots_of(m);
  return static_cast<std::uint32_t>(std::min<std::size_t>(n, UINT32_MAX));
}

void broker_core::take_capacity_changes(std::vector<service_capacity>& out) {
  out.clear();
  taken_removed_.swap(removed_capacity_);
  removed_capacity_.clear();
  for (const std::string& name : taken_removed_) out.push_back({name, 0, 0, 0});
  for (const std::uint32_t s : dirty_capacity_) {
    service_entry& S = services_[s];
    if (!S.used || !S.capacity_dirty) continue;  // forgotten (reported above), or a repeat
    S.capacity_dirty = false;
    // Said only of a service with workers here (a service gone is all zeros).
    const bool idempotent =
        S.workers != 0 &&
        (S.idempotent == idempotency::yes ||
         (S.idempotent == idempotency::worker && S.idempotent_workers == S.workers));
    out.push_back({S.name, S.workers, idle_of(S), S.queue.size, idempotent});
  }
  dirty_capacity_.clear();
}

std::size_t broker_core::idle_slots(std::string_view service) const {
  const auto it = service_by_name_.find(std::string(service));
  if (it == service_by_name_.end()) return 0;
  std::size_t n = 0;
  for (std::uint32_t m = services_[it->second].lru.head; m != npos; m = members_[m].link.next)
    n += free_slots_of(m);
  return n;
}

}  // namespace scale0::broker_detail
