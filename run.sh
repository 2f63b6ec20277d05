#!/usr/bin/env bash
# shmpool's one entry point. See README.md.
#   ./run.sh demo    build, start real Python workers, run the headline benchmark, print a table
#   ./run.sh test    build, run the whole test suite (ctest)
#   ./run.sh bench [google-benchmark flags...]   run shmpool_bench (e.g. --benchmark_out=b.json)
#   ./run.sh build   configure and build only
set -euo pipefail
cd "$(dirname "$0")"

PACKAGES=(cmake ninja-build g++ pkg-config
  libboost1.81-dev libboost-filesystem1.81-dev
  flatbuffers-compiler libflatbuffers-dev
  libbenchmark-dev libgtest-dev pybind11-dev
  python3-dev python3-numpy python3-pytest
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

build() {
  ensure_packages
  if [ ! -f "$BUILD_DIR/build.ninja" ]; then
    cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DPython3_EXECUTABLE="$PYTHON" "$@"
  fi
  cmake --build "$BUILD_DIR" -j "$(nproc)"
}

cmd=${1:-help}
shift || true
case "$cmd" in
  build) build ;;
  demo)
    build
    "$BUILD_DIR/bench/shmpool_bench" --demo "$@"
    ;;
  test)
    build
    ctest --test-dir "$BUILD_DIR" --output-on-failure --timeout 300 "$@"
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
