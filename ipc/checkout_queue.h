// checkout_queue.h: the queue of callers waiting for a worker, in the
// segment, shared by every process that calls the pool. It makes waiting
// fair: callers are served in ticket order, so none starves however many
// others keep calling.
//
// Protocol. A caller that finds no idle worker takes a ticket
// (take_ticket) and waits for its turn (wait_turn). Of the waiting callers
// only the turn's holder scans the slot table; when it has a worker, or
// gives up, it passes the turn on (pass_turn / leave). Only the turn's
// holder waits on slots_changed, so a checkin wakes one caller, not all.
// Callers that are not waiting may take a free worker before the turn's
// holder for kBargeWindowNs after it got the turn (may_barge); then it sets
// `hungry` and the next free worker is its.
//
// Entries: ticket t uses entries[t % kQueueEntries]. At most kQueueEntries
// tickets are out at once; take_ticket() refuses more (the caller then waits
// outside the queue, unfairly, as all did before the queue existed).
//
// Memory ordering and races (seq_cst on `serving` and entry words):
// - pass_turn moves `serving` only by CAS from an exact value, so a turn is
//   passed once however many processes try (the holder, a leaver, the owner).
// - A leaver stores "abandoned" in its entry, then reads `serving`; a passer
//   moves `serving` to t, then reads entry t. One of them sees the other:
//   either the passer skips the abandoned ticket, or the leaver passes its
//   own turn. Both may try; the CAS lets one win.
// - A ticket's holder writes its entry after taking the ticket. A passer
//   that finds the entry not yet written just rings it: the holder checks
//   `serving` after writing its entry, before it waits.
//
// Crashes. A holder that dies without passing its turn would stall the
// queue: the owner's supervisor calls skip_dead_turn() every pass, which
// passes a turn whose holder's process is gone (or whose entry was never
// written, seen twice in a row).
//
// Field table (writer / reader / order):
// clang-format off
// | next       | takers (CAS +1)                        | all              | seq_cst |
// | serving    | turn holders, leavers, owner (CAS +1)  | all              | seq_cst |
// | hungry     | the turn's holder (1 after its window, 0 when served or leaving) | arriving callers | relaxed (a hint) |
// | entry.word | the ticket's holder                    | passers, owner   | seq_cst: (t + 1) << 1 | abandoned |
// | entry.pid  | the ticket's holder, before entry.word | owner            | relaxed (ordered by word) |
// | entry.bell | see Doorbell: passers ring, the holder waits |            |         |
// clang-format on
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>

#include "ipc/wait.h"

namespace shmpool::ipc {

inline constexpr uint32_t kQueueEntries = 256;
inline constexpr uint64_t kNoTicket = UINT64_MAX;

struct QueueEntry {
  alignas(kCacheLine) std::atomic<uint64_t> word{0};  // (ticket + 1) << 1 | abandoned
  std::atomic<int32_t> pid{0};
  Doorbell bell;
};
static_assert(sizeof(QueueEntry) == kCacheLine);

// Callers waiting for a worker, counted per process: the count is derived
// (waiting_callers() sums the processes' counts), so it is exact again as
// soon as the owner's supervisor drops the count of a process that died
// while its threads waited (forget_dead_waiters). A process that finds no
// free entry counts in `unattributed`, which nothing reconciles.
// Field table (writer / reader / order):
// clang-format off
// | pid          | a process claiming its entry (CAS 0 -> pid); the owner freeing a dead one's (CAS pid -> 0) | claimants, owner | acq_rel CAS / acquire |
// | count        | the entry's process: +1 (release) entering a checkout wait, -1 (relaxed) leaving; the owner: 0 once the process is gone | owner (demand), status | acquire: sees the waiter's ticket taken |
// | unattributed | as count, for processes without an entry | as count | as count |
// | completions  | workers ring it (a reply to a request naming the entry) | the entry's process sleeps on it (async calls) | see Doorbell |
// clang-format on
inline constexpr uint32_t kWaiterProcesses = 128;
struct WaiterCount {
  std::atomic<int32_t> pid{0};
  std::atomic<uint32_t> count{0};
  // The process's completion bell: a worker rings it after each reply to a
  // request whose `notify` names this entry (async calls, stream items).
  Doorbell completions;
};
struct WaiterCounts {
  WaiterCount by_process[kWaiterProcesses];
  std::atomic<uint32_t> unattributed{0};
};

// Lives in the segment header. Zeroed memory is an empty queue.
struct CheckoutQueue {
  alignas(kCacheLine) std::atomic<uint64_t> next{0};
  alignas(kCacheLine) std::atomic<uint64_t> serving{0};
  // Set by the turn's holder once its barging window is over: from then on
  // nobody checks out past it (see may_barge).
  std::atomic<uint32_t> hungry{0};
  QueueEntry entries[kQueueEntries];
  alignas(kCacheLine) WaiterCounts waiters;
};

// How long the turn's holder lets callers that arrive (or come back) after
// it take a free worker first. Strict FIFO hands every worker over through
// a futex wake-up, at the cost of a context switch per call when callers
// outnumber cores; within this window the workers stay with callers that
// are running, and a waiting caller still waits at most about
// (its place in the queue) x (window + one hand-over).
inline constexpr int64_t kBargeWindowNs = 100'000;

// True when a caller may check out without a ticket: nobody waits, or the
// turn's holder is still in its barging window.
inline bool may_barge(const CheckoutQueue& q) {
  return q.next.load(std::memory_order_seq_cst) == q.serving.load(std::memory_order_seq_cst) ||
         q.hungry.load(std::memory_order_relaxed) == 0;
}

// Takes the next ticket for process `pid`; kNoTicket if kQueueEntries are out.
uint64_t take_ticket(CheckoutQueue& q, pid_t pid);

inline bool is_turn(const CheckoutQueue& q, uint64_t ticket) {
  return q.serving.load(std::memory_order_seq_cst) == ticket;
}

// True once `ticket`'s turn has come: it holds the turn (serving == ticket)
// or was skipped (serving > ticket, see skip_dead_turn), and may scan.
inline bool turn_reached(const CheckoutQueue& q, uint64_t ticket) {
  return int64_t(q.serving.load(std::memory_order_seq_cst) - ticket) >= 0;
}

// Waits until `ticket`'s turn is reached, `stop()` is true, or the deadline.
template <class Stop>
WaitResult wait_turn(CheckoutQueue& q, uint64_t ticket, int64_t deadline_ns,
                     const WaitPolicy& policy, Stop&& stop) {
  return wait_until(
      q.entries[ticket % kQueueEntries].bell, [&] { return turn_reached(q, ticket) || stop(); },
      deadline_ns, policy);
}

// The holder of the turn `ticket` is done: the next live ticket's turn.
void pass_turn(CheckoutQueue& q, uint64_t ticket);

// Gives up `ticket` (served elsewhere, timed out, shutting down), whether or
// not it is its turn.
void leave(CheckoutQueue& q, uint64_t ticket);

// Wakes every waiting caller, so each re-checks why it waits (the pool is
// closing, its owner died, workers cannot start).
inline void wake_all(CheckoutQueue& q) {
  for (QueueEntry& e : q.entries) e.bell.ring();
}

// Process `pid`'s waiter count (claimed on first use; the same entry for
// every caller in the process); null when all entries are taken.
WaiterCount* claim_waiter_count(CheckoutQueue& q, pid_t pid);
// A caller of the process owning `mine` (null: unattributed) starts / stops
// waiting for a worker.
inline void add_waiting(CheckoutQueue& q, WaiterCount* mine) {
  (mine ? mine->count : q.waiters.unattributed).fetch_add(1, std::memory_order_release);
}
inline void remove_waiting(CheckoutQueue& q, WaiterCount* mine) {
  (mine ? mine->count : q.waiters.unattributed).fetch_sub(1, std::memory_order_relaxed);
}
// Callers waiting for a worker now, in every process.
uint32_t waiting_callers(const CheckoutQueue& q);
// Owner, periodically: the entries of processes that are gone (`alive(pid)`
// false) drop their count and are freed. Returns the waiters dropped.
template <class Alive>
uint32_t forget_dead_waiters(CheckoutQueue& q, Alive&& alive) {
  uint32_t dropped = 0;
  for (WaiterCount& w : q.waiters.by_process) {
    int32_t pid = w.pid.load(std::memory_order_acquire);
    if (pid == 0 || alive(pid)) continue;
    // Nobody else writes a dead process's count.
    dropped += w.count.exchange(0, std::memory_order_relaxed);
    w.pid.compare_exchange_strong(pid, 0, std::memory_order_acq_rel);
  }
  return dropped;
}

// Owner, periodically: passes the current turn if its holder's process is
// gone (`alive(pid)` false), or if its entry was still unwritten at the
// previous call (`*stalled` carries that ticket from call to call; start
// with kNoTicket). Returns true if it passed a turn. A live holder skipped
// that way (descheduled between taking its ticket and writing its entry)
// still finds its turn reached, and scans without holding the turn.
template <class Alive>
bool skip_dead_turn(CheckoutQueue& q, Alive&& alive, uint64_t* stalled) {
  const uint64_t t = q.serving.load(std::memory_order_seq_cst);
  if (t == q.next.load(std::memory_order_seq_cst)) {
    *stalled = kNoTicket;
    return false;
  }
  QueueEntry& e = q.entries[t % kQueueEntries];
  const uint64_t w = e.word.load(std::memory_order_seq_cst);
  if (w >> 1 != t + 1) {  // not written yet (or a stale ticket's)
    if (*stalled != t) {
      *stalled = t;
      return false;
    }
  } else if ((w & 1) == 0 && alive(e.pid.load(std::memory_order_relaxed))) {
    *stalled = kNoTicket;
    return false;
  }
  *stalled = kNoTicket;
  pass_turn(q, t);
  return true;
}

}  // namespace shmpool::ipc
