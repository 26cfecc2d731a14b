// SPDX-License-Identifier: Apache-2.0
// The worker's I/O shell. One I/O thread (run()) owns the sockets and the clock and drives the
// protocol core (worker_core.hpp: every protocol decision is made there); `concurrency` handler
// threads run the handler. Jobs go to the handlers through a locked queue; results come back
// through another, with an eventfd to wake the I/O thread's poll.
#include "scale0/worker.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>

#include "common/host_port.hpp"
#include "protocol/reasons.hpp"
#include "scale0/error.hpp"
#include "scale0/protocol.hpp"
#include "security/curve_socket.hpp"
#include "worker/worker_core.hpp"

namespace scale0 {

std::string default_worker_name() {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0 || !protocol::valid_worker_name(host))
    host[0] = '\0';
  const std::string pid = ":" + std::to_string(::getpid());
  // the host is cut so that the whole fits max_worker_name
  const std::string name(host, std::min(std::strlen(host), protocol::max_worker_name - pid.size()));
  return (name.empty() ? "worker" : name) + pid;
}
namespace {

using clock = std::chrono::steady_clock;
using protocol::frames;
using std::chrono::milliseconds;

std::string concat(const std::vector<zmq::message_t>& body) {
  std::string out;
  for (const auto& f : body) out.append(static_cast<const char*>(f.data()), f.size());
  return out;
}

void signal_fd(int fd) noexcept {
  const std::uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(fd, &one, sizeof one);
}

void clear_fd(int fd) noexcept {
  std::uint64_t v;
  [[maybe_unused]] auto n = ::read(fd, &v, sizeof v);
}

}  // namespace

std::string job::text() const {
  return concat(body);
}

job_result job_result::ok(std::string_view body, std::string message) {
  job_result r;
  r.message = std::move(message);
  r.body.emplace_back(body.data(), body.size());
  return r;
}

job_result job_result::failure(std::uint16_t code, std::string message) {
  job_result r;
  r.status = code;
  r.message = std::move(message);
  return r;
}

// The I/O shell around detail::worker_core: it owns the sockets, the eventfds, the handler
// threads and the clock, and implements the core's io.
struct worker::impl final : detail::worker_core::io {
  using queued_job = detail::worker_core::queued_job;
  struct finished_job {
    std::uint64_t epoch;
    std::uint64_t id;
    job_result result;
  };

  impl(worker_options o, job_handler h) : options(std::move(o)), handler(std::move(h)) {
    if (options.services.empty())
      throw error(status::bad_request, "a worker needs at least one service");
    if (options.services.size() > protocol::max_services_per_worker)
      throw error(status::bad_request, "a worker serves at most 64 services");
    for (const auto& s : options.services) {
      if (s.empty() || s.size() > protocol::max_service_name)
        throw error(status::bad_request, "service names must be 1-255 bytes");
      if (s.starts_with("mmi.") || s.starts_with("scale0."))
        throw error(status::bad_request, "service name '" + s + "' is reserved (mmi.*, scale0.*)");
    }
    if (options.concurrency < 1 || options.concurrency > protocol::max_concurrency)
      throw error(status::bad_request, std::string(reasons::concurrency_range));
    if (!handler) throw error(status::bad_request, "a worker needs a handler");
    if (options.name.empty()) options.name = default_worker_name();
    if (!protocol::valid_worker_name(options.name))
      throw error(status::bad_request,
                  "a worker's name must be 1-64 bytes of printable UTF-8 (no control characters)");
    if (options.protocol_version != protocol::version_1 &&
        options.protocol_version != protocol::version_2)
      throw error(status::bad_request, "worker protocol_version must be 1 or 2");
    if (options.curve.enabled()) {
      if (!security::valid_z85_key(options.curve.server_key))
        throw error(status::bad_request, "the broker's CURVE key is not a 40-character Z85 key");
      if (options.curve.public_key.empty() != options.curve.secret_key.empty() ||
          (!options.curve.secret_key.empty() &&
           security::public_for_secret(options.curve.secret_key) != options.curve.public_key))
        throw error(status::bad_request, "the worker's CURVE key pair does not belong together");
    }
    std::vector<std::string> brokers = detail::split_endpoint_list(options.broker);
    for (const auto& endpoint : brokers) {
      try {  // fail here, not in run(), on an endpoint ZeroMQ cannot parse
        zmq::socket_t probe(context, zmq::socket_type::dealer);
        probe.set(zmq::sockopt::linger, 0);
        if (detail::ipv6_endpoint(endpoint)) probe.set(zmq::sockopt::ipv6, 1);
        probe.connect(endpoint);
      } catch (const zmq::error_t& e) {
        throw error(status::bad_request, "invalid broker endpoint " + endpoint + ": " + e.what());
      }
    }
    stop_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    result_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    core.emplace(options, std::move(brokers), *this);
  }

  ~impl() override {
    ::close(stop_fd);
    ::close(result_fd);
  }

  // ---- the core's io ----
  void open(const std::string& endpoint) override {
    dealer = zmq::socket_t(context, zmq::socket_type::dealer);
    security::apply_curve_client(dealer, options.curve);
    dealer.set(zmq::sockopt::linger, 1000);
    // Replies never outnumber the credit, so a queue above it never refuses one.
    dealer.set(zmq::sockopt::sndhwm, static_cast<int>(options.concurrency) * 2 + 1000);
    if (detail::ipv6_endpoint(endpoint)) dealer.set(zmq::sockopt::ipv6, 1);
    dealer.connect(endpoint);
    sub = zmq::socket_t();
  }

  void close() override {
    dealer = zmq::socket_t();
    sub = zmq::socket_t();
  }

  void send(frames& msg) override {
    if (!dealer) return;
    for (std::size_t i = 0; i < msg.size(); ++i) {
      const int flags = ZMQ_DONTWAIT | (i + 1 < msg.size() ? ZMQ_SNDMORE : 0);
      if (zmq_msg_send(msg[i].handle(), dealer.handle(), flags) < 0 && i == 0) return;
    }
  }

  void subscribe(const std::string& endpoint) override {
    sub = zmq::socket_t(context, zmq::socket_type::sub);
    security::apply_curve_client(sub, options.curve);
    sub.set(zmq::sockopt::linger, 0);
    sub.set(zmq::sockopt::subscribe, protocol::heartbeat_header);
    if (detail::ipv6_endpoint(endpoint)) sub.set(zmq::sockopt::ipv6, 1);
    try {
      sub.connect(endpoint);
    } catch (const zmq::error_t& e) {
      event("cannot connect to heartbeat endpoint " + endpoint + ": " + e.what());
    }
    sub_fd = sub.get(zmq::sockopt::fd);
  }

  void run_job(queued_job&& j) override {
    if (options.inline_handler) {
      // Answered once the core has returned (it is not re-entered): see deliver_inline().
      inline_done.emplace(finished_job{j.epoch, j.id, run_handler(j.work)});
      return;
    }
    {
      std::lock_guard lock(mu);
      jobs.push_back(std::move(j));
    }
    cv.notify_one();
  }

  void event(const std::string& what) override {
    if (options.on_event) options.on_event(what);
  }
  void stopping() override {
    if (options.on_stopping) options.on_stopping();
  }

  // ---- handler threads ----
  void handler_thread() {
    for (;;) {
      std::unique_lock lock(mu);
      cv.wait(lock, [&] { return !jobs.empty() || pool_exit; });
      if (pool_exit) return;  // jobs not started are dropped: the broker was told DISCONNECT
      queued_job j = std::move(jobs.front());
      jobs.pop_front();
      lock.unlock();
      job_result r = run_handler(j.work);
      lock.lock();
      done.push_back({j.epoch, j.id, std::move(r)});
      lock.unlock();
      signal_fd(result_fd);
    }
  }

  job_result run_handler(scale0::job& work) {
    try {
      return handler(work);
    } catch (const std::exception& e) {
      return job_result::failure(status::worker_failed, e.what());
    } catch (...) {
      return job_result::failure(status::worker_failed, "handler failed");
    }
  }

  void send_results(clock::time_point now) {
    clear_fd(result_fd);
    std::deque<finished_job> batch;
    {
      std::lock_guard lock(mu);
      batch.swap(done);
    }
    for (auto& f : batch) core->on_result(now, f.epoch, f.id, std::move(f.result));
  }

  void deliver_inline(clock::time_point now) {
    if (!inline_done) return;
    core->on_result(now, inline_done->epoch, inline_done->id, std::move(inline_done->result));
    inline_done.reset();
  }

  bool receive(zmq::socket_t& s) {
    in.clear();
    in.emplace_back();
    if (zmq_msg_recv(in.back().handle(), s.handle(), ZMQ_DONTWAIT) < 0) return false;
    while (in.back().more()) {
      in.emplace_back();
      if (zmq_msg_recv(in.back().handle(), s.handle(), 0) < 0) break;
    }
    return true;
  }

  // Joins the handler threads however run() ends.
  struct pool_guard {
    impl& self;
    std::vector<std::thread> threads;
    ~pool_guard() {
      {
        std::lock_guard lock(self.mu);
        self.pool_exit = true;
      }
      self.cv.notify_all();
      for (auto& t : threads) t.join();
    }
  };

  void run() {
    pool_guard pool{*this, {}};
    for (std::uint32_t i = 0; i < (options.inline_handler ? 0 : options.concurrency); ++i)
      pool.threads.emplace_back([this] { handler_thread(); });
    core->start(clock::now());
    bool stop_asked = false;
    for (;;) {
      auto now = clock::now();
      if (stop_asked) core->stop(now);
      core->tick(now);
      if (core->finished()) break;
      core->flush();  // the replies this turn made leave together, before the loop waits
      const auto wake = core->next_wake(now);
      // Only what can have something is polled and read: an inline handler has no results to
      // wait for, and each socket is read when the poll says it has input (zmq_poll looks at
      // what a socket holds, not at edges). A synchronous request costs the fewest system calls.
      const bool pooled = !options.inline_handler;
      zmq_pollitem_t items[4];
      int n = 0;
      items[n++] = {nullptr, stop_fd, ZMQ_POLLIN, 0};
      const int results_at = pooled ? n++ : -1;
      if (pooled) items[results_at] = {nullptr, result_fd, ZMQ_POLLIN, 0};
      const int dealer_at = dealer ? n++ : -1;
      if (dealer) items[dealer_at] = {dealer.handle(), 0, ZMQ_POLLIN, 0};
      // The heartbeat SUB is only read from: its descriptor says when it may have input (an
      // edge: it is read until empty then), which costs no check of the socket per turn.
      const int sub_at = sub ? n++ : -1;
      if (sub) items[sub_at] = {nullptr, sub_fd, ZMQ_POLLIN, 0};
      const auto wait = std::chrono::ceil<milliseconds>(wake - now).count();
      if (zmq_poll(items, n, static_cast<long>(std::max<std::int64_t>(wait, 0))) < 0) {
        if (zmq_errno() != EINTR)
          throw error(status::unavailable, std::string("zmq_poll: ") + zmq_strerror(zmq_errno()));
        continue;  // a signal (SIGHUP): round again
      }
      const auto ready = [&](int at) { return at >= 0 && (items[at].revents & ZMQ_POLLIN); };
      bool woken = false;  // by input; else by a timer: then every socket is looked at
      for (int i = 0; i < n; ++i) woken = woken || items[i].revents != 0;
      now = clock::now();
      if (ready(0)) {
        clear_fd(stop_fd);
        stop_asked = true;
      }
      if (ready(results_at)) send_results(now);
      // Drain each socket completely; the core may replace the sockets.
      while (ready(dealer_at) && dealer && receive(dealer)) {
        // A batch is its entries, one after another (a malformed one is ignored whole, as any
        // malformed message from the broker).
        if (protocol::is_batch(in, 0)) {
          if (!batch_in.open(in, 0)) continue;
          std::size_t bytes = 0;
          while (batch_in.next(entry, bytes)) {
            core->on_broker_message(now, entry);
            deliver_inline(now);
          }
          continue;
        }
        core->on_broker_message(now, in);
        deliver_inline(now);
      }
      core->flush();  // the replies to what was just read leave now, together
      if (ready(sub_at) || !woken)
        while (sub && receive(sub)) core->on_heartbeat(now, in);
    }
    close();
  }

  worker_options options;
  job_handler handler;
  zmq::context_t context{1};
  zmq::socket_t dealer;
  zmq::socket_t sub;
  zmq_fd_t sub_fd = -1;  // the SUB's ZMQ_FD
  int stop_fd = -1;
  int result_fd = -1;

  std::mutex mu;
  std::condition_variable cv;
  std::deque<queued_job> jobs;
  std::deque<finished_job> done;
  bool pool_exit = false;
  std::optional<finished_job> inline_done;  // an inline handler's result, for the core

  std::optional<detail::worker_core> core;
  frames in;
  protocol::batch_reader batch_in;
  frames entry;
};

worker::worker(worker_options options, job_handler handler)
    : impl_(std::make_unique<impl>(std::move(options), std::move(handler))) {}
worker::~worker() = default;
void worker::run() {
  impl_->run();
}
void worker::stop() noexcept {
  signal_fd(impl_->stop_fd);
}

}  // namespace scale0
