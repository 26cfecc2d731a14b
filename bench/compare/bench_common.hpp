// SPDX-License-Identifier: Apache-2.0
// Shared pieces of the comparison's load generators (bench_raw_client, bench_nats_client): the
// options every generator takes, the table of requests in flight, the payload every request
// carries (derived from its id, so every reply can be checked), and the JSON report.
//
// Measurement: each client thread first sends freely for --warmup seconds (replies are checked but
// not counted), then either --requests (split over the clients) or --duration seconds of requests
// are measured. Throughput is measured replies / (last measured reply - end of warm-up). When the
// sending stops, replies still in flight are awaited for at most --drain-timeout seconds; what
// never comes back is "lost". A thread that gets no reply for --drain-timeout seconds while it
// waits for one stops sending and counts its requests in flight as lost, so every run is bounded.
#pragma once

#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace bench {

using clock = std::chrono::steady_clock;

struct load_options {
  int clients = 1;
  int window = 1;
  std::size_t size = 32;
  long requests = 10000;  // total over all clients (requests mode)
  double duration = 0;    // seconds; > 0 selects duration mode
  double warmup = 0;      // seconds of unmeasured traffic first
  double drain_timeout = 5;
  bool json = false;
};

inline void add_load_options(CLI::App& app, load_options& o) {
  app.add_option("--clients", o.clients, "Client threads, one connection each")
      ->check(CLI::Range(1, 1024));
  app.add_option("--window", o.window, "Requests in flight per client (1 = synchronous)")
      ->check(CLI::Range(1, 65536));
  app.add_option("--size", o.size, "Payload bytes per request")->check(CLI::Range(0, 1 << 20));
  app.add_option("--requests", o.requests, "Measured requests, in total over all clients")
      ->check(CLI::Range(1L, 1000000000L));
  app.add_option("--duration", o.duration, "Measure for this many seconds instead of --requests")
      ->check(CLI::Range(0.0, 3600.0));
  app.add_option("--warmup", o.warmup, "Unmeasured seconds before measuring")
      ->check(CLI::Range(0.0, 60.0));
  app.add_option("--drain-timeout", o.drain_timeout,
                 "Longest wait for a reply before counting requests in flight as lost (s)")
      ->check(CLI::Range(0.1, 600.0));
  app.add_flag("--json", o.json, "Print the report as one JSON object");
}

// ---- payload: the bytes of request `id` ----

inline void fill_payload(std::uint64_t id, char* out, std::size_t n) {
  std::uint64_t x = id * 0x9E3779B97F4A7C15ULL + 1;
  for (std::size_t i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    out[i] = static_cast<char>(x & 0xFF);
  }
}

// `scratch` must hold at least n bytes.
inline bool payload_matches(std::uint64_t id, const void* data, std::size_t n, std::size_t expected,
                            std::vector<char>& scratch) {
  if (n != expected) return false;
  fill_payload(id, scratch.data(), n);
  return n == 0 || std::memcmp(scratch.data(), data, n) == 0;
}

inline void put_u64(char* out, std::uint64_t v) {
  for (int i = 7; i >= 0; --i) {
    out[i] = static_cast<char>(v & 0xFF);
    v >>= 8;
  }
}
inline std::uint64_t get_u64(const void* p) {
  const auto* b = static_cast<const unsigned char*>(p);
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | b[i];
  return v;
}

// ---- requests in flight ----
// A request's id is (generation << 20) | slot: the slot finds its send time, the generation tells
// a reply to this request from a duplicate or a stale one.
class inflight_table {
 public:
  struct entry {
    std::uint64_t id = 0;
    clock::time_point sent;
    bool busy = false;
    bool measured = false;
  };
  static constexpr unsigned slot_bits = 20;

  explicit inflight_table(std::size_t window) : slots_(window) {
    free_.reserve(window);
    for (std::size_t i = window; i > 0; --i) free_.push_back(i - 1);
  }
  bool full() const { return free_.empty(); }
  bool empty() const { return free_.size() == slots_.size(); }
  std::size_t in_flight() const { return slots_.size() - free_.size(); }

  std::uint64_t acquire(clock::time_point now, bool measured) {
    const std::size_t slot = free_.back();
    free_.pop_back();
    entry& e = slots_[slot];
    e.id = (++generation_ << slot_bits) | slot;
    e.sent = now;
    e.busy = true;
    e.measured = measured;
    return e.id;
  }
  // The request `id` if it is in flight (then no longer), or nullptr: unknown, stale or duplicate.
  const entry* release(std::uint64_t id) {
    const std::size_t slot = id & ((std::uint64_t{1} << slot_bits) - 1);
    if (slot >= slots_.size()) return nullptr;
    entry& e = slots_[slot];
    if (!e.busy || e.id != id) return nullptr;
    e.busy = false;
    free_.push_back(slot);
    return &e;
  }

 private:
  std::vector<entry> slots_;
  std::vector<std::size_t> free_;
  std::uint64_t generation_ = 0;
};

// ---- one client thread's schedule and tallies ----

struct thread_stats {
  long sent = 0;
  long replies = 0;   // every matched reply (warm-up included)
  long measured = 0;  // matched 200 replies to measured requests
  long errors = 0;    // non-200 outcomes (status reply, -ERR, ...)
  long wrong = 0;     // reply with an unknown id, a duplicate, or a body that does not match
  long lost = 0;      // no reply
  std::vector<std::uint32_t> latency_ns;
  clock::time_point last_measured{};
  bool stalled = false;
};

class schedule {
 public:
  schedule(const load_options& o, clock::time_point start, long quota)
      : measure_start_(start + seconds(o.warmup)),
        stop_(start + seconds(o.warmup + o.duration)),
        timed_(o.duration > 0),
        quota_(quota),
        drain_(seconds(o.drain_timeout)) {}

  clock::time_point measure_start() const { return measure_start_; }
  // May a new request be sent now? `measured_sent` counts measured requests sent so far.
  bool may_send(clock::time_point now, long measured_sent) const {
    if (now < measure_start_) return true;
    return timed_ ? now < stop_ : measured_sent < quota_;
  }
  clock::duration drain() const { return drain_; }

 private:
  static clock::duration seconds(double s) {
    return std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(s));
  }
  clock::time_point measure_start_;
  clock::time_point stop_;
  bool timed_;
  long quota_;
  clock::duration drain_;
};

inline void record_latency(thread_stats& st, const inflight_table::entry& e,
                           clock::time_point now) {
  if (!e.measured) return;
  ++st.measured;
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(now - e.sent).count();
  st.latency_ns.push_back(static_cast<std::uint32_t>(std::clamp<long long>(ns, 0, UINT32_MAX)));
  if (now > st.last_measured) st.last_measured = now;
}

inline double cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto tv = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
  };
  return tv(ru.ru_utime) + tv(ru.ru_stime);
}

// Prints the report (JSON or text) and returns the exit status: 0 only if every request got its
// right reply and at least one was measured.
inline int report(const char* program, const load_options& o, std::vector<thread_stats>& stats,
                  clock::time_point start, clock::time_point measure_start, double cpu,
                  nlohmann::json extra) {
  const auto end = clock::now();
  thread_stats total;
  std::vector<std::uint32_t> lat;
  clock::time_point last = measure_start;
  bool stalled = false;
  for (auto& s : stats) {
    total.sent += s.sent;
    total.replies += s.replies;
    total.measured += s.measured;
    total.errors += s.errors;
    total.wrong += s.wrong;
    total.lost += s.lost;
    stalled = stalled || s.stalled;
    lat.insert(lat.end(), s.latency_ns.begin(), s.latency_ns.end());
    if (s.last_measured > last) last = s.last_measured;
  }
  std::sort(lat.begin(), lat.end());
  auto pct = [&](double q) {
    if (lat.empty()) return 0.0;
    auto i = static_cast<std::size_t>(q * static_cast<double>(lat.size()));
    return static_cast<double>(lat[std::min(i, lat.size() - 1)]) / 1000.0;
  };
  const double measured_secs = std::chrono::duration<double>(last - measure_start).count();
  const double rps = measured_secs > 0 ? static_cast<double>(total.measured) / measured_secs : 0.0;
  const double wall = std::chrono::duration<double>(end - start).count();
  nlohmann::json j = {
      {"program", program},
      {"requests_per_second", rps},
      {"latency_us",
       {{"p50", pct(0.50)},
        {"p90", pct(0.90)},
        {"p99", pct(0.99)},
        {"p999", pct(0.999)},
        {"max", lat.empty() ? 0.0 : static_cast<double>(lat.back()) / 1000.0}}},
      {"requests", total.measured},
      {"sent", total.sent},
      {"replies", total.replies},
      {"errors", total.errors},
      {"lost", total.lost},
      {"wrong", total.wrong},
      {"stalled", stalled},
      {"client_cpu_seconds", cpu},
      {"measured_seconds", measured_secs},
      {"wall_seconds", wall},
      {"clients", o.clients},
      {"window", o.window},
      {"size", o.size},
  };
  for (auto& [k, v] : extra.items()) j[k] = v;
  if (o.json) {
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf(
        "%s: %ld requests in %.2f s: %.0f req/s; latency us p50 %.1f p90 %.1f p99 %.1f p99.9 %.1f "
        "max %.1f; errors %ld lost %ld wrong %ld; client cpu %.2f s\n",
        program, total.measured, measured_secs, rps, pct(0.5), pct(0.9), pct(0.99), pct(0.999),
        lat.empty() ? 0.0 : static_cast<double>(lat.back()) / 1000.0, total.errors, total.lost,
        total.wrong, cpu);
  }
  std::fflush(stdout);
  const bool ok = total.errors == 0 && total.lost == 0 && total.wrong == 0 && total.measured > 0;
  if (!ok) {
    std::fprintf(stderr, "%s: FAILED: %ld errors, %ld lost, %ld wrong, %ld measured\n", program,
                 total.errors, total.lost, total.wrong, total.measured);
  }
  return ok ? 0 : 1;
}

// Quota of measured requests for client `i` of `n` (requests mode).
inline long quota_for(long requests, int n, int i) {
  return requests / n + (i < requests % n ? 1 : 0);
}

// Set by SIGTERM/SIGINT once install_stop_signals() ran: servers finish their loop and exit.
inline volatile std::sig_atomic_t stop_requested = 0;
inline void install_stop_signals() {
  auto on_signal = [](int) { stop_requested = 1; };
  std::signal(SIGTERM, on_signal);
  std::signal(SIGINT, on_signal);
}

// Starts the clock once every connection is set up, runs each client on its own thread with its
// share of the load, then reports. Client needs run(schedule&).
template <class Client>
int run_clients(const char* program, const load_options& o,
                std::vector<std::unique_ptr<Client>>& clients, std::vector<thread_stats>& stats,
                nlohmann::json extra) {
  const double cpu0 = cpu_seconds();
  const auto start = clock::now();
  const schedule plan(o, start, 0);
  std::vector<std::unique_ptr<schedule>> plans;
  std::vector<std::thread> threads;
  for (int i = 0; i < o.clients; ++i) {
    plans.push_back(std::make_unique<schedule>(o, start, quota_for(o.requests, o.clients, i)));
    threads.emplace_back(
        [&c = *clients[static_cast<std::size_t>(i)], &p = *plans.back()] { c.run(p); });
  }
  for (auto& t : threads) t.join();
  const double cpu = cpu_seconds() - cpu0;
  clients.clear();
  return report(program, o, stats, start, plan.measure_start(), cpu, std::move(extra));
}

}  // namespace bench
