#include "ipc/arena.h"

#include <unistd.h>

#include "ipc/shm_lock.h"
#include "ipc/sys.h"

namespace shmpool::ipc {

namespace {
uint32_t my_pid() { return uint32_t(::getpid()); }
uint64_t pages_for(uint64_t n) { return (n + kArenaPage - 1) / kArenaPage; }
}  // namespace

uint32_t Arena::clamp_pages(uint32_t index, uint32_t pages) const {
  // `pages` comes from shared memory: keep every block inside the arena.
  const uint32_t room = pages_ - index;
  if (pages == 0) return 1;
  return pages > room ? room : pages;
}

template <class Fn>
void Arena::for_each_live(Fn&& fn) const {
  for (uint32_t i = 0; i < pages_;) {
    uint64_t w = blocks_[i].word.load(std::memory_order_acquire);  // pairs with the publishers
    if (block_state(w) == BlockState::free) {
      ++i;
      continue;
    }
    uint32_t n = clamp_pages(i, blocks_[i].pages.load(std::memory_order_relaxed));
    fn(i, w, n);
    i += n;
  }
}

Errc Arena::try_alloc(uint64_t n, BlockRef* out) {
  if (n == 0) n = 1;
  if (n > capacity()) return Errc::frame_too_large;
  const uint32_t need = uint32_t(pages_for(n));
  lock_word(control_->lock, lock_owner_word(0));
  // First fit. Only the lock holder turns free heads live, so a run seen
  // free stays free until we publish it.
  uint32_t run_start = 0, run = 0;
  for (uint32_t i = 0; i < pages_ && run < need;) {
    uint64_t w = blocks_[i].word.load(std::memory_order_acquire);
    if (block_state(w) == BlockState::free) {
      if (run == 0) run_start = i;
      ++run;
      ++i;
    } else {
      run = 0;
      i += clamp_pages(i, blocks_[i].pages.load(std::memory_order_relaxed));
    }
  }
  if (run < need) {
    unlock_word(control_->lock);
    return Errc::no_space;
  }
  ArenaBlock& b = blocks_[run_start];
  b.pages.store(need, std::memory_order_relaxed);
  b.pinner.store(0, std::memory_order_relaxed);
  uint64_t old = b.word.load(std::memory_order_relaxed);
  uint64_t w = make_block_word(block_generation(old) + 1, BlockState::held, my_pid());
  b.word.store(w, std::memory_order_release);  // publishes pages
  unlock_word(control_->lock);
  out->index = run_start;
  out->word = w;
  out->bytes = {data_ + uint64_t(run_start) * kArenaPage, uint64_t(need) * kArenaPage};
  return Errc::ok;
}

Errc Arena::alloc(uint64_t n, int64_t deadline_ns, const WaitPolicy& policy, BlockRef* out) {
  Errc e = try_alloc(n, out);
  if (e != Errc::no_space) return e;
  if (reclaim_dead() > 0) {
    e = try_alloc(n, out);
    if (e != Errc::no_space) return e;
  }
  for (;;) {
    // Register as a waiter before the last try: from here on every free bumps
    // `seq` (Doorbell::ring), and a free that came before is seen by the try.
    control_->freed.waiters.fetch_add(1, std::memory_order_acq_rel);  // pairs with ring()
    const uint32_t seen = control_->freed.seq.load(std::memory_order_acquire);
    e = try_alloc(n, out);
    WaitResult r = WaitResult::ready;
    if (e == Errc::no_space) {
      auto freed = [&] { return control_->freed.seq.load(std::memory_order_acquire) != seen; };
      thread_local SpinBudget budget;  // this thread's waits for a free block
      r = wait_until(control_->freed, freed, deadline_ns, with_budget(policy, budget));
    }
    control_->freed.waiters.fetch_sub(1, std::memory_order_relaxed);
    if (e != Errc::no_space) return e;
    if (r == WaitResult::timed_out) return Errc::timed_out;
  }
}

void Arena::finish_free(uint32_t index, uint64_t released_word) {
  uint64_t free_word = make_block_word(block_generation(released_word) + 1, BlockState::free, 0);
  if (blocks_[index].word.compare_exchange_strong(released_word, free_word,
                                                  std::memory_order_acq_rel)) {
    control_->freed.ring();
  }
}

bool Arena::release_word(uint32_t index, uint64_t word) {
  ArenaBlock& b = blocks_[index];
  uint64_t released =
      make_block_word(block_generation(word) + 1, BlockState::released, block_holder(word));
  // seq_cst: a Dekker pair with unpin() (store pinner, load word).
  if (!b.word.compare_exchange_strong(word, released, std::memory_order_seq_cst)) return false;
  if (b.pinner.load(std::memory_order_seq_cst) == 0) finish_free(index, released);
  return true;
}

void Arena::free(uint32_t index, uint64_t word) {
  if (index >= pages_ || block_state(word) != BlockState::held) return;
  release_word(index, word);
}

bool Arena::take(uint32_t index, uint32_t from_pid, BlockRef* out) {
  if (index >= pages_) return false;
  ArenaBlock& b = blocks_[index];
  uint64_t w = b.word.load(std::memory_order_acquire);
  if (block_state(w) != BlockState::held || block_holder(w) != (from_pid & 0xffffffu)) {
    return false;
  }
  uint64_t mine = make_block_word(block_generation(w) + 1, BlockState::held, my_pid());
  if (!b.word.compare_exchange_strong(w, mine, std::memory_order_acq_rel)) return false;
  uint32_t n = clamp_pages(index, b.pages.load(std::memory_order_relaxed));
  out->index = index;
  out->word = mine;
  out->bytes = {data_ + uint64_t(index) * kArenaPage, uint64_t(n) * kArenaPage};
  return true;
}

Errc Arena::resolve(uint32_t index, uint64_t offset, uint64_t length, std::span<uint8_t>* out,
                    uint64_t* word) const {
  if (index >= pages_) return Errc::corrupt;
  const ArenaBlock& b = blocks_[index];
  uint64_t w = b.word.load(std::memory_order_acquire);
  if (block_state(w) != BlockState::held) return Errc::corrupt;
  uint64_t size =
      uint64_t(clamp_pages(index, b.pages.load(std::memory_order_relaxed))) * kArenaPage;
  if (offset > size || length > size - offset) return Errc::corrupt;
  *out = {data_ + uint64_t(index) * kArenaPage + offset, length};
  if (word) *word = w;
  return Errc::ok;
}

bool Arena::pin(uint32_t index, uint64_t word) {
  if (index >= pages_) return false;
  ArenaBlock& b = blocks_[index];
  uint32_t none = 0;
  if (!b.pinner.compare_exchange_strong(none, my_pid(), std::memory_order_seq_cst)) return false;
  // Still the block we were given? (Its holder cannot free it under us from
  // here on: the free path sees the pin.)
  uint64_t w = b.word.load(std::memory_order_seq_cst);
  if (block_generation(w) != block_generation(word) || block_state(w) != BlockState::held) {
    b.pinner.store(0, std::memory_order_seq_cst);
    return false;
  }
  return true;
}

void Arena::unpin(uint32_t index) {
  if (index >= pages_) return;
  ArenaBlock& b = blocks_[index];
  b.pinner.store(0, std::memory_order_seq_cst);  // Dekker pair with release_word()
  uint64_t w = b.word.load(std::memory_order_seq_cst);
  if (block_state(w) == BlockState::released) finish_free(index, w);
}

uint32_t Arena::reclaim_dead() {
  uint32_t n = 0;
  for_each_live([&](uint32_t i, uint64_t w, uint32_t) {
    ArenaBlock& b = blocks_[i];
    uint32_t pinner = b.pinner.load(std::memory_order_seq_cst);
    if (pinner != 0 && !process_exists(pid_t(pinner))) {
      if (b.pinner.compare_exchange_strong(pinner, 0, std::memory_order_seq_cst)) ++n;
      pinner = 0;
    }
    if (block_state(w) == BlockState::held && !process_exists(pid_t(block_holder(w)))) {
      if (in_transit_ && in_transit_(in_transit_ctx_, block_holder(w))) return;
      if (release_word(i, w)) ++n;
    } else if (block_state(w) == BlockState::released &&
               b.pinner.load(std::memory_order_seq_cst) == 0) {
      finish_free(i, w);
    }
  });
  return n;
}

Arena::Usage Arena::usage() const {
  Usage u;
  for_each_live([&](uint32_t i, uint64_t, uint32_t pages) {
    u.bytes += uint64_t(pages) * kArenaPage;
    ++u.blocks;
    if (blocks_[i].pinner.load(std::memory_order_relaxed) != 0) ++u.pinned;
  });
  return u;
}

}  // namespace shmpool::ipc
