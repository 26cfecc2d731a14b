// SPDX-License-Identifier: Apache-2.0
// The broker's recent events (workers joined and left, services, errors, the family) for the
// status page: a ring of the last `capacity` events, fed on the loop's thread from
// event_loop::event() and copied into status snapshots. Bounded in entries and in bytes: each
// text is cut to max_text bytes (at a UTF-8 boundary), and a run of the same error (same kind,
// service, code and detail) is one entry with a count. Its use is the `status_events` budget.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "scale0/broker.hpp"

namespace scale0::broker_detail {

class event_ring {
 public:
  using time_point = std::chrono::steady_clock::time_point;
  static constexpr std::size_t default_capacity = 256;
  static constexpr std::size_t max_text = 256;  // bytes kept of each text field

  struct entry {
    event_kind kind = event_kind::worker_joined;
    worker_departure departure = worker_departure::none;
    std::uint16_t code = 0;
    std::uint32_t count = 1;  // the same error this many times in a row
    time_point at{};          // the last of them
    std::string worker;
    std::string address;
    std::string service;
    std::string detail;
  };

  explicit event_ring(std::size_t capacity = default_capacity)
      : capacity_(capacity == 0 ? 1 : capacity) {}

  void push(const broker_event& e, time_point now);

  // The entries, oldest first (into `out`, replacing what it held).
  void copy_to(std::vector<entry>& out) const;
  std::size_t size() const noexcept { return entries_.size(); }
  std::size_t capacity() const noexcept { return capacity_; }
  std::uint64_t total() const noexcept { return total_; }  // events pushed, coalesced included

  static std::string_view kind_name(event_kind k) noexcept;

 private:
  std::size_t capacity_;
  std::vector<entry> entries_;  // grows to capacity_, then slot next_ is the oldest
  std::size_t next_ = 0;
  std::uint64_t total_ = 0;
};

}  // namespace scale0::broker_detail
