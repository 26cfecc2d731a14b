// SPDX-License-Identifier: Apache-2.0
// libFuzzer target for the family: S0P1 messages (docs/family.md) and link events fed to a family
// core whose links always "connect", on a clock the input moves. The input is a sequence of steps,
// each an op byte then a one-byte length and that many bytes:
//   op % 4 == 0  a message: the bytes split into frames (a one-byte length, then that many bytes;
//                frame 0 is the sending connection's routing id), decoded and handed to the core;
//   op % 4 == 1  time passes: (first byte + 1) x 25 ms, then on_tick;
//   op % 4 == 2  link (first byte % 8 + 1) connects; op % 4 == 3 it disconnects.
// The decoder must not crash and every view must lie inside the frames; the core must keep its
// bounds (peers, services per peer) whatever arrives, and its status must always serialise.
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "broker/family_core.hpp"
#include "metrics/exposition.hpp"
#include "protocol/peer_codec.hpp"
#include "support/fuzz_frames.hpp"

namespace {

using namespace scale0;
using namespace scale0::broker_detail;
namespace pp = scale0::protocol::peer;
using scale0_test::inside;

void check(bool ok) {
  if (!ok) __builtin_trap();
}

class null_io : public family_io {
 public:
  void open_link(std::uint32_t, const std::string&, std::string_view) override { ++open; }
  void close_link(std::uint32_t) override { ++open_closed; }
  bool send(std::uint32_t, protocol::frames& msg) override {
    check(msg.size() == 2 && msg[0].size() == 0);
    // What this broker sends must decode as it meant it.
    protocol::frames f;
    f.emplace_back("r", 1);
    for (auto& m : msg) f.emplace_back(m.data(), m.size());
    check(pp::decode(f).what != pp::kind::malformed);
    return true;
  }
  std::uint64_t open = 0;
  std::uint64_t open_closed = 0;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  null_io io;
  family_settings s;
  s.broker_id = 0x1122334455667788;
  s.peer_endpoint = "tcp://127.0.0.1:5558";
  s.max_peers = 8;
  s.max_services = 16;
  s.heartbeat_interval = std::chrono::milliseconds(100);
  time_point now = time_point{} + std::chrono::hours(1000);
  family_core core(s, io, now);
  core.set_configured({{"tcp://10.0.0.9:5558", {"tcp://10.0.0.9:5558"}, ""}}, now);
  std::size_t at = 0;
  while (at + 2 <= size) {
    const std::uint8_t op = data[at];
    const std::size_t want = data[at + 1];
    at += 2;
    const std::size_t len = want < size - at ? want : size - at;
    const std::uint8_t* body = data + at;
    at += len;
    switch (op % 4) {
      case 0: {
        const protocol::frames f = scale0_test::split_frames(body, len, 8);
        const pp::message m = pp::decode(f);
        check(inside(m.h.family, f) && inside(m.h.peer_endpoint, f) && inside(m.h.frontend, f) &&
              inside(m.h.backend, f) && inside(m.list, f) && inside(m.text, f));
        if (m.what == pp::kind::malformed) check(!m.detail.empty());
        if (m.what == pp::kind::state) {
          std::size_t n = 0;
          pp::for_each_entry(m, [&](const pp::capacity& c) {
            check(inside(c.service, f) && protocol::valid_service_name(c.service));
            ++n;
          });
          check(n == m.count && n <= pp::max_state_entries);
        }
        if (m.what == pp::kind::peers)
          pp::for_each_peer(m, [&](std::string_view e) { check(pp::valid_endpoint(e)); });
        core.on_message(f, now);
        break;
      }
      case 1:
        now += std::chrono::milliseconds(25 * (1 + (len > 0 ? body[0] : 0)));
        core.on_tick(now);
        break;
      case 2:
        core.on_link_connected(len > 0 ? body[0] % 8 + 1 : 1, now);
        break;
      default:
        core.on_link_disconnected(len > 0 ? body[0] % 8 + 1 : 1, now);
        break;
    }
    check(core.peer_count() <= s.max_peers);
  }
  std::vector<budget_line> budgets;
  core.add_budgets(budgets);
  for (const auto& b : budgets) check(b.used <= b.limit);
  nlohmann::json j;
  core.add_status(j, now);
  check(!j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).empty());
  metrics::exposition families;
  core.add_metrics(families, now);
  check(families.text().find("# TYPE scale0_family_peers gauge") != std::string::npos);
  core.shutdown(now);
  return 0;
}
