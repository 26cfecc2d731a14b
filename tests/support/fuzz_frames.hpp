// SPDX-License-Identifier: Apache-2.0
// Shared by the libFuzzer targets that feed decoders frames: an input split into frames, and the
// check that a decoded view lies inside the frames it was decoded from.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "scale0/protocol.hpp"

namespace scale0_test {

// Each frame as a one-byte length, then that many bytes (a short last frame takes what is left),
// at most `max_frames` of them.
inline scale0::protocol::frames split_frames(const std::uint8_t* data, std::size_t size,
                                             std::size_t max_frames) {
  scale0::protocol::frames f;
  std::size_t at = 0;
  while (at < size && f.size() < max_frames) {
    const std::size_t want = data[at++];
    const std::size_t len = want < size - at ? want : size - at;
    f.emplace_back(data + at, len);
    at += len;
  }
  return f;
}

// True when `v` is empty or lies inside one of the frames.
inline bool inside(std::string_view v, const scale0::protocol::frames& f) {
  if (v.empty()) return true;
  const auto p = reinterpret_cast<std::uintptr_t>(v.data());
  for (const auto& m : f) {
    const auto b = reinterpret_cast<std::uintptr_t>(m.data());
    if (p >= b && p + v.size() <= b + m.size()) return true;
  }
  return false;
}

}  // namespace scale0_test
