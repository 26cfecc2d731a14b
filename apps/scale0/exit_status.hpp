// SPDX-License-Identifier: Apache-2.0
// The exit status of every subcommand (README, "Exit status"; `scale0 --help`).
#pragma once

#include <cstdint>

namespace scale0::cli::exit_status {

inline constexpr int ok = 0;            // success: a 200 reply, or a server that stopped cleanly
inline constexpr int failure = 1;       // any other run-time failure (an endpoint in use, ...)
inline constexpr int usage = 2;         // a usage or configuration error
inline constexpr int no_broker = 3;     // no broker answered
inline constexpr int client_error = 4;  // a 4xx reply
inline constexpr int server_error = 5;  // a 5xx reply

// What a reply's status means for the exit status.
constexpr int of_reply(std::uint16_t status) noexcept {
  if (status >= 200 && status < 300) return ok;
  if (status >= 400 && status < 500) return client_error;
  if (status >= 500) return server_error;
  return failure;
}

// For --help and the README.
inline constexpr const char* help =
    "Exit status: 0 success (a 200 reply), 1 other failure, 2 usage or configuration error,\n"
    "3 no broker answered, 4 a 4xx reply, 5 a 5xx reply.";

}  // namespace scale0::cli::exit_status
