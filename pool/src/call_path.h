// call_path.h: the one path a call takes from any process that calls a pool,
// the owner (Pool) and a guest (Client) alike:
//
//   execute():  refuse? -> checkout (fair queue) -> SlotLease -> channel call
//               -> lease checked in / released dead or retiring
//               -> session record, error context, counters, events
//
// Pool and Client each hold one CallPath and differ only in their CallRole:
// what being the owner or a guest means at a few points of the path.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ipc/checkout_queue.h"
#include "ipc/segment.h"
#include "ipc/session_table.h"
#include "ipc/slot_table.h"
#include "ipc/wait.h"
#include "pool/src/arena_handle.h"
#include "pool/src/runtime.h"
#include "pool/src/shm_channel.h"
#include "shmpool/call.h"
#include "shmpool/error.h"
#include "shmpool/pool.h"

namespace shmpool::detail {

class AsyncEngine;
class SlotLease;
struct AsyncOp;

// What the owner and a guest do differently on the call path.
class CallRole {
 public:
  virtual ~CallRole() = default;
  // An error for a call refused before its checkout (shutting down, owner gone).
  virtual std::optional<Error> refuse() const = 0;
  // True when waiting for a worker is pointless (polled while waiting);
  // blocked_error() then says why.
  virtual bool checkout_blocked() const = 0;
  virtual Error blocked_error() const = 0;
  // A call starts waiting for a worker (the owner starts workers on demand).
  virtual void on_checkout_wait() {}
  // A call succeeded: the role may release the slot as retiring (recycling)
  // instead of letting it be checked in.
  virtual void on_success(SlotLease&) {}
  // The lease's worker must go (crashed, timed out, broke the protocol) and
  // the slot is already released dead: the owner kills and reaps it and adds
  // its exit status to `e`.
  virtual void on_worker_failed(uint32_t /*slot*/, Error& /*e*/,
                                std::chrono::milliseconds /*op_timeout*/) {}
};

// Everything a CallPath needs to know once, at construction.
struct CallSettings {
  std::string pool_name;
  pid_t self_pid = 0;
  uint32_t token_base = 0;          // keeps this process's checkout tokens apart from others'
  ipc::WaitPolicy policy;           // reply waits, arena waits
  ipc::WaitPolicy checkout_policy;  // how a waiting caller polls before sleeping
  std::chrono::milliseconds checkout_timeout{5'000}, operation_timeout{30'000};
  std::chrono::milliseconds cancel_grace{1'000};  // async calls (async_engine.h)
  EventCallback on_event;
  std::function<int64_t()> clock;  // session timestamps (ns); empty: CLOCK_MONOTONIC
};

class CallPath {
 public:
  // `abandon`: a guest's "the owner died" flag (channels' waits end on it).
  CallPath(std::shared_ptr<ipc::Segment> seg, std::shared_ptr<ArenaHandle> arena,
           ipc::SessionTable sessions, CallSettings settings, CallRole& role,
           const std::atomic<bool>* abandon = nullptr);
  ~CallPath();  // stops the async engine if stop_async() did not

  // A call in a session (`session_id` must not be empty) or, with an empty
  // one, an anonymous call.
  Expected<Reply> execute(std::string_view session_id, std::string_view command, const Args& args,
                          const ExecOptions& opt);
  Expected<Reply> execute_in_session(std::string_view session_id, std::string_view command,
                                     const Args& args, const ExecOptions& opt);

  // The async half (async_engine.h), started on first use. An empty
  // session_id makes an anonymous call. `consume` (internal): takes the
  // result instead of the Call (submit()).
  Call call_async(std::string_view session_id, std::string_view command, const Args& args,
                  const ExecOptions& opt, CompletionCallback on_complete,
                  std::function<void(Expected<Reply>&&)> consume = {});
  Stream stream(std::string_view session_id, std::string_view command, const Args& args,
                const ExecOptions& opt);
  // call_async() as a std::future (Pool::submit, Client::submit).
  std::future<Expected<Reply>> submit(std::string_view session_id, std::string_view command,
                                      const Args& args, const ExecOptions& opt);
  int completion_fd();
  // The owner died or a worker exited: the completion thread looks again.
  void wake_async();
  // Ends the async calls still queued or in flight with `why`; later ones
  // fail with it at once.
  void stop_async(const Error& why);
  // A guest's owner died.
  bool abandoned() const { return abandon_ && abandon_->load(std::memory_order_acquire); }

  Status end_session(std::string_view id);
  std::optional<SessionInfo> session(std::string_view id) const;
  std::vector<SessionInfo> list_sessions() const;

  // Adds pool_name and, when known, session_id, slot and worker_pid.
  Error with_context(Error e, std::string_view session_id, int slot = -1, pid_t pid = 0) const;
  // Counts a failed call in the segment (and raises call_timed_out);
  // pool_not_available is not counted (there is no pool left to count in).
  Error count(Error e) const;
  void emit(PoolEvent e) const { emit_event(settings_.on_event, std::move(e)); }

  ipc::Segment& segment() const { return *seg_; }
  const std::shared_ptr<ArenaHandle>& arena() const { return arena_; }
  const ipc::SessionTable& sessions() const { return sessions_; }
  const CallSettings& settings() const { return settings_; }
  // Call latencies sampled by this process (status()).
  const LatencyHistogram& latency() const { return latency_; }
  // Calls of this process that timed out (checkout or operation).
  uint64_t timeouts() const { return timeouts_.load(std::memory_order_relaxed); }

 private:
  friend class SlotLease;
  friend class AsyncEngine;
  struct Checkout {
    uint32_t slot = 0;
    uint64_t word = 0;
    bool waited = false;  // it waited for a worker (the call's clock moved)
  };
  // Checks a worker out: directly when nobody waits, else through the
  // segment's queue (ipc/checkout_queue.h), in arrival order, until
  // `deadline`. Errors: checkout_timeout, or what the role's blocked_error says.
  Expected<Checkout> checkout(std::string_view session_id, bool affinity, int64_t deadline,
                              std::chrono::milliseconds timeout);
  // A worker free now, without waiting (false when callers queue for one).
  bool try_checkout(std::string_view session_id, bool affinity, uint64_t owner, Checkout* co);
  uint64_t next_owner();
  // An error (counted, with context) for a call refused before its checkout.
  std::optional<Error> admit(std::string_view session_id);
  // After a call on `lease`'s worker ended with `r`: latency, the slot's
  // counters, the session record, the error's context. The lease is
  // released dead when the worker must go (or `replace`), else checked in
  // unless `keep` (a pipeline with more calls on it).
  Expected<Reply> settle(SlotLease& lease, std::string_view session_id, std::string_view command,
                         Expected<Reply> r, int64_t t0, std::chrono::milliseconds op_timeout,
                         bool keep, bool replace);
  // The engine, made on first use (null if stop_async came first). It
  // lives as long as this CallPath.
  AsyncEngine* engine();
  // Admits `op`, fills it in and gives it to the engine (or fails it).
  std::shared_ptr<AsyncOp> start_async(std::shared_ptr<AsyncOp> op, std::string_view session_id,
                                       std::string_view command, const Args& args,
                                       const ExecOptions& opt);
  // Slot i checked out with a live worker; a slot whose worker died while
  // idle goes to the owner for a restart.
  bool try_slot(uint32_t i, uint64_t owner, Checkout* co);
  bool scan(uint64_t owner, Checkout* co);
  bool any_idle() const;
  // Counts one call on a session (none for an anonymous call), raising
  // session_created for its first.
  void record_session(std::string_view id, int32_t slot, bool failed);
  int64_t session_now() const;

  std::shared_ptr<ipc::Segment> seg_;
  std::shared_ptr<ArenaHandle> arena_;
  ipc::SessionTable sessions_;
  CallSettings settings_;
  CallRole& role_;
  ipc::SlotTable table_;
  // One per slot, used only by the slot's holder (the lease).
  std::vector<std::unique_ptr<ShmChannel>> channels_;
  ipc::WaiterCount* waiter_count_;  // this process's, in the segment (or null: unattributed)
  std::atomic<uint32_t> next_token_{1};
  const std::atomic<bool>* abandon_;
  std::mutex async_m_;  // guards async_ (its creation) and async_stopped_
  std::shared_ptr<AsyncEngine> async_;
  std::weak_ptr<AsyncEngine> engine_weak_;     // the Calls' link to it
  std::atomic<AsyncEngine*> engine_ptr_{nullptr};  // async_.get() once made (release)
  std::optional<Error> async_stopped_;
  std::atomic<bool> async_closing_{false};  // ends the checkout thread's wait
  LatencyHistogram latency_;
  std::atomic<uint64_t> timeouts_{0};
};

// A checked-out slot. It checks the slot in when it goes, unless it was
// released first as dead (its worker must be replaced) or retiring
// (recycled). While it lives, nobody else uses the slot's rings and the
// owner does not replace the slot's worker.
class SlotLease {
 public:
  SlotLease(CallPath& path, uint32_t slot, uint64_t word) : path_(path), slot_(slot), word_(word) {}
  SlotLease(const SlotLease&) = delete;
  SlotLease& operator=(const SlotLease&) = delete;
  ~SlotLease() { checkin(); }

  uint32_t slot() const { return slot_; }
  ipc::SlotData& data() const { return path_.seg_->slot(slot_); }
  ShmChannel& channel() const { return *path_.channels_[slot_]; }
  bool held() const { return held_; }

  // Back to idle (false if the owner moved the slot meanwhile).
  bool checkin();
  // Instead of a checkin: dead (the owner replaces the worker) or retiring.
  bool release_as(ipc::SlotState to);

 private:
  CallPath& path_;
  uint32_t slot_;
  uint64_t word_;
  bool held_ = true;
};

}  // namespace shmpool::detail
