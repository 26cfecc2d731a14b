// SPDX-License-Identifier: Apache-2.0
#include "scale0/error.hpp"

namespace scale0 {

std::string_view reason_phrase(std::uint16_t code) noexcept {
  switch (code) {
    case status::ok:
      return "OK";
    case status::bad_request:
      return "malformed message";
    case status::not_found:
      return "not found";
    case status::too_large:
      return "message too large";
    case status::too_many_requests:
      return "too many requests in flight";
    case status::worker_failed:
      return "worker failed";
    case status::not_implemented:
      return "unknown command";
    case status::worker_lost:
      return "worker lost";
    case status::unavailable:
      return "service unavailable";
    case status::deadline:
      return "deadline passed";
    case status::bad_version:
      return "protocol version not supported";
    default:
      return "";
  }
}

error::error(std::uint16_t code, const std::string& message)
    : std::runtime_error(std::to_string(code) + " " + message), code_(code), message_(message) {}

}  // namespace scale0
