#!/usr/bin/env bash
# shmpool's one entry point. See README.md.
#   ./run.sh demo    build, start real Python workers, run the headline benchmark, print a table
#   ./run.sh test    build, run the whole test suite (ctest), then unit+multiprocess under ASan and TSan
#   ./run.sh bench [google-benchmark flags...]   run shmpool_bench (e.g. --benchmark_out=b.json)
#   ./run.sh build   configure and build only
set -euo pipefail
cd "$(dirname "$0")"

PACKAGES=(cmake ninja-build g++ pkg-config
  libboost1.81-dev libboost-filesystem1.81-dev
  flatbuffers-compiler libflatbuffers-dev
  libbenchmark-dev libgtest-dev pybind11-dev
  python3-dev python3-numpy python3-pytest python3-flatbuffers
  nlohmann-json3-dev libcli11-dev)
BUILD_DIR=${SHMPOOL_BUILD_DIR:-build}
PYTHON=/usr/bin/python3

ensure_packages() {
  local missing=()
  for p in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$p")
    fi
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -eq 0 ]; then
    echo "run.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
  else
    echo "run.sh: missing Debian packages. Install them with:" >&2
    echo "  sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
}

# build [DIR [extra cmake args]]: configure once, then build incrementally.
build() {
  ensure_packages
  local dir=${1:-$BUILD_DIR}
  shift || true
  if [ ! -f "$dir/build.ninja" ]; then
    cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DPython3_EXECUTABLE="$PYTHON" "$@"
  fi
  cmake --build "$dir" -j "$(nproc)"
}

# The unit and multi-process suites again under ASan+UBSan and TSan.
sanitized_tests() {
  local san
  for san in address thread; do
    echo "run.sh: tests under the $san sanitizer"
    build "$BUILD_DIR-$san" -DSHMPOOL_SANITIZE=$san -DSHMPOOL_BUILD_BENCH=OFF
    ASAN_OPTIONS=detect_leaks=1 TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
      ctest --test-dir "$BUILD_DIR-$san" --output-on-failure --timeout 300 -L 'unit|multiprocess'
  done
}

cmd=${1:-help}
shift || true
case "$cmd" in
  build) build "$@" ;;
  demo)
    build
    "$BUILD_DIR/bench/shmpool_bench" --demo "$@"
    ;;
  test)
    build
    ctest --test-dir "$BUILD_DIR" --output-on-failure --timeout 300 "$@"
    [ "${SHMPOOL_SKIP_SANITIZERS:-0}" = 1 ] || sanitized_tests
    ;;
  bench)
    build
    "$BUILD_DIR/bench/shmpool_bench" "$@"
    ;;
  *)
    sed -n '2,7p' "$0"
    exit 2
    ;;
esac
