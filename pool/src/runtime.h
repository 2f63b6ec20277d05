// runtime.h: the owner's per-pool runtime at the bottom of pool/src: the
// per-slot record, the supervisor's event type and the clock helpers. The
// supervisor, its periodic passes and the call path depend on this file,
// never on each other (call path -> supervisor -> passes -> call path would
// close a circle).
#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "pool/src/shm_channel.h"
#include "pool/src/worker_process.h"
#include "shmpool/error.h"
#include "shmpool/pool.h"

namespace shmpool::detail {

inline int64_t ms_to_ns(std::chrono::milliseconds ms) { return int64_t(ms.count()) * 1'000'000; }

// Log2 histogram of call latencies (ns): lock-free, approximate percentiles.
struct LatencyHistogram {
  std::atomic<uint64_t> buckets[64] = {};
  void add(int64_t ns) {
    buckets[std::bit_width(uint64_t(std::max<int64_t>(ns, 1))) - 1].fetch_add(
        1, std::memory_order_relaxed);
  }
  double percentile_us(double p) const {
    uint64_t counts[64], total = 0;
    for (int i = 0; i < 64; ++i) total += counts[i] = buckets[i].load(std::memory_order_relaxed);
    if (total == 0) return 0;
    const uint64_t want = uint64_t(p * double(total));
    uint64_t seen = 0;
    for (int i = 0; i < 64; ++i) {
      seen += counts[i];
      if (seen > want) return double(uint64_t(1) << i) * 1.5 / 1000.0;  // bucket middle
    }
    return 0;
  }
};

// What the supervisor's thread is told, in order, by starters, exit
// callbacks and callers.
struct SupervisorEvent {
  enum class Kind { exited, started, start_failed, demand, recycle };
  Kind kind;
  uint32_t slot = 0;
  std::optional<Error> error = {};  // start_failed: why
  std::string exit = {};            // exited: how ("killed by SIGKILL", ...)
  pid_t pid = 0;                    // exited: which worker
};

// The owner's record of one slot, beside the slot's shared SlotData.
struct SlotRuntime {
  // Guarded by `mu`: written by the slot's starter while the slot is
  // starting (no caller holds it), read by anyone who must signal the worker
  // (the supervisor, a caller whose call failed). A caller that holds the
  // slot checked out needs no lock: the checkout CAS acquired the starter's
  // release of "idle".
  std::mutex mu;
  std::shared_ptr<WorkerProcess> proc;

  // Supervisor thread only (the starter thread it launched writes nothing here).
  uint32_t consecutive_failures = 0;
  int64_t restart_at = 0;     // 0: no restart scheduled
  bool retiring = false;      // the supervisor asked the worker to go
  bool recycle = false;       // ... to be replaced (recycling), not to stay empty
  bool starting = false;      // a starter thread owns the slot
  uint64_t orphan_word = 0;   // busy word last seen held by a dead process
  bool ever_started = false;  // a worker has been ready in this slot before
  int64_t started_ns = 0;
  uint64_t checkouts_at_start = 0;
  // An exit handled before its worker's `started` event (the starter made
  // the slot idle, the worker served, was retired and exited before the
  // starter posted `started`): handled once `started` is.
  std::optional<SupervisorEvent> deferred_exit;

  // Written by the supervisor, read by status() (relaxed: a statistic).
  std::atomic<uint64_t> recycled{0};
  // Health-check pings the current worker answered: written by the health
  // checker while it holds the slot, zeroed by the starter; read by a
  // caller holding the slot (recycling by calls counts user calls only),
  // published by the checkin / idle transitions.
  std::atomic<uint64_t> health_pings{0};
  // Set by the exit callback (child-watch thread), cleared when the
  // supervisor handles the exit event: until then the slot is not
  // relaunched, so no exit goes unhandled. Relaxed: the slot's state word
  // (set_state's CAS) publishes it.
  std::atomic<bool> exit_pending{false};

  // The worker process, if any (under mu).
  std::shared_ptr<WorkerProcess> process() {
    std::lock_guard lock(mu);
    return proc;
  }
  // Signals the worker if it still runs.
  void signal(int sig) {
    if (auto p = process(); p && !p->exited()) p->kill(sig);
  }
};

// Sends `e` to `on_event`, swallowing its exceptions (the host's callback
// must not break the pool).
inline void emit_event(const EventCallback& on_event, const PoolEvent& e) {
  if (!on_event) return;
  try {
    on_event(e);
  } catch (...) {
  }
}

}  // namespace shmpool::detail
