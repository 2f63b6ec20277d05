# `cmake --install`: headers, the libraries, the generated schema header, the
# Python package with its native core, and a CMake package so that
# find_package(shmpool CONFIG REQUIRED) gives shmpool::shmpool.
include(CMakePackageConfigHelpers)

install(DIRECTORY ${PROJECT_SOURCE_DIR}/pool/include/shmpool DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(FILES ${PROJECT_BINARY_DIR}/generated/shmpool/schema/envelope_generated.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/shmpool/schema)
install(TARGETS shmpool shmpool_ipc shmpool_schemas EXPORT shmpoolTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT shmpoolTargets NAMESPACE shmpool:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/shmpool)
install(DIRECTORY ${SHMPOOL_PYTHON_DIR}/python_shm_worker DESTINATION ${SHMPOOL_INSTALL_PYTHON_DIR}
        PATTERN __pycache__ EXCLUDE)

configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/shmpoolConfig.cmake.in
  ${PROJECT_BINARY_DIR}/shmpoolConfig.cmake INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/shmpool)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/shmpoolConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/shmpoolConfig.cmake ${PROJECT_BINARY_DIR}/shmpoolConfigVersion.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/shmpool)

# The installed headers find the package of their own prefix (worker.h).
file(RELATIVE_PATH SHMPOOL_PYTHON_PATH_FROM_HEADERS ${CMAKE_INSTALL_FULL_INCLUDEDIR}/shmpool
     ${CMAKE_INSTALL_FULL_LIBDIR}/shmpool/python)
configure_file(${PROJECT_SOURCE_DIR}/cmake/shmpool_install_layout.h.in
               ${PROJECT_BINARY_DIR}/install-headers/shmpool_install_layout.h @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/install-headers/shmpool_install_layout.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/shmpool)

# pkg-config: `pkg-config --cflags --libs shmpool`.
file(RELATIVE_PATH SHMPOOL_PC_PREFIX_FROM_PCDIR ${CMAKE_INSTALL_FULL_LIBDIR}/pkgconfig
     ${CMAKE_INSTALL_PREFIX})
configure_file(${PROJECT_SOURCE_DIR}/cmake/shmpool.pc.in ${PROJECT_BINARY_DIR}/shmpool.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/shmpool.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
