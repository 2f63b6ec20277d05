#include "ipc/shm_lock.h"

#include <sched.h>
#include <unistd.h>

#include "ipc/sys.h"
#include "ipc/wait.h"

namespace shmpool::ipc {

uint64_t lock_owner_word(uint32_t token) { return uint64_t(uint32_t(::getpid())) << 32 | token; }

void lock_word(std::atomic<uint64_t>& word, uint64_t me) {
  for (uint32_t spins = 0;; ++spins) {
    uint64_t expected = 0;
    if (word.compare_exchange_weak(expected, me,
                                   std::memory_order_acquire,  // pairs with unlock_word()
                                   std::memory_order_relaxed)) {
      return;
    }
    if ((spins & 1023) == 1023) {
      // A holder that died cannot release: take the lock over.
      pid_t holder = pid_t(expected >> 32);
      if (expected != 0 && !process_exists(holder) &&
          word.compare_exchange_strong(expected, me, std::memory_order_acquire)) {
        return;
      }
      ::sched_yield();
    }
    cpu_relax();
  }
}

}  // namespace shmpool::ipc
