// SPDX-License-Identifier: Apache-2.0
// The decoder is a pure function over frames: every size is checked before a field is read, and
// nothing here throws or asserts on input. Encoders only append frames.
#include <algorithm>
#include <cstring>

#include "common/text.hpp"
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

bool valid_service_name(std::string_view name) noexcept {
  return !name.empty() && name.size() <= max_service_name && printable_utf8(name);
}

bool valid_worker_name(std::string_view name) noexcept {
  return !name.empty() && name.size() <= max_worker_name && printable_utf8(name);
}

namespace {

std::uint64_t load_be(const zmq::message_t& m, std::size_t width) noexcept {
  const auto* p = static_cast<const unsigned char*>(m.data());
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < width; ++i) v = (v << 8) | p[i];
  return v;
}

zmq::message_t store_be(std::uint64_t v, std::size_t width) {
  unsigned char buf[8];
  for (std::size_t i = 0; i < width; ++i)
    buf[width - 1 - i] = static_cast<unsigned char>(v >> (8 * i));
  return zmq::message_t(buf, width);
}

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

std::uint8_t v2_command(std::string_view packed) noexcept {
  return static_cast<std::uint8_t>(packed[4]);
}

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
  switch (static_cast<client_command>(v2_command(packed))) {
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
      if (!r.complete()) return client_error_v2(status::bad_request, reasons::hello_fields, packed);
      in.kind = inbound_kind::client_hello;
      return in;
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
  switch (static_cast<worker_command>(v2_command(packed))) {
    case worker_command::ready: {
      // S0W2 0x01 concurrency heartbeat-ms flags service... · [name]
      in.concurrency = r.u32();
      in.heartbeat_ms = r.u32();
      in.flags = r.u8();
      if (!r.ok()) return worker_error_v2(status::bad_request, reasons::ready_fields);
      if (f.size() > 4) return worker_error_v2(status::bad_request, reasons::ready_trailing_frames);
      if (f.size() == 4) in.name = view(f[3]);
      in.services = r.rest();
      const ready_fields fields{in.concurrency, in.flags,
                                static_cast<std::uint8_t>(flag_idempotent | flag_moved),
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

std::string_view view(const zmq::message_t& m) noexcept {
  return {static_cast<const char*>(m.data()), m.size()};
}
std::uint64_t read_u64(const zmq::message_t& m) noexcept {
  return load_be(m, 8);
}
std::uint32_t read_u32(const zmq::message_t& m) noexcept {
  return static_cast<std::uint32_t>(load_be(m, 4));
}
std::uint16_t read_u16(const zmq::message_t& m) noexcept {
  return static_cast<std::uint16_t>(load_be(m, 2));
}
zmq::message_t u64_frame(std::uint64_t v) {
  return store_be(v, 8);
}
zmq::message_t u32_frame(std::uint32_t v) {
  return store_be(v, 4);
}
zmq::message_t u16_frame(std::uint16_t v) {
  return store_be(v, 2);
}

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

namespace {

// A worker takes the name the broker sends as it is (the broker checked it when it came in).
bool sized_service(std::string_view s) noexcept {
  return !s.empty() && s.size() <= max_service_name;
}

// `count` str16 endpoints from `r`: each "tcp://" or "ipc://" and printable ASCII, at most 255
// bytes (the rule of the family's endpoints); the reader is left after them.
bool endpoint_list_ok(reader& r, std::uint16_t count) noexcept {
  if (count > max_welcome_endpoints) return false;
  for (std::uint16_t i = 0; i < count; ++i) {
    const std::string_view ep = r.str16();
    if (!r.ok() || ep.size() > 255 || ep.size() < 7) return false;
    if (ep.substr(0, 6) != "tcp://" && ep.substr(0, 6) != "ipc://") return false;
    for (const char c : ep)
      if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f)
        return false;
  }
  return true;
}

// S0/2 at a worker: "" · S0W2 command fields · body...
worker_inbound decode_for_worker_v2(const frames& f) noexcept {
  worker_inbound in;
  const std::string_view packed = view(f[1]);
  if (packed.size() < v2_head) return in;
  reader r(packed.substr(v2_head));
  switch (static_cast<worker_command>(v2_command(packed))) {
    case worker_command::welcome:
      in.heartbeat_ms = r.u32();
      in.liveness = r.u32();
      in.broker_heartbeat_ms = r.u32();
      in.broker_id = r.u64();
      in.endpoint = r.str16();
      if (!r.ok()) return {};
      if (!r.empty()) {  // the family's backends
        in.count = r.u16();
        in.list = r.rest();
        if (!r.ok() || !endpoint_list_ok(r, in.count) || !r.empty()) return {};
      }
      in.kind = worker_inbound_kind::welcome;
      break;
    case worker_command::request:
      in.job_id = r.u64();
      in.timeout_ms = r.u32();
      in.service = r.str8();
      if (!r.complete() || !sized_service(in.service)) return {};
      in.kind = worker_inbound_kind::request;
      in.first = 2;
      break;
    case worker_command::disconnect:
      if (!r.empty()) {
        in.status = r.u16();
        in.message = r.str16();
        if (!r.complete()) return {};
      }
      in.kind = worker_inbound_kind::disconnect;
      break;
    case worker_command::stopping:
      if (!r.complete()) return {};
      in.kind = worker_inbound_kind::stopping;
      break;
    case worker_command::config: {
      in.status = r.u16();
      in.policy_version = r.u64();
      in.count = r.u16();
      in.list = r.rest();
      if (!r.ok() || in.count > max_config_services) return {};
      for (std::uint16_t i = 0; i < in.count; ++i) {
        const std::string_view name = r.str8();
        r.u32();
        r.u32();
        r.u32();
        const std::uint8_t idem = r.u8();
        if (!r.ok() || !sized_service(name) || idem > 2) return {};
      }
      if (!r.complete()) return {};
      in.kind = worker_inbound_kind::config;
      break;
    }
    default:
      return {};
  }
  in.version = version_2;
  return in;
}

// S0/2 at a client: "" · S0C2 command fields · body...
client_inbound decode_for_client_v2(const frames& f) noexcept {
  client_inbound in;
  const std::string_view packed = view(f[1]);
  if (packed.size() < v2_head) return in;
  reader r(packed.substr(v2_head));
  switch (static_cast<client_command>(v2_command(packed))) {
    case client_command::reply:
      in.id = r.u64();
      in.status = r.u16();
      in.message = r.str16();
      if (!r.complete()) return {};
      in.kind = client_inbound_kind::reply;
      break;
    case client_command::pong:
      if (!r.complete()) return {};
      in.kind = client_inbound_kind::pong;
      break;
    case client_command::welcome: {
      in.broker_id = r.u64();
      in.endpoints = r.u16();
      in.endpoint_list = r.rest();
      if (!r.ok() || !endpoint_list_ok(r, in.endpoints)) return {};
      in.endpoint_list = in.endpoint_list.substr(0, in.endpoint_list.size() - r.rest().size());
      in.services = r.u16();
      in.service_list = r.rest();
      for (std::uint16_t i = 0; i < in.services; ++i)
        if (!sized_service(r.str8()) || !r.ok()) return {};
      if (!r.complete()) return {};
      in.kind = client_inbound_kind::welcome;
      break;
    }
    default:
      return {};
  }
  in.version = version_2;
  in.first = 2;
  return in;
}

bool starts_with(const zmq::message_t& m, std::string_view prefix) noexcept {
  return view(m).substr(0, prefix.size()) == prefix;
}

}  // namespace

worker_inbound decode_for_worker(const frames& f) noexcept {
  worker_inbound in;
  if (f.size() >= 2 && f[0].size() == 0 && starts_with(f[1], worker_header_v2))
    return decode_for_worker_v2(f);
  if (f.size() < 3 || f[0].size() != 0 || view(f[1]) != worker_header || f[2].size() != 1)
    return in;
  switch (static_cast<worker_command>(*static_cast<const std::uint8_t*>(f[2].data()))) {
    case worker_command::welcome:
      if (f.size() != 7 || f[3].size() != 4 || f[4].size() != 4 || f[6].size() != 8) return in;
      in.kind = worker_inbound_kind::welcome;
      in.heartbeat_ms = read_u32(f[3]);
      in.broker_heartbeat_ms = in.heartbeat_ms;
      in.liveness = read_u32(f[4]);
      in.endpoint = view(f[5]);
      in.broker_id = read_u64(f[6]);
      return in;
    case worker_command::request:
      if (f.size() < 6 || f[3].size() != 8 || !sized_service(view(f[4])) || f[5].size() != 4)
        return in;
      in.kind = worker_inbound_kind::request;
      in.job_id = read_u64(f[3]);
      in.service = view(f[4]);
      in.timeout_ms = read_u32(f[5]);
      in.first = 6;
      return in;
    case worker_command::disconnect:
      in.kind = worker_inbound_kind::disconnect;
      if (f.size() >= 5 && f[3].size() == 2) {
        in.status = read_u16(f[3]);
        in.message = view(f[4]);
      }
      return in;
    case worker_command::stopping:
      in.kind = worker_inbound_kind::stopping;
      return in;
    default:
      return in;
  }
}

client_inbound decode_for_client(const frames& f) noexcept {
  client_inbound in;
  if (f.size() >= 2 && f[0].size() == 0 && starts_with(f[1], client_header_v2))
    return decode_for_client_v2(f);
  if (f.size() < 3 || f[0].size() != 0 || view(f[1]) != client_header || f[2].size() != 1)
    return in;
  switch (static_cast<client_command>(*static_cast<const std::uint8_t*>(f[2].data()))) {
    case client_command::reply:
      if (f.size() < 6 || f[3].size() != 8 || f[4].size() != 2) return in;
      in.kind = client_inbound_kind::reply;
      in.id = read_u64(f[3]);
      in.status = read_u16(f[4]);
      in.message = view(f[5]);
      in.first = 6;
      return in;
    case client_command::pong:
      in.kind = client_inbound_kind::pong;
      in.first = 3;
      return in;
    default:
      return in;
  }
}

bool decode_heartbeat(const frames& f, heartbeat& out) noexcept {
  if (f.size() != 3 || view(f[0]) != heartbeat_header || f[1].size() != 8 || f[2].size() != 8)
    return false;
  out.broker_id = read_u64(f[1]);
  out.sequence = read_u64(f[2]);
  return true;
}

namespace {
void append_head(frames& out, std::string_view header, std::uint8_t command) {
  out.emplace_back();
  out.emplace_back(header.data(), header.size());
  out.emplace_back(&command, 1);
}

constexpr auto cmd(client_command c) noexcept {
  return static_cast<std::uint8_t>(c);
}
constexpr auto cmd(worker_command c) noexcept {
  return static_cast<std::uint8_t>(c);
}
}  // namespace

void append_client_request(frames& out, std::uint64_t id, std::string_view service,
                           std::uint32_t timeout_ms, std::uint8_t version) {
  if (version == version_2) {
    append_packed(out, client_header_v2, cmd(client_command::request), 12 + str8_size(service))
        .u64(id)
        .u32(timeout_ms)
        .str8(service);
    return;
  }
  append_head(out, client_header, cmd(client_command::request));
  out.push_back(u64_frame(id));
  out.push_back(str_frame(service));
  out.push_back(u32_frame(timeout_ms));
}

void append_client_reply(frames& out, std::uint64_t id, std::uint16_t code,
                         std::string_view message, std::uint8_t version) {
  if (version == version_2) {
    append_packed(out, client_header_v2, cmd(client_command::reply), 10 + str16_size(message))
        .u64(id)
        .u16(code)
        .str16(message);
    return;
  }
  append_head(out, client_header, cmd(client_command::reply));
  out.push_back(u64_frame(id));
  out.push_back(u16_frame(code));
  out.push_back(str_frame(message));
}

void append_client_hello(frames& out) {
  append_packed(out, client_header_v2, cmd(client_command::hello), 0);
}

void append_client_welcome(frames& out, std::uint64_t broker_id,
                           const std::vector<std::string_view>& frontends,
                           const std::vector<std::string_view>& idempotent_services) {
  const std::size_t ne = std::min(frontends.size(), max_welcome_endpoints);
  const std::size_t ns = std::min(idempotent_services.size(), max_welcome_services);
  std::size_t size = 12;
  for (std::size_t i = 0; i < ne; ++i) size += str16_size(frontends[i]);
  for (std::size_t i = 0; i < ns; ++i) size += str8_size(idempotent_services[i]);
  auto w = append_packed(out, client_header_v2, cmd(client_command::welcome), size);
  w.u64(broker_id).u16(static_cast<std::uint16_t>(ne));
  for (std::size_t i = 0; i < ne; ++i) w.str16(frontends[i]);
  w.u16(static_cast<std::uint16_t>(ns));
  for (std::size_t i = 0; i < ns; ++i) w.str8(idempotent_services[i]);
}

void append_worker_config(frames& out, std::uint16_t code, std::uint64_t policy_version,
                          const std::vector<service_config>& services) {
  const std::size_t n = std::min(services.size(), max_config_services);
  std::size_t size = 12;
  for (std::size_t i = 0; i < n; ++i) size += str8_size(services[i].service) + 13;
  auto w = append_packed(out, worker_header_v2, cmd(worker_command::config), size);
  w.u16(code).u64(policy_version).u16(static_cast<std::uint16_t>(n));
  for (std::size_t i = 0; i < n; ++i)
    w.str8(services[i].service)
        .u32(services[i].request_timeout_ms)
        .u32(services[i].max_queue)
        .u32(services[i].max_concurrency)
        .u8(services[i].idempotent);
}

void append_worker_config_version(frames& out, std::uint64_t policy_version) {
  append_packed(out, worker_header_v2, cmd(worker_command::config), 8).u64(policy_version);
}

std::vector<service_config> config_services(std::string_view list, std::uint16_t count) {
  std::vector<service_config> out;
  reader r(list);
  for (std::uint16_t i = 0; i < count && r.ok(); ++i) {
    service_config c;
    c.service = r.str8();
    c.request_timeout_ms = r.u32();
    c.max_queue = r.u32();
    c.max_concurrency = r.u32();
    c.idempotent = r.u8();
    out.push_back(c);
  }
  return out;
}

std::vector<std::string_view> welcome_endpoints(std::string_view list, std::uint16_t count) {
  std::vector<std::string_view> out;
  reader r(list);
  for (std::uint16_t i = 0; i < count && r.ok(); ++i) out.push_back(r.str16());
  return out;
}

std::vector<std::string_view> welcome_services(std::string_view list, std::uint16_t count) {
  std::vector<std::string_view> out;
  reader r(list);
  for (std::uint16_t i = 0; i < count && r.ok(); ++i) out.push_back(r.str8());
  return out;
}

void append_client_ping(frames& out, std::uint8_t version) {
  if (version == version_2) {
    append_packed(out, client_header_v2, cmd(client_command::ping), 0);
    return;
  }
  append_head(out, client_header, cmd(client_command::ping));
}

void append_client_pong(frames& out, std::uint8_t version) {
  if (version == version_2) {
    append_packed(out, client_header_v2, cmd(client_command::pong), 0);
    return;
  }
  append_head(out, client_header, cmd(client_command::pong));
}

void append_worker_ready(frames& out, std::uint32_t concurrency, std::uint32_t heartbeat_ms,
                         std::uint8_t flags, const std::vector<std::string_view>& services,
                         std::uint8_t version, std::string_view name) {
  if (version == version_2) {
    std::size_t size = 9;
    for (auto s : services) size += str8_size(s);
    writer w = append_packed(out, worker_header_v2, cmd(worker_command::ready), size);
    w.u32(concurrency).u32(heartbeat_ms).u8(flags);
    for (auto s : services) w.str8(s);
    if (!name.empty()) out.push_back(str_frame(name));
    return;
  }
  append_head(out, worker_header, cmd(worker_command::ready));
  out.push_back(u32_frame(concurrency));
  out.push_back(u32_frame(heartbeat_ms));
  out.emplace_back(&flags, 1);
  for (auto s : services) out.push_back(str_frame(s));
}

void append_worker_welcome(frames& out, std::uint32_t heartbeat_ms, std::uint32_t liveness,
                           std::string_view endpoint, std::uint64_t broker_id, std::uint8_t version,
                           std::uint32_t broker_heartbeat_ms,
                           const std::vector<std::string_view>& backends) {
  if (version == version_2) {
    const std::size_t n = std::min(backends.size(), max_welcome_endpoints);
    std::size_t size = 20 + str16_size(endpoint) + (n != 0 ? 2 : 0);
    for (std::size_t i = 0; i < n; ++i) size += str16_size(backends[i]);
    auto w = append_packed(out, worker_header_v2, cmd(worker_command::welcome), size);
    w.u32(heartbeat_ms)
        .u32(liveness)
        .u32(broker_heartbeat_ms != 0 ? broker_heartbeat_ms : heartbeat_ms)
        .u64(broker_id)
        .str16(endpoint);
    if (n != 0) {
      w.u16(static_cast<std::uint16_t>(n));
      for (std::size_t i = 0; i < n; ++i) w.str16(backends[i]);
    }
    return;
  }
  append_head(out, worker_header, cmd(worker_command::welcome));
  out.push_back(u32_frame(heartbeat_ms));
  out.push_back(u32_frame(liveness));
  out.push_back(str_frame(endpoint));
  out.push_back(u64_frame(broker_id));
}

void append_worker_request(frames& out, std::uint64_t job_id, std::string_view service,
                           std::uint32_t timeout_ms, std::uint8_t version) {
  if (version == version_2) {
    append_packed(out, worker_header_v2, cmd(worker_command::request), 12 + str8_size(service))
        .u64(job_id)
        .u32(timeout_ms)
        .str8(service);
    return;
  }
  append_head(out, worker_header, cmd(worker_command::request));
  out.push_back(u64_frame(job_id));
  out.push_back(str_frame(service));
  out.push_back(u32_frame(timeout_ms));
}

void append_worker_reply(frames& out, std::uint64_t job_id, std::uint16_t code,
                         std::string_view message, std::uint8_t version) {
  if (version == version_2) {
    append_packed(out, worker_header_v2, cmd(worker_command::reply), 10 + str16_size(message))
        .u64(job_id)
        .u16(code)
        .str16(message);
    return;
  }
  append_head(out, worker_header, cmd(worker_command::reply));
  out.push_back(u64_frame(job_id));
  out.push_back(u16_frame(code));
  out.push_back(str_frame(message));
}

void append_worker_heartbeat(frames& out, std::uint8_t version) {
  if (version == version_2) {
    append_packed(out, worker_header_v2, cmd(worker_command::heartbeat), 0);
    return;
  }
  append_head(out, worker_header, cmd(worker_command::heartbeat));
}

void append_worker_disconnect(frames& out, std::uint16_t code, std::string_view message,
                              std::uint8_t version) {
  if (version == version_2) {
    const std::size_t size = code != 0 ? 2 + str16_size(message) : 0;
    writer w = append_packed(out, worker_header_v2, cmd(worker_command::disconnect), size);
    if (code != 0) w.u16(code).str16(message);
    return;
  }
  append_head(out, worker_header, cmd(worker_command::disconnect));
  if (code != 0) {
    out.push_back(u16_frame(code));
    out.push_back(str_frame(message));
  }
}

void append_worker_stopping(frames& out, std::uint8_t version) {
  if (version == version_2) {
    append_packed(out, worker_header_v2, cmd(worker_command::stopping), 0);
    return;
  }
  append_head(out, worker_header, cmd(worker_command::stopping));
}

void append_heartbeat(frames& out, std::uint64_t broker_id, std::uint64_t sequence) {
  out.push_back(str_frame(heartbeat_header));
  out.push_back(u64_frame(broker_id));
  out.push_back(u64_frame(sequence));
}

void append_mdp_client_reply(frames& out, std::string_view service) {
  out.emplace_back();
  out.push_back(str_frame(mdp_client_header));
  out.push_back(str_frame(service));
}

void append_mdp_worker_request(frames& out, std::uint64_t job_id) {
  append_head(out, mdp_worker_header, static_cast<std::uint8_t>(mdp_command::request));
  out.push_back(u64_frame(job_id));
  out.emplace_back();
}

void append_mdp_worker_command(frames& out, mdp_command command) {
  append_head(out, mdp_worker_header, static_cast<std::uint8_t>(command));
}

}  // namespace scale0::protocol
