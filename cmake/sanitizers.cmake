# With SCALE0_SANITIZE, every target in the project is built with AddressSanitizer and
# UndefinedBehaviorSanitizer, and UB aborts instead of printing and continuing.
if(SCALE0_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined)
endif()
