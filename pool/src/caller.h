// caller.h: what every process that calls a pool does alike, the owner
// (Pool) and any other process (Client): error context, the statistics kept
// in the segment, session records and the events they raise.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ipc/segment.h"
#include "ipc/session_table.h"
#include "ipc/wait.h"
#include "pool/src/arena_handle.h"
#include "shmpool/error.h"
#include "shmpool/pool.h"

namespace shmpool::detail {

struct Caller {
  virtual ~Caller() = default;

  std::string pool_name;
  std::shared_ptr<ipc::Segment> seg;
  std::shared_ptr<ArenaHandle> arena;  // set once seg is
  ipc::SessionTable sessions;
  EventCallback on_event;
  std::function<int64_t()> clock;  // session timestamps (ns); empty: CLOCK_MONOTONIC

  int64_t session_now() const;
  // Adds pool_name and, when known, session_id, slot and worker_pid.
  Error with_context(Error e, std::string_view session_id, int slot = -1, pid_t pid = 0) const;
  // Counts a failed call in the segment (and raises call_timed_out).
  Error count(Error e);
  // Counts one call on a session (none for an anonymous call), raising
  // session_created for its first.
  void record_session(std::string_view id, int32_t slot, bool failed);
  void emit(PoolEvent e) const;  // to on_event; its exceptions are swallowed

  // A slot's state, as its state word says now (acquire: pairs with the
  // transitions' releases).
  ipc::SlotState state_of(uint32_t i) const {
    return ipc::slot_state(seg->slot(i).state.load(std::memory_order_acquire));
  }

  // ---- checkout ----
  struct Checkout {
    uint32_t slot = 0;
    uint64_t word = 0;
    bool waited = false;  // it waited for a worker (the call's clock moved)
  };
  pid_t self_pid = 0;               // this process (getpid() is a system call)
  uint32_t token_base = 0;          // keeps this process's tokens apart from others'
  ipc::WaitPolicy checkout_policy;  // how a waiting caller polls before sleeping
  // Checks a worker out: directly when nobody waits, else through the
  // segment's queue (ipc/checkout_queue.h), in arrival order, until
  // `deadline`. Errors: checkout_timeout, or what checkout_blocked() says.
  Expected<Checkout> checkout(std::string_view session_id, bool affinity, int64_t deadline,
                              std::chrono::milliseconds timeout);
  // True when waiting for a worker is pointless (shutting down, owner gone,
  // workers cannot start); polled while waiting. checkout_blocked_error()
  // then says why.
  virtual bool checkout_blocked() const = 0;
  virtual Error checkout_blocked_error() = 0;
  // Called once when a call starts waiting for a worker.
  virtual void on_checkout_wait() {}
  // Counted when a call times out waiting for a worker.
  virtual void on_checkout_timeout() {}

  Status end_session(std::string_view id);
  std::optional<SessionInfo> session(std::string_view id) const;
  std::vector<SessionInfo> list_sessions() const;

 private:
  // Slot i checked out with a live worker; a slot whose worker died while
  // idle goes to the owner for a restart.
  bool try_slot(uint32_t i, uint64_t owner, Checkout* co);
  bool scan(uint64_t owner, Checkout* co);
  bool any_idle() const;
  std::atomic<uint32_t> next_token_{1};
};

}  // namespace shmpool::detail
