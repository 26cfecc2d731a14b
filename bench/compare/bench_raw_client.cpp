// SPDX-License-Identifier: Apache-2.0
// Load generator of the comparison for every ZeroMQ path: N client threads, each a DEALER socket
// with W requests in flight, every reply checked (id and body).
//
//   --protocol raw   request ["", id(8), payload], reply the same frames: the direct path
//                    (bench_echo_server --bind, one DEALER connected to every server, which deals
//                    requests round-robin) and the zmq_proxy path.
//   --protocol s0    Scale0 native client in the compact S0/2 framing: REQUEST
//                    ["", S0C2 0x01 id timeout len service, payload]; REPLY
//                    ["", S0C2 0x02 id status len message, payload]. A status other than 200
//                    counts as an error.
//   --protocol s0b   S0/2 with batches (docs/protocol.md, "Batches"), written here from the spec:
//                    the requests one turn of the loop sends leave as one BATCH
//                    ["", S0C2 0x09 count, entries (size, packed, 1 part: size, payload)]; the
//                    broker answers in batches, taken apart entry by entry (a single REPLY as
//                    with s0).
//   --protocol s0v1  the same in S0/1 framing: REQUEST ["", S0C1, 0x01, id, service, timeout,
//                    payload]; REPLY ["", S0C1, 0x02, id, status, message, payload].
//   --protocol mdp   Majordomo 0.1 client ["", MDPC01, service, id, payload] on a DEALER (several
//                    requests in flight); REPLY ["", MDPC01, service, id, payload]. An error reply
//                    ["", MDPC01, service, "503", reason] counts as an error.
//
// Prints the report as JSON with --json (see bench_common.hpp); exits non-zero if any request got
// no reply, an error, or a wrong reply.
#include <atomic>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "bench_common.hpp"

namespace {

enum class protocol { raw, s0, s0b, s0v1, mdp };

struct client_config {
  bench::load_options load;
  protocol proto = protocol::raw;
  std::vector<std::string> endpoints;
  std::string service = "echo";
  std::uint32_t timeout_ms = 0;
  std::string curve_server_key;  // Z85: CURVE with an ephemeral key pair per socket
};

std::string_view view(const zmq::message_t& m) {
  return {static_cast<const char*>(m.data()), m.size()};
}

class client_thread {
 public:
  client_thread(zmq::context_t& ctx, const client_config& cfg, long quota, bench::thread_stats& st)
      : cfg_(cfg),
        st_(st),
        socket_(ctx, zmq::socket_type::dealer),
        table_(static_cast<std::size_t>(cfg.load.window)),
        payload_(std::max<std::size_t>(cfg.load.size, 1)),
        scratch_(std::max<std::size_t>(cfg.load.size, 1)) {
    socket_.set(zmq::sockopt::sndhwm, 0);
    socket_.set(zmq::sockopt::rcvhwm, 0);
    socket_.set(zmq::sockopt::linger, 0);
    if (!cfg.curve_server_key.empty()) {
      char public_key[41];
      char secret_key[41];
      if (zmq_curve_keypair(public_key, secret_key) != 0) throw zmq::error_t();
      socket_.set(zmq::sockopt::curve_serverkey, cfg.curve_server_key);
      socket_.set(zmq::sockopt::curve_publickey, std::string(public_key, 40));
      socket_.set(zmq::sockopt::curve_secretkey, std::string(secret_key, 40));
    }
    for (const auto& ep : cfg.endpoints) socket_.connect(ep);
    if (quota > 0) st_.latency_ns.reserve(static_cast<std::size_t>(quota));
  }

  void run(const bench::schedule& plan) {
    long measured_sent = 0;
    auto last_progress = bench::clock::now();
    zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
    for (;;) {
      auto now = bench::clock::now();
      bool sending = plan.may_send(now, measured_sent);
      while (sending && !table_.full()) {
        const bool measured = now >= plan.measure_start();
        send(table_.acquire(now, measured));
        ++st_.sent;
        if (measured) ++measured_sent;
        now = bench::clock::now();  // each request's latency starts when it is handed over
        sending = plan.may_send(now, measured_sent);
      }
      flush_batch();
      if (!sending && static_cast<long>(table_.in_flight()) <= unmatched_errors_) break;
      if (zmq::poll(&item, 1, std::chrono::milliseconds(20)) > 0) {
        for (int i = 0; i < 4096; ++i) {
          frames_.clear();
          if (!zmq::recv_multipart(socket_, std::back_inserter(frames_),
                                   zmq::recv_flags::dontwait)) {
            break;
          }
          handle_reply(bench::clock::now());
        }
        last_progress = bench::clock::now();
      } else if (bench::clock::now() - last_progress > plan.drain()) {
        st_.stalled = true;  // no reply for too long: give up on what is in flight
        break;
      }
    }
    const auto outstanding = static_cast<long>(table_.in_flight());
    st_.lost += std::max(0L, outstanding - unmatched_errors_);
  }

 private:
  static void put_u32(std::string& s, std::uint32_t v) {
    for (int i = 0; i < 4; ++i) s += static_cast<char>((v >> (8 * (3 - i))) & 0xFF);
  }

  // s0b: one entry per request, sent by flush_batch() (at most 256 per batch, the protocol's
  // bound; payloads up to 256 bytes inline, larger ones as frames of their own).
  void add_to_batch(std::uint64_t id, const char* idbuf) {
    if (batch_count_ == 0) {
      batch_.assign("S0C2\x09\x00\x00", 7);
      first_id_ = id;
    }
    const std::string_view service = cfg_.service;
    put_u32(batch_, static_cast<std::uint32_t>(1 + 8 + 4 + 1 + service.size()));
    batch_ += '\x01';
    batch_.append(idbuf, 8);
    put_u32(batch_, cfg_.timeout_ms);
    batch_ += static_cast<char>(service.size());
    batch_.append(service);
    batch_ += '\x01';  // one body part
    if (cfg_.load.size <= 256) {
      put_u32(batch_, static_cast<std::uint32_t>(cfg_.load.size));
      batch_.append(payload_.data(), cfg_.load.size);
    } else {
      put_u32(batch_, 0xFFFFFFFFu);
      separate_.emplace_back(payload_.data(), cfg_.load.size);
    }
    if (++batch_count_ == 256 || separate_.size() == 64) flush_batch();
  }

  void flush_batch() {
    if (batch_count_ == 0) return;
    if (batch_count_ == 1) {  // one request alone travels as it is, as the protocol says
      separate_.clear();
      batch_count_ = 0;
      return send(first_id_, true);
    }
    batch_[5] = static_cast<char>(batch_count_ >> 8);
    batch_[6] = static_cast<char>(batch_count_ & 0xFF);
    socket_.send(zmq::message_t(), zmq::send_flags::sndmore);
    socket_.send(zmq::buffer(batch_),
                 separate_.empty() ? zmq::send_flags::none : zmq::send_flags::sndmore);
    for (std::size_t i = 0; i < separate_.size(); ++i)
      socket_.send(separate_[i],
                   i + 1 < separate_.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
    separate_.clear();
    batch_count_ = 0;
  }

  void send(std::uint64_t id, bool alone = false) {
    char idbuf[8];
    bench::put_u64(idbuf, id);
    bench::fill_payload(id, payload_.data(), cfg_.load.size);
    if (cfg_.proto == protocol::s0b && !alone) return add_to_batch(id, idbuf);
    const auto more = zmq::send_flags::sndmore;
    socket_.send(zmq::message_t(), more);
    switch (cfg_.proto) {
      case protocol::raw:
        socket_.send(zmq::buffer(idbuf, 8), more);
        break;
      case protocol::s0:
      case protocol::s0b: {  // s0b: a request alone
        // "S0C2" 0x01 · id u64 · timeout u32 · service (u8 length + bytes), in one frame
        packed_.assign("S0C2\x01");
        packed_.append(idbuf, 8);
        for (int i = 0; i < 4; ++i)
          packed_ += static_cast<char>((cfg_.timeout_ms >> (8 * (3 - i))) & 0xFF);
        packed_ += static_cast<char>(cfg_.service.size());
        packed_ += cfg_.service;
        socket_.send(zmq::buffer(packed_), more);
        break;
      }
      case protocol::s0v1: {
        char timeout[4];
        for (int i = 0; i < 4; ++i) {
          timeout[i] = static_cast<char>((cfg_.timeout_ms >> (8 * (3 - i))) & 0xFF);
        }
        socket_.send(zmq::str_buffer("S0C1"), more);
        socket_.send(zmq::str_buffer("\x01"), more);
        socket_.send(zmq::buffer(idbuf, 8), more);
        socket_.send(zmq::buffer(cfg_.service), more);
        socket_.send(zmq::buffer(timeout, 4), more);
        break;
      }
      case protocol::mdp:
        socket_.send(zmq::str_buffer("MDPC01"), more);
        socket_.send(zmq::buffer(cfg_.service), more);
        socket_.send(zmq::buffer(idbuf, 8), more);
        break;
    }
    socket_.send(zmq::buffer(payload_.data(), cfg_.load.size), zmq::send_flags::none);
  }

  // Matches a reply with id `id` and body frame `body` (nullptr: none) to its request.
  void complete(std::uint64_t id, const zmq::message_t* body, bool ok_status,
                bench::clock::time_point now) {
    if (body == nullptr) return complete(id, nullptr, 0, false, ok_status, now);
    complete(id, body->data(), body->size(), true, ok_status, now);
  }
  void complete(std::uint64_t id, const void* data, std::size_t size, bool has_body, bool ok_status,
                bench::clock::time_point now) {
    const auto* e = table_.release(id);
    if (e == nullptr) {
      ++st_.wrong;  // unknown, stale or duplicate id
      return;
    }
    ++st_.replies;
    if (!ok_status) {
      ++st_.errors;
      return;
    }
    if (!has_body || !bench::payload_matches(id, data, size, cfg_.load.size, scratch_)) {
      ++st_.wrong;
      return;
    }
    bench::record_latency(st_, *e, now);
  }

  // A BATCH of REPLYs: count u16, then entries (size u32, the packed REPLY without its header,
  // parts u8, each size u32 and bytes, or 0xFFFFFFFF for the next frame).
  void handle_batch(bench::clock::time_point now) {
    const auto& f = frames_;
    const std::string_view b = view(f[1]);
    std::size_t at = 5;
    std::size_t next_frame = 2;
    auto need = [&](std::size_t n) { return at + n <= b.size(); };
    auto u = [&](int width) {
      std::uint64_t v = 0;
      for (int i = 0; i < width; ++i) v = (v << 8) | static_cast<unsigned char>(b[at++]);
      return v;
    };
    if (!need(2)) {
      ++st_.wrong;
      return;
    }
    const auto count = static_cast<std::size_t>(u(2));
    for (std::size_t e = 0; e < count; ++e) {
      if (!need(4)) break;
      const auto size = static_cast<std::size_t>(u(4));
      if (!need(size + 1) || size < 13 || b[at] != '\x02') break;
      const std::size_t fields = at + 1;
      const std::uint64_t id = bench::get_u64(b.data() + fields);
      at = fields + 8;
      const int status = static_cast<int>(u(2));
      const auto len = static_cast<std::size_t>(u(2));
      if (at + len != fields + size - 1) break;
      if (status != 200) report_status(status, b.substr(at, len));
      at += len;
      const auto parts = static_cast<std::size_t>(u(1));
      if (parts > 1) break;
      if (parts == 0) {
        complete(id, nullptr, 0, false, status == 200, now);
        continue;
      }
      if (!need(4)) break;
      const auto part = static_cast<std::uint32_t>(u(4));
      if (part == 0xFFFFFFFFu) {
        if (next_frame >= f.size()) break;
        const zmq::message_t& m = f[next_frame++];
        complete(id, m.data(), m.size(), true, status == 200, now);
      } else {
        if (!need(part)) break;
        complete(id, b.data() + at, part, true, status == 200, now);
        at += part;
      }
      if (e + 1 == count && at == b.size() && next_frame == f.size()) return;
    }
    ++st_.wrong;  // malformed: what it held is counted lost when the run ends
  }

  void handle_reply(bench::clock::time_point now) {
    const auto& f = frames_;
    if (f.empty() || f[0].size() != 0) {
      ++st_.wrong;
      return;
    }
    switch (cfg_.proto) {
      case protocol::raw:
        if (f.size() != 3 || f[1].size() != 8) {
          ++st_.wrong;
          return;
        }
        complete(bench::get_u64(f[1].data()), &f[2], true, now);
        return;
      case protocol::s0b:
        if (f.size() >= 2 && view(f[1]).substr(0, 5) == std::string_view("S0C2\x09", 5))
          return handle_batch(now);
        [[fallthrough]];
      case protocol::s0: {
        // "S0C2" 0x02 · id u64 · status u16 · message (u16 length + bytes) · payload
        const std::string_view h = view(f[1]);
        if (f.size() < 2 || f.size() > 3 || h.size() < 17 || h.substr(0, 5) != "S0C2\x02") {
          ++st_.wrong;
          return;
        }
        const auto* p = reinterpret_cast<const unsigned char*>(h.data());
        const int status = (p[13] << 8) | p[14];
        const std::size_t len = static_cast<std::size_t>((p[15] << 8) | p[16]);
        if (h.size() != 17 + len) {
          ++st_.wrong;
          return;
        }
        if (status != 200) report_status(status, h.substr(17));
        complete(bench::get_u64(h.data() + 5), f.size() == 3 ? &f[2] : nullptr, status == 200, now);
        return;
      }
      case protocol::s0v1: {
        if (f.size() < 6 || view(f[1]) != "S0C1" || view(f[2]) != "\x02" || f[3].size() != 8 ||
            f[4].size() != 2) {
          ++st_.wrong;
          return;
        }
        const auto* s = static_cast<const unsigned char*>(f[4].data());
        const int status = (s[0] << 8) | s[1];
        if (status != 200) report_status(status, view(f[5]));
        complete(bench::get_u64(f[3].data()), f.size() == 7 ? &f[6] : nullptr, status == 200, now);
        return;
      }
      case protocol::mdp:
        if (f.size() < 4 || view(f[1]) != "MDPC01" || view(f[2]) != cfg_.service) {
          ++st_.wrong;
          return;
        }
        if (f.size() == 5 && f[3].size() == 8) {
          complete(bench::get_u64(f[3].data()), &f[4], true, now);
          return;
        }
        if (f[3].size() == 3) {  // ["503", reason]: an error we cannot match to its request
          ++st_.errors;
          ++unmatched_errors_;
          report_status(std::atoi(std::string(view(f[3])).c_str()),
                        f.size() > 4 ? view(f[4]) : std::string_view{});
          return;
        }
        ++st_.wrong;
        return;
    }
  }

  void report_status(int status, std::string_view message) {
    if (reported_statuses_++ < 5) {
      std::fprintf(stderr, "bench_raw_client: status %d: %.*s\n", status,
                   static_cast<int>(message.size()), message.data());
    }
  }

  const client_config& cfg_;
  bench::thread_stats& st_;
  zmq::socket_t socket_;
  bench::inflight_table table_;
  std::vector<char> payload_;
  std::string packed_;
  std::string batch_;  // s0b: the batch being built
  std::size_t batch_count_ = 0;
  std::uint64_t first_id_ = 0;
  std::vector<zmq::message_t>
      separate_;  // the S0/2 header frame, rebuilt per request (no allocation once sized)
  std::vector<char> scratch_;
  std::vector<zmq::message_t> frames_;
  long unmatched_errors_ = 0;
  int reported_statuses_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ZeroMQ load generator for the comparison benchmarks (raw, Scale0 S0/1, MDP 0.1)"};
  client_config cfg;
  std::string proto = "raw";
  app.add_option("--connect", cfg.endpoints,
                 "Endpoint(s) to connect to (repeat or comma-separate; a DEALER deals "
                 "round-robin over them)")
      ->required()
      ->delimiter(',');
  app.add_option(
         "--protocol", proto,
         "raw, s0 (Scale0 native, S0/2 framing), s0b (S0/2 with batches), s0v1 (S0/1 framing) "
         "or mdp (Majordomo 0.1)")
      ->check(CLI::IsMember({"raw", "s0", "s0b", "s0v1", "mdp"}));
  app.add_option("--service", cfg.service, "Service name (s0, mdp)");
  app.add_option("--timeout-ms", cfg.timeout_ms, "S0 request deadline; 0: the broker's default");
  app.add_option("--curve-server-key", cfg.curve_server_key,
                 "The server's CURVE public key (Z85): CURVE on, an ephemeral key per socket");
  bench::add_load_options(app, cfg.load);
  CLI11_PARSE(app, argc, argv);
  cfg.proto = proto == "s0"     ? protocol::s0
              : proto == "s0b"  ? protocol::s0b
              : proto == "s0v1" ? protocol::s0v1
              : proto == "mdp"  ? protocol::mdp
                                : protocol::raw;
  if (cfg.load.window > (1 << bench::inflight_table::slot_bits)) {
    std::fprintf(stderr, "bench_raw_client: --window too large\n");
    return 2;
  }

  zmq::context_t ctx(1);
  std::vector<bench::thread_stats> stats(static_cast<std::size_t>(cfg.load.clients));
  std::vector<std::unique_ptr<client_thread>> clients;
  for (int i = 0; i < cfg.load.clients; ++i) {
    const long quota = bench::quota_for(cfg.load.requests, cfg.load.clients, i);
    try {
      clients.push_back(
          std::make_unique<client_thread>(ctx, cfg, quota, stats[static_cast<std::size_t>(i)]));
    } catch (const zmq::error_t& e) {
      std::fprintf(stderr, "bench_raw_client: connect: %s\n", e.what());
      return 2;
    }
  }
  return bench::run_clients("bench_raw_client", cfg.load, clients, stats, {{"protocol", proto}});
}
