# `cmake --install`: the library with its public headers, a CMake package
# (find_package(scale0 0.2) then scale0::scale0) and a pkg-config file; with the command, the
# binary, the systemd unit and the operator docs.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(config_dir ${CMAKE_INSTALL_LIBDIR}/cmake/scale0)
install(TARGETS scale0 EXPORT scale0Targets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY include/scale0 DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT scale0Targets NAMESPACE scale0:: DESTINATION ${config_dir})
if(BUILD_SHARED_LIBS)
  set(scale0_static OFF)
else()
  set(scale0_static ON)
endif()
configure_package_config_file(cmake/scale0Config.cmake.in
                              ${PROJECT_BINARY_DIR}/scale0Config.cmake
                              INSTALL_DESTINATION ${config_dir})
# 0.x: a minor version may change the API, so 0.2 accepts 0.2.y only.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/scale0ConfigVersion.cmake
                                 COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/scale0Config.cmake ${PROJECT_BINARY_DIR}/scale0ConfigVersion.cmake
        DESTINATION ${config_dir})

# pkg-config: relocatable (the prefix is found from the .pc file's own place), so an install
# with `cmake --install --prefix DIR` works as well as a package.
file(RELATIVE_PATH pc_to_prefix "/prefix/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/prefix")
string(REGEX REPLACE "/$" "" pc_to_prefix "${pc_to_prefix}")
# A static libscale0 (the default) needs its own dependencies on every link line, so they are
# public there; a shared one brings them itself.
if(BUILD_SHARED_LIBS)
  set(pc_requires "cppzmq")
  set(pc_requires_private "openssl")
  set(pc_libs "")
else()
  set(pc_requires "cppzmq openssl")  # openssl: the HTTP gateway's TLS
  set(pc_requires_private "")
  set(pc_libs "-pthread")
endif()
configure_file(cmake/scale0.pc.in ${PROJECT_BINARY_DIR}/scale0.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/scale0.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

if(SCALE0_BUILD_APPS)
  install(TARGETS scale0_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
  install(FILES packaging/systemd/scale0-broker.service DESTINATION lib/systemd/system)
endif()
install(FILES README.md docs/operations.md docs/protocol.md docs/family.md docs/http.md
              docs/security.md
        DESTINATION ${CMAKE_INSTALL_DOCDIR})
