// SPDX-License-Identifier: Apache-2.0
// Microbenchmarks of the broker's hot path, driven directly (no sockets): decoding, one request
// dispatched and answered, timer scheduling, and the expiry scan, at 10 / 1k / 100k entries, to
// show that per-request cost does not grow with the number of services, workers or pending
// requests.
#include <benchmark/benchmark.h>
#include <prometheus/counter.h>
#include <prometheus/histogram.h>

#include <string>
#include <vector>

#include "broker/broker_core.hpp"
#include "broker/timer_wheel.hpp"
#include "metrics/exposition.hpp"
#include "metrics/latency_histogram.hpp"
#include "support/job_sink.hpp"

namespace {

using namespace scale0;
using namespace scale0::broker_detail;
using namespace std::chrono_literals;

std::string be(std::uint64_t v, int width) {
  std::string s(static_cast<std::size_t>(width), '\0');
  for (int i = 0; i < width; ++i)
    s[static_cast<std::size_t>(i)] = static_cast<char>(v >> (8 * (width - 1 - i)));
  return s;
}

void fill(frames& f, std::initializer_list<std::string_view> parts) {
  f.clear();
  for (auto p : parts) f.emplace_back(p.data(), p.size());
}

void BM_decode_client_request(benchmark::State& state) {
  frames f;
  const std::string id = be(42, 8), timeout = be(5000, 4);
  fill(f, {"\x00\x6b\x8b\x45\x67", "", "S0C1", "\x01", id, "echo", timeout, std::string(32, 'x')});
  for (auto _ : state) benchmark::DoNotOptimize(protocol::decode_inbound(f));
}
BENCHMARK(BM_decode_client_request);

// A broker with `n` services, each served by its own worker (so `n` workers too), and requests
// going to one of them: request in, dispatch, reply in, reply out.
// A second argument of 1 turns the family's capacity tracking on (docs/family.md), its changes
// taken every 1000 cycles as a STATE round would.
void BM_request_reply_cycle(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  const bool track = state.range(1) != 0;
  broker_options options;
  options.max_services = n + 10;
  job_sink out;
  auto now = clock::time_point{} + 1h;
  broker_core core(options, out, 1, "tcp://127.0.0.1:5557", now);
  core.track_capacity(track);
  std::vector<service_capacity> changes;
  frames msg;
  const std::string ready_head = be(4, 4) + be(0, 4) + std::string(1, '\0');
  for (std::size_t i = 0; i < n; ++i) {
    const std::string w = "w" + std::to_string(i), s = "svc" + std::to_string(i);
    fill(msg,
         {w, "", "S0W1", "\x01", std::string_view(ready_head).substr(0, 4),
          std::string_view(ready_head).substr(4, 4), std::string_view(ready_head).substr(8, 1), s});
    core.on_message(1, msg, false, now);
  }
  const std::string service = "svc" + std::to_string(n / 2), worker = "w" + std::to_string(n / 2);
  const std::string timeout = be(5000, 4), status = be(200, 2);
  std::uint64_t i = 0;
  for (auto _ : state) {
    const std::string id = be(++i, 8);
    fill(msg, {"client", "", "S0C1", "\x01", id, service, timeout, "payload"});
    core.on_message(0, msg, false, now);
    const std::string job = be(out.last_job, 8);
    fill(msg, {worker, "", "S0W1", "\x03", job, status, "", "reply"});
    core.on_message(1, msg, false, now);
    if (track && i % 1000 == 0) core.take_capacity_changes(changes);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_request_reply_cycle)->ArgsProduct({{10, 1000, 100000}, {0, 1}});

// The same cycle while `n` other requests wait in flight (held by a worker that never answers):
// reply matching and deadline timers must not slow down as they pile up.
void BM_cycle_with_pending(benchmark::State& state) {
  const auto n = state.range(0);
  broker_options options;
  options.max_client_inflight = static_cast<std::size_t>(n) + 10;
  job_sink out;
  auto now = clock::time_point{} + 1h;
  broker_core core(options, out, 1, "tcp://127.0.0.1:5557", now);
  frames msg;
  const std::string head = be(1024, 4) + be(0, 4) + std::string(1, '\0');
  fill(msg, {"busy", "", "S0W1", "\x01", std::string_view(head).substr(0, 4),
             std::string_view(head).substr(4, 4), std::string_view(head).substr(8, 1), "hold"});
  core.on_message(1, msg, false, now);
  fill(msg, {"fast", "", "S0W1", "\x01", std::string_view(head).substr(0, 4),
             std::string_view(head).substr(4, 4), std::string_view(head).substr(8, 1), "echo"});
  core.on_message(1, msg, false, now);
  const std::string timeout = be(60000, 4), status = be(200, 2);
  for (std::int64_t k = 0; k < n; ++k) {  // queued behind "busy" beyond its credit: still pending
    const std::string id = be(static_cast<std::uint64_t>(k + 1'000'000), 8);
    fill(msg, {"other", "", "S0C1", "\x01", id, "hold", timeout, "x"});
    core.on_message(0, msg, false, now);
  }
  std::uint64_t i = 0;
  for (auto _ : state) {
    const std::string id = be(++i, 8);
    fill(msg, {"client", "", "S0C1", "\x01", id, "echo", timeout, "payload"});
    core.on_message(0, msg, false, now);
    const std::string job = be(out.last_job, 8);
    fill(msg, {"fast", "", "S0W1", "\x03", job, status, "", "reply"});
    core.on_message(1, msg, false, now);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_cycle_with_pending)->Arg(10)->Arg(1000)->Arg(100000);

// One expiry scan over `n` live workers (runs every interval/4, not per request).
void BM_expiry_scan(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  broker_options options;
  job_sink out;
  auto now = clock::time_point{} + 1h;
  broker_core core(options, out, 1, "tcp://127.0.0.1:5557", now);
  frames msg;
  const std::string head =
      be(1, 4) + be(3'600'000, 4) + std::string(1, '\0');  // long intervals: never expire
  for (std::size_t i = 0; i < n; ++i) {
    const std::string w = "w" + std::to_string(i);
    fill(msg, {w, "", "S0W1", "\x01", std::string_view(head).substr(0, 4),
               std::string_view(head).substr(4, 4), std::string_view(head).substr(8, 1), "echo"});
    core.on_message(1, msg, false, now);
  }
  for (auto _ : state) {
    now += 300ms;  // past the next scan, before the next heartbeat
    core.on_tick(now);
  }
  state.SetComplexityN(static_cast<std::int64_t>(n));
}
BENCHMARK(BM_expiry_scan)->Arg(10)->Arg(1000)->Arg(100000)->Complexity();

void BM_timer_schedule_cancel(benchmark::State& state) {
  const auto n = static_cast<std::uint32_t>(state.range(0));
  const auto t0 = clock::time_point{} + 1h;
  timer_wheel w(t0);
  for (std::uint32_t i = 0; i < n; ++i) w.schedule(i, t0 + std::chrono::milliseconds(i % 30000));
  std::uint32_t i = 0;
  for (auto _ : state) {
    const std::uint32_t id = n + (i++ % 1024);
    w.schedule(id, t0 + 5s);
    w.cancel(id);
  }
}
BENCHMARK(BM_timer_schedule_cancel)->Arg(10)->Arg(1000)->Arg(100000);

// What a scrape costs the broker's thread (it answers /metrics and scale0.status between
// messages): the Prometheus text and the status JSON of a broker with `n` services, each with a
// worker and some traffic behind it.
enum class scrape { metrics_text, metrics_families, status_json, status_snapshot, status_write };
void scrape_bench(benchmark::State& state, scrape what) {
  const auto n = static_cast<std::size_t>(state.range(0));
  broker_options options;
  options.max_services = n + 10;
  job_sink out;
  auto now = clock::time_point{} + 1h;
  broker_core core(options, out, 1, "tcp://127.0.0.1:5557", now);
  frames msg;
  const std::string ready_head = be(4, 4) + be(0, 4) + std::string(1, '\0');
  const std::string timeout = be(5000, 4), status = be(200, 2);
  for (std::size_t i = 0; i < n; ++i) {
    const std::string w = "w" + std::to_string(i), s = "svc" + std::to_string(i);
    fill(msg,
         {w, "", "S0W1", "\x01", std::string_view(ready_head).substr(0, 4),
          std::string_view(ready_head).substr(4, 4), std::string_view(ready_head).substr(8, 1), s});
    core.on_message(1, msg, false, now);
    fill(msg, {"client", "", "S0C1", "\x01", be(i + 1, 8), s, timeout, "payload"});
    core.on_message(0, msg, false, now);
    fill(msg, {w, "", "S0W1", "\x03", be(out.last_job, 8), status, "", "reply"});
    core.on_message(1, msg, false, now);
  }
  std::size_t bytes = 0;
  const auto snapshot = core.snapshot_status(now);
  for (auto _ : state) {
    if (what == scrape::status_snapshot) {  // the loop's share of /status.json
      auto copy = core.snapshot_status(now);
      benchmark::DoNotOptimize(&copy);
      continue;
    }
    if (what == scrape::status_write) {  // the metrics thread's share
      const std::string text = write_status_json(snapshot);
      bytes = text.size();
      benchmark::DoNotOptimize(text.data());
      continue;
    }
    if (what == scrape::metrics_families) {
      auto families = core.metrics(now);
      benchmark::DoNotOptimize(&families);
      continue;
    }
    const std::string text =
        what == scrape::metrics_text ? core.metrics_text(now) : core.status_json(now);
    bytes = text.size();
    benchmark::DoNotOptimize(text.data());
  }
  if (bytes > 0) state.counters["bytes"] = static_cast<double>(bytes);
}
void BM_scrape_metrics(benchmark::State& state) {
  scrape_bench(state, scrape::metrics_text);
}
void BM_scrape_metrics_families(benchmark::State& state) {
  scrape_bench(state, scrape::metrics_families);
}
void BM_scrape_status_json(benchmark::State& state) {
  scrape_bench(state, scrape::status_json);
}
BENCHMARK(BM_scrape_metrics)->Arg(10)->Arg(1000)->Arg(10000)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_scrape_metrics_families)
    ->Arg(10)
    ->Arg(1000)
    ->Arg(10000)
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_scrape_status_json)->Arg(10)->Arg(1000)->Arg(10000)->Unit(benchmark::kMicrosecond);
// /status.json (the status page): the loop copies a snapshot, the metrics thread writes the JSON.
void BM_status_snapshot(benchmark::State& state) {
  scrape_bench(state, scrape::status_snapshot);
}
void BM_status_write_json(benchmark::State& state) {
  scrape_bench(state, scrape::status_write);
}
BENCHMARK(BM_status_snapshot)->Arg(10)->Arg(1000)->Arg(10000)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_status_write_json)->Arg(10)->Arg(1000)->Arg(10000)->Unit(benchmark::kMicrosecond);

// Why the broker counts in plain integers and builds metric families only when scraped: what one
// increment costs as a plain integer (the broker's thread owns it) and as a prometheus-cpp Counter
// (an atomic double, safe from any thread), which a registry-based design would do several times
// per request.
void BM_count_plain(benchmark::State& state) {
  std::uint64_t n = 0;
  for (auto _ : state) {
    ++n;
    benchmark::DoNotOptimize(n);
  }
}
void BM_count_prometheus_counter(benchmark::State& state) {
  prometheus::Counter c;
  for (auto _ : state) {
    c.Increment();
    benchmark::DoNotOptimize(&c);
  }
}
// The same for one latency observation: the broker's fixed-bucket histogram against
// prometheus-cpp's Histogram with the same 17 bounds.
void BM_observe_latency_histogram(benchmark::State& state) {
  metrics::latency_histogram h;
  auto d = std::chrono::microseconds(1);
  for (auto _ : state) {
    h.record(d);
    d = std::chrono::microseconds((d.count() * 7 + 3) % 20000);  // spread over the buckets
    benchmark::DoNotOptimize(&h);
  }
}
void BM_observe_prometheus_histogram(benchmark::State& state) {
  prometheus::Histogram h(prometheus::Histogram::BucketBoundaries(
      metrics::latency_histogram::bounds.begin(), metrics::latency_histogram::bounds.end()));
  auto d = std::chrono::microseconds(1);
  for (auto _ : state) {
    h.Observe(std::chrono::duration<double>(d).count());
    d = std::chrono::microseconds((d.count() * 7 + 3) % 20000);
    benchmark::DoNotOptimize(&h);
  }
}
BENCHMARK(BM_count_plain);
BENCHMARK(BM_count_prometheus_counter);
BENCHMARK(BM_observe_latency_histogram);
BENCHMARK(BM_observe_prometheus_histogram);

}  // namespace

BENCHMARK_MAIN();
