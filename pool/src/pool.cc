// pool.cc: the owner's Pool. It creates the segment, starts the supervisor
// (supervisor.h: worker lifetimes and the periodic passes), calls through
// the one call path (call_path.h) in the owner's role, and shuts down.
#include "shmpool/pool.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <mutex>
#include <thread>

#include "ipc/checkout_queue.h"
#include "ipc/segment.h"
#include "ipc/session_table.h"
#include "ipc/slot_table.h"
#include "pool/src/call_path.h"
#include "pool/src/passes.h"
#include "pool/src/segment_sizing.h"
#include "pool/src/stale_segment.h"
#include "pool/src/supervisor.h"
#include "pool/src/worker_setup.h"

namespace shmpool {

namespace {

using detail::ms_to_ns;

// The owner's part on the call path: it refuses calls while shutting down,
// fails waits fast while workers cannot start, starts workers on demand,
// recycles workers after their calls, and kills and reaps a failed worker
// (adding its exit status to the call's error).
class OwnerRole final : public detail::CallRole {
 public:
  OwnerRole(const PoolConfig& cfg, detail::Supervisor& sup) : cfg_(cfg), sup_(sup) {}

  std::optional<Error> refuse() const override {
    if (!sup_.closing()) return std::nullopt;
    return shutting_down();
  }
  bool checkout_blocked() const override { return sup_.closing() || sup_.failing_fast(); }
  Error blocked_error() const override {
    return sup_.closing() ? shutting_down() : sup_.startup_error();
  }
  void on_checkout_wait() override { sup_.post({detail::SupervisorEvent::Kind::demand}); }
  void on_success(detail::SlotLease& lease) override {
    // Most pools recycle by neither: no clock read, no look at the slot's
    // runtime record on the call path.
    if (cfg_.max_calls_per_worker == 0 && cfg_.max_worker_age.count() == 0) return;
    const uint64_t pings = sup_.slot(lease.slot()).health_pings.load(std::memory_order_relaxed);
    if (detail::due_for_recycling(cfg_, lease.data(), pings, ipc::monotonic_ns()) &&
        lease.release_as(ipc::SlotState::retiring)) {
      sup_.post({detail::SupervisorEvent::Kind::recycle, lease.slot()});
    }
  }
  void on_worker_failed(uint32_t slot, Error& e, std::chrono::milliseconds op_timeout) override {
    // Never waits for the reap: a call returns within its timeouts.
    if (auto proc = sup_.slot(slot).process())
      detail::finish_failed_worker(e, *proc, op_timeout, /*wait_for_exit=*/false);
  }

 private:
  static Error shutting_down() {
    return make_error(Category::resource_error, "pool_shutting_down", "the pool is shutting down");
  }
  const PoolConfig& cfg_;
  detail::Supervisor& sup_;
};

}  // namespace

struct Pool::State {
  PoolConfig cfg;
  std::shared_ptr<ipc::Segment> seg;
  std::shared_ptr<detail::ArenaHandle> arena;
  ipc::WaitPolicy policy;
  int64_t started_ns = 0;
  std::unique_ptr<detail::Supervisor> supervisor;
  std::unique_ptr<OwnerRole> role;
  std::unique_ptr<detail::CallPath> calls;

  std::mutex shutdown_mu;
  bool shut_down = false;

  // Closes the pool: waiting callers give up, running calls get `grace` to
  // finish, the workers are asked to exit (SIGTERM) and killed at the
  // deadline, and the segment is removed.
  void stop_all(std::chrono::milliseconds grace) {
    std::lock_guard guard(shutdown_mu);
    if (shut_down) return;
    shut_down = true;
    supervisor->set_closing();
    seg->header().pool_state.store(uint32_t(ipc::PoolState::closing), std::memory_order_release);
    seg->header().slots_changed.ring();  // waiting callers give up now
    ipc::wake_all(seg->header().queue);
    const int64_t deadline = ipc::monotonic_ns() + ms_to_ns(grace);
    auto none_busy = [&] {
      for (uint32_t i = 0; i < seg->slot_count(); ++i) {
        if (detail::state_of(*seg, i) == ipc::SlotState::busy) return false;
      }
      return true;
    };
    ipc::wait_until(seg->header().slots_changed, none_busy, deadline,
                    ipc::WaitPolicy{ipc::WaitStrategy::block, 0});
    supervisor->stop();
    // SIGTERM everyone, then wait for each until the deadline, then SIGKILL.
    std::vector<std::shared_ptr<detail::WorkerProcess>> procs;
    for (uint32_t i = 0; i < supervisor->slot_count(); ++i) {
      if (auto p = supervisor->slot(i).process()) procs.push_back(std::move(p));
    }
    for (auto& p : procs) p->kill(SIGTERM);
    const int64_t term_deadline = std::max(deadline, ipc::monotonic_ns() + 1'000'000'000);
    for (auto& p : procs) {
      if (!p->wait_exit(term_deadline)) p->terminate(0);
    }
    procs.clear();
    // Async calls still in flight or queued end now (their workers are gone).
    calls->stop_async(make_error(Category::resource_error, "pool_shutting_down",
                                 "the pool shut down before the call ended")
                          .with("pool_name", cfg.name));
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
  s->policy = detail::to_policy(c.wait, c.spin);
  s->started_ns = ipc::monotonic_ns();
  const pid_t self = ::getpid();
  const ipc::SessionTable sessions(s->seg->sessions(), c.session_capacity,
                                   &s->seg->header().session_lock, uint32_t(self));
  s->supervisor = std::make_unique<detail::Supervisor>(c, s->seg, s->arena, sessions, s->policy);
  s->role = std::make_unique<OwnerRole>(c, *s->supervisor);
  detail::CallSettings cs;
  cs.pool_name = c.name;
  cs.self_pid = self;
  cs.policy = s->policy;
  cs.checkout_policy = s->policy;
  cs.checkout_policy.spin_ns = std::min<int64_t>(s->policy.spin_ns, 5'000);
  cs.checkout_timeout = c.checkout_timeout;
  cs.operation_timeout = c.operation_timeout;
  cs.cancel_grace = c.cancel_grace;
  cs.on_event = c.on_event;
  cs.clock = c.clock;
  s->calls =
      std::make_unique<detail::CallPath>(s->seg, s->arena, sessions, std::move(cs), *s->role);
  std::unique_ptr<Pool> pool(new Pool(s));
  // Initial workers, started in parallel; wait until each is idle or failed.
  const uint32_t initial = c.lazy ? c.min_warm : c.size;
  const int64_t deadline = ipc::monotonic_ns() + ms_to_ns(c.startup_timeout) + 5'000'000'000;
  if (auto e = s->supervisor->start_initial(initial, deadline)) {
    pool.reset();  // shuts down what did start
    return *e;
  }
  s->seg->header().pool_state.store(uint32_t(ipc::PoolState::ready), std::memory_order_release);
  s->supervisor->run();
  return pool;
}

Expected<Reply> Pool::execute_in_session(std::string_view session_id, std::string_view command,
                                         const Args& args, const ExecOptions& options) {
  return s_->calls->execute_in_session(session_id, command, args, options);
}

Expected<Reply> Pool::execute_anonymous(std::string_view command, const Args& args,
                                        const ExecOptions& options) {
  return s_->calls->execute({}, command, args, options);
}

Expected<PayloadBuffer> Pool::alloc_payload(std::size_t n,
                                            std::optional<std::chrono::milliseconds> timeout) {
  const auto t = timeout.value_or(s_->cfg.checkout_timeout);
  return detail::alloc_payload(s_->arena, n, ipc::monotonic_ns() + ms_to_ns(t), s_->policy);
}

std::future<Expected<Reply>> Pool::submit(std::string session_id, std::string command, Args args,
                                          ExecOptions options) {
  return s_->calls->submit(session_id, command, args, options);
}

Call Pool::call_async(std::string_view session_id, std::string_view command, const Args& args,
                      const ExecOptions& options, CompletionCallback on_complete) {
  return s_->calls->call_async(session_id, command, args, options, std::move(on_complete));
}

Stream Pool::stream(std::string_view session_id, std::string_view command, const Args& args,
                    const ExecOptions& options) {
  return s_->calls->stream(session_id, command, args, options);
}

int Pool::completion_fd() { return s_->calls->completion_fd(); }

Status Pool::end_session(std::string_view session_id) { return s_->calls->end_session(session_id); }

std::optional<SessionInfo> Pool::session(std::string_view session_id) const {
  return s_->calls->session(session_id);
}

std::vector<SessionInfo> Pool::sessions() const { return s_->calls->list_sessions(); }

uint32_t Pool::cleanup_sessions() {
  ipc::SessionTable sessions = s_->calls->sessions();
  return detail::expire_sessions(
      sessions, s_->calls->settings().clock ? s_->calls->settings().clock() : ipc::monotonic_ns(),
      s_->cfg.session_ttl, s_->cfg.on_event);
}

const std::string& Pool::name() const { return s_->cfg.name; }

PoolStatus Pool::status() const {
  const State& s = *s_;
  // What any process sees in the segment (inspect.h), plus what only the
  // owner knows: its configuration, timeouts, latencies and recycling.
  const PoolSnapshot snap = detail::snapshot_of(*s.seg);
  PoolStatus st;
  st.name = s.cfg.name;
  st.config = s.cfg;
  st.uptime_s = double(ipc::monotonic_ns() - s.started_ns) / 1e9;
  st.shutting_down = s.supervisor->closing();
  st.queue_length = snap.waiting;
  st.calls = snap.calls;
  st.successes = snap.successes;
  st.timeouts = s.calls->timeouts();
  st.checkout_timeouts = snap.checkout_timeouts;
  st.session_table_full = snap.session_table_full;
  st.reclaimed_from_dead_clients = s.supervisor->clients_reclaimed();
  st.arena_bytes = snap.arena_bytes;
  st.arena_bytes_in_use = snap.arena_bytes_in_use;
  st.arena_blocks_in_use = snap.arena_blocks_in_use;
  st.arena_pinned_blocks = snap.arena_pinned_blocks;
  st.errors_by_category = snap.errors_by_category;
  st.latency_p50_us = s.calls->latency().percentile_us(0.50);
  st.latency_p99_us = s.calls->latency().percentile_us(0.99);
  st.active_sessions = snap.active_sessions;
  for (const SlotSnapshot& slot : snap.slots) {
    WorkerInfo w;
    w.slot = slot.slot;
    w.state = slot.state;
    w.overflow = slot.slot >= s.cfg.size;
    w.pid = slot.pid;
    w.checkouts = slot.checkouts;
    w.successes = slot.successes;
    w.errors = slot.errors;
    w.restarts = slot.restarts;
    w.recycled = s.supervisor->slot(slot.slot).recycled.load(std::memory_order_relaxed);
    w.last_activity_ns = slot.last_activity_ns;
    const bool live = slot.state == "starting" || slot.state == "idle" || slot.state == "busy";
    if (w.overflow && live) ++st.overflow;
    st.workers.push_back(std::move(w));
  }
  st.starting = snap.slots_by_state.at("starting");
  st.idle = snap.slots_by_state.at("idle");
  st.busy = snap.slots_by_state.at("busy");
  st.dead = snap.slots_by_state.at("dead");
  st.retiring = snap.slots_by_state.at("retiring");
  return st;
}

Status Pool::shutdown(std::chrono::milliseconds grace) {
  s_->stop_all(grace);
  return {};
}

}  // namespace shmpool
