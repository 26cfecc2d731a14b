// SPDX-License-Identifier: Apache-2.0
// libFuzzer target for the wire decoders. The input is split into frames by a one-byte length
// prefix (length, then that many bytes; a short last frame takes what is left), and the frames go
// through all four decoders. A decoder must not crash, and every view it returns must lie inside
// the frames it was given: anything else traps. S0/2 packed frames are covered by the same split
// (a frame starting "S0C2" / "S0W2"). A BATCH (docs/protocol.md, "Batches") is taken apart as the
// broker (identity first) and a library (no identity) would: every entry must be a message of its
// own that the decoders take, and writing the entries again must give back the same entries.
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "protocol/batch.hpp"
#include "scale0/protocol.hpp"
#include "support/fuzz_frames.hpp"

namespace {

using namespace scale0::protocol;
using scale0_test::inside;

// Enough for every well-formed shape (READY with 64 services is 71 frames) and then some.
constexpr std::size_t max_frames = 96;

void check(bool ok) {
  if (!ok) __builtin_trap();
}

bool same(const frames& a, const frames& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (view(a[i]) != view(b[i])) return false;
  return true;
}

// Takes a batch apart at `at` (the delimiter's index); then writes its entries again and reads
// them back.
void batch_round_trip(const frames& input, std::size_t at) {
  frames f;
  for (const auto& m : input) f.emplace_back(m.data(), m.size());
  batch_reader reader;
  if (!reader.open(f, at)) {
    frames out;
    std::size_t bytes = 0;
    check(!reader.next(out, bytes));
    return;
  }
  check(reader.size() >= 1 && reader.size() <= max_batch_entries);
  std::vector<frames> entries;
  frames e;
  std::size_t bytes = 0;
  while (reader.next(e, bytes)) {
    check(e.size() >= at + 2 && e[at].size() == 0 && e[at + 1].size() >= 5);
    check(view(e[at + 1]).substr(0, 4) == view(input[at + 1]).substr(0, 4));
    check(!is_batch(e, at));  // no nesting
    std::size_t sum = 0;
    for (std::size_t i = at + 2; i < e.size(); ++i) sum += e[i].size();
    check(sum == bytes);
    if (at == 1) (void)decode_inbound(e);
    entries.push_back(std::move(e));
    e = frames();
  }
  check(entries.size() == reader.size());
  batch_writer writer(at);
  std::vector<frames> kept;
  for (auto& entry : entries) {
    if (!writer.batchable(entry) || !writer.fits(entry)) continue;
    frames copy;
    for (const auto& m : entry) copy.emplace_back(m.data(), m.size());
    kept.push_back(std::move(entry));
    writer.add(copy);
  }
  if (kept.empty()) return;
  frames written;
  writer.take(written);
  if (kept.size() == 1) return check(same(written, kept[0]));
  batch_reader again;
  check(again.open(written, at) && again.size() == kept.size());
  for (const auto& k : kept) check(again.next(e, bytes) && same(e, k));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const frames f = scale0_test::split_frames(data, size, max_frames);

  const inbound in = decode_inbound(f);
  check(inside(in.service, f));
  check(in.first <= f.size());
  if (in.kind == inbound_kind::client_error || in.kind == inbound_kind::worker_error)
    check(!in.reason.empty() && in.status >= 400 && in.status <= 599);
  check(inside(in.message, f) && inside(in.services, f));
  if (in.kind == inbound_kind::client_error && in.version == version_1)
    check(in.id == (f.size() > 4 && f[4].size() == 8 ? read_u64(f[4]) : 0));
  if (in.kind == inbound_kind::worker_ready) {
    // S0/1 READY takes the idempotent flag only; S0/2 also *moved*, and a name (a frame of its
    // own) that is valid (docs/protocol.md).
    const std::uint8_t known = in.version == version_2
                                   ? std::uint8_t{flag_idempotent | flag_moved | flag_batches}
                                   : flag_idempotent;
    check(inside(in.name, f) && (in.name.empty() || valid_worker_name(in.name)));
    check(in.name.empty() || in.version == version_2);
    check(in.concurrency >= 1 && in.concurrency <= max_concurrency && (in.flags & ~known) == 0);
    service_names names{};
    const std::size_t n = ready_services(f, in, names);
    check(n >= 1 && n <= max_services_per_worker && names[0] == in.service);
    for (std::size_t i = 0; i < n; ++i)
      check(inside(names[i], f) && !names[i].empty() && names[i].size() <= max_service_name);
  }

  const worker_inbound wi = decode_for_worker(f);
  check(inside(wi.service, f) && inside(wi.endpoint, f) && inside(wi.message, f));
  check(wi.first <= f.size());

  const client_inbound ci = decode_for_client(f);
  check(inside(ci.message, f));
  check(ci.first <= f.size());

  heartbeat hb;
  if (decode_heartbeat(f, hb)) check(f.size() == 3);

  batch_round_trip(f, 1);  // at the broker: identity first
  batch_round_trip(f, 0);  // at a library
  return 0;
}
