// SPDX-License-Identifier: Apache-2.0
// systemd readiness notifications (sd_notify); a no-op when built without libsystemd or when not
// started by systemd.
#pragma once

namespace scale0::cli {
void notify_service(const char* state) noexcept;
}
