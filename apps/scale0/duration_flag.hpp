// SPDX-License-Identifier: Apache-2.0
// Durations on the command line: a number of milliseconds, or a number with a unit (500ms, 2s,
// 1m, 1h). Options that hold milliseconds take ->transform(milliseconds_with_unit()).
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <map>
#include <optional>
#include <string>

namespace scale0::cli {

inline CLI::Validator milliseconds_with_unit() {
  return CLI::AsNumberWithUnit(
      std::map<std::string, long>{{"ms", 1}, {"s", 1000}, {"m", 60'000}, {"h", 3'600'000}},
      CLI::AsNumberWithUnit::CASE_SENSITIVE, "ms|s|m|h");
}

// The same for configuration files, where a duration may be a string ("2s", "500ms"): the
// milliseconds, or nothing when `text` is not a duration.
inline std::optional<std::int64_t> milliseconds_of(std::string text) {
  try {
    if (!milliseconds_with_unit()(text).empty()) return std::nullopt;
    std::size_t used = 0;
    const long long v = std::stoll(text, &used);
    if (used != text.size()) return std::nullopt;
    return v;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

// A key (or flag, without --) of milliseconds, by the names the configuration uses for them.
inline bool duration_key(std::string_view key) {
  return key == "timeout" || key.ends_with("-timeout") || key.ends_with("-interval") ||
         key.ends_with("-ttl");
}

}  // namespace scale0::cli
