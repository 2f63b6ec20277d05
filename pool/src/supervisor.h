// supervisor.h: the owner's supervisor. It owns worker lifetimes: one
// thread with an event queue (worker exits, starts, start failures, demand,
// recycling), the starter threads that spawn workers and wait for their
// hello, restarts with backoff, failing fast, and the schedule of the
// periodic passes (passes.h). Pool starts it, forwards demand and recycling
// to it, and stops it; the call path never calls into it but through post().
#pragma once

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "ipc/segment.h"
#include "ipc/session_table.h"
#include "ipc/slot_table.h"
#include "pool/src/arena_handle.h"
#include "pool/src/passes.h"
#include "pool/src/runtime.h"
#include "shmpool/pool.h"

namespace shmpool::detail {

class Supervisor {
 public:
  Supervisor(const PoolConfig& cfg, std::shared_ptr<ipc::Segment> seg,
             std::shared_ptr<ArenaHandle> arena, ipc::SessionTable sessions,
             ipc::WaitPolicy policy);
  ~Supervisor();  // stop()

  // Starts workers in slots [0, n) in parallel and handles their events on
  // the calling thread until each is ready: the first start failure, or
  // timeout_error/startup_timeout at `deadline_ns`.
  std::optional<Error> start_initial(uint32_t n, int64_t deadline_ns);
  // The supervisor's thread, from now on.
  void run();
  // Joins the supervisor's thread and the starters (no more events are
  // handled). The workers keep running: stop them with workers().
  void stop();

  void post(SupervisorEvent ev);
  // Shutting down: no restarts, no demand, exits are not deaths.
  void set_closing();
  bool closing() const { return closing_.load(std::memory_order_relaxed); }
  // Callers should not wait for a worker: a slot keeps failing to start and
  // no worker is alive; startup_error() says why.
  bool failing_fast() const;
  Error startup_error() const;

  SlotRuntime& slot(uint32_t i) { return *slots_[i]; }
  uint32_t slot_count() const { return uint32_t(slots_.size()); }
  uint64_t clients_reclaimed() const { return clients_reclaimed_.load(std::memory_order_relaxed); }

 private:
  // Starts a worker in slot i (empty or dead) on a starter thread, not
  // before the slot's previous process has been reaped. Returns whether it started.
  bool launch(uint32_t i);
  void run_starter(uint32_t i);                           // on the starter thread
  void on_worker_exit(uint32_t i, const ExitInfo& info);  // on the child-watch thread
  void join_starter(uint32_t i);
  void handle(const SupervisorEvent& ev);
  void on_started(uint32_t i);
  void on_start_failed(const SupervisorEvent& ev);
  void on_exited(const SupervisorEvent& ev);
  // The periodic passes that are due, then the demand.
  void periodic(int64_t now);
  void supervise();
  PassContext pass_context() const;
  static int64_t backoff_ns(uint32_t failures);

  const PoolConfig& cfg_;
  std::shared_ptr<ipc::Segment> seg_;
  ipc::SlotTable table_;
  std::shared_ptr<ArenaHandle> arena_;
  ipc::SessionTable sessions_;
  ipc::WaitPolicy policy_;
  std::vector<std::unique_ptr<SlotRuntime>> slots_;
  std::atomic<bool> closing_{false};
  std::atomic<bool> failing_fast_{false};
  std::atomic<uint64_t> clients_reclaimed_{0};

  // The health checker's thread: pings idle workers every
  // health_check_interval, apart from the supervisor, which never waits on
  // a worker.
  void check_health();

  // Supervisor thread only.
  uint64_t stalled_ticket_;  // see ipc::skip_dead_turn
  int64_t next_cleanup_ = 0, next_rss_check_ = 0;
  std::vector<std::pair<uint32_t, std::thread>> starters_;  // (slot, thread)
  // Health checker thread only.
  std::vector<std::unique_ptr<ShmChannel>> health_channels_;  // by slot

  // Guarded by mu_.
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<SupervisorEvent> events_;
  bool stop_ = false;
  std::optional<Error> startup_error_;
  std::thread thread_, health_thread_;
};

}  // namespace shmpool::detail
