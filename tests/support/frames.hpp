// SPDX-License-Identifier: Apache-2.0
// Frames from strings and back, for the codec tests.
#pragma once

#include <string>
#include <vector>
#include <zmq.hpp>

namespace scale0_test {

inline std::vector<zmq::message_t> make(const std::vector<std::string>& parts) {
  std::vector<zmq::message_t> f;
  for (const auto& p : parts) f.emplace_back(p.data(), p.size());
  return f;
}

inline std::vector<std::string> parts_of(const std::vector<zmq::message_t>& f) {
  std::vector<std::string> out;
  for (const auto& m : f) out.emplace_back(static_cast<const char*>(m.data()), m.size());
  return out;
}

}  // namespace scale0_test
