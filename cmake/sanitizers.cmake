# SPDX-License-Identifier: Apache-2.0
# With SCALE0_SANITIZE, every target in the project is built with AddressSanitizer and
# UndefinedBehaviorSanitizer, and UB aborts instead of printing and continuing.
if(SCALE0_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined)
endif()

# With SCALE0_TSAN, every target is built with ThreadSanitizer (not combinable with ASan). The
# system libraries (libzmq, spdlog, fmt, gtest) are not instrumented: tests/tsan.supp lists the
# reports shown to come from inside them.
if(SCALE0_TSAN)
  if(SCALE0_SANITIZE)
    message(FATAL_ERROR "SCALE0_TSAN and SCALE0_SANITIZE cannot be combined")
  endif()
  add_compile_options(-fsanitize=thread -fno-omit-frame-pointer)
  add_link_options(-fsanitize=thread)
  # TSan does not model std::atomic_thread_fence, and GCC rejects it (-Werror=tsan). The only
  # fences are Boost.Asio's std_fenced_block around handler calls (the metrics server, the
  # gateway); Asio hands handlers between threads through its mutex-guarded queue, which TSan
  # sees, so the fences are dropped here rather than the warning, which stays on for our code.
  add_compile_definitions(BOOST_ASIO_DISABLE_FENCED_BLOCK)
endif()
