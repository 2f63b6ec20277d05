// caller.h: what every process that calls a pool does alike, the owner
// (Pool) and any other process (Client): error context, the statistics kept
// in the segment, session records and the events they raise.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ipc/segment.h"
#include "ipc/session_table.h"
#include "pool/src/arena_handle.h"
#include "shmpool/error.h"
#include "shmpool/pool.h"

namespace shmpool::detail {

struct Caller {
  std::string pool_name;
  std::shared_ptr<ipc::Segment> seg;
  std::shared_ptr<ArenaHandle> arena;  // set once seg is
  ipc::SessionTable sessions;
  EventCallback on_event;
  std::function<int64_t()> clock;  // session timestamps (ns); empty: CLOCK_MONOTONIC

  int64_t session_now() const;
  // Adds pool_name and, when known, session_id, slot and worker_pid.
  Error with_context(Error e, std::string_view session_id, int slot = -1, pid_t pid = 0) const;
  // Counts a failed call in the segment (and raises call_timed_out).
  Error count(Error e);
  // Counts one call on a session (none for an anonymous call), raising
  // session_created for its first.
  void record_session(std::string_view id, int32_t slot, bool failed);
  void emit(PoolEvent e) const;  // to on_event; its exceptions are swallowed

  Status end_session(std::string_view id);
  std::optional<SessionInfo> session(std::string_view id) const;
  std::vector<SessionInfo> list_sessions() const;
};

}  // namespace shmpool::detail
