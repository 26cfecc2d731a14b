// SPDX-License-Identifier: Apache-2.0
#include "http_worker.hpp"

#include <spdlog/spdlog.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "commands.hpp"
#include "common/text.hpp"
#include "logging.hpp"
#include "service_notify.hpp"

namespace scale0::cli {
namespace {

std::atomic<bool> stop_requested{false};
std::atomic<worker*> current{nullptr};

// Wakes the health checker between its rounds: a request found the app unreachable, or the worker
// it watches has ended.
class health_clock {
 public:
  void poke() {
    {
      std::lock_guard lock(mu_);
      poked_ = true;
    }
    cv_.notify_all();
  }
  void finish() {
    {
      std::lock_guard lock(mu_);
      finished_ = true;
    }
    cv_.notify_all();
  }
  void restart() {
    std::lock_guard lock(mu_);
    finished_ = poked_ = false;
  }
  // Waits one interval, less when poked; false once finished.
  bool wait(std::chrono::milliseconds interval) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, interval, [&] { return poked_ || finished_; });
    poked_ = false;
    return !finished_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool poked_ = false;
  bool finished_ = false;
};

// Sleeps in short slices so a stop signal is seen quickly; false when one arrived.
bool sleep_unless_stopped(std::chrono::milliseconds total) {
  const auto end = std::chrono::steady_clock::now() + total;
  while (!stop_requested.load()) {
    const auto left = end - std::chrono::steady_clock::now();
    if (left <= std::chrono::milliseconds(0)) return true;
    std::this_thread::sleep_for(
        std::min<std::chrono::steady_clock::duration>(left, std::chrono::milliseconds(50)));
  }
  return false;
}

// Probes until the app answers; false when a stop signal came first.
bool wait_for_app(const http_worker_options& h, const std::string& url) {
  std::string last;
  for (;;) {
    if (stop_requested.load()) return false;
    std::string problem = http::probe_app(h.probe);
    if (problem.empty()) {
      log(spdlog::level::info, "the app answers: taking work", {{"worker", h.name}, {"app", url}});
      return true;
    }
    if (problem != last)
      log(spdlog::level::warn, "the app is not answering: not taking work, probing it",
          {{"worker", h.name},
           {"app", url},
           {"problem", problem},
           {"interval_ms", h.health_interval.count()}});
    last = std::move(problem);
    if (!sleep_unless_stopped(h.health_interval)) return false;
  }
}

// Serves with one worker until the app fails its health check or a stop signal arrives.
void serve_while_healthy(const worker_options& wo, const job_handler& handler,
                         const http_worker_options& h, const std::string& url,
                         health_clock& health) {
  worker w(wo, handler);
  current = &w;
  struct forget {
    ~forget() { current = nullptr; }
  } forget_on_exit;
  if (stop_requested.load()) w.stop();
  health.restart();
  std::thread checker([&] {
    while (health.wait(h.health_interval)) {
      std::string problem = http::probe_app(h.probe);
      if (problem.empty()) continue;
      log(spdlog::level::warn,
          "the app failed its health check: stopping the worker, no new requests until it "
          "answers again",
          {{"worker", h.name}, {"app", url}, {"problem", problem}});
      w.stop();
      return;
    }
  });
  struct join {
    health_clock& health;
    std::thread& t;
    ~join() {
      health.finish();
      t.join();
    }
  } join_on_exit{health, checker};
  w.run();
}

}  // namespace

int run_http_worker(const worker_options& wo, http_worker_options h) {
  const std::string url = http::parse_app_url(h.forward.url).text();  // throws on a bad URL
  h.probe.url = h.forward.url;
  auto health = std::make_shared<health_clock>();
  h.forward.on_app_error = [health, name = h.name](const std::string& what) {
    log(spdlog::level::warn, "answered 502; checking the app's health now",
        {{"worker", name}, {"problem", what}});
    health->poke();
  };
  job_handler forward = http::make_http_forwarder(h.forward);
  job_handler handler = [forward, name = h.name](job& j) {
    job_result r = forward(j);
    if (r.status == 200) r.message = name;  // the reply says who served it; errors keep theirs
    return r;
  };
  on_stop_signal([]() noexcept {
    stop_requested = true;
    if (worker* w = current.load()) w->stop();
  });
  // The worker also stops when the app fails its health check; only a stop of the process is
  // STOPPING for a service manager.
  worker_options o = wo;
  o.on_stopping = [told = wo.on_stopping] {
    if (stop_requested.load() && told) told();
  };
  notify_service("READY=1");  // set up; the app and the broker are what its status line says
  while (wait_for_app(h, url)) {
    serve_while_healthy(o, handler, h, url, *health);
    if (stop_requested.load()) break;
    log(spdlog::level::info, "worker stopped; probing the app",
        {{"worker", h.name}, {"interval_ms", h.health_interval.count()}});
  }
  return 0;
}

}  // namespace scale0::cli
