// SPDX-License-Identifier: Apache-2.0
// Status codes and the one exception type of libscale0.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace scale0 {

// Status codes carried by every reply (HTTP-like). All codes the broker emits are listed here.
namespace status {
inline constexpr std::uint16_t ok = 200;
inline constexpr std::uint16_t no_content = 204;  // worker DISCONNECT: it holds no request
// A draining broker of a family: go to the endpoint in the message. To a client, in a REPLY that
// hands its request back (service frame, then the body); to a worker, in a DISCONNECT; to a peer
// that forwarded a request, in a REPLY (the request was not taken).
inline constexpr std::uint16_t moved = 301;
inline constexpr std::uint16_t bad_request = 400;
inline constexpr std::uint16_t forbidden = 403;  // CURVE: the key may not serve/call it
inline constexpr std::uint16_t not_found = 404;
inline constexpr std::uint16_t too_large = 413;
inline constexpr std::uint16_t upgrade_required = 426;  // CONFIG: the worker's policy was stale
inline constexpr std::uint16_t too_many_requests = 429;
inline constexpr std::uint16_t worker_failed = 500;
inline constexpr std::uint16_t not_implemented = 501;
inline constexpr std::uint16_t worker_lost = 502;
inline constexpr std::uint16_t unavailable = 503;
inline constexpr std::uint16_t deadline = 504;
inline constexpr std::uint16_t bad_version = 505;
}  // namespace status

// The standard reason phrase for a status code ("" for codes we do not define).
std::string_view reason_phrase(std::uint16_t code) noexcept;

// Thrown by the client and worker libraries: a request that ended in a non-200 status, a
// client-side timeout (504), or a setup failure (invalid endpoint, bad argument: 400).
class error : public std::runtime_error {
 public:
  error(std::uint16_t code, const std::string& message);
  std::uint16_t code() const noexcept { return code_; }
  const std::string& message() const noexcept { return message_; }  // what() without the code

 private:
  std::uint16_t code_;
  std::string message_;
};

}  // namespace scale0
