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
#include <type_traits>

#include "ipc/layout.h"
#include "ipc/spin_budget.h"
#include "ipc/sys.h"

namespace shmpool::ipc {

enum class WaitStrategy : uint32_t {
  spin = 0,    // busy-poll until the deadline (one core per waiter; benchmarks only)
  hybrid = 1,  // poll while polling pays (at most `spin_ns`), then block on the futex (default)
  block = 2,   // block on the futex at once
};

struct WaitPolicy {
  WaitStrategy strategy = WaitStrategy::hybrid;
  int64_t spin_ns = 50'000;  // hybrid: the most one wait polls before blocking
  // hybrid: the waiter's own record of whether polling pays (spin_budget.h);
  // it chooses how long each wait polls, up to spin_ns. Null: always spin_ns.
  SpinBudget* budget = nullptr;
  // hybrid: the CPU (+1; 0 unknown) the process we wait for last ran on, if
  // known (FrameRing passes its producer's). When it is ours, that process is
  // not running, and the wait blocks at once instead of polling.
  uint32_t peer_cpu = 0;
};

// The CPU this thread runs on, +1 (0 if unknown). glibc reads it from the
// thread's rseq area: a load, no syscall.
inline uint32_t current_cpu() {
  const int c = sched_getcpu();
  return c < 0 ? 0 : uint32_t(c) + 1;
}

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

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

enum class SpinResult { ready, expired, timed_out };

// The polling phase of a wait: polls `ready()` tightly for about a
// microsecond (a reply often comes that soon; a `pause` costs ~20 ns of
// reaction time, a clock read 40 ns), then with pauses until CLOCK_MONOTONIC
// reaches spin_end_ns (expired) or deadline_ns (timed_out; <= 0: none).
// spin_end_ns <= 0 ends after the tight polls. Never yields the core: on a
// core shared with a busy task, sched_yield hands that task the core for a
// whole scheduler slice (4 ms measured), while a futex sleep lets the
// scheduler wake us as soon as we are signalled. The worker's idle loop runs
// this with the GIL held, then blocks without it (wait_until's `let_go`).
template <class Ready>
SpinResult spin_until(Ready&& ready, int64_t spin_end_ns, int64_t deadline_ns) {
  for (uint32_t i = 0; i < kTightPolls; ++i) {
    if (ready()) return SpinResult::ready;
  }
  if (spin_end_ns <= 0) return SpinResult::expired;
  for (uint32_t i = 1;; ++i) {
    cpu_relax();
    if (ready()) return SpinResult::ready;
    if ((i & 63) == 0) {
      const int64_t now = monotonic_ns();
      if (deadline_ns > 0 && now >= deadline_ns) return SpinResult::timed_out;
      if (now >= spin_end_ns) return SpinResult::expired;
    }
  }
}

// True when a hybrid wait should not poll at all: the process it waits for
// last ran on this thread's CPU (policy.peer_cpu), so it is not running now,
// and polling would only keep it off the core.
inline bool beside_peer(const WaitPolicy& policy) {
  return policy.strategy == WaitStrategy::hybrid && policy.peer_cpu != 0 &&
         policy.peer_cpu == current_cpu();
}

// The end of the polling phase for a hybrid wait under `policy`: now plus
// the budget's choice (or spin_ns without one); 0 means "tight polls only".
// Pass the same policy to finish_spin() with the outcome.
inline int64_t spin_end_for(const WaitPolicy& policy) {
  const int64_t ns = policy.budget ? policy.budget->next() : policy.spin_ns;
  return ns > 0 ? monotonic_ns() + ns : 0;
}
inline void finish_spin(const WaitPolicy& policy, SpinResult r) {
  if (!policy.budget || r == SpinResult::timed_out) return;
  if (r == SpinResult::ready) {
    policy.budget->spun();
  } else {
    policy.budget->blocked();
  }
}

// `policy` with a budget: its own, or else `fallback` (typically a
// thread_local one per wait site), re-made when its maximum differs.
inline WaitPolicy with_budget(WaitPolicy policy, SpinBudget& fallback) {
  if (policy.budget) return policy;
  if (fallback.max_ns() != policy.spin_ns) fallback = SpinBudget(policy.spin_ns);
  policy.budget = &fallback;
  return policy;
}

// The blocking phase of a wait: sleeps on `bell` until `ready()` or the
// deadline (<= 0: none). See the memory-ordering note at the top.
template <class Ready>
WaitResult block_until(Doorbell& bell, Ready&& ready, int64_t deadline_ns) {
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

// What a waiter lets go of before it blocks (see wait_until): nothing.
struct KeepAll {
  struct Nothing {};
  constexpr Nothing operator()() const { return {}; }
};

// Waits until `ready()` returns true or CLOCK_MONOTONIC passes deadline_ns
// (<= 0: wait forever; pool/ always passes one). `ready` must only read
// shared state; it is called many times.
//
// `let_go` is called once, when the wait stops polling on the caller's
// behalf: before the futex sleep (hybrid, block), or (spin) after spin_ns
// of polling, from when it polls on until the deadline. What it returns
// is held until the wait ends: an RAII guard, e.g. the Python worker's
// released GIL (py::gil_scoped_release), so a waiter polls holding a lock
// that is costly to re-take and sleeps without it. Without one (KeepAll)
// nothing happens, and spin polls until the deadline in one go.
template <class Ready, class LetGo = KeepAll>
WaitResult wait_until(Doorbell& bell, Ready&& ready, int64_t deadline_ns, const WaitPolicy& policy,
                      LetGo&& let_go = {}) {
  constexpr bool kLetsGo = !std::is_same_v<std::remove_cvref_t<LetGo>, KeepAll>;
  if (ready()) return WaitResult::ready;
  if (policy.strategy != WaitStrategy::block && !beside_peer(policy)) {
    int64_t spin_end = INT64_MAX;  // spin without a let_go: until the deadline
    if (policy.strategy == WaitStrategy::hybrid) {
      spin_end = spin_end_for(policy);
    } else if constexpr (kLetsGo) {
      spin_end = monotonic_ns() + policy.spin_ns;
    }
    const SpinResult r = spin_until(ready, spin_end, deadline_ns);
    if (policy.strategy == WaitStrategy::hybrid) finish_spin(policy, r);
    if (r == SpinResult::ready) return WaitResult::ready;
    if (r == SpinResult::timed_out) return WaitResult::timed_out;
  }
  [[maybe_unused]] auto held = let_go();
  if constexpr (kLetsGo) {
    if (policy.strategy == WaitStrategy::spin) {
      return spin_until(ready, INT64_MAX, deadline_ns) == SpinResult::ready ? WaitResult::ready
                                                                            : WaitResult::timed_out;
    }
  }
  return block_until(bell, ready, deadline_ns);
}

}  // namespace shmpool::ipc
