// SPDX-License-Identifier: Apache-2.0
// What the client and worker libraries decode: the broker's messages to them in S0/1 and S0/2,
// the broker's PUB heartbeat, and the lists packed in WELCOME and CONFIG. Every size is checked
// before a field is read; nothing here throws or asserts on input.
#include <vector>

#include "protocol/packing.hpp"
#include "scale0/protocol.hpp"

namespace scale0::protocol {

using packing::append_packed;
using packing::reader;
using packing::str16_size;
using packing::str8_size;
using packing::writer;

// The packed frame after its 4-byte header: command byte, then fields.
constexpr std::size_t v2_head = packing::head_size;

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
  switch (static_cast<worker_command>(packing::command_of(packed))) {
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
  switch (static_cast<client_command>(packing::command_of(packed))) {
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
      in.service_list = in.service_list.substr(0, in.service_list.size() - r.rest().size());
      if (!r.empty()) in.flags = r.u8();  // answers a HELLO with flags
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

}  // namespace scale0::protocol
