# `cpack -G DEB` in the build directory: a Debian package of the install
# (headers, static libraries, CMake and pkg-config files, the `shmpool`
# command and the Python worker package) under /usr.
set(CPACK_PACKAGE_NAME shmpool)
set(CPACK_PACKAGE_VENDOR shmpool)
set(CPACK_PACKAGE_CONTACT "shmpool maintainers <shmpool@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "Call Python from C++ through a pool of Python worker processes over shared memory")
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION libdevel)
# libc6, libstdc++6, libgcc-s1, libboost-filesystem1.81.0: from the command
# and the native core, by dpkg-shlibdeps.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# The workers run this Python (the native core is built for its minor
# version); consumers compile against FlatBuffers' headers and link
# Boost.Filesystem.
set(_py "${Python3_VERSION_MAJOR}.${Python3_VERSION_MINOR}")
math(EXPR _py_next "${Python3_VERSION_MINOR} + 1")
set(CPACK_DEBIAN_PACKAGE_DEPENDS
    "python3 (>= ${_py}), python3 (<< ${Python3_VERSION_MAJOR}.${_py_next}), libflatbuffers-dev, libboost-filesystem${Boost_VERSION_MAJOR}.${Boost_VERSION_MINOR}-dev")
# numpy views of payloads; the ZeroMQ benchmark peer.
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "python3-numpy")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "python3-zmq")
include(CPack)
