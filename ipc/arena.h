// arena.h: the payload arena, bulk bytes that cross the process boundary
// without being copied. It lives in the segment after the rings:
//   [ArenaBlock x pages][data: pages x kArenaPage]
// A block is a run of pages; its descriptor is the one of its first page (the
// "head"). Descriptors are the only allocation state: a run is free when
// every descriptor in it is free, and a live block's interior descriptors are
// always free (only heads change state), so nothing needs repair after a
// crash.
//
// Ownership: every live block is held by one process (its pid in the head's
// word). The holder frees it; a holder can hand it to another process, which
// takes it with a CAS on the word (worker output -> caller). A process that
// must keep reading a block it does not hold (a Python view that outlived its
// call) pins it: at most one pinner per block, and a block released by its
// holder while pinned is freed by the unpin. Blocks whose holder or pinner
// died are freed by reclaim_dead() (the owner's supervisor runs it; any
// attacher may).
//
// Who may call what: allocation takes the arena lock (ipc/shm_lock.h: a dead
// holder's lock is taken over); free, take, pin, unpin and reclaim are
// lock-free CASes on the head's word and pinner.
//
// Fields (writer; reader; order; if the writer dies):
//   word (head): allocator under the lock, holder, taker, reclaimer; all;
//     CAS acq_rel / loads acquire; the block stays held or released and
//     reclaim_dead frees it.
//   pages (head): allocator, before it publishes the word; scanners;
//     relaxed, published by the word's release.
//   pinner: the pinning process; free paths; seq_cst (a Dekker pair with the
//     word, so either the unpin or the free sees the other); reclaim_dead
//     clears a dead pinner.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <span>

#include "ipc/errc.h"
#include "ipc/wait.h"

namespace shmpool::ipc {

inline constexpr uint64_t kArenaPage = 4096;
inline constexpr uint64_t kMaxArenaPages = uint64_t(1) << 24;  // 64 GiB

enum class BlockState : uint8_t { free = 0, held = 1, released = 2 };

// Head word: [generation:32][holder pid:24][state:8]; every change bumps the
// generation, so a CAS from a stale snapshot fails.
constexpr uint64_t make_block_word(uint32_t generation, BlockState s, uint32_t pid) {
  return (uint64_t(generation) << 32) | (uint64_t(pid & 0xffffffu) << 8) | uint64_t(s);
}
constexpr BlockState block_state(uint64_t w) { return BlockState(w & 0xff); }
constexpr uint32_t block_holder(uint64_t w) { return uint32_t(w >> 8) & 0xffffffu; }
constexpr uint32_t block_generation(uint64_t w) { return uint32_t(w >> 32); }

struct ArenaBlock {
  std::atomic<uint64_t> word{0};
  std::atomic<uint32_t> pages{0};
  std::atomic<uint32_t> pinner{0};
};
static_assert(sizeof(ArenaBlock) == 16);
static_assert(std::is_standard_layout_v<ArenaBlock>);

// Lives in the segment header.
//   lock: allocators (acquire CAS / release store, shm_lock.h); a dead
//     holder's lock is taken over.
//   freed: rung by whoever frees a block (after the freeing CAS, release),
//     waited on by allocators (see Doorbell); a dead ringer costs a waiter
//     at most its deadline.
struct ArenaControl {
  std::atomic<uint64_t> lock{0};
  Doorbell freed;
};
static_assert(sizeof(ArenaControl) == 16);

// A block as seen by the process holding it.
struct BlockRef {
  uint32_t index = 0;
  uint64_t word = 0;         // the word it is held with (generation included)
  std::span<uint8_t> bytes;  // the whole block: its pages, >= the size asked for
};

class Arena {
 public:
  Arena() = default;
  // `in_transit(ctx, pid)`: true while a block held by the dead process
  // `pid` may still be taken by a live one (a worker that sealed its reply
  // and died before its caller took the reply's block); reclaim_dead keeps
  // those. Null: none is.
  using InTransitFn = bool (*)(const void* ctx, uint32_t pid);
  Arena(ArenaControl* control, ArenaBlock* blocks, uint8_t* data, uint32_t pages,
        InTransitFn in_transit = nullptr, const void* in_transit_ctx = nullptr)
      : control_(control),
        blocks_(blocks),
        data_(data),
        pages_(pages),
        in_transit_(in_transit),
        in_transit_ctx_(in_transit_ctx) {}

  bool enabled() const { return pages_ != 0; }
  uint64_t capacity() const { return uint64_t(pages_) * kArenaPage; }

  // Allocates a block of at least n (>= 1) bytes held by this process.
  // Errc::frame_too_large if n > capacity() (it can never fit), Errc::no_space
  // if no run of pages is free now.
  Errc try_alloc(uint64_t n, BlockRef* out);
  // As try_alloc, but waits for frees until deadline_ns (then Errc::timed_out).
  // Dead holders' blocks are reclaimed before waiting.
  Errc alloc(uint64_t n, int64_t deadline_ns, const WaitPolicy& policy, BlockRef* out);
  // Releases a block this process holds (as `word`); freed at once unless
  // pinned, then by the unpin. A no-op if the block is no longer held as
  // `word` (taken over or reclaimed).
  void free(uint32_t index, uint64_t word);
  // Takes a block held by `from_pid` (a worker handing us its output).
  // False if it is not held by from_pid or changed under us.
  bool take(uint32_t index, uint32_t from_pid, BlockRef* out);
  // Resolves [offset, offset + length) of live block `index` read from
  // shared memory: every bound checked. Errc::corrupt on any failure.
  Errc resolve(uint32_t index, uint64_t offset, uint64_t length, std::span<uint8_t>* out,
               uint64_t* word = nullptr) const;
  // Pins live block `index` for this process; false if another process pins
  // it or it is no longer live.
  bool pin(uint32_t index, uint64_t word);
  void unpin(uint32_t index);
  // Frees blocks held or pinned by processes that no longer exist, but for
  // blocks still in transit (see the constructor). Returns how many blocks it
  // freed or unpinned.
  uint32_t reclaim_dead();

  struct Usage {
    uint64_t bytes = 0;   // pages of live blocks, in bytes
    uint32_t blocks = 0;  // live blocks (held or released-but-pinned)
    uint32_t pinned = 0;
  };
  Usage usage() const;

 private:
  // Calls fn(index, word, pages) for every live head, in address order.
  template <class Fn>
  void for_each_live(Fn&& fn) const;
  uint32_t clamp_pages(uint32_t index, uint32_t pages) const;
  void finish_free(uint32_t index, uint64_t released_word);
  bool release_word(uint32_t index, uint64_t word);

  ArenaControl* control_ = nullptr;
  ArenaBlock* blocks_ = nullptr;
  uint8_t* data_ = nullptr;
  uint32_t pages_ = 0;
  InTransitFn in_transit_ = nullptr;
  const void* in_transit_ctx_ = nullptr;
};

}  // namespace shmpool::ipc
