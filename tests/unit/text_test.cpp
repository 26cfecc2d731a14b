// SPDX-License-Identifier: Apache-2.0
// Peer bytes on their way to logs, metrics and tables (src/common/text.hpp), and the service-name
// rule of docs/protocol.md ("printable UTF-8 without control characters, 1-255 bytes").
#include "common/text.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <string_view>

#include "logging.hpp"
#include "scale0/protocol.hpp"

namespace {

using namespace std::string_literals;
using scale0::protocol::valid_service_name;

TEST(service_name, printable_utf8_of_one_to255_bytes_is_valid) {
  for (const std::string& name :
       {"echo"s, "a"s, "www.example.com"s, "a b"s, "back\\slash"s, "q\"uote"s, "~"s,
        "caf\xc3\xa9"s,                    // é, 2 bytes
        "\xe2\x82\xac"s,                   // €, 3 bytes
        "\xf0\x9f\x98\x80"s,               // U+1F600, 4 bytes
        "\xc2\xa0"s,                       // U+00A0, first code point after C1
        "\xef\xbf\xbd"s,                   // U+FFFD
        "\xf4\x8f\xbf\xbf"s,               // U+10FFFF, the last code point
        "\xed\x9f\xbf"s, "\xee\x80\x80"s,  // U+D7FF and U+E000 around the surrogates
        std::string(255, 'x')})
    EXPECT_TRUE(valid_service_name(name)) << name;
  std::string euros;  // 85 three-byte characters: 255 bytes
  for (int i = 0; i < 85; ++i) euros += "\xe2\x82\xac";
  EXPECT_TRUE(valid_service_name(euros));
  EXPECT_FALSE(valid_service_name(euros + "x")) << "256 bytes";
}

TEST(service_name, length_out_of_range_is_invalid) {
  EXPECT_FALSE(valid_service_name(""));
  EXPECT_FALSE(valid_service_name(std::string(256, 'x')));
}

TEST(service_name, malformed_utf8_is_invalid) {
  for (const std::string& name : {
           "bad\xff"s,
           "\xfe"s,
           "\x80"s,
           "a\xbf"s,  // bytes that never start a character
           "\xc3"s,
           "\xe2\x82"s,
           "\xf0\x9f\x98"s,  // truncated sequences
           "\xc3x"s,
           "\xe2\x82x"s,  // continuation missing
           "\xc0\xaf"s,
           "\xc1\xbf"s,  // overlong 2-byte
           "\xe0\x80\xaf"s,
           "\xe0\x9f\xbf"s,  // overlong 3-byte
           "\xf0\x80\x80\xaf"s,
           "\xf0\x8f\xbf\xbf"s,  // overlong 4-byte
           "\xed\xa0\x80"s,
           "\xed\xbf\xbf"s,  // surrogates U+D800, U+DFFF
           "\xf4\x90\x80\x80"s,
           "\xf5\x80\x80\x80"s,      // above U+10FFFF
           "\xf8\x88\x80\x80\x80"s,  // 5-byte form
       })
    EXPECT_FALSE(valid_service_name(name)) << scale0::escape_text(name);
}

TEST(service_name, control_characters_are_invalid) {
  for (int c = 0; c < 0x20; ++c)
    EXPECT_FALSE(valid_service_name("a"s + static_cast<char>(c) + "b")) << c;
  EXPECT_FALSE(valid_service_name("a\nb"));
  EXPECT_FALSE(valid_service_name("a\x1b[31mb"));
  EXPECT_FALSE(valid_service_name("a\x7f"));  // DEL
  for (int c = 0x80; c < 0xa0; ++c) {         // C1: U+0080-U+009F, encoded C2 80 - C2 9F
    std::string name = "a\xc2"s;
    name += static_cast<char>(c);
    EXPECT_FALSE(valid_service_name(name)) << c;
  }
}

TEST(escape_text, printable_utf8_is_kept) {
  for (const std::string& s :
       {""s, "echo"s, "a b=c \"d\""s, "caf\xc3\xa9"s, "\xf0\x9f\x98\x80"s, "\xc2\xa0"s})
    EXPECT_EQ(scale0::escape_text(s), s);
}

TEST(escape_text, controls_backslash_and_bad_bytes_become_hex_escapes) {
  EXPECT_EQ(scale0::escape_text("a\nb"), "a\\x0ab");
  EXPECT_EQ(scale0::escape_text("a\r\n2024-01-01 INFO forged"),
            "a\\x0d\\x0a2024-01-01 INFO forged");
  EXPECT_EQ(scale0::escape_text("a\x1b[31mb"), "a\\x1b[31mb");
  EXPECT_EQ(scale0::escape_text("\t\x7f"s + '\0'), "\\x09\\x7f\\x00");
  EXPECT_EQ(scale0::escape_text("back\\slash"), "back\\\\slash");
  EXPECT_EQ(scale0::escape_text("bad\xff"), "bad\\xff");
  EXPECT_EQ(scale0::escape_text("\xc0\xaf"), "\\xc0\\xaf");           // overlong
  EXPECT_EQ(scale0::escape_text("\xed\xa0\x80"), "\\xed\\xa0\\x80");  // surrogate
  EXPECT_EQ(scale0::escape_text("x\xc3"), "x\\xc3");                  // truncated
  EXPECT_EQ(scale0::escape_text("\xc2\x85"), "\\xc2\\x85");           // C1 NEL
  // Unicode line and paragraph separators: some viewers break lines on them.
  EXPECT_EQ(scale0::escape_text("a\xe2\x80\xa8z\xe2\x80\xa9"), "a\\xe2\\x80\\xa8z\\xe2\\x80\\xa9");
}

TEST(escape_text, output_is_printable_utf8_for_every_byte) {
  std::string all;
  for (int c = 0; c < 256; ++c) all += static_cast<char>(c);
  const std::string out = scale0::escape_text(all);
  EXPECT_TRUE(scale0::printable_utf8(out)) << out;
  EXPECT_EQ(out.find('\n'), std::string::npos);
  // Dumping it as JSON with the strict (throwing) error handler works.
  EXPECT_NO_THROW((void)nlohmann::json(out).dump());
}

TEST(utf8_or_replacement, keeps_utf8_and_replaces_the_rest) {
  EXPECT_EQ(scale0::utf8_or_replacement("echo"), "echo");
  EXPECT_EQ(scale0::utf8_or_replacement("a\\b\"c\nd"), "a\\b\"c\nd");  // not escaped
  EXPECT_EQ(scale0::utf8_or_replacement("caf\xc3\xa9"), "caf\xc3\xa9");
  // Label values must be UTF-8: a byte that is not becomes U+FFFD.
  EXPECT_EQ(scale0::utf8_or_replacement("bad\xff"), "bad\xef\xbf\xbd");
  EXPECT_EQ(scale0::utf8_or_replacement("\xed\xa0\x80x"), "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbdx");
  EXPECT_TRUE(scale0::valid_utf8(scale0::utf8_or_replacement("\xc0\xaf\xf5")));
}

}  // namespace

namespace {

using scale0::cli::format_log_line;

TEST(log_line, text_log_is_one_line_whatever_the_peer_sent) {
  const std::string forged = "a\n2024-01-01 00:00:00.000 INFO  worker joined worker=evil";
  const std::string line =
      format_log_line(spdlog::level::warn, "request error",
                      {{"service", forged}, {"reason", "bad\xff\x1b[2J"}}, false);
  EXPECT_EQ(line.find('\n'), std::string::npos) << line;
  EXPECT_EQ(line.find('\x1b'), std::string::npos) << line;
  EXPECT_TRUE(scale0::printable_utf8(line)) << line;
  EXPECT_EQ(line,
            "request error service=\"a\\x0a2024-01-01 00:00:00.000 INFO  worker joined "
            "worker=evil\" reason=bad\\xff\\x1b[2J");
  EXPECT_EQ(format_log_line(spdlog::level::info, "m", {{"k", "say \"hi\"\\"}}, false),
            "m k=\"say \\\"hi\\\"\\\\\"");
}

TEST(log_line, json_log_is_valid_json_for_invalid_utf8) {
  const std::string line = format_log_line(spdlog::level::warn, "request error",
                                           {{"service", "bad\xff"}, {"reason", "a\nb"}}, true);
  EXPECT_EQ(line.find('\n'), std::string::npos);
  const auto j = nlohmann::json::parse(line, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << line;
  EXPECT_EQ(j["service"], "bad\\xff");  // the same escape as the text log
  EXPECT_EQ(j["reason"], "a\\x0ab");
  EXPECT_EQ(j["msg"], "request error");
}

// Numbers are JSON numbers, the level is spelled as --log-level spells it, the time is RFC 3339.
TEST(log_line, json_log_has_numbers_levels_and_rfc3339_times) {
  const std::string line = format_log_line(spdlog::level::warn, "m",
                                           {{"count", std::uint64_t{18446744073709551615u}},
                                            {"code", std::uint16_t{503}},
                                            {"delta", -3},
                                            {"ratio", 0.5},
                                            {"name", "503"}},
                                           true);
  const auto j = nlohmann::json::parse(line, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << line;
  EXPECT_EQ(j["level"], "warn");
  EXPECT_TRUE(j["count"].is_number_unsigned());
  EXPECT_EQ(j["count"].get<std::uint64_t>(), 18446744073709551615u);
  EXPECT_EQ(j["code"], 503);
  EXPECT_EQ(j["delta"], -3);
  EXPECT_EQ(j["ratio"], 0.5);
  EXPECT_EQ(j["name"], "503");  // text stays text
  const std::regex rfc3339(R"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z)");
  EXPECT_TRUE(std::regex_match(j["time"].get<std::string>(), rfc3339)) << line;
  for (const auto& [level, name] : std::vector<std::pair<spdlog::level::level_enum, std::string>>{
           {spdlog::level::trace, "trace"},
           {spdlog::level::debug, "debug"},
           {spdlog::level::info, "info"},
           {spdlog::level::err, "error"},
           {spdlog::level::critical, "critical"}})
    EXPECT_EQ(nlohmann::json::parse(format_log_line(level, "m", {}, true))["level"], name);
  // The text log writes the same numbers as decimals.
  EXPECT_EQ(
      format_log_line(spdlog::level::info, "m", {{"code", std::uint16_t{503}}, {"d", -3}}, false),
      "m code=503 d=-3");
}

}  // namespace
