// What `shmpool list`, `status`, `sessions` and `gc` print, as text: a
// fixed-width table for people, JSON (2-space indent) for scripts, and the
// Prometheus text format (exposition.h) for a textfile collector. Pure
// functions of their inputs (the caller passes the clock), so each output is
// tested byte for byte (tests/pool_format_test.cc); the commands
// (commands.h) only read the segment and print what these return.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "shmpool/inspect.h"
#include "shmpool/pool.h"

namespace shmpool::tools {

enum class OutputFormat { table, json, prometheus };

// `shmpool status NAME [--json | --prometheus]`.
std::string status_output(const PoolSnapshot& pool, OutputFormat format);

// `shmpool sessions NAME [--json | --prometheus]`; ages and idle times are
// taken against now_ns (CLOCK_MONOTONIC, the clock of the session table).
std::string sessions_output(const std::string& pool, const std::vector<SessionInfo>& sessions,
                            int64_t now_ns, OutputFormat format);

// `shmpool list [--json]` (the table or JSON only).
std::string pools_output(const std::vector<PoolListing>& pools, OutputFormat format);

// `shmpool gc [--dry-run]`: one line per segment removed (or that would be),
// then the count.
std::string gc_output(const std::vector<PoolListing>& stale, bool dry_run);

// 1.5 -> "1.5s", 600 -> "10.0m", 9000 -> "2.5h"; negative (never) -> "-".
std::string seconds_text(double s);

}  // namespace shmpool::tools
