// SPDX-License-Identifier: Apache-2.0
// Frame helpers shared by every framing: big-endian fields in their own frames (S0/1), frames as
// views, and the name rules.
#include <cstdint>

#include "common/text.hpp"
#include "scale0/protocol.hpp"

namespace scale0::protocol {

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

}  // namespace scale0::protocol
