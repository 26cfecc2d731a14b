// SPDX-License-Identifier: Apache-2.0
// The Scale0 client: synchronous requests with optional Lazy Pirate retries, and a pipelined
// asynchronous API (send many, receive replies matched by request id). Not thread-safe: use one
// client per thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>
#include <zmq.hpp>

#include "scale0/security.hpp"

namespace scale0 {

struct reply {
  std::uint64_t id = 0;
  std::uint16_t status = 0;
  std::string message;
  std::vector<zmq::message_t> body;
  // Made by the client library, not the broker: no answer came in time (504), the broker was
  // lost holding the request (502), or it could not be sent again (503).
  bool local = false;
  std::string text() const;  // the body frames concatenated
};

struct client_options {
  std::chrono::milliseconds timeout{2500};  // default per-attempt timeout of request()
  int retries = 0;  // Lazy Pirate: on timeout, resend this many times (see docs/protocol.md)
  // The requests this client sends are safe to run twice: one in flight on a broker that is
  // lost is sent once more through the next broker of the list instead of ending in 502.
  bool idempotent = false;
  // While requests are outstanding the client PINGs a broker it has not heard from for an
  // interval, and takes it for lost after `liveness` intervals of silence.
  std::chrono::milliseconds heartbeat_interval{1000};
  std::uint32_t liveness = 3;
  // Wire framing: 2 (S0/2, compact: fields packed in one frame) or 1 (S0/1, for older brokers).
  std::uint8_t protocol_version = 2;
  security::curve_client curve{};  // CURVE to the broker (docs/security.md); off by default
};

class client {
 public:
  // Connects to a broker endpoint (either of its ROUTER endpoints), or to one of a list
  // ("tcp://a:5555,tcp://b:5555", taken in random order) and to the next one when it is lost.
  // Throws scale0::error (400) on an invalid endpoint.
  explicit client(std::string endpoints, client_options options = {});
  ~client();
  client(client&&) noexcept;
  client& operator=(client&&) noexcept;

  // Sends one request and waits for its reply. Returns the body of a 200 reply; throws
  // scale0::error carrying the status otherwise (504 when no reply came in time, 502 when the
  // broker was lost holding it, 503 when the send queue is full). When the broker is lost the
  // connection moves to the next broker of the list; requests outstanding are sent again there
  // when they may be (never reached the lost broker, idempotent, or retries left), and the
  // others end in 502 (docs/protocol.md, "Client state table").
  std::string request(std::string_view service, std::string_view body,
                      std::optional<std::chrono::milliseconds> timeout = std::nullopt);
  // The same, returning the whole reply of the broker (any status) instead of throwing on
  // non-200; an outcome made by the library (no answer, broker lost) is still thrown.
  reply call(std::string_view service, std::vector<zmq::message_t> body,
             std::optional<std::chrono::milliseconds> timeout = std::nullopt);

  // Pipelined use: send() returns the request id at once; receive() returns the next reply (any
  // request, any order) or nothing when `wait` passes. `timeout` is the request's deadline at the
  // broker (0: the broker's default); a request with a timeout that has no answer a second after
  // it gets a 504 made by the library. Every request sent gets exactly one reply.
  std::uint64_t send(std::string_view service, std::vector<zmq::message_t> body,
                     std::chrono::milliseconds timeout = std::chrono::milliseconds(0));
  std::uint64_t send(std::string_view service, std::string_view body,
                     std::chrono::milliseconds timeout = std::chrono::milliseconds(0));
  std::optional<reply> receive(std::chrono::milliseconds wait);

  // Coalescing for pipelined use: after hold(), send() keeps its requests and flush() sends
  // them, several as one message (a BATCH, docs/protocol.md "Batches") to a broker that takes
  // batches; after flush() send() sends at once again. Nothing waits for more: receive(),
  // call() and ping() flush first, and a full batch goes at once. hold() takes in what the broker
  // has sent already (its WELCOME says whether it takes batches); until that came, or with a
  // broker that does not take them, requests go one by one as without hold(). A held request
  // the full send queue refuses at flush() gets a 503 reply (local) from receive().
  //   c.hold();
  //   for (auto& b : bodies) c.send("echo", b);
  //   c.flush();
  void hold();
  void flush();

  // PING/PONG round trip: true when the broker answered within `wait`. Replies to pipelined
  // requests that arrive meanwhile are kept for receive().
  bool ping(std::chrono::milliseconds wait);

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace scale0
