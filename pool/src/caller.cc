#include "pool/src/caller.h"

#include "ipc/checkout_queue.h"
#include "ipc/slot_table.h"
#include "pool/src/stale_segment.h"

namespace shmpool::detail {

int64_t Caller::session_now() const { return clock ? clock() : ipc::monotonic_ns(); }

Error Caller::with_context(Error e, std::string_view session_id, int slot, pid_t pid) const {
  e.with("pool_name", pool_name);
  if (!session_id.empty()) e.with("session_id", std::string(session_id));
  if (slot >= 0) e.with("slot", std::to_string(slot));
  if (pid > 0) e.with("worker_pid", std::to_string(pid));
  return e;
}

Error Caller::count(Error e) {
  seg->header().errors_by_category[int(e.category)].fetch_add(1, std::memory_order_relaxed);
  if (on_event && e.category == Category::timeout_error) emit(timeout_event(e));
  return e;
}

void Caller::record_session(std::string_view id, int32_t slot, bool failed) {
  if (id.empty()) return;
  bool created = false;
  if (sessions.record(id, session_now(), slot, failed, &created) == ipc::Errc::ring_full) {
    seg->header().session_table_full.fetch_add(1, std::memory_order_relaxed);
  }
  if (created) {
    emit({PoolEvent::Kind::session_created, ipc::monotonic_ns(), slot, 0, std::string(id), {}});
  }
}

void Caller::emit(PoolEvent e) const {
  if (!on_event) return;
  try {
    on_event(e);
  } catch (...) {  // the host's callback must not break the pool
  }
}

bool Caller::try_slot(uint32_t i, uint64_t owner, Checkout* co) {
  if (!ipc::try_checkout(*seg, i, owner, &co->word)) return false;
  if (seg->slot(i).worker_alive.load(std::memory_order_acquire) != 0) {
    co->slot = i;
    return true;
  }
  ipc::release_as(*seg, i, co->word, ipc::SlotState::dead);
  return false;
}

bool Caller::scan(uint64_t owner, Checkout* co) {
  // This thread's last slot first: with few callers the same workers stay
  // hot (still polling) while the others go to sleep, which matters on few
  // cores. Then the others, from a rotating start (spreads threads).
  thread_local uint32_t last_slot = 0, rotation = 0;
  const uint32_t n = seg->slot_count();
  if (try_slot(last_slot % n, owner, co)) return true;
  const uint32_t start = rotation++;
  for (uint32_t k = 1; k <= n; ++k) {
    if (try_slot((start + k) % n, owner, co)) {
      last_slot = co->slot;
      return true;
    }
  }
  return false;
}

bool Caller::any_idle() const {
  for (uint32_t i = 0; i < seg->slot_count(); ++i) {
    if (state_of(i) == ipc::SlotState::idle) return true;
  }
  return false;
}

Expected<Caller::Checkout> Caller::checkout(std::string_view session_id, bool affinity,
                                            int64_t deadline, std::chrono::milliseconds timeout) {
  const uint64_t owner = uint64_t(uint32_t(self_pid)) << 32 |
                         (token_base + next_token_.fetch_add(1, std::memory_order_relaxed));
  ipc::CheckoutQueue& q = seg->header().queue;
  Checkout co;
  if (ipc::may_barge(q)) {
    if (affinity && !session_id.empty()) {
      const int32_t last = sessions.last_slot(session_id);
      if (last >= 0 && uint32_t(last) < seg->slot_count() && try_slot(uint32_t(last), owner, &co))
        return co;
    }
    if (scan(owner, &co)) return co;
  }
  co.waited = true;
  on_checkout_wait();
  // kNoTicket: the queue is full; this caller waits outside it, unfairly.
  const uint64_t ticket = ipc::take_ticket(q, self_pid);
  // The owner's demand signal and status().queue_length. Release: whoever
  // sees the count (acquire) also sees our ticket taken.
  seg->header().waiting.fetch_add(1, std::memory_order_release);
  // However this returns: out of the queue (passing the turn if it is ours).
  struct Exit {
    Caller* c;
    uint64_t ticket;
    bool hungry = false;
    ~Exit() {
      ipc::CheckoutQueue& q = c->seg->header().queue;
      if (hungry) q.hungry.store(0, std::memory_order_relaxed);
      if (ticket != ipc::kNoTicket) ipc::leave(q, ticket);
      c->seg->header().waiting.fetch_sub(1, std::memory_order_relaxed);
    }
  } exit{this, ticket};
  int64_t turn_since = 0;               // when this caller got the turn
  thread_local ipc::SpinBudget budget;  // this thread's checkout waits (spin_budget.h)
  const ipc::WaitPolicy wait = ipc::with_budget(checkout_policy, budget);
  for (;;) {
    if (checkout_blocked()) return with_context(checkout_blocked_error(), session_id);
    const bool reached = ticket == ipc::kNoTicket || ipc::turn_reached(q, ticket);
    if (reached && scan(owner, &co)) return co;
    const int64_t now = ipc::monotonic_ns();
    if (now >= deadline) {
      seg->header().checkout_timeouts.fetch_add(1, std::memory_order_relaxed);
      on_checkout_timeout();
      return with_context(
          make_error(Category::timeout_error, "checkout_timeout", "No workers available")
              .with("checkout_timeout_ms", std::to_string(timeout.count())),
          session_id);
    }
    if (!reached) {
      // Sleep on our own entry until the callers before us are served.
      ipc::wait_turn(q, ticket, deadline, wait, [&] { return checkout_blocked(); });
      continue;
    }
    const bool holder = ticket != ipc::kNoTicket && ipc::is_turn(q, ticket);
    if (holder && !exit.hungry) {
      if (turn_since == 0) turn_since = now;
      if (now < turn_since + ipc::kBargeWindowNs) {
        // The barging window: running callers keep the workers busy while
        // we sleep (woken early only by wake_all).
        ipc::wait_until(
            q.entries[ticket % ipc::kQueueEntries].bell, [&] { return checkout_blocked(); },
            std::min(deadline, turn_since + ipc::kBargeWindowNs),
            ipc::WaitPolicy{ipc::WaitStrategy::block, 0});
        continue;
      }
      exit.hungry = true;  // from now on the next free worker is ours
      q.hungry.store(1, std::memory_order_relaxed);
      continue;  // scan once more: a worker may have come free meanwhile
    }
    // Wait for a checkin (slots_changed).
    ipc::wait_until(
        seg->header().slots_changed, [&] { return any_idle() || checkout_blocked(); }, deadline,
        wait);
  }
}

Status Caller::end_session(std::string_view id) {
  if (!sessions.remove(id)) {
    return with_context(make_error(Category::config_error, "unknown_session", "no such session"),
                        id);
  }
  emit({PoolEvent::Kind::session_ended, ipc::monotonic_ns(), -1, 0, std::string(id), {}});
  return {};
}

std::optional<SessionInfo> Caller::session(std::string_view id) const {
  ipc::SessionSnapshot snap;
  if (!ipc::valid_session_id(id) || !sessions.find(id, &snap)) return std::nullopt;
  return session_info(snap);
}

std::vector<SessionInfo> Caller::list_sessions() const {
  std::vector<SessionInfo> out;
  for (auto& s : sessions.list()) out.push_back(session_info(s));
  return out;
}

}  // namespace shmpool::detail
