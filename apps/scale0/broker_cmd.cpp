// SPDX-License-Identifier: Apache-2.0
#include <atomic>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "broker_config.hpp"
#include "commands.hpp"
#include "duration_flag.hpp"
#include "exit_status.hpp"
#include "logging.hpp"
#include "scale0/broker.hpp"
#include "scale0/error.hpp"
#include "service_notify.hpp"

namespace scale0::cli {
namespace {

std::atomic<broker*> running{nullptr};
std::atomic<int> stop_signals{0};

// First SIGTERM/SIGINT: drain. A second one: stop at once. SIGHUP: reload the configuration.
extern "C" void on_broker_signal(int sig) {
  broker* b = running.load();
  if (b == nullptr) return;
  if (sig == SIGHUP) return b->request_reload();
  if (stop_signals.fetch_add(1) == 0) {
    b->drain();
  } else {
    b->stop();
  }
}

struct broker_args {
  broker_settings flags;            // what the command line says
  std::vector<CLI::Option*> given;  // options bound to `flags`, by setting name order
  std::string config_file;
  bool print_config = false;
};

// Defaults, then the file, then every flag actually given.
broker_settings effective(const broker_args& a) {
  broker_settings s = a.config_file.empty() ? broker_settings{} : load_config(a.config_file);
  const auto& names = setting_names();
  for (std::size_t i = 0; i < names.size(); ++i)
    if (a.given[i]->count() > 0) copy_setting(names[i], a.flags, s);
  for (const auto& name : names)
    if (const std::string problem = check_setting(name, s); !problem.empty())
      throw config_error("--" + name + ": " + problem);
  return s;
}

// A worker that left as it should is news; one that was lost, refused or sent away is a warning.
spdlog::level::level_enum departure_level(worker_departure why) {
  switch (why) {
    case worker_departure::disconnected:
    case worker_departure::shutdown:
    case worker_departure::moved:       // sent to a peer while draining: orderly
    case worker_departure::rebalanced:  // sent to a peer that needs it more: orderly
      return spdlog::level::info;
    case worker_departure::none:
    case worker_departure::expired:
    case worker_departure::unreachable:
    case worker_departure::protocol_error:
    case worker_departure::key_revoked:
      break;
  }
  return spdlog::level::warn;
}

void log_event(const broker_event& e, log_limiter& limiter) {
  using spdlog::level::info;
  using spdlog::level::warn;
  std::uint64_t held = 0;
  switch (e.kind) {
    case event_kind::worker_joined:
      return log(info, "worker joined",
                 {{"worker", std::string(e.worker)},
                  {"address", std::string(e.address)},
                  {"services", std::string(e.service)},
                  {"detail", std::string(e.detail)}});
    case event_kind::worker_left:
      return log(departure_level(e.departure), "worker left",
                 {{"worker", std::string(e.worker)},
                  {"address", std::string(e.address)},
                  {"reason", std::string(e.detail)}});
    case event_kind::service_created:
      return log(info, "service created", {{"service", std::string(e.service)}});
    case event_kind::service_removed:
      return log(info, "service removed", {{"service", std::string(e.service)}});
    case event_kind::draining:
    case event_kind::reloaded:
      return log(info, e.detail);
    case event_kind::peer_up:
      return log(info, "peer up",
                 {{"peer", std::string(e.address)},
                  {"broker_id", std::string(e.worker)},
                  {"detail", std::string(e.detail)}});
    case event_kind::peer_down:
      return log(warn, "peer down",
                 {{"peer", std::string(e.address)},
                  {"broker_id", std::string(e.worker)},
                  {"reason", std::string(e.detail)}});
    case event_kind::request_error:
    case event_kind::dropped:
    case event_kind::refused:
      // A flood of bad input must not become a flood of log lines.
      if (!limiter.allow(held)) return;
      if (held > 0) log(warn, "log lines suppressed by the rate limit", {{"count", held}});
      if (e.kind == event_kind::refused)
        return log(warn, "refused",
                   {{"address", std::string(e.address)},
                    {"service", std::string(e.service)},
                    {"detail", std::string(e.detail)}});
      if (e.kind == event_kind::dropped)
        return log(warn, "message dropped", {{"reason", std::string(e.detail)}});
      return log(e.code == status::bad_request || e.code == status::not_implemented ||
                         e.code == status::bad_version || e.code == status::too_large
                     ? warn
                     : info,
                 "request error",
                 {{"service", std::string(e.service)},
                  {"code", e.code},
                  {"reason", std::string(e.detail)}});
  }
}

int run_broker(broker_args& a) {
  broker_settings settings;
  try {
    settings = effective(a);
  } catch (const config_error& e) {
    std::fprintf(stderr, "scale0 broker: %s\n", e.what());
    return 2;
  }
  const bool json_logs = settings.log_format == "json";
  if (a.print_config) {
    std::cout << to_toml(settings);
    return 0;
  }
  setup_logging(settings.log_level, settings.log_format);
  try {
    const broker_options initial = settings.to_options();
    broker b(initial);
    log_limiter limiter(10);
    b.on_event([&limiter](const broker_event& e) {
      if (e.kind == event_kind::draining) notify_service("STOPPING=1");
      log_event(e, limiter);
    });
    b.on_reload([&a, current = settings, secret = initial.curve_secret_key,
                 peer_secret = initial.peer_secret_key]() mutable -> std::optional<broker_options> {
      notify_service("RELOADING=1");
      try {
        broker_settings next = effective(a);
        for (const char* key :
             {"frontend", "backend", "heartbeat", "metrics-listen", "curve-cert",
              "handshake-timeout", "insecure", "peer-listen", "peer", "family", "fallback-family",
              "rebalance-workers", "peer-cert", "advertise-frontend", "advertise-backend",
              "advertise-peer", "max-peers"}) {
          broker_settings probe = current;
          copy_setting(key, next, probe);
          if (to_toml(probe) != to_toml(current)) {
            log(spdlog::level::warn, "this setting changes only on restart", {{"key", key}});
            copy_setting(key, current, next);  // what runs is what the next reload compares with
          }
        }
        broker_options options = next.to_options(&secret, &peer_secret);
        options.validate();  // with the restart-only settings as they run
        setup_logging(next.log_level, next.log_format);
        current = next;  // only once all of it was valid
        notify_service("READY=1");
        return options;
      } catch (const std::exception& e) {
        log(spdlog::level::err, "reload failed; keeping the current configuration",
            {{"error", e.what()}});
        notify_service("READY=1");
        return std::nullopt;
      }
    });
    const auto& ep = b.endpoints();
    running = &b;
    // Cleared however this scope ends, before the object dies: a late signal then finds nothing.
    struct forget {
      ~forget() { running = nullptr; }
    } forget_on_exit;
    for (int sig : {SIGINT, SIGTERM, SIGHUP}) {
      struct sigaction sa {};
      sa.sa_handler = on_broker_signal;
      sigemptyset(&sa.sa_mask);
      sigaction(sig, &sa, nullptr);
    }
    log(spdlog::level::info, "broker started",
        {{"version", SCALE0_VERSION},
         {"frontend", ep.frontend},
         {"backend", ep.backend},
         {"heartbeat", ep.heartbeat},
         {"metrics", b.metrics_endpoint().empty() ? "off" : b.metrics_endpoint()},
         {"heartbeat_interval_ms", settings.heartbeat_interval},
         {"liveness", settings.liveness},
         {"max_queue", settings.max_queue},
         {"max_message_bytes", settings.max_message_bytes},
         {"max_client_inflight", settings.max_client_inflight},
         {"service_policies", settings.services.size()},
         {"peer", ep.peer.empty() ? "off" : ep.peer},
         {"family", settings.peer_listen.empty() ? "off" : settings.family},
         {"peers_configured", settings.peer.size()},
         {"config", a.config_file.empty() ? "(defaults)" : a.config_file}});
    std::printf("ready frontend=%s backend=%s heartbeat=%s", ep.frontend.c_str(),
                ep.backend.c_str(), ep.heartbeat.c_str());
    if (!ep.peer.empty()) std::printf(" peer=%s", ep.peer.c_str());
    if (!b.metrics_endpoint().empty()) std::printf(" metrics=%s", b.metrics_endpoint().c_str());
    std::printf("\n");
    std::fflush(stdout);
    notify_service("READY=1");
    // Reports what the log rate limit held back even when no further event comes to carry it.
    std::mutex flush_mu;
    std::condition_variable flush_cv;
    bool done = false;
    std::thread flusher([&] {
      std::unique_lock lock(flush_mu);
      while (!flush_cv.wait_for(lock, std::chrono::seconds(1), [&] { return done; }))
        if (const auto held = limiter.flush())
          log(spdlog::level::warn, "log lines suppressed by the rate limit", {{"count", held}});
    });
    b.run();
    {
      std::lock_guard lock(flush_mu);
      done = true;
    }
    flush_cv.notify_one();
    flusher.join();
    log(spdlog::level::info, "broker stopped");
    return 0;
  } catch (const error& e) {
    if (json_logs) {
      log(spdlog::level::err, "broker failed", {{"error", e.message()}});
    } else {
      std::fprintf(stderr, "scale0 broker: %s\n", e.message().c_str());
    }
    // 400: the settings (protected mode, a certificate, a host that does not resolve); else a
    // run-time failure (an endpoint in use).
    return e.code() == status::bad_request ? exit_status::usage : exit_status::failure;
  }
}

}  // namespace

void add_broker_command(CLI::App& root, int& exit_code) {
  auto args = std::make_shared<broker_args>();
  CLI::App* sub = root.add_subcommand("broker", "Run a broker");
  sub->footer(
      "Every option is also a key of the --config file (TOML, same names without --);\n"
      "flags override the file. SIGTERM/SIGINT drain and stop (a second SIGINT stops at once),\n"
      "SIGHUP reloads the file.\n\n"
      "Examples:\n"
      "  scale0 broker\n"
      "  scale0 broker --config /etc/scale0/broker.toml --log-format json\n"
      "  scale0 broker --print-config > broker.toml\n"
      "  scale0 broker --frontend tcp://127.0.0.1:6000 --backend tcp://127.0.0.1:6001 \\\n"
      "                --heartbeat tcp://127.0.0.1:6002 --heartbeat-interval 500 --liveness 5\n"
      "  scale0 broker --peer-listen tcp://10.0.0.2:5558 --peer tcp://brokers.internal:5558 \\\n"
      "                --family eu --insecure   # join a family (docs/family.md)");
  auto& f = args->flags;
  sub->add_option("--config", args->config_file, "TOML configuration file")
      ->check(CLI::ExistingFile);
  sub->add_flag("--print-config", args->print_config,
                "Print the effective configuration as TOML and exit");
  auto& g = args->given;  // in setting_names() order
  g.push_back(
      sub->add_option("--frontend", f.frontend, "Endpoint for clients")->capture_default_str());
  g.push_back(
      sub->add_option("--backend", f.backend, "Endpoint for workers")->capture_default_str());
  g.push_back(sub->add_option("--heartbeat", f.heartbeat, "PUB endpoint for broker heartbeats")
                  ->capture_default_str());
  g.push_back(
      sub->add_option("--heartbeat-interval", f.heartbeat_interval, "Heartbeat interval (ms)")
          ->transform(milliseconds_with_unit())
          ->capture_default_str());
  g.push_back(
      sub->add_option("--liveness", f.liveness, "Silent intervals before a worker is purged")
          ->capture_default_str());
  g.push_back(sub->add_option("--max-worker-heartbeats", f.max_worker_heartbeats,
                              "Native worker heartbeats/s to stay under: the interval granted "
                              "grows with the fleet (0: never)")
                  ->capture_default_str());
  g.push_back(sub->add_option("--no-worker-timeout", f.no_worker_timeout,
                              "503 after this long with no worker (ms)")
                  ->transform(milliseconds_with_unit())
                  ->capture_default_str());
  g.push_back(sub->add_option("--request-timeout", f.request_timeout,
                              "Deadline of requests that give none (ms)")
                  ->transform(milliseconds_with_unit())
                  ->capture_default_str());
  g.push_back(sub->add_option("--drain-timeout", f.drain_timeout,
                              "On SIGTERM, longest wait for accepted requests (ms)")
                  ->transform(milliseconds_with_unit())
                  ->capture_default_str());
  g.push_back(
      sub->add_option("--max-frames", f.max_frames, "Frames per message")->capture_default_str());
  g.push_back(sub->add_option("--max-message-bytes", f.max_message_bytes, "Bytes per message")
                  ->capture_default_str());
  g.push_back(sub->add_option("--max-queue", f.max_queue, "Queued requests per service")
                  ->capture_default_str());
  g.push_back(sub->add_option("--max-services", f.max_services, "Number of services")
                  ->capture_default_str());
  g.push_back(sub->add_option("--max-client-inflight", f.max_client_inflight,
                              "Requests in flight per client (with answers it has not read)")
                  ->capture_default_str());
  g.push_back(sub->add_option("--max-client-backlog-bytes", f.max_client_backlog_bytes,
                              "Answers held for one client that is not reading (bytes)")
                  ->capture_default_str());
  g.push_back(sub->add_option("--max-total-backlog-bytes", f.max_total_backlog_bytes,
                              "Answers held for all clients that are not reading (bytes)")
                  ->capture_default_str());
  g.push_back(sub->add_option("--max-queue-bytes", f.max_queue_bytes,
                              "Bytes of queued requests per service")
                  ->capture_default_str());
  g.push_back(sub->add_option("--max-total-queue-bytes", f.max_total_queue_bytes,
                              "Bytes of queued requests, all services")
                  ->capture_default_str());
  g.push_back(sub->add_option("--max-unserved-services", f.max_unserved_services,
                              "Services nobody serves that client requests may create")
                  ->capture_default_str());
  g.push_back(sub->add_option("--max-worker-services", f.max_worker_services,
                              "Services one worker may announce (1-64)")
                  ->capture_default_str());
  g.push_back(sub->add_option("--service-ttl", f.service_ttl,
                              "An unserved, idle service is forgotten after (ms)")
                  ->transform(milliseconds_with_unit())
                  ->capture_default_str());
  g.push_back(sub->add_option("--max-heartbeat-interval", f.max_heartbeat_interval,
                              "Longest heartbeat interval a worker may ask for (ms)")
                  ->transform(milliseconds_with_unit())
                  ->capture_default_str());
  g.push_back(sub->add_option("--mdp-heartbeat-interval", f.mdp_heartbeat_interval,
                              "Heartbeat interval Majordomo workers are judged by (ms)")
                  ->transform(milliseconds_with_unit())
                  ->capture_default_str());
  g.push_back(sub->add_option("--idempotent", f.idempotent,
                              "Services whose requests may be re-dispatched when a worker dies "
                              "(for Majordomo workers)")
                  ->delimiter(','));
  g.push_back(sub->add_option("--metrics-listen", f.metrics_listen,
                              "HTTP /metrics /healthz /readyz; \"\" for none")
                  ->capture_default_str());
  g.push_back(sub->add_option("--curve-cert", f.curve_cert,
                              "The broker's secret CURVE certificate (scale0 keygen): CURVE on the "
                              "frontend, backend and heartbeat endpoints"));
  g.push_back(sub->add_option("--worker-keys", f.worker_keys,
                              "Workers allowed: lines '<public-key> <service-glob>,...'"));
  g.push_back(sub->add_option("--client-keys", f.client_keys,
                              "Clients allowed (same format), or 'any' (encrypted, any key)"));
  g.push_back(sub->add_option("--admin-keys", f.admin_keys,
                              "Keys that may ask scale0.status, one per line (default: every "
                              "listed client key)"));
  g.push_back(sub->add_option("--handshake-timeout", f.handshake_timeout,
                              "A connection's ZeroMQ (and CURVE) handshake must finish within (ms)")
                  ->transform(milliseconds_with_unit())
                  ->capture_default_str());
  g.push_back(
      sub->add_flag("--insecure", f.insecure,
                    "Allow non-loopback endpoints and metrics without CURVE (not advised)"));
  g.push_back(sub->add_option("--peer-listen", f.peer_listen,
                              "ROUTER where other brokers of the family link to; \"\" for no "
                              "family (docs/family.md)")
                  ->capture_default_str());
  g.push_back(sub->add_option("--peer", f.peer,
                              "A broker to join (repeatable, or comma-separated); a host name "
                              "means each of its addresses, re-resolved every 30 s")
                  ->delimiter(','));
  g.push_back(sub->add_option("--family", f.family, "The family this broker belongs to")
                  ->capture_default_str());
  g.push_back(sub->add_option("--fallback-family", f.fallback_family,
                              "A family whose brokers take requests for a service no broker of "
                              "this family has a worker for (repeatable, in order; at most 8)")
                  ->delimiter(','));
  g.push_back(sub->add_option("--rebalance-workers", f.rebalance_workers,
                              "Point workers at the family broker that needs their services "
                              "more (true/false)")
                  ->capture_default_str());
  g.push_back(sub->add_option("--peer-cert", f.peer_cert,
                              "The family's secret CURVE certificate (scale0 keygen), the same on "
                              "every broker that links to this one: CURVE on the peer port"));
  g.push_back(sub->add_option("--advertise-frontend", f.advertise_frontend,
                              "How other brokers' clients reach this frontend (default: the bound "
                              "endpoint; required for a wildcard bind with --peer)"));
  g.push_back(sub->add_option("--advertise-backend", f.advertise_backend,
                              "How other brokers' workers reach this backend (default: the bound "
                              "endpoint; required for a wildcard bind with --peer)"));
  g.push_back(sub->add_option("--advertise-peer", f.advertise_peer,
                              "How other brokers reach --peer-listen (default: the bound endpoint; "
                              "required for a wildcard bind)"));
  g.push_back(
      sub->add_option("--max-peers", f.max_peers, "Peers kept (1-4096)")->capture_default_str());
  g.push_back(
      sub->add_option("--log-level", f.log_level, "trace, debug, info, warn, error, critical, off")
          ->capture_default_str());
  g.push_back(sub->add_option("--log-format", f.log_format, "text or json")->capture_default_str());
  // effective() pairs each flag with its setting by position: a flag out of order would set
  // another setting.
  const auto& names = setting_names();
  for (std::size_t i = 0; i < names.size(); ++i)
    if (i >= g.size() || g[i]->get_name() != "--" + names[i])
      throw std::logic_error("broker flag " + std::to_string(i) + " is not --" + names[i]);
  if (g.size() != names.size()) throw std::logic_error("a broker flag has no setting");
  sub->callback([args, &exit_code] { exit_code = run_broker(*args); });
}

}  // namespace scale0::cli
