// slot_data.h: one worker slot in the shared segment: its state word (the
// state table: every transition the code makes) and SlotData, the record
// every process reads. The handle that changes it is slot_table.h.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "ipc/frame_ring.h"
#include "ipc/layout.h"

namespace shmpool::ipc {

// Slot states (low 8 bits of SlotData::state). Zeroed memory = empty.
// Every transition the code makes (tests/slot_table_test.cc walks them all):
// clang-format off
//   from      -> to        who, when
//   empty     -> starting  owner: launches a worker (set_state)
//   dead      -> starting  owner: relaunches after the exit was handled (restart, recycling)
//   starting  -> idle      owner's starter: the worker said hello
//   starting  -> dead      owner: spawn or hello failed, or the worker exited while starting
//   idle      -> busy      any caller: checkout (CAS, holder pid in the word)
//   busy      -> idle      the holder: checkin
//   busy      -> dead      the holder: its call failed and the worker must go (release_as);
//                          the owner: the holder's process died (orphan reclaim)
//   busy      -> retiring  the holder: the worker is due for recycling (release_as)
//   idle      -> dead      the owner: the worker exited; a caller: it checked out a slot
//                          whose worker is gone (release_as)
//   idle      -> retiring  owner: retires an idle overflow worker or recycles by memory
//   retiring  -> dead      owner: the retiring worker exited
//   dead      -> empty     owner: a retired or overflow worker's exit was handled
//   invalid   -> dead      owner: a word no shmpool process writes (a worker scribbled)
// clang-format on
// A busy slot whose worker exits stays busy: its holder sees worker_alive == 0
// and releases it dead itself, so a new worker's frames never reach that call.
enum class SlotState : uint8_t {
  empty = 0,
  starting = 1,
  idle = 2,
  busy = 3,
  retiring = 4,
  dead = 5
};

constexpr const char* slot_state_name(SlotState s) {
  switch (s) {
    case SlotState::empty:
      return "empty";
    case SlotState::starting:
      return "starting";
    case SlotState::idle:
      return "idle";
    case SlotState::busy:
      return "busy";
    case SlotState::retiring:
      return "retiring";
    case SlotState::dead:
      return "dead";
  }
  return "unknown";
}

// State word: [generation:32][holder pid:24][state:8]. Every transition bumps
// the generation, so a CAS from a stale snapshot fails (no ABA). A busy word
// carries the pid of the process that checked the slot out, set by the same
// CAS (0 = the owner's own supervisor), so the owner can tell a slot held by
// a dead process from one just checked out. Linux pids fit in 22 bits.
inline constexpr uint32_t kMaxHolderPid = (1u << 24) - 1;
constexpr uint64_t make_slot_word(uint32_t generation, SlotState s, uint32_t holder_pid = 0) {
  return (uint64_t(generation) << 32) | (uint64_t(holder_pid & kMaxHolderPid) << 8) | uint64_t(s);
}
constexpr SlotState slot_state(uint64_t word) { return SlotState(word & 0xff); }
constexpr uint32_t slot_generation(uint64_t word) { return uint32_t(word >> 32); }
constexpr uint32_t slot_holder_pid(uint64_t word) { return uint32_t(word >> 8) & kMaxHolderPid; }

// Calls in flight on one slot at most (pipelined async calls): a request's
// cancel word is SlotData::cancel[id % kMaxInFlight], and in-flight ids on a
// slot are consecutive, so no two of them share a word.
inline constexpr uint32_t kMaxInFlight = 64;

// One worker slot. Field table (writer / reader / order; writer dies mid-update):
// clang-format off
// | state          | owner, clients (CAS)       | all             | acq_rel CAS / acquire | stays busy: owner reclaims on owner-pid death |
// | owner          | client after checkout      | owner           | relaxed (published by state CAS) | stale: ignored once state moves |
// | worker_pid     | owner's starter, before idle | all           | relaxed (published by the idle transition's release) | - |
// | worker_alive   | owner (1 ready, 0 gone); worker sets 1 when ready | clients waiting | release / acquire | -     |
// | reserved_epoch | nobody (was a per-process epoch nobody read) | - | -            | -                                |
// | exit_code, exit_signal | owner: how the worker exited, before worker_alive = 0; reset before it is 1 | callers that saw worker_alive == 0 | relaxed (published by worker_alive's release) | - |
// | progress       | worker, +1 per dispatch    | nobody yet      | relaxed               | stops advancing: stuck           |
// | calls          | worker, +1 per reply (owner zeroes it for a new worker) | owner (recycling), stats | relaxed | a count may be lost |
// | checkouts, successes, errors | the slot's holder (one at a time: handed over by the state CAS), by bump() | all (stats) | relaxed | a count may be lost |
// | restarts, started_ns | owner                | all (stats)     | relaxed               | a count may be lost              |
// | items_taken, bytes_taken | the slot's holder, as its stream's consumer takes items | worker (stream window) | release / acquire, then `credit` rung | window stays closed: the worker waits until cancelled or killed |
// | credit         | holder rings after a take or a cancel | worker sleeps on it in a full window | see Doorbell | - |
// | cancel[k]      | holder: the id of a request it cancels (k = id % kMaxInFlight), cleared when the call ends; owner zeroes all for a new worker | worker: before a handler starts, ctx.cancelled, between stream items | release / acquire | a stale id: cleared by the owner when the worker is replaced |
// | request ring   | producer: client; consumer: worker |
// | response ring  | producer: worker; consumer: client |
// clang-format on
// The worker's own words (progress, calls) have a cache line of their own:
// the client's counters next to them would bounce between the two cores on
// every call.
struct SlotData {
  alignas(kCacheLine) std::atomic<uint64_t> state{0};
  std::atomic<uint64_t> owner{0};  // client pid << 32 | client token
  std::atomic<int32_t> worker_pid{0};
  std::atomic<uint32_t> worker_alive{0};
  std::atomic<uint64_t> reserved_epoch{0};
  std::atomic<uint64_t> last_activity_ns{0};
  std::atomic<int32_t> exit_code{-1};  // valid when exit_signal == 0
  std::atomic<int32_t> exit_signal{0};
  alignas(kCacheLine) std::atomic<uint64_t> progress{0};
  std::atomic<uint64_t> calls{0};
  alignas(kCacheLine) std::atomic<uint64_t> checkouts{0};
  std::atomic<uint64_t> successes{0};
  std::atomic<uint64_t> errors{0};
  std::atomic<uint64_t> restarts{0};
  std::atomic<int64_t> started_ns{0};  // owner, when the current worker was spawned
  // Stream credit and cancellation: the holder writes, the worker reads.
  alignas(kCacheLine) std::atomic<uint64_t> items_taken{0};
  std::atomic<uint64_t> bytes_taken{0};
  Doorbell credit;
  alignas(kCacheLine) std::atomic<uint64_t> cancel[kMaxInFlight] = {};
  RingControl request;
  RingControl response;
};
static_assert(std::is_standard_layout_v<SlotData>);

// +1 on a counter that has one writer at a time (a slot's holder: the state
// word's CAS orders one holder's writes before the next one's): a load and a
// store instead of a locked read-modify-write on every call.
inline void bump(std::atomic<uint64_t>& counter) {
  counter.store(counter.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}
static_assert(sizeof(SlotData) == 20 * kCacheLine);
static_assert(offsetof(SlotData, request) == 12 * kCacheLine);

}  // namespace shmpool::ipc
