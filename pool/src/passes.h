// passes.h: the supervisor's periodic passes, one small unit each. A pass
// reads the segment and the slots' runtime records and acts on them (slot
// transitions, signals to workers); it owns no thread and no timer, so a
// test can run it on a bare segment without Python. The supervisor
// (supervisor.h) decides when each runs.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <vector>

#include "ipc/segment.h"
#include "ipc/session_table.h"
#include "ipc/slot_table.h"
#include "pool/src/runtime.h"
#include "shmpool/pool.h"

namespace shmpool::detail {

// What every pass works on.
struct PassContext {
  ipc::Segment& seg;
  std::span<const std::unique_ptr<SlotRuntime>> slots;
  const PoolConfig& cfg;
  EventCallback on_event;
  pid_t self_pid = 0;  // the owner: its own holders are never orphans
  ipc::SlotTable table() const { return ipc::SlotTable(seg); }
};

// The supervisor asks the worker of slot `rt` to go (SIGTERM): `recycle`
// starts another in its place once it exited, else the slot stays empty.
void retire(SlotRuntime& rt, bool recycle);

// A slot checked out by another process that died (mid-call or right after
// its checkout) is never checked in: one seen busy with the same word, held
// by a process that no longer exists, on two passes in a row goes dead and
// its worker is killed (its exit restarts the slot). A dead slot whose
// worker still runs (a guest gave it up after a timeout or a protocol
// error: guests never signal the owner's children) has it killed, and a
// dead overflow slot whose worker is gone goes empty; a slot
// word no shmpool process writes (a worker scribbled on it) goes dead.
// Returns the slots taken back from dead processes. Guests must share the
// owner's pid namespace.
uint32_t reclaim_orphans(const PassContext& p);

// Overflow workers idle since before `now - overflow_idle_timeout` retire.
// Returns how many.
uint32_t retire_idle_overflow(const PassContext& p, int64_t now);

// Idle workers whose resident memory exceeds max_worker_rss_bytes are
// recycled. `rss(pid)`: the bytes resident (0: unknown). Returns how many.
uint32_t recycle_by_rss(const PassContext& p, const std::function<uint64_t(pid_t)>& rss);
uint64_t resident_bytes(pid_t pid);  // from /proc/<pid>/statm

// The slots to start for callers that wait (the segment's `waiting`): core
// slots first (lazy pools), then overflow slots up to max_overflow; never
// one a starter owns or one with a restart scheduled.
std::vector<uint32_t> slots_for_demand(const PassContext& p);

// Pings every idle worker, holding its slot (holder pid 0: the owner's
// health checker, on a thread of its own so that the supervisor never waits
// on a worker); a worker that does not answer within min(operation_timeout,
// 5 s) is killed (its exit restarts the slot). A ping is not a user call: it
// takes a slot only while no caller waits for one (the fair queue comes
// first), skips a worker that is gone, and is not counted towards
// max_calls_per_worker. `channel(i)`: the checker's own channel to slot i.
// Returns how many were killed.
uint32_t health_check(const PassContext& p, const std::function<ShmChannel&(uint32_t)>& channel);

// Sessions idle past `ttl` are removed (session_expired each). Returns how many.
uint32_t expire_sessions(ipc::SessionTable& sessions, int64_t now, std::chrono::milliseconds ttl,
                         const EventCallback& on_event);

// After a successful call: should this worker be replaced now
// (max_calls_per_worker, counting user calls only: not the hello, not the
// `health_pings`; max_worker_age)?
bool due_for_recycling(const PoolConfig& cfg, const ipc::SlotData& sd, uint64_t health_pings,
                       int64_t now);

// A slot's state as its word says now (acquire: pairs with the transitions'
// releases).
inline ipc::SlotState state_of(const ipc::Segment& seg, uint32_t i) {
  return ipc::slot_state(seg.slot(i).state.load(std::memory_order_acquire));
}

// Slots in [from, to) with a worker starting, idle or busy (idle_only:
// starting or idle).
uint32_t live_workers(const ipc::Segment& seg, uint32_t from, uint32_t to, bool idle_only = false);

}  // namespace shmpool::detail
