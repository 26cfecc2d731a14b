// SPDX-License-Identifier: Apache-2.0
// A check of a TOML text before toml++ reads it. Debian 12's toml++ 3.3.0 classifies a non-ASCII
// code point where whitespace may stand with a lookup that reaches __builtin_unreachable() for
// many of them (U+00A1..U+049A among others: toml++ issues #190 and #295), which is undefined
// behaviour in the parser. Found by tests/fuzz/config_fuzz.cpp. Every such place is rejected here
// first, with the line, so the configuration loaders (the broker's, the gateway's) never hand the
// parser those bytes.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace scale0::cli {

struct toml_hazard {
  std::size_t line = 0;  // 1-based; 0: none found
  std::string what;
};

// Where in `text` a byte of 0x80 or above stands at a place toml++ 3.3 checks for whitespace:
// outside strings and comments (never valid TOML), right after a backslash in a basic string (not
// a valid escape either), or first on a line continued by a line-ending backslash in a multi-line
// basic string (valid TOML, refused because toml++ 3.3 cannot read it safely).
toml_hazard find_toml_hazard(std::string_view text);

}  // namespace scale0::cli
