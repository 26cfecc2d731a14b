// SPDX-License-Identifier: Apache-2.0
// The S0/2 compact framing, tested against docs/protocol.md: every encoder's packed frame is
// compared with a layout written out here from the spec and decoded back; truncated frames, lying
// lengths, trailing bytes, unknown commands and other versions are fed to the decoders.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "scale0/error.hpp"
#include "scale0/protocol.hpp"
#include "support/frames.hpp"
#include "support/wire_bytes.hpp"

namespace {

using namespace scale0::protocol;
using namespace std::string_literals;
namespace st = scale0::status;
using strings = std::vector<std::string>;

using namespace scale0_test;  // identity, be, u64, u32, u16, u8, str8, str16

// As the broker's ROUTER sees a peer's message.
frames at_broker(const strings& parts) {
  strings all{identity};
  all.insert(all.end(), parts.begin(), parts.end());
  return make(all);
}

const std::string C2 = "S0C2";
const std::string W2 = "S0W2";

// ---- round trips ----

TEST(codec_v2, client_request_is_one_packed_frame) {
  for (const std::string& service : {"echo"s, "x"s, std::string(max_service_name, 's')}) {
    frames f;
    f.emplace_back(identity.data(), identity.size());
    append_client_request(f, 0x0102030405060708, service, 1500, version_2);
    EXPECT_EQ(
        parts_of(f),
        (strings{identity, "", C2 + "\x01" + u64(0x0102030405060708) + u32(1500) + str8(service)}));
    f.emplace_back("body", 4);
    const inbound in = decode_inbound(f);
    ASSERT_EQ(in.kind, inbound_kind::client_request);
    EXPECT_EQ(in.version, version_2);
    EXPECT_EQ(in.id, 0x0102030405060708u);
    EXPECT_EQ(in.timeout_ms, 1500u);
    EXPECT_EQ(in.service, service);
    ASSERT_EQ(in.first, 3u);
    EXPECT_EQ(view(f[3]), "body");
  }
}

TEST(codec_v2, worker_disconnect_status_is_read_only_when_well_formed) {
  EXPECT_EQ(decode_inbound(at_broker({"", W2 + "\x05" + u16(204) + str16("holding nothing")}))
                .reply_status,
            204u);
  EXPECT_EQ(decode_inbound(at_broker({"", W2 + "\x05"})).reply_status, 0u);
  const inbound cut = decode_inbound(at_broker({"", W2 + "\x05" + "\xcc"}));  // one byte of it
  EXPECT_EQ(cut.kind, inbound_kind::worker_disconnect);
  EXPECT_EQ(cut.reply_status, 0u);
}

TEST(codec_v2, small_request_fits_libzmq_inline_messages) {
  // 5 + 8 + 4 + 1 + 4 bytes: no heap buffer for a short service name (33 bytes inline).
  frames f;
  append_client_request(f, 1, "echo", 0, version_2);
  EXPECT_EQ(f[1].size(), 22u);
}

TEST(codec_v2, client_reply_and_pong_at_the_client) {
  frames f;
  append_client_reply(f, 77, st::unavailable, "no worker", version_2);
  EXPECT_EQ(parts_of(f), (strings{"", C2 + "\x02" + u64(77) + u16(503) + str16("no worker")}));
  f.emplace_back("b1", 2);
  client_inbound in = decode_for_client(f);
  ASSERT_EQ(in.kind, client_inbound_kind::reply);
  EXPECT_EQ(in.version, version_2);
  EXPECT_EQ(in.id, 77u);
  EXPECT_EQ(in.status, st::unavailable);
  EXPECT_EQ(in.message, "no worker");
  ASSERT_EQ(in.first, 2u);
  EXPECT_EQ(view(f[2]), "b1");

  frames p;
  append_client_pong(p, version_2);
  EXPECT_EQ(parts_of(p), (strings{"", C2 + "\x04"}));
  in = decode_for_client(p);
  EXPECT_EQ(in.kind, client_inbound_kind::pong);
  EXPECT_EQ(in.first, 2u);
}

TEST(codec_v2, ping_at_the_broker) {
  frames f{};
  f.emplace_back(identity.data(), identity.size());
  append_client_ping(f, version_2);
  EXPECT_EQ(parts_of(f), (strings{identity, "", C2 + "\x03"}));
  const inbound in = decode_inbound(f);
  EXPECT_EQ(in.kind, inbound_kind::client_ping);
  EXPECT_EQ(in.first, 3u);
}

TEST(codec_v2, worker_ready_with_several_services) {
  frames f;
  f.emplace_back(identity.data(), identity.size());
  append_worker_ready(f, 8, 5000, flag_idempotent, {"a", "bb", "ccc"}, version_2);
  EXPECT_EQ(parts_of(f), (strings{identity, "",
                                  W2 + "\x01" + u32(8) + u32(5000) + u8(1) + str8("a") +
                                      str8("bb") + str8("ccc")}));
  const inbound in = decode_inbound(f);
  ASSERT_EQ(in.kind, inbound_kind::worker_ready);
  EXPECT_EQ(in.version, version_2);
  EXPECT_EQ(in.concurrency, 8u);
  EXPECT_EQ(in.heartbeat_ms, 5000u);
  EXPECT_EQ(in.flags, flag_idempotent);
  EXPECT_EQ(in.service, "a");
  service_names names{};
  ASSERT_EQ(ready_services(f, in, names), 3u);
  EXPECT_EQ(names[0], "a");
  EXPECT_EQ(names[1], "bb");
  EXPECT_EQ(names[2], "ccc");
}

// READY with a name: a frame of its own after the packed fields (old brokers ignore it).
TEST(codec_v2, worker_ready_with_a_name) {
  frames f;
  f.emplace_back(identity.data(), identity.size());
  append_worker_ready(f, 2, 0, flag_idempotent, {"a", "bb"}, version_2, "host-1:42");
  EXPECT_EQ(parts_of(f),
            (strings{identity, "",
                     W2 + "\x01" + u32(2) + u32(0) + u8(flag_idempotent) + str8("a") + str8("bb"),
                     "host-1:42"}));
  const inbound in = decode_inbound(f);
  ASSERT_EQ(in.kind, inbound_kind::worker_ready);
  EXPECT_EQ(in.name, "host-1:42");
  EXPECT_EQ(in.flags, flag_idempotent);
  EXPECT_EQ(in.service, "a");
  service_names names{};
  ASSERT_EQ(ready_services(f, in, names), 2u);
  EXPECT_EQ(names[1], "bb");

  // No name: the READY of before names, byte for byte.
  frames plain;
  append_worker_ready(plain, 2, 0, 0, {"a"}, version_2, "");
  EXPECT_EQ(parts_of(plain), (strings{"", W2 + "\x01" + u32(2) + u32(0) + u8(0) + str8("a")}));
  EXPECT_EQ(decode_inbound(at_broker(parts_of(plain))).name, "");
  // S0/1 has no name.
  frames v1;
  append_worker_ready(v1, 2, 0, 0, {"a"}, version_1, "ignored");
  const inbound in1 = decode_inbound(at_broker(parts_of(v1)));
  EXPECT_EQ(in1.name, "");
  ASSERT_EQ(ready_services(at_broker(parts_of(v1)), in1, names), 1u);
}

TEST(codec_v2, invalid_worker_names_are_400) {
  const std::string head = W2 + "\x01" + u32(1) + u32(0) + u8(0) + str8("svc");
  for (const std::string& bad : {""s, "a\nb"s, "\xff"s, std::string(65, 'n'), "a\x1b[2Jb"s}) {
    const inbound in = decode_inbound(at_broker({"", head, bad}));
    EXPECT_EQ(in.kind, inbound_kind::worker_error) << bad.size();
    EXPECT_EQ(in.status, st::bad_request);
  }
  const inbound two = decode_inbound(at_broker({"", head, "name", "more"}));
  EXPECT_EQ(two.kind, inbound_kind::worker_error);
  const inbound ok = decode_inbound(at_broker({"", head, std::string(64, 'n')}));
  EXPECT_EQ(ok.kind, inbound_kind::worker_ready);
  EXPECT_EQ(ok.name.size(), 64u);
}

TEST(codec_v2, ready_services_of_v1_and_majordomo_too) {
  const frames v1 = at_broker({"", "S0W1", "\x01", u32(1), u32(0), u8(0), "s1", "s2"});
  inbound in = decode_inbound(v1);
  ASSERT_EQ(in.kind, inbound_kind::worker_ready);
  service_names names{};
  ASSERT_EQ(ready_services(v1, in, names), 2u);
  EXPECT_EQ(names[1], "s2");
  const frames mdp = at_broker({"", "MDPW01", "\x01", "m"});
  in = decode_inbound(mdp);
  ASSERT_EQ(ready_services(mdp, in, names), 1u);
  EXPECT_EQ(names[0], "m");
}

TEST(codec_v2, ready_with_sixty_four_services_and_not_more) {
  std::string list;
  for (int i = 0; i < 64; ++i) list += str8("s" + std::to_string(i));
  const std::string head = W2 + "\x01" + u32(1) + u32(0) + u8(0);
  frames f = at_broker({"", head + list});
  inbound in = decode_inbound(f);
  ASSERT_EQ(in.kind, inbound_kind::worker_ready);
  service_names names{};
  EXPECT_EQ(ready_services(f, in, names), 64u);
  in = decode_inbound(at_broker({"", head + list + str8("s64")}));
  EXPECT_EQ(in.kind, inbound_kind::worker_error);
  EXPECT_EQ(in.status, st::bad_request);
}

TEST(codec_v2, worker_request_reply_welcome_disconnect_stopping) {
  frames f;
  append_worker_request(f, 0xAABBCCDD00112233, "svc", 250, version_2);
  EXPECT_EQ(parts_of(f),
            (strings{"", W2 + "\x02" + u64(0xAABBCCDD00112233) + u32(250) + str8("svc")}));
  f.emplace_back("job", 3);
  worker_inbound wi = decode_for_worker(f);
  ASSERT_EQ(wi.kind, worker_inbound_kind::request);
  EXPECT_EQ(wi.version, version_2);
  EXPECT_EQ(wi.job_id, 0xAABBCCDD00112233u);
  EXPECT_EQ(wi.timeout_ms, 250u);
  EXPECT_EQ(wi.service, "svc");
  ASSERT_EQ(wi.first, 2u);
  EXPECT_EQ(view(f[2]), "job");

  frames r;
  r.emplace_back(identity.data(), identity.size());
  append_worker_reply(r, 42, st::worker_failed, "boom", version_2);
  EXPECT_EQ(parts_of(r), (strings{identity, "", W2 + "\x03" + u64(42) + u16(500) + str16("boom")}));
  r.emplace_back("out", 3);
  const inbound in = decode_inbound(r);
  ASSERT_EQ(in.kind, inbound_kind::worker_reply);
  EXPECT_EQ(in.id, 42u);
  EXPECT_EQ(in.reply_status, st::worker_failed);
  EXPECT_EQ(in.message, "boom");
  ASSERT_EQ(in.first, 3u);
  EXPECT_EQ(view(r[3]), "out");

  frames w;
  append_worker_welcome(w, 20000, 3, "tcp://*:5557", 0x1122334455667788, version_2, 1000);
  EXPECT_EQ(parts_of(w), (strings{"", W2 + "\x06" + u32(20000) + u32(3) + u32(1000) +
                                          u64(0x1122334455667788) + str16("tcp://*:5557")}));
  wi = decode_for_worker(w);
  ASSERT_EQ(wi.kind, worker_inbound_kind::welcome);
  EXPECT_EQ(wi.heartbeat_ms, 20000u);
  EXPECT_EQ(wi.broker_heartbeat_ms, 1000u);
  EXPECT_EQ(wi.liveness, 3u);
  EXPECT_EQ(wi.broker_id, 0x1122334455667788u);
  EXPECT_EQ(wi.endpoint, "tcp://*:5557");

  frames d;
  append_worker_disconnect(d, st::deadline, "heartbeat expired", version_2);
  EXPECT_EQ(parts_of(d), (strings{"", W2 + "\x05" + u16(504) + str16("heartbeat expired")}));
  wi = decode_for_worker(d);
  ASSERT_EQ(wi.kind, worker_inbound_kind::disconnect);
  EXPECT_EQ(wi.status, st::deadline);
  EXPECT_EQ(wi.message, "heartbeat expired");
  d.clear();
  append_worker_disconnect(d, 0, {}, version_2);
  EXPECT_EQ(parts_of(d), (strings{"", W2 + "\x05"}));
  EXPECT_EQ(decode_for_worker(d).kind, worker_inbound_kind::disconnect);

  frames s;
  append_worker_stopping(s, version_2);
  EXPECT_EQ(parts_of(s), (strings{"", W2 + "\x07"}));
  EXPECT_EQ(decode_for_worker(s).kind, worker_inbound_kind::stopping);
  frames h;
  h.emplace_back(identity.data(), identity.size());
  append_worker_heartbeat(h, version_2);
  EXPECT_EQ(parts_of(h), (strings{identity, "", W2 + "\x04"}));
  EXPECT_EQ(decode_inbound(h).kind, inbound_kind::worker_heartbeat);
}

TEST(codec_v2, v1_welcome_gives_one_interval_for_both_directions) {
  frames w;
  append_worker_welcome(w, 2000, 3, "tcp://*:5557", 9);
  const worker_inbound wi = decode_for_worker(w);
  ASSERT_EQ(wi.kind, worker_inbound_kind::welcome);
  EXPECT_EQ(wi.version, version_1);
  EXPECT_EQ(wi.heartbeat_ms, 2000u);
  EXPECT_EQ(wi.broker_heartbeat_ms, 2000u);
}

TEST(codec_v2, long_messages_are_cut_to_the_length_field) {
  const std::string huge(max_message_length + 10, 'm');
  frames f;
  append_client_reply(f, 1, st::ok, huge, version_2);
  const client_inbound in = decode_for_client(f);
  ASSERT_EQ(in.kind, client_inbound_kind::reply);
  EXPECT_EQ(in.message.size(), max_message_length);
}

// ---- truncated, lying lengths, trailing bytes ----

TEST(codec_v2, every_truncation_of_a_request_is_400_with_the_id_when_readable) {
  const std::string full = C2 + "\x01" + u64(0xCAFE) + u32(10) + str8("echo");
  for (std::size_t n = 4; n < full.size(); ++n) {
    const inbound in = decode_inbound(at_broker({"", full.substr(0, n), "body"}));
    ASSERT_EQ(in.kind, inbound_kind::client_error) << n;
    EXPECT_EQ(in.status, st::bad_request) << n;
    EXPECT_EQ(in.version, version_2);
    EXPECT_EQ(in.id, n >= 13 ? 0xCAFEu : 0u) << n;
    EXPECT_FALSE(in.reason.empty());
  }
}

TEST(codec_v2, wrong_lengths_and_trailing_bytes_are_400) {
  const std::string head = C2 + "\x01" + u64(5) + u32(0);
  for (const std::string& bad : {
           head + u8(10) + "short",    // length says more than there is
           head + u8(2) + "echo",      // length says less: trailing bytes
           head + u8(0),               // empty service
           head + str8("echo") + "x",  // trailing byte after the last field
       }) {
    const inbound in = decode_inbound(at_broker({"", bad}));
    ASSERT_EQ(in.kind, inbound_kind::client_error) << bad.size();
    EXPECT_EQ(in.status, st::bad_request);
    EXPECT_EQ(in.id, 5u);
  }
  const std::string reply = W2 + "\x03" + u64(1) + u16(200);
  for (const std::string& bad : {reply, reply + u16(3) + "ab", reply + str16("ok") + "!",
                                 W2 + "\x04" + "x", W2 + "\x07" + "x"}) {
    const inbound in = decode_inbound(at_broker({"", bad}));
    ASSERT_EQ(in.kind, inbound_kind::worker_error) << bad.size();
    EXPECT_EQ(in.status, st::bad_request);
    EXPECT_EQ(in.version, version_2);
  }
  const std::string ready = W2 + "\x01" + u32(1) + u32(0) + u8(0);
  for (const std::string& bad :
       {ready, ready + u8(5) + "abc", ready + str8("a") + u8(0),
        W2 + "\x01" + u32(0) + u32(0) + u8(0) + str8("a"),
        W2 + "\x01" + u32(1) + u32(0) + u8(8) + str8("a"),  // flag 8: unknown
        W2 + "\x01" + u32(1) + u32(0)}) {
    const inbound in = decode_inbound(at_broker({"", bad}));
    EXPECT_EQ(in.kind, inbound_kind::worker_error) << bad.size();
    EXPECT_EQ(in.status, st::bad_request);
  }
}

// Service names are printable UTF-8 without control characters (protocol.md, framing rules).
TEST(codec_v2, invalid_service_names_are_400) {
  const strings bad_names = {"bad\xff"s,
                             "a\nb"s,
                             "a\x1b"s
                             "b"s,
                             "a\x7f"s,
                             "\xc0\xaf"s,
                             "\xed\xa0\x80"s,
                             "a\xc2\x9f"s,
                             "\xf4\x90\x80\x80"s};
  for (const std::string& name : bad_names) {
    const auto req_frames = at_broker({"", C2 + "\x01" + u64(7) + u32(0) + str8(name), "body"});
    const inbound req = decode_inbound(req_frames);  // its views point into req_frames
    ASSERT_EQ(req.kind, inbound_kind::client_error) << name;
    EXPECT_EQ(req.status, st::bad_request);
    EXPECT_EQ(req.reason, "invalid service name");
    EXPECT_EQ(req.id, 7u);
    EXPECT_EQ(req.version, version_2);
    EXPECT_EQ(req.service, name);
    const auto ready_frames =
        at_broker({"", W2 + "\x01" + u32(1) + u32(0) + u8(0) + str8("ok") + str8(name)});
    const inbound ready = decode_inbound(ready_frames);
    ASSERT_EQ(ready.kind, inbound_kind::worker_error) << name;
    EXPECT_EQ(ready.status, st::bad_request);
    EXPECT_EQ(ready.reason, "invalid service name");
    EXPECT_EQ(ready.version, version_2);
  }
  const std::string good = "caf\xc3\xa9-\xf0\x9f\x98\x80";
  EXPECT_EQ(decode_inbound(at_broker({"", C2 + "\x01" + u64(7) + u32(0) + str8(good)})).kind,
            inbound_kind::client_request);
  EXPECT_EQ(
      decode_inbound(at_broker({"", W2 + "\x01" + u32(1) + u32(0) + u8(0) + str8(good)})).kind,
      inbound_kind::worker_ready);
}

TEST(codec_v2, malformed_messages_at_peers_are_invalid) {
  const std::string req = W2 + "\x02" + u64(1) + u32(5) + str8("svc");
  for (std::size_t n = 0; n < req.size(); ++n)
    EXPECT_EQ(decode_for_worker(make({"", req.substr(0, n)})).kind, worker_inbound_kind::invalid)
        << n;
  EXPECT_EQ(decode_for_worker(make({"", req + "x"})).kind, worker_inbound_kind::invalid);
  EXPECT_EQ(decode_for_worker(make({"x", req})).kind, worker_inbound_kind::invalid);
  EXPECT_EQ(decode_for_worker(make({"", W2 + "\x02" + u64(1) + u32(5) + u8(0)})).kind,
            worker_inbound_kind::invalid);  // empty service
  EXPECT_EQ(decode_for_worker(make({"", W2 + "\x05" + u16(400)})).kind,
            worker_inbound_kind::invalid);  // status without its message
  EXPECT_EQ(decode_for_worker(make({"", W2 + "\x09"})).kind, worker_inbound_kind::invalid);

  const std::string rep = C2 + "\x02" + u64(1) + u16(200) + str16("ok");
  for (std::size_t n = 0; n < rep.size(); ++n)
    EXPECT_EQ(decode_for_client(make({"", rep.substr(0, n)})).kind, client_inbound_kind::invalid)
        << n;
  EXPECT_EQ(decode_for_client(make({"", rep + "x"})).kind, client_inbound_kind::invalid);
  EXPECT_EQ(decode_for_client(make({"", C2 + "\x01"})).kind, client_inbound_kind::invalid);
}

// ---- unknown commands and versions ----

TEST(codec_v2, unknown_command_is_501) {
  inbound in = decode_inbound(at_broker({"", C2 + "\x0a" + u64(33)}));
  ASSERT_EQ(in.kind, inbound_kind::client_error);
  EXPECT_EQ(in.status, st::not_implemented);
  EXPECT_EQ(in.id, 33u);
  EXPECT_EQ(in.version, version_2);
  // A BATCH reaches the decoder only when it could not be taken apart: malformed.
  in = decode_inbound(at_broker({"", C2 + "\x09" + u64(33)}));
  ASSERT_EQ(in.kind, inbound_kind::client_error);
  EXPECT_EQ(in.status, st::bad_request);
  EXPECT_EQ(in.id, 0u);  // a count follows the command byte, not a request-id
  in = decode_inbound(at_broker({"", W2 + "\x09"}));
  ASSERT_EQ(in.kind, inbound_kind::worker_error);
  EXPECT_EQ(in.status, st::bad_request);
  // Commands that only the broker sends are unknown when they come to it.
  in = decode_inbound(at_broker({"", C2 + "\x02" + u64(1) + u16(200) + str16("")}));
  EXPECT_EQ(in.status, st::not_implemented);
  in = decode_inbound(at_broker({"", W2 + "\x06"}));
  ASSERT_EQ(in.kind, inbound_kind::worker_error);
  EXPECT_EQ(in.status, st::not_implemented);
  EXPECT_EQ(in.version, version_2);
}

TEST(codec_v2, header_without_command_is_400) {
  inbound in = decode_inbound(at_broker({"", C2}));
  ASSERT_EQ(in.kind, inbound_kind::client_error);
  EXPECT_EQ(in.status, st::bad_request);
  in = decode_inbound(at_broker({"", W2}));
  ASSERT_EQ(in.kind, inbound_kind::worker_error);
  EXPECT_EQ(in.status, st::bad_request);
}

TEST(codec_v2, other_versions_are_505_in_version1_framing) {
  // A future packed version: answered 505, in S0/1 (which the reply encoder picks from
  // in.version), whatever follows the header.
  for (const std::string& header : {"S0C3"s, "S0C3\x01"s + u64(1), "S0C0"s}) {
    const inbound in = decode_inbound(at_broker({"", header, "\x01", u64(8)}));
    ASSERT_EQ(in.kind, inbound_kind::client_error) << header;
    EXPECT_EQ(in.status, st::bad_version);
    EXPECT_EQ(in.version, version_1);
  }
  for (const std::string& header : {"S0W3"s, "S0W3\x01"s}) {
    const inbound in = decode_inbound(at_broker({"", header}));
    ASSERT_EQ(in.kind, inbound_kind::worker_error) << header;
    EXPECT_EQ(in.status, st::bad_version);
    EXPECT_EQ(in.version, version_1);
  }
  // Version 1 framing with packed fields is neither version: dropped.
  EXPECT_EQ(decode_inbound(at_broker({"", "S0C1\x01"s + u64(1)})).kind, inbound_kind::drop);
  // A peer library only accepts the framings it knows.
  EXPECT_EQ(decode_for_client(make({"", "S0C3\x02"s + u64(1) + u16(200) + str16("")})).kind,
            client_inbound_kind::invalid);
  EXPECT_EQ(decode_for_worker(make({"", "S0W3\x07"s})).kind, worker_inbound_kind::invalid);
}

TEST(codec_v2, version_mismatch_between_header_and_layout_is_not_accepted) {
  // S0/1 frames under an S0/2 header: the command frame is not packed, so the header frame has
  // no command byte.
  inbound in = decode_inbound(at_broker({"", C2, "\x01", u64(4), "echo", u32(0)}));
  ASSERT_EQ(in.kind, inbound_kind::client_error);
  EXPECT_EQ(in.status, st::bad_request);
  EXPECT_EQ(in.id, 0u);
  // S0/2 packed fields under an S0/1 header: dropped (not a 4-byte header).
  in = decode_inbound(at_broker({"", "S0W1\x04"s}));
  EXPECT_EQ(in.kind, inbound_kind::drop);
}

}  // namespace
