// SPDX-License-Identifier: Apache-2.0
// The client library's core: request ids, what is outstanding, the broker's liveness, Lazy
// Pirate retries and failover between the brokers of a list. It does no I/O and reads no clock:
// the shell (client.cpp) owns the socket, passes the time in, and the core sends through `io`.
// Every request it accepts ends in exactly one reply: the broker's, or one the core makes (504
// when no answer came in time, 502 when the broker was lost holding it, 503 when it could not be
// sent again). Tests drive it with a fake io and a fake clock (tests/unit/client_core_test.cpp).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <queue>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "protocol/batch.hpp"
#include "scale0/client.hpp"
#include "scale0/protocol.hpp"

namespace scale0::detail {

using time_point = std::chrono::steady_clock::time_point;
using std::chrono::milliseconds;

struct client_core_options {
  std::vector<std::string> brokers;  // at least one; tried in this order, round and round
  milliseconds heartbeat_interval{1000};
  std::uint32_t liveness = 3;
  std::uint8_t protocol_version = 2;
  bool idempotent = false;  // every request may be sent once more through another broker
};

class client_core {
 public:
  class io {
   public:
    virtual ~io() = default;
    // Replaces the connection with a fresh one to `endpoint`: nothing queued on the old one is
    // delivered any more, and nothing arrives from it.
    virtual void open(const std::string& endpoint) = 0;
    // False when nothing was sent (the send queue is full); the frames are then left as they are.
    virtual bool send(protocol::frames& msg) = 0;
  };

  // How a request is followed up when no answer comes.
  struct request_options {
    milliseconds timeout{0};  // the deadline at the broker; 0: the broker's default
    // When the core gives up waiting for an answer (no local deadline when not set).
    std::optional<time_point> give_up_at;
    int retries = 0;      // Lazy Pirate: at give_up_at, send again on a fresh connection
    bool waited = false;  // call(): the answer goes to take_call(), not take()
  };

  client_core(client_core_options options, io& out);

  // Opens the connection to the first broker of the list.
  void start(time_point now);

  // Sends a request; returns its id, or nothing when the send queue is full (nothing was sent).
  std::optional<std::uint64_t> send(time_point now, std::string_view service,
                                    protocol::frames& body, const request_options& o);
  // Sends a PING; pongs() counts the answers.
  bool ping(time_point now);

  // Coalescing (docs/protocol.md, "Batches"): after hold(), send() keeps the requests it would
  // send, and flush() sends them, several as one BATCH when the broker said it takes batches
  // (before its WELCOME, or from a broker that does not, each goes at once as without hold()).
  // flush() also ends the holding. Nothing waits for more: a PING, a new connection or a full
  // batch sends what is held first. A held request the send queue refuses at flush() ends in a
  // 503 made here, as one send() refuses at once.
  void hold() noexcept { holding_ = true; }
  void flush();
  bool holding() const noexcept { return holding_; }
  bool batches() const noexcept { return batches_; }  // the broker's WELCOME said it takes them

  // Anything that arrived on the connection (one message, its frames).
  void on_message(time_point now, protocol::frames& in);
  // The connection's handshake with the broker completed: from now on what was sent may have
  // reached it.
  void on_connected(time_point now);
  // The connection that had completed a handshake closed (the broker died or restarted, or the
  // network reset it).
  void on_disconnected(time_point now);
  // Timers: local deadlines, PINGs while something is outstanding, the broker's liveness.
  void tick(time_point now);
  // When tick() next has something to do (a time far ahead when nothing is outstanding).
  time_point next_wake(time_point now) const;

  // The answer to a call() request, once it has one.
  std::optional<reply> take_call(std::uint64_t id);
  // The next answered pipelined request.
  std::optional<reply> take();
  bool has_answers() const { return !answers_.empty(); }

  std::uint64_t pongs() const { return pongs_; }
  std::size_t outstanding() const { return pending_.size(); }
  const std::string& broker() const { return brokers_[current_]; }
  std::uint64_t failovers() const { return failovers_; }
  // Endpoints learned (redirects, WELCOMEs) added to the list at most; the oldest make room.
  static constexpr std::size_t max_learned = 64;
  std::uint64_t redirects() const { return redirects_; }  // moves a draining broker asked for
  std::uint64_t welcomes() const { return welcomes_; }    // family WELCOMEs received
  // The brokers it knows: the list it was given, then the family's frontends it learned.
  const std::vector<std::string>& brokers() const { return brokers_; }
  std::uint64_t stale_replies() const { return stale_; }

 private:
  struct pending {
    std::string service;           // kept with the body
    protocol::frames body;         // kept while it may be sent again
    std::uint32_t timeout_ms = 0;  // per attempt
    time_point sent_at{};          // the attempt's first send: its deadline counts from it
    std::optional<time_point> give_up_at;
    int retries = 0;  // Lazy Pirate sends left
    int resends = 0;  // failover sends left (idempotent: one)
    bool waited = false;
    bool held = false;  // not at any broker: handed back by a redirect, or sent while moving
    int redirects = 0;
  };
  static constexpr int max_redirects = 3;  // per request: brokers that may hand it back

  bool transmit(std::uint64_t id, std::string_view service, pending& p, bool keep_body,
                std::uint32_t timeout_ms);
  void finish(std::uint64_t id, pending& p, std::uint16_t code, std::string message);
  void deliver(reply&& r, bool waited);
  // Moves to the next broker: every request outstanding is sent again (when it never reached
  // the old broker, or may be sent twice) or ends here with `code` and `why`.
  void fail_over(time_point now, std::uint16_t code, const std::string& why,
                 std::uint64_t retried_id);
  void expire(time_point now);
  void arm(std::uint64_t id, time_point at);
  void open_connection(const std::string& endpoint);
  void hello(std::uint8_t flags);
  void send_held();
  // A draining broker handed request `id` back (301) and names where to go.
  void redirected(time_point now, std::uint64_t id, pending& p, std::string_view target,
                  protocol::frames& in, std::size_t first);
  // Moves to the redirect target once nothing is left at the old broker: what was held goes.
  void maybe_move(time_point now);
  // The index of `endpoint` in the list, added (bounded) when it is not there.
  std::size_t learn(const std::string& endpoint);
  void erase(std::unordered_map<std::uint64_t, pending>::iterator it);
  // Sends p again on the current connection with what is left of its time; false: it ended.
  bool resend(time_point now, std::uint64_t id, pending& p);

  client_core_options options_;
  io& io_;
  std::vector<std::string> brokers_;
  std::size_t current_ = 0;
  std::uint64_t next_id_ = 1;
  std::unordered_map<std::uint64_t, pending> pending_;
  // Local deadlines, earliest first; entries of requests already answered are skipped.
  using deadline = std::pair<time_point, std::uint64_t>;
  std::priority_queue<deadline, std::vector<deadline>, std::greater<>> deadlines_;
  std::deque<reply> answers_;  // answered pipelined requests, in order of answer
  std::optional<reply> call_answer_;
  bool connected_ = false;  // the current connection completed a handshake
  time_point heard_{};      // last message from the broker (or when waiting began)
  time_point last_tick_{};  // the caller's last turn of the loop
  time_point next_ping_{};
  std::uint64_t pongs_ = 0;
  std::uint64_t failovers_ = 0;
  std::uint64_t redirects_ = 0;
  std::uint64_t welcomes_ = 0;
  std::set<std::string, std::less<>> idempotent_;  // services the broker said may go twice
  std::optional<std::string> moving_to_;           // a redirect target, until nothing is left here
  std::size_t held_ = 0;                           // pending requests that are held
  std::size_t learned_ = 0;
  std::uint64_t stale_ = 0;
  protocol::frames out_;
  std::uint8_t hello_flags_ = 0;  // the flags of the HELLO not yet answered (0: none)
  bool batches_ = false;          // the current broker takes batches (its WELCOME's flags)
  bool holding_ = false;          // between hold() and flush()
  protocol::batch_writer box_{0};
  std::vector<std::uint64_t> boxed_;  // the ids of the requests in box_
  protocol::frames batch_out_;
};

}  // namespace scale0::detail
