// SPDX-License-Identifier: Apache-2.0
// libFuzzer target for the broker's TOML configuration loader (apps/scale0/broker_config.cpp):
// the input is the text of a config file, loaded by load_config, the function `scale0 broker
// --config` calls. The loader may accept the file or throw config_error; any other exception, a
// crash or a leak is a finding. An accepted file must give settings that pass every check and that
// survive a round trip through to_toml.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "broker_config.hpp"

namespace {

using namespace scale0::cli;

void check(bool ok) {
  if (!ok) __builtin_trap();
}

// One file per fuzzing process, rewritten for every input and removed at exit (the string is never
// destroyed, so the exit handler can still use it).
const std::string& config_path() {
  static const std::string* const path = [] {
    const char* dir = std::getenv("TMPDIR");
    const auto* p = new std::string(std::string(dir != nullptr && *dir != '\0' ? dir : "/tmp") +
                                    "/scale0-config-fuzz-" + std::to_string(getpid()) + ".toml");
    std::atexit([] { std::remove(config_path().c_str()); });
    return p;
  }();
  return *path;
}

void write_file(const std::string& path, const std::string& text) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  check(f != nullptr);
  check(std::fwrite(text.data(), 1, text.size(), f) == text.size());
  check(std::fclose(f) == 0);
}

broker_settings load(const std::string& text, bool& ok) {
  write_file(config_path(), text);
  try {
    ok = true;
    return load_config(config_path());
  } catch (const config_error& e) {
    // The documented error: it names the file.
    check(std::string(e.what()).rfind(config_path(), 0) == 0);
    ok = false;
    return {};
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  bool ok = false;
  const broker_settings s = load(std::string(reinterpret_cast<const char*>(data), size), ok);
  if (!ok) return 0;
  for (const auto& name : setting_names()) check(check_setting(name, s).empty());
  // What --print-config writes back loads to the same settings.
  const std::string printed = to_toml(s);
  bool again = false;
  const broker_settings back = load(printed, again);
  check(again && to_toml(back) == printed);
  return 0;
}
