// SPDX-License-Identifier: Apache-2.0
// `scale0 bench`: a load generator like `nats bench`. N client threads keep W requests each in
// flight, every reply is checked (id, status and body), and the summary gives throughput,
// latency percentiles, errors by status and the generator's own CPU, so a saturated generator is
// visible. Lost, duplicated or wrong replies make the exit status non-zero.
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <ctime>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>
#include <zmq_addon.hpp>

#include "commands.hpp"
#include "common/host_port.hpp"  // split_endpoint_list
#include "curve_flags.hpp"
#include "duration_flag.hpp"
#include "exit_status.hpp"
#include "scale0/client.hpp"
#include "scale0/error.hpp"
#include "scale0/protocol.hpp"
#include "scale0/worker.hpp"
#include "security/curve_socket.hpp"

namespace scale0::cli {
namespace {

using clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

struct bench_args {
  std::string broker = "tcp://127.0.0.1:5555";
  std::string service = "echo";
  std::string backend;  // where spawned workers connect; empty: broker
  std::string protocol = "s0";
  int clients = 1;
  int window = 1;
  std::size_t size = 32;
  long requests = 10000;
  double duration = 0;  // seconds; when set, runs for this long instead of --requests
  int spawn_workers = 0;
  std::uint32_t concurrency = 16;
  long timeout_ms = 5000;
  bool json = false;
  bool allow_errors = false;  // error replies (non-200) do not fail the run
  curve_flags curve_given;
  security::curve_client curve{};  // resolved from curve_given by run_bench
};

struct client_result {
  std::vector<std::uint32_t> latency_us;
  std::map<std::uint16_t, long> errors;  // non-200 replies by status
  long sent = 0;
  std::atomic<long> received{0};       // read by the progress line while the client runs
  std::atomic<long> error_replies{0};  // likewise: the errors so far
  long duplicated = 0;
  long wrong = 0;
  double cpu_seconds = 0;
};

double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

// The body of request `seq`: its sequence number, then filler, so every reply can be checked.
std::string body_for(std::uint64_t seq, std::size_t size) {
  std::string b(size, 'x');
  for (std::size_t i = 0; i < std::min<std::size_t>(8, size); ++i)
    b[i] = static_cast<char>(seq >> (56 - 8 * i));
  return b;
}

std::uint64_t seq_of(std::string_view body) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < 8 && i < body.size(); ++i)
    v = (v << 8) | static_cast<unsigned char>(body[i]);
  return v;
}

// One client's bookkeeping: what was sent when, and what has been answered.
class ledger {
 public:
  std::uint64_t open(clock::time_point now) {
    sent_at_.push_back(now);
    done_.push_back(0);
    return sent_at_.size() - 1;
  }
  // Returns false for a duplicate or a sequence never sent.
  bool close(std::uint64_t seq, clock::time_point now, client_result& r) {
    if (seq >= done_.size() || done_[seq] != 0) return false;
    done_[seq] = 1;
    r.latency_us.push_back(static_cast<std::uint32_t>(std::min<std::int64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(now - sent_at_[seq]).count(),
        UINT32_MAX)));
    return true;
  }

 private:
  std::vector<clock::time_point> sent_at_;
  std::vector<std::uint8_t> done_;
};

// Native client (S0/2, or S0/1 with --protocol s0v1): the library's pipelined API; request ids
// match replies.
void run_native(const bench_args& a, const std::atomic<bool>& stop, long quota, client_result& r) {
  client_options options;
  options.protocol_version = a.protocol == "s0v1" ? protocol::version_1 : protocol::version_2;
  options.curve = a.curve;
  client c(a.broker, options);
  ledger book;
  std::vector<std::uint64_t> seq_by_id;  // request id -> sequence (ids are assigned 1, 2, ...)
  long in_flight = 0;
  const auto timeout = milliseconds(a.timeout_ms);
  auto last_reply = clock::now();
  // Counts one reply against the books (a reply they do not expect is a duplicate).
  const auto take = [&](reply& rep, clock::time_point now) {
    last_reply = now;
    const std::uint64_t seq = rep.id < seq_by_id.size() ? seq_by_id[rep.id] : UINT64_MAX;
    if (rep.local && seq != UINT64_MAX) {
      // The library's own outcome (no answer in time, broker lost): the broker never answered
      // this request, so the bench counts it lost.
      --in_flight;
      return;
    }
    if (seq == UINT64_MAX || !book.close(seq, now, r)) {
      ++r.duplicated;
      return;
    }
    --in_flight;
    ++r.received;
    if (rep.status != status::ok) {
      ++r.errors[rep.status];
      ++r.error_replies;
    } else if (rep.text() != body_for(seq, a.size)) {
      ++r.wrong;
    }
  };
  while (true) {
    const bool sending = !stop && (quota < 0 || r.sent < quota);
    // A refill of the window leaves as BATCHes (the broker permitting): what a pipelined client
    // of the library would do.
    if (a.window > 1) c.hold();
    while (sending && in_flight < a.window && (quota < 0 || r.sent < quota)) {
      const std::uint64_t seq = book.open(clock::now());
      const std::uint64_t id = c.send(a.service, body_for(seq, a.size), timeout);
      if (seq_by_id.size() <= id) seq_by_id.resize(id + 1, UINT64_MAX);
      seq_by_id[id] = seq;
      ++r.sent;
      ++in_flight;
    }
    c.flush();
    if (in_flight == 0 && !sending) break;
    auto rep = c.receive(milliseconds(100));
    if (!rep) {
      if (clock::now() - last_reply > timeout + milliseconds(1000)) break;  // the rest is lost
      continue;
    }
    take(*rep, clock::now());
    // What else has arrived is taken before the window is refilled.
    while (auto more = c.receive(milliseconds(0))) take(*more, clock::now());
  }
}

// Majordomo 0.1 client (MDPC01 on a DEALER): no request ids, so the body's sequence number
// matches replies.
void run_mdp(const bench_args& a, const std::atomic<bool>& stop, long quota, client_result& r) {
  zmq::context_t ctx(1);
  zmq::socket_t s(ctx, zmq::socket_type::dealer);
  s.set(zmq::sockopt::linger, 0);
  security::apply_curve_client(s, a.curve);
  // Majordomo has no failover: with a list, the DEALER spreads requests over every broker.
  for (const auto& ep : detail::split_endpoint_list(a.broker)) s.connect(ep);
  ledger book;
  long in_flight = 0;
  auto last_reply = clock::now();
  const auto timeout = milliseconds(a.timeout_ms);
  while (true) {
    const bool sending = !stop && (quota < 0 || r.sent < quota);
    while (sending && in_flight < a.window && (quota < 0 || r.sent < quota)) {
      const std::uint64_t seq = book.open(clock::now());
      const std::string body = body_for(seq, a.size);
      s.send(zmq::message_t(), zmq::send_flags::sndmore);
      s.send(zmq::buffer(protocol::mdp_client_header), zmq::send_flags::sndmore);
      s.send(zmq::buffer(a.service), zmq::send_flags::sndmore);
      s.send(zmq::buffer(body), zmq::send_flags::none);
      ++r.sent;
      ++in_flight;
    }
    if (in_flight == 0 && !sending) break;
    zmq::pollitem_t item{s.handle(), 0, ZMQ_POLLIN, 0};
    zmq::poll(&item, 1, milliseconds(100));
    const auto now = clock::now();
    std::vector<zmq::message_t> parts;
    if (!zmq::recv_multipart(s, std::back_inserter(parts), zmq::recv_flags::dontwait)) {
      if (now - last_reply > timeout + milliseconds(1000)) break;
      continue;
    }
    last_reply = now;
    if (parts.size() < 4) {
      ++r.wrong;
      continue;
    }
    std::string body;
    for (std::size_t i = 3; i < parts.size(); ++i) body += parts[i].to_string_view();
    if (parts.size() == 5 && body.size() < 8) {  // ["503", "message"]: an MMI-style error
      ++r.errors[static_cast<std::uint16_t>(std::atoi(parts[3].to_string().c_str()))];
      ++r.error_replies;
      --in_flight;
      ++r.received;
      continue;
    }
    const std::uint64_t seq = seq_of(body);
    if (!book.close(seq, now, r)) {
      ++r.duplicated;
      continue;
    }
    --in_flight;
    ++r.received;
    if (body != body_for(seq, a.size)) ++r.wrong;
  }
}

double percentile(std::vector<std::uint32_t>& v, double q) {
  if (v.empty()) return 0;
  const auto k = static_cast<std::size_t>(std::min<double>(
      static_cast<double>(v.size() - 1), std::ceil(q * static_cast<double>(v.size())) - 1));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return v[k];
}

int run_bench(bench_args& a) {
  try {
    a.curve = a.curve_given.resolve();
  } catch (const std::exception& e) {
    std::cerr << "scale0 bench: " << e.what() << "\n";
    return 2;
  }
  if (a.protocol != "s0" && a.protocol != "s0v1" && a.protocol != "mdp") {
    std::cerr << "scale0 bench: --protocol must be s0, s0v1 or mdp\n";
    return 2;
  }
  if (a.protocol == "mdp" && a.size < 8) {
    std::cerr
        << "scale0 bench: --protocol mdp needs --size 8 or more (replies are matched by body)\n";
    return 2;
  }
  if (a.spawn_workers > 0 && a.curve.enabled() && a.curve.secret_key.empty()) {
    std::cerr
        << "scale0 bench: spawned workers need --curve-cert (a certificate listed as a worker "
           "key; an ephemeral key is never listed)\n";
    return 2;
  }
  // In-process echo workers, if asked for.
  std::vector<std::unique_ptr<worker>> workers;
  std::vector<std::thread> worker_threads;
  struct stop_workers {  // on every way out, an exception included
    std::vector<std::unique_ptr<worker>>& workers;
    std::vector<std::thread>& threads;
    ~stop_workers() {
      for (auto& w : workers) w->stop();
      for (auto& t : threads)
        if (t.joinable()) t.join();
    }
  } stop_on_exit{workers, worker_threads};
  for (int i = 0; i < a.spawn_workers; ++i) {
    worker_options o;
    o.broker = a.backend.empty() ? a.broker : a.backend;
    o.services = {a.service};
    o.concurrency = a.concurrency;
    o.inline_handler = true;  // an echo never blocks: no thread hop
    o.protocol_version = a.protocol == "s0v1" ? protocol::version_1 : protocol::version_2;
    o.curve = a.curve;  // the same certificate: list its key as a worker key too
    workers.push_back(std::make_unique<worker>(o, [](job& j) {
      job_result r;
      r.body = std::move(j.body);
      return r;
    }));
    worker_threads.emplace_back([w = workers.back().get()] {
      try {
        w->run();
      } catch (const std::exception& e) {
        std::cerr << "scale0 bench: worker: " << e.what() << "\n";
      }
    });
  }
  if (a.spawn_workers > 0) {
    client_options po;
    po.curve = a.curve;
    std::optional<client> probe;
    try {
      probe.emplace(a.broker, po);
    } catch (const std::exception& e) {
      std::cerr << "scale0 bench: " << e.what() << "\n";
      return 2;
    }
    const auto give_up = clock::now() + std::chrono::seconds(10);
    bool served = false;
    while (!served && clock::now() < give_up) {
      try {
        served = probe->request("mmi.service", a.service, milliseconds(1000)) == "200";
      } catch (const error&) {
      }
      if (!served) std::this_thread::sleep_for(milliseconds(20));
    }
    if (!served) {
      std::cerr << "scale0 bench: the spawned workers did not register with " << a.broker
                << " within 10 s (with CURVE: is their key a listed worker key, and --backend "
                   "the broker's backend?)\n";
      return 1;
    }
    std::this_thread::sleep_for(milliseconds(300));  // let every worker register
  }

  const long quota = a.duration > 0 ? -1 : (a.requests + a.clients - 1) / a.clients;
  std::atomic<bool> stop{false};
  std::vector<client_result> results(static_cast<std::size_t>(a.clients));
  std::vector<std::thread> threads;
  std::atomic<int> failed{0};
  std::atomic<int> finished{0};  // client threads that returned (all replies, or gave up)
  const auto start = clock::now();
  for (int i = 0; i < a.clients; ++i) {
    threads.emplace_back([&, i] {
      client_result& r = results[static_cast<std::size_t>(i)];
      const double cpu0 = thread_cpu_seconds();
      try {
        if (a.protocol == "mdp")
          run_mdp(a, stop, quota, r);
        else
          run_native(a, stop, quota, r);
      } catch (const std::exception& e) {
        std::cerr << "scale0 bench: client " << i << ": " << e.what() << "\n";
        ++failed;
      }
      r.cpu_seconds = thread_cpu_seconds() - cpu0;
      ++finished;
    });
  }
  // Progress on a terminal; the duration limit.
  const bool tty = ::isatty(STDERR_FILENO) != 0 && !a.json;
  long last_count = 0;
  auto last_tick = start;
  while (true) {
    std::this_thread::sleep_for(milliseconds(100));
    const auto now = clock::now();
    if (a.duration > 0 && now - start >= std::chrono::duration<double>(a.duration)) stop = true;
    long done = 0;
    long errors_so_far = 0;
    for (const auto& r : results) {
      done += r.received;
      errors_so_far += r.error_replies;
    }
    if (tty && now - last_tick >= std::chrono::seconds(1)) {
      const double secs = std::chrono::duration<double>(now - last_tick).count();
      std::cerr << fmt::format("\r{:>10} replies  {:>10.0f} req/s  {:>8} errors", done,
                               static_cast<double>(done - last_count) / secs, errors_so_far)
                << std::flush;
      last_count = done;
      last_tick = now;
    }
    if (finished == a.clients) break;  // replies lost: the clients stopped waiting for them
    if (a.duration <= 0 && done >= a.requests) break;
    if (a.duration > 0 && stop) break;
    if (failed > 0) {
      stop = true;  // the others stop sending and wait only for what they sent
      break;
    }
  }
  for (auto& t : threads) t.join();
  const double wall = std::chrono::duration<double>(clock::now() - start).count();
  if (tty) std::cerr << "\r" << std::string(60, ' ') << "\r";
  for (auto& w : workers) w->stop();
  for (auto& t : worker_threads) t.join();  // stop_on_exit finds them joined

  client_result total;
  for (auto& r : results) {
    total.latency_us.insert(total.latency_us.end(), r.latency_us.begin(), r.latency_us.end());
    for (const auto& [code, n] : r.errors) total.errors[code] += n;
    total.sent += r.sent;
    total.received += r.received;
    total.duplicated += r.duplicated;
    total.wrong += r.wrong;
    total.cpu_seconds += r.cpu_seconds;
  }
  const long received = total.received;
  const long lost = total.sent - received;
  const double rate = static_cast<double>(received) / wall;
  auto& lat = total.latency_us;
  const double p50 = percentile(lat, 0.50), p90 = percentile(lat, 0.90),
               p99 = percentile(lat, 0.99), p999 = percentile(lat, 0.999);
  const double max = lat.empty() ? 0 : *std::max_element(lat.begin(), lat.end());
  nlohmann::json errors = nlohmann::json::object();
  for (const auto& [code, n] : total.errors) errors[std::to_string(code)] = n;
  if (a.json) {
    nlohmann::json j = {
        {"protocol", a.protocol},
        {"clients", a.clients},
        {"window", a.window},
        {"size", a.size},
        {"sent", total.sent},
        {"received", received},
        {"requests_per_second", rate},
        {"latency_us", {{"p50", p50}, {"p90", p90}, {"p99", p99}, {"p999", p999}, {"max", max}}},
        {"errors", errors},
        {"lost", lost},
        {"duplicated", total.duplicated},
        {"wrong", total.wrong},
        {"client_cpu_seconds", total.cpu_seconds},
        {"wall_seconds", wall}};
    std::cout << j.dump() << "\n";
  } else {
    std::cout << fmt::format(
        "{} requests in {:.2f} s: {:.0f} req/s ({} clients x window {}, {} bytes, {})\n"
        "latency us: p50 {:.0f}  p90 {:.0f}  p99 {:.0f}  p99.9 {:.0f}  max {:.0f}\n"
        "errors: {}  lost: {}  duplicated: {}  wrong: {}\n"
        "client cpu: {:.2f} s ({:.0f}% of one core)\n",
        received, wall, rate, a.clients, a.window, a.size,
        a.protocol == "mdp"    ? "MDP 0.1"
        : a.protocol == "s0v1" ? "S0/1"
                               : "S0/2",
        p50, p90, p99, p999, max, errors.empty() ? "none" : errors.dump(), lost, total.duplicated,
        total.wrong, total.cpu_seconds, 100 * total.cpu_seconds / wall);
  }
  if (lost != 0 || total.duplicated != 0 || total.wrong != 0 || failed != 0)
    return exit_status::failure;
  if (!a.allow_errors && !total.errors.empty())  // the worst: 5 when any reply was a 5xx
    return exit_status::of_reply(total.errors.rbegin()->first);
  return exit_status::ok;
}

}  // namespace

void add_bench_command(CLI::App& root, int& exit_code) {
  auto args = std::make_shared<bench_args>();
  CLI::App* sub = root.add_subcommand("bench", "Load-test a broker and check every reply");
  sub->footer(
      "Every reply is checked (id, status, body): a lost, duplicated or wrong reply exits 1.\n"
      "Errors (non-200 replies) are counted by status and exit 4 or 5 (the worst seen) unless\n"
      "--allow-errors. On a terminal a progress line shows replies, req/s and errors.\n\n"
      "Examples:\n"
      "  scale0 bench --spawn-workers 2 --clients 4 --window 100 --requests 200000\n"
      "  scale0 bench --service echo --window 1 --duration 10          # synchronous latency\n"
      "  scale0 bench --protocol mdp --window 10 --json                # through a Majordomo "
      "client");
  sub->add_option("--broker", args->broker,
                  "Broker endpoint, or a list EP[,EP...]: each client takes one and moves to "
                  "the next when it is lost")
      ->capture_default_str();
  sub->add_option("--service", args->service, "Service to call")->capture_default_str();
  sub->add_option(
         "--protocol", args->protocol,
         "s0 (native, S0/2 framing), s0v1 (native, S0/1 framing) or mdp (Majordomo 0.1 client)")
      ->capture_default_str();
  sub->add_option("--clients", args->clients, "Client threads, one socket each")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  sub->add_option("--window", args->window, "Requests in flight per client (1: synchronous)")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  sub->add_option("--size", args->size, "Request body bytes")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{0}, std::size_t{64} << 20));
  sub->add_option("--requests", args->requests, "Requests in all")
      ->capture_default_str()
      ->check(CLI::Range(1L, 1000000000L));
  sub->add_option("--duration", args->duration, "Run for this many seconds instead of --requests")
      ->check(CLI::Range(0.0, 86400.0));
  sub->add_option("--spawn-workers", args->spawn_workers, "Start this many in-process echo workers")
      ->check(CLI::Range(0, 1024));
  sub->add_option("--backend", args->backend,
                  "Endpoint the spawned workers connect to (default: --broker)");
  sub->add_option("--concurrency", args->concurrency, "Concurrency of each spawned worker")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  sub->add_option("--timeout", args->timeout_ms, "Deadline of each request (ms)")
      ->transform(milliseconds_with_unit())
      ->capture_default_str()
      ->check(CLI::Range(1L, 3600000L));
  sub->add_flag("--json", args->json, "Print the summary as one JSON object");
  sub->add_flag("--allow-errors", args->allow_errors,
                "Error replies (non-200) do not make the exit status non-zero");
  args->curve_given.add_to(sub);  // spawned workers use the same certificate as the clients
  sub->callback([args, &exit_code] { exit_code = run_bench(*args); });
}

}  // namespace scale0::cli
