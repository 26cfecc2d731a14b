// SPDX-License-Identifier: Apache-2.0
// `scale0 mongrel2`: the Mongrel2 front door (docs/http.md, "Mongrel2 as the front door"). Flags
// become a mongrel2_options; the loop is scale0::mongrel2_front (src/gateway/mongrel2_front.cpp).
#include <atomic>
#include <cstdio>

#include "commands.hpp"
#include "curve_flags.hpp"
#include "duration_flag.hpp"
#include "logging.hpp"
#include "scale0/error.hpp"
#include "scale0/mongrel2.hpp"

namespace scale0::cli {
namespace {

std::atomic<bool> stop_requested{false};
std::atomic<mongrel2_front*> running{nullptr};

struct mongrel2_args {
  mongrel2_options o;
  long timeout_ms = 30000;
  unsigned retry_after_s = 1;
  curve_flags curve;
  std::string log_level = "info";
  std::string log_format = "text";
};

void log_event(const mongrel2_event& e, log_limiter& limiter) {
  using namespace spdlog::level;
  std::uint64_t held = 0;
  switch (e.kind) {
    case mongrel2_event_kind::subscribed:
      return log(info, e.what, {{"recv_spec", std::string(e.detail)}});
    case mongrel2_event_kind::disconnected:
      return log(debug, e.what,
                 {{"connection", std::string(e.connection)}, {"forgotten", e.count}});
    case mongrel2_event_kind::dropped:
      // A flood of bad input must not become a flood of log lines.
      if (!limiter.allow(held)) return;
      if (held > 0) log(warn, "log lines suppressed by the rate limit", {{"count", held}});
      return log(warn, e.what, {{"reason", std::string(e.detail)}});
    case mongrel2_event_kind::loop_error:
      return log(err, e.what, {{"error", std::string(e.detail)}});
  }
}

int serve(mongrel2_options& o, log_limiter& limiter) {
  mongrel2_front front(o);
  running = &front;
  struct forget {
    ~forget() { running = nullptr; }
  } forget_on_exit;
  if (stop_requested.load()) front.stop();  // a signal before the front door existed
  const std::string metrics = front.metrics_endpoint();
  std::printf("ready send=%s recv=%s broker=%s", o.send_spec.c_str(), o.recv_spec.c_str(),
              o.broker.c_str());
  if (!metrics.empty()) std::printf(" metrics=%s", metrics.c_str());
  std::printf("\n");
  std::fflush(stdout);
  log(spdlog::level::info, "mongrel2 handler ready",
      {{"send_spec", o.send_spec},
       {"recv_spec", o.recv_spec},
       {"broker", o.broker},
       {"metrics", metrics.empty() ? "off" : metrics}});
  front.run();
  if (const auto held = limiter.flush())
    log(spdlog::level::warn, "log lines suppressed by the rate limit", {{"count", held}});
  const mongrel2_totals t = front.totals();
  log(spdlog::level::info, "mongrel2 handler stopped",
      {{"requests", t.requests},
       {"answered", t.answered},
       {"expired", t.expired},
       {"forgotten", t.forgotten},
       {"dropped_replies", t.dropped_replies},
       {"malformed", t.malformed}});
  return 0;
}

int run(mongrel2_args& a) {
  try {
    setup_logging(a.log_level, a.log_format);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "scale0 mongrel2: %s\n", e.what());
    return 2;
  }
  on_stop_signal([]() noexcept {
    stop_requested.store(true);
    if (mongrel2_front* f = running.load()) f->stop();
  });
  hangup_logger hangups("mongrel2");  // nothing to reload: SIGHUP must not end the adapter
  log_limiter limiter(10);
  try {
    a.o.curve = a.curve.resolve();
    a.o.timeout = std::chrono::milliseconds(a.timeout_ms);
    a.o.retry_after = a.retry_after_s;
    a.o.on_event = [&limiter](const mongrel2_event& e) { log_event(e, limiter); };
    return serve(a.o, limiter);
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
  sub->add_option("--timeout", args->timeout_ms, "Request deadline (ms) when the route gives none")
      ->transform(milliseconds_with_unit())
      ->capture_default_str()
      ->check(CLI::Range(1L, 3600000L));
  sub->add_option("--max-inflight", o.max_inflight, "Requests waiting for the broker; beyond: 503")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{1}, std::size_t{10000000}));
  sub->add_option("--max-message", o.max_message, "Bytes of one Mongrel2 message; over: dropped")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{1024}, std::size_t{1} << 31));
  sub->add_option("--retry-after", args->retry_after_s, "Seconds, in Retry-After of 503 answers")
      ->capture_default_str()
      ->check(CLI::Range(0u, 3600u));
  sub->add_option("--trusted-proxies", o.trusted_proxies,
                  "Peers (CIDR,...) whose X-Forwarded-For/Forwarded/X-Real-IP are kept");
  sub->add_flag("--underscores-in-headers", o.underscores_in_headers,
                "Keep header fields whose names hold '_' (dropped by default)");
  sub->add_option("--metrics-listen", o.metrics_listen,
                  "HTTP /metrics /healthz /readyz on host:port (port 0: any free port); "
                  "default: none");
  sub->add_flag("--insecure", o.insecure, "Allow a non-loopback --metrics-listen");
  args->curve.add_to(sub);
  sub->add_option("--sender-id", o.sender_id,
                  "This handler's socket identity (UUID); default: a fresh one");
  sub->add_option("--log-level", args->log_level, "trace, debug, info, warn, error, critical, off")
      ->capture_default_str();
  sub->add_option("--log-format", args->log_format, "text or json")->capture_default_str();
  sub->callback([args, &exit_code] { exit_code = run(*args); });
}

}  // namespace scale0::cli
