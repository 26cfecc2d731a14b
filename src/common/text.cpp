// SPDX-License-Identifier: Apache-2.0
#include "common/text.hpp"

#include <cstddef>
#include <cstdint>

namespace scale0 {
namespace {

// The length (1-4) of the well-formed UTF-8 character that starts `s` (non-empty), and its code
// point; 0 when the bytes there are not one (a stray continuation byte, a truncated sequence, an
// overlong form, a surrogate, or something above U+10FFFF).
std::size_t next_char(std::string_view s, char32_t& cp) noexcept {
  const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char b0 = byte(0);
  std::size_t n;
  if (b0 < 0x80) {
    cp = b0;
    return 1;
  } else if (b0 >= 0xc2 && b0 <= 0xdf) {  // 0xc0 and 0xc1 could only start overlong forms
    n = 2;
    cp = b0 & 0x1fu;
  } else if (b0 >= 0xe0 && b0 <= 0xef) {
    n = 3;
    cp = b0 & 0x0fu;
  } else if (b0 >= 0xf0 && b0 <= 0xf4) {
    n = 4;
    cp = b0 & 0x07u;
  } else {
    return 0;
  }
  if (s.size() < n) return 0;
  for (std::size_t i = 1; i < n; ++i) {
    if ((byte(i) & 0xc0u) != 0x80u) return 0;
    cp = (cp << 6) | (byte(i) & 0x3fu);
  }
  if (n == 3 && cp < 0x800) return 0;                       // overlong
  if (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) return 0;  // overlong, or past Unicode
  if (cp >= 0xd800 && cp <= 0xdfff) return 0;               // surrogates are not characters
  return n;
}

bool control(char32_t cp) noexcept {
  return cp < 0x20 || (cp >= 0x7f && cp < 0xa0);  // C0, DEL, C1
}

void hex_escape(std::string& out, std::string_view bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  for (unsigned char c : bytes) {
    out += "\\x";
    out += digits[c >> 4];
    out += digits[c & 15];
  }
}

}  // namespace

bool valid_utf8(std::string_view s) noexcept {
  char32_t cp = 0;
  while (!s.empty()) {
    const std::size_t n = next_char(s, cp);
    if (n == 0) return false;
    s.remove_prefix(n);
  }
  return true;
}

bool printable_utf8(std::string_view s) noexcept {
  char32_t cp = 0;
  while (!s.empty()) {
    const std::size_t n = next_char(s, cp);
    if (n == 0 || control(cp)) return false;
    s.remove_prefix(n);
  }
  return true;
}

std::string escape_text(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  char32_t cp = 0;
  while (!s.empty()) {
    std::size_t n = next_char(s, cp);
    if (n == 0) {
      hex_escape(out, s.substr(0, 1));  // not UTF-8: this byte alone, then resynchronise
      n = 1;
    } else if (control(cp) || cp == 0x2028 || cp == 0x2029) {
      hex_escape(out, s.substr(0, n));
    } else if (cp == '\\') {
      out += "\\\\";
    } else {
      out.append(s.substr(0, n));
    }
    s.remove_prefix(n);
  }
  return out;
}

std::string utf8_or_replacement(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  char32_t cp = 0;
  while (!s.empty()) {
    std::size_t n = next_char(s, cp);
    if (n == 0) {
      out += "\xef\xbf\xbd";  // U+FFFD REPLACEMENT CHARACTER
      n = 1;
    } else {
      out.append(s.substr(0, n));
    }
    s.remove_prefix(n);
  }
  return out;
}

}  // namespace scale0
