// SPDX-License-Identifier: Apache-2.0
// The worker library's core: the state machine of docs/protocol.md, "Worker state table (native
// worker library)": registration, heartbeats both ways, broker liveness, reconnection over the
// broker list with backoff, re-registration, graceful stop. It does no I/O, runs no thread and
// reads no clock: the I/O shell (worker.cpp) hands it what its sockets read, the handlers' results
// and the current time, and it acts through an `io`. Tests drive it with a fake io and fake time.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/batch.hpp"
#include "scale0/protocol.hpp"
#include "scale0/worker.hpp"

namespace scale0::detail {

// The states of the doc's worker table. connecting: no connection, waiting out a backoff.
enum class worker_state : std::uint8_t { connecting, registering, ready, stopping, stopped };

// "tcp://*:5557" or "tcp://0.0.0.0:5557" means "the host you reached the broker at": that host is
// taken from `broker`, the endpoint the worker is connected to.
std::string resolve_endpoint(const std::string& advertised, const std::string& broker);

class worker_core {
 public:
  using clock = std::chrono::steady_clock;
  using time_point = clock::time_point;

  // A request on its way to a handler. `epoch` names the connection it came on: a result for an
  // older connection is dropped (the broker that sent the request is gone).
  struct queued_job {
    std::uint64_t epoch = 0;
    std::uint64_t id = 0;
    scale0::job work;
  };

  // What the core does to the world. None of these may call back into the core.
  class io {
   public:
    virtual ~io() = default;
    // Opens a DEALER connected to `endpoint` (nothing is open when this is called).
    virtual void open(const std::string& endpoint) = 0;
    // Closes the DEALER and, if one is open, the SUB.
    virtual void close() = 0;
    // Sends on the DEALER without blocking (a message the socket cannot take is dropped). Called
    // only while the DEALER is open. The frames may be taken.
    virtual void send(protocol::frames& msg) = 0;
    // Opens a SUB to the broker's heartbeat endpoint, subscribed to S0H1.
    virtual void subscribe(const std::string& endpoint) = 0;
    // Hands a request to a handler; its result comes back through on_result().
    virtual void run_job(queued_job&& job) = 0;
    // A human-readable event: registered, lost broker, ...
    virtual void event(const std::string& what) = 0;
    // A graceful stop began: for service managers (systemd STOPPING=1).
    virtual void stopping() {}
  };

  // The loop must turn at least this often (next_wake() never asks for a longer sleep) ...
  static constexpr std::chrono::milliseconds max_sleep{100};
  // ... so a gap between two tick()s longer than this means the process itself was stopped or
  // starved: the broker is given one more of its intervals before it is judged silent.
  static constexpr std::chrono::milliseconds stall_gap{1000};

  // `options` are valid (the shell checked them); `brokers` is the broker list, in order of
  // preference (split_endpoint_list), not empty.
  worker_core(const worker_options& options, std::vector<std::string> brokers, io& out);
  worker_core(const worker_core&) = delete;
  worker_core& operator=(const worker_core&) = delete;

  // Connects to the first broker of the list and sends READY.
  void start(time_point now);
  // Sends the replies held for a batch (they leave as one message). The shell calls it once per
  // turn of its loop, before it waits.
  void flush();
  bool batches() const noexcept { return batches_; }  // agreed with the current broker
  // A message read from the DEALER. The core may take frames of `msg` (a request's body).
  void on_broker_message(time_point now, protocol::frames& msg);
  // A message read from the SUB.
  void on_heartbeat(time_point now, const protocol::frames& msg);
  // A handler finished the job (epoch, id) of a queued_job; its body frames are moved out.
  void on_result(time_point now, std::uint64_t epoch, std::uint64_t id, job_result&& result);
  // Graceful stop: STOPPING (or DISCONNECT when not registered), then finish what is held.
  // Further calls do nothing.
  void stop(time_point now);
  // Timers: heartbeats, broker liveness, reconnection, the stop's deadlines. Call once per turn
  // of the loop, and at the latest at next_wake().
  void tick(time_point now);
  time_point next_wake(time_point now) const noexcept;

  worker_state state() const noexcept { return state_; }
  bool finished() const noexcept { return state_ == worker_state::stopped; }
  // The broker endpoint connected to (or, while connecting, the next one to try).
  const std::string& endpoint() const noexcept { return brokers_[current_]; }
  std::uint32_t in_flight() const noexcept { return in_flight_; }  // jobs given to handlers
  std::uint64_t epoch() const noexcept { return epoch_; }          // the current connection
  std::uint64_t moves() const noexcept { return moves_; }          // brokers that sent us elsewhere
  // The service policy version the broker last sent (CONFIG); 0: none yet.
  std::uint64_t policy_version() const noexcept { return policy_version_; }
  std::chrono::milliseconds interval() const noexcept { return interval_; }  // our heartbeats

 private:
  void connect(time_point now);
  void close_connection();
  void lose_broker(time_point now, const std::string& why);
  // A broker sent us to another (DISCONNECT 301): connect there now, no backoff.
  void move_to(time_point now, const std::string& endpoint, const std::string& why);
  static bool valid_broker_endpoint(std::string_view endpoint) noexcept;
  static constexpr std::size_t max_brokers = 64;
  void send(protocol::frames& msg);
  void begin_stop(time_point now);
  bool stop_done(time_point now);

  worker_options options_;
  std::vector<std::string> brokers_;
  io& io_;

  worker_state state_ = worker_state::connecting;
  bool connected_ = false;   // a DEALER is open
  std::size_t current_ = 0;  // index in brokers_
  std::size_t failed_ = 0;   // brokers lost in a row since the last registration (this round)
  std::uint64_t epoch_ = 0;  // connections opened
  std::uint64_t broker_id_ = 0;
  std::uint64_t moves_ = 0;
  bool moved_ = false;  // the next READY says a broker sent us (S0/2 flag_moved)
  std::uint64_t policy_version_ = 0;
  std::chrono::milliseconds interval_{1000};         // ours: how often we send HEARTBEAT
  std::chrono::milliseconds broker_interval_{1000};  // the broker's: how often it publishes
  std::uint32_t liveness_ = 3;
  std::chrono::milliseconds backoff_;
  time_point broker_alive_until_{};
  time_point next_heartbeat_{};
  time_point reconnect_at_{};
  time_point ack_deadline_{};
  time_point drain_deadline_{};
  time_point last_turn_{};  // the last tick()
  bool stopping_acked_ = false;
  bool silence_reported_ = false;
  std::uint32_t in_flight_ = 0;  // jobs with the handlers, from any connection
  std::uint32_t held_ = 0;       // of those, the ones the current connection's broker awaits
  time_point holding_until_{};   // the latest deadline of the requests held (an upper bound)
  protocol::frames out_;
  bool ask_batches_ = false;  // the next READY asks for batches
  bool batches_ = false;      // the current broker agreed: replies are held for flush()
  protocol::batch_writer box_{0};
  protocol::frames flushed_;
};

}  // namespace scale0::detail
