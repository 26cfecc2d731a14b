// SPDX-License-Identifier: Apache-2.0
#include "family_core.hpp"

#include <algorithm>
#include <memory>
#include <nlohmann/json.hpp>
#include <ostream>

#include "common/text.hpp"
#include "metrics/exposition.hpp"
#include "scale0/error.hpp"

namespace scale0::broker_detail {
namespace {

namespace pp = protocol::peer;
using std::chrono::milliseconds;

constexpr std::size_t index(pp::command c) noexcept {
  return static_cast<std::size_t>(c);
}

family_drop drop_of(pp::problem p) noexcept {
  switch (p) {
    case pp::problem::invalid_endpoint:
      return family_drop::invalid_endpoint;
    case pp::problem::invalid_name:
      return family_drop::invalid_name;
    default:
      return family_drop::malformed;
  }
}

constexpr std::array<const char*, static_cast<std::size_t>(family_drop::count_)> drop_names = {
    "malformed", "invalid_endpoint", "invalid_name", "unknown_sender", "other_family", "self",
    "conflict",  "not_alive",        "stale_state",  "peers_full",     "services_full"};
constexpr std::array<const char*, 6> command_names = {"",      "hello", "peers",
                                                      "state", "bye",   "config"};

const char* state_name(peer_state s) noexcept {
  switch (s) {
    case peer_state::connecting:
      return "connecting";
    case peer_state::alive:
      return "alive";
    case peer_state::lost:
      return "lost";
    case peer_state::self:
      return "self";
  }
  return "?";
}

double millis(clock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

std::uint32_t whole_millis(clock::duration d) {
  const auto ms = std::chrono::duration_cast<milliseconds>(d).count();
  return static_cast<std::uint32_t>(std::clamp<std::int64_t>(ms, 10, 3600000));
}

}  // namespace

family_core::family_core(family_settings settings, family_io& io, time_point now)
    : s_(std::move(settings)),
      io_(io),
      next_scan_(now),
      next_round_(now),
      next_full_(now + s_.full_state_interval),
      started_(now) {}

// ---------------------------------------------------------------------------------------------
// The peer table and links

std::string family_core::routing_id(std::uint32_t link) const {
  // 'L' (a routing id may not start with a zero byte) · broker-id u64 · link u32: unique per
  // link and per reopening, and how a HELLO of our own is traced back to the link that carried it.
  std::string id(13, '\0');
  id[0] = 'L';
  for (int i = 0; i < 8; ++i) id[1 + i] = static_cast<char>(s_.broker_id >> (56 - 8 * i));
  for (int i = 0; i < 4; ++i) id[9 + i] = static_cast<char>(link >> (24 - 8 * i));
  return id;
}

family_core::peer* family_core::peer_of_link(std::string_view routing_id) {
  if (routing_id.size() != 13 || routing_id[0] != 'L') return nullptr;
  std::uint32_t link = 0;
  for (int i = 0; i < 4; ++i)
    link = (link << 8) | static_cast<unsigned char>(routing_id[static_cast<std::size_t>(9 + i)]);
  if (routing_id != this->routing_id(link)) return nullptr;
  const auto it = links_.find(link);
  return it == links_.end() ? nullptr : it->second;
}

family_core::peer* family_core::add_peer(std::string_view endpoint, via how, time_point now) {
  if (endpoint == s_.peer_endpoint) return nullptr;  // ourselves
  if (const auto it = peers_.find(endpoint); it != peers_.end()) return &it->second;
  if (peers_.size() >= s_.max_peers) {
    drop(family_drop::peers_full, "a new peer over the peer budget (max peers)");
    return nullptr;
  }
  peer& p = peers_[std::string(endpoint)];
  p.endpoint.assign(endpoint);
  p.learned = how;
  p.configured = how == via::configured;
  p.state = peer_state::connecting;
  p.since = now;
  open_link(p, now);
  return &p;
}

void family_core::forget(std::map<std::string, peer, std::less<>>::iterator it) {
  peer& p = it->second;
  close_link(p);
  drop_connection(p);
  ++counters_.forgotten;
  io_.event({event_kind::peer_down,
             broker_id_hex(p.broker_id),
             p.endpoint,
             {},
             0,
             "forgotten: not alive for the forget period"});
  peers_.erase(it);
}

void family_core::open_link(peer& p, time_point now) {
  p.link = {};
  p.link.id = ++link_serial_;
  p.link.next_hello = now;
  links_[p.link.id] = &p;
  io_.open_link(p.link.id, p.endpoint, routing_id(p.link.id));
}

void family_core::close_link(peer& p) {
  if (p.link.id == 0) return;
  io_.close_link(p.link.id);
  links_.erase(p.link.id);
  p.link = {};
}

void family_core::set_connection(peer& p, std::string_view connection) {
  if (p.connection == connection) return;
  drop_connection(p);
  // The same connection said another endpoint before: it is this one's now.
  if (const auto it = connections_.find(connection); it != connections_.end()) {
    it->second->connection.clear();
    connections_.erase(it);
  }
  p.connection.assign(connection);
  connections_.emplace(p.connection, &p);
}

void family_core::drop_connection(peer& p) {
  if (p.connection.empty()) return;
  connections_.erase(p.connection);
  p.connection.clear();
}

void family_core::set_configured(const std::vector<configured_peer>& peers, time_point now) {
  configured_ = peers;
  for (auto& [endpoint, p] : peers_) p.configured = false;
  for (const configured_peer& c : peers)
    for (const std::string& e : c.endpoints)
      if (peer* p = add_peer(e, via::configured, now)) p->configured = true;
}

const peer_state* family_core::state_of(std::string_view endpoint) const {
  const auto it = peers_.find(endpoint);
  return it == peers_.end() ? nullptr : &it->second.state;
}

std::size_t family_core::alive_count() const noexcept {
  return static_cast<std::size_t>(std::count_if(peers_.begin(), peers_.end(), [](const auto& kv) {
    return kv.second.state == peer_state::alive;
  }));
}

peer_capacity family_core::capacity_of(std::string_view endpoint, std::string_view service) const {
  const auto it = peers_.find(endpoint);
  if (it == peers_.end()) return {};
  const auto s = it->second.services.find(service);
  return s == it->second.services.end() ? peer_capacity{} : s->second;
}

bool family_core::alive_connection(std::string_view routing_id) const {
  const auto it = connections_.find(routing_id);
  return it != connections_.end() && it->second->state == peer_state::alive &&
         forwards_here(*it->second);
}

peer_info family_core::info(const peer& p) const noexcept {
  return {p.endpoint, p.broker_id, p.family, p.frontend,      p.backend,
          p.draining, p.link.id,   p.member, p.fallback_rank, p.dependent};
}

// ---------------------------------------------------------------------------------------------
// Inbound

void family_core::drop(family_drop why, std::string_view detail) {
  ++counters_.dropped[static_cast<std::size_t>(why)];
  const std::string text = "peer message: " + std::string(detail);
  io_.event({event_kind::dropped, {}, {}, {}, 0, text});
}

void family_core::on_message(const frames& msg, time_point now) {
  const pp::message m = pp::decode(msg);
  if (m.what == pp::kind::malformed) return drop(drop_of(m.why), m.detail);
  const std::string_view connection = protocol::view(msg[0]);
  switch (m.what) {
    case pp::kind::hello:
      ++counters_.in[index(pp::command::hello)];
      on_hello(connection, m.h, now);
      break;
    case pp::kind::peers:
    case pp::kind::state:
    case pp::kind::bye: {
      const auto c = m.what == pp::kind::peers   ? pp::command::peers
                     : m.what == pp::kind::state ? pp::command::state
                                                 : pp::command::bye;
      ++counters_.in[index(c)];
      const auto it = connections_.find(connection);
      if (it == connections_.end())
        return drop(family_drop::unknown_sender, "PEERS, STATE or BYE before a HELLO");
      peer& p = *it->second;
      if (p.state != peer_state::alive)
        return drop(family_drop::not_alive, "from a peer judged lost (until its next HELLO)");
      p.last_heard = now;
      if (m.what == pp::kind::peers) {
        on_peers(m, now);
      } else if (m.what == pp::kind::state) {
        on_state(p, m);
      } else {
        ++counters_.peers_left;
        drop_connection(p);
        mark_down(
            p, now,
            "left the family (BYE " + std::to_string(m.status) + " " + escape_text(m.text) + ")",
            false);
      }
      break;
    }
    case pp::kind::config: {
      ++counters_.in[index(pp::command::config)];
      const auto it = connections_.find(connection);
      if (it == connections_.end())
        return drop(family_drop::unknown_sender, "CONFIG before a HELLO");
      if (it->second->state != peer_state::alive)
        return drop(family_drop::not_alive, "from a peer judged lost (until its next HELLO)");
      it->second->last_heard = now;
      if (!it->second->member)
        return drop(family_drop::other_family, "CONFIG from a broker of another family");
      on_config(m, now);
      break;
    }
    case pp::kind::malformed:
      break;
  }
  gossip(now);
}

void family_core::on_hello(std::string_view connection, const pp::hello& h, time_point now) {
  if (h.broker_id == s_.broker_id) {
    // One of our own links reached us: its endpoint is this broker. Never link to it again.
    if (peer* p = peer_of_link(connection); p != nullptr && p->state != peer_state::self) {
      close_link(*p);
      drop_connection(*p);
      p->state = peer_state::self;
      p->since = now;
      io_.event({event_kind::peer_down,
                 {},
                 p->endpoint,
                 {},
                 0,
                 "this endpoint is this broker itself: not linked"});
    }
    return drop(family_drop::self, "a HELLO of this broker's own, through a link to itself");
  }
  // How it relates to this broker: a member, a fallback, a dependent (or both of the last two).
  const bool member = h.family == s_.family;
  std::uint8_t rank = 0;
  for (std::size_t i = 0; i < s_.fallback_families.size() && !member && rank == 0; ++i)
    if (s_.fallback_families[i] == h.family) rank = static_cast<std::uint8_t>(i + 1);
  bool dependent = false;
  if (!member)
    pp::for_each_fallback(h, [&](std::string_view f) { dependent = dependent || f == s_.family; });
  if (!member && rank == 0 && !dependent) {
    // A peer that came back (restarted) in a family this one has nothing to do with is gone.
    if (const auto it = peers_.find(h.peer_endpoint);
        it != peers_.end() && it->second.state == peer_state::alive)
      mark_down(it->second, now, "now of an unrelated family (" + escape_text(h.family) + ")",
                false);
    return drop(family_drop::other_family, "a HELLO of an unrelated family (" +
                                               escape_text(h.family) + " from " +
                                               std::string(h.peer_endpoint) + ")");
  }
  if (h.peer_endpoint == s_.peer_endpoint)
    return drop(family_drop::conflict, "a HELLO from another broker with this broker's endpoint");
  peer* p = add_peer(h.peer_endpoint, via::hello, now);
  if (p == nullptr) return;  // over the peer budget (counted)
  if (p->state == peer_state::self)
    return drop(family_drop::conflict, "a HELLO from another broker at an endpoint of this one");
  set_connection(*p, connection);
  const bool restarted = p->heard && p->broker_id != h.broker_id;
  if (restarted) {
    ++counters_.restarts;
    ++p->restarts;
    if (p->state == peer_state::alive) mark_down(*p, now, "restarted (a new broker id)", false);
    // The new incarnation has none of what this broker told the old one.
    p->link.hello_sent = false;
    p->link.peers_due = p->link.full_due = true;
    round_wanted_ = true;
  }
  if (!restarted && p->state == peer_state::alive &&
      (p->member != member || p->fallback_rank != rank || p->dependent != dependent)) {
    // Its family or fallback families changed (a new incarnation at the same endpoint and id
    // cannot, but a relation is never trusted across a change): down, then up as what it is now.
    mark_down(*p, now, "its family or fallback families changed", false);
    p->link.peers_due = p->link.full_due = true;
    round_wanted_ = true;
  }
  p->member = member;
  p->fallback_rank = rank;
  p->dependent = dependent;
  const bool changed = p->draining != ((h.flags & pp::hello_draining) != 0) ||
                       p->frontend != h.frontend || p->backend != h.backend;
  p->heard = true;
  p->broker_id = h.broker_id;
  p->heartbeat_ms = h.heartbeat_ms;
  p->liveness = h.liveness;
  p->draining = (h.flags & pp::hello_draining) != 0;
  p->family.assign(h.family);
  p->frontend.assign(h.frontend);
  p->backend.assign(h.backend);
  p->last_heard = now;
  if (p->state != peer_state::alive) {
    p->state = peer_state::alive;
    p->since = now;
    p->down_reason.clear();
    p->last_sequence = 0;
    p->services.clear();
    alive_changed_ = true;
    ++counters_.peers_up;
    if (p->link.id == 0) open_link(*p, now);
    if (listener_ != nullptr) listener_->peer_up(info(*p));
    io_.event({event_kind::peer_up,
               broker_id_hex(p->broker_id),
               p->endpoint,
               {},
               0,
               restarted ? "restarted" : "alive"});
    // What waited for its relation to be known (PEERS, CONFIG, a full STATE) goes now.
    if (p->link.full_due) round_wanted_ = true;
    service_link(*p, now);
  } else if (changed && listener_ != nullptr) {
    listener_->peer_updated(info(*p));
  }
}

void family_core::on_peers(const pp::message& m, time_point now) {
  pp::for_each_peer(m, [&](std::string_view endpoint) {
    if (endpoint == s_.peer_endpoint || peers_.contains(endpoint)) return;
    add_peer(endpoint, via::gossip, now);
  });
}

void family_core::on_state(peer& p, const pp::message& m) {
  const bool replace = (m.flags & pp::state_replace) != 0;
  if (!replace && p.last_sequence != 0 && m.sequence != p.last_sequence + 1) {
    if (m.sequence <= p.last_sequence)
      return drop(family_drop::stale_state, "a STATE older than the last one");
    ++counters_.state_gaps;  // a STATE went missing: the view is right again at the next full one
  }
  p.last_sequence = m.sequence;
  std::map<std::string, peer_capacity, std::less<>> before;
  if (replace) before.swap(p.services);  // forget what it said before (notified below)
  pp::for_each_entry(m, [&](const pp::capacity& c) {
    const peer_capacity value{c.workers, c.idle, c.queued, (c.flags & pp::entry_idempotent) != 0};
    peer_capacity was{};
    const auto& old = replace ? before : p.services;
    if (const auto it = old.find(c.service); it != old.end()) was = it->second;
    if (replace && value.zero()) return;  // a full state lists what exists
    set_capacity(p, c.service, value, was);
  });
  if (!replace) return;
  for (const auto& [service, was] : before)
    if (!p.services.contains(service) && listener_ != nullptr)
      listener_->peer_capacity(info(p), service, peer_capacity{});
}

void family_core::set_capacity(peer& p, std::string_view service, const peer_capacity& value,
                               const peer_capacity& before) {
  if (value.zero()) {
    if (const auto it = p.services.find(service); it != p.services.end()) p.services.erase(it);
  } else if (const auto it = p.services.find(service); it != p.services.end()) {
    it->second = value;
  } else {
    if (p.services.size() >= s_.max_services)
      return drop(family_drop::services_full, "a peer's service over the budget (max services)");
    p.services.emplace(std::string(service), value);
  }
  if (value != before && listener_ != nullptr) listener_->peer_capacity(info(p), service, value);
}

void family_core::mark_down(peer& p, time_point now, std::string why, bool relink) {
  const bool was_alive = p.state == peer_state::alive;
  p.state = peer_state::lost;
  p.since = now;
  p.down_reason = std::move(why);
  p.services.clear();
  p.last_sequence = 0;
  if (was_alive) {
    alive_changed_ = true;
    if (listener_ != nullptr) listener_->peer_down(info(p), p.down_reason);
    io_.event(
        {event_kind::peer_down, broker_id_hex(p.broker_id), p.endpoint, {}, 0, p.down_reason});
  }
  if (relink) {
    // TCP may still look up (a partition drops packets without a FIN or RST): a new connection,
    // not the old one's queue, is what reaches the peer when it is back.
    drop_connection(p);
    close_link(p);
    open_link(p, now);
  }
}

void family_core::on_link_connected(std::uint32_t link, time_point now) {
  const auto it = links_.find(link);
  if (it == links_.end()) return;
  peer& p = *it->second;
  p.link.connected = true;
  p.link.hello_sent = false;
  p.link.peers_due = true;
  p.link.full_due = true;
  p.link.config_due = true;
  p.link.sequence = 0;
  p.link.next_hello = now;
  round_wanted_ = true;
  service_link(p, now);
  if (round_due(now)) round(now);
}

void family_core::on_link_disconnected(std::uint32_t link, time_point) {
  const auto it = links_.find(link);
  if (it != links_.end()) it->second->link.connected = false;
}

// ---------------------------------------------------------------------------------------------
// Outbound

bool family_core::send(peer& p, pp::command c, frames& msg) {
  if (!io_.send(p.link.id, msg)) {
    ++counters_.unsent;
    return false;
  }
  ++counters_.out[index(c)];
  return true;
}

bool family_core::send_hello(peer& p) {
  frames msg;
  pp::hello h;
  h.broker_id = s_.broker_id;
  h.heartbeat_ms = whole_millis(s_.heartbeat_interval);
  h.liveness = s_.liveness;
  h.flags = draining_ ? pp::hello_draining : 0;
  h.family = s_.family;
  h.peer_endpoint = s_.peer_endpoint;
  h.frontend = s_.frontend;
  h.backend = s_.backend;
  h.fallbacks = s_.fallback_families;
  pp::append_hello(msg, h);
  return send(p, pp::command::hello, msg);
}

// To a member: the alive members and fallback brokers (every member learns the fallbacks from
// one); to a broker of another family: the alive members (it learns the whole family from one).
bool family_core::send_peers(peer& p) {
  endpoints_.clear();
  for (const auto& [endpoint, q] : peers_)
    if (q.state == peer_state::alive && (q.member || (p.member && q.fallback_rank != 0)))
      endpoints_.push_back(endpoint);
  frames msg;
  pp::append_peers(msg, endpoints_);
  return send(p, pp::command::peers, msg);
}

// A full state (everything, the first message with `replace`) or the delta, in messages of at
// most 1000 entries. A delta that could not be sent leaves the peer's view wrong: it gets a full
// state next round.
bool family_core::send_state(peer& p, bool full) {
  const auto& table = full ? local_ : delta_;
  entries_.clear();
  for (const auto& [service, c] : table)
    entries_.push_back({service, c.workers, c.idle, c.queued,
                        c.idempotent ? pp::entry_idempotent : std::uint8_t{0}});
  std::size_t at = 0;
  do {
    const std::size_t n = std::min(entries_.size() - at, pp::max_state_entries);
    frames msg;
    pp::append_state(msg, p.link.sequence + 1, full && at == 0 ? pp::state_replace : 0,
                     std::span(entries_).subspan(at, n));
    if (!send(p, pp::command::state, msg)) {
      p.link.full_due = true;
      round_wanted_ = true;
      return false;
    }
    ++p.link.sequence;
    at += n;
  } while (at < entries_.size());
  return true;
}

void family_core::service_link(peer& p, time_point now) {
  if (!p.link.connected) return;
  if (!p.link.hello_sent || now >= p.link.next_hello) {
    if (!send_hello(p)) return;  // nothing else may go before it on this connection
    p.link.hello_sent = true;
    p.link.next_hello = now + s_.heartbeat_interval;
  }
  // PEERS and CONFIG wait for its HELLO: what it is sent depends on how it relates to this broker.
  if (!p.heard) return;
  if (p.link.peers_due && send_peers(p)) p.link.peers_due = false;
  if (p.link.config_due && (policy_version_ < 2 || (p.member && send_config(p))))
    p.link.config_due = false;  // a non-member keeps it due: it may come back as a member
}

void family_core::set_policy(std::uint64_t version, std::uint64_t origin,
                             std::span<const pp::policy_entry> tables, time_point now) {
  policy_version_ = version;
  policy_origin_ = origin;
  policy_.clear();
  policy_.reserve(tables.size());
  for (const auto& e : tables) policy_.push_back({std::string(e.service), e});
  for (auto& t : policy_) t.entry.service = t.service;  // after the last move of the strings
  for (auto& [endpoint, p] : peers_) {
    if (p.link.id == 0) continue;
    p.link.config_due = true;
    service_link(p, now);
  }
}

void family_core::on_config(const pp::message& m, time_point now) {
  if (std::pair(m.sequence, m.origin) <= std::pair(policy_version_, policy_origin_)) return;
  std::vector<pp::policy_entry> tables;
  pp::for_each_policy(m, [&](const pp::policy_entry& e) { tables.push_back(e); });
  // Passed on to every link too (a broker that missed the origin's CONFIG gets it from us).
  set_policy(m.sequence, m.origin, tables, now);
  if (listener_ != nullptr) listener_->peer_config(m.sequence, m.origin, tables);
}

bool family_core::send_config(peer& p) {
  std::vector<pp::policy_entry> tables;
  tables.reserve(policy_.size());
  for (const auto& t : policy_) tables.push_back(t.entry);
  frames msg;
  pp::append_config(msg, policy_version_, policy_origin_, tables);
  return send(p, pp::command::config, msg);
}

void family_core::gossip(time_point now) {
  if (!alive_changed_) return;
  alive_changed_ = false;
  for (auto& [endpoint, p] : peers_) {
    if (p.link.id == 0) continue;
    p.link.peers_due = true;
    service_link(p, now);
  }
}

void family_core::round(time_point now) {
  round_wanted_ = false;
  if (now >= next_full_) {
    for (auto& [endpoint, p] : peers_) p.link.full_due = true;
    next_full_ = now + s_.full_state_interval;
  }
  bool sent = false;
  for (auto& [endpoint, p] : peers_) {
    if (!p.link.connected || !p.link.hello_sent) continue;  // a full state when it is ready
    // Capacity goes to peers that may forward here, once their HELLO said what they are.
    if (!p.heard || !forwards_here(p)) continue;
    if (p.link.full_due) {
      if (send_state(p, true)) p.link.full_due = false;
      sent = true;
    } else if (!delta_.empty()) {
      send_state(p, false);
      sent = true;
    }
  }
  delta_.clear();
  (void)sent;
  next_round_ = now + s_.state_interval;
}

void family_core::set_local_capacity(std::span<const service_capacity> changed, time_point) {
  for (const service_capacity& c : changed) {
    const peer_capacity value{c.workers, c.idle, c.queued, c.idempotent};
    const auto it = local_.find(c.service);
    const peer_capacity was = it == local_.end() ? peer_capacity{} : it->second;
    if (value == was) continue;
    if (value.zero()) {
      if (it != local_.end()) local_.erase(it);
    } else if (it != local_.end()) {
      it->second = value;
    } else {
      local_.emplace(std::string(c.service), value);
    }
    if (const auto d = delta_.find(c.service); d != delta_.end()) {
      d->second = value;
    } else {
      delta_.emplace(std::string(c.service), value);
    }
    round_wanted_ = true;
  }
}

// ---------------------------------------------------------------------------------------------
// Time

void family_core::on_tick(time_point now) {
  if (now >= next_scan_) {
    next_scan_ = now + std::max<clock::duration>(s_.heartbeat_interval / 4, milliseconds(5));
    for (auto it = peers_.begin(); it != peers_.end();) {
      peer& p = it->second;
      if (p.state == peer_state::alive &&
          now - p.last_heard > milliseconds(std::uint64_t{p.heartbeat_ms} * p.liveness)) {
        ++counters_.peers_lost;
        mark_down(p, now, "silent for its liveness", true);
      }
      if (!p.configured && (p.state == peer_state::connecting || p.state == peer_state::lost) &&
          now - p.since >= s_.forget_after) {
        forget(it++);
        continue;
      }
      service_link(p, now);
      ++it;
    }
    gossip(now);
  }
  if (now >= next_full_) round_wanted_ = true;
  if (round_wanted_ && round_due(now)) round(now);
}

time_point family_core::next_wakeup(time_point now, bool local_pending) const noexcept {
  time_point next = std::min(next_scan_, next_full_);
  if (round_wanted_ || local_pending) next = std::min(next, std::max(next_round_, now));
  return next;
}

void family_core::begin_drain(time_point now) {
  draining_ = true;
  for (auto& [endpoint, p] : peers_) {
    p.link.next_hello = now;
    service_link(p, now);
  }
}

void family_core::shutdown(time_point) {
  for (auto& [endpoint, p] : peers_) {
    if (p.link.connected && p.link.hello_sent) {
      frames msg;
      pp::append_bye(msg, status::unavailable, "broker shutting down");
      send(p, pp::command::bye, msg);
    }
    close_link(p);
  }
}

// ---------------------------------------------------------------------------------------------
// Status and metrics

void family_core::add_status(nlohmann::json& status, time_point now) const {
  write_status(status_view{s_, peers_, configured_, counters_, local_.size(), draining_, now},
               status);
}

std::function<void(nlohmann::json&)> family_core::status_writer(time_point now) const {
  auto view = std::make_shared<const status_view>(
      status_view{s_, peers_, configured_, counters_, local_.size(), draining_, now});
  return [view](nlohmann::json& status) { write_status(*view, status); };
}

// Over copies only (status_writer runs it on another thread).
void family_core::write_status(const status_view& v, nlohmann::json& status) {
  const auto now = v.now;
  nlohmann::json peers = nlohmann::json::array();
  for (const auto& [endpoint, p] : v.peers) {
    nlohmann::json services = nlohmann::json::array();
    for (const auto& [name, c] : p.services)
      services.push_back({{"name", name},
                          {"workers", c.workers},
                          {"idle", c.idle},
                          {"queued", c.queued},
                          {"idempotent", c.idempotent}});
    const char* learned = p.learned == via::configured ? "configured"
                          : p.learned == via::hello    ? "hello"
                                                       : "gossip";
    peers.push_back(
        {{"endpoint", endpoint},
         {"state", state_name(p.state)},
         {"state_ms", millis(now - p.since)},
         {"reason", p.down_reason},
         {"configured", p.configured},
         {"learned", learned},
         {"link", p.link.id == 0     ? "none"
                  : p.link.connected ? "connected"
                                     : "connecting"},
         {"broker_id", p.heard ? nlohmann::json(broker_id_hex(p.broker_id)) : nlohmann::json()},
         {"family", p.family},
         {"frontend", p.frontend},
         {"backend", p.backend},
         {"draining", p.draining},
         {"relation", !p.heard                         ? ""
                      : p.member                       ? "member"
                      : p.fallback_rank && p.dependent ? "fallback+dependent"
                      : p.fallback_rank                ? "fallback"
                                                       : "dependent"},
         {"fallback_rank", p.fallback_rank},
         {"heartbeat_ms", p.heartbeat_ms},
         {"liveness", p.liveness},
         {"last_heard_ms", p.heard ? nlohmann::json(millis(now - p.last_heard)) : nlohmann::json()},
         {"restarts", p.restarts},
         {"services", services}});
  }
  nlohmann::json dropped = nlohmann::json::object();
  for (std::size_t i = 0; i < drop_names.size(); ++i) dropped[drop_names[i]] = v.count.dropped[i];
  nlohmann::json in = nlohmann::json::object(), out = nlohmann::json::object();
  for (std::size_t i = 1; i < command_names.size(); ++i) {
    in[command_names[i]] = v.count.in[i];
    out[command_names[i]] = v.count.out[i];
  }
  nlohmann::json configured = nlohmann::json::array();
  for (const configured_peer& c : v.configured)
    configured.push_back({{"peer", c.spec}, {"endpoints", c.endpoints}, {"error", c.error}});
  status["family"] = {{"name", v.settings.family},
                      {"fallback_families", v.settings.fallback_families},
                      {"peer_endpoint", v.settings.peer_endpoint},
                      {"frontend", v.settings.frontend},
                      {"backend", v.settings.backend},
                      {"draining", v.draining},
                      {"configured", configured},
                      {"peers", peers},
                      {"local_services", v.local_services},
                      {"counters",
                       {{"messages_in", in},
                        {"messages_out", out},
                        {"unsent", v.count.unsent},
                        {"dropped", dropped},
                        {"peers_up", v.count.peers_up},
                        {"peers_lost", v.count.peers_lost},
                        {"peers_left", v.count.peers_left},
                        {"restarts", v.count.restarts},
                        {"forgotten", v.count.forgotten},
                        {"state_gaps", v.count.state_gaps}}}};
}

void family_core::add_budgets(std::vector<budget_line>& budgets) const {
  std::uint64_t most_services = 0;
  std::uint64_t longest_endpoint = s_.peer_endpoint.size();
  for (const auto& [endpoint, p] : peers_) {
    most_services = std::max<std::uint64_t>(most_services, p.services.size());
    longest_endpoint = std::max<std::uint64_t>(
        longest_endpoint, std::max({endpoint.size(), p.frontend.size(), p.backend.size()}));
  }
  budgets.push_back({"peers", peers_.size(), s_.max_peers});
  budgets.push_back({"services_per_peer", most_services, s_.max_services});
  budgets.push_back({"peer_endpoint_bytes", longest_endpoint, pp::max_endpoint});
}

void family_core::add_metrics(metrics::exposition& e, time_point) const {
  e.gauge("scale0_family_peers", "Peers of the family by state (connecting, alive, lost, self).");
  for (auto s : {peer_state::connecting, peer_state::alive, peer_state::lost, peer_state::self}) {
    const auto n = std::count_if(peers_.begin(), peers_.end(),
                                 [s](const auto& kv) { return kv.second.state == s; });
    e.add(static_cast<double>(n), {{"state", state_name(s)}});
  }
  e.counter("scale0_family_messages_total",
            "S0P1 messages received (in) and sent (out) by command.");
  for (std::size_t i = 1; i < command_names.size(); ++i) {
    e.add(static_cast<double>(counters_.in[i]),
          {{"direction", "in"}, {"command", command_names[i]}});
    e.add(static_cast<double>(counters_.out[i]),
          {{"direction", "out"}, {"command", command_names[i]}});
  }
  e.counter("scale0_family_dropped_total",
            "Peer messages dropped and budgets hit, by reason (malformed, invalid_endpoint, "
            "invalid_name, unknown_sender, other_family, self, conflict, not_alive, stale_state, "
            "peers_full, services_full).");
  for (std::size_t i = 0; i < drop_names.size(); ++i)
    e.add(static_cast<double>(counters_.dropped[i]), {{"reason", drop_names[i]}});
  e.counter("scale0_family_unsent_total",
            "Peer messages a link refused (no connection, or its queue full).")
      .add(static_cast<double>(counters_.unsent));
  e.counter("scale0_family_peer_events_total",
            "Peers that came up, were lost (silent), left (BYE), restarted, or were forgotten.");
  const std::pair<const char*, std::uint64_t> events[] = {{"up", counters_.peers_up},
                                                          {"lost", counters_.peers_lost},
                                                          {"left", counters_.peers_left},
                                                          {"restarted", counters_.restarts},
                                                          {"forgotten", counters_.forgotten}};
  for (const auto& [name, n] : events) e.add(static_cast<double>(n), {{"event", name}});
  e.counter("scale0_family_state_gaps_total",
            "STATE messages that skipped a sequence number (one was lost on the way).")
      .add(static_cast<double>(counters_.state_gaps));
}

}  // namespace scale0::broker_detail
