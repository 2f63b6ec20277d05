// inspect.h: look at pools from outside the process that owns them, through
// their shared segment alone. Everything here maps segments read-only and
// never changes a pool, except remove_stale_pools(), which deletes segments
// whose owner process is gone. This is what `shmpool list|status|sessions|gc`
// print.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "shmpool/error.h"
#include "shmpool/pool.h"

namespace shmpool {

// One worker slot as the segment shows it.
struct SlotSnapshot {
  uint32_t slot = 0;
  std::string state;  // empty, starting, idle, busy, retiring, dead
  pid_t pid = 0;      // 0 when no worker process is attached
  uint32_t generation = 0;
  uint64_t checkouts = 0, calls = 0, successes = 0, errors = 0, restarts = 0;
  int64_t last_activity_ns = 0;  // CLOCK_MONOTONIC of the slot's last call; 0 = never
  double idle_s = -1;            // since the slot's last activity; -1 = never active
  double worker_age_s = -1;      // since the current worker was spawned; -1 = none
};

// A pool as its segment shows it, from any process of the same user.
struct PoolSnapshot {
  std::string name;
  pid_t owner_pid = 0;
  bool owner_alive = false;  // the owner process still runs (pid and start time match)
  std::string state;         // initializing, ready, closing
  uint64_t segment_bytes = 0;
  uint32_t slot_count = 0, session_capacity = 0;
  uint64_t request_ring_bytes = 0, response_ring_bytes = 0;
  uint64_t arena_bytes = 0, arena_bytes_in_use = 0;  // payload arena size and live blocks' bytes
  uint32_t arena_blocks_in_use = 0, arena_pinned_blocks = 0;
  double uptime_s = 0;
  uint64_t calls = 0, successes = 0, checkout_timeouts = 0, session_table_full = 0;
  std::map<std::string, uint64_t> errors_by_category;  // every category, zeros included
  uint32_t waiting = 0;                                // callers waiting for a worker right now
  uint32_t active_sessions = 0;
  std::map<std::string, uint32_t> slots_by_state;  // every state, zeros included
  std::vector<SlotSnapshot> slots;
};

// resource_error/unknown_pool when no segment has that name,
// protocol_error/bad_segment when it is not a shmpool segment of this version,
// config_error/invalid_name for a bad name.
Expected<PoolSnapshot> inspect_pool(std::string_view pool_name);
Expected<std::vector<SessionInfo>> inspect_sessions(std::string_view pool_name);

struct PoolListing {
  std::string name;
  pid_t owner_pid = 0;
  bool owner_alive = false;
  uint64_t segment_bytes = 0;  // size of the /dev/shm object
  std::string problem;         // non-empty when the segment could not be read (and why)
};

// Every shmpool segment in /dev/shm this user can open, sorted by name.
std::vector<PoolListing> list_pools();

// Removes the segments whose owner process is dead (only those named in
// `only`, when it is not empty); returns what it removed. A segment that
// cannot be read (foreign version, not ours) is left alone. The owner is
// checked again right before each removal, and a name re-created meanwhile
// by a new owner (another inode) is left alone.
std::vector<PoolListing> remove_stale_pools(const std::vector<std::string>& only = {});

}  // namespace shmpool
