#include "shmpool/payload.h"

#include <string>

#include "pool/src/arena_handle.h"

namespace shmpool {

void PayloadBuffer::free_block() {
  {
    std::lock_guard lock(arena_->mu);
    arena_->held.erase(ptr_);
  }
  arena_->arena.free(index_, word_);
  arena_.reset();
}

namespace detail {

PayloadBuffer make_payload_buffer(const std::shared_ptr<ArenaHandle>& arena,
                                  const ipc::BlockRef& block, std::size_t size) {
  {
    std::lock_guard lock(arena->mu);
    arena->held[block.bytes.data()] = {block.index, block.word, block.bytes.size()};
  }
  return PayloadBuffer(arena, block.index, block.word, block.bytes.data(), size);
}

bool find_held(ArenaHandle& arena, std::span<const uint8_t> bytes, ipc::BlockRef* out,
               uint64_t* offset) {
  if (bytes.empty()) return false;
  std::lock_guard lock(arena.mu);
  auto it = arena.held.upper_bound(bytes.data());
  if (it == arena.held.begin()) return false;
  --it;
  const uint8_t* start = it->first;
  const ArenaHandle::Held& h = it->second;
  const uint64_t at = uint64_t(bytes.data() - start);
  if (at >= h.capacity || bytes.size() > h.capacity - at) return false;
  out->index = h.index;
  out->word = h.word;
  out->bytes = {const_cast<uint8_t*>(start), h.capacity};
  *offset = at;
  return true;
}

bool in_own_block(ArenaHandle& arena, std::span<const uint8_t> bytes) {
  ipc::BlockRef b;
  uint64_t offset = 0;
  return find_held(arena, bytes, &b, &offset);
}

Error payload_too_large(std::size_t bytes, uint64_t arena_bytes) {
  return make_error(Category::resource_error, "payload_too_large",
                    arena_bytes ? "payload is larger than the payload arena"
                                : "payload is larger than the request ring and there is no "
                                  "payload arena")
      .with("bytes", std::to_string(bytes))
      .with("arena_bytes", std::to_string(arena_bytes));
}

Expected<PayloadBuffer> alloc_payload(const std::shared_ptr<ArenaHandle>& arena, std::size_t n,
                                      int64_t deadline_ns, const ipc::WaitPolicy& policy) {
  const uint64_t cap = arena ? arena->arena.capacity() : 0;
  if (!arena || !arena->arena.enabled() || n > cap) return payload_too_large(n, cap);
  ipc::BlockRef b;
  ipc::Errc e = arena->arena.alloc(n, deadline_ns, policy, &b);
  if (e == ipc::Errc::frame_too_large) return payload_too_large(n, cap);
  if (e != ipc::Errc::ok) {
    auto u = arena->arena.usage();
    return make_error(Category::resource_error, "arena_exhausted",
                      "no free payload arena block before the deadline")
        .with("bytes", std::to_string(n))
        .with("arena_bytes", std::to_string(cap))
        .with("arena_bytes_in_use", std::to_string(u.bytes));
  }
  return make_payload_buffer(arena, b, n);
}

}  // namespace detail
}  // namespace shmpool
