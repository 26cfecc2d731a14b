// SPDX-License-Identifier: Apache-2.0
// Simulates K idle workers in one process, to measure what heartbeats cost the broker
// (bench/heartbeat/run drives it; docs/protocol.md describes the frames).
//
//   scale0_sim_workers --broker tcp://127.0.0.1:5556 --workers 2500
//       K native workers (S0/2 framing; --protocol-version 1 for S0/1): each DEALER sends READY
//       (concurrency 1, heartbeat-ms 0, flags 0, one service), reads WELCOME (and, in S0/2, any
//       later WELCOME that re-grants the interval) and then sends HEARTBEAT every agreed interval,
//       staggered so the
//       broker sees a steady trickle rather than K at once. Broker heartbeats (S0H1) arrive on ONE
//       SUB socket shared by the whole process: a real worker has a SUB of its own, but the broker
//       publishes once per interval whoever listens, so sharing it measures the broker's side of
//       the native protocol with a quarter of the file descriptors. --sub-per-worker gives every
//       simulated worker its own SUB, as real workers have (the broker's PUB then fans out to K
//       connections, which costs it memory and I/O-thread time).
//   scale0_sim_workers --broker ... --workers 2500 --mdp
//       K Majordomo MDPW01 workers instead: READY, then HEARTBEAT every --heartbeat-ms; the broker
//       sends each one HEARTBEAT of its own per interval. As in the zguide's mdwrkapi, a worker's
//       own periodic HEARTBEAT is its answer (any message from it counts as a sign of life); it
//       does not send a second one for each it receives.
//
// Every worker is idle: a REQUEST (none is expected) is answered at once with its body.
//
// Reports on stdout, one line per --report-ms and a final one at exit (JSON lines with --json):
// workers registered (native: WELCOME received; MDP: a broker HEARTBEAT received since READY),
// DISCONNECTs received (a false expiry shows up as one; the worker then registers again on a new
// socket), the largest gap between two broker heartbeats seen on one socket, gaps in the S0H1
// sequence, and the process's own lateness sending heartbeats (a stall of the simulator rather
// than of the broker; the simulator's ZeroMQ I/O thread is not covered).
// SIGUSR1 starts a measurement window: the window_* figures count from then. SIGTERM/SIGINT (or
// --duration) stop: every registered worker sends DISCONNECT, the final line is printed.
//
// One thread. Each socket's ZMQ_FD is in an epoll set; a socket is drained until EAGAIN after each
// wake-up and after each send (ZMQ_FD signals commands, not messages), and all are swept once a
// second as a safety net. Signals come through a signalfd in the same set.
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <optional>
#include <queue>
#include <string>
#include <string_view>
#include <utility>
#include <vector>
#include <zmq.hpp>
#include <zmq_addon.hpp>

namespace {

using clock_type = std::chrono::steady_clock;
using time_point = clock_type::time_point;
using std::chrono::milliseconds;

constexpr std::string_view s0_worker = "S0W1";
constexpr std::string_view s0_worker_v2 = "S0W2";  // S0/2: command and fields packed in one frame
constexpr std::string_view s0_heartbeat = "S0H1";
constexpr std::string_view mdp_worker = "MDPW01";
constexpr std::uint8_t cmd_ready = 0x01;
constexpr std::uint8_t cmd_request = 0x02;
constexpr std::uint8_t cmd_reply = 0x03;
constexpr std::uint8_t cmd_heartbeat = 0x04;
constexpr std::uint8_t cmd_disconnect = 0x05;
constexpr std::uint8_t cmd_welcome = 0x06;
constexpr std::uint32_t npos = 0xffffffffu;
constexpr std::uint64_t signal_key = ~std::uint64_t{0};  // epoll key of the signalfd

struct settings {
  std::string broker;
  std::uint32_t workers = 100;
  bool mdp = false;
  int version = 2;  // native framing: 1 (S0/1) or 2 (S0/2)
  bool sub_per_worker = false;
  std::string service = "hb.idle";
  std::uint32_t heartbeat_ms = 0;  // native: asked for in READY (0 = the broker's); MDP: sent at
  int io_threads = 1;
  double connect_rate = 2000;  // sockets opened per second
  double duration_s = 0;       // 0: until SIGTERM/SIGINT
  long report_ms = 1000;
  bool json = false;
};

std::string be_bytes(std::uint64_t v, int width) {
  std::string out(static_cast<std::size_t>(width), '\0');
  for (int i = width - 1; i >= 0; --i) {
    out[static_cast<std::size_t>(i)] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
  return out;
}

std::uint64_t be_value(const zmq::message_t& m) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < m.size(); ++i)
    v = (v << 8) | static_cast<const std::uint8_t*>(m.data())[i];
  return v;
}

double millis(clock_type::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

// "tcp://*:5557" or "tcp://0.0.0.0:5557" means "the host you reached the broker at".
std::string resolve_endpoint(const std::string& advertised, const std::string& broker) {
  const auto sep = advertised.find("://");
  const auto colon = advertised.rfind(':');
  if (sep == std::string::npos || colon == std::string::npos || colon <= sep + 3) return advertised;
  const std::string host = advertised.substr(sep + 3, colon - sep - 3);
  if (host != "*" && host != "0.0.0.0") return advertised;
  const auto bsep = broker.find("://");
  const auto bcolon = broker.rfind(':');
  if (bsep == std::string::npos || bcolon == std::string::npos || bcolon <= bsep + 3)
    return advertised;
  return advertised.substr(0, sep + 3) + broker.substr(bsep + 3, bcolon - bsep - 3) +
         advertised.substr(colon);
}

struct counters {
  std::uint64_t registrations = 0;      // WELCOMEs (native) / first broker HEARTBEATs (MDP)
  std::uint64_t disconnects = 0;        // DISCONNECTs from the broker
  std::uint64_t expiries = 0;           // ... that told a registered worker it was forgotten
  std::uint64_t reconnects = 0;         // fresh sockets opened to register again
  std::uint64_t heartbeats_sent = 0;    // by the simulated workers
  std::uint64_t send_failures = 0;      // heartbeats that could not be queued
  std::uint64_t broker_heartbeats = 0;  // received: S0H1 publications or MDP HEARTBEATs
  std::uint64_t sequence_gaps = 0;      // S0H1 publications missed, from the sequence numbers
  std::uint64_t requests = 0;           // REQUESTs (none expected)
  double max_gap_ms = 0;                // longest silence between two broker heartbeats
  double max_late_ms = 0;  // this process's own lateness sending a heartbeat (a stall here)
};

struct worker {
  zmq::socket_t socket;
  bool registered = false;
  bool scheduled = false;
  bool suspended = false;  // registering again after a DISCONNECT, not yet confirmed
  time_point ready_sent{};
  clock_type::duration interval{};
  time_point last_broker_heartbeat{};  // MDP
  std::uint32_t sub = npos;
};

struct subscriber {
  zmq::socket_t socket;
  bool seen = false;
  time_point last{};
  std::uint64_t broker_id = 0;
  std::uint64_t sequence = 0;
};

class simulator {
 public:
  simulator(settings s, int signal_fd) : s_(std::move(s)), signal_fd_(signal_fd) {
    // Each socket is a mailbox (an eventfd) and a connection; the default cap is 1023 sockets.
    ctx_.set(zmq::ctxopt::io_threads, s_.io_threads);
    ctx_.set(zmq::ctxopt::max_sockets, static_cast<int>(2 * s_.workers + 64));
    workers_.reserve(s_.workers);
    subs_.reserve(s_.sub_per_worker ? s_.workers : 1);
    epoll_ = ::epoll_create1(EPOLL_CLOEXEC);
    if (epoll_ < 0) throw std::runtime_error(std::string("epoll_create1: ") + std::strerror(errno));
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = signal_key;
    if (::epoll_ctl(epoll_, EPOLL_CTL_ADD, signal_fd_, &ev) < 0)
      throw std::runtime_error(std::string("epoll_ctl: ") + std::strerror(errno));
  }
  ~simulator() {
    if (epoll_ >= 0) ::close(epoll_);
  }
  simulator(const simulator&) = delete;
  simulator& operator=(const simulator&) = delete;

  int run();

 private:
  void open_worker(time_point now);
  void send_ready(std::uint32_t w);
  void reconnect(std::uint32_t w);
  void send_heartbeat(std::uint32_t w, time_point now);
  void drain_worker(std::uint32_t w, time_point now);
  void drain_sub(std::uint32_t s, time_point now);
  void on_worker_message(std::uint32_t w, time_point now);
  void on_welcome(std::uint32_t w, time_point now);
  bool send_command(worker& W, std::uint8_t command);
  bool unpack_v2();
  std::uint32_t subscribe(const std::string& endpoint);
  void watch(const zmq::socket_t& socket, std::uint64_t key);
  void schedule_first(std::uint32_t w, time_point now);
  void record_gap(time_point last, time_point now);
  void report(const char* type, time_point now);
  void goodbye();
  void read_signals();

  settings s_;
  int signal_fd_;
  bool stop_requested_ = false;
  bool window_requested_ = false;
  zmq::context_t ctx_;
  int epoll_ = -1;
  std::vector<worker> workers_;
  std::vector<subscriber> subs_;
  std::vector<zmq::message_t> msg_;
  using due_entry = std::pair<time_point, std::uint32_t>;
  std::priority_queue<due_entry, std::vector<due_entry>, std::greater<>> due_;
  std::size_t registered_ = 0;
  counters total_;
  counters window_;
  time_point window_start_{};
  bool window_open_ = false;
  time_point started_{};
};

void simulator::watch(const zmq::socket_t& socket, std::uint64_t key) {
  const int fd = socket.get(zmq::sockopt::fd);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = key;
  if (::epoll_ctl(epoll_, EPOLL_CTL_ADD, fd, &ev) < 0)
    throw std::runtime_error(std::string("epoll_ctl: ") + std::strerror(errno));
}

void simulator::open_worker(time_point now) {
  const auto w = static_cast<std::uint32_t>(workers_.size());
  workers_.push_back(worker{zmq::socket_t(ctx_, zmq::socket_type::dealer)});
  worker& W = workers_.back();
  W.socket.set(zmq::sockopt::linger, 1000);  // lets the goodbye DISCONNECTs leave
  W.socket.connect(s_.broker);
  watch(W.socket, w);
  send_ready(w);
  if (s_.mdp) {
    // An MDP worker cannot learn the broker's interval: it heartbeats at its own.
    W.interval = milliseconds(s_.heartbeat_ms == 0 ? 1000 : s_.heartbeat_ms);
    schedule_first(w, now);
  }
}

void simulator::reconnect(std::uint32_t w) {
  worker& W = workers_[w];
  const int fd = W.socket.get(zmq::sockopt::fd);
  ::epoll_ctl(epoll_, EPOLL_CTL_DEL, fd, nullptr);
  W.socket.set(zmq::sockopt::linger, 0);
  W.socket.close();
  W.socket = zmq::socket_t(ctx_, zmq::socket_type::dealer);
  W.socket.set(zmq::sockopt::linger, 1000);
  W.socket.connect(s_.broker);
  watch(W.socket, w);
  W.suspended = true;
  ++total_.reconnects;
  ++window_.reconnects;
  send_ready(w);
}

void simulator::send_ready(std::uint32_t w) {
  zmq::socket_t& sock = workers_[w].socket;
  std::vector<zmq::message_t> m;
  m.emplace_back();
  if (s_.mdp) {
    m.emplace_back(mdp_worker);
    m.emplace_back(std::string(1, static_cast<char>(cmd_ready)));
    m.emplace_back(std::string_view(s_.service));
  } else if (s_.version == 2) {
    // "S0W2" 0x01 · concurrency u32 · heartbeat-ms u32 · flags u8 · service (u8 length + bytes)
    m.emplace_back(std::string(s0_worker_v2) + static_cast<char>(cmd_ready) + be_bytes(1, 4) +
                   be_bytes(s_.heartbeat_ms, 4) + '\0' + static_cast<char>(s_.service.size()) +
                   s_.service);
  } else {
    m.emplace_back(s0_worker);
    m.emplace_back(std::string(1, static_cast<char>(cmd_ready)));
    m.emplace_back(be_bytes(1, 4));                // concurrency
    m.emplace_back(be_bytes(s_.heartbeat_ms, 4));  // 0: the broker's interval
    m.emplace_back(std::string(1, '\0'));          // flags
    m.emplace_back(std::string_view(s_.service));
  }
  if (!zmq::send_multipart(sock, m, zmq::send_flags::dontwait)) ++total_.send_failures;
  workers_[w].ready_sent = clock_type::now();
}

// Staggered: the first heartbeat of worker w comes at a fraction of the interval spread evenly
// (golden ratio) over the workers, so the broker never gets K at once.
void simulator::schedule_first(std::uint32_t w, time_point now) {
  worker& W = workers_[w];
  if (W.scheduled) return;
  W.scheduled = true;
  const double frac = std::fmod(static_cast<double>(w) * 0.6180339887498949, 1.0);
  const auto offset = std::chrono::duration_cast<clock_type::duration>(W.interval * frac);
  due_.push({now + offset, w});
}

// "" · header · command (S0/1, MDP) or "" · "S0W2" command (S0/2).
bool simulator::send_command(worker& W, std::uint8_t command) {
  const char cmd = static_cast<char>(command);
  if (!W.socket.send(zmq::const_buffer(nullptr, 0),
                     zmq::send_flags::sndmore | zmq::send_flags::dontwait))
    return false;
  if (!s_.mdp && s_.version == 2) {
    const std::string packed = std::string(s0_worker_v2) + cmd;
    return W.socket.send(zmq::buffer(packed), zmq::send_flags::none).has_value();
  }
  const std::string_view header = s_.mdp ? mdp_worker : s0_worker;
  return W.socket.send(zmq::buffer(header), zmq::send_flags::sndmore).has_value() &&
         W.socket.send(zmq::const_buffer(&cmd, 1), zmq::send_flags::none).has_value();
}

// Rewrites an S0/2 message in msg_ into the S0/1 layout the handlers read ("" · S0W1 · command ·
// one frame per field · body…). False when it is not a well-formed S0/2 message we take.
bool simulator::unpack_v2() {
  if (msg_.size() < 2 || msg_[0].size() != 0) return false;
  const std::string p = msg_[1].to_string();
  if (p.size() < 5 || std::string_view(p).substr(0, 4) != s0_worker_v2) return false;
  const auto cmd = static_cast<std::uint8_t>(p[4]);
  std::vector<zmq::message_t> out;
  out.emplace_back();
  out.emplace_back(s0_worker);
  out.emplace_back(std::string(1, static_cast<char>(cmd)));
  switch (cmd) {
    case cmd_welcome: {  // heartbeat-ms · liveness · broker-heartbeat-ms · broker-id · endpoint
      if (p.size() < 5 + 22) return false;
      const std::size_t len =
          (static_cast<unsigned char>(p[25]) << 8) | static_cast<unsigned char>(p[26]);
      if (p.size() != 27 + len) return false;
      out.emplace_back(p.substr(5, 4));
      out.emplace_back(p.substr(9, 4));
      out.emplace_back(p.substr(27, len));
      out.emplace_back(p.substr(17, 8));
      break;
    }
    case cmd_request: {  // job-id · timeout-ms · service, then body
      if (p.size() < 5 + 13) return false;
      const std::size_t len = static_cast<unsigned char>(p[17]);
      if (p.size() != 18 + len) return false;
      out.emplace_back(p.substr(5, 8));
      out.emplace_back(p.substr(18, len));
      out.emplace_back(p.substr(13, 4));
      for (std::size_t i = 2; i < msg_.size(); ++i) out.push_back(std::move(msg_[i]));
      break;
    }
    default:  // DISCONNECT (status and message are not needed), STOPPING
      break;
  }
  msg_ = std::move(out);
  return true;
}

void simulator::send_heartbeat(std::uint32_t w, time_point now) {
  worker& W = workers_[w];
  const bool ok = send_command(W, cmd_heartbeat);
  if (ok) {
    ++total_.heartbeats_sent;
    ++window_.heartbeats_sent;
  } else {
    ++total_.send_failures;
    ++window_.send_failures;
  }
  drain_worker(w, now);  // the send may have consumed the ZMQ_FD signal of a pending message
}

void simulator::record_gap(time_point last, time_point now) {
  const double gap = millis(now - last);
  total_.max_gap_ms = std::max(total_.max_gap_ms, gap);
  window_.max_gap_ms = std::max(window_.max_gap_ms, gap);
}

std::uint32_t simulator::subscribe(const std::string& endpoint) {
  const auto s = static_cast<std::uint32_t>(subs_.size());
  subs_.push_back(subscriber{zmq::socket_t(ctx_, zmq::socket_type::sub)});
  subscriber& S = subs_.back();
  S.socket.set(zmq::sockopt::linger, 0);
  S.socket.set(zmq::sockopt::subscribe, s0_heartbeat);
  S.socket.connect(endpoint);
  watch(S.socket, std::uint64_t{s_.workers} + s);
  return s;
}

void simulator::on_welcome(std::uint32_t w, time_point now) {
  worker& W = workers_[w];
  // "" · S0W1 · 0x06 · heartbeat-ms u32 · liveness u32 · heartbeat-endpoint · broker-id u64
  if (msg_.size() < 7 || msg_[3].size() != 4 || msg_[4].size() != 4 || msg_[6].size() != 8) return;
  if (!W.registered) {
    W.registered = true;
    W.suspended = false;
    ++registered_;
    ++total_.registrations;
    ++window_.registrations;
  }
  W.interval = milliseconds(be_value(msg_[3]));
  if (W.sub == npos) {
    const std::string endpoint = resolve_endpoint(msg_[5].to_string(), s_.broker);
    if (s_.sub_per_worker) {
      W.sub = subscribe(endpoint);
    } else {
      if (subs_.empty()) subscribe(endpoint);
      W.sub = 0;
    }
  }
  schedule_first(w, now);
}

void simulator::on_worker_message(std::uint32_t w, time_point now) {
  worker& W = workers_[w];
  const bool v2 = !s_.mdp && s_.version == 2;
  if (v2 && !unpack_v2()) return;
  if (msg_.size() < 3 || msg_[2].size() != 1) return;
  const std::string_view header = msg_[1].to_string_view();
  const auto cmd = *static_cast<const std::uint8_t*>(msg_[2].data());
  if (header != (s_.mdp ? mdp_worker : s0_worker)) return;
  switch (cmd) {
    case cmd_welcome:
      if (!s_.mdp) on_welcome(w, now);
      return;
    case cmd_heartbeat:
      if (!s_.mdp) return;
      ++total_.broker_heartbeats;
      ++window_.broker_heartbeats;
      if (!W.registered) {
        W.registered = true;
        W.suspended = false;
        ++registered_;
        ++total_.registrations;
        ++window_.registrations;
      } else {
        record_gap(W.last_broker_heartbeat, now);
      }
      W.last_broker_heartbeat = now;
      return;
    case cmd_disconnect:
      // The broker forgot this worker (a false expiry, for an idle worker): register again on a
      // fresh socket, as the native library and the zguide's mdwrkapi do. Not on this one: the
      // heartbeats already on their way get a DISCONNECT each, and the broker takes a second
      // READY for a protocol error. Heartbeats stop until the registration is confirmed; the
      // worker reconnects again if that takes more than three intervals.
      ++total_.disconnects;
      ++window_.disconnects;
      if (W.registered) {
        W.registered = false;
        --registered_;
        ++total_.expiries;
        ++window_.expiries;
        reconnect(w);
      }
      return;
    case cmd_request: {
      ++total_.requests;
      ++window_.requests;
      // Native: "" · S0W1 · 0x02 · job-id · service · timeout-ms · body…  →  REPLY job-id 200 ""
      // body… MDP:    "" · MDPW01 · 0x02 · client-address · "" · body…        →  REPLY address ""
      // body…
      std::vector<zmq::message_t> reply;
      reply.emplace_back();
      if (v2) {  // "S0W2" 0x03 · job-id · status 200 · empty message, then body
        if (msg_.size() < 6) return;
        reply.emplace_back(std::string(s0_worker_v2) + static_cast<char>(cmd_reply) +
                           msg_[3].to_string() + be_bytes(200, 2) + be_bytes(0, 2));
        for (std::size_t i = 6; i < msg_.size(); ++i) reply.push_back(std::move(msg_[i]));
        (void)zmq::send_multipart(W.socket, reply, zmq::send_flags::dontwait);
        return;
      }
      reply.emplace_back(header);
      reply.emplace_back(std::string(1, static_cast<char>(cmd_reply)));
      std::size_t body = 0;
      if (s_.mdp) {
        if (msg_.size() < 5) return;
        reply.push_back(std::move(msg_[3]));
        reply.emplace_back();
        body = 5;
      } else {
        if (msg_.size() < 6) return;
        reply.push_back(std::move(msg_[3]));
        reply.emplace_back(be_bytes(200, 2));
        reply.emplace_back();
        body = 6;
      }
      for (std::size_t i = body; i < msg_.size(); ++i) reply.push_back(std::move(msg_[i]));
      if (s_.mdp && reply.size() == 5) reply.emplace_back();
      (void)zmq::send_multipart(W.socket, reply, zmq::send_flags::dontwait);
      return;
    }
    default:
      return;
  }
}

void simulator::drain_worker(std::uint32_t w, time_point now) {
  for (;;) {
    msg_.clear();
    if (!zmq::recv_multipart(workers_[w].socket, std::back_inserter(msg_),
                             zmq::recv_flags::dontwait))
      return;
    on_worker_message(w, now);
  }
}

void simulator::drain_sub(std::uint32_t s, time_point now) {
  subscriber& S = subs_[s];
  for (;;) {
    msg_.clear();
    if (!zmq::recv_multipart(S.socket, std::back_inserter(msg_), zmq::recv_flags::dontwait)) return;
    // S0H1 · broker-id u64 · sequence u64
    if (msg_.size() != 3 || msg_[0].to_string_view() != s0_heartbeat || msg_[1].size() != 8 ||
        msg_[2].size() != 8)
      continue;
    ++total_.broker_heartbeats;
    ++window_.broker_heartbeats;
    const std::uint64_t id = be_value(msg_[1]);
    const std::uint64_t seq = be_value(msg_[2]);
    if (S.seen && id == S.broker_id) {
      record_gap(S.last, now);
      if (seq > S.sequence + 1) {
        total_.sequence_gaps += seq - S.sequence - 1;
        window_.sequence_gaps += seq - S.sequence - 1;
      }
    }
    S.seen = true;
    S.last = now;
    S.broker_id = id;
    S.sequence = seq;
  }
}

void simulator::report(const char* type, time_point now) {
  const double window_s =
      window_open_ ? std::chrono::duration<double>(now - window_start_).count() : 0.0;
  const auto n = [](std::uint64_t v) { return static_cast<unsigned long long>(v); };
  if (s_.json) {
    long long interval_ms = 0;  // the longest interval a registered worker heartbeats at now
    for (const worker& W : workers_)
      if (W.registered)
        interval_ms = std::max<long long>(
            interval_ms, std::chrono::duration_cast<milliseconds>(W.interval).count());
    std::printf("{\"interval_ms\":%lld,", interval_ms);
    std::printf(
        "\"type\":\"%s\",\"protocol\":\"%s\",\"workers\":%u,\"opened\":%zu,\"registered\":%zu,"
        "\"subscribers\":%zu,\"window_seconds\":%.2f",
        type,
        s_.mdp            ? "MDPW01"
        : s_.version == 2 ? "S0W2"
                          : "S0W1",
        s_.workers, workers_.size(), registered_, subs_.size(), window_s);
    for (const auto& [prefix, c] : {std::pair<const char*, const counters&>{"", total_},
                                    std::pair<const char*, const counters&>{"window_", window_}}) {
      std::printf(
          ",\"%sdisconnects\":%llu,\"%sexpiries\":%llu,\"%sreconnects\":%llu,"
          "\"%sregistrations\":%llu,"
          "\"%sheartbeats_sent\":%llu,\"%ssend_failures\":%llu,\"%sbroker_heartbeats\":%llu,"
          "\"%ssequence_gaps\":%llu,\"%srequests\":%llu,\"%smax_gap_ms\":%.1f,"
          "\"%smax_late_ms\":%.1f",
          prefix, n(c.disconnects), prefix, n(c.expiries), prefix, n(c.reconnects), prefix,
          n(c.registrations), prefix, n(c.heartbeats_sent), prefix, n(c.send_failures), prefix,
          n(c.broker_heartbeats), prefix, n(c.sequence_gaps), prefix, n(c.requests), prefix,
          c.max_gap_ms, prefix, c.max_late_ms);
    }
    std::printf("}\n");
  } else {
    std::printf(
        "%s: %s registered %zu/%u  disconnects %llu (expiries %llu)  max broker-heartbeat gap "
        "%.1f ms  own lateness %.1f ms  heartbeats sent %llu  broker heartbeats %llu  sequence "
        "gaps %llu",
        type,
        s_.mdp            ? "MDPW01"
        : s_.version == 2 ? "S0W2"
                          : "S0W1",
        registered_, s_.workers, n(total_.disconnects), n(total_.expiries), total_.max_gap_ms,
        total_.max_late_ms, n(total_.heartbeats_sent), n(total_.broker_heartbeats),
        n(total_.sequence_gaps));
    if (window_open_)
      std::printf("  | window %.1f s: disconnects %llu  max gap %.1f ms  own lateness %.1f ms",
                  window_s, n(window_.disconnects), window_.max_gap_ms, window_.max_late_ms);
    std::printf("\n");
  }
  std::fflush(stdout);
}

// Signals arrive through a signalfd: as handlers they would make any ZeroMQ call fail with EINTR.
void simulator::read_signals() {
  signalfd_siginfo info{};
  while (::read(signal_fd_, &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
    if (info.ssi_signo == SIGUSR1) {
      window_requested_ = true;
    } else {
      stop_requested_ = true;
    }
  }
}

void simulator::goodbye() {
  for (worker& W : workers_)
    if (W.registered) (void)send_command(W, cmd_disconnect);
}

int simulator::run() {
  started_ = clock_type::now();
  auto next_report = started_ + milliseconds(s_.report_ms);
  auto next_sweep = started_ + std::chrono::seconds(1);
  const auto stop_at = s_.duration_s > 0
                           ? started_ + std::chrono::duration_cast<clock_type::duration>(
                                            std::chrono::duration<double>(s_.duration_s))
                           : time_point::max();
  std::vector<epoll_event> events(1024);
  while (!stop_requested_) {
    auto now = clock_type::now();
    if (now >= stop_at) break;
    if (window_requested_) {
      window_requested_ = false;
      window_ = counters{};
      window_start_ = now;
      window_open_ = true;
    }
    // Open sockets at the connect rate: a burst of thousands overflows the broker's listen backlog.
    const double elapsed = std::chrono::duration<double>(now - started_).count();
    const auto allowed = static_cast<std::size_t>(
        std::min<double>(s_.workers, std::floor(1 + elapsed * s_.connect_rate)));
    while (workers_.size() < allowed) open_worker(now);

    while (!due_.empty() && due_.top().first <= now) {
      const auto [at, w] = due_.top();
      due_.pop();
      worker& W = workers_[w];
      const double late = millis(now - at);
      total_.max_late_ms = std::max(total_.max_late_ms, late);
      window_.max_late_ms = std::max(window_.max_late_ms, late);
      if (s_.mdp ? !W.suspended : W.registered) send_heartbeat(w, now);
      if (W.suspended && now - W.ready_sent > 3 * W.interval) reconnect(w);
      auto next = at + W.interval;
      if (next <= now) next = now + W.interval;  // never a burst to catch up
      due_.push({next, w});
    }
    if (now >= next_sweep) {
      for (std::uint32_t w = 0; w < workers_.size(); ++w) drain_worker(w, now);
      for (std::uint32_t s = 0; s < subs_.size(); ++s) drain_sub(s, now);
      next_sweep = now + std::chrono::seconds(1);
    }
    if (now >= next_report) {
      report("progress", now);
      next_report = now + milliseconds(s_.report_ms);
    }

    auto wake = std::min({next_report, next_sweep, stop_at});
    if (!due_.empty()) wake = std::min(wake, due_.top().first);
    if (workers_.size() < s_.workers) wake = std::min(wake, now + milliseconds(1));
    const auto wait =
        std::clamp<long long>(std::chrono::ceil<milliseconds>(wake - now).count(), 0, 100);
    const int n = ::epoll_wait(epoll_, events.data(), static_cast<int>(events.size()),
                               static_cast<int>(wait));
    if (n < 0 && errno != EINTR)
      throw std::runtime_error(std::string("epoll_wait: ") + std::strerror(errno));
    now = clock_type::now();
    for (int i = 0; i < n; ++i) {
      const std::uint64_t key = events[static_cast<std::size_t>(i)].data.u64;
      if (key == signal_key) {
        read_signals();
      } else if (key < s_.workers) {
        drain_worker(static_cast<std::uint32_t>(key), now);
      } else {
        drain_sub(static_cast<std::uint32_t>(key - s_.workers), now);
      }
    }
  }
  report("final", clock_type::now());
  goodbye();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Simulate idle Scale0 workers to measure the broker's heartbeat cost"};
  settings s;
  app.add_option("--broker", s.broker, "Broker endpoint the workers connect to (backend)")
      ->required();
  app.add_option("--workers", s.workers, "Simulated workers in this process")
      ->capture_default_str()
      ->check(CLI::Range(1u, 1000000u));
  app.add_flag("--mdp", s.mdp, "Majordomo MDPW01 workers instead of native S0");
  app.add_option("--protocol-version", s.version,
                 "Native framing: 2 (S0/2, takes re-granted intervals) or 1 (S0/1)")
      ->capture_default_str()
      ->check(CLI::Range(1, 2));
  app.add_flag("--sub-per-worker", s.sub_per_worker,
               "Native: one SUB per worker, as real workers have (default: one per process)");
  app.add_option("--service", s.service, "Service the workers register for")->capture_default_str();
  app.add_option("--heartbeat-ms", s.heartbeat_ms,
                 "Native: interval asked for in READY (0: the broker's). MDP: interval the workers "
                 "send at (0: 1000)")
      ->capture_default_str();
  app.add_option("--io-threads", s.io_threads, "ZeroMQ I/O threads")
      ->capture_default_str()
      ->check(CLI::Range(1, 16));
  app.add_option("--connect-rate", s.connect_rate, "Sockets opened per second")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--duration", s.duration_s, "Stop after this many seconds (0: at SIGTERM)")
      ->capture_default_str();
  app.add_option("--report-ms", s.report_ms, "Progress line interval (ms)")
      ->capture_default_str()
      ->check(CLI::Range(10L, 3600000L));
  app.add_flag("--json", s.json, "JSON lines instead of text");
  CLI11_PARSE(app, argc, argv);
  if (s.mdp && s.sub_per_worker) {
    std::fprintf(stderr, "scale0_sim_workers: --sub-per-worker is for native workers\n");
    return 2;
  }

  // Blocked before any thread exists (ZeroMQ's inherit the mask), read from a signalfd.
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &mask, nullptr);
  const int signal_fd = ::signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
  if (signal_fd < 0) {
    std::fprintf(stderr, "scale0_sim_workers: signalfd: %s\n", std::strerror(errno));
    return 1;
  }
  try {
    simulator sim(s, signal_fd);
    return sim.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "scale0_sim_workers: %s\n", e.what());
    return 1;
  }
}
