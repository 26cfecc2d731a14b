// SPDX-License-Identifier: Apache-2.0
// The resolver of configured peers (src/broker/peer_resolver.cpp): literal endpoints at once and
// without a thread, host names on a thread of its own (only `localhost` here: no DNS in tests), and
// a destructor that never waits for a lookup.
#include "broker/peer_resolver.hpp"

#include <gtest/gtest.h>
#include <poll.h>

#include <algorithm>
#include <chrono>

namespace scale0::broker_detail {
namespace {

using namespace std::chrono_literals;

TEST(peer_resolver, literal_endpoints_are_there_at_once_without_a_thread) {
  peer_resolver r({"tcp://10.0.0.1:5558", "tcp://[::1]:5558", "ipc:///tmp/p"});
  EXPECT_EQ(r.fd(), -1);
  const auto peers = r.take();
  ASSERT_TRUE(peers.has_value());
  ASSERT_EQ(peers->size(), 3u);
  EXPECT_EQ((*peers)[0].endpoints, std::vector<std::string>{"tcp://10.0.0.1:5558"});
  EXPECT_EQ((*peers)[1].endpoints, std::vector<std::string>{"tcp://[::1]:5558"});
  EXPECT_FALSE(r.take().has_value()) << "nothing new since";
}

TEST(peer_resolver, literal_or_not) {
  EXPECT_TRUE(peer_resolver::literal("tcp://127.0.0.1:1"));
  EXPECT_TRUE(peer_resolver::literal("tcp://[2001:db8::1]:1"));
  EXPECT_TRUE(peer_resolver::literal("ipc:///x"));
  EXPECT_FALSE(peer_resolver::literal("tcp://localhost:1"));
  EXPECT_FALSE(peer_resolver::literal("tcp://broker-a.example:1"));
}

TEST(peer_resolver, localhost_resolves_to_its_addresses) {
  std::string error;
  const auto eps = peer_resolver::resolve("tcp://localhost:5558", error);
  EXPECT_EQ(error, "");
  EXPECT_NE(std::find(eps.begin(), eps.end(), "tcp://127.0.0.1:5558"), eps.end());
  for (const auto& e : eps)
    EXPECT_TRUE(e == "tcp://127.0.0.1:5558" || e == "tcp://[::1]:5558") << e;
}

TEST(peer_resolver, names_are_resolved_on_its_thread_and_the_loop_is_woken) {
  peer_resolver r({"tcp://10.0.0.1:5558", "tcp://localhost:5558"});
  ASSERT_GE(r.fd(), 0);
  auto peers = r.take();  // the literal one at once (localhost too, if its thread was quick)
  ASSERT_TRUE(peers.has_value());
  ASSERT_EQ(peers->size(), 2u);
  EXPECT_EQ((*peers)[0].endpoints, std::vector<std::string>{"tcp://10.0.0.1:5558"});
  if ((*peers)[1].endpoints.empty()) {
    pollfd p{r.fd(), POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, 5000), 1) << "the resolver did not wake the loop";
    peers = r.take();
    ASSERT_TRUE(peers.has_value());
  }
  EXPECT_EQ((*peers)[1].spec, "tcp://localhost:5558");
  EXPECT_NE(
      std::find((*peers)[1].endpoints.begin(), (*peers)[1].endpoints.end(), "tcp://127.0.0.1:5558"),
      (*peers)[1].endpoints.end());
}

TEST(peer_resolver, destruction_does_not_wait_for_the_thread) {
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 5; ++i) peer_resolver r({"tcp://localhost:5558"}, 1h);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);
}

}  // namespace
}  // namespace scale0::broker_detail
