// arena_handle.h: a process's handle on a segment's payload arena, shared by
// everything that may outlive the Pool/Client/Worker that made it
// (PayloadBuffer, Reply).
#pragma once

#include <chrono>
#include <memory>

#include "ipc/arena.h"
#include "ipc/segment.h"
#include "shmpool/error.h"
#include "shmpool/payload.h"

namespace shmpool::detail {

struct ArenaHandle {
  explicit ArenaHandle(std::shared_ptr<ipc::Segment> s) : seg(std::move(s)), arena(seg->arena()) {}
  std::shared_ptr<ipc::Segment> seg;  // keeps the mapping alive
  ipc::Arena arena;
};

// Allocates n bytes, waiting for frees until deadline_ns.
// resource_error/payload_too_large when n exceeds the arena (or there is
// none), resource_error/arena_exhausted at the deadline.
Expected<PayloadBuffer> alloc_payload(const std::shared_ptr<ArenaHandle>& arena, std::size_t n,
                                      int64_t deadline_ns, const ipc::WaitPolicy& policy);

// True when `bytes` lies in an arena block this process holds.
bool in_own_block(const ArenaHandle& arena, std::span<const uint8_t> bytes);

// The error for a payload larger than the arena.
Error payload_too_large(std::size_t bytes, uint64_t arena_bytes);

}  // namespace shmpool::detail
