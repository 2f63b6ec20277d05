// wait.h: how a process waits for another process to publish something in
// shared memory. A `Doorbell` is a pair of shared futex words (a sequence
// number and a waiter count) that lives in the segment; `wait_until` spins for
// a bounded time, then blocks on the futex, always with a deadline.
//
// Memory ordering: the publisher makes its data visible with a release store
// (e.g. FrameRing's head), then calls `ring()`: an acq_rel RMW (+0) on
// `waiters`; only if someone sleeps does it bump `seq` and futex_wake.
// `wait_until` bumps `waiters` (acq_rel RMW), reads `seq`, re-checks the
// condition, and sleeps only while `seq` is unchanged. The two RMWs on
// `waiters` are totally ordered: either the publisher sees the waiter (and
// bumps seq, failing the futex compare or waking it), or the waiter's RMW
// acquires the publisher's release and its re-check sees the data: no lost
// wake-up.
#pragma once

#include <sched.h>

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
// | field   | written by                                | read by         | order             |
// | seq     | publisher (`ring`), only when waiters > 0 | waiter (futex)  | release / acquire |
// | waiters | waiter (inc/dec around the sleep)         | publisher (RMW) | acq_rel RMWs      |
// If a writer dies mid-update, a waiter sees at worst a spurious wake-up or
// sleeps until its own deadline; `waiters` may stay > 0, costing one useless
// futex_wake per ring.
struct Doorbell {
  std::atomic<uint32_t> seq{0};
  std::atomic<uint32_t> waiters{0};

  // Publisher side: call after the release store that publishes the data.
  // Costs one uncontended RMW when nobody sleeps (the hot path): no syscall.
  void ring() {
    // Both sides do a read-modify-write on `waiters`, so the two RMWs are
    // ordered: either ours comes second and sees the sleeper (we wake it), or
    // the sleeper's comes second, acquires our release, and its re-check of
    // the condition sees the published data. (A fence would do the same, but
    // ThreadSanitizer cannot model fences.)
    if (waiters.fetch_add(0, std::memory_order_acq_rel) != 0) {  // pairs with the RMW in wait_until
      seq.fetch_add(1, std::memory_order_release);               // pairs with the futex compare
      futex_wake(&seq, INT32_MAX);
    }
  }
};
static_assert(sizeof(Doorbell) == 8);
static_assert(std::atomic<uint32_t>::is_always_lock_free);

enum class WaitResult { ready, timed_out };

// How many times a waiter polls without pausing before it starts to pause
// and watch the clock: about a microsecond (ready() reads a cache line).
inline constexpr uint32_t kTightPolls = 256;

// A paced spin yields the core every kYieldEvery polls (a power of 2).
inline constexpr uint32_t kYieldEvery = 128;

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
    // A reply often comes within a microsecond or two: poll tightly first
    // (a `pause` costs ~20 ns of reaction time per wait on this machine, a
    // clock read 40 ns), then with pauses and a deadline.
    for (uint32_t i = 0; i < kTightPolls; ++i) {
      if (ready()) return WaitResult::ready;
    }
    const int64_t spin_end =
        policy.strategy == WaitStrategy::spin ? deadline_ns : monotonic_ns() + policy.spin_ns;
    for (uint32_t i = 1;; ++i) {
      cpu_relax();
      if (ready()) return WaitResult::ready;
      if ((i & 63) == 0) {
        int64_t now = monotonic_ns();
        if (deadline_ns > 0 && now >= deadline_ns) return WaitResult::timed_out;
        if (spin_end > 0 && now >= spin_end) break;
        // With more runnable threads than cores (a pool and its callers on
        // two cores), let whoever we wait for run on this core: every ~2 us.
        if ((i & (kYieldEvery - 1)) == 0) sched_yield();
      }
    }
  }
  for (;;) {
    bell.waiters.fetch_add(1, std::memory_order_acq_rel);  // pairs with the RMW in ring()
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
