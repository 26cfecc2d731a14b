# SPDX-License-Identifier: Apache-2.0
# Run at build time (cmake -P): writes OUT, the definitions of scale0::version() and
# scale0::commit(), rewriting it only when the version or the commit changed. The commit is
# SCALE0_COMMIT when given (a build from a tarball or a Debian source package), else git's.
# Only a checkout of this project counts: vendored into another repository, git would name that
# one's commit.
if(NOT COMMIT)
  execute_process(COMMAND git -C "${SOURCE_DIR}" rev-parse --show-toplevel
                  OUTPUT_VARIABLE toplevel OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  file(REAL_PATH "${SOURCE_DIR}" source_real)
  if(toplevel)
    file(REAL_PATH "${toplevel}" toplevel)
  endif()
  if(NOT toplevel STREQUAL source_real)
    set(COMMIT unknown)
  endif()
endif()
if(NOT COMMIT)
  execute_process(COMMAND git -C "${SOURCE_DIR}" rev-parse --short=12 HEAD
                  OUTPUT_VARIABLE COMMIT OUTPUT_STRIP_TRAILING_WHITESPACE
                  RESULT_VARIABLE git_failed ERROR_QUIET)
  if(git_failed OR NOT COMMIT)
    set(COMMIT unknown)
  else()
    execute_process(COMMAND git -C "${SOURCE_DIR}" diff --quiet HEAD --
                    RESULT_VARIABLE dirty ERROR_QUIET)
    if(dirty)
      string(APPEND COMMIT "-dirty")
    endif()
  endif()
endif()
file(CONFIGURE OUTPUT "${OUT}" CONTENT [=[
// Made by cmake/build_info.cmake at build time.
#include "scale0/version.hpp"

namespace scale0 {
std::string_view version() noexcept { return "@VERSION@"; }
std::string_view commit() noexcept { return "@COMMIT@"; }
}  // namespace scale0
]=] @ONLY)
