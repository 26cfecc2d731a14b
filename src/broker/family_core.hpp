// SPDX-License-Identifier: Apache-2.0
// The family core (docs/family.md): the brokers of a family in a full mesh that grows by gossip
// and heals by itself, each telling the others, per service, how many workers it has, their idle
// credit and its queue length. Like the broker core it does no I/O and reads no clock: the event
// loop hands it what the peer ROUTER read, link events and the time, and it sends through a
// `family_io`. Tests drive it with a fake io on a fake clock.
//
// Peers are known by their peer endpoint (the address of their peer ROUTER, as they advertise it in
// HELLO). For each known endpoint this broker keeps one outgoing link (a DEALER) that carries its
// own messages; it hears each peer on the link that peer opened to it. Nothing is sent back on a
// link: the mesh is two one-way links per pair.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "broker_core.hpp"
#include "peer_resolver.hpp"
#include "protocol/peer_codec.hpp"

namespace scale0::broker_detail {

// A peer as the listener sees it. Views are valid only during the call.
struct peer_info {
  std::string_view endpoint;  // its peer endpoint: the key of the peer table
  std::uint64_t broker_id = 0;
  std::string_view family;
  std::string_view frontend;  // "" when it advertises none
  std::string_view backend;
  bool draining = false;
  std::uint32_t link = 0;  // its link's id: what the broker core forwards on
  // How it relates to this broker (docs/family.md, "Fallback families"): a member of its family;
  // a broker of its fallback family number `fallback_rank` (1 = the first; 0: not a fallback);
  // a dependent (this broker's family is one of its fallback families: it may forward here).
  bool member = false;
  std::uint8_t fallback_rank = 0;
  bool dependent = false;
};

// One service of a peer. All zero: the peer has no such service (any more).
struct peer_capacity {
  std::uint32_t workers = 0;
  std::uint32_t idle = 0;  // idle credit: requests its workers would take at once
  std::uint32_t queued = 0;
  bool idempotent = false;  // a request lost there may be sent again
  bool zero() const noexcept { return workers == 0 && idle == 0 && queued == 0; }
  bool operator==(const peer_capacity&) const = default;
};

// Whoever uses the peers' capacity. The forwarding step makes each alive peer a virtual worker of
// the broker core whose per-service credit is the peer's idle credit: peer_up creates it,
// peer_capacity sets its credit per service, peer_down removes it with everything it held.
class family_listener {
 public:
  virtual ~family_listener() = default;
  // A peer is alive (first HELLO, back after a loss, or a new incarnation after a restart). It has
  // no capacity yet: peer_capacity follows as its STATE arrives.
  virtual void peer_up(const peer_info&) {}
  // One service of an alive peer changed. All zero: the service is gone from that peer.
  virtual void peer_capacity(const peer_info&, std::string_view /*service*/, const peer_capacity&) {
  }
  // What an alive peer says about itself changed (it started draining, or advertises other
  // endpoints).
  virtual void peer_updated(const peer_info&) {}
  // The peer is lost (silent for its liveness), left (BYE) or restarted (a new broker id at its
  // endpoint: peer_up follows). Everything it announced is gone with it; no zero peer_capacity
  // calls are made for it.
  virtual void peer_down(const peer_info&, std::string_view /*why*/) {}
  // A peer told of a service policy newer than any this broker knew (version, then origin broker
  // id, decide): the [service."NAME"] tables of the family from now on. Views valid in the call.
  virtual void peer_config(std::uint64_t /*version*/, std::uint64_t /*origin*/,
                           std::span<const protocol::peer::policy_entry> /*tables*/) {}
};

// The sockets, as the family core sees them; the event loop implements it.
class family_io {
 public:
  virtual ~family_io() = default;
  // Opens outgoing link `link` (a DEALER) to `endpoint`, with this routing id. Nothing can be sent
  // until the loop reports on_link_connected(link); it reports each (re)connection.
  virtual void open_link(std::uint32_t link, const std::string& endpoint,
                         std::string_view routing_id) = 0;
  // Closes it at once: whatever it still queued is dropped.
  virtual void close_link(std::uint32_t link) = 0;
  // Queues a message (the frames after any identity: "" · packed) on a link. False when the link
  // has no connection or its queue is full (then nothing was sent).
  virtual bool send(std::uint32_t link, frames& msg) = 0;
  virtual void event(const broker_event&) {}
};

struct family_settings {
  std::uint64_t broker_id = 0;
  std::string family = "default";
  std::vector<std::string> fallback_families;  // in order; at most pp::max_fallback_families
  std::string peer_endpoint;  // advertised: where other brokers reach this one's peer ROUTER
  std::string frontend;       // advertised ("" : none)
  std::string backend;
  clock::duration heartbeat_interval = std::chrono::milliseconds(1000);  // HELLO every
  std::uint32_t liveness = 3;                                            // told to peers
  std::size_t max_peers = 256;
  std::size_t max_services = 10000;                                 // services kept per peer
  clock::duration state_interval = std::chrono::milliseconds(200);  // STATE per link at most every
  clock::duration full_state_interval = std::chrono::seconds(10);
  clock::duration forget_after = std::chrono::minutes(5);  // a learned peer not alive for this
};

enum class peer_state : std::uint8_t {
  connecting,  // linked, never heard (or not since it was learned)
  alive,       // heard within its liveness
  lost,        // silent too long, left (BYE), or restarted and not heard since
  self,        // the endpoint is this broker: never linked
};

// Why a message from the peer ROUTER was dropped, or a budget hit (scale0_family_dropped_total).
enum class family_drop : std::uint8_t {
  malformed,         // framing, lengths, counts, ranges
  invalid_endpoint,  // an endpoint the rules refuse (or longer than 255 bytes)
  invalid_name,      // a family or service name the rules refuse
  unknown_sender,    // PEERS, STATE or BYE on a connection that sent no HELLO
  other_family,      // a HELLO of an unrelated family, or CONFIG from another family
  self,              // this broker's own HELLO, through a link to itself
  conflict,          // a HELLO claiming this broker's endpoint, or one found to be this broker
  not_alive,         // PEERS or STATE from a peer judged lost (until its next HELLO)
  stale_state,       // a STATE older than the last one from that peer
  peers_full,        // a new peer over max_peers
  services_full,     // a new service of a peer over max_services
  count_
};

class family_core final : public status_source {
 public:
  family_core(family_settings settings, family_io& io, time_point now);

  void set_listener(family_listener* listener) noexcept { listener_ = listener; }

  // The configured peers (--peer), as resolved now: the loop calls it again whenever a name
  // resolves to other addresses. Configured endpoints are linked at once and never forgotten; one
  // no longer configured is kept as if learned (forgotten when it is not alive for a while).
  void set_configured(const std::vector<configured_peer>& peers, time_point now);

  // One message from the peer ROUTER (frame 0: the sending connection's routing id). Anything may
  // arrive: a bad message is dropped and counted, never trusted.
  void on_message(const frames& msg, time_point now);
  // A link's connection is ready (again): HELLO, PEERS and a full STATE go on it.
  void on_link_connected(std::uint32_t link, time_point now);
  void on_link_disconnected(std::uint32_t link, time_point now);

  // Local capacity. The loop asks the broker core for the services that changed only when a round
  // is due, and hands them here.
  bool round_due(time_point now) const noexcept { return now >= next_round_; }
  void set_local_capacity(std::span<const service_capacity> changed, time_point now);

  // Liveness, HELLOs, forgetting, STATE rounds. Call at least by next_wakeup(); `local_pending`:
  // the broker core has capacity changes not handed over yet.
  void on_tick(time_point now);
  time_point next_wakeup(time_point now, bool local_pending) const noexcept;

  // From now on HELLO says draining (sent at once).
  void begin_drain(time_point now);

  // The family's service policy changed here (a reload) or was adopted from a peer: CONFIG goes on
  // every link now, and on each link when its connection is made. Versions below 2 (every
  // broker's own file at start) are never sent. A CONFIG received is passed to the listener only
  // when (version, origin) is above what this broker holds.
  void set_policy(std::uint64_t version, std::uint64_t origin,
                  std::span<const protocol::peer::policy_entry> tables, time_point now);
  // BYE on every link that has a connection, then every link closed.
  void shutdown(time_point now);

  // status_source: the "family" member of scale0.status, budgets and metrics.
  void add_status(nlohmann::json& status, time_point now) const override;
  std::function<void(nlohmann::json&)> status_writer(time_point now) const override;
  void add_budgets(std::vector<budget_line>& budgets) const override;
  void add_metrics(metrics::exposition& e, time_point now) const override;

  // Whether the connection with this routing id (at the peer ROUTER) is an alive peer's link.
  bool alive_connection(std::string_view routing_id) const;

  // Introspection for tests.
  std::size_t peer_count() const noexcept { return peers_.size(); }
  const peer_state* state_of(std::string_view endpoint) const;
  std::size_t alive_count() const noexcept;
  // A peer's view of one service (zero when unknown).
  peer_capacity capacity_of(std::string_view endpoint, std::string_view service) const;
  std::uint64_t dropped(family_drop why) const noexcept {
    return counters_.dropped[static_cast<std::size_t>(why)];
  }
  std::uint64_t sent(protocol::peer::command c) const noexcept {
    return counters_.out[static_cast<std::size_t>(c)];
  }
  std::string routing_id(std::uint32_t link) const;
  const family_settings& settings() const noexcept { return s_; }

 private:
  enum class via : std::uint8_t { configured, gossip, hello };
  struct link_state {
    std::uint32_t id = 0;  // 0: none (a self entry)
    bool connected = false;
    bool hello_sent = false;  // on this connection: nothing else goes before it
    bool peers_due = false;
    bool full_due = false;
    bool config_due = false;
    std::uint64_t sequence = 0;  // of the last STATE sent on this connection
    time_point next_hello{};
  };
  struct peer {
    std::string endpoint;
    bool configured = false;
    via learned = via::gossip;
    peer_state state = peer_state::connecting;
    time_point since{};  // entered its state
    link_state link;
    std::string down_reason;  // why it is lost
    // What it says about itself (its last HELLO).
    bool heard = false;
    std::uint64_t broker_id = 0;
    std::uint32_t heartbeat_ms = 0;
    std::uint32_t liveness = 0;
    bool draining = false;
    bool member = false;  // its relation (peer_info), from its last HELLO
    std::uint8_t fallback_rank = 0;
    bool dependent = false;
    std::string family;
    std::string frontend;
    std::string backend;
    std::string connection;  // routing id of the link it opened to us (its last HELLO's)
    time_point last_heard{};
    std::uint64_t last_sequence = 0;  // of its last STATE
    std::uint64_t restarts = 0;
    std::map<std::string, peer_capacity, std::less<>> services;
  };
  struct counters {
    std::array<std::uint64_t, 6> in{};   // by command byte (1-5)
    std::array<std::uint64_t, 6> out{};  // by command byte (1-5)
    std::array<std::uint64_t, static_cast<std::size_t>(family_drop::count_)> dropped{};
    std::uint64_t unsent = 0;  // messages a link refused (no connection, or its queue full)
    std::uint64_t peers_up = 0;
    std::uint64_t peers_lost = 0;  // silent for their liveness
    std::uint64_t peers_left = 0;  // BYE
    std::uint64_t restarts = 0;
    std::uint64_t forgotten = 0;
    std::uint64_t state_gaps = 0;  // STATE sequences that skipped (a STATE was lost)
  };

  // What add_status reports, copied (status_writer: written later, on another thread).
  struct status_view {
    family_settings settings;
    std::map<std::string, peer, std::less<>> peers;
    std::vector<configured_peer> configured;
    counters count;
    std::size_t local_services = 0;
    bool draining = false;
    time_point now{};
  };
  static void write_status(const status_view& v, nlohmann::json& status);

  peer* add_peer(std::string_view endpoint, via how, time_point now);
  void forget(std::map<std::string, peer, std::less<>>::iterator it);
  void open_link(peer& p, time_point now);
  void close_link(peer& p);
  void set_connection(peer& p, std::string_view connection);
  void drop_connection(peer& p);
  peer* peer_of_link(std::string_view routing_id);
  void on_hello(std::string_view connection, const protocol::peer::hello& h, time_point now);
  void on_peers(const protocol::peer::message& m, time_point now);
  void on_state(peer& p, const protocol::peer::message& m);
  void mark_down(peer& p, time_point now, std::string why, bool relink);
  void set_capacity(peer& p, std::string_view service, const peer_capacity& value,
                    const peer_capacity& before);
  peer_info info(const peer& p) const noexcept;
  // It may forward requests here: it is sent STATE, and its link may carry requests.
  static bool forwards_here(const peer& p) noexcept { return p.member || p.dependent; }

  // sending
  void service_link(peer& p, time_point now);  // HELLO when due, then PEERS when due
  bool send(peer& p, protocol::peer::command c, frames& msg);
  bool send_hello(peer& p);
  bool send_peers(peer& p);
  bool send_state(peer& p, bool full);
  bool send_config(peer& p);
  void on_config(const protocol::peer::message& m, time_point now);
  void round(time_point now);
  void gossip(time_point now);  // PEERS to every link, if the alive set changed
  void drop(family_drop why, std::string_view detail);

  family_settings s_;
  family_io& io_;
  family_listener* listener_ = nullptr;
  std::map<std::string, peer, std::less<>> peers_;         // by peer endpoint
  std::map<std::uint32_t, peer*> links_;                   // by link id
  std::map<std::string, peer*, std::less<>> connections_;  // by routing id of their link to us
  std::uint32_t link_serial_ = 0;
  bool draining_ = false;
  bool alive_changed_ = false;  // the alive set changed: PEERS to everyone
  bool round_wanted_ = false;   // a link needs a full STATE, or the delta is not empty
  // Local capacity: what the broker core reported (non-zero services), and what changed since
  // the last round (zeros included: a service gone).
  std::map<std::string, peer_capacity, std::less<>> local_;
  std::map<std::string, peer_capacity, std::less<>> delta_;
  std::vector<configured_peer> configured_;  // for status
  struct policy_table {
    std::string service;
    protocol::peer::policy_entry entry;  // its service view points into `service`
  };
  std::uint64_t policy_version_ = 0;
  std::uint64_t policy_origin_ = 0;
  std::vector<policy_table> policy_;
  std::vector<protocol::peer::capacity> entries_;  // scratch: a STATE's entries
  std::vector<std::string_view> endpoints_;        // scratch: a PEERS' endpoints
  time_point next_scan_;
  time_point next_round_;
  time_point next_full_;
  time_point started_;
  counters counters_;
};

}  // namespace scale0::broker_detail
