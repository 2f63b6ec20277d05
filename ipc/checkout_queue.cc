#include "ipc/checkout_queue.h"

namespace shmpool::ipc {

uint64_t take_ticket(CheckoutQueue& q, pid_t pid) {
  uint64_t t;
  for (;;) {
    // serving first: it never passes next, so t >= s.
    const uint64_t s = q.serving.load(std::memory_order_seq_cst);
    t = q.next.load(std::memory_order_seq_cst);
    if (t - s >= kQueueEntries) return kNoTicket;
    if (q.next.compare_exchange_weak(t, t + 1, std::memory_order_seq_cst)) break;
  }
  QueueEntry& e = q.entries[t % kQueueEntries];
  e.pid.store(pid, std::memory_order_relaxed);  // ordered by the word's store
  e.word.store((t + 1) << 1, std::memory_order_seq_cst);
  return t;
}

void pass_turn(CheckoutQueue& q, uint64_t ticket) {
  uint64_t cur = ticket;
  for (;;) {
    // Only from the exact value: a turn is passed once.
    if (!q.serving.compare_exchange_strong(cur, cur + 1, std::memory_order_seq_cst)) return;
    ++cur;
    if (cur == q.next.load(std::memory_order_seq_cst)) return;  // nobody waits
    QueueEntry& e = q.entries[cur % kQueueEntries];
    if (e.word.load(std::memory_order_seq_cst) == (((cur + 1) << 1) | 1)) continue;  // left: skip
    e.bell.ring();  // the next holder (if its entry is not written yet, it sees serving itself)
    return;
  }
}

void leave(CheckoutQueue& q, uint64_t ticket) {
  q.entries[ticket % kQueueEntries].word.store(((ticket + 1) << 1) | 1, std::memory_order_seq_cst);
  // If the turn is ours (or came to us meanwhile), nobody else will pass it.
  if (q.serving.load(std::memory_order_seq_cst) == ticket) pass_turn(q, ticket);
}

WaiterCount* claim_waiter_count(CheckoutQueue& q, pid_t pid) {
  for (WaiterCount& w : q.waiters.by_process) {
    if (w.pid.load(std::memory_order_acquire) == pid) return &w;
  }
  for (WaiterCount& w : q.waiters.by_process) {
    int32_t free = 0;
    if (w.pid.compare_exchange_strong(free, pid, std::memory_order_acq_rel)) return &w;
    if (free == pid) return &w;  // another thread of ours claimed it meanwhile
  }
  return nullptr;
}

uint32_t waiting_callers(const CheckoutQueue& q) {
  uint32_t n = q.waiters.unattributed.load(std::memory_order_acquire);
  for (const WaiterCount& w : q.waiters.by_process) n += w.count.load(std::memory_order_acquire);
  return n;
}

}  // namespace shmpool::ipc
