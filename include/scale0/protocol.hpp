// The Scale0 wire protocol (S0/1) and Majordomo 0.1 framing: constants, a pure decoder and
// encoders. Nothing here touches a socket; frames are zmq::message_t values. See docs/protocol.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>
#include <zmq.hpp>

namespace scale0::protocol {

using frames = std::vector<zmq::message_t>;

inline constexpr std::string_view client_header = "S0C1";
inline constexpr std::string_view worker_header = "S0W1";
inline constexpr std::string_view heartbeat_header = "S0H1";
inline constexpr std::string_view mdp_client_header = "MDPC01";
inline constexpr std::string_view mdp_worker_header = "MDPW01";

inline constexpr std::size_t max_service_name = 255;
inline constexpr std::size_t max_services_per_worker = 64;
inline constexpr std::uint32_t max_concurrency = 1024;
inline constexpr std::uint8_t flag_idempotent = 0x01;

enum class client_command : std::uint8_t { request = 1, reply = 2, ping = 3, pong = 4 };
enum class worker_command : std::uint8_t {
  ready = 1,
  request = 2,
  reply = 3,
  heartbeat = 4,
  disconnect = 5,
  welcome = 6,
  stopping = 7,
};
enum class mdp_command : std::uint8_t {
  ready = 1,
  request = 2,
  reply = 3,
  heartbeat = 4,
  disconnect = 5
};

// ---- decoding at the broker (frame 0 is the ROUTER peer identity) ----

enum class inbound_kind : std::uint8_t {
  drop,          // cannot be answered (no recognisable header): drop and count
  client_error,  // native client broke the protocol: answer REPLY(id, status, reason)
  worker_error,  // native worker broke the protocol: answer DISCONNECT(status, reason)
  client_request,
  client_ping,
  worker_ready,
  worker_reply,
  worker_heartbeat,
  worker_disconnect,
  worker_stopping,
  mdp_request,
  mdp_ready,
  mdp_reply,
  mdp_heartbeat,
  mdp_disconnect,
};

// A decoded message. Views point into the frames it was decoded from.
struct inbound {
  inbound_kind kind = inbound_kind::drop;
  std::uint16_t status = 0;        // client_error / worker_error: the status to answer with
  std::string_view reason;         // errors: why (static text)
  std::uint64_t id = 0;            // client request-id, or job-id in worker replies
  std::string_view service;        // requests; first service of READY
  std::uint32_t timeout_ms = 0;    // client_request
  std::uint32_t concurrency = 0;   // worker_ready
  std::uint32_t heartbeat_ms = 0;  // worker_ready
  std::uint8_t flags = 0;          // worker_ready
  std::uint16_t reply_status = 0;  // worker_reply
  std::size_t first =
      0;  // index of the first body frame (requests, replies), first service (READY)
};

inbound decode_inbound(const frames& f) noexcept;

// ---- decoding at a native worker (DEALER: no identity frame) ----

enum class worker_inbound_kind : std::uint8_t { invalid, welcome, request, disconnect, stopping };
struct worker_inbound {
  worker_inbound_kind kind = worker_inbound_kind::invalid;
  std::uint64_t job_id = 0;
  std::string_view service;
  std::uint32_t timeout_ms = 0;
  std::uint32_t heartbeat_ms = 0;  // welcome
  std::uint32_t liveness = 0;      // welcome
  std::string_view endpoint;       // welcome: heartbeat PUB endpoint
  std::uint64_t broker_id = 0;     // welcome
  std::uint16_t status = 0;        // disconnect (0 when absent)
  std::string_view message;        // disconnect
  std::size_t first = 0;           // request: first body frame
};
worker_inbound decode_for_worker(const frames& f) noexcept;

// ---- decoding at a native client (DEALER: no identity frame) ----

enum class client_inbound_kind : std::uint8_t { invalid, reply, pong };
struct client_inbound {
  client_inbound_kind kind = client_inbound_kind::invalid;
  std::uint64_t id = 0;
  std::uint16_t status = 0;
  std::string_view message;
  std::size_t first = 0;  // first body frame
};
client_inbound decode_for_client(const frames& f) noexcept;

// ---- broker heartbeat publication ----
struct heartbeat {
  std::uint64_t broker_id = 0;
  std::uint64_t sequence = 0;
};
// Returns false for anything that is not a well-formed S0H1 message.
bool decode_heartbeat(const frames& f, heartbeat& out) noexcept;

// ---- encoding: each appends frames to `out` (the caller adds any identity frame first) ----

void append_client_request(frames& out, std::uint64_t id, std::string_view service,
                           std::uint32_t timeout_ms);
void append_client_reply(frames& out, std::uint64_t id, std::uint16_t status,
                         std::string_view message);
void append_client_ping(frames& out);
void append_client_pong(frames& out);
void append_worker_ready(frames& out, std::uint32_t concurrency, std::uint32_t heartbeat_ms,
                         std::uint8_t flags, const std::vector<std::string_view>& services);
void append_worker_welcome(frames& out, std::uint32_t heartbeat_ms, std::uint32_t liveness,
                           std::string_view endpoint, std::uint64_t broker_id);
void append_worker_request(frames& out, std::uint64_t job_id, std::string_view service,
                           std::uint32_t timeout_ms);
void append_worker_reply(frames& out, std::uint64_t job_id, std::uint16_t status,
                         std::string_view message);
void append_worker_heartbeat(frames& out);
void append_worker_disconnect(frames& out, std::uint16_t status, std::string_view message);
void append_worker_stopping(frames& out);
void append_heartbeat(frames& out, std::uint64_t broker_id, std::uint64_t sequence);

void append_mdp_client_reply(frames& out, std::string_view service);
void append_mdp_worker_request(frames& out, std::uint64_t job_id);
void append_mdp_worker_command(frames& out, mdp_command command);

// ---- small helpers shared by the encoders, the core and the libraries ----
std::string_view view(const zmq::message_t& m) noexcept;
std::uint64_t read_u64(const zmq::message_t& m) noexcept;  // requires size() == 8
std::uint32_t read_u32(const zmq::message_t& m) noexcept;  // requires size() == 4
std::uint16_t read_u16(const zmq::message_t& m) noexcept;  // requires size() == 2
zmq::message_t u64_frame(std::uint64_t v);
zmq::message_t u32_frame(std::uint32_t v);
zmq::message_t u16_frame(std::uint16_t v);
inline zmq::message_t str_frame(std::string_view s) {
  return zmq::message_t(s.data(), s.size());
}

}  // namespace scale0::protocol
