// segment_header.h: the header of a pool's shared segment: its identity
// (magic, layout version, owner), its Geometry, the pool state and the
// pool-wide counters, the arena's control words and the checkout queue.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <type_traits>

#include "ipc/arena.h"
#include "ipc/checkout_queue.h"
#include "ipc/layout.h"
#include "ipc/wait.h"

namespace shmpool::ipc {

inline constexpr uint64_t kSegmentMagic = 0x314c4f4f504d4853ull;  // "SHMPOOL1"
inline constexpr uint32_t kLayoutVersion = 10;
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
  // succeeds: SlotTable::call_counts() sums the slots' counters).
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

}  // namespace shmpool::ipc
