// SPDX-License-Identifier: Apache-2.0
// The broker core with peers of the family (tests/unit/forwarding_test.cpp, fallback_test.cpp):
// peers come up on links (socket 3, frame 0: the link id) and announce capacity; requests peers
// forward here arrive on socket 2.
#pragma once

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "protocol/packing.hpp"
#include "support/broker_core_fixture.hpp"

namespace scale0::broker_detail {

// A link id as the core names it in frame 0.
inline std::string link_name(std::uint32_t link) {
  return std::string(reinterpret_cast<const char*>(&link), sizeof link);
}

struct forward {
  std::uint64_t job = 0;
  std::uint32_t timeout_ms = 0;
  std::string service;
  strings body;
};

class forwarding_test : public core_test {
 protected:
  // A peer on link `link` announcing `service` with `workers` and `idle` credit; `rank` n: a
  // broker of the n-th fallback family (0: a member).
  void peer(std::uint32_t link, const std::string& service, std::uint32_t workers,
            std::uint32_t idle, bool idempotent = false, std::uint8_t rank = 0) {
    if (!up.contains(link)) {
      const std::string host = "tcp://10.0.0." + std::to_string(link);
      core->peer_up(link, host + ":5558", host + ":5555", host + ":5556", rank, now);
      up.insert(link);
    }
    core->peer_capacity(link, service, workers, idle, 0, idempotent, now);
  }
  // The forwards sent on `link` (S0C2 REQUEST: id u64, timeout u32, service str8; body frames).
  std::vector<forward> forwards_on(std::uint32_t link) {
    std::vector<forward> got;
    for (auto& m : out.take(link_name(link))) {
      EXPECT_GE(m.size(), 3u);
      EXPECT_EQ(m[1], "");
      const std::string& p = m[2];
      EXPECT_EQ(p.substr(0, 5), std::string("S0C2\x01"));
      protocol::packing::reader r(std::string_view(p).substr(5));
      forward f;
      f.job = r.u64();
      f.timeout_ms = r.u32();
      f.service = std::string(r.str8());
      EXPECT_TRUE(r.complete());
      f.body.assign(m.begin() + 3, m.end());
      got.push_back(std::move(f));
    }
    return got;
  }
  // The peer's reply on the link (a DEALER reads no identity frame).
  void peer_reply(std::uint32_t link, std::uint64_t job, std::uint16_t code,
                  const std::string& message, const std::string& body) {
    frames f;
    protocol::append_client_reply(f, job, code, message, protocol::version_2);
    f.emplace_back(body.data(), body.size());
    core->on_peer_reply(link, f, false, now);
  }
  // A request a peer forwarded here, from its link's connection `conn`.
  void forwarded_in(const std::string& conn, std::uint64_t id, const std::string& service) {
    frames f;
    f.emplace_back(conn.data(), conn.size());
    protocol::append_client_request(f, id, service, 0, protocol::version_2);
    f.emplace_back("x", 1);
    core->on_message(peer_socket, f, false, now);
  }
  // DISCONNECTs sent to `worker` (identity "" S0W1 0x05 status message).
  std::vector<strings> disconnects_of(const std::string& worker) {
    std::vector<strings> got;
    for (auto& m : out.take(worker))
      if (m.size() > 3 && m[3] == "\x05") got.push_back(m);
    return got;
  }
  std::set<std::uint32_t> up;
};

}  // namespace scale0::broker_detail
