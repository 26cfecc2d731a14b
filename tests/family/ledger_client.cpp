// SPDX-License-Identifier: Apache-2.0
// scale0_ledger_client: a load generator that keeps a ledger of every request's one outcome.
//
// Built only on the public client API (scale0::client, client_options, pipelined send/receive),
// for tests/blackbox/test_family_failover.py: the test runs it against a family of brokers, does
// something to the brokers (kill -9, a rolling restart), and judges the ledger afterwards. This
// program judges nothing: it exits 0 whenever it could run, whatever the outcomes were.
//
//   scale0_ledger_client --broker EP[,EP...] --service S [--window N] [--rate R]
//                        [--duration SECONDS | --count N] [--timeout-ms T] [--idempotent]
//                        [--heartbeat-ms MS] [--liveness N] [--retries N] [--drain-wait SECONDS]
//                        [--out FILE]
//
// Up to --window requests are outstanding at once, sent at most --rate per second. Each body is a
// unique token. Sending stops after --duration seconds or --count requests (whichever comes
// first), or at SIGTERM / SIGINT; then the client waits for every outstanding reply (the library
// promises exactly one per request) for at most --drain-wait seconds.
//
// The ledger (--out, JSON lines; "-" or none: stdout) holds, in this order of appearance:
//   {"kind":"start", "clock":T, ...}                      once, at start (flushed at once)
//   {"kind":"request", "n", "id", "token", "sent", "reply", "status", "message", "local",
//    "echo"}                                              one per request, when its reply comes
//   {"kind":"duplicate", ...} / {"kind":"unknown", ...}   a second reply for an id / a reply for
//                                                         an id never sent (both should never be)
//   {"kind":"request", ..., "missing":true}               one per request without a reply at the
//   end
//   {"kind":"clock", "clock":T, "wall":W}                 the clock used for all the times above
//   {"kind":"summary", "sent", "replied", "statuses", "local_statuses", "missing", "duplicates",
//    "unknown", "wrong_bodies", "send_errors", ...}
// Times are seconds of the monotonic clock (std::chrono::steady_clock: CLOCK_MONOTONIC on Linux,
// the clock of Python's time.monotonic()). "echo" is whether a 200's body is the token sent.
// A send() that throws (503: the send queue is full) is a request too: its line has "id":null,
// "send_error":true and the status and message of the exception. The summary is also printed on
// stdout when the ledger goes to a file.

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

#include "scale0/client.hpp"
#include "scale0/error.hpp"

namespace {

using steady = std::chrono::steady_clock;
using std::chrono::milliseconds;

std::atomic<bool> stop_requested{false};

extern "C" void on_signal(int) {
  stop_requested.store(true);
}

double seconds(steady::time_point t) {
  return std::chrono::duration<double>(t.time_since_epoch()).count();
}

// A JSON string: bytes outside printable ASCII are escaped one by one (\u00XX), so the line is
// valid JSON whatever the broker or the library put in a message.
std::string quote(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c >= 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6f", v);
  return buf;
}

struct options {
  std::string broker;
  std::string service;
  int window = 10;
  double rate = 100;
  std::optional<double> duration;
  std::optional<std::uint64_t> count;
  int timeout_ms = 5000;
  bool idempotent = false;
  int heartbeat_ms = 1000;
  int liveness = 3;
  int retries = 0;
  std::optional<double> drain_wait;
  std::string out = "-";
};

[[noreturn]] void usage(const std::string& why) {
  std::cerr
      << "scale0_ledger_client: " << why << "\n"
      << "usage: scale0_ledger_client --broker EP[,EP...] --service S [--window N] [--rate R]\n"
         "       [--duration SECONDS | --count N] [--timeout-ms T] [--idempotent]\n"
         "       [--heartbeat-ms MS] [--liveness N] [--retries N] [--drain-wait SECONDS]\n"
         "       [--out FILE]\n";
  std::exit(2);
}

options parse(int argc, char** argv) {
  options o;
  auto value = [&](int& i) -> std::string {
    if (i + 1 >= argc) usage(std::string(argv[i]) + " needs a value");
    return argv[++i];
  };
  auto to_double = [&](const std::string& flag, const std::string& v) {
    char* end = nullptr;
    const double d = std::strtod(v.c_str(), &end);
    if (v.empty() || *end != '\0' || !(d >= 0)) usage(flag + ": not a number >= 0: " + v);
    return d;
  };
  auto to_int = [&](const std::string& flag, const std::string& v, long lo, long hi) {
    char* end = nullptr;
    const long n = std::strtol(v.c_str(), &end, 10);
    if (v.empty() || *end != '\0' || n < lo || n > hi)
      usage(flag + ": not an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) +
            "]: " + v);
    return n;
  };
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--broker") {
      o.broker = value(i);
    } else if (a == "--service") {
      o.service = value(i);
    } else if (a == "--window") {
      o.window = static_cast<int>(to_int(a, value(i), 1, 100000));
    } else if (a == "--rate") {
      o.rate = to_double(a, value(i));
      if (o.rate <= 0) usage("--rate must be > 0");
    } else if (a == "--duration") {
      o.duration = to_double(a, value(i));
    } else if (a == "--count") {
      o.count = static_cast<std::uint64_t>(to_int(a, value(i), 0, 1000000000L));
    } else if (a == "--timeout-ms") {
      o.timeout_ms = static_cast<int>(to_int(a, value(i), 0, 86400000L));
    } else if (a == "--idempotent") {
      o.idempotent = true;
    } else if (a == "--heartbeat-ms") {
      o.heartbeat_ms = static_cast<int>(to_int(a, value(i), 1, 3600000L));
    } else if (a == "--liveness") {
      o.liveness = static_cast<int>(to_int(a, value(i), 1, 1000));
    } else if (a == "--retries") {
      o.retries = static_cast<int>(to_int(a, value(i), 0, 100));
    } else if (a == "--drain-wait") {
      o.drain_wait = to_double(a, value(i));
    } else if (a == "--out") {
      o.out = value(i);
    } else if (a == "-h" || a == "--help") {
      usage("help");
    } else {
      usage("unknown argument " + a);
    }
  }
  if (o.broker.empty()) usage("--broker is required");
  if (o.service.empty()) usage("--service is required");
  if (!o.duration && !o.count) o.duration = 10.0;
  return o;
}

struct entry {
  std::uint64_t n = 0;
  std::optional<std::uint64_t> id;  // none: send() threw
  std::string token;
  double sent = 0;
  bool answered = false;
};

class ledger {
 public:
  explicit ledger(std::ostream& out) : out_(out) {}

  void line(const std::string& s) {
    out_ << s << '\n';
    if (steady::now() - flushed_ > milliseconds(100)) flush();
  }
  void flush() {
    out_.flush();
    flushed_ = steady::now();
  }

  // A request's outcome (first reply for its id, a send error, or missing at the end).
  void outcome(const entry& e, std::optional<double> at, std::optional<std::uint16_t> status,
               std::string_view message, bool local, bool echo, const char* extra) {
    std::ostringstream s;
    s << "{\"kind\":\"request\",\"n\":" << e.n
      << ",\"id\":" << (e.id ? std::to_string(*e.id) : std::string("null"))
      << ",\"token\":" << quote(e.token) << ",\"sent\":" << number(e.sent)
      << ",\"reply\":" << (at ? number(*at) : std::string("null"))
      << ",\"status\":" << (status ? std::to_string(*status) : std::string("null"))
      << ",\"message\":" << quote(message) << ",\"local\":" << (local ? "true" : "false")
      << ",\"echo\":" << (echo ? "true" : "false") << extra << "}";
    line(s.str());
  }

 private:
  std::ostream& out_;
  steady::time_point flushed_ = steady::now();
};

}  // namespace

int main(int argc, char** argv) {
  const options o = parse(argc, argv);
  std::signal(SIGTERM, on_signal);
  std::signal(SIGINT, on_signal);

  std::ofstream file;
  std::ostream* out = &std::cout;
  if (o.out != "-") {
    file.open(o.out, std::ios::out | std::ios::trunc);
    if (!file) {
      std::cerr << "scale0_ledger_client: cannot write " << o.out << "\n";
      return 1;
    }
    out = &file;
  }
  ledger led(*out);

  scale0::client_options co;
  co.idempotent = o.idempotent;
  co.heartbeat_interval = milliseconds(o.heartbeat_ms);
  co.liveness = static_cast<std::uint32_t>(o.liveness);
  co.retries = o.retries;
  std::optional<scale0::client> client;
  try {
    client.emplace(o.broker, co);
  } catch (const std::exception& e) {
    std::cerr << "scale0_ledger_client: " << e.what() << "\n";
    return 1;
  }

  const auto start = steady::now();
  std::string prefix;
  {
    std::mt19937_64 rng(std::random_device{}());
    char buf[64];
    std::snprintf(buf, sizeof buf, "tok-%d-%016llx-", static_cast<int>(getpid()),
                  static_cast<unsigned long long>(rng()));
    prefix = buf;
  }
  {
    std::ostringstream s;
    s << "{\"kind\":\"start\",\"clock\":" << number(seconds(start)) << ",\"pid\":" << getpid()
      << ",\"broker\":" << quote(o.broker) << ",\"service\":" << quote(o.service)
      << ",\"window\":" << o.window << ",\"rate\":" << number(o.rate)
      << ",\"timeout_ms\":" << o.timeout_ms
      << ",\"idempotent\":" << (o.idempotent ? "true" : "false")
      << ",\"heartbeat_ms\":" << o.heartbeat_ms << ",\"liveness\":" << o.liveness << "}";
    led.line(s.str());
    led.flush();
  }

  std::vector<entry> entries;
  std::unordered_map<std::uint64_t, std::size_t> by_id;
  std::map<std::string, std::uint64_t> statuses, local_statuses;
  std::uint64_t outstanding = 0, replied = 0, duplicates = 0, unknown = 0, wrong_bodies = 0,
                send_errors = 0;

  auto take = [&](scale0::reply& r) {
    const double at = seconds(steady::now());
    const std::string body = r.text();
    auto it = by_id.find(r.id);
    if (it == by_id.end()) {
      ++unknown;
      std::ostringstream s;
      s << "{\"kind\":\"unknown\",\"id\":" << r.id << ",\"reply\":" << number(at)
        << ",\"status\":" << r.status << ",\"message\":" << quote(r.message)
        << ",\"local\":" << (r.local ? "true" : "false") << ",\"body\":" << quote(body) << "}";
      led.line(s.str());
      return;
    }
    entry& e = entries[it->second];
    if (e.answered) {
      ++duplicates;
      std::ostringstream s;
      s << "{\"kind\":\"duplicate\",\"n\":" << e.n << ",\"id\":" << r.id
        << ",\"token\":" << quote(e.token) << ",\"reply\":" << number(at)
        << ",\"status\":" << r.status << ",\"message\":" << quote(r.message)
        << ",\"local\":" << (r.local ? "true" : "false") << ",\"body\":" << quote(body) << "}";
      led.line(s.str());
      return;
    }
    e.answered = true;
    --outstanding;
    ++replied;
    const bool echo = body == e.token;
    ++(r.local ? local_statuses : statuses)[std::to_string(r.status)];
    if (r.status == 200 && !echo) ++wrong_bodies;
    led.outcome(e, at, r.status, r.message, r.local, echo, "");
  };

  auto pump = [&](milliseconds wait) {
    auto r = client->receive(wait);
    while (r) {
      take(*r);
      r = client->receive(milliseconds(0));
    }
  };

  // Sending: at most `window` outstanding, at most `rate` per second (a burst after a stall is
  // bounded to a tenth of a second's worth).
  const auto interval =
      std::chrono::duration_cast<steady::duration>(std::chrono::duration<double>(1.0 / o.rate));
  // No --duration: no end in time (steady::time_point::max()), --count ends it.
  const auto end = o.duration ? start + std::chrono::duration_cast<steady::duration>(
                                            std::chrono::duration<double>(*o.duration))
                              : steady::time_point::max();
  auto next_send = start;
  const auto deadline = milliseconds(o.timeout_ms);
  for (;;) {
    auto now = steady::now();
    if (stop_requested.load()) break;
    if (now >= end) break;
    if (o.count && entries.size() >= *o.count) break;
    if (outstanding < static_cast<std::uint64_t>(o.window) && now >= next_send) {
      entry e;
      e.n = entries.size() + 1;
      e.token = prefix + std::to_string(e.n);
      e.sent = seconds(now);
      try {
        e.id = client->send(o.service, e.token, deadline);
        ++outstanding;
        by_id.emplace(*e.id, entries.size());
        entries.push_back(std::move(e));
      } catch (const scale0::error& x) {
        ++send_errors;
        ++local_statuses[std::to_string(x.code())];
        e.answered = true;
        ++replied;
        led.outcome(e, seconds(steady::now()), x.code(), x.message(), true, false,
                    ",\"send_error\":true");
        entries.push_back(std::move(e));
      }
      next_send = std::max(next_send + interval, now - milliseconds(100));
      pump(milliseconds(0));
      continue;
    }
    auto wait = milliseconds(50);
    if (outstanding < static_cast<std::uint64_t>(o.window))
      wait = std::min(wait, std::chrono::ceil<milliseconds>(next_send - now));
    if (o.duration) wait = std::min(wait, std::chrono::ceil<milliseconds>(end - now));
    pump(std::max(wait, milliseconds(0)));
  }
  const double stopped_sending = seconds(steady::now());

  // Waiting for every outstanding reply, bounded.
  const double drain_wait = o.drain_wait ? *o.drain_wait
                                         : (o.timeout_ms > 0 ? o.timeout_ms / 1000.0 : 30.0) + 1.0 +
                                               2.0 * o.liveness * o.heartbeat_ms / 1000.0 + 5.0;
  const auto drain_end = steady::now() + std::chrono::duration_cast<steady::duration>(
                                             std::chrono::duration<double>(drain_wait));
  while (outstanding > 0) {
    const auto now = steady::now();
    if (now >= drain_end) break;
    pump(std::min(milliseconds(50), std::chrono::ceil<milliseconds>(drain_end - now)));
  }
  // Late duplicates: a short look after the last reply.
  pump(milliseconds(100));

  std::uint64_t missing = 0;
  for (const auto& e : entries) {
    if (e.answered) continue;
    ++missing;
    led.outcome(e, std::nullopt, std::nullopt, "", false, false, ",\"missing\":true");
  }
  const auto fin = steady::now();
  {
    const double wall =
        std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    led.line("{\"kind\":\"clock\",\"clock\":" + number(seconds(fin)) + ",\"wall\":" + number(wall) +
             "}");
  }
  auto counts = [](const std::map<std::string, std::uint64_t>& m) {
    std::string s = "{";
    for (const auto& [k, v] : m) {
      if (s.size() > 1) s += ",";
      s += quote(k) + ":" + std::to_string(v);
    }
    return s + "}";
  };
  std::ostringstream s;
  s << "{\"kind\":\"summary\",\"sent\":" << entries.size() << ",\"replied\":" << replied
    << ",\"statuses\":" << counts(statuses) << ",\"local_statuses\":" << counts(local_statuses)
    << ",\"missing\":" << missing << ",\"duplicates\":" << duplicates << ",\"unknown\":" << unknown
    << ",\"wrong_bodies\":" << wrong_bodies << ",\"send_errors\":" << send_errors
    << ",\"started\":" << number(seconds(start))
    << ",\"stopped_sending\":" << number(stopped_sending)
    << ",\"finished\":" << number(seconds(fin)) << "}";
  led.line(s.str());
  led.flush();
  if (o.out != "-") std::cout << s.str() << std::endl;
  return 0;
}
