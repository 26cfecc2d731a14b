// SPDX-License-Identifier: Apache-2.0
// A hashed timing wheel over small integer ids (request slots). schedule/cancel are O(1) and do not
// allocate once the id space has grown; expiry visits only the buckets whose time has come.
#pragma once

#include <chrono>
#include <cstdint>
#include <vector>

#include "intrusive_list.hpp"

namespace scale0::broker_detail {

class timer_wheel {
 public:
  using clock = std::chrono::steady_clock;
  using time_point = clock::time_point;

  // `resolution` is the width of one bucket; `buckets` * `resolution` is the horizon after which
  // entries wrap around (they are then skipped until their time comes).
  timer_wheel(time_point start, std::chrono::milliseconds resolution = std::chrono::milliseconds(2),
              std::uint32_t buckets = 8192);

  void schedule(std::uint32_t id, time_point when);  // reschedules if already scheduled
  void cancel(std::uint32_t id) noexcept;
  bool scheduled(std::uint32_t id) const noexcept {
    return id < entries_.size() && entries_[id].link.linked;
  }
  std::size_t size() const noexcept { return count_; }

  // Appends to `due` every id whose time is <= now, and unschedules them.
  void expire(time_point now, std::vector<std::uint32_t>& due);

  // A time at or before the earliest pending entry within `lookahead` buckets, or now+lookahead.
  time_point next_due(time_point now, std::uint32_t lookahead = 128) const noexcept;

 private:
  struct entry {
    time_point when{};
    std::uint32_t bucket = 0;
    list_link link;
  };
  std::uint64_t tick_of(time_point t) const noexcept;
  list_link& link_of(std::uint32_t id) noexcept { return entries_[id].link; }

  time_point origin_;
  clock::duration resolution_;
  std::vector<list_head> buckets_;
  std::vector<entry> entries_;
  std::uint64_t cursor_ = 0;  // next tick to process
  std::size_t count_ = 0;
};

}  // namespace scale0::broker_detail
