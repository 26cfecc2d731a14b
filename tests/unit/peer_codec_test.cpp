// SPDX-License-Identifier: Apache-2.0
// S0P1, the family's peer protocol, against docs/family.md: every encoder's packed frame is
// compared with a layout written out here from the spec and decoded back; truncated frames, lying
// counts, trailing bytes, bad ranges, bad endpoints and names, unknown commands and other framings
// are fed to the decoder, which drops them whole.
#include "protocol/peer_codec.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "support/frames.hpp"
#include "support/wire_bytes.hpp"

namespace {

using namespace scale0::protocol;
using namespace scale0::protocol::peer;
using namespace scale0_test;  // identity, be, u64, u32, u16, u8, str8, str16
using strings = std::vector<std::string>;

// As the peer ROUTER reads a link's message. The views of the result point into `kept`, which
// lives until the next call.
frames kept;
message at_router(const std::string& packed) {
  kept = make({identity, "", packed});
  return decode(kept);
}

const std::string P = "S0P1";

std::string hello_bytes(std::uint64_t id = 7, std::uint32_t hb = 1000, std::uint32_t liveness = 3,
                        std::uint8_t flags = 0, std::string_view family = "default",
                        std::string_view peer_ep = "tcp://10.0.0.1:5558",
                        std::string_view fe = "tcp://10.0.0.1:5555",
                        std::string_view be_ = "tcp://10.0.0.1:5556") {
  return P + "\x01" + u64(id) + u32(hb) + u32(liveness) + u8(flags) + str8(family) +
         str16(peer_ep) + str16(fe) + str16(be_);
}

TEST(peer_codec, hello_layout_and_round_trip) {
  hello h;
  h.broker_id = 0x0102030405060708;
  h.heartbeat_ms = 250;
  h.liveness = 4;
  h.flags = hello_draining;
  h.family = "eu";
  h.peer_endpoint = "tcp://10.0.0.2:5558";
  h.frontend = "tcp://10.0.0.2:5555";
  h.backend = "";
  frames f;
  append_hello(f, h);
  EXPECT_EQ(parts_of(f),
            (strings{"", hello_bytes(0x0102030405060708, 250, 4, 1, "eu", "tcp://10.0.0.2:5558",
                                     "tcp://10.0.0.2:5555", "")}));
  f.insert(f.begin(), zmq::message_t(identity.data(), identity.size()));
  const message m = decode(f);
  ASSERT_EQ(m.what, kind::hello) << m.detail;
  EXPECT_EQ(m.h.broker_id, 0x0102030405060708u);
  EXPECT_EQ(m.h.heartbeat_ms, 250u);
  EXPECT_EQ(m.h.liveness, 4u);
  EXPECT_EQ(m.h.flags, hello_draining);
  EXPECT_EQ(m.h.family, "eu");
  EXPECT_EQ(m.h.peer_endpoint, "tcp://10.0.0.2:5558");
  EXPECT_EQ(m.h.frontend, "tcp://10.0.0.2:5555");
  EXPECT_EQ(m.h.backend, "");
}

TEST(peer_codec, peers_layout_and_round_trip) {
  const std::vector<std::string_view> eps = {"tcp://a:1", "ipc:///tmp/b", "tcp://[::1]:5558"};
  frames f;
  append_peers(f, eps);
  EXPECT_EQ(parts_of(f), (strings{"", P + "\x02" + u16(3) + str16("tcp://a:1") +
                                          str16("ipc:///tmp/b") + str16("tcp://[::1]:5558")}));
  const message m = at_router(std::string(view(f[1])));
  ASSERT_EQ(m.what, kind::peers) << m.detail;
  strings got;
  for_each_peer(m, [&](std::string_view e) { got.emplace_back(e); });
  EXPECT_EQ(got, (strings{"tcp://a:1", "ipc:///tmp/b", "tcp://[::1]:5558"}));
  frames none;
  append_peers(none, {});
  EXPECT_EQ(at_router(std::string(view(none[1]))).what, kind::peers);
}

TEST(peer_codec, state_layout_and_round_trip) {
  const std::vector<capacity> entries = {{"echo", 2, 7, 0, entry_idempotent}, {"s.v2", 0, 0, 5}};
  frames f;
  append_state(f, 42, state_replace, entries);
  EXPECT_EQ(parts_of(f),
            (strings{"", P + "\x03" + u64(42) + u8(1) + u16(2) + str8("echo") + u32(2) + u32(7) +
                             u32(0) + u8(1) + str8("s.v2") + u32(0) + u32(0) + u32(5) + u8(0)}));
  const message m = at_router(std::string(view(f[1])));
  ASSERT_EQ(m.what, kind::state) << m.detail;
  EXPECT_EQ(m.sequence, 42u);
  EXPECT_EQ(m.flags, state_replace);
  std::vector<capacity> got;
  for_each_entry(m, [&](const capacity& c) { got.push_back(c); });
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].service, "echo");
  EXPECT_EQ(got[0].idle, 7u);
  EXPECT_EQ(got[0].flags, entry_idempotent);
  EXPECT_EQ(got[1].queued, 5u);
  EXPECT_EQ(got[1].flags, 0u);
}

TEST(peer_codec, state_writes_at_most1000_entries) {
  std::vector<std::string> names;
  for (int i = 0; i < 1200; ++i) names.push_back("s" + std::to_string(i));
  std::vector<capacity> entries;
  for (const auto& n : names) entries.push_back({n, 1, 1, 0});
  frames f;
  append_state(f, 1, 0, entries);
  const message m = at_router(std::string(view(f[1])));
  ASSERT_EQ(m.what, kind::state);
  EXPECT_EQ(m.count, max_state_entries);
}

TEST(peer_codec, bye_layout_and_round_trip) {
  frames f;
  append_bye(f, 503, "shutting down");
  EXPECT_EQ(parts_of(f), (strings{"", P + "\x04" + u16(503) + str16("shutting down")}));
  const message m = at_router(std::string(view(f[1])));
  ASSERT_EQ(m.what, kind::bye);
  EXPECT_EQ(m.status, 503u);
  EXPECT_EQ(m.text, "shutting down");
}

// ---- what is dropped ----

void expect_dropped(const std::string& packed, problem why = problem::malformed) {
  const message m = at_router(packed);
  EXPECT_EQ(m.what, kind::malformed) << "accepted: " << testing::PrintToString(packed);
  EXPECT_EQ(m.why, why) << m.detail;
  EXPECT_FALSE(m.detail.empty());
}

TEST(peer_codec, framing_other_than_one_packed_frame_is_dropped) {
  EXPECT_EQ(decode(make({identity, "", hello_bytes(), "extra"})).what, kind::malformed);
  EXPECT_EQ(decode(make({identity, hello_bytes()})).what, kind::malformed);
  EXPECT_EQ(decode(make({identity, "x", hello_bytes()})).what, kind::malformed);
  EXPECT_EQ(decode(make({identity})).what, kind::malformed);
  EXPECT_EQ(decode(frames{}).what, kind::malformed);
  expect_dropped("");
  expect_dropped("S0P1");
  expect_dropped("S0P2\x01");
  expect_dropped("S0C2\x01");
  expect_dropped(P + "\x05");
  expect_dropped(P + std::string(1, '\0'));
  expect_dropped(P + "\xff");
}

TEST(peer_codec, hello_ends_with_the_fallback_families_when_there_are_any) {
  const std::vector<std::string> fallbacks = {"us", "asia"};
  hello h;
  h.broker_id = 9;
  h.heartbeat_ms = 1000;
  h.liveness = 3;
  h.family = "eu";
  h.peer_endpoint = "tcp://10.0.0.2:5558";
  h.fallbacks = fallbacks;
  frames f;
  append_hello(f, h);
  const std::string base = hello_bytes(9, 1000, 3, 0, "eu", "tcp://10.0.0.2:5558", "", "");
  EXPECT_EQ(parts_of(f), (strings{"", base + u8(2) + str8("us") + str8("asia")}));
  const message m = at_router(std::string(view(f[1])));
  ASSERT_EQ(m.what, kind::hello) << m.detail;
  std::vector<std::string> got;
  for_each_fallback(m.h, [&](std::string_view n) { got.emplace_back(n); });
  EXPECT_EQ(got, fallbacks);
  // Without any, the HELLO is the one of a broker that has none.
  const message plain = at_router(base);
  ASSERT_EQ(plain.what, kind::hello);
  EXPECT_EQ(plain.h.fallback_count, 0u);
  // A count of 0 or over 8, a short list, extra bytes, a name the rules refuse: dropped.
  expect_dropped(base + u8(0));
  std::string nine = base + u8(9);
  for (int i = 0; i < 9; ++i) nine += str8("f" + std::to_string(i));
  expect_dropped(nine);
  expect_dropped(base + u8(2) + str8("us"));
  expect_dropped(base + u8(1) + str8("us") + "x");
  expect_dropped(base + u8(1) + str8(""), problem::invalid_name);
  expect_dropped(base + u8(1) + str8("a\x01b"), problem::invalid_name);
}

TEST(peer_codec, malformed_hello_is_dropped) {
  const std::string good = hello_bytes();
  ASSERT_EQ(at_router(good).what, kind::hello);
  for (std::size_t n = 5; n < good.size(); ++n) expect_dropped(good.substr(0, n));
  expect_dropped(good + "x");
  expect_dropped(hello_bytes(7, 9));        // heartbeat under 10 ms
  expect_dropped(hello_bytes(7, 3600001));  // over an hour
  expect_dropped(hello_bytes(7, 1000, 0));
  expect_dropped(hello_bytes(7, 1000, 101));
  expect_dropped(hello_bytes(7, 1000, 3, 2));  // unknown flag
  expect_dropped(hello_bytes(7, 1000, 3, 0, ""), problem::invalid_name);
  expect_dropped(hello_bytes(7, 1000, 3, 0, "a\nb"), problem::invalid_name);
  expect_dropped(hello_bytes(7, 1000, 3, 0, "default", ""), problem::invalid_endpoint);
  expect_dropped(hello_bytes(7, 1000, 3, 0, "default", "tcp://*:5558"), problem::invalid_endpoint);
  expect_dropped(hello_bytes(7, 1000, 3, 0, "default", "tcp://h:0"), problem::invalid_endpoint);
  expect_dropped(hello_bytes(7, 1000, 3, 0, "default", "tcp://h:65536"), problem::invalid_endpoint);
  expect_dropped(hello_bytes(7, 1000, 3, 0, "default", "inproc://x"), problem::invalid_endpoint);
  expect_dropped(hello_bytes(7, 1000, 3, 0, "default", "tcp://a b:1"), problem::invalid_endpoint);
  expect_dropped(hello_bytes(7, 1000, 3, 0, "default", "tcp://" + std::string(250, 'h') + ":5558"),
                 problem::invalid_endpoint);  // over 255 bytes
  expect_dropped(hello_bytes(7, 1000, 3, 0, "default", "tcp://h:1", "udp://x:1"),
                 problem::invalid_endpoint);
  expect_dropped(hello_bytes(7, 1000, 3, 0, "default", "tcp://h:1", "", "tcp://h"),
                 problem::invalid_endpoint);
}

TEST(peer_codec, malformed_peers_is_dropped) {
  const std::string good = P + "\x02" + u16(2) + str16("tcp://a:1") + str16("tcp://b:2");
  ASSERT_EQ(at_router(good).what, kind::peers);
  for (std::size_t n = 5; n < good.size(); ++n) expect_dropped(good.substr(0, n));
  expect_dropped(good + std::string(1, '\0'));
  expect_dropped(P + "\x02" + u16(3) + str16("tcp://a:1") + str16("tcp://b:2"));  // count lies
  expect_dropped(P + "\x02" + u16(1) + str16("tcp://a:1") + str16("tcp://b:2"));
  expect_dropped(P + "\x02" + u16(1) + u16(60000) + "tcp://a:1");  // length past the end
  expect_dropped(P + "\x02" + u16(1) + str16("tcp://a"), problem::invalid_endpoint);
  expect_dropped(P + "\x02" + u16(1) + str16(std::string("tcp://a\0:1", 10)),
                 problem::invalid_endpoint);
}

TEST(peer_codec, malformed_state_is_dropped) {
  const std::string entry = str8("echo") + u32(1) + u32(2) + u32(3) + u8(1);
  const std::string good = P + "\x03" + u64(1) + u8(0) + u16(2) + entry + entry;
  ASSERT_EQ(at_router(good).what, kind::state);
  for (std::size_t n = 5; n < good.size(); ++n) expect_dropped(good.substr(0, n));
  expect_dropped(good + std::string(1, '\0'));
  expect_dropped(P + "\x03" + u64(1) + u8(2) + u16(0));  // unknown flag
  expect_dropped(P + "\x03" + u64(1) + u8(0) + u16(1) + str8("echo") + u32(1) + u32(2) + u32(3) +
                 u8(2));  // unknown entry flag
  expect_dropped(P + "\x03" + u64(1) + u8(0) + u16(3) + entry + entry);
  expect_dropped(P + "\x03" + u64(1) + u8(0) + u16(1) + entry + entry);
  std::string many = P + "\x03" + u64(1) + u8(0) + u16(1001);
  for (int i = 0; i < 1001; ++i) many += entry;
  expect_dropped(many);  // over 1000 entries
  const std::string counts = u32(1) + u32(1) + u32(1) + u8(0);
  expect_dropped(P + "\x03" + u64(1) + u8(0) + u16(1) + str8("") + counts, problem::invalid_name);
  expect_dropped(P + "\x03" + u64(1) + u8(0) + u16(1) + str8("a\x1b[2J") + counts,
                 problem::invalid_name);
  expect_dropped(P + "\x03" + u64(1) + u8(0) + u16(1) + str8("\xff\xfe") + counts,
                 problem::invalid_name);
}

TEST(peer_codec, config_layout_round_trip_and_malformed) {
  const std::vector<policy_entry> tables = {
      {"echo", policy_timeout | policy_max_concurrency, 5000, 0, 2, 0},
      {"pay", policy_idempotent, 0, 0, 0, 0}};
  frames f;
  append_config(f, 7, 0xabcdef, tables);
  const std::string entry1 = str8("echo") + u8(9) + u32(5000) + u32(0) + u32(2) + u8(0);
  const std::string entry2 = str8("pay") + u8(4) + u32(0) + u32(0) + u32(0) + u8(0);
  const std::string good = P + "\x05" + u64(7) + u64(0xabcdef) + u16(2) + entry1 + entry2;
  EXPECT_EQ(parts_of(f), (strings{"", good}));
  const message m = at_router(good);
  ASSERT_EQ(m.what, kind::config) << m.detail;
  EXPECT_EQ(m.sequence, 7u);
  EXPECT_EQ(m.origin, 0xabcdefu);
  std::vector<policy_entry> got;
  for_each_policy(m, [&](const policy_entry& e) { got.push_back(e); });
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].service, "echo");
  EXPECT_EQ(got[0].timeout_ms, 5000u);
  EXPECT_EQ(got[0].max_concurrency, 2u);
  EXPECT_EQ(got[1].set, policy_idempotent);
  for (std::size_t n = 5; n < good.size(); ++n) expect_dropped(good.substr(0, n));
  expect_dropped(good + "x");
  expect_dropped(P + "\x05" + u64(0) + u64(1) + u16(0));           // version 0
  expect_dropped(P + "\x05" + u64(UINT64_MAX) + u64(1) + u16(0));  // no room for a next one
  expect_dropped(P + "\x05" + u64(2) + u64(1) + u16(1) + str8("echo") + u8(0x10) + u32(0) + u32(0) +
                 u32(0) + u8(0));  // unknown setting bit
  expect_dropped(P + "\x05" + u64(2) + u64(1) + u16(1) + str8("echo") + u8(8) + u32(0) + u32(0) +
                 u32(0) + u8(0));  // max-concurrency 0
  expect_dropped(P + "\x05" + u64(2) + u64(1) + u16(1) + str8("a\x1b") + u8(0) + u32(0) + u32(0) +
                     u32(0) + u8(0),
                 problem::invalid_name);
}

TEST(peer_codec, malformed_bye_is_dropped) {
  const std::string good = P + "\x04" + u16(503) + str16("bye");
  ASSERT_EQ(at_router(good).what, kind::bye);
  for (std::size_t n = 5; n < good.size(); ++n) expect_dropped(good.substr(0, n));
  expect_dropped(good + "!");
}

TEST(peer_codec, endpoints) {
  for (const char* ok : {"tcp://10.0.0.1:5558", "tcp://broker-a.example:1", "tcp://[::1]:65535",
                         "ipc:///tmp/scale0-peer", "tcp://eth0;10.0.0.1:5558"})
    EXPECT_TRUE(valid_endpoint(ok)) << ok;
  for (const char* bad : {"", "tcp://", "tcp://:5558", "tcp://h", "tcp://h:", "tcp://h:x",
                          "tcp://h:0", "tcp://*:5558", "tcp://[::1:5558", "tcp://a]:1", "ipc://",
                          "inproc://x", "udp://h:1", "tcp://h :1", "TCP://h:1"})
    EXPECT_FALSE(valid_endpoint(bad)) << bad;
  EXPECT_TRUE(valid_advertised(""));
  EXPECT_FALSE(valid_advertised("tcp://*:1"));
  EXPECT_TRUE(valid_family("eu-west"));
  EXPECT_FALSE(valid_family(""));
  EXPECT_FALSE(valid_family(std::string(256, 'f')));
}

}  // namespace
