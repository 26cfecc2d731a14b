// SPDX-License-Identifier: Apache-2.0
// The version of libscale0 and the commit it was built from.
#pragma once

#include <string_view>

namespace scale0 {

std::string_view version() noexcept;  // "0.2.0"
// The commit built: git's abbreviated hash, with "-dirty" when the tree had changes, or
// "unknown" (no git, and no SCALE0_COMMIT given to CMake).
std::string_view commit() noexcept;

}  // namespace scale0
