#!/usr/bin/env bash
# shmpool's one entry point. See README.md.
#   ./run.sh demo    build, start real Python workers, run the headline benchmark, print a table
#   ./run.sh test    build, run the whole test suite (ctest), the library in Release with GCC and Clang,
#                    unit+multiprocess under ASan and TSan, a fuzz smoke
#   ./run.sh bench [--plot] [google-benchmark flags...]   run shmpool_bench (e.g. --benchmark_out=b.json,
#                    --load 0,1,2: the busy-machine cases beside 0, 1, 2 busy loops);
#                    --plot: all cases, then the --load set, then SVG plots and a Markdown table in build/bench-plots
#   ./run.sh fuzz [SECONDS]   libFuzzer targets (clang), SECONDS each (default 60)
#   ./run.sh build   configure and build only
set -euo pipefail
cd "$(dirname "$0")"

PACKAGES=(cmake ninja-build g++ pkg-config
  libboost1.81-dev libboost-filesystem1.81-dev
  flatbuffers-compiler libflatbuffers-dev
  libbenchmark-dev libgtest-dev pybind11-dev
  python3-dev python3-numpy python3-pytest python3-flatbuffers
  nlohmann-json3-dev libcli11-dev clang libclang-rt-14-dev
  libzmq3-dev cppzmq-dev python3-zmq python3-matplotlib
  libgrpc++-dev protobuf-compiler protobuf-compiler-grpc python3-grpcio python3-protobuf
  dpkg-dev file)  # cpack -G DEB (dpkg-shlibdeps)
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

# configure DIR [extra cmake args]: once (RelWithDebInfo unless the args say).
configure() {
  local dir=$1
  shift
  if [ ! -f "$dir/build.ninja" ]; then
    cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DPython3_EXECUTABLE="$PYTHON" "$@"
  fi
}

# build [DIR [extra cmake args]]: configure once, then build incrementally.
build() {
  ensure_packages
  local dir=${1:-$BUILD_DIR}
  shift || true
  configure "$dir" "$@"
  cmake --build "$dir" -j "$(nproc)"
}

# The shipped targets (libraries, the command, the Python native core) in
# Release with GCC and with Clang, warnings as errors: the first build type a
# user types. No tests; the suite above runs RelWithDebInfo.
release_builds() {
  local cc cxx dir start
  for cc in gcc:g++ clang:clang++; do
    cxx=${cc#*:} dir="$BUILD_DIR-release-${cc%:*}" start=$SECONDS
    configure "$dir" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER="$cxx" \
      -DSHMPOOL_WERROR=ON -DSHMPOOL_BUILD_TESTS=OFF -DSHMPOOL_BUILD_BENCH=OFF
    cmake --build "$dir" -j "$(nproc)" --target shmpool shmpool_ipc shmpool_cli _native
    echo "run.sh: Release build with $cxx ok, no warnings ($((SECONDS - start)) s)"
  done
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

# The libFuzzer targets (tests/fuzz), each for $1 seconds from the committed
# seed corpus. New inputs go to $BUILD_DIR-fuzz/corpus/<target>; a crash
# leaves its input in $BUILD_DIR-fuzz/crashes and fails the run.
fuzz() {
  local seconds=${1:-60} dir="$BUILD_DIR-fuzz" t log leaks
  build "$dir" -DCMAKE_CXX_COMPILER=clang++ -DSHMPOOL_FUZZ=ON
  mkdir -p "$dir/crashes"
  for t in ring envelope convert; do
    mkdir -p "$dir/corpus/$t"
    log="$dir/fuzz-$t.log"
    # CPython's interned objects and caches are not leaks (per input; and at
    # exit, tests/fuzz/lsan.supp).
    leaks=1
    [ "$t" = convert ] && leaks=0
    if ! LSAN_OPTIONS="suppressions=$PWD/tests/fuzz/lsan.supp" \
        "$dir/tests/fuzz/fuzz_$t" -max_total_time="$seconds" -print_final_stats=1 \
        -detect_leaks=$leaks -artifact_prefix="$dir/crashes/$t-" \
        "$dir/corpus/$t" "tests/fuzz/corpus/$t" >"$log" 2>&1; then
      tail -n 40 "$log" >&2
      echo "run.sh: fuzz_$t FAILED (input saved in $dir/crashes)" >&2
      exit 1
    fi
    echo "run.sh: fuzz_$t ok: $(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" |
      grep -o '[0-9]*$') executions in ${seconds}s, corpus $(ls "$dir/corpus/$t" | wc -l) inputs"
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
    [ "${SHMPOOL_SKIP_RELEASE:-0}" = 1 ] || release_builds
    [ "${SHMPOOL_SKIP_SANITIZERS:-0}" = 1 ] || sanitized_tests
    [ "${SHMPOOL_SKIP_FUZZ:-0}" = 1 ] || fuzz 20  # a smoke run; ./run.sh fuzz for longer
    ;;
  fuzz) fuzz "$@" ;;
  bench)
    build
    if [ "${1:-}" = --plot ]; then
      shift
      "$BUILD_DIR/bench/shmpool_bench" --benchmark_out="$BUILD_DIR/bench-results.json" \
        --benchmark_out_format=json "$@"
      # The busy-machine cases beside 0, 1 and 2 busy loops (one JSON per level).
      "$BUILD_DIR/bench/shmpool_bench" --load 0,1,2 --benchmark_out="$BUILD_DIR/bench-busy.json"
      "$PYTHON" bench/plot.py "$BUILD_DIR/bench-results.json" "$BUILD_DIR/bench-plots" \
        "$BUILD_DIR"/bench-busy-load{0,1,2}.json
    else
      "$BUILD_DIR/bench/shmpool_bench" "$@"
    fi
    ;;
  *)
    sed -n '2,10p' "$0"
    exit 2
    ;;
esac
