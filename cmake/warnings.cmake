# SPDX-License-Identifier: Apache-2.0
# scale0_set_warnings(target): the project's warning set, as errors when SCALE0_WERROR is on.
function(scale0_set_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow -Wconversion
                                           -Wno-sign-conversion -Wnon-virtual-dtor -Wold-style-cast)
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
    # GCC 12 reports impossible overlaps in std::string concatenation at -O2/-O3 (GCC bug 105329).
    target_compile_options(${target} PRIVATE -Wno-restrict)
  endif()
  if(SCALE0_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()
