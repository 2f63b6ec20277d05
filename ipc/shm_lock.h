// shm_lock.h: a lock word in shared memory that survives its holder's death.
// The word holds the holder's pid << 32 | a per-process token (0 = free). A
// waiter that sees the same holder for a while checks whether that pid still
// exists and, if not, takes the lock over. Critical sections guarded by it
// must leave shared memory consistent at every store (a holder may die
// anywhere), so a taker-over needs no repair.
#pragma once

#include <atomic>
#include <cstdint>

namespace shmpool::ipc {

// The value this process stores in a lock word.
uint64_t lock_owner_word(uint32_t token);
// Takes the lock (acquire); spins, yields and takes over a dead holder's lock.
void lock_word(std::atomic<uint64_t>& word, uint64_t me);
// Releases it (release).
inline void unlock_word(std::atomic<uint64_t>& word) {
  word.store(0, std::memory_order_release);  // pairs with the acquire in lock_word
}

}  // namespace shmpool::ipc
