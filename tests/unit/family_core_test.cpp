// SPDX-License-Identifier: Apache-2.0
// The family core driven on a fake clock over a fake network: each broker's links are records, a
// link "connects" when a broker answers at its endpoint, and what a link carries is delivered to
// that broker's core as its peer ROUTER would read it (routing id first). Partitions lose messages
// silently (TCP still "up"); kills make links drop. No sockets, no sleeping.
#include "broker/family_core.hpp"

#include <gtest/gtest.h>

#include <deque>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "metrics/exposition.hpp"
#include "support/wire_bytes.hpp"

namespace scale0::broker_detail {
namespace {

using namespace std::chrono_literals;
namespace pp = protocol::peer;
using strings = std::vector<std::string>;
using scale0_test::str16;
using scale0_test::str8;
using scale0_test::u16;
using scale0_test::u32;
using scale0_test::u64;

struct fake_net;

struct heard {
  std::string what;  // up, down, updated, capacity
  std::string endpoint;
  std::string service;
  peer_capacity capacity;
  std::string why;
};

class recording_listener : public family_listener {
 public:
  void peer_up(const peer_info& p) override {
    log.push_back({"up", std::string(p.endpoint), {}, {}, {}});
  }
  void peer_capacity(const peer_info& p, std::string_view service,
                     const struct peer_capacity& c) override {
    log.push_back({"capacity", std::string(p.endpoint), std::string(service), c, {}});
  }
  void peer_updated(const peer_info& p) override {
    log.push_back({"updated", std::string(p.endpoint), {}, {}, {}});
  }
  void peer_down(const peer_info& p, std::string_view why) override {
    log.push_back({"down", std::string(p.endpoint), {}, {}, std::string(why)});
  }
  void peer_config(std::uint64_t version, std::uint64_t origin,
                   std::span<const pp::policy_entry> tables) override {
    configs.push_back({version, origin, tables.empty() ? "" : std::string(tables[0].service)});
  }
  struct config_heard {
    std::uint64_t version;
    std::uint64_t origin;
    std::string first_service;
  };
  std::vector<config_heard> configs;
  std::size_t count(const std::string& what, const std::string& endpoint) const {
    return static_cast<std::size_t>(std::count_if(log.begin(), log.end(), [&](const heard& h) {
      return h.what == what && h.endpoint == endpoint;
    }));
  }
  std::vector<heard> log;
};

struct link_record {
  std::string endpoint;
  std::string routing_id;
  bool connected = false;
};

struct sent_record {
  std::string to;
  strings parts;
  std::uint8_t command() const { return static_cast<std::uint8_t>(parts.at(1).at(4)); }
};

class fake_io : public family_io {
 public:
  fake_io(fake_net& net, std::string self) : net_(net), self_(std::move(self)) {}
  void open_link(std::uint32_t link, const std::string& endpoint,
                 std::string_view routing_id) override {
    links[link] = {endpoint, std::string(routing_id), false};
    ++opened;
  }
  void close_link(std::uint32_t link) override {
    links.erase(link);
    ++closed;
  }
  bool send(std::uint32_t link, frames& msg) override;
  void event(const broker_event& e) override { events.push_back(std::string(e.detail)); }

  std::size_t sent_to(const std::string& endpoint, pp::command c) const {
    return static_cast<std::size_t>(std::count_if(sent.begin(), sent.end(), [&](const auto& s) {
      return s.to == endpoint && s.command() == static_cast<std::uint8_t>(c);
    }));
  }
  std::size_t links_to(const std::string& endpoint) const {
    return static_cast<std::size_t>(std::count_if(links.begin(), links.end(), [&](const auto& kv) {
      return kv.second.endpoint == endpoint;
    }));
  }

  fake_net& net_;
  std::string self_;
  std::map<std::uint32_t, link_record> links;
  std::vector<sent_record> sent;
  std::vector<std::string> events;
  int opened = 0;
  int closed = 0;
  bool refuse = false;  // every send refused (a full queue)
};

struct node {
  node(fake_net& net, const family_settings& s, time_point now)
      : io(net, s.peer_endpoint), core(s, io, now) {
    core.set_listener(&listener);
  }
  fake_io io;
  family_core core;
  recording_listener listener;
};

struct delivery {
  std::string to;
  std::string routing_id;
  strings parts;
};

struct fake_net {
  std::map<std::string, node*> at;                    // endpoint (and aliases) -> broker
  std::set<std::pair<std::string, std::string>> cut;  // from -> to: lost on the way
  std::deque<delivery> wire;
  std::vector<std::unique_ptr<node>> nodes;
  time_point now = time_point{} + 1000h;
  std::uint64_t next_id = 0x1111;

  node& add(const std::string& endpoint, std::vector<std::string> configured = {},
            family_settings s = {}) {
    s.broker_id = next_id++;
    s.peer_endpoint = endpoint;
    s.frontend = "tcp://fe-of-" + endpoint.substr(6);
    if (s.family.empty()) s.family = "default";
    nodes.push_back(std::make_unique<node>(*this, s, now));
    node& n = *nodes.back();
    at[endpoint] = &n;
    if (!configured.empty()) {
      std::vector<configured_peer> c;
      for (auto& e : configured) c.push_back({e, {e}, ""});
      n.core.set_configured(c, now);
    }
    return n;
  }
  // The broker at `endpoint` dies (kill -9): links to it lose their connection.
  void kill(const std::string& endpoint) { at.erase(endpoint); }

  bool pump_once() {
    bool did = false;
    for (auto& up : nodes) {
      node& n = *up;
      if (std::find_if(at.begin(), at.end(), [&](auto& kv) { return kv.second == &n; }) == at.end())
        continue;  // dead
      std::vector<std::uint32_t> ids;
      for (auto& [id, l] : n.io.links) ids.push_back(id);
      for (std::uint32_t id : ids) {
        const auto it = n.io.links.find(id);
        if (it == n.io.links.end()) continue;
        const bool target = at.contains(it->second.endpoint);
        if (!it->second.connected && target) {
          it->second.connected = true;
          n.core.on_link_connected(id, now);
          did = true;
        } else if (it->second.connected && !target) {
          it->second.connected = false;
          n.core.on_link_disconnected(id, now);
          did = true;
        }
      }
    }
    while (!wire.empty()) {
      delivery d = std::move(wire.front());
      wire.pop_front();
      const auto it = at.find(d.to);
      if (it == at.end()) continue;
      frames f;
      f.emplace_back(d.routing_id.data(), d.routing_id.size());
      for (auto& p : d.parts) f.emplace_back(p.data(), p.size());
      it->second->core.on_message(f, now);
      did = true;
    }
    return did;
  }
  void pump() {
    for (int i = 0; i < 100 && pump_once(); ++i) {
    }
  }
  bool alive(const node* n) const {
    for (auto& [ep, m] : at)
      if (m == n) return true;
    return false;
  }
  void advance(std::chrono::milliseconds d) {
    const auto end = now + d;
    while (now < end) {
      now = std::min(end, now + 5ms);
      for (auto& n : nodes)
        if (alive(n.get())) n->core.on_tick(now);
      pump();
    }
  }
};

bool fake_io::send(std::uint32_t link, frames& msg) {
  const auto it = links.find(link);
  if (it == links.end() || !it->second.connected || refuse) return false;
  strings parts;
  for (auto& f : msg) parts.emplace_back(protocol::view(f));
  sent.push_back({it->second.endpoint, parts});
  if (!net_.cut.contains({self_, it->second.endpoint}))
    net_.wire.push_back({it->second.endpoint, it->second.routing_id, std::move(parts)});
  return true;
}

// A raw message to `n`'s peer ROUTER from connection `rid`.
void inject(fake_net& net, node& n, const std::string& rid, const std::string& packed) {
  const std::string empty;
  frames f;
  f.emplace_back(rid.data(), rid.size());
  f.emplace_back();
  f.emplace_back(packed.data(), packed.size());
  n.core.on_message(f, net.now);
}

std::string hello_bytes(std::uint64_t id, const std::string& endpoint,
                        const std::string& family = "default", std::uint8_t flags = 0) {
  return "S0P1\x01" + u64(id) + u32(1000) + u32(3) + std::string(1, static_cast<char>(flags)) +
         str8(family) + str16(endpoint) + str16("") + str16("");
}
std::string state_bytes(std::uint64_t seq, bool replace,
                        const std::vector<std::tuple<std::string, int, int, int>>& entries) {
  std::string s = "S0P1\x03" + u64(seq) + std::string(1, replace ? '\x01' : '\x00') +
                  u16(static_cast<std::uint16_t>(entries.size()));
  for (const auto& [name, w, i, q] : entries)
    s += str8(name) + u32(static_cast<std::uint32_t>(w)) + u32(static_cast<std::uint32_t>(i)) +
         u32(static_cast<std::uint32_t>(q)) + std::string(1, '\0');
  return s;
}

const std::string A = "tcp://10.0.0.1:5558";
const std::string B = "tcp://10.0.0.2:5558";
const std::string C = "tcp://10.0.0.3:5558";
const std::string D = "tcp://10.0.0.4:5558";

class family_test : public ::testing::Test {
 protected:
  fake_net net;
};

// ---- the mesh ----

TEST_F(family_test, gossip_makes_a_full_mesh_of_four_from_a_chain_of_seeds) {
  node& a = net.add(A);
  node& b = net.add(B, {A});
  node& c = net.add(C, {B});
  node& d = net.add(D, {C});
  net.advance(2000ms);
  for (node* n : {&a, &b, &c, &d}) {
    EXPECT_EQ(n->core.alive_count(), 3u) << n->io.self_;
    EXPECT_EQ(n->core.peer_count(), 3u) << n->io.self_;
    EXPECT_EQ(n->io.links.size(), 3u) << n->io.self_;  // one link per peer, none to itself
  }
  for (const std::string& e : {B, C, D}) EXPECT_EQ(a.listener.count("up", e), 1u) << e;
  EXPECT_EQ(*d.core.state_of(A), peer_state::alive);
  // Quiet from then on: the alive set does not change, so PEERS are not sent again.
  const auto peers_before = a.io.sent_to(B, pp::command::peers);
  net.advance(3000ms);
  EXPECT_EQ(a.io.sent_to(B, pp::command::peers), peers_before);
  EXPECT_GE(a.io.sent_to(B, pp::command::hello), 3u);  // HELLO is the heartbeat
}

TEST_F(family_test, hello_is_the_first_message_of_every_connection) {
  net.add(A);
  node& b = net.add(B, {A});
  net.advance(50ms);
  ASSERT_FALSE(b.io.sent.empty());
  EXPECT_EQ(b.io.sent.front().command(), 1);  // HELLO, then PEERS
  EXPECT_EQ(b.io.sent.at(1).command(), 2);
}

TEST_F(family_test, a_silent_peer_is_lost_and_its_link_reopened) {
  node& a = net.add(A);
  node& b = net.add(B, {A});
  net.advance(500ms);
  ASSERT_EQ(*a.core.state_of(B), peer_state::alive);
  const int opened = a.io.opened;
  const std::uint32_t old_link = a.io.links.begin()->first;
  // A partition that drops B's packets without a FIN or RST: B's link still looks up.
  net.cut.insert({B, A});
  // B's last HELLO came at most one interval (and a quarter: the scan) before the cut; A judges
  // it lost liveness x its heartbeat (3 x 1000 ms) after that, and a quarter interval at most
  // later.
  net.advance(1700ms);
  EXPECT_EQ(*a.core.state_of(B), peer_state::alive);
  net.advance(2600ms);
  EXPECT_EQ(*a.core.state_of(B), peer_state::lost);
  EXPECT_EQ(a.listener.count("down", B), 1u);
  EXPECT_EQ(a.core.capacity_of(B, "echo"), peer_capacity{});
  // A closed its link to B and opened a new one (a fresh connection, not the old one's queue).
  EXPECT_EQ(a.io.opened, opened + 1);
  EXPECT_FALSE(a.io.links.contains(old_link));
  EXPECT_EQ(a.io.links_to(B), 1u);
  // The partition heals: B's next HELLO brings it back.
  net.cut.clear();
  net.advance(1500ms);
  EXPECT_EQ(*a.core.state_of(B), peer_state::alive);
  EXPECT_EQ(a.listener.count("up", B), 2u);
  EXPECT_EQ(*b.core.state_of(A), peer_state::alive);
}

TEST_F(family_test, a_killed_peer_is_lost_and_the_others_stay_linked) {
  node& a = net.add(A);
  net.add(B, {A});
  node& c = net.add(C, {B});
  net.advance(1000ms);
  ASSERT_EQ(a.core.alive_count(), 2u);
  net.kill(B);
  net.advance(4100ms);  // liveness x heartbeat + one scan
  EXPECT_EQ(*a.core.state_of(B), peer_state::lost);
  EXPECT_EQ(*c.core.state_of(B), peer_state::lost);
  EXPECT_EQ(*a.core.state_of(C), peer_state::alive);
  EXPECT_EQ(*c.core.state_of(A), peer_state::alive);
}

TEST_F(family_test, a_hello_of_its_own_marks_the_endpoint_as_itself) {
  const std::string alias = "tcp://a.example:5558";
  node& a = net.add(A, {alias, A});  // itself by another name, and by its own endpoint
  net.at[alias] = &a;
  EXPECT_EQ(a.core.state_of(A), nullptr);  // its own advertised endpoint is never a peer
  net.advance(500ms);
  ASSERT_NE(a.core.state_of(alias), nullptr);
  EXPECT_EQ(*a.core.state_of(alias), peer_state::self);
  EXPECT_EQ(a.io.links.size(), 0u);  // the link to itself is closed, and stays closed
  EXPECT_GE(a.core.dropped(family_drop::self), 1u);
  net.advance(10000ms);
  EXPECT_EQ(a.io.links.size(), 0u);
  EXPECT_EQ(a.io.opened, 1);
  EXPECT_EQ(a.listener.log.size(), 0u);
}

TEST_F(family_test, a_new_broker_id_at_a_known_endpoint_is_a_restart) {
  node& a = net.add(A);
  net.add(B, {A});
  net.advance(500ms);
  ASSERT_EQ(a.listener.count("up", B), 1u);
  // B restarts before A could notice it was gone.
  net.kill(B);
  net.pump();
  node& b2 = net.add(B, {A});
  net.advance(300ms);
  EXPECT_EQ(*a.core.state_of(B), peer_state::alive);
  ASSERT_EQ(a.listener.count("down", B), 1u);
  EXPECT_EQ(a.listener.count("up", B), 2u);
  const auto down = std::find_if(a.listener.log.begin(), a.listener.log.end(),
                                 [](const heard& h) { return h.what == "down"; });
  EXPECT_NE(down->why.find("restarted"), std::string::npos);
  // The new incarnation got A's HELLO and a full STATE.
  EXPECT_EQ(*b2.core.state_of(A), peer_state::alive);
}

TEST_F(family_test, a_hello_of_another_family_is_dropped) {
  family_settings eu;
  eu.family = "eu";
  node& a = net.add(A, {}, eu);
  net.add(B, {A});  // family "default"
  net.advance(500ms);
  EXPECT_EQ(a.core.peer_count(), 0u);
  EXPECT_GE(a.core.dropped(family_drop::other_family), 1u);
  // B never heard A, so it sent nothing but HELLO: PEERS and STATE wait for the relation.
  EXPECT_EQ(a.core.dropped(family_drop::unknown_sender), 0u);
}

// ---- fallback families ----

family_settings of_family(const std::string& name, std::vector<std::string> fallbacks = {}) {
  family_settings s;
  s.family = name;
  s.fallback_families = std::move(fallbacks);
  return s;
}

nlohmann::json peer_status(node& n, const std::string& endpoint) {
  nlohmann::json j;
  n.core.add_status(j, time_point{});
  for (const auto& p : j["family"]["peers"])
    if (p["endpoint"] == endpoint) return p;
  return {};
}

TEST_F(family_test, a_fallback_family_links_up_and_each_side_knows_the_relation) {
  node& a = net.add(A, {B}, of_family("eu", {"asia", "us"}));
  node& b = net.add(B, {}, of_family("us"));
  net.advance(500ms);
  ASSERT_EQ(*a.core.state_of(B), peer_state::alive);
  ASSERT_EQ(*b.core.state_of(A), peer_state::alive);
  EXPECT_EQ(peer_status(a, B)["relation"], "fallback");
  EXPECT_EQ(peer_status(a, B)["fallback_rank"], 2);
  EXPECT_EQ(peer_status(b, A)["relation"], "dependent");
  EXPECT_EQ(peer_status(b, A)["fallback_rank"], 0);
  // Requests may come only from peers that may forward: B's link into A carries none.
  const std::string b_link = b.io.links.begin()->second.routing_id;
  const std::string a_link = a.io.links.begin()->second.routing_id;
  EXPECT_FALSE(a.core.alive_connection(b_link));
  EXPECT_TRUE(b.core.alive_connection(a_link));
}

TEST_F(family_test, a_peer_back_in_an_unrelated_family_is_down_at_once) {
  node& a = net.add(A, {B});
  node& b = net.add(B);
  net.advance(500ms);
  ASSERT_EQ(*a.core.state_of(B), peer_state::alive);
  std::string b_link;  // B's link into A
  for (const auto& [id, l] : b.io.links)
    if (l.endpoint == A) b_link = l.routing_id;
  inject(net, a, b_link, hello_bytes(0x9999, B, "elsewhere"));
  EXPECT_EQ(*a.core.state_of(B), peer_state::lost);
  EXPECT_EQ(a.listener.count("down", B), 1u);
}

TEST_F(family_test, capacity_goes_only_to_peers_that_may_forward_here) {
  node& a = net.add(A, {B}, of_family("eu", {"us"}));
  node& b = net.add(B, {}, of_family("us"));
  net.advance(500ms);
  const std::vector<service_capacity> echo = {{"echo", 2, 2, 0}};
  a.core.set_local_capacity(echo, net.now);
  b.core.set_local_capacity(echo, net.now);
  net.advance(500ms);
  EXPECT_EQ(a.core.capacity_of(B, "echo"), (peer_capacity{2, 2, 0}));  // its fallback's
  EXPECT_EQ(b.core.capacity_of(A, "echo"), peer_capacity{});           // never a dependent's
  EXPECT_EQ(a.io.sent_to(B, pp::command::state), 0u);
}

TEST_F(family_test, members_learn_the_fallbacks_and_dependents_learn_the_whole_fallback_family) {
  node& a = net.add(A, {B}, of_family("eu", {"us"}));
  node& a2 = net.add(C, {A}, of_family("eu", {"us"}));
  node& b = net.add(B, {}, of_family("us"));
  node& b2 = net.add(D, {B}, of_family("us"));
  net.advance(3000ms);
  EXPECT_EQ(*a2.core.state_of(B), peer_state::alive) << "from A's PEERS to a member";
  EXPECT_EQ(*a.core.state_of(D), peer_state::alive) << "from B's PEERS to a dependent";
  EXPECT_EQ(*a2.core.state_of(D), peer_state::alive);
  EXPECT_EQ(*b.core.state_of(C), peer_state::alive);
  EXPECT_EQ(*b2.core.state_of(A), peer_state::alive);
  EXPECT_EQ(peer_status(b2, C)["relation"], "dependent");
}

TEST_F(family_test, the_configuration_network_stays_in_the_family) {
  node& a = net.add(A, {B, C}, of_family("eu", {"us"}));
  node& a2 = net.add(C, {}, of_family("eu", {"us"}));
  node& b = net.add(B, {}, of_family("us"));
  net.advance(1000ms);
  const std::vector<pp::policy_entry> tables = {{"echo", pp::policy_timeout, 5000, 0, 0, 0}};
  a.core.set_policy(2, 111, tables, net.now);
  net.advance(200ms);
  EXPECT_EQ(a2.listener.configs.size(), 1u);
  EXPECT_TRUE(b.listener.configs.empty());
  EXPECT_EQ(a.io.sent_to(B, pp::command::config), 0u);
  // A CONFIG a broker of another family sends anyway is dropped.
  const auto before = b.core.dropped(family_drop::other_family);
  const std::string a_link = a.io.links.begin()->second.routing_id;
  for (const auto& [id, l] : a.io.links)
    if (l.endpoint == B) {
      frames f;
      pp::append_config(f, 9, 1, tables);
      inject(net, b, l.routing_id, std::string(protocol::view(f[1])));
    }
  EXPECT_EQ(b.core.dropped(family_drop::other_family), before + 1);
  EXPECT_TRUE(b.listener.configs.empty());
  (void)a_link;
}

TEST_F(family_test, bye_takes_the_peer_down_at_once) {
  node& a = net.add(A);
  node& b = net.add(B, {A});
  net.advance(500ms);
  b.core.shutdown(net.now);
  net.pump();
  EXPECT_EQ(*a.core.state_of(B), peer_state::lost);
  EXPECT_EQ(a.listener.count("down", B), 1u);
  EXPECT_NE(a.listener.log.back().why.find("BYE"), std::string::npos);
  EXPECT_EQ(b.io.links.size(), 0u);
}

TEST_F(family_test, draining_is_told_in_hello_at_once) {
  node& a = net.add(A);
  node& b = net.add(B, {A});
  net.advance(500ms);
  b.core.begin_drain(net.now);
  net.pump();
  EXPECT_EQ(a.listener.count("updated", B), 1u);
  nlohmann::json j;
  a.core.add_status(j, net.now);
  EXPECT_TRUE(j["family"]["peers"][0]["draining"].get<bool>());
}

TEST_F(family_test, a_learned_peer_lost_for_five_minutes_is_forgotten_a_configured_one_is_not) {
  node& a = net.add(A, {C});  // C configured, never there
  net.add(B, {A});
  net.advance(500ms);
  ASSERT_EQ(*a.core.state_of(B), peer_state::alive);
  net.kill(B);
  for (int i = 0; i < 100 && *a.core.state_of(B) != peer_state::lost; ++i) net.advance(50ms);
  ASSERT_EQ(*a.core.state_of(B), peer_state::lost);
  net.advance(std::chrono::milliseconds(std::chrono::minutes(5)) - 500ms);
  EXPECT_NE(a.core.state_of(B), nullptr);
  net.advance(1000ms);
  EXPECT_EQ(a.core.state_of(B), nullptr);  // forgotten, its link closed
  EXPECT_EQ(a.io.links_to(B), 0u);
  ASSERT_NE(a.core.state_of(C), nullptr);  // configured: kept, still trying
  EXPECT_EQ(*a.core.state_of(C), peer_state::connecting);
  EXPECT_EQ(a.io.links_to(C), 1u);
}

// ---- capacity ----

TEST_F(family_test, local_capacity_reaches_every_peer) {
  node& a = net.add(A);
  node& b = net.add(B, {A});
  node& c = net.add(C, {B});
  net.advance(1000ms);
  const std::vector<service_capacity> echo = {{"echo", 2, 5, 1}};
  c.core.set_local_capacity(echo, net.now);
  net.advance(300ms);
  EXPECT_EQ(a.core.capacity_of(C, "echo"), (peer_capacity{2, 5, 1}));
  EXPECT_EQ(b.core.capacity_of(C, "echo"), (peer_capacity{2, 5, 1}));
  const std::vector<service_capacity> gone = {{"echo", 0, 0, 0}};
  c.core.set_local_capacity(gone, net.now);
  net.advance(300ms);
  EXPECT_EQ(a.core.capacity_of(C, "echo"), peer_capacity{});
  EXPECT_EQ(a.listener.log.back().what, "capacity");
  EXPECT_TRUE(a.listener.log.back().capacity.zero());
}

TEST_F(family_test, a_policy_change_reaches_every_broker_and_a_newcomer_and_the_higher_wins) {
  node& a = net.add(A);
  node& b = net.add(B, {A});
  net.advance(1000ms);
  const std::vector<pp::policy_entry> tables = {{"echo", pp::policy_timeout, 5000, 0, 0, 0}};
  a.core.set_policy(2, 111, tables, net.now);
  net.advance(100ms);
  ASSERT_EQ(b.listener.configs.size(), 1u);
  EXPECT_EQ(b.listener.configs[0].version, 2u);
  EXPECT_EQ(b.listener.configs[0].origin, 111u);
  EXPECT_EQ(b.listener.configs[0].first_service, "echo");
  // A broker that joins later hears it when its links connect.
  node& c = net.add(C, {B});
  net.advance(1000ms);
  ASSERT_EQ(c.listener.configs.size(), 1u);
  EXPECT_EQ(c.listener.configs[0].version, 2u);
  // Two changes at once (same version): the higher origin wins everywhere; older ones are ignored.
  const std::vector<pp::policy_entry> other = {{"pay", pp::policy_idempotent, 0, 0, 0, 1}};
  a.core.set_policy(3, 100, tables, net.now);
  c.core.set_policy(3, 900, other, net.now);
  net.advance(500ms);
  EXPECT_EQ(b.listener.configs.back().origin, 900u);
  EXPECT_EQ(a.listener.configs.back().origin, 900u);
  EXPECT_EQ(a.listener.configs.back().first_service, "pay");
  const std::size_t heard = c.listener.configs.size();
  a.core.set_policy(2, 999, tables, net.now);  // older: nobody adopts it
  net.advance(500ms);
  EXPECT_EQ(c.listener.configs.size(), heard);
  EXPECT_EQ(b.listener.configs.back().version, 3u);
}

TEST_F(family_test,
       the_idempotent_flag_travels_and_a_zero_entry_of_an_unknown_service_is_harmless) {
  node& a = net.add(A);
  node& b = net.add(B, {A});
  net.advance(1000ms);
  const std::vector<service_capacity> idem = {{"echo", 1, 1, 0, true}};
  b.core.set_local_capacity(idem, net.now);
  net.advance(300ms);
  EXPECT_EQ(a.core.capacity_of(B, "echo"), (peer_capacity{1, 1, 0, true}));
  // All zero but flagged, for a service never announced: nothing to forget, nothing to send.
  const std::vector<service_capacity> odd = {{"never", 0, 0, 0, true}};
  b.core.set_local_capacity(odd, net.now);
  net.advance(300ms);
  EXPECT_EQ(a.core.capacity_of(B, "never"), peer_capacity{});
}

TEST_F(family_test, state_goes_at_most_every_200_ms_per_link_with_the_latest_values) {
  node& a = net.add(A);
  node& b = net.add(B, {A});
  net.advance(1000ms);
  const auto before = b.io.sent_to(A, pp::command::state);
  for (std::uint32_t i = 1; i <= 100; ++i) {  // a change every 10 ms for a second
    const std::vector<service_capacity> c = {{"echo", 1, i, 0}};
    b.core.set_local_capacity(c, net.now);
    net.advance(10ms);
  }
  net.advance(200ms);
  const auto states = b.io.sent_to(A, pp::command::state) - before;
  EXPECT_GE(states, 4u);
  EXPECT_LE(states, 6u);  // 1 s / 200 ms, and the last round
  EXPECT_EQ(a.core.capacity_of(B, "echo"), (peer_capacity{1, 100, 0}));
  // Without changes only the full state every 10 s goes.
  const auto quiet = b.io.sent_to(A, pp::command::state);
  net.advance(10000ms);
  EXPECT_EQ(b.io.sent_to(A, pp::command::state) - quiet, 1u);
}

TEST_F(family_test, a_full_state_replaces_what_the_peer_said_before) {
  node& a = net.add(A);
  net.add(B, {A});
  net.advance(500ms);
  // B's link to A, as A's ROUTER sees it: take its routing id from a HELLO of B's.
  const std::string rid = net.nodes[1]->io.links.begin()->second.routing_id;
  inject(net, a, rid, state_bytes(100, true, {{"x", 1, 1, 0}, {"y", 2, 2, 0}}));
  EXPECT_EQ(a.core.capacity_of(B, "x"), (peer_capacity{1, 1, 0}));
  inject(net, a, rid, state_bytes(101, false, {{"z", 3, 3, 3}}));
  inject(net, a, rid, state_bytes(102, true, {{"y", 2, 2, 0}}));
  EXPECT_EQ(a.core.capacity_of(B, "x"), peer_capacity{});
  EXPECT_EQ(a.core.capacity_of(B, "z"), peer_capacity{});
  EXPECT_EQ(a.core.capacity_of(B, "y"), (peer_capacity{2, 2, 0}));
  // The listener heard x and z go, and nothing for y (unchanged).
  std::vector<std::string> last;
  for (auto it = a.listener.log.end() - 2; it != a.listener.log.end(); ++it)
    last.push_back(it->service + (it->capacity.zero() ? "=0" : ""));
  std::sort(last.begin(), last.end());
  EXPECT_EQ(last, (std::vector<std::string>{"x=0", "z=0"}));
  // An older sequence is stale; a gap is counted and taken.
  inject(net, a, rid, state_bytes(102, false, {{"w", 1, 1, 1}}));
  EXPECT_EQ(a.core.dropped(family_drop::stale_state), 1u);
  inject(net, a, rid, state_bytes(110, false, {{"w", 1, 1, 1}}));
  EXPECT_EQ(a.core.capacity_of(B, "w"), (peer_capacity{1, 1, 1}));
}

TEST_F(family_test, a_full_state_over_1000_entries_is_continued_without_replace) {
  node& a = net.add(A);
  node& b = net.add(B, {A});
  std::vector<std::string> names;
  for (int i = 0; i < 2500; ++i) names.push_back("service-" + std::to_string(i));
  std::vector<service_capacity> local;
  for (const auto& n : names) local.push_back({n, 1, 2, 0});
  b.core.set_local_capacity(local, net.now);
  net.advance(500ms);
  std::vector<const sent_record*> states;
  for (const auto& s : b.io.sent)
    if (s.to == A && s.command() == 3) states.push_back(&s);
  ASSERT_GE(states.size(), 3u);
  // flags of the first three: replace, then continuations; sequences 1, 2, 3
  for (std::size_t i = 0; i < 3; ++i) {
    const std::string& p = states[i]->parts.at(1);
    EXPECT_EQ(static_cast<int>(p.at(13)), i == 0 ? 1 : 0) << i;
    EXPECT_EQ(p.substr(5, 8), u64(i + 1)) << i;
  }
  for (const auto& n : names) ASSERT_EQ(a.core.capacity_of(B, n), (peer_capacity{1, 2, 0})) << n;
}

// ---- bounds ----

TEST_F(family_test, peers_over_the_budget_are_refused_and_counted) {
  family_settings small;
  small.max_peers = 3;
  node& a = net.add(A, {}, small);
  inject(net, a, "conn-b", hello_bytes(77, B));
  std::string peers = "S0P1\x02" + u16(10);
  for (int i = 0; i < 10; ++i) peers += str16("tcp://10.1.0." + std::to_string(i) + ":5558");
  inject(net, a, "conn-b", peers);
  EXPECT_EQ(a.core.peer_count(), 3u);
  EXPECT_EQ(a.core.dropped(family_drop::peers_full), 8u);
  std::vector<budget_line> budgets;
  a.core.add_budgets(budgets);
  ASSERT_FALSE(budgets.empty());
  EXPECT_EQ(std::string(budgets[0].name), "peers");
  EXPECT_EQ(budgets[0].used, 3u);
  EXPECT_EQ(budgets[0].limit, 3u);
}

TEST_F(family_test, services_over_the_budget_are_refused_and_counted) {
  family_settings small;
  small.max_services = 5;
  node& a = net.add(A, {}, small);
  inject(net, a, "conn-b", hello_bytes(77, B));
  std::vector<std::tuple<std::string, int, int, int>> entries;
  for (int i = 0; i < 10; ++i) entries.emplace_back("s" + std::to_string(i), 1, 1, 0);
  inject(net, a, "conn-b", state_bytes(1, true, entries));
  EXPECT_EQ(a.core.dropped(family_drop::services_full), 5u);
  std::vector<budget_line> budgets;
  a.core.add_budgets(budgets);
  EXPECT_EQ(budgets[1].used, 5u);
  EXPECT_EQ(budgets[1].limit, 5u);
  // A known service still updates; zeros make room.
  inject(net, a, "conn-b", state_bytes(2, false, {{"s0", 9, 9, 9}, {"s1", 0, 0, 0}}));
  inject(net, a, "conn-b", state_bytes(3, false, {{"s7", 1, 1, 1}}));
  EXPECT_EQ(a.core.capacity_of(B, "s0"), (peer_capacity{9, 9, 9}));
  EXPECT_EQ(a.core.capacity_of(B, "s7"), (peer_capacity{1, 1, 1}));
}

TEST_F(family_test, endpoints_and_names_the_rules_refuse_are_counted) {
  node& a = net.add(A);
  inject(net, a, "conn-b", hello_bytes(77, "tcp://" + std::string(260, 'h') + ":1"));
  inject(net, a, "conn-b", hello_bytes(77, B, "bad\nfamily"));
  inject(net, a, "conn-b", hello_bytes(77, B));
  inject(net, a, "conn-b", "S0P1\x02" + u16(1) + str16("tcp://*:1"));
  inject(net, a, "conn-b", state_bytes(1, false, {{"bad\x01name", 1, 1, 1}}));
  EXPECT_EQ(a.core.dropped(family_drop::invalid_endpoint), 2u);
  EXPECT_EQ(a.core.dropped(family_drop::invalid_name), 2u);
  EXPECT_EQ(a.core.peer_count(), 1u);
  std::vector<budget_line> budgets;
  a.core.add_budgets(budgets);
  EXPECT_EQ(std::string(budgets[2].name), "peer_endpoint_bytes");
  EXPECT_EQ(budgets[2].limit, 255u);
}

// ---- what is dropped ----

TEST_F(family_test, malformed_messages_of_every_command_are_dropped_and_counted) {
  node& a = net.add(A);
  inject(net, a, "conn-b", hello_bytes(77, B));
  ASSERT_EQ(*a.core.state_of(B), peer_state::alive);
  const std::string good_hello = hello_bytes(77, B);
  const std::vector<std::string> bad = {
      "",
      "S0P1",
      "S0P2\x01",
      "S0P1\x09",
      good_hello.substr(0, good_hello.size() - 1),
      good_hello + "x",
      "S0P1\x01" + u64(1) + u32(0) + u32(3),  // short, and heartbeat 0
      "S0P1\x02" + u16(2) + str16("tcp://a:1"),
      "S0P1\x02" + u16(0) + "x",
      "S0P1\x03" + u64(5) + std::string(1, '\0') + u16(1),
      "S0P1\x03" + u64(5) + std::string(1, '\x04') + u16(0),
      "S0P1\x04" + u16(1),
      "S0P1\x04" + u16(1) + str16("x") + "y",
  };
  for (const auto& m : bad) inject(net, a, "conn-b", m);
  EXPECT_EQ(a.core.dropped(family_drop::malformed), bad.size());
  // Frame counts other than identity, "" and one packed frame.
  frames two;
  two.emplace_back("conn-b", 6);
  two.emplace_back(good_hello.data(), good_hello.size());
  a.core.on_message(two, net.now);
  frames four;
  four.emplace_back("conn-b", 6);
  four.emplace_back();
  four.emplace_back(good_hello.data(), good_hello.size());
  four.emplace_back("x", 1);
  a.core.on_message(four, net.now);
  frames none;
  a.core.on_message(none, net.now);
  EXPECT_EQ(a.core.dropped(family_drop::malformed), bad.size() + 3);
  EXPECT_EQ(*a.core.state_of(B), peer_state::alive);  // nothing of it touched the peer
  // Well-formed, but from a connection that never said HELLO.
  inject(net, a, "stranger", "S0P1\x02" + u16(0));
  inject(net, a, "stranger", state_bytes(1, true, {}));
  inject(net, a, "stranger", "S0P1\x04" + u16(503) + str16(""));
  EXPECT_EQ(a.core.dropped(family_drop::unknown_sender), 3u);
  // Someone else claiming this broker's own endpoint.
  inject(net, a, "impostor", hello_bytes(99, A));
  EXPECT_EQ(a.core.dropped(family_drop::conflict), 1u);
  metrics::exposition e;
  a.core.add_metrics(e, net.now);
  const std::string metrics = e.text();
  EXPECT_NE(metrics.find("scale0_family_dropped_total{reason=\"malformed\"} " +
                         std::to_string(bad.size() + 3)),
            std::string::npos);
}

TEST_F(family_test, a_refused_send_is_counted_and_the_state_sent_whole_later) {
  node& a = net.add(A);
  node& b = net.add(B, {A});
  net.advance(500ms);
  b.io.refuse = true;  // its queue to A is full
  const std::vector<service_capacity> echo = {{"echo", 1, 1, 0}};
  b.core.set_local_capacity(echo, net.now);
  net.advance(300ms);
  EXPECT_EQ(a.core.capacity_of(B, "echo"), peer_capacity{});
  b.io.refuse = false;
  net.advance(300ms);
  EXPECT_EQ(a.core.capacity_of(B, "echo"), (peer_capacity{1, 1, 0}));
  nlohmann::json j;
  b.core.add_status(j, net.now);
  EXPECT_GT(j["family"]["counters"]["unsent"].get<int>(), 0);
}

TEST_F(family_test, status_lists_each_peer_with_its_services) {
  node& a = net.add(A);
  node& b = net.add(B, {A});
  net.advance(500ms);
  const std::vector<service_capacity> echo = {{"echo", 2, 3, 4}};
  b.core.set_local_capacity(echo, net.now);
  net.advance(300ms);
  nlohmann::json j;
  a.core.add_status(j, net.now);
  const auto& f = j["family"];
  EXPECT_EQ(f["name"], "default");
  ASSERT_EQ(f["peers"].size(), 1u);
  const auto& p = f["peers"][0];
  EXPECT_EQ(p["endpoint"], B);
  EXPECT_EQ(p["state"], "alive");
  EXPECT_EQ(p["link"], "connected");
  EXPECT_EQ(p["broker_id"], broker_id_hex(b.core.settings().broker_id));
  EXPECT_EQ(p["frontend"], "tcp://fe-of-10.0.0.2:5558");
  EXPECT_LT(p["last_heard_ms"].get<double>(), 1000.0);
  ASSERT_EQ(p["services"].size(), 1u);
  EXPECT_EQ(p["services"][0]["name"], "echo");
  EXPECT_EQ(p["services"][0]["idle"], 3);
  metrics::exposition e;
  a.core.add_metrics(e, net.now);
  const std::string metrics = e.text();
  EXPECT_NE(metrics.find("scale0_family_peers{state=\"alive\"} 1"), std::string::npos);
  EXPECT_NE(metrics.find("scale0_family_messages_total{direction=\"in\",command=\"hello\"}"),
            std::string::npos);
}

}  // namespace
}  // namespace scale0::broker_detail
