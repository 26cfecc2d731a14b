// SPDX-License-Identifier: Apache-2.0
#include "logging.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>

#include <ctime>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <type_traits>

#include "common/text.hpp"

namespace scale0::cli {
namespace {
bool json_format = false;
}  // namespace

void setup_logging(const std::string& level, const std::string& format) {
  if (format != "text" && format != "json")
    throw std::invalid_argument("log format must be text or json");
  const auto lvl = spdlog::level::from_str(level);
  if (lvl == spdlog::level::off && level != "off")
    throw std::invalid_argument("unknown log level " + level);
  json_format = format == "json";
  auto logger = spdlog::get("scale0");
  if (!logger) logger = spdlog::stderr_color_mt("scale0");
  spdlog::set_default_logger(logger);
  spdlog::set_level(lvl);
  if (json_format) {
    logger->set_pattern("%v");  // the message is the whole JSON object
  } else {
    logger->set_pattern("%Y-%m-%d %H:%M:%S.%e %^%-5l%$ %v");
  }
}

// Messages and values may carry what a peer sent (service names, reasons, error texts): both
// formats get them through escape_text, so an event is one line and a byte that is not printable
// UTF-8 reads the same way in either.
void log(spdlog::level::level_enum level, std::string_view message,
         std::initializer_list<log_field> fields) {
  if (!spdlog::should_log(level)) return;
  spdlog::log(level, "{}", format_log_line(level, message, fields, json_format));
}

namespace {

// 2026-12-05T08:11:36.202Z
std::string rfc3339_now() {
  const auto now = std::chrono::system_clock::now();
  const std::time_t secs = std::chrono::system_clock::to_time_t(now);
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()) % 1000;
  std::tm utc{};
  ::gmtime_r(&secs, &utc);
  char buf[32];
  const std::size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &utc);
  return std::string(buf, n) + fmt::format(".{:03}Z", ms.count());
}

// As --log-level spells it (spdlog says "warning").
std::string_view level_name(spdlog::level::level_enum level) {
  if (level == spdlog::level::warn) return "warn";
  const auto name = spdlog::level::to_string_view(level);
  return {name.data(), name.size()};
}

std::string text_of(const log_field& f) {
  return std::visit(
      [](const auto& v) -> std::string {
        if constexpr (std::is_same_v<std::decay_t<decltype(v)>, std::string>) {
          return escape_text(v);
        } else if constexpr (std::is_same_v<std::decay_t<decltype(v)>, double>) {
          return fmt::format("{}", v);
        } else {
          return std::to_string(v);
        }
      },
      f.value);
}

}  // namespace

std::string format_log_line(spdlog::level::level_enum level, std::string_view message,
                            std::initializer_list<log_field> fields, bool json) {
  if (json) {
    nlohmann::json j;
    j["time"] = rfc3339_now();
    j["level"] = level_name(level);
    j["msg"] = escape_text(message);
    for (const log_field& f : fields) {
      auto& slot = j[escape_text(f.key)];
      std::visit(
          [&](const auto& v) {
            if constexpr (std::is_same_v<std::decay_t<decltype(v)>, std::string>) {
              slot = escape_text(v);
            } else {
              slot = v;
            }
          },
          f.value);
    }
    // Everything is valid UTF-8 by now; `replace` only guards against a throw.
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }
  std::string line = escape_text(message);
  for (const log_field& f : fields) {
    line += ' ';
    line += escape_text(f.key);
    line += '=';
    const std::string value = text_of(f);
    const bool quote = value.empty() || value.find_first_of(" \"=") != std::string::npos;
    if (!quote) {
      line += value;
      continue;
    }
    line += '"';
    for (char c : value) {  // backslashes are already escaped: \" is unambiguous
      if (c == '"') line += '\\';
      line += c;
    }
    line += '"';
  }
  return line;
}

std::uint64_t log_limiter::flush() {
  std::lock_guard lock(mu_);
  if (std::chrono::steady_clock::now() - window_ < std::chrono::seconds(1)) return 0;
  return std::exchange(held_, 0);
}

bool log_limiter::allow(std::uint64_t& suppressed) {
  std::lock_guard lock(mu_);
  const auto now = std::chrono::steady_clock::now();
  suppressed = 0;
  if (now - window_ >= std::chrono::seconds(1)) {
    window_ = now;
    used_ = 0;
    suppressed = held_;
    held_ = 0;
  }
  if (used_ < per_second_) {
    ++used_;
    return true;
  }
  ++held_;
  return false;
}

}  // namespace scale0::cli
