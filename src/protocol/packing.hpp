// SPDX-License-Identifier: Apache-2.0
// The packed-field primitives of the S0/2 framing (docs/protocol.md, "S0/2 compact framing"),
// shared by every codec that packs fields into one frame: the client/worker codec (codec.cpp) and
// the family's peer codec (peer_codec.cpp). Integers are unsigned big-endian; str8 and str16 are
// a 1- or 2-byte length and then that many bytes. Internal to the library.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <zmq.hpp>

#include "scale0/protocol.hpp"

namespace scale0::protocol::packing {

// Reads big-endian fields from a byte string. A read past the end yields zero or an empty view and
// marks the reader failed, so a decoder reads every field first and checks once.
class reader {
 public:
  explicit reader(std::string_view bytes) noexcept : rest_(bytes) {}
  std::uint64_t uint(std::size_t width) noexcept {
    const std::string_view b = take(width);
    std::uint64_t v = 0;
    for (unsigned char c : b) v = (v << 8) | c;
    return v;
  }
  std::uint8_t u8() noexcept { return static_cast<std::uint8_t>(uint(1)); }
  std::uint16_t u16() noexcept { return static_cast<std::uint16_t>(uint(2)); }
  std::uint32_t u32() noexcept { return static_cast<std::uint32_t>(uint(4)); }
  std::uint64_t u64() noexcept { return uint(8); }
  std::string_view str8() noexcept { return take(u8()); }
  std::string_view str16() noexcept { return take(u16()); }
  std::string_view str32() noexcept { return take(u32()); }
  // The next n bytes (empty, and failed, when fewer are left).
  std::string_view bytes(std::size_t n) noexcept { return take(n); }
  void skip(std::size_t n) noexcept { (void)take(n); }
  bool ok() const noexcept { return ok_; }
  // Every field was there and nothing follows the last one.
  bool complete() const noexcept { return ok_ && rest_.empty(); }
  bool empty() const noexcept { return rest_.empty(); }
  std::string_view rest() const noexcept { return rest_; }

 private:
  std::string_view take(std::size_t n) noexcept {
    if (!ok_ || rest_.size() < n) {
      ok_ = false;
      rest_ = {};
      return {};
    }
    const std::string_view v = rest_.substr(0, n);
    rest_.remove_prefix(n);
    return v;
  }
  std::string_view rest_;
  bool ok_ = true;
};

// Writes big-endian fields into a frame sized beforehand (no copy, and no allocation at all for
// frames up to libzmq's 33-byte inline size). str8 cuts a string to 255 bytes, str16 to 65 535:
// size frames with str8_size / str16_size, which count the same.
class writer {
 public:
  explicit writer(zmq::message_t& m) noexcept : p_(static_cast<unsigned char*>(m.data())) {}
  writer& uint(std::uint64_t v, std::size_t width) noexcept {
    for (std::size_t i = 0; i < width; ++i)
      p_[width - 1 - i] = static_cast<unsigned char>(v >> (8 * i));
    p_ += width;
    return *this;
  }
  writer& u8(std::uint8_t v) noexcept { return uint(v, 1); }
  writer& u16(std::uint16_t v) noexcept { return uint(v, 2); }
  writer& u32(std::uint32_t v) noexcept { return uint(v, 4); }
  writer& u64(std::uint64_t v) noexcept { return uint(v, 8); }
  writer& bytes(std::string_view s) noexcept {
    if (!s.empty()) std::memcpy(p_, s.data(), s.size());
    p_ += s.size();
    return *this;
  }
  writer& str8(std::string_view s) noexcept {
    s = s.substr(0, max_service_name);
    return u8(static_cast<std::uint8_t>(s.size())).bytes(s);
  }
  writer& str16(std::string_view s) noexcept {
    s = s.substr(0, max_message_length);
    return u16(static_cast<std::uint16_t>(s.size())).bytes(s);
  }

 private:
  unsigned char* p_;
};

inline std::size_t str8_size(std::string_view s) noexcept {
  return 1 + std::min(s.size(), max_service_name);
}
inline std::size_t str16_size(std::string_view s) noexcept {
  return 2 + std::min(s.size(), max_message_length);
}

// The packed frame's 4-byte header and command byte come before its fields.
inline constexpr std::size_t head_size = 5;

// The command byte of a packed frame at least head_size long.
inline std::uint8_t command_of(std::string_view packed) noexcept {
  return static_cast<std::uint8_t>(packed[4]);
}

// Appends the delimiter and a packed frame of `fields` bytes after the header and command byte; the
// caller writes the fields through the returned writer.
inline writer append_packed(protocol::frames& out, std::string_view header, std::uint8_t command,
                            std::size_t fields) {
  out.emplace_back();
  out.emplace_back(head_size + fields);
  writer w(out.back());
  w.bytes(header).u8(command);
  return w;
}

}  // namespace scale0::protocol::packing
