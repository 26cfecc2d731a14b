// SPDX-License-Identifier: Apache-2.0
// `scale0 status`: the broker's services, workers and counters, as tables, JSON, or refreshed
// like top. Also a health check: no answer within the timeout is a non-zero exit.
#include <fmt/format.h>
#include <unistd.h>

#include <csignal>
#include <iostream>
#include <nlohmann/json.hpp>
#include <thread>

#include "commands.hpp"
#include "common/text.hpp"
#include "curve_flags.hpp"
#include "duration_flag.hpp"
#include "exit_status.hpp"
#include "scale0/client.hpp"
#include "scale0/error.hpp"

namespace scale0::cli {
namespace {

volatile std::sig_atomic_t watching = 1;
extern "C" void stop_watching(int) {
  watching = 0;
}

struct status_args {
  std::string broker = "tcp://127.0.0.1:5555";
  long timeout_ms = 1000;
  long interval_ms = 1000;
  bool json = false;
  bool watch = false;
  curve_flags curve;
};

std::string errors_text(const nlohmann::json& errors) {
  std::string out;
  for (const auto& [code, n] : errors.items()) {
    if (!out.empty()) out += ' ';
    out += code;
    out += ':';
    out += std::to_string(n.get<long>());
  }
  return out.empty() ? "-" : out;
}

// A string of the broker's JSON for a table cell: service names and the like came from peers, so
// control characters (a newline, an escape sequence) are shown escaped, never acted on.
std::string cell(const nlohmann::json& v) {
  return escape_text(v.is_string() ? v.get<std::string>() : v.dump());
}

std::string age(double ms) {
  if (ms < 1000) return fmt::format("{:.0f} ms", ms);
  if (ms < 120000) return fmt::format("{:.1f} s", ms / 1000);
  return fmt::format("{:.0f} min", ms / 60000);
}

// The family (docs/family.md): each peer, its state and endpoints, then its services.
void print_family(const nlohmann::json& f) {
  std::string fallback;
  for (const auto& n : f["fallback_families"]) fallback += (fallback.empty() ? "" : ",") + cell(n);
  std::cout << fmt::format("\nfamily {}  peer endpoint {}{}{}\n", cell(f["name"]),
                           cell(f["peer_endpoint"]), fallback.empty() ? "" : "  fallback ",
                           fallback);
  for (const auto& c : f["configured"])
    if (!c["error"].get<std::string>().empty())
      std::cout << fmt::format("  --peer {}: {}\n", cell(c["peer"]), cell(c["error"]));
  if (f["peers"].empty()) {
    std::cout << "no peers\n";
  } else {
    std::cout << fmt::format("{:<28} {:<10} {:<12} {:<16} {:>10}  {:<24} {}\n", "PEER", "STATE",
                             "FAMILY", "BROKER-ID", "LAST HEARD", "FRONTEND", "BACKEND");
  }
  for (const auto& p : f["peers"]) {
    std::string state = cell(p["state"]);
    if (p["draining"].get<bool>()) state += ",draining";
    // Another family's broker says how it relates: "us (fallback 1)", "x (dependent)".
    std::string family = p["family"].get<std::string>().empty() ? "-" : cell(p["family"]);
    const std::string relation = p.value("relation", "");
    if (!relation.empty() && relation != "member")
      family += relation.starts_with("fallback")
                    ? fmt::format(" ({} {})", relation, p.value("fallback_rank", 0))
                    : " (" + relation + ")";
    std::cout << fmt::format(
        "{:<28} {:<10} {:<12} {:<16} {:>10}  {:<24} {}\n", cell(p["endpoint"]), state, family,
        p["broker_id"].is_null() ? "-" : cell(p["broker_id"]),
        p["last_heard_ms"].is_null() ? "never" : age(p["last_heard_ms"].get<double>()),
        p["frontend"].get<std::string>().empty() ? "-" : cell(p["frontend"]),
        p["backend"].get<std::string>().empty() ? "-" : cell(p["backend"]));
    if (!p["reason"].get<std::string>().empty())
      std::cout << fmt::format("  {} {} ago: {}\n", cell(p["state"]),
                               age(p["state_ms"].get<double>()), cell(p["reason"]));
    if (!p["services"].empty())
      std::cout << fmt::format("  {:<24} {:>7} {:>6} {:>6}\n", "SERVICE", "WORKERS", "IDLE",
                               "QUEUED");
    for (const auto& v : p["services"])
      std::cout << fmt::format("  {:<24} {:>7} {:>6} {:>6}\n", cell(v["name"]),
                               v["workers"].get<long>(), v["idle"].get<long>(),
                               v["queued"].get<long>());
  }
  const auto& c = f["counters"];
  std::string dropped;
  for (const auto& [reason, n] : c["dropped"].items())
    if (n.get<long>() != 0) dropped += fmt::format(" {} {}", reason, n.get<long>());
  std::cout << fmt::format(
      "peer messages in: hello {} peers {} state {} bye {}  dropped:{}\n",
      c["messages_in"]["hello"].get<long>(), c["messages_in"]["peers"].get<long>(),
      c["messages_in"]["state"].get<long>(), c["messages_in"]["bye"].get<long>(),
      dropped.empty() ? " none" : dropped);
}

void print_tables(const nlohmann::json& s, const std::string& endpoint) {
  std::cout << fmt::format("broker {} at {}  up {}  {}  heartbeat {} ms x {}\n\n",
                           cell(s["broker_id"]), endpoint, age(s["uptime_ms"].get<double>()),
                           s["draining"].get<bool>() ? "DRAINING" : "serving",
                           s["heartbeat_interval_ms"].get<double>(), s["liveness"].get<int>());
  std::cout << fmt::format("{:<24} {:>7} {:>6} {:>6} {:>9} {:>9} {:>9} {:>9}  {}\n", "SERVICE",
                           "WORKERS", "IDLE", "QUEUE", "IN-FLIGHT", "REQ/S", "P50 ms", "P99 ms",
                           "ERRORS");
  for (const auto& v : s["services"]) {
    std::cout << fmt::format("{:<24} {:>7} {:>6} {:>6} {:>9} {:>9.1f} {:>9.2f} {:>9.2f}  {}\n",
                             cell(v["name"]), v["workers"].get<long>(), v["idle_slots"].get<long>(),
                             v["queue_depth"].get<long>(), v["in_flight"].get<long>(),
                             v["requests_per_second"].get<double>(),
                             v["latency_p50_ms"].get<double>(), v["latency_p99_ms"].get<double>(),
                             errors_text(v["errors"]));
  }
  if (s.contains("policy")) {  // brokers before service policies have none
    const auto& p = s["policy"];
    const auto& d = p["defaults"];
    std::cout << fmt::format("\npolicy version {}  defaults: request-timeout {} ms, max-queue {}\n",
                             p["version"].get<long>(), d["request_timeout_ms"].get<long>(),
                             d["max_queue"].get<long>());
    if (!p["services"].empty())
      std::cout << fmt::format("{:<24} {:>12} {:>10} {:>10} {:>9}\n", "SERVICE POLICY",
                               "TIMEOUT ms", "MAX-QUEUE", "IDEMPOTENT", "MAX-CONC");
    for (const auto& v : p["services"])
      std::cout << fmt::format(
          "{:<24} {:>12} {:>10} {:>10} {:>9}\n", cell(v["name"]),
          v["request_timeout_ms"].get<long>(), v["max_queue"].get<long>(), cell(v["idempotent"]),
          v["max_concurrency"].is_null() ? "-" : std::to_string(v["max_concurrency"].get<long>()));
  }
  // A worker is shown by the name of its READY (S0/2), else by its id (Majordomo, S0/1).
  std::cout << fmt::format("\n{:<20} {:<16} {:<7} {:<24} {:>5} {:>9} {:>9} {:>10}\n", "WORKER",
                           "ADDRESS", "PROTO", "SERVICES", "CONC", "IN-FLIGHT", "HEARTBEAT",
                           "LAST SEEN");
  for (const auto& w : s["workers"]) {
    std::string services;
    for (const auto& n : w["services"]) {
      if (!services.empty()) services += ',';
      services += cell(n);
    }
    const std::string name = w.value("name", std::string());
    std::cout << fmt::format(
        "{:<20} {:<16} {:<7} {:<24} {:>5} {:>9} {:>9} {:>10}{}\n",
        name.empty() ? cell(w["id"]).substr(0, 12) : escape_text(name), cell(w["address"]),
        cell(w["protocol"]), services, w["concurrency"].get<long>(), w["in_flight"].get<long>(),
        age(w["heartbeat_interval_ms"].get<double>()), age(w["last_seen_ms"].get<double>()),
        w["stopping"].get<bool>() ? "  stopping" : "");
  }
  const auto& c = s["counters"];
  const auto& d = c["dropped"];
  std::cout << fmt::format(
      "\nrequests {}  replies {}  errors {}  dropped: malformed {} unknown-reply {} late-reply {} "
      "unroutable {}\n"
      "workers joined {} left {} expired {}  heartbeats missed {}  redispatched {}\n",
      c["requests"].get<long>(), c["replies"].get<long>(), errors_text(c["errors"]),
      d["malformed"].get<long>(), d["unknown_reply"].get<long>(), d["late_reply"].get<long>(),
      d["unroutable"].get<long>(), c["workers_joined"].get<long>(), c["workers_left"].get<long>(),
      c["workers_expired"].get<long>(), c["heartbeats_missed"].get<long>(),
      c["redispatched"].get<long>());
  if (s.contains("family")) print_family(s["family"]);  // brokers without a family have none
}

int show(const status_args& a, client& c) {
  std::vector<zmq::message_t> none;
  reply r;
  try {
    r = c.call("scale0.status", std::move(none), std::chrono::milliseconds(a.timeout_ms));
  } catch (const error&) {
    std::cerr << "scale0 status: no answer from the broker at " << a.broker << " within "
              << a.timeout_ms << " ms \u2014 is it running?\n";
    return exit_status::no_broker;
  }
  if (r.status != status::ok) {
    std::cerr << "scale0 status: " << r.status << " " << escape_text(r.message) << "\n";
    return exit_status::of_reply(r.status);
  }
  const auto s = nlohmann::json::parse(r.text(), nullptr, false);
  if (s.is_discarded()) {
    std::cerr << "scale0 status: the broker's answer is not JSON\n";
    return exit_status::failure;
  }
  if (a.json && a.watch) {  // one document per line per interval, for a pipe
    std::cout << s.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  } else if (a.json) {
    std::cout << s.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  } else {
    print_tables(s, a.broker);
  }
  return exit_status::ok;
}

int run_status(const status_args& a) {
  try {
    client_options co;
    co.curve = a.curve.resolve();
    client c(a.broker, co);
    if (!a.watch) return show(a, c);
    std::signal(SIGINT, stop_watching);
    std::signal(SIGTERM, stop_watching);
    // The screen is cleared (like top) only for tables on a terminal.
    const bool clear = !a.json && ::isatty(STDOUT_FILENO) != 0;
    int rc = exit_status::ok;
    while (watching) {
      if (clear) std::cout << "\033[H\033[2J";
      rc = show(a, c);
      if (!clear && !a.json) std::cout << "\n";
      std::cout.flush();
      for (long slept = 0; watching && slept < a.interval_ms; slept += 50)
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return rc;
  } catch (const error& e) {  // an invalid endpoint or certificate
    std::cerr << "scale0 status: " << e.message() << "\n";
    return exit_status::usage;
  }
}

}  // namespace

void add_status_command(CLI::App& root, int& exit_code) {
  auto args = std::make_shared<status_args>();
  CLI::App* sub = root.add_subcommand("status", "Show a broker's services, workers and counters");
  sub->footer(
      "Exits 3 when the broker does not answer within --timeout (usable as a health check).\n"
      "With --watch --json: one JSON document per line per interval.\n\n"
      "Examples:\n"
      "  scale0 status\n"
      "  scale0 status --json | jq '.services[] | {name, workers, queue_depth}'\n"
      "  scale0 status --watch --interval 500\n"
      "  scale0 status --broker tcp://10.0.0.5:5555 --timeout 300 || echo broker down");
  sub->add_option("--broker", args->broker, "Broker endpoint")->capture_default_str();
  args->curve.add_to(sub);
  sub->add_option("--timeout", args->timeout_ms, "How long to wait for the answer (ms, or 2s)")
      ->capture_default_str()
      ->transform(milliseconds_with_unit())
      ->check(CLI::Range(1L, 600000L));
  sub->add_flag("--json", args->json, "Print the broker's JSON as is (pretty-printed)");
  sub->add_flag("--watch", args->watch, "Refresh until interrupted");
  sub->add_option("--interval", args->interval_ms, "Refresh interval for --watch (ms, or 1s)")
      ->capture_default_str()
      ->transform(milliseconds_with_unit())
      ->check(CLI::Range(100L, 3600000L));
  sub->callback([args, &exit_code] { exit_code = run_status(*args); });
}

}  // namespace scale0::cli
