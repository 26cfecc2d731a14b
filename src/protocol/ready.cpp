// SPDX-License-Identifier: Apache-2.0
#include "protocol/ready.hpp"

#include "protocol/reasons.hpp"

namespace scale0::protocol {

static_assert(max_concurrency == 1024, "reasons::concurrency_range states the range");

bool ready_service_list::next(std::string_view& name) noexcept {
  if (frames_ != nullptr) {
    if (next_ >= frames_->size()) return false;
    name = view((*frames_)[next_++]);
    return true;
  }
  if (packed_.empty()) return false;
  name = packed_.str8();
  return packed_.ok();
}

std::string_view check_ready(const ready_fields& ready, ready_service_list services) noexcept {
  if (ready.concurrency < 1 || ready.concurrency > max_concurrency)
    return reasons::concurrency_range;
  if ((ready.flags & ~ready.known_flags) != 0) return reasons::unknown_ready_flags;
  if (ready.name && !valid_worker_name(*ready.name)) return reasons::invalid_worker_name;
  std::size_t count = 0;
  std::string_view service;
  while (services.next(service)) {
    if (!valid_service_name(service)) return reasons::invalid_service_name;
    if (++count > max_services_per_worker) return reasons::too_many_ready_services;
  }
  if (services.truncated()) return reasons::ready_list_truncated;
  return count == 0 ? reasons::ready_needs_service : std::string_view();
}

}  // namespace scale0::protocol
