// stale_segment.h: reading a segment from outside its owner: detecting and
// reclaiming one whose owner died, and turning its records into API types.
#pragma once

#include <string_view>

#include "ipc/segment.h"
#include "ipc/session_table.h"
#include "shmpool/inspect.h"
#include "shmpool/pool.h"

namespace shmpool::detail {

enum class OwnerLiveness { alive, dead, unknown };

// Reads the owner (pid + start time) recorded in a segment's header.
// `unknown` if the segment cannot be read as a shmpool segment.
OwnerLiveness segment_owner(std::string_view pool_name, int* owner_pid = nullptr);

// Removes the segment if its owner is dead. True if it removed it. The name
// is unlinked only if it still names the object that was checked (same
// inode), so a new owner that reclaimed and re-created the name meanwhile
// keeps its segment (a window of one stat() remains).
bool reclaim_if_stale(std::string_view pool_name);

// The liveness check behind segment_owner(), on a header already mapped.
OwnerLiveness owner_liveness(const ipc::SegmentHeader& h);

// Maps a pool's segment: config_error/invalid_name, resource_error/
// unknown_pool or permission_denied, protocol_error/bad_segment.
Expected<std::unique_ptr<ipc::Segment>> attach_segment(std::string_view pool_name,
                                                       ipc::Segment::Access access);

// The call_timed_out event for a timeout error (slot, pid and session from
// its context).
PoolEvent timeout_event(const Error& e);

// The pool as a mapped segment shows it (inspect_pool and Client::status).
PoolSnapshot snapshot_of(const ipc::Segment& seg);

inline SessionInfo session_info(const ipc::SessionSnapshot& s) {
  return SessionInfo{s.id, s.created_ns, s.last_activity_ns, s.operations, s.errors, s.last_slot};
}

}  // namespace shmpool::detail
