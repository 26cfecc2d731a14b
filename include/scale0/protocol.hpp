// SPDX-License-Identifier: Apache-2.0
// The Scale0 wire protocol (S0/1 and the compact S0/2 framing) and Majordomo 0.1: constants, a pure
// decoder and encoders. Nothing here touches a socket; frames are zmq::message_t values. See
// docs/protocol.md.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>
#include <zmq.hpp>

namespace scale0::protocol {

using frames = std::vector<zmq::message_t>;

inline constexpr std::string_view client_header = "S0C1";
inline constexpr std::string_view worker_header = "S0W1";
// S0/2: the same commands, with every fixed field packed into the header frame.
inline constexpr std::string_view client_header_v2 = "S0C2";
inline constexpr std::string_view worker_header_v2 = "S0W2";
inline constexpr std::string_view heartbeat_header = "S0H1";
inline constexpr std::string_view mdp_client_header = "MDPC01";
inline constexpr std::string_view mdp_worker_header = "MDPW01";

inline constexpr std::size_t max_service_name = 255;
inline constexpr std::size_t max_services_per_worker = 64;
inline constexpr std::uint32_t max_concurrency = 1024;
inline constexpr std::uint8_t flag_idempotent = 0x01;
// READY (S0/2 only): the worker registers here because a broker sent it (DISCONNECT 301). A
// broker does not send such a worker on again at once (docs/family.md, "Balancing workers").
inline constexpr std::uint8_t flag_moved = 0x02;
// READY (S0/2 only): a frame after the packed fields, if any, is the worker's display name (1-64
// bytes of printable UTF-8). Brokers from before names ignore it.
inline constexpr std::size_t max_worker_name = 64;
// READY (S0/2 only): the worker takes and sends BATCH messages (docs/protocol.md, "Batches").
inline constexpr std::uint8_t flag_batches = 0x04;
// HELLO and its WELCOME (S0/2, optional flags byte): bit 0, the sender takes BATCH messages.
inline constexpr std::uint8_t hello_batches = 0x01;
inline constexpr std::size_t max_message_length = 65535;  // S0/2 message and endpoint strings

// Native protocol versions: 1 (S0/1, one frame per field) and 2 (S0/2, fields packed in one frame).
inline constexpr std::uint8_t version_1 = 1;
inline constexpr std::uint8_t version_2 = 2;

// S0/2 only: HELLO (client) and WELCOME (broker) tell a client the family's frontends and which
// services may be sent twice (docs/family.md). A broker without them answers HELLO with 501.
enum class client_command : std::uint8_t {
  request = 1,
  reply = 2,
  ping = 3,
  pong = 4,
  hello = 5,
  welcome = 6,
  batch = 9,  // S0/2 only: several messages in one (docs/protocol.md, "Batches")
};
// WELCOME lists at most this many endpoints and this many services.
inline constexpr std::size_t max_welcome_endpoints = 256;
inline constexpr std::size_t max_welcome_services = 1000;
enum class worker_command : std::uint8_t {
  ready = 1,
  request = 2,
  reply = 3,
  heartbeat = 4,
  disconnect = 5,
  welcome = 6,
  stopping = 7,
  config = 8,  // S0/2 only: the policy of the worker's services (and, from a worker, its version)
  batch = 9,   // S0/2 only: several messages in one (docs/protocol.md, "Batches")
};

// One service's effective policy as CONFIG carries it to a worker (docs/family.md).
struct service_config {
  std::string_view service;
  std::uint32_t request_timeout_ms = 0;
  std::uint32_t max_queue = 0;
  std::uint32_t max_concurrency = 0;  // per worker; 0: no cap beyond the worker's concurrency
  std::uint8_t idempotent = 0;        // 0: the workers' flags decide, 1: yes, 2: no
};
inline constexpr std::size_t max_config_services = 1000;  // entries in one CONFIG
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
  client_hello,  // S0/2
  worker_ready,
  worker_reply,
  worker_heartbeat,
  worker_disconnect,
  worker_stopping,
  worker_config,  // S0/2: the policy version the worker knows (in `id`)
  mdp_request,
  mdp_ready,
  mdp_reply,
  mdp_heartbeat,
  mdp_disconnect,
  mdp_client_error,  // Majordomo client request with an invalid service name: REPLY in MDP form
  mdp_worker_error,  // Majordomo READY with an invalid service name: DISCONNECT
};

// A decoded message. Views point into the frames it was decoded from.
struct inbound {
  inbound_kind kind = inbound_kind::drop;
  std::uint8_t version = version_1;  // native messages: the framing the peer spoke (1 or 2)
  std::uint16_t status = 0;          // client_error / worker_error: the status to answer with
  std::string_view reason;           // errors: why (static text)
  std::uint64_t id = 0;              // client request-id, or job-id in worker replies
  std::string_view service;          // requests; first service of READY; client_error and
                                     // mdp_client_error for an invalid name: the name sent
  std::uint32_t timeout_ms = 0;      // client_request
  std::uint32_t concurrency = 0;     // worker_ready
  std::uint32_t heartbeat_ms = 0;    // worker_ready
  std::uint8_t flags = 0;            // worker_ready; client_hello: its flags (hello_batches)
  std::uint16_t reply_status = 0;    // worker_reply; worker_disconnect: its status (0: none)
  std::string_view message;          // worker_reply
  std::string_view services;         // S0/2 READY: the packed service list (see ready_services)
  std::string_view name;             // S0/2 READY: the worker's display name ("" for none)
  // Index of the first body frame (requests, replies, ping) or, for an S0/1 READY, of the first
  // service frame.
  std::size_t first = 0;
};

inbound decode_inbound(const frames& f) noexcept;

// A service name is 1-255 bytes of printable UTF-8: well-formed (no overlong forms, surrogates or
// code points above U+10FFFF), without C0 controls, DEL or C1 controls (U+0080-U+009F). The
// decoder answers any other name in a REQUEST or READY with 400 "invalid service name".
bool valid_service_name(std::string_view name) noexcept;

// The service names of a decoded READY (native of either version, or Majordomo), in order; returns
// how many were written. The views point into `f`.
using service_names = std::array<std::string_view, max_services_per_worker>;
std::size_t ready_services(const frames& f, const inbound& in, service_names& out) noexcept;

// ---- decoding at a native worker (DEALER: no identity frame) ----

enum class worker_inbound_kind : std::uint8_t {
  invalid,
  welcome,
  request,
  disconnect,
  stopping,
  config
};
struct worker_inbound {
  worker_inbound_kind kind = worker_inbound_kind::invalid;
  std::uint8_t version = version_1;
  std::uint64_t job_id = 0;
  std::string_view service;
  std::uint32_t timeout_ms = 0;
  std::uint32_t heartbeat_ms = 0;  // welcome
  std::uint32_t liveness = 0;      // welcome
  // welcome: the broker's own heartbeat interval (PUB); S0/1 has one interval for both directions
  std::uint32_t broker_heartbeat_ms = 0;
  std::string_view endpoint;    // welcome: heartbeat PUB endpoint
  std::uint64_t broker_id = 0;  // welcome
  // welcome (S0/2, optional): the family's backends, `count` str16 endpoints packed in `list`
  std::uint16_t count = 0;
  std::string_view list;
  std::uint16_t status = 0;          // disconnect (0 when absent); config: 200, or 426 (was stale)
  std::uint64_t policy_version = 0;  // config
  std::string_view message;          // disconnect
  std::size_t first = 0;             // request: first body frame
};
worker_inbound decode_for_worker(const frames& f) noexcept;

// ---- decoding at a native client (DEALER: no identity frame) ----

enum class client_inbound_kind : std::uint8_t { invalid, reply, pong, welcome };
struct client_inbound {
  client_inbound_kind kind = client_inbound_kind::invalid;
  std::uint8_t version = version_1;
  std::uint64_t id = 0;
  // welcome: the broker, the family's frontends (str16 each) and its idempotent services (str8
  // each), checked whole; read them with welcome_endpoints / welcome_services.
  std::uint64_t broker_id = 0;
  std::uint16_t endpoints = 0;
  std::string_view endpoint_list;
  std::uint16_t services = 0;
  std::string_view service_list;
  std::uint8_t flags = 0;  // welcome: the broker's flags (hello_batches), when the HELLO had some
  std::uint16_t status = 0;
  std::string_view message;
  std::size_t first = 0;  // first body frame
};
client_inbound decode_for_client(const frames& f) noexcept;
// The endpoints of a WELCOME's list (client: frontends; worker: backends), and the services of a
// client WELCOME, in order (views into the list).
std::vector<std::string_view> welcome_endpoints(std::string_view list, std::uint16_t count);
std::vector<std::string_view> welcome_services(std::string_view list, std::uint16_t count);

// ---- broker heartbeat publication ----
struct heartbeat {
  std::uint64_t broker_id = 0;
  std::uint64_t sequence = 0;
};
// Returns false for anything that is not a well-formed S0H1 message.
bool decode_heartbeat(const frames& f, heartbeat& out) noexcept;

// ---- encoding: each appends frames to `out` (the caller adds any identity frame first) ----
// `version` picks the framing: 1 (S0/1) or 2 (S0/2). In S0/2 a message or endpoint longer than
// max_message_length is cut to that length; encoders take service names as given (1-255 bytes).

void append_client_request(frames& out, std::uint64_t id, std::string_view service,
                           std::uint32_t timeout_ms, std::uint8_t version = version_1);
void append_client_reply(frames& out, std::uint64_t id, std::uint16_t status,
                         std::string_view message, std::uint8_t version = version_1);
void append_client_ping(frames& out, std::uint8_t version = version_1);
void append_client_pong(frames& out, std::uint8_t version = version_1);
// S0/2 only. Lists beyond max_welcome_endpoints / max_welcome_services are cut.
// `flags` (hello_batches): sent as the optional flags byte when not 0.
void append_client_hello(frames& out, std::uint8_t flags = 0);
void append_client_welcome(frames& out, std::uint64_t broker_id,
                           const std::vector<std::string_view>& frontends,
                           const std::vector<std::string_view>& idempotent_services,
                           std::optional<std::uint8_t> flags = std::nullopt);
// S0/2 carries `name` (a frame of its own) when it is not empty; S0/1 has no name.
void append_worker_ready(frames& out, std::uint32_t concurrency, std::uint32_t heartbeat_ms,
                         std::uint8_t flags, const std::vector<std::string_view>& services,
                         std::uint8_t version = version_1, std::string_view name = {});
// A worker's display name: 1-64 bytes, printable UTF-8 as for service names.
bool valid_worker_name(std::string_view name) noexcept;
// S0/1 WELCOME has no broker interval: an S0/1 worker takes heartbeat_ms for both directions.
// S0/2 WELCOME may end with the family's backends (count u16, then str16 each; none: nothing).
void append_worker_welcome(frames& out, std::uint32_t heartbeat_ms, std::uint32_t liveness,
                           std::string_view endpoint, std::uint64_t broker_id,
                           std::uint8_t version = version_1, std::uint32_t broker_heartbeat_ms = 0,
                           const std::vector<std::string_view>& backends = {});
void append_worker_request(frames& out, std::uint64_t job_id, std::string_view service,
                           std::uint32_t timeout_ms, std::uint8_t version = version_1);
void append_worker_reply(frames& out, std::uint64_t job_id, std::uint16_t status,
                         std::string_view message, std::uint8_t version = version_1);
void append_worker_heartbeat(frames& out, std::uint8_t version = version_1);
void append_worker_disconnect(frames& out, std::uint16_t status, std::string_view message,
                              std::uint8_t version = version_1);
void append_worker_stopping(frames& out, std::uint8_t version = version_1);
// S0/2 CONFIG, broker to worker: status (200; 426: the worker's version was stale), the policy
// version, and its services' entries (at most max_config_services).
void append_worker_config(frames& out, std::uint16_t status, std::uint64_t policy_version,
                          const std::vector<service_config>& services);
// S0/2 CONFIG, worker to broker: the policy version the worker knows.
void append_worker_config_version(frames& out, std::uint64_t policy_version);
// The entries of a decoded CONFIG (views into its frame).
std::vector<service_config> config_services(std::string_view list, std::uint16_t count);
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
