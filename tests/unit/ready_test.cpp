// SPDX-License-Identifier: Apache-2.0
// READY's rules, written once (src/protocol/ready.{hpp,cpp}) for both framings: check_ready()
// against docs/protocol.md, and the decoder giving the same READY the same answer in S0/1 and
// S0/2 (the wire bytes written out here, not by the encoders).
#include "protocol/ready.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "scale0/error.hpp"
#include "scale0/protocol.hpp"
#include "support/frames.hpp"
#include "support/wire_bytes.hpp"

namespace {

using namespace scale0::protocol;
using namespace scale0_test;  // identity, make, u32, u16, u8, str8
using strings = std::vector<std::string>;

// A READY's content, whichever framing carries it.
struct ready_case {
  const char* what;
  std::uint32_t concurrency = 1;
  std::uint8_t flags = 0;
  strings services{"echo"};
  const char* reason = "";  // the refusal expected ("" : it registers)
};

std::string_view check(const ready_case& c, std::uint8_t known = flag_idempotent) {
  const frames f = make(c.services);
  return check_ready({c.concurrency, c.flags, known, std::nullopt}, ready_service_list(f, 0));
}

// As the broker's ROUTER sees each framing.
frames s0w1(const ready_case& c) {
  strings p{identity, "", "S0W1", "\x01", u32(c.concurrency), u32(0), u8(c.flags)};
  p.insert(p.end(), c.services.begin(), c.services.end());
  return make(p);
}
frames s0w2(const ready_case& c, const strings& after = {}) {
  std::string packed = "S0W2\x01" + u32(c.concurrency) + u32(0) + u8(c.flags);
  for (const auto& s : c.services) packed += str8(s);
  strings p{identity, "", packed};
  p.insert(p.end(), after.begin(), after.end());
  return make(p);
}

// n valid service names, but the one at `invalid_at` (a control character in it).
strings many(std::size_t n, std::size_t invalid_at = SIZE_MAX) {
  strings s;
  for (std::size_t i = 0; i < n; ++i)
    s.push_back(i == invalid_at ? "bad\n" : "s" + std::to_string(i));
  return s;
}

const std::vector<ready_case>& cases() {
  static const std::vector<ready_case> all{
      {"one service"},
      {"idempotent", 4, flag_idempotent, {"a", "b"}},
      {"the highest concurrency", max_concurrency},
      {"64 services", 1, 0, many(64)},
      {"a name listed twice is still one READY", 1, 0, {"a", "a"}},
      {"concurrency 0", 0, 0, {"echo"}, "concurrency must be 1-1024"},
      {"concurrency 1025", max_concurrency + 1, 0, {"echo"}, "concurrency must be 1-1024"},
      {"an unknown flag", 1, 0x80, {"echo"}, "unknown READY flags"},
      {"an empty service name", 1, 0, {"echo", ""}, "invalid service name"},
      {"a control character", 1, 0, {"a\nb"}, "invalid service name"},
      {"ill-formed UTF-8", 1, 0, {"bad\xff"}, "invalid service name"},
      {"65 services", 1, 0, many(65), "too many services in READY"},
      // The first fault wins: concurrency, flags, then the services in order.
      {"bad concurrency and flags", 0, 0x80, {""}, "concurrency must be 1-1024"},
      {"bad flags and service", 1, 0x80, {""}, "unknown READY flags"},
      {"an invalid name among 70", 1, 0, many(70, 3), "invalid service name"},
      {"an invalid 66th name", 1, 0, many(70, 65), "too many services in READY"},
  };
  return all;
}

TEST(ready_rules, each_rule_has_its_reason) {
  for (const auto& c : cases()) EXPECT_EQ(check(c), c.reason) << c.what;
}

TEST(ready_rules, no_service_at_all) {
  EXPECT_EQ(check({"none", 1, 0, {}}), "READY needs a service");
}

TEST(ready_rules, flags_are_the_framings_own) {
  const ready_case moved{"moved", 1, flag_moved};
  EXPECT_EQ(check(moved), "unknown READY flags");  // S0/1 has no such flag
  EXPECT_EQ(check(moved, flag_idempotent | flag_moved), "");
}

TEST(ready_rules, a_worker_name_is_checked_when_sent) {
  const frames f = make({"echo"});
  auto with_name = [&](std::string_view name) {
    return check_ready({1, 0, flag_idempotent, name}, ready_service_list(f, 0));
  };
  EXPECT_EQ(with_name("host-1:42"), "");
  EXPECT_EQ(with_name(""), "invalid worker name");
  EXPECT_EQ(with_name("a\x1b[31m"), "invalid worker name");
  EXPECT_EQ(with_name(std::string(max_worker_name + 1, 'n')), "invalid worker name");
  // Before the services: a READY wrong in both says its name.
  const frames bad = make({""});
  EXPECT_EQ(check_ready({1, 0, flag_idempotent, std::string_view()}, ready_service_list(bad, 0)),
            "invalid worker name");
}

TEST(ready_rules, a_packed_list_is_read_in_order_and_a_truncated_one_says_so) {
  const std::string list = str8("a") + str8("bb");
  ready_service_list l(list);
  std::string_view name;
  ASSERT_TRUE(l.next(name));
  EXPECT_EQ(name, "a");
  ASSERT_TRUE(l.next(name));
  EXPECT_EQ(name, "bb");
  EXPECT_FALSE(l.next(name));
  EXPECT_FALSE(l.truncated());
  const ready_fields ok{1, 0, flag_idempotent, std::nullopt};
  EXPECT_EQ(check_ready(ok, ready_service_list(list)), "");
  EXPECT_EQ(check_ready(ok, ready_service_list(list + u8(5) + "abc")),
            "READY service list truncated");
  // An invalid name before the cut is found first.
  EXPECT_EQ(check_ready(ok, ready_service_list(str8("") + u8(5) + "abc")), "invalid service name");
  EXPECT_EQ(check_ready(ok, ready_service_list("")), "READY needs a service");
}

// One rule, one answer: the same READY decoded from either framing registers, or is refused with
// the same status and text.
TEST(ready_rules, both_framings_give_the_same_answer) {
  for (const auto& c : cases()) {
    const frames f1 = s0w1(c);
    const frames f2 = s0w2(c);
    const inbound v1 = decode_inbound(f1);
    const inbound v2 = decode_inbound(f2);
    EXPECT_EQ(v1.version, version_1) << c.what;
    EXPECT_EQ(v2.version, version_2) << c.what;
    if (*c.reason == '\0') {
      ASSERT_EQ(v1.kind, inbound_kind::worker_ready) << c.what;
      ASSERT_EQ(v2.kind, inbound_kind::worker_ready) << c.what;
      EXPECT_EQ(v1.concurrency, c.concurrency) << c.what;
      EXPECT_EQ(v2.concurrency, c.concurrency) << c.what;
      service_names n1{}, n2{};
      const std::size_t count = ready_services(f1, v1, n1);
      ASSERT_EQ(count, c.services.size()) << c.what;
      ASSERT_EQ(ready_services(f2, v2, n2), count) << c.what;
      for (std::size_t i = 0; i < count; ++i) {
        EXPECT_EQ(n1[i], c.services[i]) << c.what;
        EXPECT_EQ(n2[i], c.services[i]) << c.what;
      }
      continue;
    }
    ASSERT_EQ(v1.kind, inbound_kind::worker_error) << c.what;
    ASSERT_EQ(v2.kind, inbound_kind::worker_error) << c.what;
    EXPECT_EQ(v1.status, scale0::status::bad_request) << c.what;
    EXPECT_EQ(v2.status, scale0::status::bad_request) << c.what;
    EXPECT_EQ(v1.reason, c.reason) << c.what;
    EXPECT_EQ(v2.reason, c.reason) << c.what;
  }
}

// What only one framing has is checked by that framing's decoder, before the rules.
TEST(ready_rules, each_framing_checks_its_own_shape_first) {
  const ready_case bad_concurrency{"bad concurrency", 0};
  // S0/1: a field of the wrong size.
  strings p{identity, "", "S0W1", "\x01", u32(0), u32(0), u16(0), "echo"};
  EXPECT_EQ(decode_inbound(make(p)).reason, "READY field of the wrong size");
  // S0/2: more than a name after the packed frame.
  EXPECT_EQ(decode_inbound(s0w2(bad_concurrency, {"name", "more"})).reason,
            "READY has at most a name after its fields");
  EXPECT_EQ(decode_inbound(s0w2(bad_concurrency, {"name"})).reason, "concurrency must be 1-1024");
  EXPECT_EQ(decode_inbound(s0w2({"bad name"}, {""})).reason, "invalid worker name");
  const frames f = s0w2({"named"}, {"host-1:42"});
  const inbound named = decode_inbound(f);
  ASSERT_EQ(named.kind, inbound_kind::worker_ready);
  EXPECT_EQ(named.name, "host-1:42");
}

}  // namespace
