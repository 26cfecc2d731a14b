// SPDX-License-Identifier: Apache-2.0
// READY's rules (docs/protocol.md, "Worker ↔ broker"), written once for both framings: each
// decoder checks its own framing (frame sizes for S0/1, the packed fields for S0/2), then hands
// what the READY says to check_ready(), so the same READY gets the same answer in either. Pure
// and noexcept, like the rest of the decoder. Internal to the library.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "protocol/packing.hpp"
#include "scale0/protocol.hpp"

namespace scale0::protocol {

// The service names of a READY, in order, whichever framing carried them: S0/1 frames from
// `first` on, or an S0/2 packed list of str8 names to the end of its frame.
class ready_service_list {
 public:
  ready_service_list(const frames& f, std::size_t first) noexcept : frames_(&f), next_(first) {}
  explicit ready_service_list(std::string_view packed) noexcept : packed_(packed) {}

  // The next name into `name`; false at the end, or at a packed name whose length points past
  // the end of the list (then truncated()).
  bool next(std::string_view& name) noexcept;
  bool truncated() const noexcept { return !packed_.ok(); }

 private:
  const frames* frames_ = nullptr;
  std::size_t next_ = 0;
  packing::reader packed_{std::string_view()};
};

// What a READY says beyond its services, as its framing decoded it.
struct ready_fields {
  std::uint32_t concurrency = 0;
  std::uint8_t flags = 0;
  std::uint8_t known_flags = 0;          // the flags this framing defines
  std::optional<std::string_view> name;  // S0/2: the worker's display name, when it sent one
};

// Why the READY is refused (a text of reasons.hpp, answered 400), or "" when it may register.
// The first fault wins, in this order: concurrency, flags, name, then the services in order (a
// truncated list, an invalid name, more than max_services_per_worker), and none at all.
std::string_view check_ready(const ready_fields& ready, ready_service_list services) noexcept;

}  // namespace scale0::protocol
