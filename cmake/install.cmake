# SPDX-License-Identifier: Apache-2.0
# `cmake --install`: the library with its public headers, a CMake package
# (find_package(scale0 0.2) then scale0::scale0) and a pkg-config file; with the command, the
# binary, the systemd units (with examples of their configuration) and the operator docs.
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
  set(pc_requires_private "openssl prometheus-cpp-core")
  set(pc_libs "")
else()
  set(pc_requires "cppzmq openssl prometheus-cpp-core")  # TLS at the HTTP gateway; /metrics
  set(pc_requires_private "")
  set(pc_libs "-pthread")
endif()
configure_file(cmake/scale0.pc.in ${PROJECT_BINARY_DIR}/scale0.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/scale0.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

if(SCALE0_BUILD_APPS)
  install(TARGETS scale0_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

  # systemd units: the broker, the HTTP gateway and a template for workers. Relative to the
  # prefix unless absolute (the Debian package gives /lib/systemd/system, where debhelper and
  # Debian 12's systemd look).
  set(SCALE0_SYSTEMD_UNIT_DIR "lib/systemd/system" CACHE STRING
      "Where `cmake --install` puts the systemd units (relative to the prefix, or absolute)")
  # Their Documentation= names man pages only where they are installed too (the Debian package
  # makes them with help2man): else `systemd-analyze verify` would find them missing.
  option(SCALE0_UNIT_MAN_PAGES "The systemd units name the scale0-*(1) man pages" OFF)
  # The units are made from packaging/systemd/*.in when installing, not when configuring, so
  # ExecStart= and Documentation= name the prefix really installed to (`--prefix DIR` included):
  # @SCALE0_BINDIR@ and @SCALE0_DOCDIR@ become the full bindir and docdir.
  install(CODE "set(scale0_systemd_in [[${PROJECT_SOURCE_DIR}/packaging/systemd]])
set(scale0_systemd_out [[${PROJECT_BINARY_DIR}/systemd]])
set(scale0_unit_dir [[${SCALE0_SYSTEMD_UNIT_DIR}]])
set(scale0_bindir [[${CMAKE_INSTALL_BINDIR}]])
set(scale0_docdir [[${CMAKE_INSTALL_DOCDIR}]])
set(scale0_unit_man_pages ${SCALE0_UNIT_MAN_PAGES})")
  install(CODE [[
foreach(dir scale0_unit_dir scale0_bindir scale0_docdir)
  if(NOT IS_ABSOLUTE "${${dir}}")
    set(${dir} "${CMAKE_INSTALL_PREFIX}/${${dir}}")
  endif()
endforeach()
set(SCALE0_BINDIR "${scale0_bindir}")
set(SCALE0_DOCDIR "${scale0_docdir}")
foreach(unit scale0-broker.service scale0-gateway.service scale0-worker@.service
             scale0-broker.service.d/curve.conf)
  file(READ "${scale0_systemd_in}/${unit}.in" text)
  if(NOT scale0_unit_man_pages)
    string(REGEX REPLACE "\nDocumentation=man:[^\n]*" "" text "${text}")
  endif()
  file(CONFIGURE OUTPUT "${scale0_systemd_out}/${unit}" CONTENT "${text}" @ONLY)
endforeach()
file(INSTALL "${scale0_systemd_out}/scale0-broker.service" "${scale0_systemd_out}/scale0-gateway.service"
             "${scale0_systemd_out}/scale0-worker@.service"
     DESTINATION "${scale0_unit_dir}" FILE_PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
# The CURVE drop-in is an example (it needs a key first): the admin copies it to
# /etc/systemd/system/scale0-broker.service.d/.
file(INSTALL "${scale0_systemd_out}/scale0-broker.service.d/curve.conf"
     DESTINATION "${scale0_docdir}/examples/systemd/scale0-broker.service.d"
     FILE_PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
]])
  # A gateway configuration and worker instances' argument files, for the units above.
  install(DIRECTORY packaging/systemd/examples/ DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples)
endif()
install(FILES README.md docs/operations.md docs/protocol.md docs/family.md docs/http.md
              docs/security.md docs/exec-worker.md
        DESTINATION ${CMAKE_INSTALL_DOCDIR})
