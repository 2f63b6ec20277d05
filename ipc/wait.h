// wait.h: how a process waits for another process to publish something in
// shared memory. A `Doorbell` is a pair of shared futex words (a sequence
// number and a waiter count) that lives in the segment; `wait_until` spins for
// a bounded time, then blocks on the futex, always with a deadline.
//
// Memory ordering: the publisher makes its data visible with a release store
// (e.g. FrameRing's head), then calls `ring()`: a seq_cst fence, then a load of
// `waiters`; only if someone sleeps does it bump `seq` and futex_wake.
// `wait_until` bumps `waiters` (seq_cst RMW), reads `seq`, re-checks the
// condition, and sleeps only while `seq` is unchanged. Either the publisher
// sees the waiter (and bumps seq, failing the futex compare or waking it), or
// the waiter's re-check sees the published data: no lost wake-up.
#pragma once

#include <atomic>
#include <cstdint>

#include "ipc/sys.h"

namespace shmpool::ipc {

inline constexpr std::size_t kCacheLine = 64;  // fixed: the Python core is built separately

enum class WaitStrategy : uint32_t {
  spin = 0,    // busy-poll until the deadline (one core per waiter; benchmarks only)
  hybrid = 1,  // poll for `spin_ns`, then block on the futex (default)
  block = 2,   // block on the futex at once
};

struct WaitPolicy {
  WaitStrategy strategy = WaitStrategy::hybrid;
  int64_t spin_ns = 50'000;  // hybrid: how long to poll before blocking
};

// Lives in shared memory. Zeroed memory is a valid idle doorbell.
// | field   | written by                        | read by            | order   |
// | seq     | publisher (`ring`), only when waiters > 0 | waiter (futex) | release / acquire |
// | waiters | waiter (inc/dec around the sleep) | publisher (`ring`) | seq_cst RMW / fence +
// relaxed | If a writer dies mid-update, a waiter sees at worst a spurious wake-up or sleeps until
// its own deadline; `waiters` may stay > 0, costing one useless futex_wake per ring.
struct Doorbell {
  std::atomic<uint32_t> seq{0};
  std::atomic<uint32_t> waiters{0};

  // Publisher side: call after the release store that publishes the data.
  // Costs a fence and one load when nobody sleeps (the hot path).
  void ring() {
    // Dekker pair with wait_until: we publish data then read `waiters`; the
    // waiter bumps `waiters` then re-reads the data. The seq_cst fence orders
    // our publishing store before the load, so one of us sees the other.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (waiters.load(std::memory_order_relaxed) !=
        0) {                                        // pairs with waiters.fetch_add in wait_until
      seq.fetch_add(1, std::memory_order_release);  // pairs with the futex compare
      futex_wake(&seq, INT32_MAX);
    }
  }
};
static_assert(sizeof(Doorbell) == 8);
static_assert(std::atomic<uint32_t>::is_always_lock_free);

enum class WaitResult { ready, timed_out };

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Waits until `ready()` returns true or CLOCK_MONOTONIC passes deadline_ns
// (<= 0: wait forever; pool/ always passes one). `ready` must only read
// shared state; it is called many times.
template <class Ready>
WaitResult wait_until(Doorbell& bell, Ready&& ready, int64_t deadline_ns,
                      const WaitPolicy& policy) {
  if (ready()) return WaitResult::ready;
  if (policy.strategy != WaitStrategy::block) {
    const int64_t spin_end =
        policy.strategy == WaitStrategy::spin ? deadline_ns : monotonic_ns() + policy.spin_ns;
    for (uint32_t i = 1;; ++i) {
      cpu_relax();
      if (ready()) return WaitResult::ready;
      if ((i & 63) == 0) {
        int64_t now = monotonic_ns();
        if (deadline_ns > 0 && now >= deadline_ns) return WaitResult::timed_out;
        if (spin_end > 0 && now >= spin_end) break;
      }
    }
  }
  for (;;) {
    bell.waiters.fetch_add(1, std::memory_order_seq_cst);  // pairs with the fence in ring()
    std::atomic_thread_fence(std::memory_order_seq_cst);   // orders it before ready()'s loads
    // Read after registering: a publisher that bumps seq from here on makes
    // the futex compare fail, one that finished before is seen by ready().
    uint32_t seen = bell.seq.load(std::memory_order_acquire);
    if (ready()) {
      bell.waiters.fetch_sub(1, std::memory_order_relaxed);
      return WaitResult::ready;
    }
    FutexResult r = futex_wait(&bell.seq, seen, deadline_ns);
    bell.waiters.fetch_sub(1, std::memory_order_relaxed);
    if (ready()) return WaitResult::ready;
    if (r == FutexResult::timed_out || (deadline_ns > 0 && monotonic_ns() >= deadline_ns)) {
      return WaitResult::timed_out;
    }
  }
}

}  // namespace shmpool::ipc
