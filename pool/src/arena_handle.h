// arena_handle.h: a process's handle on a segment's payload arena, shared by
// everything that may outlive the Pool/Client/Worker that made it
// (PayloadBuffer, Reply).
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <span>

#include "ipc/arena.h"
#include "ipc/segment.h"
#include "shmpool/error.h"
#include "shmpool/payload.h"

namespace shmpool::detail {

struct ArenaHandle {
  explicit ArenaHandle(std::shared_ptr<ipc::Segment> s) : seg(std::move(s)), arena(seg->arena()) {}
  std::shared_ptr<ipc::Segment> seg;  // keeps the mapping alive
  ipc::Arena arena;

  // The blocks this process's PayloadBuffers hold, by start address, so a
  // payload span is recognised without scanning the arena.
  struct Held {
    uint32_t index;
    uint64_t word;
    std::size_t capacity;
  };
  std::mutex mu;
  std::map<const uint8_t*, Held> held;
};

// Wraps a block this process holds (registered until the buffer is reset).
PayloadBuffer make_payload_buffer(const std::shared_ptr<ArenaHandle>& arena,
                                  const ipc::BlockRef& block, std::size_t size);
// The held block that contains `bytes`, if any (and the offset in it).
bool find_held(ArenaHandle& arena, std::span<const uint8_t> bytes, ipc::BlockRef* out,
               uint64_t* offset);

// Allocates n bytes, waiting for frees until deadline_ns.
// resource_error/payload_too_large when n exceeds the arena (or there is
// none), resource_error/arena_exhausted at the deadline.
Expected<PayloadBuffer> alloc_payload(const std::shared_ptr<ArenaHandle>& arena, std::size_t n,
                                      int64_t deadline_ns, const ipc::WaitPolicy& policy);

// True when `bytes` lies in an arena block this process holds.
bool in_own_block(ArenaHandle& arena, std::span<const uint8_t> bytes);

// The error for a payload larger than the arena.
Error payload_too_large(std::size_t bytes, uint64_t arena_bytes);

}  // namespace shmpool::detail
