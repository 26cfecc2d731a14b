// SPDX-License-Identifier: Apache-2.0
// Wire bytes written out independently of the codec, straight from docs/protocol.md: the codec
// tests compare what the encoders produce with these and feed them to the decoders.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace scale0_test {

// A ROUTER peer identity like the ones libzmq generates for anonymous peers.
inline const std::string identity("\x00\x01\x02\x03\x04", 5);

// Big-endian unsigned integers of the given width.
inline std::string be(std::uint64_t v, std::size_t width) {
  std::string s(width, '\0');
  for (std::size_t i = 0; i < width; ++i)
    s[width - 1 - i] = static_cast<char>(static_cast<unsigned char>(v >> (8 * i)));
  return s;
}
inline std::string u64(std::uint64_t v) {
  return be(v, 8);
}
inline std::string u32(std::uint32_t v) {
  return be(v, 4);
}
inline std::string u16(std::uint16_t v) {
  return be(v, 2);
}
inline std::string u8(std::uint8_t v) {
  return be(v, 1);
}

// The packed strings of S0/2 and S0P1: a 1- or 2-byte length, then the bytes.
inline std::string str8(std::string_view s) {
  return u8(static_cast<std::uint8_t>(s.size())) + std::string(s);
}
inline std::string str16(std::string_view s) {
  return u16(static_cast<std::uint16_t>(s.size())) + std::string(s);
}

}  // namespace scale0_test
