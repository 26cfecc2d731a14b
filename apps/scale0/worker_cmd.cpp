// SPDX-License-Identifier: Apache-2.0
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <thread>

#include "commands.hpp"
#include "common/text.hpp"
#include "curve_flags.hpp"
#include "duration_flag.hpp"
#include "exit_status.hpp"
#include "http_worker.hpp"
#include "logging.hpp"
#include "scale0/error.hpp"
#include "scale0/exec.hpp"
#include "scale0/protocol.hpp"
#include "scale0/worker.hpp"
#include "service_notify.hpp"

namespace scale0::cli {
namespace {

std::atomic<worker*> running{nullptr};

struct worker_args {
  worker_options o;
  bool echo = false;
  long delay_ms = 0;
  long heartbeat_ms = 0;
  int protocol_version = 2;
  bool no_batches = false;
  std::string name;
  exec_options exec;
  bool exec_given = false;
  long exec_timeout_ms = 30000;
  std::string http_url;
  std::string health_path;
  long health_interval_ms = 1000;
  long health_timeout_ms = 1000;
  std::string log_level = "info";
  std::string log_format = "text";
  curve_flags curve;
};

int run_http(worker_args& a) {
  http_worker_options h;
  h.forward.url = a.http_url;
  h.probe.health_path = a.health_path;
  h.probe.timeout = std::chrono::milliseconds(a.health_timeout_ms);
  h.health_interval = std::chrono::milliseconds(a.health_interval_ms);
  h.name = a.name;
  return run_http_worker(a.o, std::move(h));
}

// The handler the flags ask for: --echo, or --exec CMD. Throws scale0::error (400).
job_handler make_handler(const worker_args& a, const std::string& name) {
  if (a.exec_given) {
    exec_options eo = a.exec;
    eo.timeout = std::chrono::milliseconds(a.exec_timeout_ms);
    job_handler run;
    try {
      run = make_exec_handler(std::move(eo));
    } catch (const error& e) {
      throw error(e.code(), "--exec: " + e.message());
    }
    return [name, run = std::move(run)](job& j) {
      job_result r = run(j);
      if (r.status == 200) r.message = name;  // errors keep the command's message
      return r;
    };
  }
  const auto delay = std::chrono::milliseconds(a.delay_ms);
  return [name, delay](job& j) {
    if (delay.count() > 0) std::this_thread::sleep_for(delay);
    job_result r;
    r.message = name;  // the reply says who served it
    r.body = std::move(j.body);
    return r;
  };
}

int run_worker(worker_args& a) {
  const bool http_given = !a.http_url.empty();
  if (int(a.echo) + int(a.exec_given) + int(http_given) != 1) {
    std::fprintf(stderr, a.echo || a.exec_given || http_given
                             ? "scale0 worker: --echo, --exec and --http exclude each other\n"
                             : "scale0 worker: choose what the worker does: --echo, --exec CMD or "
                               "--http URL\n");
    return exit_status::usage;
  }
  try {
    setup_logging(a.log_level, a.log_format);
  } catch (const std::invalid_argument& e) {
    std::fprintf(stderr, "scale0 worker: %s\n", e.what());
    return exit_status::usage;
  }
  if (a.name.empty()) a.name = default_worker_name();
  if (!protocol::valid_worker_name(a.name)) {  // before --http, which builds its worker later
    std::fprintf(stderr,
                 "scale0 worker: a worker's name must be 1-64 bytes of printable UTF-8 (no "
                 "control characters)\n");
    return exit_status::usage;
  }
  a.o.name = a.name;
  a.o.heartbeat_interval = std::chrono::milliseconds(a.heartbeat_ms);
  a.o.protocol_version = static_cast<std::uint8_t>(a.protocol_version);
  a.o.batches = !a.no_batches;
  // An echo without --delay never blocks: run it on the I/O thread, no thread hop per request.
  a.o.inline_handler = a.echo && a.delay_ms == 0;
  const std::string name = a.name;
  // Events may quote the broker (a DISCONNECT's reason): escaped like every logged peer string.
  // A service manager sees the worker ready once it is set up (a broker away must not fail its
  // start); the latest event (registered with ..., lost broker ...) is its status line.
  a.o.on_event = [name](const std::string& what) {
    log(spdlog::level::info, what, {{"worker", name}});
    notify_service(("STATUS=" + escape_text(what)).c_str());
  };
  a.o.on_stopping = [] { notify_service("STOPPING=1"); };
  hangup_logger hangups("worker");  // nothing to reload: SIGHUP must not end the worker
  try {
    a.o.curve = a.curve.resolve();
    if (http_given) return run_http(a);
    worker w(a.o, make_handler(a, name));
    running = &w;
    // Cleared however this scope ends, before the object dies: a late signal then finds nothing.
    struct forget {
      ~forget() { running = nullptr; }
    } forget_on_exit;
    on_stop_signal([]() noexcept {
      if (worker* current = running.load()) current->stop();
    });
    notify_service("READY=1");
    w.run();
    return 0;
  } catch (const error& e) {  // 400: invalid options (a name, an endpoint, a key)
    std::fprintf(stderr, "scale0 worker: %s\n", e.message().c_str());
    return e.code() == status::bad_request ? exit_status::usage : exit_status::failure;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "scale0 worker: %s\n", e.what());
    return 1;
  }
}

}  // namespace

void add_worker_command(CLI::App& root, int& exit_code) {
  auto args = std::make_shared<worker_args>();
  CLI::App* sub = root.add_subcommand("worker", "Run a worker");
  sub->footer(
      "Examples:\n"
      "  scale0 worker --service echo --echo\n"
      "  scale0 worker --service echo,upper --echo --concurrency 8 --idempotent --name w1\n"
      "  scale0 worker --service upper --exec 'tr a-z A-Z' --concurrency 4 --exec-timeout 5000\n"
      "  scale0 worker --service count --exec 'sort | uniq -c' --shell\n"
      "  scale0 worker --service www.example.com --http http://127.0.0.1:8000 --concurrency 16\n"
      "  scale0 worker --service api --http http://127.0.0.1:9000/api --health-path /healthz\n"
      "\n"
      "--http URL makes the worker a sidecar for an existing HTTP/1.1 app (docs/http.md): each\n"
      "request (in the HTTP encoding) goes to the app over --concurrency keep-alive connections "
      "and\n"
      "the app's response comes back; an unreachable app answers 502. The app is probed every\n"
      "--health-interval ms (TCP connect, or GET --health-path: 2xx/3xx is healthy); while it "
      "fails,\n"
      "the worker leaves the broker (graceful stop) and registers again once it answers.");
  auto& o = args->o;
  sub->add_option("--service", o.services, "Services served (comma-separated)")
      ->required()
      ->delimiter(',');
  CLI::Option* echo = sub->add_flag("--echo", args->echo, "Reply with the request body");
  CLI::Option* exec =
      sub->add_option("--exec", args->exec.command,
                      "Run CMD per request: body on stdin, reply = stdout, exit != 0 -> 500 with "
                      "stderr; split into words, no shell")
          ->type_name("CMD")
          ->excludes(echo);
  sub->add_flag("--shell", args->exec.shell, "Run the --exec command through /bin/sh -c")
      ->needs(exec);
  sub->add_option("--exec-timeout", args->exec_timeout_ms,
                  "Kill an --exec command after this long (ms): 504")
      ->transform(milliseconds_with_unit())
      ->capture_default_str()
      ->check(CLI::Range(1L, 86400000L))
      ->needs(exec);
  sub->add_option("--max-output-bytes", args->exec.max_output_bytes,
                  "An --exec command writing more to stdout than this: 413")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{0}, std::size_t{1} << 32))
      ->needs(exec);
  CLI::Option* http_opt =
      sub->add_option("--http", args->http_url,
                      "Sidecar: forward requests (HTTP encoding) to the HTTP/1.1 app at "
                      "http://host:port[/base-path]")
          ->type_name("URL")
          ->excludes(echo)
          ->excludes(exec)
          ->check([](const std::string& url) {
            try {
              (void)http::parse_app_url(url);
              return std::string();
            } catch (const error& e) {
              return e.message();
            }
          });
  sub->add_option("--health-path", args->health_path,
                  "--http: probe the app with GET PATH (2xx/3xx healthy) instead of a TCP connect")
      ->type_name("PATH")
      ->needs(http_opt)
      ->check([](const std::string& p) {
        const bool ok = !p.empty() && p.front() == '/' &&
                        std::all_of(p.begin(), p.end(), [](char c) { return c > ' ' && c < 127; });
        return ok ? std::string() : "a path starting with '/', without spaces: '" + p + "'";
      });
  sub->add_option("--health-interval", args->health_interval_ms,
                  "--http: ms between health probes of the app (and between retries while it is "
                  "down)")
      ->transform(milliseconds_with_unit())
      ->capture_default_str()
      ->check(CLI::Range(10L, 3600000L))
      ->needs(http_opt);
  sub->add_option("--health-timeout", args->health_timeout_ms,
                  "--http: ms a health probe may take before the app counts as down")
      ->transform(milliseconds_with_unit())
      ->capture_default_str()
      ->check(CLI::Range(1L, 3600000L))
      ->needs(http_opt);
  sub->add_option("--broker", o.broker,
                  "Broker endpoint, or brokers in order of preference: the worker moves to the "
                  "next when it loses one")
      ->type_name("EP[,EP…]")
      ->capture_default_str();
  args->curve.add_to(sub);
  sub->add_option("--concurrency", o.concurrency, "Requests held at once")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  sub->add_flag("--idempotent", o.idempotent, "Requests may be re-dispatched if this worker dies");
  sub->add_option("--heartbeat-interval", args->heartbeat_ms,
                  "Ask for a longer heartbeat interval (ms); 0 takes the broker's")
      ->transform(milliseconds_with_unit())
      ->check(CLI::Range(0L, 3600000L));
  sub->add_option("--protocol-version", args->protocol_version,
                  "Wire framing: 2 (S0/2, compact) or 1 (S0/1, for brokers before S0/2)")
      ->capture_default_str()
      ->check(CLI::Range(1, 2));
  sub->add_flag("--no-batches", args->no_batches,
                "S0/2: one message per request and reply, never a BATCH (docs/protocol.md)");
  sub->add_option("--delay", args->delay_ms, "Echo: wait this long before replying (ms)")
      ->transform(milliseconds_with_unit())
      ->check(CLI::Range(0L, 3600000L))
      ->excludes(exec)
      ->excludes(http_opt);
  sub->add_option("--log-level", args->log_level, "trace, debug, info, warn, error, critical, off")
      ->capture_default_str();
  sub->add_option("--log-format", args->log_format, "text or json")->capture_default_str();
  sub->add_option("--name", args->name,
                  "Shown by the broker (scale0 status) and put in each 200 reply's message; 1-64 "
                  "printable characters (default host:pid)");
  sub->callback([args, exec, &exit_code] {
    args->exec_given = exec->count() > 0;
    exit_code = run_worker(*args);
  });
}

}  // namespace scale0::cli
