// SPDX-License-Identifier: Apache-2.0
#include "service_notify.hpp"

#ifdef SCALE0_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

namespace scale0::cli {
void notify_service([[maybe_unused]] const char* state) noexcept {
#ifdef SCALE0_HAVE_SYSTEMD
  sd_notify(0, state);
#endif
}
}  // namespace scale0::cli
