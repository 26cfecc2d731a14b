// SPDX-License-Identifier: Apache-2.0
// The wire codec (S0/1 and Majordomo 0.1), tested against docs/protocol.md: every encoder's frames
// are checked against the spec's layout and decoded back, every malformed shape the spec rules out
// is fed to the decoders, and a seeded random run checks that no input crashes a decoder or yields
// a view outside the frames it was decoded from.
#include <gtest/gtest.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <ostream>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "scale0/error.hpp"
#include "scale0/protocol.hpp"
#include "support/fuzz_frames.hpp"
#include "support/wire_bytes.hpp"

// Readable names in failure messages (gtest finds PrintTo by ADL).
namespace scale0::protocol {
void PrintTo(inbound_kind k, std::ostream* os) {
  static constexpr std::array<const char*, 17> names = {"drop",
                                                        "client_error",
                                                        "worker_error",
                                                        "client_request",
                                                        "client_ping",
                                                        "worker_ready",
                                                        "worker_reply",
                                                        "worker_heartbeat",
                                                        "worker_disconnect",
                                                        "worker_stopping",
                                                        "mdp_request",
                                                        "mdp_ready",
                                                        "mdp_reply",
                                                        "mdp_heartbeat",
                                                        "mdp_disconnect",
                                                        "mdp_client_error",
                                                        "mdp_worker_error"};
  const auto i = static_cast<std::size_t>(k);
  *os << (i < names.size() ? names[i] : "?") << " (" << i << ")";
}
void PrintTo(worker_inbound_kind k, std::ostream* os) {
  static constexpr std::array<const char*, 5> names = {"invalid", "welcome", "request",
                                                       "disconnect", "stopping"};
  const auto i = static_cast<std::size_t>(k);
  *os << (i < names.size() ? names[i] : "?") << " (" << i << ")";
}
void PrintTo(client_inbound_kind k, std::ostream* os) {
  static constexpr std::array<const char*, 3> names = {"invalid", "reply", "pong"};
  const auto i = static_cast<std::size_t>(k);
  *os << (i < names.size() ? names[i] : "?") << " (" << i << ")";
}
}  // namespace scale0::protocol

namespace {

using namespace scale0::protocol;
using namespace std::string_literals;
namespace st = scale0::status;
using strings = std::vector<std::string>;

// ---- building and reading frames ----

using namespace scale0_test;  // identity, be, u64, u32, u16
// One byte (a command or flags frame); takes int so that literal lists need no casts.
std::string byte(int b) {
  return std::string(1, static_cast<char>(b));
}

// S0/2 pieces, from the spec: strings with a 1- or 2-byte length, and the packed header frame.
std::string s8(std::string_view v) {
  return byte(static_cast<int>(v.size())) + std::string(v);
}
std::string s16(std::string_view v) {
  return u16(static_cast<std::uint16_t>(v.size())) + std::string(v);
}
std::string packed(std::string_view header, int command, const std::string& fields) {
  return std::string(header) + byte(command) + fields;
}
std::uint64_t be_read(std::string_view b) {
  std::uint64_t v = 0;
  for (unsigned char c : b) v = (v << 8) | c;
  return v;
}

void push(frames& f, std::string_view s) {
  f.emplace_back(s.data(), s.size());
}

frames make(const strings& parts) {
  frames f;
  for (const auto& p : parts) push(f, p);
  return f;
}

// The message as the broker's ROUTER receives it: identity first.
frames at_broker(const strings& parts) {
  frames f;
  push(f, identity);
  for (const auto& p : parts) push(f, p);
  return f;
}

std::string str(const zmq::message_t& m) {
  return std::string(static_cast<const char*>(m.data()), m.size());
}

strings parts_of(const frames& f) {
  strings out;
  for (const auto& m : f) out.push_back(str(m));
  return out;
}

// decode_inbound as the broker runs it: the peer's frames behind a ROUTER identity. The frames die
// with the call, so only kind, status, ids and the static reason may be read from the result.
inbound decode(const strings& parts_after_identity) {
  return decode_inbound(at_broker(parts_after_identity));
}

const std::string S0C1 = "S0C1";
const std::string S0W1 = "S0W1";
const std::string MDPC01 = "MDPC01";
const std::string MDPW01 = "MDPW01";

// ---- helpers ----

TEST(codec_helpers, integers_are_unsigned_big_endian) {
  EXPECT_EQ(str(u16_frame(0x0102)), "\x01\x02"s);
  EXPECT_EQ(str(u32_frame(0x01020304)), "\x01\x02\x03\x04"s);
  EXPECT_EQ(str(u64_frame(0x0102030405060708)), "\x01\x02\x03\x04\x05\x06\x07\x08"s);
  EXPECT_EQ(str(u16_frame(0xFFFF)), "\xFF\xFF"s);
  EXPECT_EQ(str(u64_frame(0)), std::string(8, '\0'));

  const frames f = make({"\xAB\xCD"s, "\xDE\xAD\xBE\xEF"s, "\x80\x00\x00\x00\x00\x00\x00\x01"s});
  EXPECT_EQ(read_u16(f[0]), 0xABCDu);
  EXPECT_EQ(read_u32(f[1]), 0xDEADBEEFu);
  EXPECT_EQ(read_u64(f[2]), 0x8000000000000001ull);

  for (std::uint64_t v : {0ull, 1ull, 0xFFull, 0x0123456789ABCDEFull, ~0ull}) {
    EXPECT_EQ(read_u64(u64_frame(v)), v);
    EXPECT_EQ(read_u32(u32_frame(static_cast<std::uint32_t>(v))), static_cast<std::uint32_t>(v));
    EXPECT_EQ(read_u16(u16_frame(static_cast<std::uint16_t>(v))), static_cast<std::uint16_t>(v));
  }
}

TEST(codec_helpers, str_frame_and_view_keep_every_byte) {
  const std::string s = "a\0b\xFF"s;
  const auto m = str_frame(s);
  EXPECT_EQ(m.size(), 4u);
  EXPECT_EQ(view(m), s);
  EXPECT_EQ(view(m).data(), static_cast<const char*>(m.data()));
  EXPECT_TRUE(view(str_frame("")).empty());
}

// ---- round trips: encoder → spec layout → decoder ----

TEST(codec_round_trip, client_request_as_the_broker_sees_it) {
  const std::string longest(max_service_name, 's');
  for (std::uint64_t id : {0ull, 1ull, 0x0102030405060708ull, ~0ull}) {
    for (std::uint32_t timeout : {0u, 1500u, ~0u}) {
      for (const std::string& service : {"echo"s, "x"s, longest}) {
        frames f;
        push(f, identity);
        append_client_request(f, id, service, timeout);
        EXPECT_EQ(parts_of(f),
                  (strings{identity, "", S0C1, byte(1), u64(id), service, u32(timeout)}));
        push(f, "body-1");
        push(f, "");
        push(f, "\x00\xFF"s);

        const inbound in = decode_inbound(f);
        ASSERT_EQ(in.kind, inbound_kind::client_request);
        EXPECT_EQ(in.id, id);
        EXPECT_EQ(in.service, service);
        EXPECT_EQ(in.timeout_ms, timeout);
        ASSERT_EQ(in.first, 7u);
        EXPECT_EQ(f.size() - in.first, 3u);
        EXPECT_EQ(str(f[in.first]), "body-1");
      }
    }
  }
}

TEST(codec_round_trip, client_request_without_body) {
  frames f;
  push(f, identity);
  append_client_request(f, 42, "echo", 100);
  const inbound in = decode_inbound(f);
  ASSERT_EQ(in.kind, inbound_kind::client_request);
  EXPECT_EQ(in.id, 42u);
  EXPECT_EQ(in.first, f.size());
}

TEST(codec_round_trip, client_ping_with_and_without_payload) {
  frames f;
  push(f, identity);
  append_client_ping(f);
  EXPECT_EQ(parts_of(f), (strings{identity, "", S0C1, byte(3)}));
  inbound in = decode_inbound(f);
  ASSERT_EQ(in.kind, inbound_kind::client_ping);
  EXPECT_EQ(in.first, 4u);

  push(f, "p1");
  push(f, "p2");
  in = decode_inbound(f);
  ASSERT_EQ(in.kind, inbound_kind::client_ping);
  ASSERT_EQ(in.first, 4u);
  EXPECT_EQ(str(f[4]), "p1");
}

TEST(codec_round_trip, worker_ready_with_several_services_and_flags) {
  const std::string longest(max_service_name, 'z');
  const std::vector<std::string_view> services = {"echo", "upper", "a", longest};
  frames f;
  push(f, identity);
  append_worker_ready(f, 16, 2500, flag_idempotent, services);
  EXPECT_EQ(parts_of(f), (strings{identity, "", S0W1, byte(1), u32(16), u32(2500), byte(0x01),
                                  "echo", "upper", "a", longest}));

  const inbound in = decode_inbound(f);
  ASSERT_EQ(in.kind, inbound_kind::worker_ready);
  EXPECT_EQ(in.concurrency, 16u);
  EXPECT_EQ(in.heartbeat_ms, 2500u);
  EXPECT_EQ(in.flags, flag_idempotent);
  EXPECT_EQ(in.service, "echo");
  ASSERT_EQ(in.first, 7u);
  ASSERT_EQ(f.size() - in.first, services.size());
  for (std::size_t i = 0; i < services.size(); ++i) EXPECT_EQ(view(f[in.first + i]), services[i]);
}

TEST(codec_round_trip, worker_ready_bounds) {
  struct tc {
    std::uint32_t concurrency;
    std::uint32_t heartbeat_ms;
    std::uint8_t flags;
  };
  for (const tc& t : {tc{1, 0, 0}, tc{max_concurrency, ~0u, 0}, tc{1024, 1, flag_idempotent}}) {
    frames f;
    push(f, identity);
    append_worker_ready(f, t.concurrency, t.heartbeat_ms, t.flags, {"svc"});
    const inbound in = decode_inbound(f);
    ASSERT_EQ(in.kind, inbound_kind::worker_ready) << t.concurrency;
    EXPECT_EQ(in.concurrency, t.concurrency);
    EXPECT_EQ(in.heartbeat_ms, t.heartbeat_ms);
    EXPECT_EQ(in.flags, t.flags);
    EXPECT_EQ(in.service, "svc");
  }
}

TEST(codec_round_trip, worker_ready_with_sixty_four_services) {
  std::vector<std::string> names;
  for (std::size_t i = 0; i < max_services_per_worker; ++i)
    names.push_back("svc" + std::to_string(i));
  const std::vector<std::string_view> services(names.begin(), names.end());
  frames f;
  push(f, identity);
  append_worker_ready(f, 4, 0, 0, services);
  const inbound in = decode_inbound(f);
  ASSERT_EQ(in.kind, inbound_kind::worker_ready);
  EXPECT_EQ(in.service, "svc0");
  EXPECT_EQ(f.size() - in.first, 64u);
}

TEST(codec_round_trip, worker_reply) {
  for (std::uint16_t code : {st::ok, st::worker_failed, std::uint16_t{599}}) {
    for (const std::string& message : {""s, "boom"s}) {
      frames f;
      push(f, identity);
      append_worker_reply(f, 0xA1B2C3D4E5F60718, code, message);
      EXPECT_EQ(parts_of(f), (strings{identity, "", S0W1, byte(3), u64(0xA1B2C3D4E5F60718),
                                      u16(code), message}));
      push(f, "result");

      const inbound in = decode_inbound(f);
      ASSERT_EQ(in.kind, inbound_kind::worker_reply);
      EXPECT_EQ(in.id, 0xA1B2C3D4E5F60718u);
      EXPECT_EQ(in.reply_status, code);
      EXPECT_EQ(in.message, message);
      ASSERT_EQ(in.first, 7u);  // the body
      EXPECT_EQ(str(f[7]), "result");
    }
  }
}

TEST(codec_round_trip, worker_heartbeat_disconnect_stopping) {
  frames hb;
  push(hb, identity);
  append_worker_heartbeat(hb);
  EXPECT_EQ(parts_of(hb), (strings{identity, "", S0W1, byte(4)}));
  EXPECT_EQ(decode_inbound(hb).kind, inbound_kind::worker_heartbeat);

  frames bare;
  push(bare, identity);
  append_worker_disconnect(bare, 0, "");
  EXPECT_EQ(parts_of(bare), (strings{identity, "", S0W1, byte(5)}));
  EXPECT_EQ(decode_inbound(bare).kind, inbound_kind::worker_disconnect);

  frames with_reason;
  push(with_reason, identity);
  append_worker_disconnect(with_reason, st::bad_request, "bad READY");
  EXPECT_EQ(parts_of(with_reason),
            (strings{identity, "", S0W1, byte(5), u16(st::bad_request), "bad READY"}));
  EXPECT_EQ(decode_inbound(with_reason).kind, inbound_kind::worker_disconnect);

  frames stop;
  push(stop, identity);
  append_worker_stopping(stop);
  EXPECT_EQ(parts_of(stop), (strings{identity, "", S0W1, byte(7)}));
  EXPECT_EQ(decode_inbound(stop).kind, inbound_kind::worker_stopping);
}

TEST(codec_round_trip, welcome_as_the_worker_sees_it) {
  for (const std::string& endpoint : {"tcp://*:5557"s, "tcp://0.0.0.0:5557"s, ""s}) {
    frames f;
    append_worker_welcome(f, 2500, 3, endpoint, 0xFEDCBA9876543210);
    EXPECT_EQ(parts_of(f),
              (strings{"", S0W1, byte(6), u32(2500), u32(3), endpoint, u64(0xFEDCBA9876543210)}));
    const worker_inbound in = decode_for_worker(f);
    ASSERT_EQ(in.kind, worker_inbound_kind::welcome);
    EXPECT_EQ(in.heartbeat_ms, 2500u);
    EXPECT_EQ(in.liveness, 3u);
    EXPECT_EQ(in.endpoint, endpoint);
    EXPECT_EQ(in.broker_id, 0xFEDCBA9876543210u);
  }
}

TEST(codec_round_trip, request_as_the_worker_sees_it) {
  frames f;
  append_worker_request(f, 77, "upper", 1);
  EXPECT_EQ(parts_of(f), (strings{"", S0W1, byte(2), u64(77), "upper", u32(1)}));
  push(f, "hello");
  push(f, "");
  const worker_inbound in = decode_for_worker(f);
  ASSERT_EQ(in.kind, worker_inbound_kind::request);
  EXPECT_EQ(in.job_id, 77u);
  EXPECT_EQ(in.service, "upper");
  EXPECT_EQ(in.timeout_ms, 1u);
  ASSERT_EQ(in.first, 6u);
  EXPECT_EQ(str(f[6]), "hello");
  EXPECT_EQ(f.size() - in.first, 2u);

  frames no_body;
  append_worker_request(no_body, ~0ull, std::string(max_service_name, 'q'), ~0u);
  const worker_inbound nb = decode_for_worker(no_body);
  ASSERT_EQ(nb.kind, worker_inbound_kind::request);
  EXPECT_EQ(nb.job_id, ~0ull);
  EXPECT_EQ(nb.service.size(), max_service_name);
  EXPECT_EQ(nb.timeout_ms, ~0u);
  EXPECT_EQ(nb.first, no_body.size());
}

TEST(codec_round_trip, disconnect_and_stopping_as_the_worker_sees_them) {
  frames with_reason;
  append_worker_disconnect(with_reason, st::bad_request, "unknown worker");
  worker_inbound in = decode_for_worker(with_reason);
  ASSERT_EQ(in.kind, worker_inbound_kind::disconnect);
  EXPECT_EQ(in.status, st::bad_request);
  EXPECT_EQ(in.message, "unknown worker");

  frames bare;
  append_worker_disconnect(bare, 0, "");
  in = decode_for_worker(bare);
  ASSERT_EQ(in.kind, worker_inbound_kind::disconnect);
  EXPECT_EQ(in.status, 0u);  // "0 when absent"
  EXPECT_TRUE(in.message.empty());

  frames stop;
  append_worker_stopping(stop);
  EXPECT_EQ(decode_for_worker(stop).kind, worker_inbound_kind::stopping);
}

TEST(codec_round_trip, reply_as_the_client_sees_it) {
  for (std::uint16_t code : {st::ok, st::unavailable, st::bad_version}) {
    frames f;
    append_client_reply(f, 0x1122334455667788, code, "no worker for service");
    EXPECT_EQ(parts_of(f), (strings{"", S0C1, byte(2), u64(0x1122334455667788), u16(code),
                                    "no worker for service"}));
    push(f, "body");
    const client_inbound in = decode_for_client(f);
    ASSERT_EQ(in.kind, client_inbound_kind::reply);
    EXPECT_EQ(in.id, 0x1122334455667788u);
    EXPECT_EQ(in.status, code);
    EXPECT_EQ(in.message, "no worker for service");
    ASSERT_EQ(in.first, 6u);
    EXPECT_EQ(str(f[6]), "body");
  }

  frames empty_message;
  append_client_reply(empty_message, 0, st::ok, "");
  const client_inbound in = decode_for_client(empty_message);
  ASSERT_EQ(in.kind, client_inbound_kind::reply);
  EXPECT_EQ(in.id, 0u);
  EXPECT_TRUE(in.message.empty());
  EXPECT_EQ(in.first, empty_message.size());
}

TEST(codec_round_trip, pong_as_the_client_sees_it) {
  frames f;
  append_client_pong(f);
  EXPECT_EQ(parts_of(f), (strings{"", S0C1, byte(4)}));
  client_inbound in = decode_for_client(f);
  ASSERT_EQ(in.kind, client_inbound_kind::pong);
  EXPECT_EQ(in.first, 3u);

  push(f, "echoed");
  in = decode_for_client(f);
  ASSERT_EQ(in.kind, client_inbound_kind::pong);
  ASSERT_EQ(in.first, 3u);
  EXPECT_EQ(str(f[3]), "echoed");
}

TEST(codec_round_trip, broker_heartbeat) {
  for (std::uint64_t id : {0ull, 0x0102030405060708ull, ~0ull}) {
    frames f;
    append_heartbeat(f, id, id ^ 0x55);
    EXPECT_EQ(parts_of(f), (strings{"S0H1", u64(id), u64(id ^ 0x55)}));
    heartbeat hb;
    ASSERT_TRUE(decode_heartbeat(f, hb));
    EXPECT_EQ(hb.broker_id, id);
    EXPECT_EQ(hb.sequence, id ^ 0x55);
  }
}

// ---- Majordomo 0.1, frames built by hand from RFC 7 ----

TEST(codec_mdp, client_request_from_req_or_dealer) {
  // A REQ socket adds the delimiter itself, a DEALER sends it: both arrive identically, under
  // whatever identity the ROUTER gives the peer.
  for (const std::string& peer : {identity, "\x00\x6B\x8B\x45\x67"s, "client-A"s}) {
    frames f;
    push(f, peer);
    for (const auto& p : strings{"", MDPC01, "echo", "hello", "world"}) push(f, p);
    const inbound in = decode_inbound(f);
    ASSERT_EQ(in.kind, inbound_kind::mdp_request);
    EXPECT_EQ(in.service, "echo");
    ASSERT_EQ(in.first, 4u);
    EXPECT_EQ(str(f[4]), "hello");
    EXPECT_EQ(str(f[5]), "world");
  }
  const frames mmi = at_broker({"", MDPC01, "mmi.service", "echo"});
  const inbound one = decode_inbound(mmi);
  ASSERT_EQ(one.kind, inbound_kind::mdp_request);
  EXPECT_EQ(one.service, "mmi.service");
  EXPECT_EQ(one.first, 4u);
  EXPECT_EQ(decode({"", MDPC01, std::string(max_service_name, 'm'), "x"}).kind,
            inbound_kind::mdp_request);
}

TEST(codec_mdp, worker_ready) {
  const frames f = at_broker({"", MDPW01, byte(1), "echo"});
  const inbound in = decode_inbound(f);
  ASSERT_EQ(in.kind, inbound_kind::mdp_ready);
  EXPECT_EQ(in.service, "echo");
}

TEST(codec_mdp, worker_reply_echoes_the_address_of_the_request) {
  // The broker's REQUEST puts the job-id where RFC 7 has the client address ...
  frames req;
  append_mdp_worker_request(req, 0x0000000100000002);
  EXPECT_EQ(parts_of(req), (strings{"", MDPW01, byte(2), u64(0x0000000100000002), ""}));

  // ... and a Majordomo worker echoes it back in its REPLY.
  const inbound in = decode({"", MDPW01, byte(3), str(req[3]), "", "the answer", "part 2"});
  ASSERT_EQ(in.kind, inbound_kind::mdp_reply);
  EXPECT_EQ(in.id, 0x0000000100000002u);
  ASSERT_EQ(in.first, 6u);

  const frames f = at_broker({"", MDPW01, byte(3), u64(9), "", "the answer"});
  const inbound direct = decode_inbound(f);
  ASSERT_EQ(direct.kind, inbound_kind::mdp_reply);
  EXPECT_EQ(direct.id, 9u);
  ASSERT_EQ(direct.first, 6u);
  EXPECT_EQ(str(f[6]), "the answer");
}

TEST(codec_mdp, worker_heartbeat_and_disconnect) {
  EXPECT_EQ(decode({"", MDPW01, byte(4)}).kind, inbound_kind::mdp_heartbeat);
  EXPECT_EQ(decode({"", MDPW01, byte(5)}).kind, inbound_kind::mdp_disconnect);

  for (auto [cmd, kind] : {std::pair{mdp_command::heartbeat, inbound_kind::mdp_heartbeat},
                           std::pair{mdp_command::disconnect, inbound_kind::mdp_disconnect},
                           std::pair{mdp_command::ready, inbound_kind::drop}}) {
    frames f;
    push(f, identity);
    append_mdp_worker_command(f, cmd);
    EXPECT_EQ(parts_of(f), (strings{identity, "", MDPW01, byte(static_cast<std::uint8_t>(cmd))}));
    // READY without its service frame is not a valid message.
    EXPECT_EQ(decode_inbound(f).kind, kind);
  }
}

TEST(codec_mdp, client_reply_encoder) {
  frames f;
  append_mdp_client_reply(f, "echo");
  EXPECT_EQ(parts_of(f), (strings{"", MDPC01, "echo"}));
}

// ---- malformed at the broker: framing and header ----

TEST(codec_malformed, no_frames_or_only_identity_is_dropped) {
  EXPECT_EQ(decode_inbound(frames{}).kind, inbound_kind::drop);
  EXPECT_EQ(decode_inbound(make({identity})).kind, inbound_kind::drop);
  EXPECT_EQ(decode({""}).kind, inbound_kind::drop);
  EXPECT_EQ(decode({S0C1}).kind, inbound_kind::drop);
}

TEST(codec_malformed, missing_or_non_empty_delimiter_is_dropped) {
  for (const std::string& header : {S0C1, S0W1, MDPC01, MDPW01, "S0C2"s, "S0W9"s}) {
    // delimiter missing: the header sits where the delimiter belongs
    EXPECT_EQ(decode({header, byte(1), u64(5), "echo", u32(0)}).kind, inbound_kind::drop) << header;
    EXPECT_EQ(decode({header, byte(4)}).kind, inbound_kind::drop) << header;
    // delimiter not empty
    EXPECT_EQ(decode({"x", header, byte(1), u64(5), "echo", u32(0)}).kind, inbound_kind::drop)
        << header;
    EXPECT_EQ(decode({"\0"s, header, byte(4)}).kind, inbound_kind::drop) << header;
  }
}

TEST(codec_malformed, unrecognised_header_is_dropped) {
  for (const std::string& header :
       {""s, "S0C"s, "S0W"s, "S0C11"s, "S0W10"s, "s0c1"s, "S0H1"s, "S0X1"s, "S1C1"s, "MDPC02"s,
        "MDPW02"s, "MDPC0"s, "MDPW011"s, "mdpc01"s, "GET / HTTP/1.1"s, "\xFF\xFF\xFF\xFF"s}) {
    EXPECT_EQ(decode({"", header, byte(1), u64(5), "echo", u32(0)}).kind, inbound_kind::drop)
        << header;
    EXPECT_EQ(decode({"", header}).kind, inbound_kind::drop) << header;
  }
}

TEST(codec_malformed, unknown_client_version_is_505_with_the_request_id_when_readable) {
  for (const std::string& header : {"S0C3"s, "S0C0"s, "S0C9"s, "S0C\xFF"s}) {
    inbound in = decode({"", header, byte(1), u64(0xCAFE), "echo", u32(0)});
    ASSERT_EQ(in.kind, inbound_kind::client_error) << header;
    EXPECT_EQ(in.status, st::bad_version);
    EXPECT_EQ(in.id, 0xCAFEu);
    EXPECT_FALSE(in.reason.empty());

    in = decode({"", header, "\x01\x02"s, u64(0xBEEF)});  // any command, frame 4 is 8 bytes
    ASSERT_EQ(in.kind, inbound_kind::client_error) << header;
    EXPECT_EQ(in.status, st::bad_version);
    EXPECT_EQ(in.id, 0xBEEFu);

    in = decode({"", header, byte(1), "1234567", "echo", u32(0)});  // frame 4 is 7 bytes
    ASSERT_EQ(in.kind, inbound_kind::client_error) << header;
    EXPECT_EQ(in.status, st::bad_version);
    EXPECT_EQ(in.id, 0u);

    in = decode({"", header});  // nothing after the header
    ASSERT_EQ(in.kind, inbound_kind::client_error) << header;
    EXPECT_EQ(in.status, st::bad_version);
    EXPECT_EQ(in.id, 0u);
  }
}

TEST(codec_malformed, unknown_worker_version_is_505) {
  for (const std::string& header : {"S0W9"s, "S0W3"s, "S0W0"s}) {
    inbound in = decode({"", header, byte(1), u32(1), u32(0), byte(0), "echo"});
    ASSERT_EQ(in.kind, inbound_kind::worker_error) << header;
    EXPECT_EQ(in.status, st::bad_version);
    EXPECT_FALSE(in.reason.empty());
    in = decode({"", header});
    ASSERT_EQ(in.kind, inbound_kind::worker_error) << header;
    EXPECT_EQ(in.status, st::bad_version);
  }
}

// ---- malformed native client messages: REPLY 400/501 with the id when frame 4 is 8 bytes ----

TEST(codec_client_malformed, missing_or_wrong_sized_command_frame_is_400) {
  inbound in = decode({"", S0C1});
  ASSERT_EQ(in.kind, inbound_kind::client_error);
  EXPECT_EQ(in.status, st::bad_request);
  EXPECT_EQ(in.id, 0u);
  EXPECT_FALSE(in.reason.empty());

  for (const std::string& cmd : {""s, "\x01\x01"s, "\x00\x01"s}) {
    in = decode({"", S0C1, cmd});
    ASSERT_EQ(in.kind, inbound_kind::client_error);
    EXPECT_EQ(in.status, st::bad_request);
    EXPECT_EQ(in.id, 0u);

    in = decode({"", S0C1, cmd, u64(31337), "echo", u32(0)});
    ASSERT_EQ(in.kind, inbound_kind::client_error);
    EXPECT_EQ(in.status, st::bad_request);
    EXPECT_EQ(in.id, 31337u) << "request-id is readable: frame 4 is 8 bytes";
  }
}

TEST(codec_client_malformed, unknown_command_is_501) {
  for (int cmd : {0x00, 0x05, 0x06, 0x7F, 0x80, 0xFF}) {
    inbound in = decode({"", S0C1, byte(cmd), u64(99), "echo", u32(0)});
    ASSERT_EQ(in.kind, inbound_kind::client_error) << int{cmd};
    EXPECT_EQ(in.status, st::not_implemented) << int{cmd};
    EXPECT_EQ(in.id, 99u);
    EXPECT_FALSE(in.reason.empty());

    in = decode({"", S0C1, byte(cmd)});
    ASSERT_EQ(in.kind, inbound_kind::client_error) << int{cmd};
    EXPECT_EQ(in.status, st::not_implemented) << int{cmd};
    EXPECT_EQ(in.id, 0u);

    in = decode({"", S0C1, byte(cmd), "short"});
    ASSERT_EQ(in.kind, inbound_kind::client_error) << int{cmd};
    EXPECT_EQ(in.id, 0u);
  }
}

TEST(codec_client_malformed, broker_to_client_commands_are_not_accepted_from_a_client) {
  // REPLY (0x02) and PONG (0x04) only travel broker → client.
  for (int cmd : {0x02, 0x04}) {
    const inbound in = decode({"", S0C1, byte(cmd), u64(12), u16(200), "ok"});
    ASSERT_EQ(in.kind, inbound_kind::client_error) << int{cmd};
    EXPECT_EQ(in.id, 12u);
  }
}

TEST(codec_client_malformed, request_missing_fields_is_400) {
  struct tc {
    strings after_command;
    std::uint64_t id;
  };
  const std::vector<tc> cases = {
      {{}, 0},                   // no request-id
      {{u64(7)}, 7},             // no service
      {{u64(7), "echo"}, 7},     // no timeout
      {{"1234567"}, 0},          // short id, nothing else
      {{"", "echo", u32(0)}, 0}  // empty request-id
  };
  for (const tc& t : cases) {
    strings parts = {"", S0C1, byte(1)};
    parts.insert(parts.end(), t.after_command.begin(), t.after_command.end());
    const inbound in = decode(parts);
    ASSERT_EQ(in.kind, inbound_kind::client_error) << t.after_command.size();
    EXPECT_EQ(in.status, st::bad_request);
    EXPECT_EQ(in.id, t.id);
    EXPECT_FALSE(in.reason.empty());
  }
}

TEST(codec_client_malformed, request_wrong_field_sizes_is_400) {
  struct tc {
    std::string id, service, timeout;
    std::uint64_t expected_id;
  };
  const std::vector<tc> cases = {
      {"1234567", "echo", u32(0), 0},                               // request-id 7 bytes
      {"123456789", "echo", u32(0), 0},                             // request-id 9 bytes
      {u64(5), "echo", "\x00\x00\x01"s, 5},                         // timeout 3 bytes
      {u64(5), "echo", "\x00\x00\x00\x00\x01"s, 5},                 // timeout 5 bytes
      {u64(5), "echo", "", 5},                                      // timeout empty
      {u64(5), "", u32(0), 5},                                      // empty service
      {u64(5), std::string(max_service_name + 1, 's'), u32(0), 5},  // 256-byte service
      {u64(6), std::string(1000, 's'), u32(0), 6},                  // far too long
  };
  for (const tc& t : cases) {
    const inbound in = decode({"", S0C1, byte(1), t.id, t.service, t.timeout, "body"});
    ASSERT_EQ(in.kind, inbound_kind::client_error)
        << t.id.size() << "/" << t.service.size() << "/" << t.timeout.size();
    EXPECT_EQ(in.status, st::bad_request);
    EXPECT_EQ(in.id, t.expected_id);
  }
  // The boundaries that are valid.
  EXPECT_EQ(decode({"", S0C1, byte(1), u64(5), std::string(max_service_name, 's'), u32(0)}).kind,
            inbound_kind::client_request);
  EXPECT_EQ(decode({"", S0C1, byte(1), u64(5), "s", u32(0)}).kind, inbound_kind::client_request);
}

// ---- malformed native worker messages: DISCONNECT with a status ----

TEST(codec_worker_malformed, missing_or_wrong_sized_command_frame_is_400) {
  inbound in = decode({"", S0W1});
  ASSERT_EQ(in.kind, inbound_kind::worker_error);
  EXPECT_EQ(in.status, st::bad_request);
  EXPECT_FALSE(in.reason.empty());
  for (const std::string& cmd : {""s, "\x01\x00"s, "\x04\x04"s}) {
    in = decode({"", S0W1, cmd, u32(1), u32(0), byte(0), "echo"});
    ASSERT_EQ(in.kind, inbound_kind::worker_error);
    EXPECT_EQ(in.status, st::bad_request);
  }
}

TEST(codec_worker_malformed, unknown_command_is_501) {
  for (int cmd : {0x00, 0x08, 0x10, 0x7F, 0xFF}) {
    const inbound in = decode({"", S0W1, byte(cmd)});
    ASSERT_EQ(in.kind, inbound_kind::worker_error) << int{cmd};
    EXPECT_EQ(in.status, st::not_implemented) << int{cmd};
    EXPECT_FALSE(in.reason.empty());
  }
}

TEST(codec_worker_malformed, broker_to_worker_commands_are_not_accepted_from_a_worker) {
  // REQUEST (0x02) and WELCOME (0x06) only travel broker → worker.
  EXPECT_EQ(decode({"", S0W1, byte(2), u64(1), "echo", u32(10)}).kind, inbound_kind::worker_error);
  EXPECT_EQ(decode({"", S0W1, byte(6), u32(1000), u32(3), "tcp://*:5557", u64(1)}).kind,
            inbound_kind::worker_error);
}

strings ready(const std::string& concurrency, const std::string& heartbeat,
              const std::string& flags, const strings& services) {
  strings p = {"", S0W1, byte(1), concurrency, heartbeat, flags};
  p.insert(p.end(), services.begin(), services.end());
  return p;
}

void expect_worker_error(const strings& parts, std::uint16_t code, const char* what) {
  const inbound in = decode(parts);
  EXPECT_EQ(in.kind, inbound_kind::worker_error) << what;
  EXPECT_EQ(in.status, code) << what;
  EXPECT_FALSE(in.reason.empty()) << what;
}

TEST(codec_worker_malformed, ready_concurrency_out_of_range_is_400) {
  expect_worker_error(ready(u32(0), u32(0), byte(0), {"echo"}), st::bad_request, "concurrency 0");
  expect_worker_error(ready(u32(max_concurrency + 1), u32(0), byte(0), {"echo"}), st::bad_request,
                      "concurrency 1025");
  expect_worker_error(ready(u32(~0u), u32(0), byte(0), {"echo"}), st::bad_request,
                      "concurrency 2^32-1");
  EXPECT_EQ(decode(ready(u32(1024), u32(0), byte(0), {"echo"})).kind, inbound_kind::worker_ready);
  EXPECT_EQ(decode(ready(u32(1), u32(0), byte(0), {"echo"})).kind, inbound_kind::worker_ready);
}

TEST(codec_worker_malformed, ready_unknown_flag_bits_is_400) {
  for (int flags : {0x02, 0x03, 0x04, 0x80, 0xFE, 0xFF}) {
    const inbound in = decode(ready(u32(1), u32(0), byte(flags), {"echo"}));
    EXPECT_EQ(in.kind, inbound_kind::worker_error) << int{flags};
    EXPECT_EQ(in.status, st::bad_request) << int{flags};
  }
}

TEST(codec_worker_malformed, ready_missing_or_wrong_sized_fields_is_400) {
  expect_worker_error({"", S0W1, byte(1)}, st::bad_request, "no fields");
  expect_worker_error({"", S0W1, byte(1), u32(1)}, st::bad_request, "only concurrency");
  expect_worker_error({"", S0W1, byte(1), u32(1), u32(0)}, st::bad_request, "no flags");
  expect_worker_error(ready(u32(1), u32(0), byte(0), {}), st::bad_request, "no service");
  expect_worker_error(ready("\x00\x00\x01"s, u32(0), byte(0), {"echo"}), st::bad_request,
                      "concurrency 3 bytes");
  expect_worker_error(ready(u64(1), u32(0), byte(0), {"echo"}), st::bad_request,
                      "concurrency 8 bytes");
  expect_worker_error(ready(u32(1), "\x00\x00\x00\x00\x00"s, byte(0), {"echo"}), st::bad_request,
                      "heartbeat 5 bytes");
  expect_worker_error(ready(u32(1), u32(0), "", {"echo"}), st::bad_request, "flags empty");
  expect_worker_error(ready(u32(1), u32(0), "\x00\x01"s, {"echo"}), st::bad_request,
                      "flags 2 bytes");
}

// Service names are printable UTF-8 without control characters, 1-255 bytes (protocol.md, framing
// rules): anything else in a REQUEST or READY is 400 "invalid service name" in every framing.
const strings bad_names = {"bad\xff"s,
                           "a\nb"s,
                           "a\x1b"s
                           "b"s,
                           ""s,
                           std::string(256, 's'),
                           "\xc0\xaf"s,
                           "\xed\xa0\x80"s,
                           "a\x7f"s,
                           "a\xc2\x85"s,
                           "a\tb"s};

TEST(codec_service_name, client_request_with_an_invalid_name_is_400) {
  for (const std::string& name : bad_names) {
    const frames f = at_broker({"", S0C1, byte(1), u64(9), name, u32(0), "body"});
    const inbound in = decode_inbound(f);
    ASSERT_EQ(in.kind, inbound_kind::client_error) << name.size();
    EXPECT_EQ(in.status, st::bad_request);
    EXPECT_EQ(in.reason, "invalid service name");
    EXPECT_EQ(in.id, 9u);
    EXPECT_EQ(in.service, name) << "the name is kept for the broker's (escaped) log";
  }
  EXPECT_EQ(decode({"", S0C1, byte(1), u64(9), "caf\xc3\xa9 \xe2\x82\xac", u32(0)}).kind,
            inbound_kind::client_request);
}

TEST(codec_service_name, ready_with_an_invalid_name_is_400_and_registers_nothing) {
  for (const std::string& name : bad_names) {
    const inbound in = decode(ready(u32(1), u32(0), byte(0), {"echo", name}));
    ASSERT_EQ(in.kind, inbound_kind::worker_error) << name.size();
    EXPECT_EQ(in.status, st::bad_request);
    EXPECT_EQ(in.reason, "invalid service name");
  }
  EXPECT_EQ(decode(ready(u32(1), u32(0), byte(0), {"\xf0\x9f\x98\x80"})).kind,
            inbound_kind::worker_ready);
}

TEST(codec_service_name, majordomo_request_with_an_invalid_name_is_an_error_in_majordomo_form) {
  for (const std::string& name : bad_names) {
    const frames f = at_broker({"", MDPC01, name, "body"});
    const inbound in = decode_inbound(f);
    ASSERT_EQ(in.kind, inbound_kind::mdp_client_error) << name.size();
    EXPECT_EQ(in.status, st::bad_request);
    EXPECT_EQ(in.reason, "invalid service name");
    EXPECT_EQ(in.service, name) << "echoed in the MDP reply's service frame";
  }
  EXPECT_EQ(decode({"", MDPC01, "bad\xff"}).kind, inbound_kind::drop) << "no body: not a request";
}

TEST(codec_service_name, majordomo_ready_with_an_invalid_name_is_disconnected) {
  for (const std::string& name : bad_names) {
    const inbound in = decode({"", MDPW01, byte(1), name});
    ASSERT_EQ(in.kind, inbound_kind::mdp_worker_error) << name.size();
    EXPECT_EQ(in.status, st::bad_request);
    EXPECT_EQ(in.reason, "invalid service name");
  }
}

TEST(codec_worker_malformed, ready_bad_service_name_is_400) {
  expect_worker_error(ready(u32(1), u32(0), byte(0), {""}), st::bad_request, "empty service");
  expect_worker_error(ready(u32(1), u32(0), byte(0), {"echo", ""}), st::bad_request,
                      "empty second service");
  expect_worker_error(ready(u32(1), u32(0), byte(0), {std::string(max_service_name + 1, 'x')}),
                      st::bad_request, "256-byte service");
  expect_worker_error(
      ready(u32(1), u32(0), byte(0), {"a", "b", std::string(max_service_name + 1, 'x')}),
      st::bad_request, "256-byte third service");
  const frames longest =
      at_broker(ready(u32(1), u32(0), byte(0), {std::string(max_service_name, 'x')}));
  const inbound ok = decode_inbound(longest);
  EXPECT_EQ(ok.kind, inbound_kind::worker_ready);
  EXPECT_EQ(ok.service.size(), max_service_name);
}

TEST(codec_worker_malformed, ready_with_too_many_services_is_400) {
  // At most 64 services per READY; an invalid READY is answered DISCONNECT 400 (worker state table:
  // "unknown | READY invalid / reserved service | DISCONNECT 400").
  strings services;
  for (std::size_t i = 0; i <= max_services_per_worker; ++i)
    services.push_back("s" + std::to_string(i));
  ASSERT_EQ(services.size(), 65u);
  expect_worker_error(ready(u32(1), u32(0), byte(0), services), st::bad_request, "65 services");
  services.pop_back();
  EXPECT_EQ(decode(ready(u32(1), u32(0), byte(0), services)).kind, inbound_kind::worker_ready);
}

TEST(codec_worker_malformed, reply_with_short_fields_is_400) {
  expect_worker_error({"", S0W1, byte(3)}, st::bad_request, "no fields");
  expect_worker_error({"", S0W1, byte(3), u64(1)}, st::bad_request, "no status");
  expect_worker_error({"", S0W1, byte(3), u64(1), u16(200)}, st::bad_request, "no message");
  expect_worker_error({"", S0W1, byte(3), "1234567", u16(200), "ok"}, st::bad_request,
                      "job-id 7 bytes");
  expect_worker_error({"", S0W1, byte(3), "123456789", u16(200), "ok"}, st::bad_request,
                      "job-id 9 bytes");
  expect_worker_error({"", S0W1, byte(3), u64(1), byte(200), "ok"}, st::bad_request,
                      "status 1 byte");
  expect_worker_error({"", S0W1, byte(3), u64(1), u32(200), "ok"}, st::bad_request,
                      "status 4 bytes");
}

// ---- malformed Majordomo: dropped ----

TEST(codec_mdp_malformed, client_request_without_service_is_dropped) {
  EXPECT_EQ(decode({"", MDPC01}).kind, inbound_kind::drop);
  // A request with a body and an invalid name is answered (CodecServiceName above).
  EXPECT_EQ(decode({"", MDPC01, "", "body"}).kind, inbound_kind::mdp_client_error);
  EXPECT_EQ(decode({"", MDPC01, std::string(max_service_name + 1, 'm'), "body"}).kind,
            inbound_kind::mdp_client_error);
}

TEST(codec_mdp_malformed, client_request_without_body_is_not_a_request) {
  // protocol.md: client → broker REQUEST is "" · MDPC01 · service · body (1+ frames).
  EXPECT_EQ(decode({"", MDPC01, "echo"}).kind, inbound_kind::drop);
}

TEST(codec_mdp_malformed, worker_command_frame_is_dropped_when_wrong) {
  EXPECT_EQ(decode({"", MDPW01}).kind, inbound_kind::drop);
  EXPECT_EQ(decode({"", MDPW01, "", "echo"}).kind, inbound_kind::drop);
  EXPECT_EQ(decode({"", MDPW01, "\x01\x00"s, "echo"}).kind, inbound_kind::drop);
  for (int cmd : {0x00, 0x06, 0x07, 0xFF})
    EXPECT_EQ(decode({"", MDPW01, byte(cmd), "echo"}).kind, inbound_kind::drop) << int{cmd};
  // REQUEST only travels broker → worker.
  EXPECT_EQ(decode({"", MDPW01, byte(2), u64(1), "", "body"}).kind, inbound_kind::drop);
}

TEST(codec_mdp_malformed, ready_without_one_service_is_dropped) {
  EXPECT_EQ(decode({"", MDPW01, byte(1)}).kind, inbound_kind::drop);
  // One service frame with an invalid name: DISCONNECT (CodecServiceName above).
  EXPECT_EQ(decode({"", MDPW01, byte(1), ""}).kind, inbound_kind::mdp_worker_error);
  EXPECT_EQ(decode({"", MDPW01, byte(1), std::string(max_service_name + 1, 'x')}).kind,
            inbound_kind::mdp_worker_error);
  EXPECT_EQ(decode({"", MDPW01, byte(1), std::string(max_service_name, 'x')}).kind,
            inbound_kind::mdp_ready);
  // One worker socket serves one service.
  EXPECT_EQ(decode({"", MDPW01, byte(1), "echo", "upper"}).kind, inbound_kind::drop);
}

TEST(codec_mdp_malformed, reply_without_address_or_empty_frame_is_dropped) {
  EXPECT_EQ(decode({"", MDPW01, byte(3)}).kind, inbound_kind::drop);
  EXPECT_EQ(decode({"", MDPW01, byte(3), u64(1)}).kind, inbound_kind::drop);
  EXPECT_EQ(decode({"", MDPW01, byte(3), u64(1), "body"}).kind, inbound_kind::drop);
  EXPECT_EQ(decode({"", MDPW01, byte(3), u64(1), "x", "body"}).kind, inbound_kind::drop);
}

// RFC 7: any client address is valid in a REPLY. One that is not 8 bytes cannot be a job-id the
// broker issued: it decodes to an id that matches no request (so an unregistered worker still gets
// DISCONNECT, and a registered one has its reply dropped as unknown).
// A worker's DISCONNECT may carry a status; only 204 means something (it holds nothing). A status
// that is not two bytes reads as none, so a broken peer cannot make it mean 204.
TEST(codec_worker, disconnect_status_is_read_only_when_well_formed) {
  EXPECT_EQ(decode({"", S0W1, byte(5), u16(204), "holding nothing"}).reply_status, 204u);
  EXPECT_EQ(decode({"", S0W1, byte(5)}).reply_status, 0u);
  for (const std::string& bad : {std::string("\xcc"), std::string("\x00\xcc\x00", 3)}) {
    const auto in = decode({"", S0W1, byte(5), bad, ""});
    EXPECT_EQ(in.kind, inbound_kind::worker_disconnect);
    EXPECT_EQ(in.reply_status, 0u);
  }
}

TEST(codec_mdp, reply_with_a_foreign_address_is_a_reply_to_no_request) {
  for (const std::string address : {"1234567", "123456789", ""}) {
    const auto in = decode({"", MDPW01, byte(3), address, "", "body"});
    EXPECT_EQ(in.kind, inbound_kind::mdp_reply) << address;
    EXPECT_EQ(in.id, ~std::uint64_t{0}) << address;
  }
}

// ---- malformed at a native worker ----

TEST(codec_for_worker_malformed, framing_and_header) {
  EXPECT_EQ(decode_for_worker(frames{}).kind, worker_inbound_kind::invalid);
  EXPECT_EQ(decode_for_worker(make({""})).kind, worker_inbound_kind::invalid);
  EXPECT_EQ(decode_for_worker(make({"", S0W1})).kind, worker_inbound_kind::invalid);
  EXPECT_EQ(decode_for_worker(make({S0W1, byte(7)})).kind, worker_inbound_kind::invalid);
  EXPECT_EQ(decode_for_worker(make({"x", S0W1, byte(7)})).kind, worker_inbound_kind::invalid);
  for (const std::string& header : {S0C1, "S0W2"s, "S0W"s, MDPW01, "S0H1"s})
    EXPECT_EQ(decode_for_worker(make({"", header, byte(7)})).kind, worker_inbound_kind::invalid)
        << header;
  EXPECT_EQ(decode_for_worker(make({"", S0W1, ""})).kind, worker_inbound_kind::invalid);
  EXPECT_EQ(decode_for_worker(make({"", S0W1, "\x07\x07"s})).kind, worker_inbound_kind::invalid);
  // An identity frame in front (the ROUTER view) is not what a DEALER receives.
  frames routed;
  push(routed, identity);
  append_worker_stopping(routed);
  EXPECT_EQ(decode_for_worker(routed).kind, worker_inbound_kind::invalid);
}

TEST(codec_for_worker_malformed, commands_that_do_not_travel_to_a_worker) {
  // READY, REPLY and HEARTBEAT travel worker → broker only; 0x00 and 0x08+ are not commands.
  for (int cmd : {0x00, 0x01, 0x03, 0x04, 0x08, 0xFF})
    EXPECT_EQ(decode_for_worker(make({"", S0W1, byte(cmd), u64(1), "x", u32(1)})).kind,
              worker_inbound_kind::invalid)
        << int{cmd};
}

TEST(codec_for_worker_malformed, welcome_with_missing_or_wrong_sized_fields) {
  const auto welcome = [](const strings& fields) {
    strings p = {"", S0W1, byte(6)};
    p.insert(p.end(), fields.begin(), fields.end());
    return decode_for_worker(make(p)).kind;
  };
  EXPECT_EQ(welcome({u32(1000), u32(3), "tcp://*:5557", u64(1)}), worker_inbound_kind::welcome);
  EXPECT_EQ(welcome({}), worker_inbound_kind::invalid);
  EXPECT_EQ(welcome({u32(1000), u32(3), "tcp://*:5557"}), worker_inbound_kind::invalid);
  EXPECT_EQ(welcome({u32(1000), u32(3), "tcp://*:5557", "1234567"}), worker_inbound_kind::invalid);
  EXPECT_EQ(welcome({"\x00\x03\xE8"s, u32(3), "tcp://*:5557", u64(1)}),
            worker_inbound_kind::invalid);
  EXPECT_EQ(welcome({u32(1000), u16(3), "tcp://*:5557", u64(1)}), worker_inbound_kind::invalid);
}

TEST(codec_for_worker_malformed, request_with_missing_or_wrong_sized_fields) {
  const auto request = [](const strings& fields) {
    strings p = {"", S0W1, byte(2)};
    p.insert(p.end(), fields.begin(), fields.end());
    return decode_for_worker(make(p)).kind;
  };
  EXPECT_EQ(request({u64(1), "echo", u32(5)}), worker_inbound_kind::request);
  EXPECT_EQ(request({}), worker_inbound_kind::invalid);
  EXPECT_EQ(request({u64(1), "echo"}), worker_inbound_kind::invalid);
  EXPECT_EQ(request({"1234567", "echo", u32(5)}), worker_inbound_kind::invalid);
  EXPECT_EQ(request({u64(1), "", u32(5)}), worker_inbound_kind::invalid);
  EXPECT_EQ(request({u64(1), std::string(max_service_name + 1, 'x'), u32(5)}),
            worker_inbound_kind::invalid);
  EXPECT_EQ(request({u64(1), "echo", "\x00\x00\x05"s}), worker_inbound_kind::invalid);
}

// ---- malformed at a native client ----

TEST(codec_for_client_malformed, framing_header_and_command) {
  EXPECT_EQ(decode_for_client(frames{}).kind, client_inbound_kind::invalid);
  EXPECT_EQ(decode_for_client(make({""})).kind, client_inbound_kind::invalid);
  EXPECT_EQ(decode_for_client(make({"", S0C1})).kind, client_inbound_kind::invalid);
  EXPECT_EQ(decode_for_client(make({S0C1, byte(4)})).kind, client_inbound_kind::invalid);
  EXPECT_EQ(decode_for_client(make({"x", S0C1, byte(4)})).kind, client_inbound_kind::invalid);
  for (const std::string& header : {S0W1, "S0C2"s, "S0C"s, MDPC01})
    EXPECT_EQ(decode_for_client(make({"", header, byte(4)})).kind, client_inbound_kind::invalid)
        << header;
  EXPECT_EQ(decode_for_client(make({"", S0C1, ""})).kind, client_inbound_kind::invalid);
  EXPECT_EQ(decode_for_client(make({"", S0C1, "\x04\x04"s})).kind, client_inbound_kind::invalid);
  // REQUEST and PING travel client → broker only.
  for (int cmd : {0x00, 0x01, 0x03, 0x05, 0xFF})
    EXPECT_EQ(decode_for_client(make({"", S0C1, byte(cmd), u64(1), u16(200), "ok"})).kind,
              client_inbound_kind::invalid)
        << int{cmd};
}

TEST(codec_for_client_malformed, reply_with_missing_or_wrong_sized_fields) {
  const auto reply = [](const strings& fields) {
    strings p = {"", S0C1, byte(2)};
    p.insert(p.end(), fields.begin(), fields.end());
    return decode_for_client(make(p)).kind;
  };
  EXPECT_EQ(reply({u64(1), u16(200), ""}), client_inbound_kind::reply);
  EXPECT_EQ(reply({}), client_inbound_kind::invalid);
  EXPECT_EQ(reply({u64(1)}), client_inbound_kind::invalid);
  EXPECT_EQ(reply({u64(1), u16(200)}), client_inbound_kind::invalid);  // message is required
  EXPECT_EQ(reply({"1234567", u16(200), "ok"}), client_inbound_kind::invalid);
  EXPECT_EQ(reply({u64(1), byte(200), "ok"}), client_inbound_kind::invalid);
  EXPECT_EQ(reply({u64(1), u32(200), "ok"}), client_inbound_kind::invalid);
}

// ---- malformed broker heartbeats ----

TEST(codec_heartbeat_malformed, anything_but_exactly_s0h1_id_sequence_is_rejected) {
  const std::vector<strings> bad = {
      {},
      {"S0H1"},
      {"S0H1", u64(1)},
      {"S0H1", u64(1), u64(2), "extra"},
      {"S0H2", u64(1), u64(2)},
      {"S0W1", u64(1), u64(2)},
      {"S0H", u64(1), u64(2)},
      {"S0H1x", u64(1), u64(2)},
      {"S0H1", "1234567", u64(2)},
      {"S0H1", u64(1), "123456789"},
      {"S0H1", u32(1), u32(2)},
      {"", "S0H1", u64(1), u64(2)},
  };
  for (const strings& parts : bad) {
    heartbeat hb;
    EXPECT_FALSE(decode_heartbeat(make(parts), hb)) << parts.size();
  }
}

// ---- randomized robustness ----

// Deterministic across platforms: only the engine's raw output is used, no distributions.
class generator {
 public:
  explicit generator(std::uint64_t seed) : rng_(seed) {}

  std::size_t below(std::size_t n) { return static_cast<std::size_t>(rng_() % n); }
  bool chance(std::size_t percent) { return below(100) < percent; }

  std::string random_bytes(std::size_t n) {
    std::string s(n, '\0');
    for (auto& c : s) c = static_cast<char>(static_cast<unsigned char>(rng_() & 0xFF));
    return s;
  }

  // A frame at logical position p: -1 identity, 0 delimiter, 1 header, 2 command, 3+ fields.
  std::string frame(int p, bool pub_view) {
    static const std::array<std::string, 17> headers = {
        "S0C1",
        "S0W1",
        "MDPC01",
        "MDPW01",
        "S0H1",
        "S0C2",
        "S0W9",
        "S0C",
        "S0W",
        "MDPC02",
        "",
        "S0C11",
        "S0W1\0"s,
        "X",
        "S0C3x",
        "S0W2\x04",
        "S0C2\x01" + std::string(12, '\0') + "\x01s"};
    if (p == 0 && chance(80)) return "";
    if (p == 1 && chance(80)) return headers[below(headers.size())];
    if (p == 2 && !pub_view && chance(80))
      return byte(static_cast<std::uint8_t>(chance(90) ? below(9) : below(256)));
    if (p >= 2 && chance(60)) return field();
    return random_bytes(below(41));
  }

  // A well-formed message of any kind in the spec (without identity), then 0-3 random edits:
  // drop, insert, resize or replace a frame, or flip a byte.
  strings mutated_valid() {
    strings m = valid();
    const std::size_t edits = below(4);
    for (std::size_t e = 0; e < edits; ++e) {
      const std::size_t at = m.empty() ? 0 : below(m.size());
      switch (below(5)) {
        case 0:
          if (!m.empty()) m.erase(m.begin() + static_cast<std::ptrdiff_t>(at));
          break;
        case 1:
          m.insert(m.begin() + static_cast<std::ptrdiff_t>(at), field());
          break;
        case 2:
          if (!m.empty()) m[at].resize(below(41), 'r');
          break;
        case 3:
          if (!m.empty()) m[at] = field();
          break;
        default:
          if (!m.empty() && !m[at].empty())
            m[at][below(m[at].size())] ^= static_cast<char>(1 << below(8));
          break;
      }
    }
    return m;
  }

  strings valid() {
    const std::string service = chance(90) ? "svc" + std::to_string(below(10))
                                           : std::string(1 + below(max_service_name), 'n');
    strings m;
    const std::uint64_t v2 = below(4);  // a quarter of the native messages in S0/2 framing
    if (v2 == 0) return with_body(valid_v2(service));
    switch (below(17)) {
      case 0:
        m = {"", "S0C1", byte(1), u64(rng_()), service, u32(static_cast<std::uint32_t>(rng_()))};
        break;
      case 1:
        m = {"", "S0C1", byte(3)};
        break;
      case 2: {
        m = {"",
             "S0W1",
             byte(1),
             u32(static_cast<std::uint32_t>(1 + below(max_concurrency))),
             u32(static_cast<std::uint32_t>(below(5000))),
             byte(static_cast<int>(below(2)))};
        const std::size_t services = 1 + below(chance(95) ? 4 : max_services_per_worker);
        for (std::size_t i = 0; i < services; ++i) m.push_back(service + std::to_string(i));
        break;
      }
      case 3:
        m = {"",
             "S0W1",
             byte(3),
             u64(rng_()),
             u16(static_cast<std::uint16_t>(200 + below(400))),
             "message"};
        break;
      case 4:
        m = {"", "S0W1", byte(4)};
        break;
      case 5:
        m = chance(50) ? strings{"", "S0W1", byte(5)}
                       : strings{"", "S0W1", byte(5), u16(400), "unknown worker"};
        break;
      case 6:
        m = {"", "S0W1", byte(7)};
        break;
      case 7:
        m = {"", "S0W1", byte(6), u32(1000), u32(3), "tcp://*:5557", u64(rng_())};
        break;
      case 8:
        m = {"",          "S0W1",  byte(2),
             u64(rng_()), service, u32(1 + static_cast<std::uint32_t>(below(9)))};
        break;
      case 9:
        m = {"", "S0C1", byte(2), u64(rng_()), u16(200), "ok"};
        break;
      case 10:
        m = {"", "S0C1", byte(4)};
        break;
      case 11:
        m = {"S0H1", u64(rng_()), u64(rng_())};
        break;
      case 12:
        m = {"", "MDPC01", service};
        break;
      case 13:
        m = {"", "MDPW01", byte(1), service};
        break;
      case 14:
        m = {"", "MDPW01", byte(3), u64(rng_()), ""};
        break;
      case 15:
        m = {"", "MDPW01", byte(4)};
        break;
      default:
        m = {"", "MDPW01", byte(5)};
        break;
    }
    return with_body(std::move(m));
  }

  // A well-formed S0/2 message: "" · packed header frame.
  strings valid_v2(const std::string& service) {
    const auto u = [&](std::size_t bits) { return rng_() & ((std::uint64_t{1} << bits) - 1); };
    switch (below(15)) {
      case 14:  // worker CONFIG (its version), and the broker's CONFIG
        return {"", chance(50) ? packed("S0W2", 8, u64(rng_()))
                               : packed("S0W2", 8,
                                        u16(200) + u64(rng_()) + u16(1) + s8(service) + u32(5000) +
                                            u32(10) + u32(2) + byte(static_cast<int>(below(3))))};
      case 11:
        return {"", packed("S0C2", 5, "")};  // client HELLO
      case 12: {  // client WELCOME: the family's frontends and idempotent services
        std::string fields = u64(rng_()) + u16(2) + s16("tcp://a:5555") + s16("ipc:///x") + u16(1);
        return {"", packed("S0C2", 6, fields + s8(service))};
      }
      case 13:  // worker WELCOME with the family's backends
        return {"", packed("S0W2", 6,
                           u32(5000) + u32(3) + u32(1000) + u64(rng_()) + s16("tcp://*:5557") +
                               u16(1) + s16("tcp://b:5556"))};
      case 0:
        return {"", packed("S0C2", 1,
                           u64(rng_()) + u32(static_cast<std::uint32_t>(u(32))) + s8(service))};
      case 1:
        return {"", packed("S0C2", 3, "")};
      case 2: {
        std::string fields = u32(static_cast<std::uint32_t>(1 + below(max_concurrency))) +
                             u32(static_cast<std::uint32_t>(below(5000))) +
                             byte(static_cast<int>(below(2)));
        const std::size_t services = 1 + below(chance(95) ? 4 : max_services_per_worker);
        for (std::size_t i = 0; i < services; ++i) fields += s8(service + std::to_string(i));
        return {"", packed("S0W2", 1, fields)};
      }
      case 3:
        return {"", packed("S0W2", 3,
                           u64(rng_()) + u16(static_cast<std::uint16_t>(200 + below(400))) +
                               s16("message"))};
      case 4:
        return {"", packed("S0W2", 4, "")};
      case 5:
        return {"", packed("S0W2", 5, chance(50) ? "" : u16(400) + s16("unknown worker"))};
      case 6:
        return {"", packed("S0W2", 7, "")};
      case 7:
        return {"", packed("S0W2", 6,
                           u32(5000) + u32(3) + u32(1000) + u64(rng_()) + s16("tcp://*:5557"))};
      case 8:
        return {"",
                packed("S0W2", 2,
                       u64(rng_()) + u32(1 + static_cast<std::uint32_t>(below(9))) + s8(service))};
      case 9:
        return {"", packed("S0C2", 2, u64(rng_()) + u16(200) + s16("ok"))};
      default:
        return {"", packed("S0C2", 4, "")};
    }
  }

  strings with_body(strings m) {
    const std::size_t body = below(4);
    for (std::size_t i = 0; i < body; ++i) m.push_back(random_bytes(below(41)));
    return m;
  }

  // A field-shaped frame: an integer of a plausible width and value, empty, or a long name.
  std::string field() {
    const std::size_t r = below(100);
    if (r < 10) return "";
    if (r < 13) return std::string(chance(50) ? 255 : 256, 's');
    if (r < 25) return byte(static_cast<std::uint8_t>(below(3)));
    static const std::array<std::size_t, 6> widths = {2, 4, 4, 8, 8, 7};
    const std::size_t w = widths[below(widths.size())];
    if (w == 4 && chance(70)) return u32(static_cast<std::uint32_t>(below(1100)));
    if (r < 60) return random_bytes(w);
    return random_bytes(1 + below(40));
  }

 private:
  std::mt19937_64 rng_;
};

// inside(): a decoded view lies in its frames (support/fuzz_frames.hpp).

// The spec's rule, independently of the codec: 1-255 bytes of UTF-8 (no overlongs, surrogates or
// code points above U+10FFFF) without C0 controls, DEL or C1 controls.
bool valid_name(std::string_view s) {
  if (s.empty() || s.size() > max_service_name) return false;
  for (std::size_t i = 0; i < s.size();) {
    const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[i + k]); };
    const unsigned char c = b(0);
    std::size_t n;
    std::uint32_t cp;
    if (c < 0x80) {
      n = 1;
      cp = c;
    } else if (c >= 0xc2 && c <= 0xdf) {
      n = 2;
      cp = c & 0x1fu;
    } else if (c >= 0xe0 && c <= 0xef) {
      n = 3;
      cp = c & 0x0fu;
    } else if (c >= 0xf0 && c <= 0xf4) {
      n = 4;
      cp = c & 0x07u;
    } else {
      return false;
    }
    if (i + n > s.size()) return false;
    for (std::size_t k = 1; k < n; ++k) {
      if ((b(k) & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (b(k) & 0x3fu);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff))) return false;
    if (cp >= 0xd800 && cp <= 0xdfff) return false;
    if (cp < 0x20 || (cp >= 0x7f && cp < 0xa0)) return false;
    i += n;
  }
  return true;
}
bool valid_service_frame(const zmq::message_t& m) {
  return valid_name(view(m));
}

// What protocol.md promises about any message a decoder accepts. Returns an explanation, or ""
// when every promise holds.
std::string check_inbound(const frames& f, const inbound& in) {
  if (!inside(in.service, f)) return "service view outside the frames";
  const auto header = [&] { return f.size() > 2 ? str(f[2]) : std::string(); };
  switch (in.kind) {
    case inbound_kind::drop:
      return "";
    case inbound_kind::client_error: {
      if (in.reason.empty()) return "client_error without a reason";
      if (in.status != st::bad_request && in.status != st::too_large &&
          in.status != st::not_implemented && in.status != st::bad_version)
        return "client_error with status " + std::to_string(in.status);
      if (f.size() < 3 || f[1].size() != 0 || header().size() < 4 ||
          header().substr(0, 3) != "S0C" || (header()[3] == '1' && header().size() != 4))
        return "client_error for a message that is not S0C<v>";
      if (header().substr(0, 4) == "S0C2") {  // S0/2: the id is the first field, when present
        const std::uint64_t expected = header().size() >= 13 ? be_read(header().substr(5, 8)) : 0;
        if (in.id != expected || in.version != 2) return "S0/2 client_error id (or version)";
        return "";
      }
      const std::uint64_t expected = f.size() > 4 && f[4].size() == 8 ? read_u64(f[4]) : 0;
      if (in.id != expected) return "client_error id is not frame 4 (or 0)";
      return "";
    }
    case inbound_kind::worker_error:
      if (in.reason.empty()) return "worker_error without a reason";
      if (in.status != st::bad_request && in.status != st::too_large &&
          in.status != st::not_implemented && in.status != st::bad_version)
        return "worker_error with status " + std::to_string(in.status);
      if (f.size() < 3 || f[1].size() != 0 || header().size() < 4 ||
          header().substr(0, 3) != "S0W" || (header()[3] == '1' && header().size() != 4))
        return "worker_error for a message that is not S0W<v>";
      return "";
    case inbound_kind::client_request:
      if (in.version == 2)
        return header() == packed("S0C2", 1, u64(in.id) + u32(in.timeout_ms) + s8(in.service)) &&
                       valid_name(in.service) && in.first == 3
                   ? ""
                   : "S0/2 client_request that does not match the packed REQUEST layout";
      if (f.size() < 7 || header() != S0C1 || str(f[3]) != byte(1) || f[4].size() != 8 ||
          !valid_service_frame(f[5]) || f[6].size() != 4)
        return "client_request that does not match the REQUEST layout";
      if (in.id != read_u64(f[4]) || in.service != view(f[5]) || in.timeout_ms != read_u32(f[6]) ||
          in.first != 7)
        return "client_request fields differ from the frames";
      return "";
    case inbound_kind::client_ping:
      if (in.version == 2) return header() == "S0C2\x03" && in.first == 3 ? "" : "bad S0/2 ping";
      if (f.size() < 4 || header() != S0C1 || str(f[3]) != byte(3) || in.first != 4)
        return "bad client_ping";
      return "";
    case inbound_kind::worker_config:
      return in.version == 2 && header() == packed("S0W2", 8, u64(in.id))
                 ? ""
                 : "bad S0/2 worker config";
    case inbound_kind::client_hello:
      return in.version == 2 && header() == "S0C2\x05" && f.size() >= 3 ? "" : "bad S0/2 hello";
    case inbound_kind::worker_ready: {
      if (in.version == 2) {
        service_names names{};
        const std::size_t n = ready_services(f, in, names);
        std::string list;
        for (std::size_t i = 0; i < n; ++i) {
          if (!valid_name(names[i]) || !inside(names[i], f)) return "S0/2 READY with a bad service";
          list += s8(names[i]);
        }
        if (n == 0 || in.concurrency < 1 || in.concurrency > max_concurrency ||
            (in.flags & ~flag_idempotent) != 0 || in.service != names[0])
          return "S0/2 worker_ready fields out of range";
        if (header() !=
            packed("S0W2", 1, u32(in.concurrency) + u32(in.heartbeat_ms) + byte(in.flags) + list))
          return "S0/2 worker_ready that does not match the packed READY layout";
        return "";
      }
      if (f.size() < 8 || header() != S0W1 || str(f[3]) != byte(1)) return "bad worker_ready";
      if (in.concurrency < 1 || in.concurrency > max_concurrency)
        return "worker_ready concurrency out of range";
      if ((in.flags & ~flag_idempotent) != 0) return "worker_ready with unknown flags";
      if (f.size() - 7 > max_services_per_worker) return "worker_ready with too many services";
      for (std::size_t i = 7; i < f.size(); ++i)
        if (!valid_service_frame(f[i])) return "worker_ready with an invalid service name";
      if (in.first != 7 || in.service != view(f[7])) return "worker_ready first service";
      return "";
    }
    case inbound_kind::worker_reply:
      if (in.version == 2)
        return inside(in.message, f) &&
                       header() ==
                           packed("S0W2", 3, u64(in.id) + u16(in.reply_status) + s16(in.message)) &&
                       in.first == 3
                   ? ""
                   : "S0/2 worker_reply that does not match the packed REPLY layout";
      if (f.size() < 7 || header() != S0W1 || str(f[3]) != byte(3) || f[4].size() != 8 ||
          f[5].size() != 2 || in.first != 7 || in.message != view(f[6]))
        return "worker_reply that does not match the REPLY layout";
      if (in.id != read_u64(f[4]) || in.reply_status != read_u16(f[5]))
        return "worker_reply fields differ from the frames";
      return "";
    case inbound_kind::worker_heartbeat:
    case inbound_kind::worker_disconnect:
    case inbound_kind::worker_stopping:
      if (in.version == 2)
        return header().size() >= 5 && header().substr(0, 4) == "S0W2" &&
                       (in.kind == inbound_kind::worker_disconnect || header().size() == 5)
                   ? ""
                   : "bad S0/2 worker command";
      if (f.size() < 4 || header() != S0W1 || f[3].size() != 1) return "bad worker command";
      return "";
    case inbound_kind::mdp_request:
      if (f.size() < 4 || header() != MDPC01 || !valid_service_frame(f[3]) ||
          in.service != view(f[3]) || in.first != 4)
        return "bad mdp_request";
      return "";
    case inbound_kind::mdp_ready:
      if (f.size() != 5 || header() != MDPW01 || !valid_service_frame(f[4]) ||
          in.service != view(f[4]))
        return "bad mdp_ready";
      return "";
    case inbound_kind::mdp_reply:
      if (f.size() < 6 || header() != MDPW01 || f[5].size() != 0 ||
          in.id != (f[4].size() == 8 ? read_u64(f[4]) : ~std::uint64_t{0}) || in.first != 6)
        return "bad mdp_reply";
      return "";
    case inbound_kind::mdp_heartbeat:
    case inbound_kind::mdp_disconnect:
      if (f.size() < 4 || header() != MDPW01 || f[3].size() != 1) return "bad mdp command";
      return "";
    case inbound_kind::mdp_client_error:
      if (f.size() < 5 || header() != MDPC01 || valid_service_frame(f[3]) ||
          in.service != view(f[3]) || in.status != st::bad_request || in.reason.empty())
        return "bad mdp_client_error";
      return "";
    case inbound_kind::mdp_worker_error:
      if (f.size() != 5 || header() != MDPW01 || str(f[3]) != byte(1) ||
          valid_service_frame(f[4]) || in.status != st::bad_request || in.reason.empty())
        return "bad mdp_worker_error";
      return "";
  }
  return "unknown inbound_kind";
}

std::string check_for_worker(const frames& f, const worker_inbound& in) {
  if (!inside(in.service, f) || !inside(in.endpoint, f) || !inside(in.message, f))
    return "worker view outside the frames";
  if (in.kind == worker_inbound_kind::invalid) return "";
  if (in.version == 2) {
    if (f.size() < 2 || f[0].size() != 0) return "S0/2 worker message without delimiter";
    const std::string h = str(f[1]);
    if (in.kind == worker_inbound_kind::welcome) {
      // The fixed fields, then the family's backends when there are any (count, str16 each).
      std::string backends;
      if (in.count != 0) {
        backends = u16(in.count);
        for (const auto ep : welcome_endpoints(in.list, in.count)) {
          if (!inside(ep, f) || (ep.substr(0, 6) != "tcp://" && ep.substr(0, 6) != "ipc://"))
            return "S0/2 welcome backend that breaks the rules";
          backends += s16(ep);
        }
      }
      if (h != packed("S0W2", 6,
                      u32(in.heartbeat_ms) + u32(in.liveness) + u32(in.broker_heartbeat_ms) +
                          u64(in.broker_id) + s16(in.endpoint)) +
                   backends &&
          !(in.count == 0 &&
            h == packed("S0W2", 6,
                        u32(in.heartbeat_ms) + u32(in.liveness) + u32(in.broker_heartbeat_ms) +
                            u64(in.broker_id) + s16(in.endpoint) + u16(0))))
        return "bad S0/2 welcome";
    }
    if (in.kind == worker_inbound_kind::request &&
        (h != packed("S0W2", 2, u64(in.job_id) + u32(in.timeout_ms) + s8(in.service)) ||
         in.service.empty() || in.first != 2))
      return "bad S0/2 request";
    if (in.kind == worker_inbound_kind::disconnect &&
        h != packed("S0W2", 5,
                    in.status == 0 && h.size() == 5 ? "" : u16(in.status) + s16(in.message)))
      return "bad S0/2 disconnect";
    if (in.kind == worker_inbound_kind::stopping && h != "S0W2\x07") return "bad S0/2 stopping";
    if (in.kind == worker_inbound_kind::config) {
      std::string fields = u16(in.status) + u64(in.policy_version) + u16(in.count);
      for (const auto& c : config_services(in.list, in.count)) {
        if (!inside(c.service, f) || c.service.empty() || c.idempotent > 2)
          return "S0/2 config entry that breaks the rules";
        fields += s8(c.service) + u32(c.request_timeout_ms) + u32(c.max_queue) +
                  u32(c.max_concurrency) + byte(c.idempotent);
      }
      if (h != packed("S0W2", 8, fields)) return "bad S0/2 config";
    }
    return "";
  }
  if (f.size() < 3 || f[0].size() != 0 || str(f[1]) != S0W1 || f[2].size() != 1)
    return "accepted a message without \"\" · S0W1 · command";
  if (in.kind == worker_inbound_kind::welcome &&
      (f.size() != 7 || in.broker_id != read_u64(f[6]) || in.endpoint != view(f[5])))
    return "bad welcome";
  if (in.kind == worker_inbound_kind::request &&
      (f.size() < 6 || in.job_id != read_u64(f[3]) || in.service != view(f[4]) || in.first != 6 ||
       in.service.empty() || in.service.size() > max_service_name))
    return "bad request";
  return "";
}

std::string check_for_client(const frames& f, const client_inbound& in) {
  if (!inside(in.message, f)) return "client view outside the frames";
  if (in.kind == client_inbound_kind::invalid) return "";
  if (in.version == 2) {
    if (f.size() < 2 || f[0].size() != 0 || in.first != 2) return "S0/2 client message shape";
    if (in.kind == client_inbound_kind::reply &&
        str(f[1]) != packed("S0C2", 2, u64(in.id) + u16(in.status) + s16(in.message)))
      return "bad S0/2 reply";
    if (in.kind == client_inbound_kind::pong && str(f[1]) != "S0C2\x04") return "bad S0/2 pong";
    if (in.kind == client_inbound_kind::welcome) {
      std::string fields = u64(in.broker_id) + u16(in.endpoints);
      for (const auto ep : welcome_endpoints(in.endpoint_list, in.endpoints)) {
        if (!inside(ep, f) || ep.size() > 255 ||
            (ep.substr(0, 6) != "tcp://" && ep.substr(0, 6) != "ipc://"))
          return "S0/2 welcome frontend that breaks the rules";
        fields += s16(ep);
      }
      fields += u16(in.services);
      for (const auto s : welcome_services(in.service_list, in.services)) {
        if (!inside(s, f) || s.empty()) return "S0/2 welcome service that breaks the rules";
        fields += s8(s);
      }
      if (str(f[1]) != packed("S0C2", 6, fields)) return "bad S0/2 client welcome";
    }
    return "";
  }
  if (f.size() < 3 || f[0].size() != 0 || str(f[1]) != S0C1 || f[2].size() != 1)
    return "accepted a message without \"\" · S0C1 · command";
  if (in.kind == client_inbound_kind::reply &&
      (f.size() < 6 || f[3].size() != 8 || f[4].size() != 2 || in.id != read_u64(f[3]) ||
       in.status != read_u16(f[4]) || in.message != view(f[5]) || in.first != 6))
    return "bad reply";
  if (in.kind == client_inbound_kind::pong && in.first != 3) return "bad pong";
  return "";
}

std::string describe(const frames& f) {
  std::string out;
  static const char* hex = "0123456789abcdef";
  for (const auto& m : f) {
    out += "[";
    for (unsigned char c : view(m)) {
      out += hex[c >> 4];
      out += hex[c & 15];
    }
    out += "] ";
  }
  return out;
}

TEST(codec_robustness, random_messages_never_crash_and_views_stay_inside_the_frames) {
  constexpr std::size_t messages = 200'000;
  generator gen(0x5CA1E0C0DEC0FFEEull);
  // one counter per inbound_kind (mdp_worker_error is the last)
  std::array<std::size_t, static_cast<std::size_t>(inbound_kind::mdp_worker_error) + 1>
      inbound_seen{};
  std::array<std::size_t, 6> worker_seen{};
  std::array<std::size_t, 4> client_seen{};
  std::size_t heartbeats = 0;

  for (std::size_t n = 0; n < messages; ++n) {
    // offset 1: ROUTER view (identity first); 0: DEALER view; -1: SUB view (header first).
    const int offset = static_cast<int>(gen.below(3)) - 1;
    const std::size_t mode = gen.below(10);
    frames f;
    if (mode < 5) {  // a valid message, edited, under or without an identity
      const strings parts = gen.mutated_valid();
      if (offset > 0) push(f, gen.random_bytes(gen.below(41)));
      for (const auto& p : parts) push(f, p);
    } else {  // 0-12 frames, each shaped like what its position usually holds (or not at all)
      const bool biased = mode < 9;
      const std::size_t count = gen.below(13);
      f.reserve(count);
      for (std::size_t i = 0; i < count; ++i) {
        const std::string s = biased ? gen.frame(static_cast<int>(i) - offset, offset < 0)
                                     : gen.random_bytes(gen.below(41));
        push(f, s);
      }
    }

    const inbound in = decode_inbound(f);
    const worker_inbound wi = decode_for_worker(f);
    const client_inbound ci = decode_for_client(f);
    heartbeat hb;
    const bool is_hb = decode_heartbeat(f, hb);

    std::string why = check_inbound(f, in);
    if (why.empty()) why = check_for_worker(f, wi);
    if (why.empty()) why = check_for_client(f, ci);
    if (why.empty() && is_hb &&
        (f.size() != 3 || str(f[0]) != "S0H1" || hb.broker_id != read_u64(f[1]) ||
         hb.sequence != read_u64(f[2])))
      why = "bad heartbeat";
    ASSERT_TRUE(why.empty()) << "message #" << n << ": " << why << "\n  " << describe(f);

    ++inbound_seen[static_cast<std::size_t>(in.kind)];
    ++worker_seen[static_cast<std::size_t>(wi.kind)];
    ++client_seen[static_cast<std::size_t>(ci.kind)];
    heartbeats += is_hb ? 1 : 0;
  }

  // The bias must reach every outcome of every decoder, or the run proves little.
  for (std::size_t k = 0; k < inbound_seen.size(); ++k) {
    EXPECT_GT(inbound_seen[k], 0u) << ::testing::PrintToString(static_cast<inbound_kind>(k));
  }
  for (std::size_t k = 0; k < worker_seen.size(); ++k) {
    EXPECT_GT(worker_seen[k], 0u) << ::testing::PrintToString(static_cast<worker_inbound_kind>(k));
  }
  for (std::size_t k = 0; k < client_seen.size(); ++k) {
    EXPECT_GT(client_seen[k], 0u) << ::testing::PrintToString(static_cast<client_inbound_kind>(k));
  }
  EXPECT_GT(heartbeats, 0u);
}

}  // namespace
