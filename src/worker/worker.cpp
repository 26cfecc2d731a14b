// One I/O thread (run()) owns the sockets; `concurrency` handler threads run the handler. Jobs go
// to the handlers through a locked queue; results come back through another, with an eventfd to
// wake the I/O thread's poll.
#include "scale0/worker.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "scale0/error.hpp"
#include "scale0/protocol.hpp"
#include "security/curve_socket.hpp"

namespace scale0 {
namespace {

using clock = std::chrono::steady_clock;
using protocol::frames;
using std::chrono::milliseconds;

std::string concat(const std::vector<zmq::message_t>& body) {
  std::string out;
  for (const auto& f : body) out.append(static_cast<const char*>(f.data()), f.size());
  return out;
}

// "tcp://*:5557" or "tcp://0.0.0.0:5557" means "the host you reached the broker at".
std::string resolve_endpoint(const std::string& advertised, const std::string& broker) {
  const auto host_of = [](const std::string& ep, std::size_t& begin, std::size_t& end) {
    begin = ep.find("://");
    end = ep.rfind(':');
    if (begin == std::string::npos || end == std::string::npos || end <= begin + 3) return false;
    begin += 3;
    return true;
  };
  std::size_t ab, ae, bb, be;
  if (!host_of(advertised, ab, ae)) return advertised;
  const std::string host = advertised.substr(ab, ae - ab);
  if (host != "*" && host != "0.0.0.0") return advertised;
  if (!host_of(broker, bb, be)) return advertised;
  return advertised.substr(0, ab) + broker.substr(bb, be - bb) + advertised.substr(ae);
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

struct worker::impl {
  enum class state { disconnected, registering, ready, stopping };
  struct queued_job {
    std::uint64_t epoch;
    std::uint64_t id;
    scale0::job work;
  };
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
      throw error(status::bad_request, "concurrency must be 1-1024");
    if (!handler) throw error(status::bad_request, "a worker needs a handler");
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
    try {  // fail here, not in run(), on an endpoint ZeroMQ cannot parse
      zmq::socket_t probe(context, zmq::socket_type::dealer);
      probe.set(zmq::sockopt::linger, 0);
      probe.connect(options.broker);
    } catch (const zmq::error_t& e) {
      throw error(status::bad_request,
                  "invalid broker endpoint " + options.broker + ": " + e.what());
    }
    stop_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    result_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    backoff = options.reconnect_min;
  }

  ~impl() {
    ::close(stop_fd);
    ::close(result_fd);
  }

  void event(const std::string& what) {
    if (options.on_event) options.on_event(what);
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

  // ---- connection ----
  void connect(clock::time_point now) {
    ++epoch;
    dealer = zmq::socket_t(context, zmq::socket_type::dealer);
    security::apply_curve_client(dealer, options.curve);
    dealer.set(zmq::sockopt::linger, 1000);
    // Replies never outnumber the credit, so a queue above it never refuses one.
    dealer.set(zmq::sockopt::sndhwm, static_cast<int>(options.concurrency) * 2 + 1000);
    dealer.connect(options.broker);
    sub = zmq::socket_t();
    out.clear();
    std::vector<std::string_view> names(options.services.begin(), options.services.end());
    protocol::append_worker_ready(
        out, options.concurrency, static_cast<std::uint32_t>(options.heartbeat_interval.count()),
        options.idempotent ? protocol::flag_idempotent : 0, names, options.protocol_version);
    send(out);
    st = state::registering;
    const auto guess = std::max(options.heartbeat_interval, milliseconds(1000));
    broker_alive_until = now + guess * 3;
  }

  void close_connection() {
    dealer = zmq::socket_t();
    sub = zmq::socket_t();
  }

  void lose_broker(clock::time_point now, const std::string& why) {
    event("lost broker (" + why + "); reconnecting in " + std::to_string(backoff.count()) + " ms");
    // If the broker was only stalled, it reads this before anything else from this connection
    // and stops sending to it, instead of finding out when a request it sent is lost.
    // 204 says it holds nothing: a request still on its way here never ran and may go elsewhere.
    out.clear();
    if (in_flight == 0)
      protocol::append_worker_disconnect(out, status::no_content, "holding nothing",
                                         options.protocol_version);
    else
      protocol::append_worker_disconnect(out, 0, {}, options.protocol_version);
    send(out);
    close_connection();
    st = state::disconnected;
    reconnect_at = now + backoff;
    backoff = std::min(backoff * 2, options.reconnect_max);
  }

  void send(frames& msg) {
    if (!dealer) return;
    for (std::size_t i = 0; i < msg.size(); ++i) {
      const int flags = ZMQ_DONTWAIT | (i + 1 < msg.size() ? ZMQ_SNDMORE : 0);
      if (zmq_msg_send(msg[i].handle(), dealer.handle(), flags) < 0 && i == 0) return;
    }
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

  void on_broker_message(clock::time_point now) {
    const auto d = protocol::decode_for_worker(in);
    using k = protocol::worker_inbound_kind;
    if (d.kind == k::invalid) return;
    broker_alive_until = now + broker_interval * liveness;
    silence_reported = false;
    switch (d.kind) {
      case k::welcome: {
        if (st == state::ready && d.broker_id == broker_id) {
          // S0/2: the broker changed the interval it grants (its fleet grew or shrank).
          interval = milliseconds(std::max<std::uint32_t>(d.heartbeat_ms, 10));
          next_heartbeat = std::min(next_heartbeat, now + interval);
          return;
        }
        if (st != state::registering) return;
        interval = milliseconds(std::max<std::uint32_t>(d.heartbeat_ms, 10));
        broker_interval = milliseconds(std::max<std::uint32_t>(d.broker_heartbeat_ms, 10));
        liveness = std::max<std::uint32_t>(d.liveness, 1);
        broker_id = d.broker_id;
        const std::string hb = resolve_endpoint(std::string(d.endpoint), options.broker);
        sub = zmq::socket_t(context, zmq::socket_type::sub);
        security::apply_curve_client(sub, options.curve);
        sub.set(zmq::sockopt::linger, 0);
        sub.set(zmq::sockopt::subscribe, protocol::heartbeat_header);
        try {
          sub.connect(hb);
        } catch (const zmq::error_t& e) {
          event("cannot connect to heartbeat endpoint " + hb + ": " + e.what());
        }
        st = state::ready;
        backoff = options.reconnect_min;
        broker_alive_until = now + broker_interval * liveness;
        next_heartbeat = now + interval;
        event("registered with " + options.broker + " (heartbeat " +
              std::to_string(interval.count()) + " ms)");
        return;
      }
      case k::request: {
        if (st != state::ready && st != state::stopping) return;
        queued_job j{epoch, d.job_id, {}};
        j.work.service.assign(d.service);
        j.work.time_left = milliseconds(d.timeout_ms);
        holding_until = std::max(holding_until, now + j.work.time_left);
        for (std::size_t i = d.first; i < in.size(); ++i) j.work.body.push_back(std::move(in[i]));
        ++in_flight;
        if (options.inline_handler) {
          job_result r = run_handler(j.work);
          send_result(j.epoch, j.id, std::move(r));
          return;
        }
        {
          std::lock_guard lock(mu);
          jobs.push_back(std::move(j));
        }
        cv.notify_one();
        return;
      }
      case k::disconnect: {
        std::string why = "broker sent DISCONNECT";
        if (d.status != 0) {
          why += ' ';
          why += std::to_string(d.status);
          why += ' ';
          why.append(d.message);
        }
        if (st == state::stopping) {
          close_connection();
          return;
        }
        // Known to us as ready: the broker restarted or expired us, so register again at once.
        // Refused while registering, the broker going away (503), or our key no longer allowed
        // (403: its handshakes would be refused until an operator lists it again): back off.
        if (st == state::ready && d.status != status::unavailable &&
            d.status != status::forbidden) {
          event(why + "; registering again");
          close_connection();
          connect(now);
        } else {
          lose_broker(now, why);
        }
        return;
      }
      case k::stopping:
        stopping_acked = true;
        return;
      default:
        return;
    }
  }

  void on_heartbeat(clock::time_point now) {
    protocol::heartbeat hb;
    if (!protocol::decode_heartbeat(in, hb)) return;
    if (st == state::ready && hb.broker_id != broker_id) {
      event("broker restarted; registering again");
      close_connection();
      connect(now);
      return;
    }
    broker_alive_until = now + broker_interval * liveness;
    silence_reported = false;
  }

  void send_results() {
    clear_fd(result_fd);
    std::deque<finished_job> batch;
    {
      std::lock_guard lock(mu);
      batch.swap(done);
    }
    for (auto& f : batch) send_result(f.epoch, f.id, std::move(f.result));
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

  void send_result(std::uint64_t job_epoch, std::uint64_t id, job_result&& result) {
    --in_flight;
    if (job_epoch != epoch || !dealer) return;  // the broker that sent it is gone
    out.clear();
    protocol::append_worker_reply(out, id, result.status, result.message, options.protocol_version);
    for (auto& b : result.body) out.push_back(std::move(b));
    send(out);
  }

  void begin_stop(clock::time_point now) {
    drain_deadline = now + options.drain_timeout;
    if (st == state::ready) {
      out.clear();
      protocol::append_worker_stopping(out, options.protocol_version);
      send(out);
      ack_deadline = now + broker_interval * liveness;
    } else {
      // Registering: the broker may already have us on its books.
      out.clear();
      protocol::append_worker_disconnect(out, 0, {}, options.protocol_version);
      send(out);
      close_connection();
    }
    st = state::stopping;
  }

  // True when the graceful stop is complete.
  bool stop_done(clock::time_point now) {
    const bool acked = stopping_acked || !dealer || now >= ack_deadline;
    if (acked && in_flight == 0) {
      out.clear();
      protocol::append_worker_disconnect(out, 0, {}, options.protocol_version);
      send(out);
      return true;
    }
    if (now >= drain_deadline) {
      // Tell the broker now, so it answers (or re-dispatches) what this worker still holds at
      // once instead of after heartbeat expiry.
      event("drain timeout: " + std::to_string(in_flight) + " requests still in flight");
      out.clear();
      protocol::append_worker_disconnect(out, 0, {}, options.protocol_version);
      send(out);
      return true;
    }
    return false;
  }

  static constexpr auto stall_gap = std::chrono::milliseconds(1000);

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
    connect(clock::now());
    bool stop_asked = false;
    auto last_turn = clock::now();
    for (;;) {
      auto now = clock::now();
      // The loop sleeps at most 100 ms: a much longer gap means this process was stopped or
      // starved (or an inline handler ran long). What the broker sent meanwhile is still on its
      // way from the kernel into the sockets: read it before judging the broker silent.
      if (now - last_turn > stall_gap)
        broker_alive_until = std::max(broker_alive_until, now + broker_interval);
      last_turn = now;
      if (stop_asked && st != state::stopping) begin_stop(now);
      if (st == state::stopping && stop_done(now)) break;
      if (st == state::disconnected && now >= reconnect_at) connect(now);
      if ((st == state::ready || st == state::stopping) && dealer && now >= next_heartbeat) {
        out.clear();
        protocol::append_worker_heartbeat(out, options.protocol_version);
        send(out);
        next_heartbeat = now + interval;
      }
      if ((st == state::registering || st == state::ready) && now >= broker_alive_until) {
        // A silent broker may only be stalled. While this connection holds requests, it stays
        // open until they are answered or their deadlines pass: closing it would lose replies a
        // returning broker is waiting for (and its clients would get 502).
        if (st == state::ready && in_flight > 0 && now < holding_until) {
          if (!silence_reported) {
            event("broker silent; holding " + std::to_string(in_flight) +
                  " requests on this connection until they are answered");
            silence_reported = true;
          }
        } else {
          lose_broker(now, "no heartbeat for " + std::to_string(liveness) + " intervals");
        }
      }

      auto wake = now + milliseconds(100);
      if (st == state::disconnected) wake = std::min(wake, reconnect_at);
      if (st == state::ready)
        wake = std::min(
            {wake, next_heartbeat, now < broker_alive_until ? broker_alive_until : holding_until});
      zmq_pollitem_t items[4] = {{nullptr, stop_fd, ZMQ_POLLIN, 0},
                                 {nullptr, result_fd, ZMQ_POLLIN, 0},
                                 {dealer ? dealer.handle() : nullptr, 0, 0, 0},
                                 {sub ? sub.handle() : nullptr, 0, 0, 0}};
      int n = 2;
      if (dealer) items[n++] = {dealer.handle(), 0, ZMQ_POLLIN, 0};
      if (sub) items[n++] = {sub.handle(), 0, ZMQ_POLLIN, 0};
      const auto wait = std::chrono::ceil<milliseconds>(wake - now).count();
      if (zmq_poll(items, n, static_cast<long>(std::max<std::int64_t>(wait, 0))) < 0 &&
          zmq_errno() != EINTR)
        throw error(status::unavailable, std::string("zmq_poll: ") + zmq_strerror(zmq_errno()));
      now = clock::now();
      if (items[0].revents & ZMQ_POLLIN) {
        clear_fd(stop_fd);
        stop_asked = true;
      }
      send_results();
      // Drain each socket completely; the message handlers may replace the sockets.
      while (dealer && receive(dealer)) on_broker_message(now);
      while (sub && receive(sub)) on_heartbeat(now);
    }
    close_connection();
  }

  worker_options options;
  job_handler handler;
  zmq::context_t context{1};
  zmq::socket_t dealer;
  zmq::socket_t sub;
  int stop_fd = -1;
  int result_fd = -1;

  std::mutex mu;
  std::condition_variable cv;
  std::deque<queued_job> jobs;
  std::deque<finished_job> done;
  bool pool_exit = false;

  state st = state::disconnected;
  std::uint64_t epoch = 0;
  std::uint64_t broker_id = 0;
  milliseconds interval{1000};         // ours: how often we send HEARTBEAT
  milliseconds broker_interval{1000};  // the broker's: how often it publishes
  std::uint32_t liveness = 3;
  milliseconds backoff{1000};
  clock::time_point broker_alive_until{};
  clock::time_point next_heartbeat{};
  clock::time_point reconnect_at{};
  clock::time_point ack_deadline{};
  clock::time_point drain_deadline{};
  bool stopping_acked = false;
  bool silence_reported = false;
  std::uint32_t in_flight = 0;
  clock::time_point holding_until{};  // the latest deadline of the requests received
  frames in;
  frames out;
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
