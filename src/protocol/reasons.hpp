// SPDX-License-Identifier: Apache-2.0
// Every reason text the broker writes, in one place: the messages of the error REPLYs and
// DISCONNECTs it sends (the decoder's, codec.cpp, and the core's, broker_core.cpp) and the details
// of its events (why a worker left, what was dropped or refused). Clients, workers, operators'
// log searches and the black-box tests read these texts: change one only with the tests that
// quote it. A text built at run time takes its fixed part from here. Internal to the library.
#pragma once

#include <string_view>

namespace scale0::reasons {

using text = std::string_view;

// ---- Decoding: malformed native messages (answered 400, 501 or 505) ----

inline constexpr text missing_command_frame = "missing or malformed command frame";  // S0/1
inline constexpr text missing_command_byte = "missing command byte";                 // S0/2
inline constexpr text unknown_command = "unknown command";
inline constexpr text invalid_service_name = "invalid service name";
inline constexpr text bad_client_version =
    "protocol version not supported: this broker speaks S0C1 and S0C2";
inline constexpr text bad_worker_version =
    "protocol version not supported: this broker speaks S0W1 and S0W2";

// Client commands.
inline constexpr text request_frames = "REQUEST needs request-id, service and timeout frames";
inline constexpr text request_id_size = "request-id must be 8 bytes";
inline constexpr text timeout_size = "timeout must be 4 bytes";
inline constexpr text request_fields =
    "REQUEST needs request-id, timeout and service, nothing more";
inline constexpr text ping_fields = "PING has no fields";
inline constexpr text hello_fields = "HELLO has at most a flags byte";
inline constexpr text malformed_batch = "malformed BATCH";

// Worker commands. READY's rules are checked once for both framings (ready.cpp).
inline constexpr text ready_fields = "READY needs concurrency, heartbeat, flags and a service";
inline constexpr text ready_field_size = "READY field of the wrong size";
inline constexpr text ready_trailing_frames = "READY has at most a name after its fields";
inline constexpr text concurrency_range = "concurrency must be 1-1024";
inline constexpr text unknown_ready_flags = "unknown READY flags";
inline constexpr text invalid_worker_name = "invalid worker name";
inline constexpr text ready_list_truncated = "READY service list truncated";
inline constexpr text too_many_ready_services = "too many services in READY";
inline constexpr text ready_needs_service = "READY needs a service";
inline constexpr text reply_frames = "REPLY needs job-id (8 bytes), status (2 bytes) and message";
inline constexpr text reply_fields = "REPLY needs job-id, status and message, nothing more";
inline constexpr text heartbeat_fields = "HEARTBEAT has no fields";
inline constexpr text stopping_fields = "STOPPING has no fields";
inline constexpr text config_fields = "CONFIG needs a version";

// ---- The core's answers to clients (error REPLYs) ----

inline constexpr text request_too_large = "request too large";
inline constexpr text reply_too_large = "reply too large";
inline constexpr text broker_draining = "broker draining";
inline constexpr text broker_shutting_down = "broker shutting down";
inline constexpr text client_inflight = "too many requests in flight for this client";
inline constexpr text too_many_services = "too many services";
inline constexpr text no_worker = "no worker for service";
inline constexpr text queue_full = "service queue full";
inline constexpr text queue_bytes_full = "service queue full (bytes)";
inline constexpr text deadline_queued = "deadline passed while queued";
inline constexpr text deadline_held = "deadline passed while a worker held the request";
inline constexpr text worker_lost = "worker lost while holding the request";
inline constexpr text peer_lost = "peer broker lost while holding the request";
inline constexpr text unknown_management = "unknown management service";
inline constexpr text key_may_not_call = "this key may not call this service";
inline constexpr text status_needs_admin =
    "scale0.status needs an admin key (--admin-keys) or a listed client key";

// ---- The core's DISCONNECTs to workers ----

inline constexpr text unknown_worker = "unknown worker: send READY first";
inline constexpr text already_registered = "already registered";
inline constexpr text ready_too_large = "READY too large";
inline constexpr text too_many_worker_services = "too many services for one worker";
inline constexpr text reserved_service = "service name is reserved";
inline constexpr text key_may_not_serve = "this key may not serve this service";
inline constexpr text key_may_no_longer_serve = "this key may no longer serve these services";
inline constexpr text heartbeat_expired = "heartbeat expired";

// ---- Why a worker left (worker_left events; with scale0::worker_departure) ----
// Also: heartbeat_expired, ready_too_large, broker_shutting_down, and a decoder's text for a
// worker that broke the protocol.

inline constexpr text disconnected = "disconnected";
inline constexpr text sent_ready_twice = "sent READY twice";
inline constexpr text unreachable = "unreachable";
inline constexpr text key_revoked = "its key was revoked";
inline constexpr text moved_to_peer = "moved to a peer";  // + " (endpoint)"
inline constexpr text sent_to_needier_peer =
    "sent to a peer that needs it more";             // + " (endpoint)"
inline constexpr text peer_restarted = "restarted";  // a peer broker's link came up again

// ---- What was dropped (dropped events) ----

inline constexpr text malformed_message = "malformed message";
inline constexpr text not_a_forward = "not a forwarded request, on the peer endpoint";
inline constexpr text not_a_peer_reply = "not a reply, on a link to a peer";
inline constexpr text unknown_reply = "reply for an unknown or already answered request";
inline constexpr text unknown_peer_reply = "reply from a peer for an unknown or answered request";
inline constexpr text late_reply = "late reply (the client already had 504)";
inline constexpr text late_peer_reply = "late reply from a peer (the client already had 504)";
inline constexpr text unroutable = "message to a peer that is gone or not reading";
inline constexpr text client_gone = "answer to a client that is gone";
inline constexpr text backlog_full = "answer to a client that is not reading: backlog full";

// ---- Refusals (refused events; the labels are scale0_refused_total's, docs/security.md) ----

inline constexpr text label_service_not_allowed = "service_not_allowed";
inline constexpr text label_status_not_allowed = "status_not_allowed";
inline constexpr text label_key_revoked = "key_revoked";
inline constexpr text client_called_forbidden = "a client key called a service it is not allowed";
inline constexpr text worker_announced_forbidden =
    "a worker key announced a service it is not allowed";
inline constexpr text status_without_admin = "a key that is not an admin key asked scale0.status";
inline constexpr text worker_key_removed =
    "a worker's key was removed, or no longer allows what it serves";  // + " (key KEY)"

}  // namespace scale0::reasons
