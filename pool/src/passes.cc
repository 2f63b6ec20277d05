#include "pool/src/passes.h"

#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "ipc/checkout_queue.h"
#include "ipc/slot_table.h"
#include "ipc/sys.h"

namespace shmpool::detail {

void retire(SlotRuntime& rt, bool recycle) {
  rt.retiring = true;
  rt.recycle = recycle;
  if (auto proc = rt.process()) proc->kill(SIGTERM);
}

uint32_t live_workers(const ipc::Segment& seg, uint32_t from, uint32_t to, bool idle_only) {
  uint32_t n = 0;
  for (uint32_t i = from; i < to; ++i) {
    const auto s = state_of(seg, i);
    n += s == ipc::SlotState::starting || s == ipc::SlotState::idle ||
         (!idle_only && s == ipc::SlotState::busy);
  }
  return n;
}

uint32_t reclaim_orphans(const PassContext& p) {
  const uint32_t self = uint32_t(p.self_pid) & ipc::kMaxHolderPid;
  uint32_t reclaimed = 0;
  for (uint32_t i = 0; i < p.slots.size(); ++i) {
    SlotRuntime& rt = *p.slots[i];
    const uint64_t w = p.seg.slot(i).state.load(std::memory_order_acquire);
    const auto state = ipc::slot_state(w);
    if (!ipc::valid_slot_state(state)) {
      // Nothing of ours writes this: the worker scribbled on its slot.
      if (p.table().release_as(i, w, ipc::SlotState::dead)) rt.signal(SIGKILL);
      continue;
    }
    if (state == ipc::SlotState::dead && !rt.starting && !rt.retiring) {
      auto proc = rt.process();
      if (proc && !proc->exited()) {
        proc->kill(SIGKILL);  // its exit restarts the slot
      } else if (i >= p.cfg.size && rt.restart_at == 0 &&
                 !rt.exit_pending.load(std::memory_order_relaxed)) {
        // An overflow slot its caller released dead after the exit was
        // handled (the exit found it busy): empty, as the exit would have left it.
        p.table().set_state(i, ipc::state_bit(ipc::SlotState::dead), ipc::SlotState::empty);
      }
      continue;
    }
    // Holder 0 is the health check, on the supervisor's own thread.
    const uint32_t holder = ipc::slot_holder_pid(w);
    const bool orphan = state == ipc::SlotState::busy && holder != self && holder != 0 &&
                        !ipc::process_exists(pid_t(holder));
    if (!orphan || rt.orphan_word != w) {
      rt.orphan_word = orphan ? w : 0;
      continue;
    }
    rt.orphan_word = 0;
    if (!p.table().release_as(i, w, ipc::SlotState::dead)) continue;
    ++reclaimed;
    emit_event(p.on_event, {PoolEvent::Kind::client_slot_reclaimed,
                            ipc::monotonic_ns(),
                            int32_t(i),
                            p.seg.slot(i).worker_pid.load(std::memory_order_relaxed),
                            {},
                            std::to_string(holder)});
    rt.signal(SIGKILL);  // it may be mid-call for nobody; its exit restarts the slot
  }
  return reclaimed;
}

uint32_t retire_idle_overflow(const PassContext& p, int64_t now) {
  uint32_t retired = 0;
  for (uint32_t i = p.cfg.size; i < p.slots.size(); ++i) {
    // Idle since its last call, or since it started: a relaunched worker
    // does not inherit the slot's old activity.
    const ipc::SlotData& sd = p.seg.slot(i);
    const int64_t last = std::max(int64_t(sd.last_activity_ns.load(std::memory_order_relaxed)),
                                  sd.started_ns.load(std::memory_order_relaxed));
    if (state_of(p.seg, i) == ipc::SlotState::idle && last != 0 &&
        now - last >= ms_to_ns(p.cfg.overflow_idle_timeout) &&
        p.table().set_state(i, ipc::state_bit(ipc::SlotState::idle), ipc::SlotState::retiring)) {
      retire(*p.slots[i], /*recycle=*/false);
      ++retired;
    }
  }
  return retired;
}

uint64_t resident_bytes(pid_t pid) {
  if (pid <= 0) return 0;
  FILE* f = std::fopen(("/proc/" + std::to_string(pid) + "/statm").c_str(), "r");
  if (!f) return 0;
  unsigned long size = 0, resident = 0;
  const int n = std::fscanf(f, "%lu %lu", &size, &resident);
  std::fclose(f);
  return n == 2 ? uint64_t(resident) * uint64_t(::sysconf(_SC_PAGESIZE)) : 0;
}

uint32_t recycle_by_rss(const PassContext& p, const std::function<uint64_t(pid_t)>& rss) {
  uint32_t recycled = 0;
  for (uint32_t i = 0; i < p.slots.size(); ++i) {
    if (state_of(p.seg, i) != ipc::SlotState::idle) continue;
    const pid_t pid = p.seg.slot(i).worker_pid.load(std::memory_order_relaxed);
    if (rss(pid) > p.cfg.max_worker_rss_bytes &&
        p.table().set_state(i, ipc::state_bit(ipc::SlotState::idle), ipc::SlotState::retiring)) {
      retire(*p.slots[i], /*recycle=*/true);
      ++recycled;
    }
  }
  return recycled;
}

std::vector<uint32_t> slots_for_demand(const PassContext& p) {
  std::vector<uint32_t> out;
  const uint32_t n = uint32_t(p.slots.size());
  const uint32_t waiting = ipc::waiting_callers(p.seg.header().queue);
  uint32_t available = live_workers(p.seg, 0, n, /*idle_only=*/true);
  for (uint32_t i = 0; i < n && available < waiting; ++i) {
    const auto s = state_of(p.seg, i);
    const SlotRuntime& rt = *p.slots[i];
    if ((s == ipc::SlotState::empty || (s == ipc::SlotState::dead && rt.restart_at == 0)) &&
        !rt.starting) {
      out.push_back(i);
      ++available;
    }
  }
  return out;
}

uint32_t health_check(const PassContext& p, const std::function<ShmChannel&(uint32_t)>& channel) {
  uint32_t killed = 0;
  ipc::CheckoutQueue& q = p.seg.header().queue;
  for (uint32_t i = 0; i < p.slots.size(); ++i) {
    if (ipc::waiting_callers(q) != 0 || !ipc::may_barge(q)) break;  // callers first
    uint64_t word;
    if (!p.table().try_checkout(i, 0, &word)) continue;
    if (p.seg.slot(i).worker_alive.load(std::memory_order_acquire) == 0) {
      p.table().release_as(i, word, ipc::SlotState::dead);  // gone: the exit restarts it
      continue;
    }
    ShmChannel& ch = channel(i);
    CallSpec spec;
    spec.id = ch.next_request_id();
    spec.command = "ping";
    spec.deadline_ns =
        ipc::monotonic_ns() + std::min<int64_t>(ms_to_ns(p.cfg.operation_timeout), 5'000'000'000);
    if (ch.call(spec).ok()) {
      std::atomic<uint64_t>& pings = p.slots[i]->health_pings;
      pings.store(pings.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
      p.table().checkin(i, word);
      continue;
    }
    p.table().release_as(i, word, ipc::SlotState::dead);
    p.slots[i]->signal(SIGKILL);
    ++killed;
  }
  return killed;
}

uint32_t expire_sessions(ipc::SessionTable& sessions, int64_t now, std::chrono::milliseconds ttl,
                         const EventCallback& on_event) {
  std::vector<std::string> expired;
  const uint32_t n = sessions.expire(now, ms_to_ns(ttl), on_event ? &expired : nullptr);
  for (auto& id : expired) {
    emit_event(on_event,
               {PoolEvent::Kind::session_expired, ipc::monotonic_ns(), -1, 0, std::move(id), {}});
  }
  return n;
}

bool due_for_recycling(const PoolConfig& cfg, const ipc::SlotData& sd, uint64_t health_pings,
                       int64_t now) {
  if (cfg.max_calls_per_worker > 0 &&
      sd.calls.load(std::memory_order_relaxed) >= cfg.max_calls_per_worker + 1 + health_pings) {
    return true;  // + 1: the hello counts as a frame
  }
  return cfg.max_worker_age.count() > 0 &&
         now - sd.started_ns.load(std::memory_order_relaxed) >= ms_to_ns(cfg.max_worker_age);
}

}  // namespace shmpool::detail
