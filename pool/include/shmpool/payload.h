// payload.h: bulk bytes in the pool's shared payload arena, the zero-copy
// path for large payloads.
//
// Lifetimes (who owns a block, when it is freed, who reclaims it):
// - `Pool::alloc_payload(n)` (also Client, Worker) returns a PayloadBuffer:
//   a block held by this process. Fill data() and pass data() (or any
//   subspan of it) as a call's payload: the worker reads it in place, no
//   copy. The buffer may be reused for further calls. It is freed when the
//   PayloadBuffer is destroyed or reset(). Do not destroy it while a call
//   that uses it is in flight.
// - A payload that is not in the arena is copied once: into the request
//   frame when small (<= 4 KiB), else into a temporary block freed when the
//   call returns.
// - A reply's payload() larger than 4 KiB is an arena block the worker
//   filled and handed to us: the Reply holds it and frees it when destroyed.
// - Python: ctx.payload is a read-only view of the caller's block, valid for
//   the call. A view that a handler keeps past the call (a numpy array, a
//   global) pins the block: the caller's free is deferred until the last
//   such view dies, so Python never reads reused memory. ctx.alloc_output(n)
//   is a block the worker holds until the reply hands it to the caller.
// - A process that dies leaves its blocks (and pins) behind; the pool's
//   owner frees them on its next supervision pass (PoolConfig::
//   health_check_interval), and an allocation that finds the arena full
//   reclaims them at once before waiting.
// - A PayloadBuffer or Reply keeps the segment mapped; it may outlive the
//   Pool or Client that made it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <utility>

namespace shmpool {

namespace detail {
struct ArenaHandle;
}

class PayloadBuffer {
 public:
  PayloadBuffer() = default;
  PayloadBuffer(PayloadBuffer&& o) noexcept
      : arena_(std::move(o.arena_)),
        index_(o.index_),
        word_(o.word_),
        ptr_(std::exchange(o.ptr_, nullptr)),
        size_(std::exchange(o.size_, 0)) {}
  PayloadBuffer& operator=(PayloadBuffer&& o) noexcept {
    if (this != &o) {
      reset();
      arena_ = std::move(o.arena_);
      index_ = o.index_;
      word_ = o.word_;
      ptr_ = std::exchange(o.ptr_, nullptr);
      size_ = std::exchange(o.size_, 0);
    }
    return *this;
  }
  PayloadBuffer(const PayloadBuffer&) = delete;
  PayloadBuffer& operator=(const PayloadBuffer&) = delete;
  ~PayloadBuffer() { reset(); }

  // Writable bytes in shared memory (exactly the size asked for).
  std::span<uint8_t> data() const { return {ptr_, size_}; }
  uint8_t* begin() const { return ptr_; }
  uint8_t* end() const { return ptr_ + size_; }
  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  explicit operator bool() const { return ptr_ != nullptr; }
  // Frees the block now.
  void reset() {
    if (arena_) free_block();
    ptr_ = nullptr;
    size_ = 0;
  }

  // Internal (used by the transports).
  PayloadBuffer(std::shared_ptr<detail::ArenaHandle> arena, uint32_t index, uint64_t word,
                uint8_t* ptr, std::size_t size)
      : arena_(std::move(arena)), index_(index), word_(word), ptr_(ptr), size_(size) {}

 private:
  void free_block();  // releases the block and arena_
  std::shared_ptr<detail::ArenaHandle> arena_;
  uint32_t index_ = 0;
  uint64_t word_ = 0;
  uint8_t* ptr_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace shmpool
