// SPDX-License-Identifier: Apache-2.0
// Structured logs on stderr through spdlog: "message key=value ..." as text, or one JSON object
// per line. Events that a flood of bad input could repeat go through a rate limit.
#pragma once

#include <spdlog/spdlog.h>

#include <chrono>
#include <concepts>
#include <cstdint>
#include <initializer_list>
#include <mutex>
#include <string>
#include <string_view>
#include <variant>

namespace scale0::cli {

// A field of a log line: text, or a number (a JSON number in JSON logs).
struct log_field {
  std::string_view key;
  std::variant<std::string, std::int64_t, std::uint64_t, double> value;

  log_field(std::string_view k, std::string v) : key(k), value(std::move(v)) {}
  log_field(std::string_view k, std::string_view v) : key(k), value(std::string(v)) {}
  log_field(std::string_view k, const char* v) : key(k), value(std::string(v)) {}
  template <std::signed_integral T>
  log_field(std::string_view k, T v) : key(k), value(static_cast<std::int64_t>(v)) {}
  template <std::unsigned_integral T>
  log_field(std::string_view k, T v) : key(k), value(static_cast<std::uint64_t>(v)) {}
  log_field(std::string_view k, double v) : key(k), value(v) {}
};

// Throws std::invalid_argument for an unknown level or format.
void setup_logging(const std::string& level, const std::string& format);

// Text: `message key=value ...`, a value quoted when empty or holding a space, `"` or `=` (a `"`
// inside quotes is `\"`). JSON: one object with time (RFC 3339, UTC, milliseconds), level (as
// --log-level spells it: trace, debug, info, warn, error, critical), msg and the fields, numbers as
// JSON numbers. In both, the message, keys and text values go through escape_text
// (src/common/text.hpp): a control character, a backslash or a byte that is not UTF-8 never reaches
// the log as is.
void log(spdlog::level::level_enum level, std::string_view message,
         std::initializer_list<log_field> fields = {});
// The line log() writes (without spdlog's prefix); exposed for tests.
std::string format_log_line(spdlog::level::level_enum level, std::string_view message,
                            std::initializer_list<log_field> fields, bool json);

// Lets through at most `per_second` events a second; when it starts letting them through again
// it reports how many it held back.
// Thread-safe.
class log_limiter {
 public:
  explicit log_limiter(int per_second) : per_second_(per_second) {}
  // True if this event may be logged; `suppressed` is set to the count held back since the last
  // one let through (0 usually).
  bool allow(std::uint64_t& suppressed);
  // Once the window has passed: how many were held back (and forgets them). For a timer, so a
  // burst followed by silence is still reported.
  std::uint64_t flush();

 private:
  std::mutex mu_;
  int per_second_;
  std::chrono::steady_clock::time_point window_{};
  int used_ = 0;
  std::uint64_t held_ = 0;
};

}  // namespace scale0::cli
