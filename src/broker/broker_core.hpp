// SPDX-License-Identifier: Apache-2.0
// The broker core: services, worker registry, LRU of worker credit, wait queue, deadlines and
// heartbeats. It does no I/O and reads no clock: the event loop hands it decoded-ready messages
// and the current time, and it sends through an `outbox`. Tests drive it with a fake outbox and
// fake time.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <iosfwd>
#include <map>
#include <nlohmann/json_fwd.hpp>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "access.hpp"
#include "broker_status.hpp"
#include "intrusive_list.hpp"
#include "metrics/latency_histogram.hpp"
#include "protocol/batch.hpp"
#include "scale0/broker.hpp"
#include "scale0/protocol.hpp"
#include "timer_wheel.hpp"

namespace scale0::metrics {
class exposition;
}

namespace scale0::broker_detail {

using metrics::latency_histogram;

using clock = std::chrono::steady_clock;
using time_point = clock::time_point;
using protocol::frames;

using scale0::broker_event;
using scale0::event_kind;
using scale0::worker_departure;

// What became of a send. A ROUTER refuses a message when its peer is gone (disconnected or never
// known) or when the peer's queue is full (it is not reading).
enum class delivery : std::uint8_t { sent, full, gone };

// Where the core's messages go. For ROUTER sockets frame 0 of `msg` is the peer identity.
class outbox {
 public:
  virtual ~outbox() = default;
  // Unless sent, the frames are left in `msg` untouched.
  virtual delivery send(std::uint8_t socket, frames& msg) = 0;
  virtual void publish(frames& msg) = 0;
  virtual void event(const broker_event&) {}
};

struct broker_counters {
  std::uint64_t requests = 0;
  std::uint64_t replies = 0;                      // worker replies forwarded to clients
  std::map<std::uint16_t, std::uint64_t> errors;  // broker-made error replies by status
  // Requests answered with an error before they were accepted for a service, by status.
  std::map<std::uint16_t, std::uint64_t> refused_requests;
  std::uint64_t dropped_malformed = 0;      // unanswerable messages
  std::uint64_t dropped_unknown_reply = 0;  // replies for unknown or already answered jobs
  std::uint64_t dropped_late_reply = 0;     // replies after the client got 504
  std::uint64_t dropped_unroutable = 0;     // sends to a peer that is gone (or not reading)
  std::uint64_t dropped_backlog = 0;  // answers to a client that does not read, over its backlog
  std::uint64_t workers_joined = 0;
  std::uint64_t workers_left = 0;
  std::uint64_t workers_expired = 0;
  std::uint64_t heartbeats_missed = 0;
  std::uint64_t redispatched = 0;
  std::uint64_t forwarded_out = 0;       // requests sent to a peer of the family
  std::uint64_t forwarded_in = 0;        // requests a peer forwarded here
  std::uint64_t forwarded_fallback = 0;  // ... of forwarded_out: to a fallback family's broker
  std::uint64_t rebalanced_workers = 0;  // workers sent to a peer that needs them more
  std::uint64_t redirected_clients = 0;  // requests answered 301 while draining
  std::uint64_t redirected_workers = 0;  // workers sent to a peer while draining
  std::uint64_t handed_back = 0;         // forwards a draining peer handed back (301)
  std::uint64_t batches_in = 0;          // BATCH messages received (well-formed)
  std::uint64_t batch_entries_in = 0;    // ... and their entries
  std::uint64_t batches_out = 0;         // BATCH messages sent
  std::uint64_t batch_entries_out = 0;   // ... and their entries
  // CURVE refusals by endpoint and reason (handshakes the ZAP handler refused, services a key may
  // not use).
  std::map<std::pair<std::string, std::string>, std::uint64_t> refused;
};

// A peer identity as lowercase hex, for logs and status.
std::string hex_id(std::string_view bytes);
// A broker id as status shows it: the hex of its 8 bytes in this machine's order (so a peer's id
// in a family table reads as that peer's own status shows it).
std::string broker_id_hex(std::uint64_t id);

// One service's capacity, as the family announces it to its peers (docs/family.md, STATE).
struct service_capacity {
  std::string_view service;
  std::uint32_t workers = 0;
  std::uint32_t idle = 0;  // requests its workers would take at once: the idle credit
  std::uint32_t queued = 0;
  bool idempotent = false;  // a request lost with a worker of it may be sent again (may_retry)
};

// The sockets of the core beyond the frontend (0) and backend (1), for the family's forwarding
// (docs/family.md): the peer ROUTER, where peers' links bring requests they forward here (each link
// is one client), and this broker's own links to its peers (frame 0: the link id, 4 bytes).
inline constexpr std::uint8_t peer_socket = 2;
inline constexpr std::uint8_t link_socket = 3;

// A bounded resource for /metrics (scale0_budget_used / scale0_budget_limit).
struct budget_line {
  const char* name;  // with its unit when not a count: _bytes, _seconds
  std::uint64_t used;
  std::uint64_t limit;
  double scale = 1;  // to the unit of the name (milliseconds counted: 0.001)
};

// Another part of the broker that reports in scale0.status and /metrics (the family).
class status_source {
 public:
  virtual ~status_source() = default;
  // Adds its members to the status object.
  virtual void add_status(nlohmann::json& status, time_point now) const = 0;
  // The same, in two steps: on the loop's thread it copies what it reports; the function it
  // returns adds it to a status object later, on any thread.
  virtual std::function<void(nlohmann::json&)> status_writer(time_point now) const = 0;
  virtual void add_budgets(std::vector<budget_line>& budgets) const = 0;
  // Whole metric families of its own (names not used by the core).
  virtual void add_metrics(metrics::exposition& e, time_point now) const = 0;
};

class broker_core {
 public:
  broker_core(const broker_options& options, outbox& out, std::uint64_t broker_id,
              std::string heartbeat_endpoint, time_point now);

  // One message from ROUTER `socket` (frame 0: identity). `oversized` says the loop found more
  // frames or bytes than the limits allow (it may have kept only the first frames). The core may
  // take the frames (msg is left valid but unspecified).
  // `who`: what the sender's CURVE key allows (nullptr: CURVE is off, anything goes).
  void on_message(std::uint8_t socket, frames& msg, bool oversized, time_point now,
                  const access_grant* who = nullptr);

  // The messages of the entries that follow come from one BATCH (docs/protocol.md, "Batches"):
  // a client that sends batches is sent its replies in batches.
  // `entries`: how many (counted in scale0_batch_entries_total).
  void note_batched_input(bool batched, std::size_t entries = 0) noexcept {
    batched_input_ = batched;
    if (batched) {
      ++counters_.batches_in;
      counters_.batch_entries_in += entries;
    }
  }
  // Sends what is held for each peer that takes batches: what one turn of the loop had for one
  // peer leaves as one message. The loop calls it after each batch of input and before it waits.
  void flush(time_point now);

  // The loop has read everything the sockets held: workers found unreachable by a failed send
  // are purged now, after any reply they sent before going has been read.
  void on_input_drained(time_point now);

  // While held, nothing is dispatched (requests queue). The loop holds dispatch after a stall
  // while it reads what workers sent meanwhile: replies, DISCONNECTs and closed connections.
  void hold_dispatch(bool held, time_point now);

  // Fires deadlines, sends heartbeats, expires workers. Call at least by next_wakeup().
  void on_tick(time_point now);
  time_point next_wakeup(time_point now) const noexcept;

  // Stop: answer everything pending with 503 and tell every worker DISCONNECT.
  void shutdown(time_point now);

  // Graceful drain: queued and in-flight requests go on. New requests are redirected (301) to a
  // peer of the family that takes work, when there is one (native clients; a peer's forward is
  // handed back), else get 503 at once; workers that hold nothing, and have nothing queued here to
  // take, are sent to the peer that needs their services most (DISCONNECT 301). drained() is true
  // when nothing accepted is left unanswered and every answer has left the broker.
  void begin_drain(time_point now);
  // With peers, a drain also waits for a quiet spell after the last redirect (drain_settled), so
  // that what was on its way here is handed back rather than lost with the process.
  bool drain_settled(time_point now) const noexcept;
  bool has_peers() const noexcept { return !peer_by_link_.empty(); }
  bool draining() const noexcept { return draining_; }
  bool drained() const noexcept;

  // Applies reloaded settings (endpoints cannot change). Heartbeat settings apply to workers that
  // register from now on; limits, idempotent services and service policies at once: a changed
  // request timeout applies to requests that arrive from now on, a lowered max-queue refuses new
  // requests but keeps what is queued, a lowered max-concurrency takes effect as requests finish
  // (a raised one at once). The policy version goes up when the policy changed.
  void reconfigure(const broker_options& options, time_point now);

  // The version of the service policy (the [service."NAME"] tables and the broker-wide settings
  // they override): 1 at start, one more on every reload that changes it.
  std::uint64_t policy_version() const noexcept { return policy_version_; }
  // The broker whose change made it (this broker's id until a peer's change is adopted).
  std::uint64_t policy_origin() const noexcept { return policy_origin_; }
  const std::map<std::string, service_policy, std::less<>>& service_policies() const noexcept {
    return options_.service_policies;
  }
  // The configuration network (docs/family.md, "The configuration network"): true once after a
  // reload changed this broker's [service."NAME"] tables (the family is to be told).
  bool take_policy_change() noexcept {
    const bool was = policy_announce_;
    policy_announce_ = false;
    return was;
  }
  // A peer's policy, newer than this broker's (by version, then origin): its tables replace
  // this broker's (the broker-wide defaults stay), and workers get CONFIG. False when not newer.
  bool adopt_policy(std::uint64_t version, std::uint64_t origin,
                    std::map<std::string, service_policy, std::less<>> tables, time_point now);

  // Prometheus text exposition of every counter, gauge and histogram.
  std::string metrics_text(time_point now) const;
  metrics::exposition metrics(time_point now) const;  // the families metrics_text() writes

  const broker_counters& counters() const noexcept { return counters_; }
  void note_refusal(std::string_view endpoint, std::string_view reason);
  // A listed key's message refused (403): counted, and reported with the key and the peer address.
  void refuse(std::uint8_t socket, frames& msg, std::string_view reason, std::string_view service,
              std::string_view what);
  // The key lists changed (SIGHUP): a worker whose key may no longer serve every service it
  // registered for gets DISCONNECT 403 and is forgotten (its requests handled as for a lost
  // worker).
  void revoke_workers(const grant_lookup& grant_for, time_point now);
  std::string status_json(time_point now) const;  // write_status_json(snapshot_status(now))
  // What scale0.status reports, copied (the JSON is written from it on another thread).
  status_snapshot snapshot_status(time_point now) const;
  // What status reports beyond the core: the endpoints bound, and the recent events (not owned;
  // nullptr: none). Its use is the `status_events` budget.
  void set_status_extras(bound_endpoints endpoints, std::string metrics_endpoint,
                         const event_ring* events) {
    status_endpoints_ = std::move(endpoints);
    status_metrics_endpoint_ = std::move(metrics_endpoint);
    events_ = events;
  }
  // Reported with the core's status and metrics (nullptr: none). Not owned.
  void set_status_source(const status_source* source) noexcept { status_source_ = source; }

  // Capacity tracking for the family: when on, every change of a service's workers, idle credit or
  // queue length marks the service (a flag and, the first time, its index in a reused vector: no
  // allocation per request). take_capacity_changes() reports the marked services and clears the
  // marks; a service forgotten while marked is reported with zeros. The views stay valid until the
  // core next changes.
  void track_capacity(bool on);
  bool capacity_changed() const noexcept {
    return !dirty_capacity_.empty() || !removed_capacity_.empty();
  }
  void take_capacity_changes(std::vector<service_capacity>& out);

  // What this broker tells clients and workers of itself in a family (its advertised frontend and
  // backend): WELCOMEs list them first, then its peers'. Empty: no family lists.
  void set_advertised(std::string frontend, std::string backend) {
    advertised_frontend_ = std::move(frontend);
    advertised_backend_ = std::move(backend);
  }

  // Forwarding (docs/family.md). Each alive peer is a virtual worker of every service it announces,
  // with the credit it announces: a request this broker has no local credit for goes to a peer
  // with credit (at most one hop: requests that came from a peer never go to another). The peer's
  // reply comes back on the link (on_peer_reply); the request's deadline and its one outcome stay
  // here. A peer lost holding a request: sent again once if the service is idempotent, else 502.
  // `frontend`, `backend`: where it tells clients and workers to go (advertised; "" if none).
  // `fallback_rank` 0: a member of the family; n: a broker of the n-th fallback family, sent a
  // request only when the family has no worker for its service, the lowest rank with credit first
  // (and never a client, worker or redirect).
  void peer_up(std::uint32_t link, std::string_view name, std::string_view frontend,
               std::string_view backend, std::uint8_t fallback_rank, time_point now);
  // A STATE entry: `idle` resets the peer's credit for the service (a forward takes one, its reply
  // gives it back until the next STATE says otherwise).
  void peer_capacity(std::uint32_t link, std::string_view service, std::uint32_t workers,
                     std::uint32_t idle, std::uint32_t queued, bool idempotent, time_point now);
  // A draining peer takes nothing new (what it holds goes on); its endpoints may change.
  void peer_updated(std::uint32_t link, bool draining, std::string_view frontend,
                    std::string_view backend, time_point now);
  void peer_down(std::uint32_t link, std::string_view why, time_point now);
  // A message from link `link` (a DEALER: no identity frame): the reply to a forwarded request.
  // `oversized`: more frames or bytes than the limits allow (the client gets 413).
  void on_peer_reply(std::uint32_t link, frames& msg, bool oversized, time_point now);
  std::size_t peer_count() const noexcept { return peer_by_link_.size(); }

  // Introspection for tests and status.
  std::size_t worker_count() const noexcept { return worker_by_key_.size(); }
  std::size_t service_count() const noexcept { return service_by_name_.size(); }
  std::size_t queued(std::string_view service) const;
  std::size_t idle_slots(std::string_view service) const;
  std::size_t requests_pending() const noexcept { return slots_.size() - free_slots_.size(); }
  // The heartbeat interval a native worker registering now is granted (at least this).
  clock::duration granted_interval() const noexcept { return fleet_interval(); }

 private:
  const access_grant* who_ = nullptr;  // the grant of the message being handled
  enum class slot_state : std::uint8_t { free, queued, in_flight, abandoned };
  struct request_slot {
    std::uint32_t generation = 1;
    slot_state state = slot_state::free;
    bool mdp_client = false;
    std::uint8_t client_version = protocol::version_1;  // native clients: the framing to answer in
    std::uint8_t attempts = 0;                          // dispatches so far
    bool body_kept = false;       // in flight: the body is still here (it may be sent again)
    bool client_batches = false;  // its client took batches when it came: its answer may join one
    std::uint8_t client_socket = 0;
    std::uint32_t bytes = 0;  // body bytes, counted in the service's queue bytes while queued
    std::string client;       // ROUTER identity of the client
    std::uint64_t client_id = 0;
    std::uint32_t service = npos;
    std::uint32_t worker = npos;
    std::uint32_t member = npos;  // in flight or abandoned: the worker's membership of the service
    time_point deadline{};
    time_point enqueued{};
    frames body;
    list_link link;  // service queue while queued, worker's job list while in flight
  };
  // A worker's registration for one service. It is in the service's LRU exactly when the worker
  // may take one more request of it (may_take): the worker has credit, is neither stopping nor
  // unreachable, and holds fewer of the service's requests than its max-concurrency.
  struct membership {
    std::uint32_t worker = npos;
    std::uint32_t service = npos;
    std::uint32_t in_flight = 0;  // requests of this service the worker holds (abandoned included)
    list_link link;               // in the service's LRU while may_take
    // A peer's membership: what it announced, and the requests it may be sent now.
    std::uint32_t credit = 0;
    std::uint32_t announced_workers = 0;
    std::uint32_t announced_queued = 0;
    std::uint32_t announced_idle = 0;
    bool idempotent = false;
  };
  struct worker_entry {
    bool used = false;
    bool mdp = false;
    bool stopping = false;
    bool idempotent = false;
    bool unreachable = false;        // a send to it failed: no new work; purged once input is read
    bool peer = false;               // a peer broker (forwarding): identity is its link id
    std::uint8_t fallback_rank = 0;  // a peer of the n-th fallback family (0: a member)
    bool wants_config = false;       // it sent CONFIG (S0/2): policy changes are pushed to it
    bool batches = false;            // its READY had flag_batches: its requests go in batches
    std::uint32_t outgoing = npos;   // its open outgoing batch, if any
    std::uint32_t link = 0;
    std::string frontend;  // a peer's advertised endpoints (redirects)
    std::string backend;
    std::uint8_t version = protocol::version_1;  // native workers: the framing it registered in
    std::uint8_t socket = 0;
    std::string identity;
    std::string key;
    std::string address;    // the peer's IP, from ZeroMQ's Peer-Address
    std::string name;       // the display name of its READY (S0/2), else ""
    std::string curve_key;  // the CURVE key it registered with ("" without CURVE)
    std::uint32_t concurrency = 1;
    std::uint32_t in_flight = 0;
    clock::duration interval{};   // granted: the worker heartbeats at this interval
    clock::duration requested{};  // the least it may be granted: max(its READY, the broker's)
    bool regranted = false;       // told a shorter interval; its next gap is not a miss
    time_point last_seen{};
    time_point expires{};
    time_point joined{};
    time_point unreachable_since{};
    list_head jobs;
    std::vector<std::uint32_t> memberships;
    std::unordered_map<std::uint32_t, std::uint32_t> member_by_service;  // peers: service -> m
    // A peer: workers this broker sent it (by service) that its STATE may not show yet, each
    // counted as its worker until the time given (balancing workers).
    std::vector<std::pair<std::uint32_t, time_point>> arriving;
  };
  // Who decides whether a request lost with its worker is sent again (docs/operations.md).
  enum class idempotency : std::uint8_t {
    worker,  // the worker's idempotent flag
    yes,     // the configuration: the idempotent list, or idempotent = true in its table
    never,   // the configuration: idempotent = false in its table (beats the worker's flag)
  };
  struct service_entry {
    bool used = false;
    bool configured = false;  // has a [service."NAME"] table
    // The effective policy: its table's settings, else the broker-wide ones (apply_policy).
    idempotency idempotent = idempotency::worker;
    std::uint32_t max_concurrency = 0;  // per worker; 0: no cap beyond the worker's concurrency
    std::size_t max_queue = 0;
    clock::duration request_timeout{};
    std::string name;
    list_head lru;              // memberships of workers with credit, longest waiting first
    list_head peers;            // memberships of peers with credit, least recently sent to first
    list_head fallbacks;        // the same, for brokers of fallback families
    list_head queue;            // queued request slots
    std::uint32_t workers = 0;  // local workers
    std::uint32_t idempotent_workers = 0;  // ... of which idempotent
    std::uint32_t peer_members = 0;  // peers that announced it (the entry is kept while any does)
    std::uint32_t peer_workers = 0;  // workers the peers announced (fallbacks' included)
    std::uint32_t fallback_workers = 0;  // ... of which fallback families' brokers
    // A broker sent a worker of it here (READY flag_moved): no worker of it is sent on before
    // then, when the sender's STATE can show the one it lost (balancing workers).
    time_point settled{};
    std::uint32_t forwardable = 0;  // queued requests that may go to a peer (not from one)
    std::uint64_t forwarded = 0;    // requests sent to peers
    std::uint32_t in_flight = 0;
    std::size_t queue_bytes = 0;
    time_point no_worker_since{};
    std::uint64_t requests = 0;
    std::uint64_t replies = 0;                      // worker replies forwarded, any status
    std::uint64_t replies_ok = 0;                   // ... of which 200
    std::map<std::uint16_t, std::uint64_t> errors;  // every non-200 outcome, by status
    latency_histogram latency;  // arrival to reply, for replies forwarded from workers
    // One snapshot per heartbeat tick, so status can show recent rates and percentiles.
    struct snapshot {
      time_point at{};
      std::uint64_t requests = 0;
      std::uint64_t errors = 0;  // the sum of `errors`
      latency_histogram::buckets latency{};
    };
    std::array<snapshot, 10> window{};
    std::uint32_t window_pos = 0;
    traffic_history history;      // the last five minutes, for the status page (272 bytes)
    bool capacity_dirty = false;  // in dirty_capacity_ (track_capacity)
  };
  struct client_ref {
    std::uint8_t socket;
    std::string_view identity;
    bool mdp;
    std::uint64_t id;
    std::string_view service;
    std::uint8_t version = protocol::version_1;
    bool batches = false;  // known to take batches (else only found so when something is held)
  };

  // message handlers
  void on_client_request(std::uint8_t socket, frames& msg, const protocol::inbound& in, bool mdp,
                         bool oversized, time_point now);
  void on_management(const client_ref& c, frames& msg, std::size_t first, time_point now);
  void on_worker_ready(std::uint8_t socket, frames& msg, const protocol::inbound& in, bool mdp,
                       time_point now);
  void on_worker_reply(std::uint32_t w, frames& msg, const protocol::inbound& in, bool mdp,
                       bool oversized, time_point now);
  void on_worker_stopping(std::uint32_t w);

  // actions
  void dispatch(std::uint32_t service, time_point now);
  void assign(std::uint32_t slot, std::uint32_t member, time_point now);
  void finish(std::uint32_t slot);
  // In-flight request `slot` leaves its worker (its credit with it) for the head of its queue.
  void take_back(std::uint32_t slot, time_point now);
  // The request no longer counts against its client's in-flight limit (answered, or abandoned).
  void release_client(const request_slot& r);
  void fail(std::uint32_t slot, std::uint16_t code, std::string_view message);
  // A request of membership `m` left worker `w` (its reply came): one unit of credit back.
  void release_credit(std::uint32_t w, std::uint32_t m);
  bool may_take(std::uint32_t m) const noexcept;
  // How many more requests of its service membership `m` may take now.
  std::size_t free_slots_of(std::uint32_t m) const noexcept;
  // Puts `m` in (or takes it out of) its service's LRU as may_take says.
  void sync_lru(std::uint32_t m);
  void apply_policy(service_entry& S) const;
  policy_status policy_of(const service_entry& S) const;
  // Forgets worker `w` (a local one is reported as a worker_left event: `why`, and `detail` in
  // words). held_nothing: the worker said (DISCONNECT 204) it holds no request, so whatever the
  // broker has in flight at it never reached it and goes back to its queue, idempotent or not.
  void purge_worker(std::uint32_t w, time_point now, worker_departure why, std::string_view detail,
                    bool held_nothing = false);
  void mark_unreachable(std::uint32_t w, time_point now);
  // The LRU membership `m` belongs in: its service's local LRU, or its peers list.
  list_head& lru_of(std::uint32_t m) noexcept;
  std::uint32_t peer_of(std::uint32_t link) const noexcept;
  // The peer membership a forward of service `S` goes to: a member's with credit; else, when no
  // broker of the family has a worker for it, a fallback's with credit (lowest rank first); npos.
  std::uint32_t forward_target(const service_entry& S) const noexcept;
  static std::uint32_t family_workers(const service_entry& S) noexcept {
    return S.workers + S.peer_workers - S.fallback_workers;
  }
  // After a worker count of service `s` fell: when the family has no worker left, what waits
  // here may go to a fallback broker now.
  void fallback_if_orphaned(std::uint32_t s) {
    const service_entry& S = services_[s];
    if (family_workers(S) == 0 && !S.fallbacks.empty() && !S.queue.empty())
      pending_dispatch_.push_back(s);
  }
  // A link refused a forward (no connection, or its queue full): no credit until the next STATE.
  void block_peer(std::uint32_t w, time_point now);
  void restore_peer(worker_entry& W);
  void drop_peer_membership(std::uint32_t m, time_point now);
  void unblock_peers(time_point now);
  static constexpr std::chrono::milliseconds peer_retry{100};  // a blocked peer is tried again
  // Draining: the frontend of a peer that takes work (one with credit for the service first), or
  // nullptr; the backend of the peer that needs worker `w`'s services most, or nullptr.
  const std::string* redirect_client(std::string_view service);
  const std::string* redirect_worker(const worker_entry& W);
  // Draining: workers holding nothing, whose services have nothing queued here, move to peers.
  void move_idle_workers(time_point now);
  // Balancing workers (docs/family.md, "Balancing workers"): the member peer a worker of services
  // `services` should rather serve (its workers here: those counted in the services plus
  // `unregistered`), or npos; then, once per heartbeat interval, idle workers sent to such peers
  // (one per peer).
  std::uint32_t needier_peer(std::span<const std::uint32_t> services, std::uint32_t unregistered,
                             time_point now);
  void note_arriving(std::uint32_t peer, std::span<const std::uint32_t> services, time_point now);
  void rebalance_workers(time_point now);
  void send_redirect(const client_ref& c, const std::string& target, frames& msg,
                     std::size_t first);
  bool no_worker_for(const request_slot& r) const noexcept;
  void purge_unreachable(time_point now, bool all);
  void touch(worker_entry& w, time_point now);
  void expire_workers(time_point now);
  void enqueue(std::uint32_t slot, bool front, time_point now);
  void dequeue(std::uint32_t slot);
  void schedule_queued(std::uint32_t slot, time_point now);
  void on_timer(std::uint32_t slot, time_point now);
  void heartbeat_tick(time_point now);
  clock::duration fleet_interval() const noexcept;
  void regrant_intervals();
  void flush_dispatch(time_point now);

  // sending
  void send_error(const client_ref& c, std::uint16_t code, std::string_view message);
  // send_error for a request not accepted for a service (scale0_requests_refused_total).
  void refuse_request(const client_ref& c, std::uint16_t code, std::string_view message);
  void send_client_reply(const client_ref& c, std::uint16_t code, std::string_view message,
                         frames& src, std::size_t first);
  void send_disconnect(std::uint8_t socket, std::string_view identity, bool mdp,
                       std::uint8_t version, std::uint16_t code, std::string_view message);
  void send_disconnect(const worker_entry& w, std::uint16_t code, std::string_view message);
  void send_welcome(const worker_entry& w);
  void send_client_welcome(const client_ref& c, bool flags = false);
  // CONFIG (S0/2 workers): the effective policy of the worker's services; 426 when it said it had
  // an older version.
  void send_worker_config(const worker_entry& W, std::uint16_t code);
  void push_worker_configs();
  // The family's frontends or backends: this broker's, then those of its peers that take work.
  void family_endpoints(bool frontends, std::vector<std::string_view>& out) const;
  // Whether every worker of the family known for the service is idempotent (or the policy says
  // so): a client may send its request once more through another broker.
  bool family_idempotent(std::uint32_t s) const;
  bool send(std::uint8_t socket, frames& msg);
  // Answers go through here: a client whose queue is full gets them held, in order, in its backlog.
  void send_to_client(std::uint8_t socket, std::string_view identity, frames& msg,
                      bool batches = false);
  void flush_backlogs();

  // registries
  std::uint32_t find_worker(std::uint8_t socket, const zmq::message_t& identity);
  std::uint32_t find_or_create_service(std::string_view name, time_point now, bool for_worker);
  bool evict_unserved_service();
  clock::duration granted_mdp_interval() const noexcept;
  std::uint32_t alloc_slot();
  const std::string& make_key(std::uint8_t socket, std::string_view identity);
  client_ref client_of(const request_slot& r) const;
  bool may_retry(const request_slot& r) const noexcept;
  void count_error(std::uint32_t service, std::uint16_t code);
  void drop(std::uint64_t& counter, std::string_view what);
  void remove_service(std::uint32_t s);
  // Family capacity tracking: service `s` (or every service of worker `w`) changed.
  void note_capacity(std::uint32_t s) noexcept {
    if (track_capacity_ && !services_[s].capacity_dirty) mark_capacity(s);
  }
  void note_worker_capacity(const worker_entry& W) noexcept {
    if (track_capacity_)
      for (std::uint32_t m : W.memberships) note_capacity(members_[m].service);
  }
  void mark_capacity(std::uint32_t s);
  std::uint32_t idle_of(const service_entry& S) const noexcept;

  // Accessors for the intrusive lists threaded through slots_ and members_.
  auto slot_links() noexcept {
    return [this](std::uint32_t i) -> list_link& { return slots_[i].link; };
  }
  auto member_links() noexcept {
    return [this](std::uint32_t i) -> list_link& { return members_[i].link; };
  }

  broker_options options_;
  outbox& out_;
  std::uint64_t broker_id_;
  std::string heartbeat_endpoint_;

  std::vector<request_slot> slots_;
  std::vector<std::uint32_t> free_slots_;
  std::vector<worker_entry> workers_;
  std::vector<std::uint32_t> free_workers_;
  std::vector<membership> members_;
  std::vector<std::uint32_t> free_members_;
  std::vector<service_entry> services_;
  std::vector<std::uint32_t> free_services_;
  std::unordered_map<std::string, std::uint32_t> worker_by_key_;
  std::unordered_map<std::string, std::uint32_t> service_by_name_;
  struct held_answer {
    std::size_t bytes;
    frames msg;
    std::uint32_t answers = 1;  // a held batch holds several
  };
  // What one turn of the loop has for one peer that takes batches, until flush().
  struct outgoing {
    protocol::batch_writer box{1};
    std::uint8_t socket = 0;
    std::uint32_t worker = npos;  // a worker's; npos: a client's
    std::string client_key;       // a client's: its key in clients_
    // A worker's: the requests in it (slot, generation), taken back if it cannot be sent.
    std::vector<std::pair<std::uint32_t, std::uint32_t>> jobs;
  };
  std::vector<outgoing> outgoing_;
  std::vector<std::uint32_t> free_outgoing_;
  std::vector<std::uint32_t> open_outgoing_;
  frames flushed_;
  bool batched_input_ = false;
  std::uint32_t open_outgoing(std::uint8_t socket, std::uint32_t worker, std::string_view key);
  // Sends one outgoing batch (it stays open, empty).
  void flush_outgoing(std::uint32_t o, time_point now);
  // Sends what is held for this peer before a message that cannot join it.
  void flush_peer(std::uint8_t socket, std::string_view identity, time_point now);
  // Holds a request for worker w in its outgoing batch; false when it must be sent alone.
  bool hold_for_worker(std::uint32_t w, std::uint32_t slot, frames& msg, time_point now);
  struct client_entry {
    bool batches = false;           // it sent a BATCH or a HELLO with hello_batches
    std::uint32_t outgoing = npos;  // its open outgoing batch, if any
    std::uint32_t in_flight = 0;
    time_point last_request{};
    std::deque<held_answer> backlog;  // answers its full queue refused, oldest first
    std::size_t backlog_bytes = 0;
    std::size_t backlog_answers = 0;  // the replies in the backlog (a held batch has several)
  };
  std::unordered_map<std::string, client_entry> clients_;
  std::vector<std::string> backlogged_;  // keys of clients with a backlog
  std::size_t backlog_bytes_ = 0;
  std::size_t backlog_messages_ = 0;
  time_point next_backlog_retry_{};
  std::size_t queue_bytes_ = 0;             // queued request bytes, all services
  std::size_t unserved_services_ = 0;       // services with no worker
  std::vector<std::uint32_t> unreachable_;  // workers a send failed to, to purge
  std::unordered_map<std::uint32_t, std::uint32_t> peer_by_link_;  // forwarding: link -> worker
  std::vector<std::uint32_t> blocked_peers_;  // peers whose link refused a forward

  timer_wheel timers_;
  std::vector<std::uint32_t> due_;
  std::vector<std::uint32_t> pending_dispatch_;
  frames scratch_;
  std::string key_;       // scratch: peer keys (socket byte + identity)
  std::string name_key_;  // scratch: service lookups

  std::uint32_t native_workers_ = 0;  // registered S0 workers (both framings): they heartbeat
  std::uint32_t regranted_for_ = 0;   // native_workers_ when intervals were last re-granted
  time_point next_heartbeat_;
  time_point next_expiry_scan_;
  std::uint64_t heartbeat_sequence_ = 0;
  time_point started_;
  time_point last_tick_;  // when on_tick last ran: a long gap means the loop itself stalled
  bool draining_ = false;
  std::size_t redirect_turn_ = 0;  // rotates redirects over the peers
  time_point next_rebalance_{};
  std::vector<std::uint32_t> rebalance_services_;  // scratch
  std::vector<std::uint32_t> rebalanced_to_;       // scratch: peers sent a worker this round
  time_point drain_started_{};
  std::string advertised_frontend_;
  std::string advertised_backend_;
  time_point last_redirect_{};
  bool dispatch_held_ = false;
  std::uint64_t policy_version_ = 1;
  std::uint64_t policy_origin_ = 0;  // set to broker_id_ at construction
  bool policy_announce_ = false;
  std::map<std::string, service_policy, std::less<>>
      file_policies_;  // the tables of the last file read
  broker_counters counters_;
  const status_source* status_source_ = nullptr;
  bound_endpoints status_endpoints_;
  std::string status_metrics_endpoint_;
  const event_ring* events_ = nullptr;
  bool track_capacity_ = false;
  std::vector<std::uint32_t> dirty_capacity_;  // services marked since the last take
  std::vector<std::string> removed_capacity_;  // services forgotten while marked
  std::vector<std::string> taken_removed_;     // what the last take reported as removed
};

}  // namespace scale0::broker_detail
