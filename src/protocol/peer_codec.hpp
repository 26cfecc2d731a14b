// SPDX-License-Identifier: Apache-2.0
// S0P1, the protocol brokers of a family speak to each other (docs/family.md): HELLO, PEERS,
// STATE and BYE, each one packed frame after the delimiter, with the integer and string rules of
// S0/2 (protocol/packing.hpp). A pure decoder (nothing is trusted, nothing throws, nothing
// asserts) and encoders that only append frames. Internal to the library.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "scale0/protocol.hpp"

namespace scale0::protocol::peer {

inline constexpr std::string_view header = "S0P1";

enum class command : std::uint8_t { hello = 1, peers = 2, state = 3, bye = 4, config = 5 };

inline constexpr std::uint8_t hello_draining = 0x01;  // HELLO flags bit 0: the sender drains
inline constexpr std::uint8_t state_replace = 0x01;   // STATE flags bit 0: forget mine first
// A STATE entry's flags bit 0: a request of the service lost with the sender (or its worker) may be
// sent again (the sender's policy, or all its workers of the service are idempotent).
inline constexpr std::uint8_t entry_idempotent = 0x01;
// Entries in one STATE message: a larger full state is sent as several messages, the first with
// state_replace and the rest without.
inline constexpr std::size_t max_state_entries = 1000;
// Endpoints (the peer endpoint, the advertised frontend and backend, each of PEERS) are at most
// this long on the wire, though str16 could carry more.
inline constexpr std::size_t max_endpoint = 255;
// Fallback families a HELLO may name (docs/family.md, "Fallback families").
inline constexpr std::size_t max_fallback_families = 8;

// A peer endpoint another broker may connect to: tcp://HOST:PORT (PORT 1-65535, HOST not empty and
// without spaces or control characters; an IPv6 literal in brackets) or ipc://PATH, at most 255
// bytes of printable ASCII.
bool valid_endpoint(std::string_view endpoint) noexcept;
// An advertised frontend or backend: "" (not advertised), or an endpoint as above.
bool valid_advertised(std::string_view endpoint) noexcept;
// A family name: as a service name, 1-255 bytes of printable UTF-8.
bool valid_family(std::string_view name) noexcept;

struct hello {
  std::uint64_t broker_id = 0;
  std::uint32_t heartbeat_ms = 0;  // 10-3 600 000
  std::uint32_t liveness = 0;      // 1-100
  std::uint8_t flags = 0;          // hello_draining; other bits 0
  std::string_view family;
  std::string_view peer_endpoint;  // how to reach its peer ROUTER (never "")
  std::string_view frontend;       // "" when not advertised
  std::string_view backend;
  // The sender's fallback families in order (0 to max_fallback_families), packed as on the wire:
  // for_each_fallback reads them. Encoding takes `fallbacks` instead.
  std::uint8_t fallback_count = 0;
  std::string_view fallback_list;
  std::span<const std::string> fallbacks;  // encoding only
};

// Calls fn(family) for each fallback family of a decoded HELLO.
template <class Fn>
void for_each_fallback(const hello& h, Fn&& fn);

// One service of a STATE. All three zero: the service is gone from the sender.
struct capacity {
  std::string_view service;
  std::uint32_t workers = 0;
  std::uint32_t idle = 0;  // requests its workers would take at once (idle credit)
  std::uint32_t queued = 0;
  std::uint8_t flags = 0;  // entry_idempotent; other bits 0
};

enum class kind : std::uint8_t { malformed, hello, peers, state, bye, config };

// One [service."NAME"] table of a CONFIG: `set` says which settings it has (policy_* bits).
inline constexpr std::uint8_t policy_timeout = 0x01;
inline constexpr std::uint8_t policy_max_queue = 0x02;
inline constexpr std::uint8_t policy_idempotent = 0x04;
inline constexpr std::uint8_t policy_max_concurrency = 0x08;
struct policy_entry {
  std::string_view service;
  std::uint8_t set = 0;
  std::uint32_t timeout_ms = 0;
  std::uint32_t max_queue = 0;
  std::uint32_t max_concurrency = 0;
  std::uint8_t idempotent = 0;  // 0 or 1, when set
};
inline constexpr std::size_t max_config_entries = 1000;
// Why a message was dropped: its framing or lengths (malformed), or a field the rules refuse.
enum class problem : std::uint8_t { none, malformed, invalid_endpoint, invalid_name };

// A decoded message: views point into the frames it was decoded from. Lists were checked whole
// (every entry valid, the count exact), so for_each_* need no checks of their own.
struct message {
  kind what = kind::malformed;
  problem why = problem::none;
  std::string_view detail;     // malformed: what was wrong (static text)
  hello h;                     // HELLO
  std::uint64_t sequence = 0;  // STATE
  std::uint8_t flags = 0;      // STATE
  std::uint16_t count = 0;     // PEERS, STATE: entries
  std::string_view list;       // PEERS, STATE: the packed entries
  std::uint64_t origin = 0;    // CONFIG: the broker that made the change (version: sequence)
  std::uint16_t status = 0;    // BYE
  std::string_view text;       // BYE
};

// `f`: identity · "" · packed (exactly three frames, as read from the peer ROUTER).
message decode(const frames& f) noexcept;

// Calls fn(endpoint) for each endpoint of a decoded PEERS.
template <class Fn>
void for_each_peer(const message& m, Fn&& fn);
// Calls fn(capacity) for each entry of a decoded STATE.
template <class Fn>
void for_each_entry(const message& m, Fn&& fn);

// ---- encoding: each appends "" and the packed frame (a DEALER link sends them as they are) ----
void append_hello(frames& out, const hello& h);
void append_peers(frames& out, std::span<const std::string_view> endpoints);
// Entries beyond max_state_entries are not written: the caller splits.
void append_state(frames& out, std::uint64_t sequence, std::uint8_t flags,
                  std::span<const capacity> entries);
void append_bye(frames& out, std::uint16_t status, std::string_view text);
// Entries beyond max_config_entries are not written.
void append_config(frames& out, std::uint64_t version, std::uint64_t origin,
                   std::span<const policy_entry> entries);
// Calls fn(policy_entry) for each entry of a decoded CONFIG.
template <class Fn>
void for_each_policy(const message& m, Fn&& fn);

}  // namespace scale0::protocol::peer

#include "protocol/packing.hpp"

namespace scale0::protocol::peer {

template <class Fn>
void for_each_peer(const message& m, Fn&& fn) {
  packing::reader r(m.list);
  for (std::uint16_t i = 0; i < m.count; ++i) fn(r.str16());
}

template <class Fn>
void for_each_fallback(const hello& h, Fn&& fn) {
  packing::reader r(h.fallback_list);
  for (std::uint8_t i = 0; i < h.fallback_count; ++i) fn(r.str8());
}

template <class Fn>
void for_each_policy(const message& m, Fn&& fn) {
  packing::reader r(m.list);
  for (std::uint16_t i = 0; i < m.count; ++i) {
    policy_entry e;
    e.service = r.str8();
    e.set = r.u8();
    e.timeout_ms = r.u32();
    e.max_queue = r.u32();
    e.max_concurrency = r.u32();
    e.idempotent = r.u8();
    fn(e);
  }
}

template <class Fn>
void for_each_entry(const message& m, Fn&& fn) {
  packing::reader r(m.list);
  for (std::uint16_t i = 0; i < m.count; ++i) {
    capacity c;
    c.service = r.str8();
    c.workers = r.u32();
    c.idle = r.u32();
    c.queued = r.u32();
    c.flags = r.u8();
    fn(c);
  }
}

}  // namespace scale0::protocol::peer
