// SPDX-License-Identifier: Apache-2.0
// Listen addresses and endpoints as operators write them (src/common/host_port.hpp).
#include "common/host_port.hpp"

#include <gtest/gtest.h>

#include "scale0/error.hpp"

namespace scale0::detail {
namespace {

TEST(host_port, literals_names_and_brackets) {
  EXPECT_EQ(parse_host_port("127.0.0.1:8080", "x").host, "127.0.0.1");
  EXPECT_EQ(parse_host_port("127.0.0.1:8080", "x").port, 8080);
  EXPECT_EQ(parse_host_port("[::1]:0", "x").host, "::1");
  EXPECT_EQ(parse_host_port("localhost:9555", "x").host, "127.0.0.1");
  EXPECT_EQ(parse_host_port("0.0.0.0:1", "x").host, "0.0.0.0");
  EXPECT_THROW(parse_host_port("8080", "x"), error);
  EXPECT_THROW(parse_host_port("127.0.0.1:65536", "x"), error);
  EXPECT_THROW(parse_host_port("127.0.0.1:", "x"), error);
  EXPECT_THROW(parse_host_port("no-such-host.invalid:80", "x"), error);
  // a zone stays with its address
  EXPECT_EQ(parse_host_port("[fe80::1%lo]:0", "x").host, "fe80::1%lo");
}

// Protected mode judges what is bound: a leading zero is octal to the resolver.
TEST(host_port, loopback_is_judged_strictly) {
  EXPECT_TRUE(loopback_listen("127.0.0.1:80"));
  EXPECT_TRUE(loopback_listen("127.1.2.3:80"));
  EXPECT_TRUE(loopback_listen("[::1]:80"));
  EXPECT_TRUE(loopback_listen("localhost:80"));
  EXPECT_FALSE(loopback_listen("0127.0.0.1:80"));
  EXPECT_FALSE(loopback_listen("127.0.0.01:80"));
  EXPECT_FALSE(loopback_listen("0.0.0.0:80"));
  EXPECT_TRUE(loopback_endpoint("tcp://127.0.0.1:5555"));
  EXPECT_FALSE(loopback_endpoint("tcp://0127.0.0.1:5555"));
}

TEST(host_port, printed_with_brackets_for_ipv6) {
  EXPECT_EQ(format_host_port("::1", 9555), "[::1]:9555");
  EXPECT_EQ(format_host_port("127.0.0.1", 9555), "127.0.0.1:9555");
}

TEST(host_port, bind_endpoints_resolve_names_and_keep_the_rest) {
  EXPECT_EQ(bind_endpoint("tcp://localhost:5555"), "tcp://127.0.0.1:5555");
  EXPECT_EQ(bind_endpoint("tcp://localhost:*"), "tcp://127.0.0.1:*");
  for (const char* kept :
       {"tcp://*:5555", "tcp://127.0.0.1:5555", "tcp://[::1]:5555", "tcp://lo:5555",
        "ipc:///run/scale0/b", "inproc://x", "tcp://eth0;10.0.0.1:5"})
    EXPECT_EQ(bind_endpoint(kept), kept);
  EXPECT_THROW(bind_endpoint("tcp://no-such-host.invalid:5555"), error);
}

TEST(host_port, ipv6_endpoints) {
  EXPECT_TRUE(ipv6_endpoint("tcp://[::1]:5555"));
  EXPECT_TRUE(ipv6_endpoint("tcp://[fe80::1%eth0]:5555"));
  EXPECT_FALSE(ipv6_endpoint("tcp://127.0.0.1:5555"));
  EXPECT_FALSE(ipv6_endpoint("tcp://localhost:5555"));
  EXPECT_FALSE(ipv6_endpoint("ipc:///x"));
}

}  // namespace
}  // namespace scale0::detail
