# scale0_set_warnings(target): the project's warning set, as errors when SCALE0_WERROR is on.
function(scale0_set_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow -Wconversion
                                           -Wno-sign-conversion -Wnon-virtual-dtor -Wold-style-cast)
  if(SCALE0_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()
