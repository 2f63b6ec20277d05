#include "pool/src/supervisor.h"

#include <signal.h>

#include <algorithm>

#include "ipc/checkout_queue.h"
#include "ipc/slot_table.h"
#include "pool/src/worker_setup.h"

namespace shmpool::detail {

Supervisor::Supervisor(const PoolConfig& cfg, std::shared_ptr<ipc::Segment> seg,
                       std::shared_ptr<ArenaHandle> arena, ipc::SessionTable sessions,
                       ipc::WaitPolicy policy)
    : cfg_(cfg),
      seg_(std::move(seg)),
      table_(*seg_),
      arena_(std::move(arena)),
      sessions_(sessions),
      policy_(policy),
      stalled_ticket_(ipc::kNoTicket) {
  for (uint32_t i = 0; i < seg_->slot_count(); ++i) {
    slots_.push_back(std::make_unique<SlotRuntime>());
    health_channels_.push_back(nullptr);
  }
  const int64_t now = ipc::monotonic_ns();
  next_cleanup_ = now + ms_to_ns(cfg_.session_cleanup_interval);
}

Supervisor::~Supervisor() { stop(); }

void Supervisor::post(SupervisorEvent ev) {
  {
    std::lock_guard lock(mu_);
    events_.push_back(std::move(ev));
  }
  cv_.notify_all();
}

void Supervisor::set_closing() {
  closing_.store(true, std::memory_order_release);  // pairs with the channels' abandon check
  // A health-check ping waiting on a worker ends now.
  for (uint32_t i = 0; i < slot_count(); ++i) seg_->slot(i).response.data.ring();
}

bool Supervisor::failing_fast() const {
  return failing_fast_.load(std::memory_order_relaxed) && live_workers(*seg_, 0, slot_count()) == 0;
}

Error Supervisor::startup_error() const {
  std::lock_guard lock(mu_);
  return startup_error_
             ? *startup_error_
             : make_error(Category::worker_error, "startup_failed", "workers cannot start");
}

// ---- starting workers ----

bool Supervisor::launch(uint32_t i) {
  SlotRuntime& rt = *slots_[i];
  if (auto proc = rt.process(); proc && !proc->exited()) return false;
  if (!table_.set_state(
          i, ipc::state_bit(ipc::SlotState::empty) | ipc::state_bit(ipc::SlotState::dead),
          ipc::SlotState::starting)) {
    return false;
  }
  // The CAS acquired the exit callback's "dead": an exit whose event the
  // supervisor has not handled yet keeps the slot down until it has.
  if (rt.exit_pending.load(std::memory_order_relaxed)) {
    table_.set_state(i, ipc::state_bit(ipc::SlotState::starting), ipc::SlotState::dead);
    return false;
  }
  rt.starting = true;
  rt.restart_at = 0;
  rt.started_ns = ipc::monotonic_ns();
  rt.checkouts_at_start = seg_->slot(i).checkouts.load(std::memory_order_relaxed);
  starters_.emplace_back(i, std::thread([this, i] { run_starter(i); }));
  return true;
}

void Supervisor::run_starter(uint32_t i) {
  SlotRuntime& rt = *slots_[i];
  ipc::SlotData& sd = seg_->slot(i);
  // No process uses the rings now: forget old frames, new epoch.
  seg_->request_ring(i).reset();
  seg_->response_ring(i).reset();
  sd.calls.store(0, std::memory_order_relaxed);  // calls served by this worker
  for (auto& c : sd.cancel) c.store(0, std::memory_order_relaxed);  // no call of the new worker is
  sd.items_taken.store(0, std::memory_order_relaxed);                // cancelled yet (published by
  sd.bytes_taken.store(0, std::memory_order_relaxed);                // worker_alive's release)
  sd.started_ns.store(ipc::monotonic_ns(), std::memory_order_relaxed);
  rt.health_pings.store(0, std::memory_order_relaxed);
  sd.exit_code.store(-1, std::memory_order_relaxed);
  sd.exit_signal.store(0, std::memory_order_relaxed);
  sd.worker_alive.store(1, std::memory_order_release);  // pairs with ShmChannel's acquire
  SpawnSpec spec;
  spec.python = cfg_.python;
  spec.python_path = cfg_.python_path;
  spec.env = worker_env(cfg_.env, cfg_.worker_malloc_threshold);
  spec.log = cfg_.log;
  spec.slot = int(i);
  spec.args = shm_worker_args(cfg_.name, i, cfg_.wait, cfg_.spin, cfg_.handler_modules);
  spec.on_exit = [this, i](const ExitInfo& info) { on_worker_exit(i, info); };
  auto spawned = WorkerProcess::spawn(std::move(spec));
  auto failed = [&](Error e) {
    table_.set_state(i, ipc::kAnySlotState, ipc::SlotState::dead);
    post({SupervisorEvent::Kind::start_failed, i,
          std::move(e.with("pool_name", cfg_.name).with("slot", std::to_string(i)))});
  };
  if (!spawned.ok()) return failed(spawned.error());
  std::shared_ptr<WorkerProcess> proc = std::move(spawned.value());
  ShmChannel channel(seg_.get(), i, policy_, arena_);
  auto hello = channel.await_hello(ipc::monotonic_ns() + ms_to_ns(cfg_.startup_timeout));
  if (!hello.ok()) {
    Error e = detail::startup_error(hello.error(), *proc, cfg_.startup_timeout);
    {
      std::lock_guard lock(rt.mu);
      rt.proc = std::move(proc);  // reaped; kept for its exit status until the next start
    }
    return failed(std::move(e));
  }
  sd.worker_pid.store(proc->pid(), std::memory_order_relaxed);
  {
    std::lock_guard lock(rt.mu);
    rt.proc = std::move(proc);
  }
  // release: a caller that checks the slot out sees the worker ready and the rings reset.
  table_.set_state(i, ipc::state_bit(ipc::SlotState::starting), ipc::SlotState::idle);
  post({SupervisorEvent::Kind::started, i, std::nullopt});
}

void Supervisor::on_worker_exit(uint32_t i, const ExitInfo& info) {
  slots_[i]->exit_pending.store(true, std::memory_order_relaxed);  // published by set_state
  const pid_t pid = seg_->slot(i).worker_pid.load(std::memory_order_relaxed);
  // Counted here, before the caller can see the death: an unexpected exit of
  // a worker that had started (not retiring, not shutting down).
  const auto before = state_of(*seg_, i);
  if (!closing() && before != ipc::SlotState::retiring && before != ipc::SlotState::starting) {
    seg_->slot(i).restarts.fetch_add(1, std::memory_order_relaxed);
  }
  // How it exited, for any process's caller (published by worker_alive = 0).
  seg_->slot(i).exit_code.store(info.exit_code, std::memory_order_relaxed);
  seg_->slot(i).exit_signal.store(info.signal, std::memory_order_relaxed);
  mark_worker_gone(*seg_, i);
  // A busy slot stays busy: its caller sees worker_alive == 0, fails its
  // call and marks the slot dead itself. Relaunching under it would let the
  // new worker's frames reach that caller.
  table_.set_state(i,
                   ipc::state_bit(ipc::SlotState::starting) | ipc::state_bit(ipc::SlotState::idle) |
                       ipc::state_bit(ipc::SlotState::retiring),
                   ipc::SlotState::dead);
  post({SupervisorEvent::Kind::exited, i, std::nullopt, info.describe(), pid});
}

void Supervisor::join_starter(uint32_t i) {
  for (auto it = starters_.begin(); it != starters_.end(); ++it) {
    if (it->first == i) {
      it->second.join();
      starters_.erase(it);
      return;
    }
  }
}

int64_t Supervisor::backoff_ns(uint32_t failures) {
  return std::min<int64_t>(int64_t(50'000'000) << std::min<uint32_t>(failures, 7), 5'000'000'000);
}

// ---- events ----

void Supervisor::handle(const SupervisorEvent& ev) {
  using Kind = SupervisorEvent::Kind;
  switch (ev.kind) {
    case Kind::started:
      join_starter(ev.slot);
      return on_started(ev.slot);
    case Kind::start_failed:
      join_starter(ev.slot);
      return on_start_failed(ev);
    case Kind::exited:
      return on_exited(ev);
    case Kind::demand:
      return;  // meet by the pass after the batch
    case Kind::recycle:
      // The caller already moved the slot to retiring.
      return retire(*slots_[ev.slot], /*recycle=*/true);
  }
}

void Supervisor::on_started(uint32_t i) {
  SlotRuntime& rt = *slots_[i];
  emit_event(cfg_.on_event,
             {rt.ever_started ? PoolEvent::Kind::worker_restarted : PoolEvent::Kind::worker_started,
              ipc::monotonic_ns(),
              int32_t(i),
              seg_->slot(i).worker_pid.load(std::memory_order_relaxed),
              {},
              {}});
  rt.ever_started = true;
  rt.starting = false;
  rt.consecutive_failures = 0;
  if (failing_fast_.load(std::memory_order_relaxed)) {
    // A start succeeded: the failure was transient, callers wait again.
    std::lock_guard lock(mu_);
    startup_error_.reset();
    failing_fast_.store(false, std::memory_order_relaxed);
  }
  if (rt.deferred_exit) {  // it already served, and exited
    const SupervisorEvent exit = *std::move(rt.deferred_exit);
    rt.deferred_exit.reset();
    on_exited(exit);
  }
}

void Supervisor::on_start_failed(const SupervisorEvent& ev) {
  SlotRuntime& rt = *slots_[ev.slot];
  emit_event(cfg_.on_event, {PoolEvent::Kind::worker_died,
                             ipc::monotonic_ns(),
                             int32_t(ev.slot),
                             0,
                             {},
                             "failed to start: " + (ev.error ? ev.error->to_string() : "")});
  rt.starting = false;
  rt.deferred_exit.reset();  // the exit was the failed start's
  ++rt.consecutive_failures;
  if (rt.consecutive_failures >= cfg_.max_startup_failures) {
    {
      std::lock_guard lock(mu_);
      if (!startup_error_) startup_error_ = ev.error;
    }
    // Relaxed: callers poll it, and the doorbells rung below wake them.
    failing_fast_.store(true, std::memory_order_relaxed);
    seg_->header().slots_changed.ring();  // waiting callers get the startup error now
    ipc::wake_all(seg_->header().queue);
  }
  // Failing fast lasts until a start succeeds: the slot keeps trying,
  // backing off (up to 5 s), so a transient failure (an import that failed
  // once) does not cripple the pool for its lifetime.
  if (!closing()) rt.restart_at = ipc::monotonic_ns() + backoff_ns(rt.consecutive_failures);
}

void Supervisor::on_exited(const SupervisorEvent& ev) {
  SlotRuntime& rt = *slots_[ev.slot];
  rt.exit_pending.store(false, std::memory_order_relaxed);
  arena_->arena.reclaim_dead();  // blocks the reaped worker held or pinned
  if (rt.starting) {
    // The starter reports the start: failed (then this exit is part of
    // it), or succeeded just before this exit (then handled after it).
    rt.deferred_exit = ev;
    return;
  }
  if (rt.retiring) {
    emit_event(cfg_.on_event, {PoolEvent::Kind::worker_retired,
                               ipc::monotonic_ns(),
                               int32_t(ev.slot),
                               ev.pid,
                               {},
                               ev.exit});
    rt.retiring = false;
    table_.set_state(ev.slot, ipc::state_bit(ipc::SlotState::dead), ipc::SlotState::empty);
    if (rt.recycle && !closing()) {
      rt.recycle = false;
      rt.recycled.fetch_add(1, std::memory_order_relaxed);
      launch(ev.slot);
    }
    return;
  }
  if (closing()) return;
  emit_event(
      cfg_.on_event,
      {PoolEvent::Kind::worker_died, ipc::monotonic_ns(), int32_t(ev.slot), ev.pid, {}, ev.exit});
  if (ev.slot < cfg_.size) {
    // A worker that dies within a second of starting without ever being
    // checked out counts as a failed start (backoff); one that died serving
    // a call is replaced at once.
    const bool early =
        ipc::monotonic_ns() - rt.started_ns < 1'000'000'000 &&
        seg_->slot(ev.slot).checkouts.load(std::memory_order_relaxed) == rt.checkouts_at_start;
    rt.consecutive_failures = early ? rt.consecutive_failures + 1 : 0;
    rt.restart_at = ipc::monotonic_ns() + (early ? backoff_ns(rt.consecutive_failures) : 0) + 1;
  } else {
    table_.set_state(ev.slot, ipc::state_bit(ipc::SlotState::dead), ipc::SlotState::empty);
  }
}

// ---- the periodic passes ----

PassContext Supervisor::pass_context() const {
  return PassContext{*seg_, slots_, cfg_, cfg_.on_event, seg_->header().owner_pid};
}

void Supervisor::periodic(int64_t now) {
  const PassContext p = pass_context();
  // Restarts that are due.
  for (uint32_t i = 0; i < slot_count(); ++i) {
    SlotRuntime& rt = *slots_[i];
    if (rt.restart_at != 0 && now >= rt.restart_at && !rt.starting && !closing()) {
      launch(i);  // clears restart_at once it starts
    }
  }
  clients_reclaimed_.fetch_add(reclaim_orphans(p), std::memory_order_relaxed);
  arena_->arena.reclaim_dead();  // blocks of guest processes that died
  // A waiting caller's process that died holding the queue's turn.
  // and the waiters it counted.
  auto alive = [](pid_t pid) { return ipc::process_exists(pid); };
  ipc::skip_dead_turn(seg_->header().queue, alive, &stalled_ticket_);
  ipc::forget_dead_waiters(seg_->header().queue, alive);
  retire_idle_overflow(p, now);
  if (cfg_.max_worker_rss_bytes > 0 && now >= next_rss_check_) {
    next_rss_check_ = now + 200'000'000;
    recycle_by_rss(p, resident_bytes);
  }
  if (now >= next_cleanup_) {
    next_cleanup_ = now + ms_to_ns(cfg_.session_cleanup_interval);
    expire_sessions(sessions_, now, cfg_.session_ttl, cfg_.on_event);
  }
  if (!closing()) {
    for (uint32_t i : slots_for_demand(p)) launch(i);
  }
}

// ---- the thread ----

std::optional<Error> Supervisor::start_initial(uint32_t n, int64_t deadline_ns) {
  for (uint32_t i = 0; i < n; ++i) launch(i);
  uint32_t pending = n;
  std::unique_lock lock(mu_);
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::nanoseconds(deadline_ns - ipc::monotonic_ns());
  while (pending > 0) {
    if (!cv_.wait_until(lock, deadline, [&] { return !events_.empty(); })) break;
    while (!events_.empty()) {
      SupervisorEvent ev = std::move(events_.front());
      events_.pop_front();
      lock.unlock();
      handle(ev);
      if (ev.kind == SupervisorEvent::Kind::start_failed) return *ev.error;
      if (ev.kind == SupervisorEvent::Kind::started) --pending;
      lock.lock();
    }
  }
  if (pending == 0) return std::nullopt;
  return make_error(Category::timeout_error, "startup_timeout", "workers were not ready in time")
      .with("pool_name", cfg_.name);
}

void Supervisor::run() {
  thread_ = std::thread([this] { supervise(); });
  if (cfg_.health_check_interval.count() > 0) {
    health_thread_ = std::thread([this] { check_health(); });
  }
}

void Supervisor::check_health() {
  const PassContext p = pass_context();
  auto channel = [this](uint32_t i) -> ShmChannel& {
    if (!health_channels_[i]) {
      health_channels_[i] = std::make_unique<ShmChannel>(seg_.get(), i, policy_, arena_);
      health_channels_[i]->set_abandon_flag(&closing_);  // a ping ends when the pool closes
    }
    return *health_channels_[i];
  };
  std::unique_lock lock(mu_);
  for (;;) {
    if (cv_.wait_for(lock, cfg_.health_check_interval, [&] { return stop_; })) return;
    lock.unlock();
    if (!closing()) health_check(p, channel);
    lock.lock();
  }
}

void Supervisor::supervise() {
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait_for(lock, std::chrono::milliseconds(20), [&] { return stop_ || !events_.empty(); });
    if (stop_) return;
    std::deque<SupervisorEvent> batch;
    batch.swap(events_);
    lock.unlock();
    for (auto& ev : batch) handle(ev);
    periodic(ipc::monotonic_ns());
    lock.lock();
  }
}

void Supervisor::stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (health_thread_.joinable()) health_thread_.join();
  for (auto& [slot, t] : starters_) t.join();
  starters_.clear();
}

}  // namespace shmpool::detail
