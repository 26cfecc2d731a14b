// SPDX-License-Identifier: Apache-2.0
// The one loop that owns the broker's sockets: wait → drain every readable message in batches →
// hand each to the core → run the core's timers; the core's sends go straight to the sockets.
// Other threads talk to it only through atomics + an eventfd (stop, drain, reload) and an inproc
// control socket (metrics and status snapshots).
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <zmq.hpp>

#include "access.hpp"
#include "broker_core.hpp"
#include "event_ring.hpp"
#include "family_core.hpp"
#include "metrics/exposition.hpp"
#include "metrics/metrics_server.hpp"
#include "peer_links.hpp"
#include "scale0/broker.hpp"

namespace scale0::broker_detail {

class event_loop final : public outbox, private family_listener {
 public:
  // Binds every endpoint; throws scale0::error when one cannot be bound.
  explicit event_loop(const broker_options& options);
  ~event_loop() override;

  const bound_endpoints& endpoints() const noexcept { return endpoints_; }
  std::string metrics_endpoint() const;  // "" when there is no metrics listener

  void on_event(std::function<void(const broker_event&)> h) { event_handler_ = std::move(h); }
  void on_reload(std::function<std::optional<broker_options>()> h) {
    reload_handler_ = std::move(h);
  }

  void run();
  void stop() noexcept;            // async-signal-safe
  void drain() noexcept;           // async-signal-safe
  void request_reload() noexcept;  // async-signal-safe
  bool draining() const noexcept { return draining_.load(std::memory_order_relaxed); }

  // Thread-safe: asks the loop for a "metrics" or "status" snapshot. The loop only copies: its
  // counters into metric families, its state into a status_snapshot; the asking thread writes the
  // text or the JSON (at 10,000 services writing takes ~20 times as long as the copy:
  // bench/micro, BM_scrape_*, BM_status_*).
  std::optional<std::string> query(std::string_view what, std::chrono::milliseconds wait);

  delivery send(std::uint8_t socket, frames& msg) override;
  void publish(frames& msg) override;
  void event(const broker_event& e) override;

 private:
  // family_listener: the family's peers become the core's virtual workers (forwarding).
  void peer_up(const peer_info& p) override;
  void peer_capacity(const peer_info& p, std::string_view service,
                     const struct peer_capacity& c) override;
  void peer_updated(const peer_info& p) override;
  void peer_down(const peer_info& p, std::string_view why) override;
  void peer_config(std::uint64_t version, std::uint64_t origin,
                   std::span<const protocol::peer::policy_entry> tables) override;
  // The core's policy changed here: the family is told (CONFIG).
  void announce_policy(clock::time_point now);

  std::size_t drain_socket(std::uint8_t socket, std::size_t budget);
  void deliver(std::uint8_t socket, frames& msg, bool oversized, clock::time_point now,
               const access_grant* who);
  bool receive(zmq::socket_t& socket, bool& oversized);
  void handle_control();
  void handle_zap();
  void handle_monitors();
  void load_grants(const broker_options& o);
  const access_grant* grant_of(std::uint8_t socket);
  void handle_requests(clock::time_point now);
  void wake() noexcept;
  // The family's share of a loop turn: peer messages, link events, the resolver, the local
  // capacity when a STATE round is due, and the family's timers.
  void family_turn(clock::time_point now);
  clock::time_point next_wakeup(clock::time_point now) const;
  clock::time_point note_progress(clock::time_point now);  // returns the time after it
  void settle_after_stall();
  // Socket monitor `i` (0-3: frontend, backend, heartbeat, peer) reports s's failed handshakes.
  void watch_handshakes(zmq::socket_t& s, int i);

  broker_options options_;
  zmq::context_t context_;
  // CURVE: the ZAP handler's socket, bound before any endpoint and declared before them, so that
  // it is destroyed after them however the object ends (see ~event_loop).
  zmq::socket_t zap_;
  std::string peer_public_key_;  // CURVE on the peer port: the one key it admits
  zmq::socket_t routers_[2];
  zmq::socket_t pub_;
  zmq::socket_t control_;
  // CURVE: the grants by public key of the frontend (client keys) and the backend (worker keys).
  // CURVE: handshake failures libzmq decides without asking ZAP (a plaintext peer, a broken or
  // unfinished handshake), from socket monitors of the frontend, backend and heartbeat PUB (CURVE
  // on them), and of the peer ROUTER (CURVE on the peer port).
  static constexpr int watched_endpoints = 4;
  zmq::socket_t monitors_[watched_endpoints];
  struct handshake_watch {
    std::unordered_map<int, std::string> peers;  // fd -> peer address, from ACCEPTED
    std::string_view failed_detail;              // a failure seen; its DISCONNECTED names the fd
  };
  handshake_watch watches_[watched_endpoints];
  int monitor_ports_[watched_endpoints] = {-1, -1, -1,
                                           -1};  // bound tcp ports, to check fds against
  struct monitor_event {
    std::uint16_t kind = 0;
    std::uint32_t value = 0;  // an fd, an errno or a protocol error code
  };
  std::vector<monitor_event> monitor_batch_;                      // reused by handle_monitors
  std::unordered_map<std::uint32_t, std::size_t> last_accepted_;  // fd -> its last ACCEPTED
  grant_table grants_[2];
  access_grant any_client_;
  access_grant nothing_;  // a message without a known key: every check fails
  std::string control_endpoint_;
  int wake_fd_ = -1;
  std::atomic<bool> stop_requested_{false};
  std::atomic<bool> drain_requested_{false};
  std::atomic<bool> reload_requested_{false};
  std::atomic<bool> draining_{false};
  clock::time_point drain_deadline_{};
  clock::time_point last_progress_{};  // last time the loop turned or read a request
  bound_endpoints endpoints_;
  std::uint64_t broker_id_ = 0;
  // The family (docs/family.md), when peer_listen is set. Declared before the core: destroyed
  // after it, and the links before the context.
  std::unique_ptr<peer_links> peer_links_;
  std::unique_ptr<family_core> family_;
  std::vector<service_capacity> capacity_;  // scratch: the core's capacity changes
  clock::time_point next_family_turn_{};
  std::vector<zmq_pollitem_t> poll_items_;
  std::unique_ptr<broker_core> core_;
  std::unique_ptr<metrics::metrics_server> metrics_;
  std::function<void(const broker_event&)> event_handler_;
  event_ring events_;  // the recent events, for status (the loop's thread only)
  std::function<std::optional<broker_options>()> reload_handler_;
  frames inbox_;
  protocol::batch_reader batch_;  // takes a BATCH in inbox_ apart
  frames entry_;                  // one entry of it
  zmq::message_t discard_;
  // Metric families the loop made for a query, by ticket, until the asking thread takes them
  // (right after the loop's answer). An asker that gave up leaves its entry: entries made more
  // than a minute ago are dropped.
  struct scrape {
    metrics::exposition families;
    std::unique_ptr<status_snapshot> status;  // a status query's
    clock::time_point made;
  };
  std::mutex scrapes_mu_;
  std::uint64_t scrape_ticket_ = 0;
  std::map<std::uint64_t, scrape> scrapes_;
};

}  // namespace scale0::broker_detail
