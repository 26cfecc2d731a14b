// SPDX-License-Identifier: Apache-2.0
#include "event_ring.hpp"

namespace scale0::broker_detail {
namespace {

// At most event_ring::max_text bytes of `s`, cut before a UTF-8 continuation byte so that a
// character is never split. Reuses `to`'s storage (no allocation once the ring is warm).
void assign_cut(std::string& to, std::string_view s) {
  if (s.size() > event_ring::max_text) {
    std::size_t cut = event_ring::max_text;
    while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;
    s = s.substr(0, cut);
  }
  to.assign(s.data(), s.size());
}

bool same_text(const std::string& kept, std::string_view s) {
  if (s.size() > event_ring::max_text) return false;  // never coalesce what was cut
  return kept == s;
}

}  // namespace

void event_ring::push(const broker_event& e, time_point now) {
  ++total_;
  // A run of the same error is one entry: a flood of 503s leaves room for the joins and leaves.
  if (!entries_.empty() && (e.kind == event_kind::request_error || e.kind == event_kind::dropped ||
                            e.kind == event_kind::refused)) {
    entry& last = entries_[(next_ + entries_.size() - 1) % entries_.size()];
    if (last.kind == e.kind && last.code == e.code && same_text(last.service, e.service) &&
        same_text(last.detail, e.detail) && same_text(last.address, e.address) &&
        last.count < UINT32_MAX) {
      ++last.count;
      last.at = now;
      return;
    }
  }
  entry* slot;
  if (entries_.size() < capacity_) {
    slot = &entries_.emplace_back();
  } else {
    slot = &entries_[next_];
    next_ = (next_ + 1) % capacity_;
  }
  slot->kind = e.kind;
  slot->departure = e.departure;
  slot->code = e.code;
  slot->count = 1;
  slot->at = now;
  assign_cut(slot->worker, e.worker);
  assign_cut(slot->address, e.address);
  assign_cut(slot->service, e.service);
  assign_cut(slot->detail, e.detail);
}

void event_ring::copy_to(std::vector<entry>& out) const {
  out.clear();
  out.reserve(entries_.size());
  const std::size_t first = entries_.size() < capacity_ ? 0 : next_;
  for (std::size_t i = 0; i < entries_.size(); ++i)
    out.push_back(entries_[(first + i) % entries_.size()]);
}

std::string_view event_ring::kind_name(event_kind k) noexcept {
  switch (k) {
    case event_kind::worker_joined:
      return "worker_joined";
    case event_kind::worker_left:
      return "worker_left";
    case event_kind::service_created:
      return "service_created";
    case event_kind::service_removed:
      return "service_removed";
    case event_kind::request_error:
      return "request_error";
    case event_kind::dropped:
      return "dropped";
    case event_kind::draining:
      return "draining";
    case event_kind::reloaded:
      return "reloaded";
    case event_kind::refused:
      return "refused";
    case event_kind::peer_up:
      return "peer_up";
    case event_kind::peer_down:
      return "peer_down";
  }
  return "unknown";
}

}  // namespace scale0::broker_detail
