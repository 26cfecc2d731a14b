// SPDX-License-Identifier: Apache-2.0
// What the broker decodes: client and worker messages in S0/1 (fields in frames), S0/2 (fields
// packed into one frame) and Majordomo 0.1. A pure function over frames: every size is checked
// before a field is read, and nothing here throws or asserts on input.
#include "protocol/packing.hpp"
#include "protocol/ready.hpp"
#include "protocol/reasons.hpp"
#include "scale0/error.hpp"
#include "scale0/protocol.hpp"

namespace scale0::protocol {

using packing::append_packed;
using packing::reader;
using packing::str16_size;
using packing::str8_size;
using packing::writer;

namespace {

bool valid_service(const zmq::message_t& m) noexcept {
  return valid_service_name(view(m));
}

inbound client_error(std::uint16_t code, std::string_view reason, const frames& f) noexcept {
  inbound in;
  in.kind = inbound_kind::client_error;
  in.status = code;
  in.reason = reason;
  if (f.size() > 4 && f[4].size() == 8) in.id = read_u64(f[4]);
  return in;
}

inbound worker_error(std::uint16_t code, std::string_view reason) noexcept {
  inbound in;
  in.kind = inbound_kind::worker_error;
  in.status = code;
  in.reason = reason;
  return in;
}

inbound decode_client(const frames& f) noexcept {
  // f: identity · "" · S0C1 · command · ...
  if (f.size() < 4 || f[3].size() != 1)
    return client_error(status::bad_request, reasons::missing_command_frame, f);
  const auto cmd = static_cast<client_command>(*static_cast<const std::uint8_t*>(f[3].data()));
  inbound in;
  switch (cmd) {
    case client_command::request:
      if (f.size() < 7) return client_error(status::bad_request, reasons::request_frames, f);
      if (f[4].size() != 8) return client_error(status::bad_request, reasons::request_id_size, f);
      if (f[6].size() != 4) return client_error(status::bad_request, reasons::timeout_size, f);
      if (!valid_service(f[5])) {
        in = client_error(status::bad_request, reasons::invalid_service_name, f);
        in.service = view(f[5]);
        return in;
      }
      in.kind = inbound_kind::client_request;
      in.id = read_u64(f[4]);
      in.service = view(f[5]);
      in.timeout_ms = read_u32(f[6]);
      in.first = 7;
      return in;
    case client_command::ping:
      in.kind = inbound_kind::client_ping;
      in.first = 4;
      return in;
    default:
      return client_error(status::not_implemented, reasons::unknown_command, f);
  }
}

inbound decode_ready(const frames& f) noexcept {
  // identity · "" · S0W1 · 0x01 · concurrency · heartbeat-ms · flags · service...
  if (f.size() < 8) return worker_error(status::bad_request, reasons::ready_fields);
  if (f[4].size() != 4 || f[5].size() != 4 || f[6].size() != 1)
    return worker_error(status::bad_request, reasons::ready_field_size);
  inbound in;
  in.concurrency = read_u32(f[4]);
  in.heartbeat_ms = read_u32(f[5]);
  in.flags = *static_cast<const std::uint8_t*>(f[6].data());
  const ready_fields fields{in.concurrency, in.flags, flag_idempotent, std::nullopt};
  if (const std::string_view why = check_ready(fields, ready_service_list(f, 7)); !why.empty())
    return worker_error(status::bad_request, why);
  in.kind = inbound_kind::worker_ready;
  in.service = view(f[7]);
  in.first = 7;
  return in;
}

inbound decode_worker(const frames& f) noexcept {
  if (f.size() < 4 || f[3].size() != 1)
    return worker_error(status::bad_request, reasons::missing_command_frame);
  const auto cmd = static_cast<worker_command>(*static_cast<const std::uint8_t*>(f[3].data()));
  inbound in;
  switch (cmd) {
    case worker_command::ready:
      return decode_ready(f);
    case worker_command::reply:
      if (f.size() < 7 || f[4].size() != 8 || f[5].size() != 2)
        return worker_error(status::bad_request, reasons::reply_frames);
      in.kind = inbound_kind::worker_reply;
      in.id = read_u64(f[4]);
      in.reply_status = read_u16(f[5]);
      in.message = view(f[6]);
      in.first = 7;
      return in;
    case worker_command::heartbeat:
      in.kind = inbound_kind::worker_heartbeat;
      return in;
    case worker_command::disconnect:
      in.kind = inbound_kind::worker_disconnect;
      if (f.size() >= 5 && f[4].size() == 2) in.reply_status = read_u16(f[4]);  // optional
      return in;
    case worker_command::stopping:
      in.kind = inbound_kind::worker_stopping;
      return in;
    default:
      return worker_error(status::not_implemented, reasons::unknown_command);
  }
}

inbound decode_mdp_worker(const frames& f) noexcept {
  inbound in;  // invalid MDP messages are dropped, as RFC 7 says
  if (f.size() < 4 || f[3].size() != 1) return in;
  switch (static_cast<mdp_command>(*static_cast<const std::uint8_t*>(f[3].data()))) {
    case mdp_command::ready:
      if (f.size() != 5) return in;
      if (!valid_service(f[4])) {  // answered: DISCONNECT, so it is not left waiting for work
        in.kind = inbound_kind::mdp_worker_error;
        in.status = status::bad_request;
        in.reason = reasons::invalid_service_name;
        return in;
      }
      in.kind = inbound_kind::mdp_ready;
      in.service = view(f[4]);
      in.first = 4;
      return in;
    case mdp_command::reply:
      // client address (our job-id) · "" · body. Any client address is valid MDP; one that is
      // not 8 bytes cannot be a job-id we issued, so it gets an id that matches no request.
      if (f.size() < 6 || f[5].size() != 0) return in;
      in.kind = inbound_kind::mdp_reply;
      in.id = f[4].size() == 8 ? read_u64(f[4]) : ~std::uint64_t{0};
      in.reply_status = status::ok;
      in.first = 6;
      return in;
    case mdp_command::heartbeat:
      in.kind = inbound_kind::mdp_heartbeat;
      return in;
    case mdp_command::disconnect:
      in.kind = inbound_kind::mdp_disconnect;
      return in;
    default:
      return in;
  }
}

// ---- S0/2: every fixed field packed into the header frame ----

// The packed frame after its 4-byte header: command byte, then fields.
constexpr std::size_t v2_head = packing::head_size;

bool valid_service(std::string_view s) noexcept {
  return valid_service_name(s);
}

inbound client_error_v2(std::uint16_t code, std::string_view reason,
                        std::string_view packed) noexcept {
  inbound in;
  in.kind = inbound_kind::client_error;
  in.version = version_2;
  in.status = code;
  in.reason = reason;
  if (packed.size() >= v2_head + 8) in.id = reader(packed.substr(v2_head)).u64();
  return in;
}

inbound worker_error_v2(std::uint16_t code, std::string_view reason) noexcept {
  inbound in = worker_error(code, reason);
  in.version = version_2;
  return in;
}

inbound decode_client_v2(const frames& f) noexcept {
  // f: identity · "" · S0C2 command fields · body...
  const std::string_view packed = view(f[2]);
  if (packed.size() < v2_head)
    return client_error_v2(status::bad_request, reasons::missing_command_byte, packed);
  reader r(packed.substr(v2_head));
  inbound in;
  in.version = version_2;
  in.first = 3;
  switch (static_cast<client_command>(packing::command_of(packed))) {
    case client_command::request:
      in.id = r.u64();
      in.timeout_ms = r.u32();
      in.service = r.str8();
      if (!r.complete())
        return client_error_v2(status::bad_request, reasons::request_fields, packed);
      if (!valid_service(in.service)) {
        const std::string_view name = in.service;
        in = client_error_v2(status::bad_request, reasons::invalid_service_name, packed);
        in.service = name;
        return in;
      }
      in.kind = inbound_kind::client_request;
      return in;
    case client_command::ping:
      if (!r.complete()) return client_error_v2(status::bad_request, reasons::ping_fields, packed);
      in.kind = inbound_kind::client_ping;
      return in;
    case client_command::hello:
      if (!r.empty()) in.flags = r.u8();  // optional: hello_batches
      if (!r.complete()) return client_error_v2(status::bad_request, reasons::hello_fields, packed);
      in.kind = inbound_kind::client_hello;
      return in;
    case client_command::batch: {  // a well-formed batch is taken apart before decoding
      in = client_error_v2(status::bad_request, reasons::malformed_batch, packed);
      in.id = 0;  // what follows the command byte is a count, not a request-id
      return in;
    }
    default:
      return client_error_v2(status::not_implemented, reasons::unknown_command, packed);
  }
}

inbound decode_worker_v2(const frames& f) noexcept {
  const std::string_view packed = view(f[2]);
  if (packed.size() < v2_head)
    return worker_error_v2(status::bad_request, reasons::missing_command_byte);
  reader r(packed.substr(v2_head));
  inbound in;
  in.version = version_2;
  in.first = 3;
  switch (static_cast<worker_command>(packing::command_of(packed))) {
    case worker_command::ready: {
      // S0W2 0x01 concurrency heartbeat-ms flags service... · [name]
      in.concurrency = r.u32();
      in.heartbeat_ms = r.u32();
      in.flags = r.u8();
      if (!r.ok()) return worker_error_v2(status::bad_request, reasons::ready_fields);
      if (f.size() > 4) return worker_error_v2(status::bad_request, reasons::ready_trailing_frames);
      if (f.size() == 4) in.name = view(f[3]);
      in.services = r.rest();
      const ready_fields fields{
          in.concurrency, in.flags,
          static_cast<std::uint8_t>(flag_idempotent | flag_moved | flag_batches),
          f.size() == 4 ? std::optional(in.name) : std::nullopt};
      if (const std::string_view why = check_ready(fields, ready_service_list(in.services));
          !why.empty())
        return worker_error_v2(status::bad_request, why);
      in.service = reader(in.services).str8();
      in.kind = inbound_kind::worker_ready;
      return in;
    }
    case worker_command::reply:
      in.id = r.u64();
      in.reply_status = r.u16();
      in.message = r.str16();
      if (!r.complete()) return worker_error_v2(status::bad_request, reasons::reply_fields);
      in.kind = inbound_kind::worker_reply;
      return in;
    case worker_command::heartbeat:
      if (!r.complete()) return worker_error_v2(status::bad_request, reasons::heartbeat_fields);
      in.kind = inbound_kind::worker_heartbeat;
      return in;
    case worker_command::disconnect:  // it is leaving; only status 204 means something (below)
      in.kind = inbound_kind::worker_disconnect;
      if (!r.empty()) in.reply_status = r.u16();
      if (!r.ok()) in.reply_status = 0;
      return in;
    case worker_command::stopping:
      if (!r.complete()) return worker_error_v2(status::bad_request, reasons::stopping_fields);
      in.kind = inbound_kind::worker_stopping;
      return in;
    case worker_command::config:
      in.id = r.u64();
      if (!r.complete()) return worker_error_v2(status::bad_request, reasons::config_fields);
      in.kind = inbound_kind::worker_config;
      return in;
    case worker_command::batch:  // a well-formed batch is taken apart before decoding
      return worker_error_v2(status::bad_request, reasons::malformed_batch);
    default:
      return worker_error_v2(status::not_implemented, reasons::unknown_command);
  }
}

// "S0C" / "S0W" followed by a version byte, and for S0/1 nothing else.
enum class native_role : std::uint8_t { none, client, worker };
native_role role_of(std::string_view header) noexcept {
  if (header.size() < 4 || header.substr(0, 2) != "S0") return native_role::none;
  if (header[2] == 'C') return native_role::client;
  if (header[2] == 'W') return native_role::worker;
  return native_role::none;
}

}  // namespace

inbound decode_inbound(const frames& f) noexcept {
  if (f.size() < 3 || f[1].size() != 0) return {};
  const std::string_view header = view(f[2]);
  if (header == client_header) return decode_client(f);
  if (header == worker_header) return decode_worker(f);
  if (header == mdp_client_header) {
    inbound in;
    if (f.size() < 5) return in;  // RFC 7: body is 1+ frames
    in.service = view(f[3]);
    if (!valid_service(f[3])) {  // answered in MDP form, the service frame echoed
      in.kind = inbound_kind::mdp_client_error;
      in.status = status::bad_request;
      in.reason = reasons::invalid_service_name;
      return in;
    }
    in.kind = inbound_kind::mdp_request;
    in.service = view(f[3]);
    in.first = 4;
    return in;
  }
  if (header == mdp_worker_header) return decode_mdp_worker(f);
  const native_role role = role_of(header);
  if (role == native_role::none) return {};
  if (header[3] == '2')
    return role == native_role::client ? decode_client_v2(f) : decode_worker_v2(f);
  // S0/1 headers are exactly 4 bytes (matched above): anything longer is not ours. Other versions
  // are answered in S0/1, which every native peer reads.
  if (header[3] == '1') return {};
  if (role == native_role::client)
    return client_error(status::bad_version, reasons::bad_client_version, f);
  return worker_error(status::bad_version, reasons::bad_worker_version);
}

std::size_t ready_services(const frames& f, const inbound& in, service_names& out) noexcept {
  std::size_t n = 0;
  if (in.kind == inbound_kind::mdp_ready) {
    out[n++] = in.service;
  } else if (in.kind != inbound_kind::worker_ready) {
    return 0;
  } else {
    ready_service_list list =
        in.version == version_2 ? ready_service_list(in.services) : ready_service_list(f, in.first);
    std::string_view name;
    while (n < out.size() && list.next(name)) out[n++] = name;
  }
  return n;
}

}  // namespace scale0::protocol
