#include "logging.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>

#include <nlohmann/json.hpp>
#include <stdexcept>

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

void log(spdlog::level::level_enum level, std::string_view message,
         std::initializer_list<log_field> fields) {
  if (!spdlog::should_log(level)) return;
  if (json_format) {
    nlohmann::json j;
    const auto now = std::chrono::system_clock::now();
    j["time"] = std::chrono::duration<double>(now.time_since_epoch()).count();
    j["level"] = spdlog::level::to_string_view(level).data();
    j["msg"] = message;
    for (const auto& [k, v] : fields) j[std::string(k)] = v;
    spdlog::log(level, "{}", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    return;
  }
  std::string line(message);
  for (const auto& [k, v] : fields) {
    line += ' ';
    line += k;
    line += '=';
    const bool quote = v.empty() || v.find_first_of(" \"=") != std::string::npos;
    if (quote) line += '"';
    line += v;
    if (quote) line += '"';
  }
  spdlog::log(level, "{}", line);
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
