// async_engine.h: the call path's async half (shmpool/call.h): calls that
// do not block their caller, pipelined on workers, and streams.
//
//   CallPath::call_async/stream -> admit -> place():
//     a pipeline with room (a slot this engine holds), or a worker free now
//     (CallPath::try_checkout), or the queue (pending_), which the checkout
//     thread serves in turn with every other caller (CallPath::checkout)
//   -> ShmChannel::send (the request carries this process's completion bell)
//   -> the completion thread sleeps on that bell, reads every pipeline's
//      replies in order (ShmChannel::poll_reply), settles each call on the
//      CallPath (counters, session, error context, a failed worker
//      released dead) and delivers it: the Call's result, its callback,
//      the eventfd.
//
// A pipeline is a SlotLease and the calls sent on it, in order: the worker
// runs them one after the other, so only the first can be running, and the
// others never started. When the first fails its worker (crash, timeout,
// cancel past its grace), the others go back to the queue for another
// worker. A stream has its worker to itself. A pipeline is checked in when
// its last call ends, and takes no more calls while anybody queues for a
// worker, so synchronous callers keep their turn.
//
// Locks: the engine's mutex guards pipelines, the queue and every op's
// engine fields; an op's own mutex guards its result and items. Order:
// engine, then op. Callbacks run with neither held.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "ipc/spin_budget.h"
#include "ipc/wait.h"
#include "shmpool/call.h"
#include "shmpool/pool.h"

namespace shmpool::detail {

class AsyncEngine;
class CallPath;
class SlotLease;
class ShmChannel;
struct Pipeline;

// One async call or stream, shared by its Call/Stream handle and the engine.
struct AsyncOp {
  // Set at submission, then read-only.
  std::string session, command;
  Args args;
  std::vector<uint8_t> payload_copy, body_copy;
  ExecOptions opt;  // payload and body point into the copies or the caller's PayloadBuffer
  bool stream = false;
  CompletionCallback on_complete;
  std::function<void(Expected<Reply>&&)> consume;  // internal (submit): takes the result
  std::weak_ptr<AsyncEngine> engine;
  int64_t t0 = 0;
  std::chrono::milliseconds checkout_timeout{}, op_timeout{}, cancel_grace{};

  // Guarded by the engine's mutex.
  enum class Phase { queued, sent, done } phase = Phase::queued;
  Pipeline* pipe = nullptr;
  uint64_t request_id = 0;
  PayloadBuffer temp;             // a copied payload's arena block, until the reply
  int64_t checkout_deadline = 0;  // while queued
  int64_t deadline = 0;     // first in its pipeline: no reply (or item) by then is a timeout
  int64_t stream_deadline = 0;    // the whole stream's (0: none)
  bool cancel_requested = false;
  int64_t grace_deadline = 0;  // cancelled and first in its pipeline: killed past it

  // Guarded by `m`.
  std::mutex m;
  std::condition_variable cv;
  // A stream's items not taken yet, with their bytes (a list: nothing allocated for a call).
  std::list<std::pair<Reply, uint64_t>> items;
  uint64_t items_bytes = 0;  // their bytes
  std::optional<Expected<Reply>> result;          // the end (a stream's: an empty Reply) or error
  bool done = false;                              // result set and callbacks run
  std::atomic<bool> ready{false};                 // == done, for Call::ready without the lock
  std::atomic<uint32_t> items_ready{0};           // == items.size(), read without the lock
};

struct Pipeline {
  std::unique_ptr<SlotLease> lease;
  std::deque<std::shared_ptr<AsyncOp>> ops;  // sent, in order: the first may be running
  bool exclusive = false;                    // a stream's: nothing is sent behind it
};

class AsyncEngine {
 public:
  explicit AsyncEngine(CallPath& path);
  ~AsyncEngine();  // stop() must have been called
  AsyncEngine(const AsyncEngine&) = delete;
  AsyncEngine& operator=(const AsyncEngine&) = delete;

  // Takes `op` (admitted, its fields set) and sends or queues it.
  void submit(const std::shared_ptr<AsyncOp>& op);
  // Call::cancel, Stream::cancel: false if it had ended.
  bool cancel(AsyncOp& op);
  // A stream's consumer took an item of `bytes`: the worker's window moves on.
  void took(AsyncOp& op, uint64_t bytes);
  int completion_fd();
  // Waits until `op` has ended or, for a stream, has an item to take,
  // reading replies on this thread meanwhile: no hop through the completion
  // thread, which stands by while a caller drives (looking again every
  // millisecond; callbacks of calls ended here run here). deadline_ns 0: none. False at the deadline or when stopping.
  bool await(AsyncOp& op, int64_t deadline_ns);
  // Makes the completion thread look again (the owner died; a worker exited).
  void wake();
  // Ends every call still queued or in flight with `why` and joins the
  // threads. Slots of calls in flight are released dead (their workers are
  // mid-call). Idempotent.
  void stop(const Error& why);

 private:
  // What ended under the lock, delivered outside it (callbacks, waiters, the fd).
  struct Done {
    std::vector<std::shared_ptr<AsyncOp>> ops;
    bool items = false;  // stream items arrived
  };

  void start_threads();
  // Under the lock: reads every pipeline's replies, ends what is past its
  // deadline, drops released pipelines; `watch`: the rings still awaited.
  void collect(int64_t now, Done& done, std::vector<const ShmChannel*>* watch);
  // How to wait for the rings in `watch` (under the lock): `policy`, not
  // polling beside a lone worker's CPU; blocking at once with none.
  ipc::WaitPolicy wait_policy(const std::vector<const ShmChannel*>& watch,
                              ipc::WaitPolicy policy) const;
  bool place(const std::shared_ptr<AsyncOp>& op, Done& done);
  bool shareable(const Pipeline& p) const;
  Pipeline& add_pipeline(uint32_t slot, uint64_t word);
  void send(Pipeline& p, const std::shared_ptr<AsyncOp>& op, Done& done);
  void harvest(Pipeline& p, int64_t now, Done& done);
  void expire(int64_t now, Done& done);
  void expire_queued(int64_t now, Done& done);
  // The first op of `p` ended with `r`: settles it; `replace`: its worker
  // must go whatever `r` says. The others go back to the queue if the
  // lease went.
  void finish_front(Pipeline& p, Expected<Reply> r, bool replace, int64_t now, Done& done);
  void become_front(AsyncOp& op, int64_t now);
  void drop_released_pipelines();
  // Stores the result (the op leaves the engine); deliver() makes it seen.
  void finish(AsyncOp& op, Expected<Reply> r, Done& done, const std::shared_ptr<AsyncOp>& ref);
  // `from_driver`: called by a caller in await() (it needs no ring itself).
  void deliver(Done& done, bool from_driver = false);
  void kick();
  int64_t next_deadline(int64_t now) const;
  void run_completions();
  void run_checkouts();
  bool others_waiting() const;
  // A slot is empty or starting: a worker may come (lazy, overflow, restart).
  bool pool_can_grow() const;

  CallPath& path_;
  std::mutex m_;
  std::condition_variable checkout_cv_;
  std::list<Pipeline> pipes_;  // stable addresses (AsyncOp::pipe)
  std::deque<std::shared_ptr<AsyncOp>> pending_;
  bool started_ = false, stopping_ = false;
  std::optional<Error> stopped_;  // why, once stopped: later submissions fail with it
  std::thread completer_, checkouter_;
  std::atomic<bool> kicked_{false};
  std::atomic<int> drivers_{0};              // callers in await(): the completion thread stands by
  std::atomic<uint64_t> drives_{0};          // await() calls so far (recent drivers: it stays by)
  std::atomic<bool> stop_flag_{false};       // == stopping_, for waits without the lock
  std::condition_variable standby_cv_;       // the completion thread waits here while callers drive
  ipc::Doorbell* bell_;        // the process's completion bell in the segment, or local_bell_
  ipc::Doorbell local_bell_;   // without an entry there: the thread then polls (1 ms)
  uint32_t notify_ = 0;        // the bell's index + 1 for requests (0: none)
  std::atomic<int> event_fd_{-1};
  ipc::SpinBudget budget_;
};

}  // namespace shmpool::detail
