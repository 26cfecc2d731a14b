// SPDX-License-Identifier: Apache-2.0
// Durations on the command line: a number of milliseconds, or a number with a unit (500ms, 2s,
// 1m, 1h). Options that hold milliseconds take ->transform(milliseconds_with_unit()).
#pragma once

#include <CLI/CLI.hpp>
#include <map>
#include <string>

namespace scale0::cli {

inline CLI::Validator milliseconds_with_unit() {
  return CLI::AsNumberWithUnit(
      std::map<std::string, long>{{"ms", 1}, {"s", 1000}, {"m", 60'000}, {"h", 3'600'000}},
      CLI::AsNumberWithUnit::CASE_SENSITIVE, "ms|s|m|h");
}

}  // namespace scale0::cli
