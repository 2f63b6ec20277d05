#include "shmpool/pool.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <mutex>
#include <thread>

#include "ipc/segment.h"
#include "ipc/session_table.h"
#include "ipc/slot_table.h"
#include "pool/src/caller.h"
#include "pool/src/segment_sizing.h"
#include "pool/src/shm_channel.h"
#include "pool/src/stale_segment.h"
#include "pool/src/worker_process.h"
#include "pool/src/worker_setup.h"

namespace shmpool {

namespace {

using Clock = std::chrono::steady_clock;
int64_t ms_to_ns(std::chrono::milliseconds ms) { return int64_t(ms.count()) * 1'000'000; }

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
    uint64_t want = uint64_t(p * double(total)), seen = 0;
    for (int i = 0; i < 64; ++i) {
      seen += counts[i];
      if (seen > want) return double(uint64_t(1) << i) * 1.5 / 1000.0;  // bucket middle
    }
    return 0;
  }
};

}  // namespace

// Owner-side bookkeeping of one slot. `proc` and `channel` change only while
// the slot is empty/dead/starting (no client holds it); clients copy `proc`
// under `mu` and use `channel` only while they hold the slot.
struct SlotRuntime {
  std::mutex mu;
  std::shared_ptr<detail::WorkerProcess> proc;
  std::unique_ptr<detail::ShmChannel> channel;
  // Supervisor thread only:
  uint32_t consecutive_failures = 0;
  int64_t restart_at = 0;  // 0: no restart scheduled
  bool retiring = false;
  bool recycle = false;               // retiring to be replaced (recycling), not to stay empty
  std::atomic<uint64_t> recycled{0};  // supervisor writes; status() reads
  bool starting = false;              // a starter thread owns the slot
  uint64_t orphan_word = 0;           // busy word last seen held by a dead process
  bool ever_started = false;          // a worker has been ready in this slot before
  // Set by the exit callback, cleared when the supervisor handles the exit
  // event: until then the slot is not relaunched, so no exit goes unhandled.
  std::atomic<bool> exit_pending{false};
  int64_t started_ns = 0;
  uint64_t checkouts_at_start = 0;
};

struct Pool::State : detail::Caller {
  PoolConfig cfg;
  std::vector<std::unique_ptr<SlotRuntime>> slots;
  ipc::WaitPolicy policy;
  int64_t started_ns = 0;
  std::atomic<bool> closing{false};
  std::atomic<bool> failing_fast{false};
  std::atomic<uint64_t> timeouts{0};
  std::atomic<uint64_t> clients_reclaimed{0};  // slots taken back from dead client processes
  uint64_t stalled_ticket = ipc::kNoTicket;    // supervisor: see ipc::skip_dead_turn
  LatencyHistogram latency;

  // Supervisor.
  enum class EventKind { exited, started, start_failed, demand, recycle };
  struct Event {
    EventKind kind;
    uint32_t slot = 0;
    std::optional<Error> error;
    std::string exit = {};  // exited: how ("killed by SIGKILL", ...)
    pid_t pid = 0;          // exited: which worker
  };
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Event> events;
  bool stop_supervisor = false;
  std::thread supervisor;
  std::vector<std::pair<uint32_t, std::thread>> starters;  // (slot, thread)
  std::optional<Error> startup_error;                      // guarded by mu
  int64_t next_health_check = 0, next_cleanup = 0, next_rss_check = 0;

  static uint64_t rss_bytes(pid_t pid) {
    if (pid <= 0) return 0;
    FILE* f = std::fopen(("/proc/" + std::to_string(pid) + "/statm").c_str(), "r");
    if (!f) return 0;
    unsigned long size = 0, resident = 0;
    int n = std::fscanf(f, "%lu %lu", &size, &resident);
    std::fclose(f);
    return n == 2 ? uint64_t(resident) * uint64_t(::sysconf(_SC_PAGESIZE)) : 0;
  }

  // After a successful call: should this worker be replaced now?
  bool due_for_recycling(const ipc::SlotData& sd) const {
    if (cfg.max_calls_per_worker > 0 &&
        sd.calls.load(std::memory_order_relaxed) >= cfg.max_calls_per_worker + 1) {
      return true;  // + 1: the hello counts as a frame
    }
    if (cfg.max_worker_age.count() > 0 &&
        ipc::monotonic_ns() - sd.started_ns.load(std::memory_order_relaxed) >=
            ms_to_ns(cfg.max_worker_age)) {
      return true;
    }
    return false;
  }

  // Executor for submit().
  std::mutex exec_mu;
  std::condition_variable exec_cv;
  std::deque<std::function<void()>> tasks;
  std::vector<std::thread> executors;
  bool stop_executors = false;

  bool shut_down = false;
  std::mutex shutdown_mu;

  uint32_t slot_count() const { return uint32_t(slots.size()); }

  void post(Event ev) {
    {
      std::lock_guard lock(mu);
      events.push_back(std::move(ev));
    }
    cv.notify_all();
  }

  // ---- starting and stopping workers (supervisor thread) ----

  // Starts a worker in slot i (empty or dead) on a starter thread. Not
  // before the slot's previous process has been reaped: until then it may
  // still write into the rings, and its exit callback still marks the slot.
  // (Its exit event brings the slot back here.) Returns whether it started.
  bool launch(uint32_t i) {
    SlotRuntime& rt = *slots[i];
    {
      std::lock_guard lock(rt.mu);
      if (rt.proc && !rt.proc->exited()) return false;
    }
    if (!ipc::set_state(
            *seg, i, ipc::state_bit(ipc::SlotState::empty) | ipc::state_bit(ipc::SlotState::dead),
            ipc::SlotState::starting)) {
      return false;
    }
    // The CAS acquired the exit callback's "dead": an exit whose event the
    // supervisor has not handled yet keeps the slot down until it has.
    if (rt.exit_pending.load(std::memory_order_relaxed)) {
      ipc::set_state(*seg, i, ipc::state_bit(ipc::SlotState::starting), ipc::SlotState::dead);
      return false;
    }
    rt.starting = true;
    rt.restart_at = 0;
    rt.started_ns = ipc::monotonic_ns();
    rt.checkouts_at_start = seg->slot(i).checkouts.load(std::memory_order_relaxed);
    starters.emplace_back(i, std::thread([this, i] { run_starter(i); }));
    return true;
  }

  void run_starter(uint32_t i) {
    SlotRuntime& rt = *slots[i];
    ipc::SlotData& sd = seg->slot(i);
    // No process uses the rings now: forget old frames, new epoch.
    seg->request_ring(i).reset();
    seg->response_ring(i).reset();
    sd.worker_epoch.fetch_add(1, std::memory_order_relaxed);
    sd.calls.store(0, std::memory_order_relaxed);  // calls served by this worker
    sd.started_ns.store(ipc::monotonic_ns(), std::memory_order_relaxed);
    sd.worker_alive.store(1, std::memory_order_release);  // pairs with ShmChannel's acquire
    detail::SpawnSpec spec;
    spec.python = cfg.python;
    spec.python_path = cfg.python_path;
    spec.env = detail::worker_env(cfg.env, cfg.worker_malloc_threshold);
    spec.log = cfg.log;
    spec.slot = int(i);
    spec.args = detail::shm_worker_args(cfg.name, i, cfg.wait, cfg.spin, cfg.handler_modules);
    spec.on_exit = [this, i](const detail::ExitInfo& info) {
      slots[i]->exit_pending.store(true, std::memory_order_relaxed);  // published by set_state
      const pid_t pid = seg->slot(i).worker_pid.load(std::memory_order_relaxed);
      // Counted here, before the caller can see the death: an unexpected
      // exit of a worker that had started (not retiring, not shutting down).
      const auto before = state_of(i);
      if (!closing.load() && before != ipc::SlotState::retiring &&
          before != ipc::SlotState::starting) {
        seg->slot(i).restarts.fetch_add(1, std::memory_order_relaxed);
      }
      detail::mark_worker_gone(*seg, i);
      // A busy slot stays busy: its caller sees worker_alive == 0, fails its
      // call and marks the slot dead itself. Relaunching under it would let
      // the new worker's frames reach that caller.
      ipc::set_state(*seg, i,
                     ipc::state_bit(ipc::SlotState::starting) |
                         ipc::state_bit(ipc::SlotState::idle) |
                         ipc::state_bit(ipc::SlotState::retiring),
                     ipc::SlotState::dead);
      post({EventKind::exited, i, std::nullopt, info.describe(), pid});
    };
    auto spawned = detail::WorkerProcess::spawn(std::move(spec));
    if (!spawned.ok()) {
      ipc::set_state(*seg, i, ipc::kAnySlotState, ipc::SlotState::dead);
      post({EventKind::start_failed, i, with_context(spawned.error(), {}, int(i))});
      return;
    }
    std::shared_ptr<detail::WorkerProcess> proc = std::move(spawned.value());
    auto channel = std::make_unique<detail::ShmChannel>(seg.get(), i, policy, arena);
    auto hello = channel->await_hello(ipc::monotonic_ns() + ms_to_ns(cfg.startup_timeout));
    if (!hello.ok()) {
      Error e = detail::startup_error(hello.error(), *proc, cfg.startup_timeout);
      ipc::set_state(*seg, i, ipc::kAnySlotState, ipc::SlotState::dead);
      {
        std::lock_guard lock(rt.mu);
        rt.proc = std::move(proc);  // reaped; kept for its exit status until the next start
      }
      post({EventKind::start_failed, i, with_context(std::move(e), {}, int(i))});
      return;
    }
    sd.worker_pid.store(proc->pid(), std::memory_order_relaxed);
    {
      std::lock_guard lock(rt.mu);
      rt.proc = std::move(proc);
      rt.channel = std::move(channel);
    }
    // release: a client that checks the slot out sees proc/channel and the rings.
    ipc::set_state(*seg, i, ipc::state_bit(ipc::SlotState::starting), ipc::SlotState::idle);
    post({EventKind::started, i, std::nullopt});
  }

  uint32_t live_workers(uint32_t from, uint32_t to, bool count_idle_only = false) const {
    uint32_t n = 0;
    for (uint32_t i = from; i < to; ++i) {
      auto s = state_of(i);
      if (count_idle_only) {
        n += s == ipc::SlotState::idle || s == ipc::SlotState::starting;
      } else {
        n +=
            s == ipc::SlotState::starting || s == ipc::SlotState::idle || s == ipc::SlotState::busy;
      }
    }
    return n;
  }

  // Starts workers for callers that wait: core slots first (lazy pools),
  // then overflow slots up to max_overflow.
  void meet_demand() {
    if (closing.load()) return;
    const uint32_t waiting = seg->header().waiting.load(std::memory_order_relaxed);
    uint32_t available = live_workers(0, slot_count(), /*count_idle_only=*/true);
    for (uint32_t i = 0; i < slot_count() && available < waiting; ++i) {
      auto s = state_of(i);
      SlotRuntime& rt = *slots[i];
      if ((s == ipc::SlotState::empty || (s == ipc::SlotState::dead && rt.restart_at == 0)) &&
          !rt.starting && launch(i)) {
        ++available;
      }
    }
  }

  // The starter of slot i posted its last event: join it.
  void join_starter(uint32_t i) {
    for (auto it = starters.begin(); it != starters.end(); ++it) {
      if (it->first == i) {
        it->second.join();
        starters.erase(it);
        return;
      }
    }
  }

  void handle(const Event& ev) {
    SlotRuntime& rt = *slots[ev.slot];
    if (ev.kind == EventKind::started || ev.kind == EventKind::start_failed) join_starter(ev.slot);
    switch (ev.kind) {
      case EventKind::started:
        emit({rt.ever_started ? PoolEvent::Kind::worker_restarted : PoolEvent::Kind::worker_started,
              ipc::monotonic_ns(),
              int32_t(ev.slot),
              seg->slot(ev.slot).worker_pid.load(std::memory_order_relaxed),
              {},
              {}});
        rt.ever_started = true;
        rt.starting = false;
        rt.consecutive_failures = 0;
        if (failing_fast.load(std::memory_order_relaxed)) {
          // A start succeeded: the failure was transient, callers wait again.
          std::lock_guard lock(mu);
          startup_error.reset();
          failing_fast.store(false, std::memory_order_relaxed);
        }
        break;
      case EventKind::start_failed: {
        emit({PoolEvent::Kind::worker_died,
              ipc::monotonic_ns(),
              int32_t(ev.slot),
              0,
              {},
              "failed to start: " + (ev.error ? ev.error->to_string() : std::string())});
        rt.starting = false;
        ++rt.consecutive_failures;
        if (rt.consecutive_failures >= cfg.max_startup_failures) {
          {
            std::lock_guard lock(mu);
            if (!startup_error) startup_error = ev.error;
          }
          failing_fast.store(true);
          seg->header().slots_changed.ring();  // waiting callers get the startup error now
          ipc::wake_all(seg->header().queue);
        }
        // Failing fast lasts until a start succeeds: the slot keeps trying,
        // backing off (up to 5 s), so a transient failure (an import that
        // failed once) does not cripple the pool for its lifetime.
        if (!closing.load()) {
          rt.restart_at = ipc::monotonic_ns() + backoff_ns(rt.consecutive_failures);
        }
        break;
      }
      case EventKind::exited: {
        rt.exit_pending.store(false, std::memory_order_relaxed);
        arena->arena.reclaim_dead();  // blocks the reaped worker held or pinned
        if (rt.starting) break;       // the starter reports it as a failed start
        if (rt.retiring) {
          emit({PoolEvent::Kind::worker_retired,
                ipc::monotonic_ns(),
                int32_t(ev.slot),
                ev.pid,
                {},
                ev.exit});
          rt.retiring = false;
          ipc::set_state(*seg, ev.slot, ipc::state_bit(ipc::SlotState::dead),
                         ipc::SlotState::empty);
          if (rt.recycle && !closing.load()) {
            rt.recycle = false;
            rt.recycled.fetch_add(1, std::memory_order_relaxed);
            launch(ev.slot);
          }
          break;
        }
        if (closing.load()) break;
        emit({PoolEvent::Kind::worker_died,
              ipc::monotonic_ns(),
              int32_t(ev.slot),
              ev.pid,
              {},
              ev.exit});
        if (ev.slot < cfg.size) {
          // A worker that dies within a second of starting without ever being
          // checked out counts as a failed start (backoff); one that died
          // serving a call is replaced at once.
          const bool early =
              ipc::monotonic_ns() - rt.started_ns < 1'000'000'000 &&
              seg->slot(ev.slot).checkouts.load(std::memory_order_relaxed) == rt.checkouts_at_start;
          rt.consecutive_failures = early ? rt.consecutive_failures + 1 : 0;
          rt.restart_at =
              ipc::monotonic_ns() + (early ? backoff_ns(rt.consecutive_failures) : 0) + 1;
        } else {
          ipc::set_state(*seg, ev.slot, ipc::state_bit(ipc::SlotState::dead),
                         ipc::SlotState::empty);
        }
        break;
      }
      case EventKind::demand:
        break;
      case EventKind::recycle: {
        // The slot is already retiring (the caller moved it there).
        rt.retiring = true;
        rt.recycle = true;
        std::shared_ptr<detail::WorkerProcess> proc;
        {
          std::lock_guard lock(rt.mu);
          proc = rt.proc;
        }
        if (proc) proc->kill(SIGTERM);
        break;
      }
    }
  }

  static int64_t backoff_ns(uint32_t failures) {
    return std::min<int64_t>(int64_t(50'000'000) << std::min<uint32_t>(failures, 7), 5'000'000'000);
  }

  void periodic(int64_t now) {
    // Restarts that are due.
    for (uint32_t i = 0; i < slot_count(); ++i) {
      SlotRuntime& rt = *slots[i];
      if (rt.restart_at != 0 && now >= rt.restart_at && !rt.starting && !closing.load()) {
        launch(i);  // clears restart_at once it starts
      }
    }
    reclaim_orphans();
    arena->arena.reclaim_dead();  // blocks of client processes that died
    // A waiting caller's process that died holding the queue's turn.
    ipc::skip_dead_turn(
        seg->header().queue, [](pid_t pid) { return ipc::process_exists(pid); }, &stalled_ticket);
    // Overflow workers idle for too long retire.
    for (uint32_t i = cfg.size; i < slot_count(); ++i) {
      SlotRuntime& rt = *slots[i];
      ipc::SlotData& sd = seg->slot(i);
      int64_t last = sd.last_activity_ns.load(std::memory_order_relaxed);
      if (state_of(i) == ipc::SlotState::idle && last != 0 &&
          now - last >= ms_to_ns(cfg.overflow_idle_timeout) &&
          ipc::set_state(*seg, i, ipc::state_bit(ipc::SlotState::idle), ipc::SlotState::retiring)) {
        rt.retiring = true;
        std::shared_ptr<detail::WorkerProcess> proc;
        {
          std::lock_guard lock(rt.mu);
          proc = rt.proc;
        }
        if (proc) proc->kill(SIGTERM);
      }
    }
    // Recycling by resident memory, checked on idle workers.
    if (cfg.max_worker_rss_bytes > 0 && now >= next_rss_check) {
      next_rss_check = now + 200'000'000;
      for (uint32_t i = 0; i < slot_count(); ++i) {
        if (state_of(i) != ipc::SlotState::idle) continue;
        pid_t pid = seg->slot(i).worker_pid.load(std::memory_order_relaxed);
        if (rss_bytes(pid) > cfg.max_worker_rss_bytes &&
            ipc::set_state(*seg, i, ipc::state_bit(ipc::SlotState::idle),
                           ipc::SlotState::retiring)) {
          handle({EventKind::recycle, i, std::nullopt});
        }
      }
    }
    if (cfg.health_check_interval.count() > 0 && now >= next_health_check) {
      next_health_check = now + ms_to_ns(cfg.health_check_interval);
      health_check();
    }
    if (now >= next_cleanup) {
      next_cleanup = now + ms_to_ns(cfg.session_cleanup_interval);
      expire_sessions();
    }
  }

  // A slot checked out by another process that died (mid-call or right
  // after its checkout) is never checked in. The busy state word carries the
  // holder's pid, set by the checkout CAS itself; a slot seen busy with the
  // same word and a holder that no longer exists on two passes in a row goes
  // dead. Dead means "its worker must go": a dead slot whose worker still
  // runs (a client gave it up after a timeout or a protocol error; clients
  // never signal the owner's children themselves) has it killed here, and
  // its exit restarts the slot. This process's own holders (its pid, or 0
  // for the health check, which runs on this thread) are never orphans.
  // Clients must share the owner's pid namespace.
  void reclaim_orphans() {
    const uint32_t self = uint32_t(self_pid) & ipc::kMaxHolderPid;
    for (uint32_t i = 0; i < slot_count(); ++i) {
      SlotRuntime& rt = *slots[i];
      const uint64_t w = seg->slot(i).state.load(std::memory_order_acquire);
      const auto state = ipc::slot_state(w);
      if (!ipc::valid_slot_state(state)) {
        // Nothing of ours writes this: the worker scribbled on its slot.
        // The worker goes; its exit restarts the slot.
        if (ipc::release_as(*seg, i, w, ipc::SlotState::dead)) kill_worker(rt);
        continue;
      }
      if (state == ipc::SlotState::dead && !rt.starting && !rt.retiring) {
        kill_worker(rt);
        continue;
      }
      const uint32_t holder = ipc::slot_holder_pid(w);
      const bool orphan = state == ipc::SlotState::busy && holder != self && holder != 0 &&
                          !ipc::process_exists(pid_t(holder));
      if (!orphan || rt.orphan_word != w) {
        rt.orphan_word = orphan ? w : 0;
        continue;
      }
      rt.orphan_word = 0;
      if (!ipc::release_as(*seg, i, w, ipc::SlotState::dead)) continue;
      clients_reclaimed.fetch_add(1, std::memory_order_relaxed);
      emit({PoolEvent::Kind::client_slot_reclaimed,
            ipc::monotonic_ns(),
            int32_t(i),
            seg->slot(i).worker_pid.load(std::memory_order_relaxed),
            {},
            std::to_string(holder)});
      kill_worker(rt);  // it may be mid-call for nobody; its exit restarts the slot
    }
  }

  static void kill_worker(SlotRuntime& rt) {
    std::shared_ptr<detail::WorkerProcess> proc;
    {
      std::lock_guard lock(rt.mu);
      proc = rt.proc;
    }
    if (proc && !proc->exited()) proc->kill(SIGKILL);
  }

  // Pings every idle worker; one that does not answer is killed (and replaced).
  void health_check() {
    for (uint32_t i = 0; i < slot_count(); ++i) {
      uint64_t word;
      if (!ipc::try_checkout(*seg, i, 0, &word)) continue;
      SlotRuntime& rt = *slots[i];
      detail::CallSpec spec;
      spec.id = rt.channel->next_request_id();
      spec.command = "ping";
      spec.deadline_ns =
          ipc::monotonic_ns() + std::min<int64_t>(ms_to_ns(cfg.operation_timeout), 5'000'000'000);
      auto r = rt.channel->call(spec);
      rt.channel->release_held();
      if (r.ok()) {
        ipc::checkin(*seg, i, word);
        continue;
      }
      ipc::release_as(*seg, i, word, ipc::SlotState::dead);
      std::shared_ptr<detail::WorkerProcess> proc;
      {
        std::lock_guard lock(rt.mu);
        proc = rt.proc;
      }
      if (proc) proc->kill(SIGKILL);
    }
  }

  void supervise() {
    std::unique_lock lock(mu);
    for (;;) {
      cv.wait_for(lock, std::chrono::milliseconds(20),
                  [&] { return stop_supervisor || !events.empty(); });
      if (stop_supervisor) return;
      std::deque<Event> batch;
      batch.swap(events);
      lock.unlock();
      for (auto& ev : batch) handle(ev);
      periodic(ipc::monotonic_ns());
      meet_demand();
      lock.lock();
    }
  }

  // ---- calls (any thread) ----

  // busy (as checked out: `word`) -> dead; the supervisor restarts it.
  void mark_dead(uint32_t i, uint64_t word) {
    ipc::release_as(*seg, i, word, ipc::SlotState::dead);
  }

  // ---- checkout (detail::Caller) ----
  bool checkout_blocked() const override {
    return closing.load(std::memory_order_relaxed) ||
           (failing_fast.load(std::memory_order_relaxed) && live_workers(0, slot_count()) == 0);
  }
  Error checkout_blocked_error() override {
    if (closing.load()) {
      return make_error(Category::resource_error, "pool_shutting_down",
                        "the pool is shutting down");
    }
    std::lock_guard lock(mu);
    return startup_error
               ? *startup_error
               : make_error(Category::worker_error, "startup_failed", "workers cannot start");
  }
  void on_checkout_wait() override { post({EventKind::demand, 0, std::nullopt}); }
  void on_checkout_timeout() override { timeouts.fetch_add(1, std::memory_order_relaxed); }

  Expected<Reply> execute(std::string_view session_id, std::string_view command, const Args& args,
                          const ExecOptions& opt) {
    const int64_t t0 = ipc::monotonic_ns();
    if (!session_id.empty() && !ipc::valid_session_id(session_id)) {
      return count(
          with_context(make_error(Category::config_error, "invalid_session_id",
                                  "session ids are 1-64 printable ASCII bytes without spaces"),
                       {})
              .with("session_id_length", std::to_string(session_id.size())));
    }
    if (closing.load()) {
      return count(with_context(
          make_error(Category::resource_error, "pool_shutting_down", "the pool is shutting down"),
          session_id));
    }
    const auto checkout_timeout = opt.checkout_timeout.value_or(cfg.checkout_timeout);
    const auto op_timeout = opt.operation_timeout.value_or(cfg.operation_timeout);
    auto co = checkout(session_id, opt.affinity, t0 + ms_to_ns(checkout_timeout), checkout_timeout);
    if (!co.ok()) {
      record_session(session_id, -1, true);
      return count(co.error());
    }
    const uint32_t i = co->slot;
    // While we hold the slot, the owner does not replace its proc or channel
    // (the checkout CAS acquired them), so neither needs rt.mu on this path.
    SlotRuntime& rt = *slots[i];
    ipc::SlotData& sd = seg->slot(i);
    detail::CallSpec spec;
    spec.id = rt.channel->next_request_id();
    spec.session_id = session_id;
    spec.command = command;
    spec.args = args;
    spec.payload = opt.payload;
    spec.body = opt.body;
    // The operation timeout starts now: after the checkout wait, if any.
    spec.deadline_ns = (co->waited ? ipc::monotonic_ns() : t0) + ms_to_ns(op_timeout);
    Expected<Reply> r = rt.channel->call(spec);
    if (r.ok()) r->own_payload();
    rt.channel->release_held();
    // The latency summary samples calls (a clock read costs 40 ns on a KVM
    // guest, a few % of a call): each thread's first 16, then 1 in 8, and
    // every failed one. Last activity takes the coarse clock.
    thread_local uint32_t t_calls = 0;
    const bool timed = !r.ok() || t_calls < 16 || (t_calls & 7) == 0;
    ++t_calls;
    const int64_t t1 = timed ? ipc::monotonic_ns() : ipc::coarse_monotonic_ns();
    sd.last_activity_ns.store(t1, std::memory_order_relaxed);
    if (r.ok()) {
      ipc::bump(sd.successes);  // we still hold the slot
      if (due_for_recycling(sd) && ipc::release_as(*seg, i, co->word, ipc::SlotState::retiring)) {
        post({EventKind::recycle, i, std::nullopt});
      } else {
        ipc::checkin(*seg, i, co->word);
      }
      record_session(session_id, int32_t(i), false);
      if (timed) latency.add(t1 - t0);
      return r;
    }
    ipc::bump(sd.errors);  // we still hold the slot
    std::shared_ptr<detail::WorkerProcess> proc;
    {
      std::lock_guard lock(rt.mu);
      proc = rt.proc;
    }
    Error e = with_context(r.error(), session_id, int(i), proc ? proc->pid() : 0);
    e.with("command", std::string(command));
    if (detail::worker_must_be_replaced(e)) {
      // The slot goes dead before anyone else can check it out; the
      // supervisor replaces the worker when its exit is reaped.
      mark_dead(i, co->word);
      if (proc) detail::finish_failed_worker(e, *proc, op_timeout);
      if (e.type == detail::kOperationTimeout) timeouts.fetch_add(1, std::memory_order_relaxed);
    } else {
      ipc::checkin(*seg, i, co->word);
    }
    record_session(session_id, int32_t(i), true);
    latency.add(t1 - t0);
    return count(std::move(e));
  }

  uint32_t expire_sessions() {
    std::vector<std::string> expired;
    const uint32_t n =
        sessions.expire(session_now(), ms_to_ns(cfg.session_ttl), on_event ? &expired : nullptr);
    for (auto& id : expired) {
      emit({PoolEvent::Kind::session_expired, ipc::monotonic_ns(), -1, 0, std::move(id), {}});
    }
    return n;
  }

  // ---- shutdown ----

  void stop_all(std::chrono::milliseconds grace) {
    std::lock_guard guard(shutdown_mu);
    if (shut_down) return;
    shut_down = true;
    closing.store(true);
    seg->header().pool_state.store(uint32_t(ipc::PoolState::closing), std::memory_order_release);
    seg->header().slots_changed.ring();  // waiting callers give up now
    ipc::wake_all(seg->header().queue);
    const int64_t deadline = ipc::monotonic_ns() + ms_to_ns(grace);
    auto none_busy = [&] {
      for (uint32_t i = 0; i < slot_count(); ++i) {
        if (state_of(i) == ipc::SlotState::busy) return false;
      }
      return true;
    };
    ipc::wait_until(seg->header().slots_changed, none_busy, deadline,
                    ipc::WaitPolicy{ipc::WaitStrategy::block, 0});
    {
      std::lock_guard lock(mu);
      stop_supervisor = true;
    }
    cv.notify_all();
    if (supervisor.joinable()) supervisor.join();
    for (auto& [slot, t] : starters) t.join();
    starters.clear();
    // SIGTERM everyone, then wait for each until the deadline, then SIGKILL.
    std::vector<std::shared_ptr<detail::WorkerProcess>> procs;
    for (auto& rt : slots) {
      std::lock_guard lock(rt->mu);
      if (rt->proc) procs.push_back(rt->proc);
    }
    for (auto& p : procs) p->kill(SIGTERM);
    const int64_t term_deadline = std::max(deadline, ipc::monotonic_ns() + 1'000'000'000);
    for (auto& p : procs) {
      if (!p->wait_exit(term_deadline)) p->terminate(0);
    }
    procs.clear();
    // Submitted calls still in flight have failed with their workers (the
    // exit marks the slot gone); queued ones fail fast. Only now can the
    // executors be joined without waiting for an operation timeout.
    {
      std::lock_guard lock(exec_mu);
      stop_executors = true;
    }
    exec_cv.notify_all();
    for (auto& t : executors) t.join();
    // Every worker is reaped. Channels and process handles stay until the
    // State goes: a call that was still in flight may be returning through them.
    ipc::Segment::remove(cfg.name);
  }
};

Pool::Pool(std::shared_ptr<State> s) : s_(std::move(s)) {}

Pool::~Pool() {
  if (s_) s_->stop_all(std::chrono::milliseconds(5000));
}

namespace {
std::optional<Error> validate(PoolConfig& c) {
  auto bad = [](const char* field, std::string why) {
    return make_error(Category::config_error, "invalid_config", std::move(why))
        .with("field", field);
  };
  if (c.size == 0) c.size = std::max(1u, std::thread::hardware_concurrency());
  if (c.python.empty()) c.python = detail::default_python();
  if (c.size > 512) return bad("size", "size must be 1-512");
  if (c.max_overflow > 512) return bad("max_overflow", "max_overflow must be 0-512");
  if (c.checkout_timeout.count() <= 0) return bad("checkout_timeout", "must be positive");
  if (c.operation_timeout.count() <= 0) return bad("operation_timeout", "must be positive");
  if (c.startup_timeout.count() <= 0) return bad("startup_timeout", "must be positive");
  if (c.session_ttl.count() <= 0) return bad("session_ttl", "must be positive");
  if (c.session_cleanup_interval.count() <= 0)
    return bad("session_cleanup_interval", "must be positive");
  if (c.overflow_idle_timeout.count() <= 0) return bad("overflow_idle_timeout", "must be positive");
  if (c.health_check_interval.count() < 0)
    return bad("health_check_interval", "must not be negative");
  if (c.min_warm > c.size) return bad("min_warm", "min_warm must not exceed size");
  if (c.max_startup_failures == 0) return bad("max_startup_failures", "must be at least 1");
  if (c.spin.count() < 0) return bad("spin", "must not be negative");
  if (c.max_worker_age.count() < 0) return bad("max_worker_age", "must not be negative");
  if (c.worker_malloc_threshold > kMaxWorkerMallocThreshold)
    return bad("worker_malloc_threshold", "must be at most 32 MiB (glibc's limit)");
  return std::nullopt;
}
}  // namespace

Expected<std::unique_ptr<Pool>> Pool::start(PoolConfig config) {
  if (auto e = validate(config)) return e->with("pool_name", config.name);
  auto s = std::make_shared<State>();
  s->cfg = std::move(config);
  const PoolConfig& c = s->cfg;
  s->pool_name = c.name;
  s->on_event = c.on_event;
  s->clock = c.clock;
  detail::SizeRequest sizes;
  sizes.slot_count = c.size + c.max_overflow;
  sizes.session_capacity = c.session_capacity;
  sizes.request_ring_bytes = c.request_ring_bytes;
  sizes.response_ring_bytes = c.response_ring_bytes;
  sizes.arena_bytes = c.payload_arena_bytes;
  auto fitted = detail::fit_segment(sizes, detail::shm_free_bytes());
  if (!fitted.ok()) return Error(fitted.error()).with("pool_name", c.name);
  const ipc::Geometry g = fitted->geometry;
  // status().config shows the sizes in effect.
  s->cfg.request_ring_bytes = g.request_ring_bytes;
  s->cfg.response_ring_bytes = g.response_ring_bytes;
  s->cfg.payload_arena_bytes = g.arena_bytes;
  if (fitted->shrunk) {
    const std::string line = "pool " + c.name + ": " + fitted->note;
    if (c.log) {
      c.log(LogLine{-1, ::getpid(), true, line});
    } else {
      std::fprintf(stderr, "shmpool: %s\n", line.c_str());
    }
  }
  auto seg = detail::create_segment(c.name, g);
  if (!seg.ok()) return seg.error();
  s->seg = std::move(seg.value());
  s->arena = std::make_shared<detail::ArenaHandle>(s->seg);
  s->self_pid = ::getpid();
  s->sessions = ipc::SessionTable(s->seg->sessions(), c.session_capacity,
                                  &s->seg->header().session_lock, uint32_t(s->self_pid));
  s->policy = detail::to_policy(c.wait, c.spin);
  s->checkout_policy = s->policy;
  s->checkout_policy.spin_ns = std::min<int64_t>(s->policy.spin_ns, 5'000);
  s->started_ns = ipc::monotonic_ns();
  for (uint32_t i = 0; i < g.slot_count; ++i) {
    s->slots.push_back(std::make_unique<SlotRuntime>());
  }
  s->next_cleanup = ipc::monotonic_ns() + ms_to_ns(c.session_cleanup_interval);
  s->next_health_check = ipc::monotonic_ns() + ms_to_ns(c.health_check_interval);
  std::unique_ptr<Pool> pool(new Pool(s));
  // Initial workers, started in parallel; wait until each is idle or failed.
  const uint32_t initial = c.lazy ? c.min_warm : c.size;
  uint32_t pending = initial;
  {
    for (uint32_t i = 0; i < initial; ++i) s->launch(i);
    std::unique_lock lock(s->mu);
    const auto deadline = Clock::now() + c.startup_timeout + std::chrono::seconds(5);
    while (pending > 0) {
      if (!s->cv.wait_until(lock, deadline, [&] { return !s->events.empty(); })) break;
      while (!s->events.empty()) {
        State::Event ev = std::move(s->events.front());
        s->events.pop_front();
        lock.unlock();
        s->handle(ev);
        lock.lock();
        if (ev.kind == State::EventKind::started) --pending;
        if (ev.kind == State::EventKind::start_failed) {
          Error e = *ev.error;
          lock.unlock();
          pool.reset();  // shuts down what did start
          return e;
        }
      }
    }
    if (pending > 0) {
      lock.unlock();
      pool.reset();
      return make_error(Category::timeout_error, "startup_timeout",
                        "workers were not ready in time")
          .with("pool_name", c.name);
    }
  }
  s->seg->header().pool_state.store(uint32_t(ipc::PoolState::ready), std::memory_order_release);
  s->supervisor = std::thread([s = s.get()] { s->supervise(); });
  return pool;
}

Expected<Reply> Pool::execute_in_session(std::string_view session_id, std::string_view command,
                                         const Args& args, const ExecOptions& options) {
  if (session_id.empty()) {
    return s_->count(s_->with_context(
        make_error(Category::config_error, "invalid_session_id", "session id must not be empty"),
        {}));
  }
  return s_->execute(session_id, command, args, options);
}

Expected<Reply> Pool::execute_anonymous(std::string_view command, const Args& args,
                                        const ExecOptions& options) {
  return s_->execute({}, command, args, options);
}

Expected<PayloadBuffer> Pool::alloc_payload(std::size_t n,
                                            std::optional<std::chrono::milliseconds> timeout) {
  const auto t = timeout.value_or(s_->cfg.checkout_timeout);
  return detail::alloc_payload(s_->arena, n, ipc::monotonic_ns() + ms_to_ns(t), s_->policy);
}

std::future<Expected<Reply>> Pool::submit(std::string session_id, std::string command, Args args,
                                          ExecOptions options) {
  // A payload in one of our arena blocks is read in place (the caller keeps
  // the PayloadBuffer alive); any other is copied now.
  auto payload = std::make_shared<std::vector<uint8_t>>();
  const bool in_arena = detail::in_own_block(*s_->arena, options.payload);
  if (!in_arena) payload->assign(options.payload.begin(), options.payload.end());
  auto body = std::make_shared<std::vector<uint8_t>>(options.body.begin(), options.body.end());
  auto task = std::make_shared<std::packaged_task<Expected<Reply>()>>(
      [s = s_, session_id = std::move(session_id), command = std::move(command),
       args = std::move(args), options, payload, body, in_arena]() mutable {
        if (!in_arena) options.payload = *payload;
        options.body = *body;
        return s->execute(session_id, command, args, options);
      });
  auto future = task->get_future();
  State& s = *s_;
  {
    std::lock_guard lock(s.exec_mu);
    if (s.stop_executors) {
      (*task)();  // fails fast with pool_shutting_down
      return future;
    }
    if (s.executors.empty()) {
      for (uint32_t t = 0; t < s.slot_count(); ++t) {
        s.executors.emplace_back([&s] {
          std::unique_lock lock(s.exec_mu);
          for (;;) {
            s.exec_cv.wait(lock, [&] { return s.stop_executors || !s.tasks.empty(); });
            if (s.tasks.empty()) return;  // stopping, queue drained
            auto job = std::move(s.tasks.front());
            s.tasks.pop_front();
            lock.unlock();
            job();
            lock.lock();
          }
        });
      }
    }
    s.tasks.emplace_back([task] { (*task)(); });
  }
  s.exec_cv.notify_one();
  return future;
}

Status Pool::end_session(std::string_view session_id) { return s_->end_session(session_id); }

std::optional<SessionInfo> Pool::session(std::string_view session_id) const {
  return s_->session(session_id);
}

std::vector<SessionInfo> Pool::sessions() const { return s_->list_sessions(); }

uint32_t Pool::cleanup_sessions() { return s_->expire_sessions(); }

const std::string& Pool::name() const { return s_->cfg.name; }

PoolStatus Pool::status() const {
  const State& s = *s_;
  PoolStatus st;
  st.name = s.cfg.name;
  st.config = s.cfg;
  st.uptime_s = double(ipc::monotonic_ns() - s.started_ns) / 1e9;
  st.shutting_down = s.closing.load();
  const ipc::SegmentHeader& h = s.seg->header();
  st.queue_length = h.waiting.load(std::memory_order_acquire);  // pairs with Caller::checkout
  const ipc::CallCounts calls = ipc::call_counts(*s.seg);
  st.calls = calls.successes + calls.errors;
  st.successes = calls.successes;
  st.timeouts = s.timeouts.load(std::memory_order_relaxed);
  st.checkout_timeouts = h.checkout_timeouts.load(std::memory_order_relaxed);
  st.session_table_full = h.session_table_full.load(std::memory_order_relaxed);
  st.reclaimed_from_dead_clients = s.clients_reclaimed.load(std::memory_order_relaxed);
  st.arena_bytes = s.arena->arena.capacity();
  const ipc::Arena::Usage u = s.arena->arena.usage();
  st.arena_bytes_in_use = u.bytes;
  st.arena_blocks_in_use = u.blocks;
  st.arena_pinned_blocks = u.pinned;
  for (int c = 0; c <= int(Category::config_error); ++c) {
    st.errors_by_category[std::string(category_name(Category(c)))] =
        h.errors_by_category[c].load(std::memory_order_relaxed);
  }
  st.latency_p50_us = s.latency.percentile_us(0.50);
  st.latency_p99_us = s.latency.percentile_us(0.99);
  st.active_sessions = s.sessions.active_count();
  for (uint32_t i = 0; i < s.slot_count(); ++i) {
    const ipc::SlotData& sd = s.seg->slot(i);
    WorkerInfo w;
    w.slot = i;
    auto state = s.state_of(i);
    w.state = ipc::slot_state_name(state);
    w.overflow = i >= s.cfg.size;
    w.pid = state == ipc::SlotState::empty ? 0 : sd.worker_pid.load(std::memory_order_relaxed);
    w.checkouts = sd.checkouts.load(std::memory_order_relaxed);
    w.successes = sd.successes.load(std::memory_order_relaxed);
    w.errors = sd.errors.load(std::memory_order_relaxed);
    w.restarts = sd.restarts.load(std::memory_order_relaxed);
    w.recycled = s.slots[i]->recycled.load(std::memory_order_relaxed);
    w.last_activity_ns = sd.last_activity_ns.load(std::memory_order_relaxed);
    switch (state) {
      case ipc::SlotState::starting:
        ++st.starting;
        break;
      case ipc::SlotState::idle:
        ++st.idle;
        break;
      case ipc::SlotState::busy:
        ++st.busy;
        break;
      case ipc::SlotState::dead:
        ++st.dead;
        break;
      case ipc::SlotState::retiring:
        ++st.retiring;
        break;
      case ipc::SlotState::empty:
        break;
    }
    if (w.overflow && (state == ipc::SlotState::idle || state == ipc::SlotState::busy ||
                       state == ipc::SlotState::starting)) {
      ++st.overflow;
    }
    st.workers.push_back(std::move(w));
  }
  return st;
}

Status Pool::shutdown(std::chrono::milliseconds grace) {
  s_->stop_all(grace);
  return {};
}

}  // namespace shmpool
