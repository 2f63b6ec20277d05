// spin_budget.h: how long a waiter polls before it blocks, learnt from how
// its own recent waits ended. Polling pays only while the process it waits
// for is running on another core: then a reply comes within a microsecond or
// two and a futex sleep would cost 5-30 us of wake-up. When that process is
// queued on our own core (more runnable threads than cores: a pool and its
// callers on two cores, or a busy machine), every microsecond we poll is a
// microsecond it cannot run, and the poll always ends in a sleep anyway.
//
// So a waiter keeps polling for its full budget while polls keep succeeding,
// halves the budget on each poll that ran out, and once the budget is below
// kMinSpinNs it blocks at once. While blocking it probes every `probe_gap()`
// waits with a full-budget poll; a probe that succeeds restores the budget,
// one that fails doubles the gap (up to kMaxProbeGap), so a machine that
// stays busy pays for at most one failed poll per kMaxProbeGap waits. This
// is the policy of glibc's adaptive mutexes (spin while spinning pays),
// driven by outcomes instead of spin counts, and with no sched_yield (on a
// core shared with another runnable task, a yield hands that task the core
// for a whole scheduler slice).
//
// Per-process and per-waiter (a channel's reply waits, a worker's idle
// loop, one caller thread's checkout waits): plain fields, no atomics; one
// thread at a time (a hand-over between threads must synchronise, as a slot
// checkout does).
#pragma once

#include <algorithm>
#include <cstdint>

namespace shmpool::ipc {

class SpinBudget {
 public:
  // A budget below this blocks at once (after a few tight polls).
  static constexpr int64_t kMinSpinNs = 2'000;
  // Probe gaps, in waits: the first after the budget collapsed, and the cap.
  static constexpr uint32_t kMinProbeGap = 16;
  static constexpr uint32_t kMaxProbeGap = 1024;

  // max_ns: the most one wait polls (WaitPolicy::spin_ns).
  explicit SpinBudget(int64_t max_ns = 50'000)
      : max_ns_(std::max<int64_t>(0, max_ns)), budget_ns_(max_ns_) {}

  // How long the next wait may poll, in ns (0: block at once). Counts down
  // to the next probe while the budget is collapsed.
  int64_t next() {
    if (budget_ns_ >= kMinSpinNs) return budget_ns_;
    if (until_probe_ > 0) {
      --until_probe_;
      return 0;
    }
    probing_ = true;
    return max_ns_;
  }

  // The wait ended while polling: polling pays, keep the whole budget.
  void spun() {
    budget_ns_ = max_ns_;
    probe_gap_ = kMinProbeGap;
    probing_ = false;
  }

  // The poll ran out (or was skipped) and the wait blocked.
  void blocked() {
    if (probing_) {
      probing_ = false;
      probe_gap_ = std::min(probe_gap_ * 2, kMaxProbeGap);
      until_probe_ = probe_gap_;
      return;
    }
    if (budget_ns_ < kMinSpinNs) return;  // blocked at once, as chosen
    budget_ns_ /= 2;
    if (budget_ns_ < kMinSpinNs) {
      budget_ns_ = 0;
      until_probe_ = probe_gap_;
    }
  }

  int64_t budget_ns() const { return budget_ns_; }
  int64_t max_ns() const { return max_ns_; }
  uint32_t probe_gap() const { return probe_gap_; }

 private:
  int64_t max_ns_;
  int64_t budget_ns_;
  uint32_t probe_gap_ = kMinProbeGap;
  uint32_t until_probe_ = 0;
  bool probing_ = false;
};

}  // namespace shmpool::ipc
