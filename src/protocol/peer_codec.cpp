// SPDX-License-Identifier: Apache-2.0
// S0P1 (docs/family.md). The decoder reads every field of the packed frame before it checks
// anything, then checks the whole message: lengths exact, counts matching, every endpoint and name
// valid. A message is taken whole or dropped whole.
#include "protocol/peer_codec.hpp"

#include "protocol/packing.hpp"

namespace scale0::protocol::peer {
namespace {

using packing::append_packed;
using packing::reader;
using packing::str16_size;
using packing::str8_size;

bool printable_ascii(std::string_view s) noexcept {
  for (unsigned char c : s)
    if (c <= 0x20 || c >= 0x7f) return false;
  return true;
}

// True when `port` is a port number 1-65535.
bool valid_port(std::string_view port) noexcept {
  if (port.empty() || port.size() > 5) return false;
  unsigned n = 0;
  for (char c : port) {
    if (c < '0' || c > '9') return false;
    n = n * 10 + static_cast<unsigned>(c - '0');
  }
  return n >= 1 && n <= 65535;
}

constexpr auto cmd(command c) noexcept {
  return static_cast<std::uint8_t>(c);
}

message malformed(std::string_view detail, problem why = problem::malformed) noexcept {
  message m;
  m.what = kind::malformed;
  m.why = why;
  m.detail = detail;
  return m;
}

message decode_hello(reader& r) noexcept {
  message m;
  hello& h = m.h;
  h.broker_id = r.u64();
  h.heartbeat_ms = r.u32();
  h.liveness = r.u32();
  h.flags = r.u8();
  h.family = r.str8();
  h.peer_endpoint = r.str16();
  h.frontend = r.str16();
  h.backend = r.str16();
  if (r.ok() && !r.rest().empty()) {  // the fallback families, when the sender has any
    h.fallback_count = r.u8();
    h.fallback_list = r.rest();
    if (h.fallback_count == 0 || h.fallback_count > max_fallback_families)
      return malformed("HELLO fallback count out of range (1-8)");
    reader names(h.fallback_list);
    for (std::uint8_t i = 0; i < h.fallback_count; ++i)
      if (!valid_family(names.str8()) && names.ok())
        return malformed("HELLO fallback family name invalid", problem::invalid_name);
    if (!names.complete()) return malformed("HELLO of the wrong length");
  } else if (!r.complete()) {
    return malformed("HELLO of the wrong length");
  }
  if (h.heartbeat_ms < 10 || h.heartbeat_ms > 3600000)
    return malformed("HELLO heartbeat-ms out of range (10-3600000)");
  if (h.liveness < 1 || h.liveness > 100) return malformed("HELLO liveness out of range (1-100)");
  if ((h.flags & ~hello_draining) != 0) return malformed("HELLO with unknown flags");
  if (!valid_family(h.family)) return malformed("HELLO family name invalid", problem::invalid_name);
  if (!valid_endpoint(h.peer_endpoint))
    return malformed("HELLO peer endpoint invalid", problem::invalid_endpoint);
  if (!valid_advertised(h.frontend) || !valid_advertised(h.backend))
    return malformed("HELLO frontend or backend invalid", problem::invalid_endpoint);
  m.what = kind::hello;
  return m;
}

message decode_peers(reader& r) noexcept {
  message m;
  m.count = r.u16();
  if (!r.ok()) return malformed("PEERS without a count");
  m.list = r.rest();
  for (std::uint16_t i = 0; i < m.count; ++i) {
    const std::string_view endpoint = r.str16();
    if (!r.ok()) return malformed("PEERS shorter than its count");
    if (!valid_endpoint(endpoint))
      return malformed("PEERS endpoint invalid", problem::invalid_endpoint);
  }
  if (!r.complete()) return malformed("PEERS longer than its count");
  m.what = kind::peers;
  return m;
}

message decode_config(reader& r) noexcept {
  message m;
  m.sequence = r.u64();
  m.origin = r.u64();
  m.count = r.u16();
  if (!r.ok()) return malformed("CONFIG without version, origin and count");
  // 0 is never a version; the highest one would leave no room for the next change.
  if (m.sequence == 0 || m.sequence == UINT64_MAX) return malformed("CONFIG version out of range");
  if (m.count > max_config_entries) return malformed("CONFIG with more than 1000 entries");
  m.list = r.rest();
  for (std::uint16_t i = 0; i < m.count; ++i) {
    const std::string_view service = r.str8();
    const std::uint8_t set = r.u8();
    r.u32();
    r.u32();
    const std::uint32_t max_concurrency = r.u32();
    const std::uint8_t idempotent = r.u8();
    if (!r.ok()) return malformed("CONFIG shorter than its count");
    if (!valid_service_name(service))
      return malformed("CONFIG service name invalid", problem::invalid_name);
    if ((set & ~0x0f) != 0 || idempotent > 1) return malformed("CONFIG entry with unknown flags");
    if ((set & policy_max_concurrency) != 0 &&
        (max_concurrency < 1 || max_concurrency > protocol::max_concurrency))
      return malformed("CONFIG max-concurrency out of range");
  }
  if (!r.complete()) return malformed("CONFIG longer than its count");
  m.what = kind::config;
  return m;
}

message decode_state(reader& r) noexcept {
  message m;
  m.sequence = r.u64();
  m.flags = r.u8();
  m.count = r.u16();
  if (!r.ok()) return malformed("STATE without sequence, flags and count");
  if ((m.flags & ~state_replace) != 0) return malformed("STATE with unknown flags");
  if (m.count > max_state_entries) return malformed("STATE with more than 1000 entries");
  m.list = r.rest();
  for (std::uint16_t i = 0; i < m.count; ++i) {
    const std::string_view service = r.str8();
    r.u32();
    r.u32();
    r.u32();
    const std::uint8_t flags = r.u8();
    if (!r.ok()) return malformed("STATE shorter than its count");
    if ((flags & ~entry_idempotent) != 0) return malformed("STATE entry with unknown flags");
    if (!valid_service_name(service))
      return malformed("STATE service name invalid", problem::invalid_name);
  }
  if (!r.complete()) return malformed("STATE longer than its count");
  m.what = kind::state;
  return m;
}

}  // namespace

bool valid_endpoint(std::string_view ep) noexcept {
  if (ep.size() > max_endpoint || !printable_ascii(ep)) return false;
  if (ep.starts_with("ipc://")) return ep.size() > 6;
  if (!ep.starts_with("tcp://")) return false;
  const std::string_view rest = ep.substr(6);
  const auto colon = rest.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return false;
  const std::string_view host = rest.substr(0, colon);
  if (host == "*") return false;  // a wildcard is where to bind, not where to connect
  if (host.front() == '[' && (host.size() < 3 || host.back() != ']')) return false;
  if (host.front() != '[' && host.find_first_of("[]") != std::string_view::npos) return false;
  return valid_port(rest.substr(colon + 1));
}

bool valid_advertised(std::string_view ep) noexcept {
  return ep.empty() || valid_endpoint(ep);
}

bool valid_family(std::string_view name) noexcept {
  return valid_service_name(name);
}

message decode(const frames& f) noexcept {
  if (f.size() != 3) return malformed("not identity, delimiter and one packed frame");
  if (f[1].size() != 0) return malformed("no empty delimiter frame");
  const std::string_view packed = view(f[2]);
  if (packed.size() < packing::head_size || packed.substr(0, 4) != header)
    return malformed("not an S0P1 frame");
  reader r(packed.substr(packing::head_size));
  switch (static_cast<command>(static_cast<std::uint8_t>(packed[4]))) {
    case command::hello:
      return decode_hello(r);
    case command::peers:
      return decode_peers(r);
    case command::state:
      return decode_state(r);
    case command::config:
      return decode_config(r);
    case command::bye: {
      message m;
      m.status = r.u16();
      m.text = r.str16();
      if (!r.complete()) return malformed("BYE of the wrong length");
      m.what = kind::bye;
      return m;
    }
  }
  return malformed("unknown S0P1 command");
}

void append_hello(frames& out, const hello& h) {
  const std::size_t n = std::min(h.fallbacks.size(), max_fallback_families);
  std::size_t size = 17 + str8_size(h.family) + str16_size(h.peer_endpoint) +
                     str16_size(h.frontend) + str16_size(h.backend);
  if (n != 0) size += 1;
  for (std::size_t i = 0; i < n; ++i) size += str8_size(h.fallbacks[i]);
  auto w = append_packed(out, header, cmd(command::hello), size);
  w.u64(h.broker_id)
      .u32(h.heartbeat_ms)
      .u32(h.liveness)
      .u8(h.flags)
      .str8(h.family)
      .str16(h.peer_endpoint)
      .str16(h.frontend)
      .str16(h.backend);
  if (n == 0) return;
  w.u8(static_cast<std::uint8_t>(n));
  for (std::size_t i = 0; i < n; ++i) w.str8(h.fallbacks[i]);
}

void append_peers(frames& out, std::span<const std::string_view> endpoints) {
  const std::size_t n = std::min<std::size_t>(endpoints.size(), UINT16_MAX);
  std::size_t size = 2;
  for (std::size_t i = 0; i < n; ++i) size += str16_size(endpoints[i]);
  auto w = append_packed(out, header, cmd(command::peers), size);
  w.u16(static_cast<std::uint16_t>(n));
  for (std::size_t i = 0; i < n; ++i) w.str16(endpoints[i]);
}

void append_state(frames& out, std::uint64_t sequence, std::uint8_t flags,
                  std::span<const capacity> entries) {
  const std::size_t n = std::min(entries.size(), max_state_entries);
  std::size_t size = 11;
  for (std::size_t i = 0; i < n; ++i) size += str8_size(entries[i].service) + 13;
  auto w = append_packed(out, header, cmd(command::state), size);
  w.u64(sequence).u8(flags).u16(static_cast<std::uint16_t>(n));
  for (std::size_t i = 0; i < n; ++i)
    w.str8(entries[i].service)
        .u32(entries[i].workers)
        .u32(entries[i].idle)
        .u32(entries[i].queued)
        .u8(entries[i].flags);
}

void append_config(frames& out, std::uint64_t version, std::uint64_t origin,
                   std::span<const policy_entry> entries) {
  const std::size_t n = std::min(entries.size(), max_config_entries);
  std::size_t size = 18;
  for (std::size_t i = 0; i < n; ++i) size += str8_size(entries[i].service) + 14;
  auto w = append_packed(out, header, cmd(command::config), size);
  w.u64(version).u64(origin).u16(static_cast<std::uint16_t>(n));
  for (std::size_t i = 0; i < n; ++i)
    w.str8(entries[i].service)
        .u8(entries[i].set)
        .u32(entries[i].timeout_ms)
        .u32(entries[i].max_queue)
        .u32(entries[i].max_concurrency)
        .u8(entries[i].idempotent);
}

void append_bye(frames& out, std::uint16_t status, std::string_view text) {
  append_packed(out, header, cmd(command::bye), 2 + str16_size(text)).u16(status).str16(text);
}

}  // namespace scale0::protocol::peer
