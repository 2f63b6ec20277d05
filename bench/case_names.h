// Readable case names, composed at registration, and what the tables need
// to know about each case. A name is the family, the peer, then the case's
// parameters, each a word or a size:
//   BM_Ping/shm   BM_PayloadEcho/zmq/64KiB   BM_Bulk/in_place/echo/1MiB
//   BM_Real/floor_pool_malloc/rfft/8MiB   BM_PoolCalls/pipe_json/small_args
// Google Benchmark appends its own parts (/repeats:5, /manual_time,
// /real_time/threads:4), so --benchmark_filter='BM_Bulk/in_place/' and
// bench/plot.py select cases by these words. Register from the main thread
// before RunSpecifiedBenchmarks; look up while reporting.
#pragma once

#include <benchmark/benchmark.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace shmpool::bench {

struct CaseName {
  std::string family;  // BM_Ping
  std::string peer;    // shm, pipe_json, zmq, a BM_Bulk mode, a BM_Real floor; "": none
  std::vector<std::string> params;  // after the peer: echo, 1MiB, ...
  // For the tables: the peer, the operation (BM_Bulk's op, BM_Real's work)
  // and the size as numbers (-1: not a parameter of this case).
  int peer_index = -1, what = -1;
  int64_t bytes = -1;

  std::string name() const;  // family/peer/params...
  std::string row() const;   // family/params...: one row across the peers
};

// Registers `run` under name.name() and remembers `name` for find_case().
benchmark::internal::Benchmark* add_case(const CaseName& name,
                                         std::function<void(benchmark::State&)> run);

// The case registered under `function_name` (a Run's run_name.function_name),
// or nullptr.
const CaseName* find_case(const std::string& function_name);

// 64 -> "64B", 65536 -> "64KiB", 1 << 20 -> "1MiB" (whole units only).
std::string size_label(int64_t bytes);

}  // namespace shmpool::bench
