// SPDX-License-Identifier: Apache-2.0
#include <atomic>
#include <cstdio>

#include "commands.hpp"
#include "curve_flags.hpp"
#include "duration_flag.hpp"
#include "logging.hpp"
#include "mongrel2_adapter.hpp"
#include "scale0/error.hpp"

namespace scale0::cli {
namespace {

std::atomic<bool> stop_requested{false};

struct mongrel2_args {
  mongrel2_options o;
  curve_flags curve;
  std::string log_level = "info";
  std::string log_format = "text";
};

int run(mongrel2_args& a) {
  try {
    setup_logging(a.log_level, a.log_format);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "scale0 mongrel2: %s\n", e.what());
    return 2;
  }
  on_stop_signal([]() noexcept { stop_requested.store(true); });
  hangup_logger hangups("mongrel2");  // nothing to reload: SIGHUP must not end the adapter
  try {
    a.o.curve = a.curve.resolve();
    return run_mongrel2(a.o, stop_requested);
  } catch (const error& e) {
    std::fprintf(stderr, "scale0 mongrel2: %s\n", e.message().c_str());
    return e.code() == status::bad_request ? 2 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "scale0 mongrel2: %s\n", e.what());
    return 1;
  }
}

}  // namespace

void add_mongrel2_command(CLI::App& root, int& exit_code) {
  auto args = std::make_shared<mongrel2_args>();
  auto& o = args->o;
  CLI::App* sub = root.add_subcommand(
      "mongrel2", "Serve as a Mongrel2 handler: carry its HTTP requests into the broker");
  sub->footer(
      "Mongrel2 binds both endpoints (the handler's send_spec and recv_spec); this connects.\n"
      "Route rules as for `scale0 gateway` (docs/http.md): without one, the service is the Host.\n"
      "Examples:\n"
      "  scale0 mongrel2 --send-spec tcp://127.0.0.1:9997 --recv-spec tcp://127.0.0.1:9996\n"
      "  scale0 mongrel2 --send-spec ipc:///run/m2/send --recv-spec ipc:///run/m2/recv \\\n"
      "      --route host=api.example.com,service=api --route prefix=/static,service=files");
  sub->add_option("--send-spec", o.send_spec, "Mongrel2's send_spec (requests come from here)")
      ->required();
  sub->add_option("--recv-spec", o.recv_spec, "Mongrel2's recv_spec (replies go there)")
      ->required();
  sub->add_option("--broker", o.broker, "Broker frontend endpoint")->capture_default_str();
  sub->add_option("--route", o.routes,
                  "Route rule host=..,prefix=..,service=..,timeout=..,name=.. (repeatable)");
  sub->add_option("--default-service", o.default_service, "Service for requests without a Host");
  sub->add_option("--timeout", o.timeout_ms, "Request deadline (ms) when the route gives none")
      ->transform(milliseconds_with_unit())
      ->capture_default_str()
      ->check(CLI::Range(1L, 3600000L));
  sub->add_option("--max-inflight", o.max_inflight, "Requests waiting for the broker; beyond: 503")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{1}, std::size_t{10000000}));
  sub->add_option("--max-message", o.max_message, "Bytes of one Mongrel2 message; over: dropped")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{1024}, std::size_t{1} << 31));
  sub->add_option("--retry-after", o.retry_after_s, "Seconds, in Retry-After of 503 answers")
      ->capture_default_str()
      ->check(CLI::Range(0u, 3600u));
  sub->add_option("--trusted-proxies", o.trusted_proxies,
                  "Peers (CIDR,...) whose X-Forwarded-For/Forwarded/X-Real-IP are kept");
  sub->add_flag("--underscores-in-headers", o.underscores_in_headers,
                "Keep header fields whose names hold '_' (dropped by default)");
  args->curve.add_to(sub);
  sub->add_option("--sender-id", o.sender_id,
                  "This handler's socket identity (UUID); default: a fresh one");
  sub->add_option("--log-level", args->log_level, "trace, debug, info, warn, error, critical, off")
      ->capture_default_str();
  sub->add_option("--log-format", args->log_format, "text or json")->capture_default_str();
  sub->callback([args, &exit_code] { exit_code = run(*args); });
}

}  // namespace scale0::cli
