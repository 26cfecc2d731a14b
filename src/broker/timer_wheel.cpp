// SPDX-License-Identifier: Apache-2.0
#include "timer_wheel.hpp"

#include <algorithm>

namespace scale0::broker_detail {

timer_wheel::timer_wheel(time_point start, std::chrono::milliseconds resolution,
                         std::uint32_t buckets)
    : origin_(start), resolution_(resolution), buckets_(buckets) {}

std::uint64_t timer_wheel::tick_of(time_point t) const noexcept {
  if (t <= origin_) return 0;
  return static_cast<std::uint64_t>((t - origin_) / resolution_);
}

void timer_wheel::schedule(std::uint32_t id, time_point when) {
  if (id >= entries_.size()) entries_.resize(std::max<std::size_t>(id + 1, entries_.size() * 2));
  cancel(id);
  // An entry already due goes into the bucket processed next, so it fires on the next expire().
  const std::uint64_t tick = std::max(tick_of(when), cursor_);
  entry& e = entries_[id];
  e.when = when;
  e.bucket = static_cast<std::uint32_t>(tick % buckets_.size());
  list_push_back(buckets_[e.bucket], id,
                 [this](std::uint32_t i) -> list_link& { return link_of(i); });
  ++count_;
}

void timer_wheel::cancel(std::uint32_t id) noexcept {
  if (!scheduled(id)) return;
  list_remove(buckets_[entries_[id].bucket], id,
              [this](std::uint32_t i) -> list_link& { return link_of(i); });
  --count_;
}

void timer_wheel::expire(time_point now, std::vector<std::uint32_t>& due) {
  const std::uint64_t now_tick = tick_of(now);
  if (now_tick < cursor_) return;
  // After a full turn every bucket has been seen once; more would only repeat the same entries.
  const std::uint64_t last = std::min(now_tick, cursor_ + buckets_.size() - 1);
  for (std::uint64_t t = cursor_; t <= last; ++t) {
    list_head& b = buckets_[t % buckets_.size()];
    for (std::uint32_t id = b.head; id != npos;) {
      const std::uint32_t next = entries_[id].link.next;
      if (entries_[id].when <= now) {
        list_remove(b, id, [this](std::uint32_t i) -> list_link& { return link_of(i); });
        --count_;
        due.push_back(id);
      }
      id = next;
    }
  }
  // The bucket of `now` may hold entries due later within the same tick: process it again next
  // time.
  cursor_ = now_tick;
}

timer_wheel::time_point timer_wheel::next_due(time_point now,
                                              std::uint32_t lookahead) const noexcept {
  const std::uint64_t now_tick = tick_of(now);
  if (count_ == 0) return now + resolution_ * lookahead;
  const std::uint64_t first = std::min(cursor_, now_tick);
  for (std::uint64_t t = first; t <= now_tick + lookahead; ++t) {
    if (!buckets_[t % buckets_.size()].empty()) {
      // The end of the bucket: entries in it are due at the latest then (wrapped ones are not due,
      // and waking at the end of the current tick instead of "now" avoids a busy loop on them).
      return origin_ + resolution_ * static_cast<std::int64_t>(t + 1);
    }
  }
  return now + resolution_ * lookahead;
}

}  // namespace scale0::broker_detail
