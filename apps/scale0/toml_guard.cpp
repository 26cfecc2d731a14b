// SPDX-License-Identifier: Apache-2.0
#include "toml_guard.hpp"

namespace scale0::cli {
namespace {

bool high(char c) {
  return static_cast<unsigned char>(c) >= 0x80;
}

// The ASCII characters toml++ takes for whitespace (space, tab, and \n \v \f \r).
bool ascii_space(char c) {
  return c == ' ' || c == '\t' || (c >= '\n' && c <= '\r');
}

// How many times `c` repeats from `at`.
std::size_t run(std::string_view s, std::size_t at, char c) {
  std::size_t n = 0;
  while (at + n < s.size() && s[at + n] == c) ++n;
  return n;
}

}  // namespace

toml_hazard find_toml_hazard(std::string_view s) {
  enum class in { text, comment, basic, multi_basic, literal, multi_literal };
  in state = in::text;
  // Whether a quote here opens a string: at the start of a line (a key) or after = [ , { (a
  // value, an array item, a key) or after a . between the parts of a key. Elsewhere toml++ is
  // inside a bare key or value, which it reads on to the next terminator, quotes included: in a
  // value a . is part of it (`0x1."x"` is one bare value to toml++, not a key and a string).
  bool quote_opens = true;
  // Keys or values: `key` is true where a key stands (the start of a line outside brackets, a
  // table header, after { or after , in an inline table), false after = and in arrays. `nest`
  // holds the open brackets: 'h' a table header, '[' an array, '{' an inline table (bounded: a
  // deeper nesting is refused by toml++ itself long before).
  bool key = true;
  std::string nest;
  char previous = '\n';
  std::size_t line = 1;
  std::size_t i = s.substr(0, 3) == "\xEF\xBB\xBF" ? 3 : 0;  // toml++ skips a UTF-8 byte order mark
  const auto hazard = [&](const char* what) { return toml_hazard{line, what}; };
  while (i < s.size()) {
    const char c = s[i];
    switch (state) {
      case in::text:
        if (high(c)) return hazard("a non-ASCII character outside a string or a comment");
        if (c == '#') {
          state = in::comment;
        } else if ((c == '"' || c == '\'') && quote_opens) {
          const bool multi = run(s, i, c) >= 3;
          state = c == '"' ? (multi ? in::multi_basic : in::basic)
                           : (multi ? in::multi_literal : in::literal);
          i += multi ? 3 : 1;
          quote_opens = false;  // for after the string
          continue;
        }
        if (c == '\n') {
          if (nest.empty()) key = true;
        } else if (c == '=') {
          key = false;
        } else if (c == '[') {
          const bool header = key && (nest.empty() || (nest.back() == 'h' && previous == '['));
          if (nest.size() < 1024) nest.push_back(header ? 'h' : '[');
          key = header;
        } else if (c == '{') {
          if (nest.size() < 1024) nest.push_back('{');
          key = true;
        } else if (c == ',') {
          key = !nest.empty() && nest.back() == '{';
        } else if (c == ']' || c == '}') {
          if (!nest.empty()) nest.pop_back();
          key = !nest.empty() && nest.back() == 'h';
        }
        if (c == '\n' || std::string_view("=[,{").find(c) != std::string_view::npos ||
            (c == '.' && key))
          quote_opens = true;
        else if (c != ' ' && c != '\t' && c != '\r')
          quote_opens = false;
        break;
      case in::comment:
        if (c == '\n') {
          state = in::text;
          quote_opens = true;
        }
        break;
      case in::basic:
      case in::multi_basic:
        if (c == '\\') {
          if (i + 1 >= s.size()) return {};
          const char next = s[i + 1];
          if (high(next)) return hazard("a non-ASCII character after a backslash in a string");
          if (state == in::multi_basic && ascii_space(next)) {
            // A line-ending backslash: toml++ skips the whitespace and the line breaks after it
            // and then classifies the first other character.
            std::size_t j = i + 1;
            for (; j < s.size() && ascii_space(s[j]); ++j)
              if (s[j] == '\n') ++line;
            if (j < s.size() && high(s[j]))
              return hazard(
                  "a non-ASCII character first on a line continued by a backslash (not "
                  "supported by this TOML parser: write it as \\uXXXX)");
            i = j;
            continue;
          }
          if (next == '\n') ++line;
          i += 2;
          continue;
        }
        if (state == in::basic && (c == '"' || c == '\n')) {
          state = in::text;
          quote_opens = c == '\n';
        }
        if (state == in::multi_basic && c == '"' && run(s, i, '"') >= 3) {
          i += run(s, i, '"');  // up to two quotes of the content may precede the closing three
          state = in::text;
          continue;
        }
        break;
      case in::literal:
        if (c == '\'' || c == '\n') {
          state = in::text;
          quote_opens = c == '\n';
        }
        break;
      case in::multi_literal:
        if (c == '\'' && run(s, i, '\'') >= 3) {
          i += run(s, i, '\'');
          state = in::text;
          continue;
        }
        break;
    }
    if (c == '\n') ++line;
    if (c != ' ' && c != '\t') previous = c;
    ++i;
  }
  return {};
}

}  // namespace scale0::cli
