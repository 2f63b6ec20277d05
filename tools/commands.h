// The `shmpool` subcommands, one function each, called by main
// (shmpool_main.cc) once CLI11 has parsed their options. Each returns the
// process's exit code: 0 success, 1 a failed check (regression, pool not
// found, a failed call), 2 bad usage. They print their results on stdout
// (formatted by pool_format.h) and errors on stderr.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "shmpool/pool.h"
#include "tools/bench_compare.h"
#include "tools/pool_format.h"

namespace shmpool::tools {

// Prints "shmpool: <error>" on stderr; returns 1.
int fail(const Error& e);

// `shmpool serve`: starts the pool, prints the ready line, runs until
// SIGINT or SIGTERM, shuts down and removes the segment.
struct ServeOptions {
  PoolConfig config;
  // Segment sizes (unset: automatic, shrunk to fit a small /dev/shm).
  std::optional<uint64_t> arena_bytes, ring_bytes;
  std::vector<std::string> env;  // KEY=VALUE
  double checkout_timeout_s = 5, operation_timeout_s = 30, startup_timeout_s = 10;
  double health_check_s = 0, session_ttl_s = 3600;
};
int serve(ServeOptions o);

// `shmpool call`: one call on a served pool from this process; prints the
// result as JSON.
struct CallOptions {
  std::string pool, command, session, args = "{}", payload_file, payload_out;
  double timeout_s = 30;
  bool stream = false;  // print each item as a JSON line; Ctrl-C cancels
};
int call(const CallOptions& o);

// `shmpool list`, `status`, `sessions`, `gc`: read from the segments.
int list(OutputFormat format);
int status(const std::string& pool, OutputFormat format);
int sessions(const std::string& pool, OutputFormat format);
int gc(const std::vector<std::string>& names, bool dry_run);

// `shmpool bench compare OLD NEW`: exit 1 on a regression.
struct BenchCompareArgs {
  std::string old_file, new_file, max_regression = "10%";
  CompareOptions options;
  bool higher_is_better = false, lower_is_better = false;
};
int bench_compare(BenchCompareArgs a);

}  // namespace shmpool::tools
