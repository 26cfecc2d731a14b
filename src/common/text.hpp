// SPDX-License-Identifier: Apache-2.0
// Bytes a peer sent, on their way to places that need text: logs (one event, one line), the
// status table, Prometheus label values (as UTF-8). And the UTF-8 rule that service names follow.
#pragma once

#include <string>
#include <string_view>

namespace scale0 {

// Well-formed UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF.
bool valid_utf8(std::string_view s) noexcept;

// Well-formed UTF-8 without control characters: no C0 (U+0000-U+001F), DEL (U+007F) or
// C1 (U+0080-U+009F).
bool printable_utf8(std::string_view s) noexcept;

// `s` made safe for a log line or a table cell: printable UTF-8 is kept; a backslash becomes
// "\\"; every byte of a control character (C0, DEL, C1), of U+2028/U+2029 (line and paragraph
// separators) and of anything that is not well-formed UTF-8 becomes "\xNN" (two lowercase hex
// digits). The result is printable UTF-8 on one line, and the bytes can be read back from it.
std::string escape_text(std::string_view s);

// `s` as well-formed UTF-8: each byte that is not part of a well-formed character becomes U+FFFD
// (a Prometheus label value, a JSON string). Nothing is escaped.
std::string utf8_or_replacement(std::string_view s);

}  // namespace scale0
