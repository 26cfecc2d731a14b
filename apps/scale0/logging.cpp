#include "logging.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>

#include <nlohmann/json.hpp>
#include <stdexcept>

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

std::string format_log_line(spdlog::level::level_enum level, std::string_view message,
                            std::initializer_list<log_field> fields, bool json) {
  if (json) {
    nlohmann::json j;
    const auto now = std::chrono::system_clock::now();
    j["time"] = std::chrono::duration<double>(now.time_since_epoch()).count();
    j["level"] = spdlog::level::to_string_view(level).data();
    j["msg"] = escape_text(message);
    for (const auto& [k, v] : fields) j[escape_text(k)] = escape_text(v);
    // Everything is valid UTF-8 by now; `replace` only guards against a throw.
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }
  std::string line = escape_text(message);
  for (const auto& [k, v] : fields) {
    line += ' ';
    line += escape_text(k);
    line += '=';
    const std::string value = escape_text(v);
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
