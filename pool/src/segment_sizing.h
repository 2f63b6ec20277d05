// segment_sizing.h: how big a pool's segment is. Sizes the caller set are
// used exactly; unset ones take the defaults (4 MiB per ring, 64 MiB of
// payload arena), and when that segment does not fit in the free space of
// /dev/shm (a container's 64 MiB), the unset sizes shrink to fit half of it
// (the other half stays for other pools and the container's own files):
// first the arena, down to kMinAutoArenaBytes, then the unset rings, halved
// down to kMinAutoRingBytes. A pure function of its inputs (the pool reads
// /dev/shm's free space and passes it in), so it is unit-tested without a
// small /dev/shm.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "ipc/segment.h"
#include "shmpool/error.h"

namespace shmpool::detail {

inline constexpr uint64_t kDefaultRingBytes = 4u << 20;
inline constexpr uint64_t kDefaultArenaBytes = 64u << 20;
inline constexpr uint64_t kMinAutoRingBytes = 256u << 10;
inline constexpr uint64_t kMinAutoArenaBytes = 1u << 20;

struct SizeRequest {
  uint32_t slot_count = 1;
  uint32_t session_capacity = 0;
  std::optional<uint64_t> request_ring_bytes, response_ring_bytes, arena_bytes;  // unset: auto
};

struct FittedGeometry {
  ipc::Geometry geometry;
  uint64_t segment_bytes = 0;
  bool shrunk = false;  // some unset size is below its default
  std::string note;     // one line: what was chosen and why (empty if not shrunk)
};

// shm_free_bytes: free bytes in /dev/shm (0: unknown, then nothing shrinks).
// resource_error/shm_exhausted when even the smallest automatic sizes do not
// fit in half the free space (context: needed, available and the /dev/shm
// size that would do). Sizes that are set but invalid are passed through:
// creating the segment reports them.
Expected<FittedGeometry> fit_segment(const SizeRequest& r, uint64_t shm_free_bytes);

// Free bytes in /dev/shm now (statvfs), 0 if unknown.
uint64_t shm_free_bytes();

// "64 MiB", "256 KiB", "1234 bytes".
std::string format_bytes(uint64_t n);

}  // namespace shmpool::detail
