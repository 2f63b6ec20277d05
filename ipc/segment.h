// segment.h: the shared segment of one pool. Plain layout structs
// (SegmentHeader, SlotData) and the per-process handle `Segment` that maps
// them. The owner creates the segment (pre-allocated, mode 0600); workers and
// clients attach to it by name.
//
// Layout (offsets computed by compute_layout() from the Geometry stored in
// the header; every attacher recomputes them and checks the file size):
//   [SegmentHeader][SlotData x slot_count][session table][per slot: request
//   ring data, response ring data][payload arena (arena.h)]
// All offsets are relative to the segment base; nothing in the segment is a
// pointer.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "ipc/arena.h"
#include "ipc/checkout_queue.h"
#include "ipc/errc.h"
#include "ipc/frame_ring.h"
#include "ipc/sys.h"

namespace shmpool::ipc {

inline constexpr uint64_t kSegmentMagic = 0x314c4f4f504d4853ull;  // "SHMPOOL1"
inline constexpr uint32_t kLayoutVersion = 9;
inline constexpr std::size_t kMaxNameLength = 64;
// Name prefix of every shmpool segment in /dev/shm.
inline constexpr std::string_view kShmPrefix = "shmpool.";

// The sizes a segment is built from; stored in the header, immutable.
struct Geometry {
  uint32_t slot_count = 1;
  uint32_t session_capacity = 0;           // entries in the session table (0: none)
  uint64_t request_ring_bytes = 1 << 20;   // multiple of 64, >= 4 KiB
  uint64_t response_ring_bytes = 1 << 20;  // multiple of 64, >= 4 KiB
  uint64_t arena_bytes = 0;                // payload arena: multiple of kArenaPage (0: none)
};

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
static_assert(sizeof(SlotData) == 11 * kCacheLine);
static_assert(offsetof(SlotData, request) == 3 * kCacheLine);
static_assert(std::atomic<int32_t>::is_always_lock_free);

// Pool states in SegmentHeader::pool_state.
enum class PoolState : uint32_t { initializing = 0, ready = 1, closing = 2 };

// Field table (writer / reader / order; what a reader sees if the writer dies):
// clang-format off
// | magic..rings_offset, pool_name, sessions_offset | owner at creation | all | plain, before pool_state (release) | - |
// | pool_state      | owner (ready, closing)          | all            | release / acquire     | stays ready: attachers check owner liveness |
// | slots_changed   | see Doorbell (ring: checkin, every owner transition) | waiters | see Doorbell | waiter sleeps to its deadline |
// | errors_by_category, checkout_timeouts, session_table_full | any caller | status readers | relaxed RMW / relaxed | a count may be lost |
// | session_lock    | SessionTable (CAS 0 -> pid<<32|token, store 0) | SessionTable | acquire CAS / release store | taken over once the holder pid is gone |
// clang-format on
struct SegmentHeader {
  uint64_t magic;
  uint32_t layout_version;
  uint32_t header_size;
  uint64_t segment_size;
  int32_t owner_pid;
  uint32_t reserved0;
  uint64_t owner_start_time;  // /proc start time of owner_pid: guards pid reuse
  int64_t created_ns;         // CLOCK_MONOTONIC
  Geometry geometry;
  uint64_t slots_offset;
  uint64_t rings_offset;
  char pool_name[kMaxNameLength + 1];
  uint8_t reserved1[7];
  alignas(kCacheLine) std::atomic<uint32_t> pool_state{0};
  std::atomic<uint32_t> reserved2{0};
  Doorbell slots_changed;  // rung on every slot transition but checkout
  // Pool-wide counters (relaxed; statistics only; not written by a call that
  // succeeds: call_counts() sums the slots' counters).
  alignas(kCacheLine) std::atomic<uint64_t> errors_by_category[8];  // indexed by shmpool::Category
  std::atomic<uint64_t> checkout_timeouts{0};
  std::atomic<uint64_t> session_table_full{0};
  // Session table lock (structural changes only): holder's pid << 32 | token.
  alignas(kCacheLine) std::atomic<uint64_t> session_lock{0};
  uint64_t sessions_offset;
  // Payload arena control (arena.h).
  alignas(kCacheLine) ArenaControl arena;
  // Callers waiting for a worker, in arrival order, and their count per
  // process (checkout_queue.h).
  CheckoutQueue queue;
};
static_assert(std::is_standard_layout_v<SegmentHeader>);
static_assert(offsetof(SegmentHeader, geometry) == 48);
static_assert(sizeof(SegmentHeader) % kCacheLine == 0);

struct Layout {
  uint64_t slots_offset;
  uint64_t sessions_offset;
  uint64_t rings_offset;
  uint64_t slot_stride;  // ring bytes per slot
  uint64_t arena_blocks_offset;
  uint64_t arena_data_offset;
  uint64_t total;
};
// Errc::bad_layout if the geometry is out of range.
Errc compute_layout(const Geometry& g, Layout* out);

// Validates a pool name: 1..64 bytes of [A-Za-z0-9_.-], not starting with '.'.
bool valid_pool_name(std::string_view name);
std::string shm_object_name(std::string_view pool_name);  // "shmpool.<name>"

// A mapped segment. Move-only. Removing the name is explicit (remove()), so a
// crashed owner's segment stays for reclaim by the next owner or `shmpool gc`.
class Segment {
 public:
  // Creates and pre-allocates a new segment (mode 0600). Errc::exists if the
  // name is taken, Errc::no_space if /dev/shm cannot hold it (the partial
  // object is removed), Errc::bad_name / bad_layout on bad input.
  static Errc create(std::string_view pool_name, const Geometry& g, std::unique_ptr<Segment>* out,
                     SysError* err = nullptr);
  enum class Access { read_write, read_only };
  // Maps an existing segment and verifies magic, version and layout. A
  // read-only mapping may only be read (loads of the atomics included):
  // observers such as `shmpool status` use it so they cannot disturb a pool.
  static Errc attach(std::string_view pool_name, std::unique_ptr<Segment>* out,
                     SysError* err = nullptr, Access access = Access::read_write);
  // Removes the name; existing mappings stay valid. Errc::not_found if absent.
  static Errc remove(std::string_view pool_name);

  ~Segment();
  Segment(const Segment&) = delete;
  Segment& operator=(const Segment&) = delete;

  SegmentHeader& header() const { return *reinterpret_cast<SegmentHeader*>(base_); }
  const Geometry& geometry() const { return geometry_; }
  uint32_t slot_count() const { return geometry_.slot_count; }
  SlotData& slot(uint32_t i) const;  // i < slot_count(), checked
  uint8_t* sessions() const { return base_ + layout_.sessions_offset; }
  FrameRing request_ring(uint32_t i) const;
  FrameRing response_ring(uint32_t i) const;
  Arena arena() const;
  // The arena's in-transit check (Arena::InTransitFn) for this segment.
  static bool reply_in_flight(const void* segment, uint32_t pid);
  uint8_t* base() const { return base_; }
  uint64_t size() const { return layout_.total; }
  const std::string& pool_name() const { return name_; }

 private:
  struct Mapping;
  Segment() = default;
  std::unique_ptr<Mapping> mapping_;
  uint8_t* base_ = nullptr;
  Geometry geometry_{};
  Layout layout_{};
  std::string name_;
};

}  // namespace shmpool::ipc
