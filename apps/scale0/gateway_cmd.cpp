// SPDX-License-Identifier: Apache-2.0
// `scale0 gateway`: the HTTP front door (docs/http.md). Options come from defaults, then the TOML
// --config file (same keys as the flags, `route` an array of rule strings), then the flags given.
#include <toml++/toml.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <variant>

#include "commands.hpp"
#include "duration_flag.hpp"
#include "exit_status.hpp"
#include "logging.hpp"
#include "scale0/error.hpp"
#include "scale0/gateway.hpp"
#include "service_notify.hpp"
#include "toml_guard.hpp"

namespace scale0::cli {
namespace {

struct gateway_settings {
  std::string listen = "127.0.0.1:8080";
  std::string broker = "tcp://127.0.0.1:5555";
  std::vector<std::string> route;
  std::string default_service;
  std::int64_t timeout = 30000;
  std::int64_t max_connections = 10000;
  std::int64_t max_inflight = 10000;
  std::int64_t max_body = 8 << 20;
  std::int64_t max_header = 16384;
  std::int64_t header_timeout = 10000;
  std::int64_t body_timeout = 30000;
  std::int64_t idle_timeout = 60000;
  std::int64_t send_timeout = 30000;
  std::int64_t retry_after = 1;
  std::int64_t drain_timeout = 10000;
  std::string metrics_listen = "127.0.0.1:9556";
  std::string trusted_proxies;
  bool underscores_in_headers = false;
  bool insecure = false;
  std::string tls_cert;
  std::string tls_key;
  std::string curve_server_key;
  std::string curve_cert;
  std::string log_level = "info";
  std::string log_format = "text";
};

using member = std::variant<std::string gateway_settings::*, std::int64_t gateway_settings::*,
                            std::vector<std::string> gateway_settings::*, bool gateway_settings::*>;
struct setting {
  const char* name;
  member field;
  const char* help;
  std::int64_t min = 0;  // integers: smallest accepted value (a duration_key() is milliseconds)
};

const std::vector<setting>& settings() {
  using s = gateway_settings;
  static const std::vector<setting> all = {
      {"listen", &s::listen, "HTTP listen address host:port (port 0: any free port)"},
      {"broker", &s::broker, "The broker's frontend endpoint"},
      {"route", &s::route, "Route rule host=H,prefix=/P,service=S,timeout=MS,name=N (repeatable)"},
      {"default-service", &s::default_service, "Service for requests without a host"},
      {"timeout", &s::timeout, "Request deadline when the route gives none (ms)", 1},
      {"max-connections", &s::max_connections, "Open connections; beyond: 503 and close", 1},
      {"max-inflight", &s::max_inflight, "Requests waiting for the broker; beyond: 503", 1},
      {"max-body", &s::max_body, "Request body bytes; over: 413", 0},
      {"max-header", &s::max_header, "Request line and header bytes; over: 431", 64},
      {"header-timeout", &s::header_timeout, "Time to receive a request head (ms); then 408", 1},
      {"body-timeout", &s::body_timeout, "Time to receive a request body (ms); then 408", 1},
      {"idle-timeout", &s::idle_timeout, "Keep-alive idle time before closing (ms)", 1},
      {"send-timeout", &s::send_timeout, "Time to write a response (ms); then close", 1},
      {"retry-after", &s::retry_after, "Retry-After seconds of 503 answers", 0},
      {"drain-timeout", &s::drain_timeout, "On SIGTERM, longest wait for requests (ms)", 0},
      {"metrics-listen", &s::metrics_listen, "HTTP /metrics /healthz /readyz; \"\" for none"},
      {"trusted-proxies", &s::trusted_proxies,
       "Peers (CIDR,...) whose X-Forwarded-For/Forwarded/X-Real-IP are kept and extended"},
      {"underscores-in-headers", &s::underscores_in_headers,
       "Keep header fields whose names hold '_' (dropped by default)"},
      {"insecure", &s::insecure, "Allow non-loopback --listen/--metrics-listen without TLS"},
      {"tls-cert", &s::tls_cert,
       "HTTPS: certificate chain, PEM (leaf first); re-read on SIGHUP. Needs --tls-key"},
      {"tls-key", &s::tls_key, "HTTPS: the certificate's private key, PEM; re-read on SIGHUP"},
      {"curve-server-key", &s::curve_server_key,
       "The broker's CURVE public key (Z85, or its certificate file); given, the "
       "connection to the broker is encrypted with CURVE"},
      {"curve-cert", &s::curve_cert,
       "Own secret CURVE certificate (scale0 keygen); default: an ephemeral key"},
      {"log-level", &s::log_level, "trace, debug, info, warn, error, critical, off"},
      {"log-format", &s::log_format, "text or json"},
  };
  return all;
}

gateway_settings load_file(const std::string& path) {
  gateway_settings out;
  if (std::ifstream in{path, std::ios::binary}) {  // as the broker's config (toml_guard.hpp)
    std::ostringstream text;
    text << in.rdbuf();
    if (const toml_hazard h = find_toml_hazard(text.str()); h.line != 0)
      throw std::runtime_error(path + ":" + std::to_string(h.line) + ": " + h.what);
  }
  toml::table doc;
  try {
    doc = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    throw std::runtime_error(path + ":" + std::to_string(e.source().begin.line) + ": " +
                             std::string(e.description()));
  }
  for (const auto& [key, node] : doc) {
    const std::string where =
        path + ":" + std::to_string(node.source().begin.line) + ": " + std::string(key.str());
    const setting* found = nullptr;
    for (const auto& s : settings())
      if (key.str() == s.name) found = &s;
    if (found == nullptr) throw std::runtime_error(where + ": unknown key");
    std::visit(
        [&](auto field) {
          using T = std::decay_t<decltype(out.*field)>;
          if constexpr (std::is_same_v<T, std::string>) {
            if (!node.is_string()) throw std::runtime_error(where + ": expected a string");
            out.*field = *node.value<std::string>();
          } else if constexpr (std::is_same_v<T, std::int64_t>) {
            if (duration_key(found->name) && node.is_string()) {  // "2s", "500ms"
              const auto ms = milliseconds_of(*node.value<std::string>());
              if (!ms)
                throw std::runtime_error(where +
                                         ": not a duration (milliseconds, or a number with ms, "
                                         "s, m or h)");
              out.*field = *ms;
              return;
            }
            if (!node.is_integer())
              throw std::runtime_error(where + (duration_key(found->name)
                                                    ? ": expected milliseconds or a duration"
                                                    : ": expected an integer"));
            out.*field = *node.value<std::int64_t>();
          } else if constexpr (std::is_same_v<T, bool>) {
            if (!node.is_boolean()) throw std::runtime_error(where + ": expected true or false");
            out.*field = *node.value<bool>();
          } else {
            const toml::array* a = node.as_array();
            if (a == nullptr) throw std::runtime_error(where + ": expected an array of strings");
            (out.*field).clear();
            for (const auto& item : *a) {
              if (!item.is_string()) throw std::runtime_error(where + ": expected strings");
              (out.*field).push_back(*item.value<std::string>());
            }
          }
        },
        found->field);
  }
  return out;
}

gateway_options to_options(const gateway_settings& s) {
  for (const auto& st : settings())
    if (const auto* i = std::get_if<std::int64_t gateway_settings::*>(&st.field))
      if (s.**i < st.min)
        throw std::runtime_error(std::string("--") + st.name + " must be at least " +
                                 std::to_string(st.min));
  using ms = std::chrono::milliseconds;
  gateway_options o;
  o.listen = s.listen;
  o.broker = s.broker;
  o.routes = s.route;
  o.default_service = s.default_service;
  o.timeout = ms(s.timeout);
  o.max_connections = static_cast<std::size_t>(s.max_connections);
  o.max_inflight = static_cast<std::size_t>(s.max_inflight);
  o.max_body = static_cast<std::size_t>(s.max_body);
  o.max_header = static_cast<std::size_t>(s.max_header);
  o.header_timeout = ms(s.header_timeout);
  o.body_timeout = ms(s.body_timeout);
  o.idle_timeout = ms(s.idle_timeout);
  o.send_timeout = ms(s.send_timeout);
  o.retry_after = static_cast<unsigned>(s.retry_after);
  o.drain_timeout = ms(s.drain_timeout);
  o.metrics_listen = s.metrics_listen;
  o.trusted_proxies = s.trusted_proxies;
  o.underscores_in_headers = s.underscores_in_headers;
  o.insecure = s.insecure;
  o.tls_cert = s.tls_cert;
  o.tls_key = s.tls_key;
  o.curve = security::curve_client_from(s.curve_server_key, s.curve_cert);
  return o;
}

struct gateway_args {
  gateway_settings flags;
  std::vector<CLI::Option*> given;  // in settings() order
  std::string config_file;
};

std::atomic<gateway*> running{nullptr};
std::atomic<int> stop_signals{0};

// First SIGTERM/SIGINT: drain. A second one: stop at once. SIGHUP: reload the --config file.
extern "C" void on_gateway_signal(int sig) {
  gateway* g = running.load();
  if (g == nullptr) return;
  if (sig == SIGHUP) return g->reload();
  if (stop_signals.fetch_add(1) == 0) {
    g->drain();
  } else {
    g->stop();
  }
}

// Defaults, then the file, then every flag actually given.
gateway_settings effective(const gateway_args& a) {
  gateway_settings s;
  if (!a.config_file.empty()) s = load_file(a.config_file);
  for (std::size_t i = 0; i < settings().size(); ++i)
    if (a.given[i]->count() > 0)
      std::visit([&](auto field) { s.*field = a.flags.*field; }, settings()[i].field);
  return s;
}

// SIGHUP, on the gateway's thread: the file again, as at start. Nothing changes unless all of it
// is valid.
std::optional<gateway_options> reload(const gateway_args& a, gateway_settings& current) {
  if (a.config_file.empty()) {
    log(spdlog::level::info,
        "SIGHUP: nothing to reload (no --config file); TLS files, if any, are read again");
    return std::nullopt;
  }
  try {
    gateway_settings next = effective(a);
    gateway_options options = to_options(next);
    check_gateway_options(options);
    setup_logging(next.log_level, next.log_format);
    for (const char* key : {"listen", "broker", "metrics-listen"})
      for (const auto& st : settings())
        if (st.name == std::string_view(key))
          std::visit(
              [&](auto field) {
                if (!(next.*field == current.*field))
                  log(spdlog::level::warn, "this setting changes only on restart", {{"key", key}});
              },
              st.field);
    current = next;
    log(spdlog::level::info, "configuration reloaded",
        {{"config", a.config_file}, {"routes", next.route.size()}});
    return options;
  } catch (const std::exception& e) {
    log(spdlog::level::err, "reload failed; keeping the current configuration",
        {{"error", e.what()}});
    return std::nullopt;
  }
}

int run_gateway(const gateway_args& a) {
  gateway_settings s;
  gateway_options options;
  try {
    s = effective(a);
    options = to_options(s);
    setup_logging(s.log_level, s.log_format);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "scale0 gateway: %s\n", e.what());
    return 2;
  }
  log_limiter limiter(10);
  options.on_event = [&limiter](const std::string& what) {
    std::uint64_t held = 0;
    if (!limiter.allow(held)) return;
    log(spdlog::level::warn, what);
  };
  options.on_reload = [&a, current = s]() mutable {
    notify_service("RELOADING=1");
    auto next = reload(a, current);
    notify_service("READY=1");
    return next;
  };
  options.on_drain = [] { notify_service("STOPPING=1"); };
  try {
    gateway g(options);
    running = &g;
    struct forget {
      ~forget() { running = nullptr; }
    } forget_on_exit;
    for (int sig : {SIGINT, SIGTERM, SIGHUP}) {
      struct sigaction sa {};
      sa.sa_handler = on_gateway_signal;
      sigemptyset(&sa.sa_mask);
      sigaction(sig, &sa, nullptr);
    }
    log(spdlog::level::info, "gateway started",
        {{"listen", g.endpoint()},
         {"broker", s.broker},
         {"routes", s.route.size()},
         {"metrics", g.metrics_endpoint().empty() ? "off" : g.metrics_endpoint()}});
    std::printf("ready listen=%s broker=%s", g.endpoint().c_str(), s.broker.c_str());
    if (!g.metrics_endpoint().empty()) std::printf(" metrics=%s", g.metrics_endpoint().c_str());
    std::printf("\n");
    std::fflush(stdout);
    notify_service("READY=1");
    g.run();
    log(spdlog::level::info, "gateway stopped");
    return 0;
  } catch (const error& e) {  // 400: the settings; else a run-time failure (a port in use)
    std::fprintf(stderr, "scale0 gateway: %s\n", e.message().c_str());
    return e.code() == status::bad_request ? exit_status::usage : exit_status::failure;
  }
}

}  // namespace

void add_gateway_command(CLI::App& root, int& exit_code) {
  auto args = std::make_shared<gateway_args>();
  CLI::App* sub = root.add_subcommand("gateway", "Run the HTTP gateway in front of a broker");
  sub->footer(
      "The service is the request's Host without port unless a --route matches first.\n"
      "Every option is also a key of the --config file (TOML, same names without --; `route` is\n"
      "an array of rule strings); flags override the file. SIGTERM/SIGINT drain (a second one\n"
      "stops at once); SIGHUP reloads the file (routes, timeouts, limits). See docs/http.md.\n\n"
      "Examples:\n"
      "  scale0 gateway --listen 127.0.0.1:8080\n"
      "  scale0 gateway --route host=api.example.com,service=api \\\n"
      "                 --route prefix=/static,service=files,timeout=2000");
  sub->add_option("--config", args->config_file, "TOML configuration file")
      ->check(CLI::ExistingFile);
  for (const auto& st : settings()) {
    std::visit(
        [&](auto field) {
          using T = std::decay_t<decltype(args->flags.*field)>;
          CLI::Option* o = nullptr;
          if constexpr (std::is_same_v<T, bool>) {
            o = sub->add_flag(std::string("--") + st.name, args->flags.*field, st.help);
          } else {
            o = sub->add_option(std::string("--") + st.name, args->flags.*field, st.help);
            if constexpr (!std::is_same_v<T, std::vector<std::string>>) o->capture_default_str();
            if (duration_key(st.name)) o->transform(milliseconds_with_unit());
          }
          args->given.push_back(o);
        },
        st.field);
  }
  sub->callback([args, &exit_code] { exit_code = run_gateway(*args); });
}

}  // namespace scale0::cli
