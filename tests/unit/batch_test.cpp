// SPDX-License-Identifier: Apache-2.0
// BATCH (docs/protocol.md, "Batches"): the writer and reader, and the broker core holding what one
// turn has for a peer that takes batches until flush().
#include "protocol/batch.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "protocol/packing.hpp"
#include "support/broker_core_fixture.hpp"

namespace scale0::broker_detail {
namespace {

using protocol::batch_reader;
using protocol::batch_writer;

std::string be(std::uint64_t v, int width) {
  std::string s;
  for (int b = width - 1; b >= 0; --b) s += static_cast<char>(v >> (8 * b));
  return s;
}
std::string str8(const std::string& s) {
  return std::string(1, static_cast<char>(s.size())) + s;
}
std::string str16(const std::string& s) {
  return be(s.size(), 2) + s;
}
std::string client_request(std::uint64_t id, const std::string& service,
                           std::uint32_t timeout = 0) {
  return "S0C2\x01" + be(id, 8) + be(timeout, 4) + str8(service);
}
std::string client_reply(std::uint64_t id, std::uint16_t status, const std::string& message) {
  return "S0C2\x02" + be(id, 8) + be(status, 2) + str16(message);
}
std::string worker_reply(std::uint64_t job, std::uint16_t status = 200) {
  return "S0W2\x03" + be(job, 8) + be(status, 2) + str16("");
}
strings parts_of(const frames& f) {
  strings s;
  for (const auto& m : f) s.emplace_back(protocol::view(m));
  return s;
}

// ---- the writer and the reader ----

TEST(batch_writer, one_message_leaves_as_it_came) {
  batch_writer box(1);
  frames msg = make({"peer", "", client_request(7, "echo"), "body"});
  ASSERT_TRUE(box.batchable(msg));
  box.add(msg);
  frames out;
  box.take(out);
  EXPECT_EQ(parts_of(out), (strings{"peer", "", client_request(7, "echo"), "body"}));
  EXPECT_TRUE(box.empty());
}

TEST(batch_writer, several_messages_become_one_batch_that_reads_back_the_same) {
  const std::string big(1000, 'b');  // above the inline size: a frame of its own
  const std::vector<strings> messages = {
      {"peer", "", client_request(1, "echo"), "one"},
      {"peer", "", client_request(2, "echo")},  // no body
      {"peer", "", client_request(3, "other"), big, "", "three"},
      {"peer", "", client_request(4, "echo"), std::string(256, 'i')},  // just inline
  };
  batch_writer box(1);
  for (const auto& m : messages) {
    frames f = make(m);
    ASSERT_TRUE(box.batchable(f));
    ASSERT_TRUE(box.fits(f));
    box.add(f);
  }
  EXPECT_EQ(box.size(), 4u);
  frames out;
  box.take(out);
  ASSERT_EQ(out.size(), 4u);  // identity, "", the packed frame, the big body
  EXPECT_EQ(protocol::view(out[0]), "peer");
  EXPECT_EQ(protocol::view(out[1]), "");
  EXPECT_EQ(protocol::view(out[2]).substr(0, 7), std::string("S0C2\x09\x00\x04", 7));
  EXPECT_EQ(protocol::view(out[3]), big);

  batch_reader reader;
  ASSERT_TRUE(protocol::is_batch(out, 1));
  ASSERT_TRUE(reader.open(out, 1));
  EXPECT_EQ(reader.size(), 4u);
  frames entry;
  std::size_t bytes = 0;
  for (const auto& m : messages) {
    ASSERT_TRUE(reader.next(entry, bytes));
    EXPECT_EQ(parts_of(entry), m);
    std::size_t expected = 0;
    for (std::size_t i = 3; i < m.size(); ++i) expected += m[i].size();
    EXPECT_EQ(bytes, expected);
  }
  EXPECT_FALSE(reader.next(entry, bytes));
}

TEST(batch_writer, a_dealer_batch_has_no_identity) {
  batch_writer box(0);
  for (std::uint64_t job : {1, 2}) {
    frames f = make({"", worker_reply(job), "r"});
    box.add(f);
  }
  frames out;
  box.take(out);
  ASSERT_EQ(out.size(), 2u);
  batch_reader reader;
  ASSERT_TRUE(reader.open(out, 0));
  frames entry;
  std::size_t bytes = 0;
  ASSERT_TRUE(reader.next(entry, bytes));
  EXPECT_EQ(parts_of(entry), (strings{"", worker_reply(1), "r"}));
}

TEST(batch_writer, only_small_s0_2_messages_travel_in_batches) {
  batch_writer box(1);
  EXPECT_FALSE(box.batchable(make({"p", "", "S0C1", "\x02"})));                      // S0/1
  EXPECT_FALSE(box.batchable(make({"p", "", "MDPC01", "echo", "x"})));               // Majordomo
  EXPECT_FALSE(box.batchable(make({"p", "", std::string("S0C2\x09\x00\x01", 7)})));  // a batch
  EXPECT_FALSE(box.batchable(make({"p", "", client_reply(1, 500, std::string(5000, 'm'))})));
  strings many{"p", "", client_request(1, "echo")};
  for (int i = 0; i < 300; ++i) many.push_back("x");  // more body frames than an entry holds
  EXPECT_FALSE(box.batchable(make(many)));
  EXPECT_TRUE(box.batchable(make({"p", "", client_reply(1, 200, "")})));
}

TEST(batch_writer, a_batch_is_bounded_by_entries_and_separate_frames) {
  batch_writer box(1);
  std::size_t added = 0;
  for (;; ++added) {
    frames f = make({"p", "", client_request(added, "echo"), "x"});
    if (!box.fits(f)) break;
    box.add(f);
  }
  EXPECT_EQ(added, protocol::max_batch_entries);
  frames out;
  box.take(out);
  const std::string big(protocol::batch_inline_body + 1, 'b');
  for (added = 0;; ++added) {
    frames f = make({"p", "", client_request(added, "echo"), big});
    if (!box.fits(f)) break;
    box.add(f);
  }
  EXPECT_EQ(added, protocol::max_batch_frames);
  // A message with another header starts a batch of its own.
  frames mixed = make({"p", "", worker_reply(1)});
  EXPECT_FALSE(box.fits(mixed));
}

// A batch written by hand: count, then entries of (packed without header, parts).
std::string batch_frame(const std::string& header, std::uint16_t count, const std::string& rest) {
  return header + "\x09" + be(count, 2) + rest;
}
std::string entry(const std::string& packed_without_header, const std::vector<std::string>& bodies,
                  std::size_t separate = 0) {
  std::string e = be(packed_without_header.size(), 4) + packed_without_header;
  e += static_cast<char>(bodies.size() + separate);
  for (const auto& b : bodies) e += be(b.size(), 4) + b;
  for (std::size_t i = 0; i < separate; ++i) e += be(0xffffffffu, 4);
  return e;
}

TEST(batch_reader, takes_a_hand_written_batch) {
  const std::string e1 = entry(client_request(1, "echo").substr(4), {"a"});
  const std::string e2 = entry(client_request(2, "echo").substr(4), {}, 1);
  frames f = make({"id", "", batch_frame("S0C2", 2, e1 + e2), "separate"});
  batch_reader r;
  ASSERT_TRUE(r.open(f, 1));
  frames entry_frames;
  std::size_t bytes = 0;
  ASSERT_TRUE(r.next(entry_frames, bytes));
  EXPECT_EQ(parts_of(entry_frames), (strings{"id", "", client_request(1, "echo"), "a"}));
  ASSERT_TRUE(r.next(entry_frames, bytes));
  EXPECT_EQ(parts_of(entry_frames), (strings{"id", "", client_request(2, "echo"), "separate"}));
  EXPECT_EQ(bytes, 8u);
}

TEST(batch_reader, refuses_every_malformed_batch_whole) {
  const std::string e = entry(client_request(1, "echo").substr(4), {"a"});
  const std::vector<strings> bad = {
      {"id", "", batch_frame("S0C2", 0, "")},                         // no entry
      {"id", "", batch_frame("S0C2", 2, e)},                          // fewer entries than counted
      {"id", "", batch_frame("S0C2", 1, e + "x")},                    // bytes left over
      {"id", "", batch_frame("S0C2", 1, e.substr(0, e.size() - 1))},  // cut short
      {"id", "", batch_frame("S0C2", 1, e), "unreferenced"},          // a frame left over
      {"id", "", batch_frame("S0C2", 1, entry(client_request(1, "e").substr(4), {}, 1))},  // none
      {"id", "", batch_frame("S0C2", 1, entry(std::string("\x09\x00\x00", 3), {}))},       // nested
      {"id", "", batch_frame("S0C2", 1, be(0, 4) + std::string(1, '\0'))},  // empty entry
      {"id", "", "S0C2\x09"},                                               // no count
      {"id", "x", batch_frame("S0C2", 1, e)},                               // no delimiter
      {"id", "", batch_frame("S0X2", 1, e)},                                // not S0/2
  };
  for (const auto& b : bad) {
    frames f = make(b);
    batch_reader r;
    EXPECT_FALSE(r.open(f, 1)) << testing::PrintToString(b);
    frames out;
    std::size_t bytes = 0;
    EXPECT_FALSE(r.next(out, bytes));
  }
  std::string too_many;
  for (std::size_t i = 0; i <= protocol::max_batch_entries; ++i) too_many += e;
  frames f = make({"id", "", batch_frame("S0C2", protocol::max_batch_entries + 1, too_many)});
  batch_reader r;
  EXPECT_FALSE(r.open(f, 1));
}

// ---- the broker core ----

class batch_core_test : public core_test {
 protected:
  void ready_v2(const std::string& id, std::uint32_t concurrency, bool batches) {
    const std::string packed = "S0W2\x01" + be(concurrency, 4) + be(0, 4) +
                               std::string(1, batches ? protocol::flag_batches : 0) + str8("echo");
    deliver(1, {id, "", packed});
    out.take(id);  // WELCOME
  }
  void hello(const std::string& client, std::uint8_t flags) {
    deliver(0, {client, "", flags ? "S0C2\x05" + std::string(1, char(flags)) : "S0C2\x05"});
    core->flush(now);  // to a client that takes batches, the WELCOME too leaves at the turn's end
  }
  void request_v2(const std::string& client, std::uint64_t id) {
    deliver(0, {client, "", client_request(id, "echo"), "body"});
  }
  // The requests in a message to a worker, whether batched or not.
  static std::vector<strings> entries(const strings& m) {
    frames f = make(m);
    std::vector<strings> out;
    if (!protocol::is_batch(f, 1)) return {m};
    batch_reader r;
    EXPECT_TRUE(r.open(f, 1));
    frames e;
    std::size_t bytes = 0;
    while (r.next(e, bytes)) out.push_back(parts_of(e));
    return out;
  }
  // A client that takes batches sends three requests, which a batching worker answers: the
  // three replies are held for the client until the next flush.
  void three_answers_held_for(const std::string& client) {
    hello(client, protocol::hello_batches);
    out.take(client);
    ready_v2("w", 8, true);
    for (std::uint64_t i = 1; i <= 3; ++i) request_v2(client, i);
    core->flush(now);
    const auto jobs = entries(out.take("w").at(0));
    for (const auto& j : jobs) deliver(1, {"w", "", worker_reply(id_of(j)), "r"});
  }
  static std::uint64_t id_of(const strings& m) {
    std::uint64_t v = 0;
    for (unsigned char c : m.at(2).substr(5, 8)) v = (v << 8) | c;
    return v;
  }
};

TEST_F(batch_core_test, what_a_turn_has_for_a_batching_worker_leaves_as_one_batch_at_flush) {
  ready_v2("w", 8, true);
  for (std::uint64_t i = 1; i <= 3; ++i) request_v2("c", i);
  EXPECT_TRUE(out.take("w").empty());  // held until the turn ends
  core->flush(now);
  auto sent = out.take("w");
  ASSERT_EQ(sent.size(), 1u);
  const auto jobs = entries(sent[0]);
  ASSERT_EQ(jobs.size(), 3u);
  for (const auto& j : jobs) {
    EXPECT_EQ(j[2].substr(0, 5), "S0W2\x02");
    EXPECT_EQ(j.at(3), "body");
  }
  // Its replies, batched too, go back to an S0/2 client that did not ask for batches one by one.
  std::string batch;
  for (const auto& j : jobs) batch += entry(worker_reply(id_of(j)).substr(4), {"r"});
  deliver(1, {"w", "", batch_frame("S0W2", 3, batch)});
  EXPECT_EQ(core->counters().dropped_malformed, 0u);  // (the core takes entries, not batches)
}

TEST_F(batch_core_test, a_worker_without_the_flag_gets_one_message_per_request) {
  ready_v2("w", 8, false);
  for (std::uint64_t i = 1; i <= 3; ++i) request_v2("c", i);
  EXPECT_EQ(out.take("w").size(), 3u);
  core->flush(now);
  EXPECT_TRUE(out.take("w").empty());
}

TEST_F(batch_core_test, a_single_request_leaves_unbatched) {
  ready_v2("w", 8, true);
  request_v2("c", 1);
  core->flush(now);
  auto sent = out.take("w");
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0][2].substr(0, 5), "S0W2\x02");
}

TEST_F(batch_core_test, a_batch_that_cannot_be_delivered_goes_back_to_the_queue_whole) {
  ready_v2("gone", 8, true);
  for (std::uint64_t i = 1; i <= 3; ++i) request_v2("c", i);
  out.unreachable.insert("gone");
  core->flush(now);
  EXPECT_EQ(core->queued("echo"), 3u);  // none answered 502: none reached it
  ready_v2("next", 8, true);
  core->on_input_drained(now);
  core->flush(now);
  auto sent = out.take("next");
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(entries(sent[0]).size(), 3u);
  EXPECT_TRUE(out.take("c").empty());
}

TEST_F(batch_core_test, a_client_that_says_hello_with_batches_gets_its_replies_in_one) {
  hello("c", protocol::hello_batches);
  auto welcome = out.take("c");
  ASSERT_EQ(welcome.size(), 1u);
  EXPECT_EQ(welcome[0][2].back(), char(protocol::hello_batches));  // the broker takes them too
  ready_v2("w", 8, true);
  for (std::uint64_t i = 1; i <= 3; ++i) request_v2("c", i);
  core->flush(now);
  const auto jobs = entries(out.take("w").at(0));
  for (const auto& j : jobs) deliver(1, {"w", "", worker_reply(id_of(j)), "r"});
  EXPECT_TRUE(out.take("c").empty());
  core->flush(now);
  auto replies = out.take("c");
  ASSERT_EQ(replies.size(), 1u);
  const auto answers = entries(replies[0]);
  ASSERT_EQ(answers.size(), 3u);
  std::set<std::uint64_t> ids;
  for (const auto& a : answers) {
    EXPECT_EQ(a[2].substr(0, 5), "S0C2\x02");
    ids.insert(id_of(a));
  }
  EXPECT_EQ(ids, (std::set<std::uint64_t>{1, 2, 3}));
}

TEST_F(batch_core_test, a_hello_without_flags_is_welcomed_as_before) {
  hello("c", 0);
  auto welcome = out.take("c");
  ASSERT_EQ(welcome.size(), 1u);
  EXPECT_EQ(welcome[0][2].size(), 5u + 8 + 2 + 2);  // no flags byte
}

TEST_F(batch_core_test, a_client_that_sends_a_batch_is_answered_in_one) {
  ready_v2("w", 8, true);
  std::string batch;
  for (std::uint64_t i = 1; i <= 2; ++i) batch += entry(client_request(i, "echo").substr(4), {"b"});
  // What the loop does with a batch: its entries, marked as such.
  frames f = make({"c", "", batch_frame("S0C2", 2, batch)});
  batch_reader r;
  ASSERT_TRUE(r.open(f, 1));
  core->note_batched_input(true);
  frames e;
  std::size_t bytes = 0;
  while (r.next(e, bytes)) core->on_message(0, e, false, now);
  core->note_batched_input(false);
  core->flush(now);
  const auto jobs = entries(out.take("w").at(0));
  ASSERT_EQ(jobs.size(), 2u);
  for (const auto& j : jobs) deliver(1, {"w", "", worker_reply(id_of(j)), "r"});
  core->flush(now);
  auto replies = out.take("c");
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(entries(replies[0]).size(), 2u);
}

TEST_F(batch_core_test, a_full_client_holds_the_batch_whole_and_gets_it_later) {
  three_answers_held_for("c");
  out.full.insert("c");
  core->flush(now);
  EXPECT_TRUE(out.take("c").empty());
  EXPECT_FALSE(core->drained());  // an answer held is not out yet
  // A later request counts the held answers against the client's in-flight budget, one each.
  out.full.clear();
  advance(5ms);
  core->flush(now);
  auto replies = out.take("c");
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(entries(replies[0]).size(), 3u);
  EXPECT_TRUE(core->drained());
}

TEST_F(batch_core_test, a_gone_client_loses_each_answer_counted) {
  three_answers_held_for("c");
  out.unreachable.insert("c");
  core->flush(now);
  EXPECT_EQ(core->counters().dropped_unroutable, 3u);
}

TEST_F(batch_core_test, a_worker_leaving_first_gets_what_was_held_for_it_in_order) {
  ready_v2("w", 8, true);
  for (std::uint64_t i = 1; i <= 2; ++i) request_v2("c", i);
  // STOPPING in the same turn: the requests held go out before its answer.
  deliver(1, {"w", "", "S0W2\x07"});
  auto sent = out.take("w");
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_EQ(entries(sent[0]).size(), 2u);
  EXPECT_EQ(sent[1][2], "S0W2\x07");
}

}  // namespace
}  // namespace scale0::broker_detail
