#!/usr/bin/env bash
# ctest: shmpool consumed the ways a user consumes it (README "Using shmpool
# from your CMake project"), each checking that the workers import the
# python_shm_worker package of the install in use, never the build tree's.
#
#   consume.sh MODE BUILD SOURCE WORK PYDIR
#   find_package      install, MOVE the prefix, then from the moved prefix:
#                     `shmpool serve` + `shmpool call`, and a CMake consumer's pool
#   pkg_config        install, move, a one-file consumer built with
#                     `pkg-config --cflags --libs shmpool` only
#   add_subdirectory  a Release consumer with its own -Wall -Wextra builds
#                     shmpool from source: no -Werror of ours, no warning
#   deb               `cpack -G DEB`, `dpkg -i`, serve + call, a pkg-config and
#                     a CMake consumer, `dpkg -r` (root only)
#
# BUILD: shmpool's build tree; WORK: a scratch directory (emptied); PYDIR:
# where an install keeps the Python package, relative to its prefix.
# Exit 77 (ctest SKIP_RETURN_CODE) when a test cannot run here.
set -euo pipefail
mode=$1 build=$2 source=$3 work=$4 pydir_rel=$5
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$work"
mkdir -p "$work"
cd "$work"
unset PYTHONPATH

fail() {
  echo "FAILED: $*" >&2
  exit 1
}
# run LOG CMD...: quiet unless it fails.
run() {
  local log=$1
  shift
  if ! "$@" >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    fail "$* (log: $log)"
  fi
}

# A handler module that reports where the worker imported the package from.
cat >where.py <<'EOF'
import python_shm_worker
from python_shm_worker import command


@command("where")
def where(args, ctx):
    return {"package": python_shm_worker.__file__}
EOF

# expect_package JSON DIR: the reply names DIR/python_shm_worker/__init__.py.
expect_package() {
  local want="\"package\":\"$2/python_shm_worker/__init__.py\""
  [[ $1 == *"$want"* ]] || fail "workers imported the package from elsewhere: $1 (want $want)"
  echo "ok: package imported from $2"
}

# serve_and_call SHMPOOL PYTHON_DIR: `shmpool serve` a pool, `shmpool call`
# it from another process, stop it with SIGTERM.
serve_and_call() {
  local cli=$1 pydir=$2 name="consume-$mode-$$" line reply
  rm -f serve.out
  mkfifo serve.out
  "$cli" serve --name "$name" --size 1 --handlers "$work/where.py" >serve.out 2>serve.err &
  local pid=$!
  exec 3<serve.out
  # The first line comes once the pool's worker is ready (or serve failed).
  if ! read -r -t 60 line <&3 || [[ $line != "serving pool $name"* ]]; then
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" || true
    cat serve.err >&2
    fail "shmpool serve did not start: '$line'"
  fi
  reply=$("$cli" call "$name" where) || {
    kill -TERM "$pid"
    wait "$pid" || true
    fail "shmpool call failed"
  }
  kill -TERM "$pid"
  wait "$pid" || fail "shmpool serve exited with $? after SIGTERM: $(cat serve.err)"
  exec 3<&-
  echo "shmpool call: $reply"
  expect_package "$reply" "$pydir"
}

# run_consumer APP PYTHON_DIR: the consumer's pool (tests/outside_project/main.cc).
run_consumer() {
  local out
  out=$("$1" "$work/where.py") || fail "$1: $out"
  echo "$out"
  [[ $out == *"1048576 bytes echoed in place"* ]] || fail "the payload arena did not work"
  expect_package "$out" "$2"
}

# pkg_config_consumer PKG_CONFIG_PATH: the one-file consumer, built with
# pkg-config only (and run by the caller).
pkg_config_consumer() {
  local flags
  flags=$(PKG_CONFIG_PATH=$1 pkg-config --cflags --libs shmpool) || fail "pkg-config shmpool"
  echo "pkg-config --cflags --libs shmpool: $flags"
  # shellcheck disable=SC2086  # the flags are words
  run pkgconfig-build.log c++ -std=c++20 -O1 -o pkgconfig_app "$here/main.cc" $flags
}

# install_moved: install the build tree into a prefix, then move the prefix,
# so that nothing in it may point at where it was installed.
install_moved() {
  run install.log cmake --install "$build" --prefix "$work/installed"
  mv "$work/installed" "$work/moved"
  prefix=$work/moved
  pydir=$prefix/$pydir_rel
  [ -f "$pydir/python_shm_worker/__init__.py" ] || fail "no package installed in $pydir"
}

case "$mode" in
  find_package)
    install_moved
    serve_and_call "$prefix/bin/shmpool" "$pydir"
    run configure.log cmake -S "$here" -B consumer -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_PREFIX_PATH="$prefix"
    run build.log cmake --build consumer
    run_consumer consumer/outside_app "$pydir"
    for f in include/shmpool/pool.h include/shmpool/payload.h include/shmpool/client.h \
      include/shmpool/schema/envelope_generated.h; do
      [ -f "$prefix/$f" ] || fail "not installed: $f"
    done
    ;;
  pkg_config)
    install_moved
    pkg_config_consumer "$pydir/../../pkgconfig"
    run_consumer ./pkgconfig_app "$pydir"
    ;;
  add_subdirectory)
    # The consumer's own warnings and build type; shmpool's -Werror must not
    # reach it, and shmpool's sources must compile without a warning.
    run configure.log cmake -S "$here" -B consumer -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_CXX_FLAGS="-Wall -Wextra" -DSHMPOOL_SOURCE_DIR="$source" \
      -DPython3_EXECUTABLE=/usr/bin/python3
    if grep -q -- -Werror consumer/build.ninja; then
      fail "shmpool's -Werror reached the consumer's build"
    fi
    run build.log cmake --build consumer --target outside_app
    if grep -E "warning:|Warning:" build.log; then
      fail "warnings building shmpool in the consumer's Release build (log: $work/build.log)"
    fi
    run_consumer consumer/outside_app "$work/consumer/shmpool/python"
    ;;
  deb)
    if [ "$(id -u)" -ne 0 ]; then
      echo "SKIPPED: installing the .deb with dpkg -i needs root (CI runs as root)"
      exit 77
    fi
    if dpkg-query -W -f='${Status}' shmpool 2>/dev/null | grep -q "install ok installed"; then
      echo "SKIPPED: a shmpool package is installed already; this test would replace it"
      exit 77
    fi
    run cpack.log cpack -G DEB --config "$build/CPackConfig.cmake" -B "$work/deb"
    deb=$(ls "$work"/deb/shmpool_*.deb)
    depends=$(dpkg-deb -f "$deb" Depends)
    echo "$(basename "$deb"): Depends: $depends"
    for d in python3 libflatbuffers-dev libboost-filesystem libc6 libstdc++6; do
      [[ $depends == *"$d"* ]] || fail "the package does not depend on $d"
    done
    trap 'dpkg -r shmpool >/dev/null 2>&1 || echo "dpkg -r shmpool failed" >&2' EXIT
    run dpkg-install.log dpkg -i "$deb"
    pydir=/usr/$pydir_rel
    serve_and_call /usr/bin/shmpool "$pydir"
    pkg_config_consumer ""
    run_consumer ./pkgconfig_app "$pydir"
    run configure.log cmake -S "$here" -B consumer -G Ninja -DCMAKE_BUILD_TYPE=Release
    run build.log cmake --build consumer
    run_consumer consumer/outside_app "$pydir"
    ;;
  *)
    fail "unknown mode $mode"
    ;;
esac
echo "ok: shmpool consumed by $mode"
