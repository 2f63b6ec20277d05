#include "pool/src/call_path.h"

#include "ipc/checkout_queue.h"
#include "ipc/slot_table.h"
#include "pool/src/async_engine.h"
#include "pool/src/child_watch.h"
#include "pool/src/stale_segment.h"

namespace shmpool::detail {

CallPath::CallPath(std::shared_ptr<ipc::Segment> seg, std::shared_ptr<ArenaHandle> arena,
                   ipc::SessionTable sessions, CallSettings settings, CallRole& role,
                   const std::atomic<bool>* abandon)
    : seg_(std::move(seg)),
      arena_(std::move(arena)),
      sessions_(sessions),
      settings_(std::move(settings)),
      role_(role),
      table_(*seg_),
      waiter_count_(ipc::claim_waiter_count(seg_->header().queue, settings_.self_pid)),
      abandon_(abandon) {
  for (uint32_t i = 0; i < seg_->slot_count(); ++i) {
    channels_.push_back(std::make_unique<ShmChannel>(seg_.get(), i, settings_.policy, arena_));
    channels_.back()->set_abandon_flag(abandon);
  }
}

// ---- the call ----

Expected<Reply> CallPath::execute_in_session(std::string_view session_id, std::string_view command,
                                             const Args& args, const ExecOptions& opt) {
  if (session_id.empty()) {
    return count(with_context(
        make_error(Category::config_error, "invalid_session_id", "session id must not be empty"),
        {}));
  }
  return execute(session_id, command, args, opt);
}

CallPath::~CallPath() {
  stop_async(make_error(Category::resource_error, std::string(kPoolNotAvailable),
                        "the pool or client was destroyed"));
}

std::optional<Error> CallPath::admit(std::string_view session_id) {
  if (!session_id.empty() && !ipc::valid_session_id(session_id)) {
    return count(
        with_context(make_error(Category::config_error, "invalid_session_id",
                                "session ids are 1-64 printable ASCII bytes without spaces"),
                     {})
            .with("session_id_length", std::to_string(session_id.size())));
  }
  if (auto refused = role_.refuse()) return count(with_context(std::move(*refused), session_id));
  return std::nullopt;
}

Expected<Reply> CallPath::execute(std::string_view session_id, std::string_view command,
                                  const Args& args, const ExecOptions& opt) {
  const int64_t t0 = ipc::monotonic_ns();
  if (auto refused = admit(session_id)) return std::move(*refused);
  const auto checkout_timeout = opt.checkout_timeout.value_or(settings_.checkout_timeout);
  const auto op_timeout = opt.operation_timeout.value_or(settings_.operation_timeout);
  auto co = checkout(session_id, opt.affinity, t0 + ms_to_ns(checkout_timeout), checkout_timeout);
  if (!co.ok()) {
    if (co.error().type != kPoolNotAvailable) record_session(session_id, -1, true);
    return count(co.error());
  }
  SlotLease lease(*this, co->slot, co->word);
  ShmChannel& channel = lease.channel();
  CallSpec spec;
  spec.id = channel.next_request_id();
  spec.session_id = session_id;
  spec.command = command;
  spec.args = args;
  spec.payload = opt.payload;
  spec.body = opt.body;
  // The operation timeout starts now: after the checkout wait, if any.
  spec.deadline_ns = (co->waited ? ipc::monotonic_ns() : t0) + ms_to_ns(op_timeout);
  return settle(lease, session_id, command, channel.call(spec), t0, op_timeout, false, false);
}

Expected<Reply> CallPath::settle(SlotLease& lease, std::string_view session_id,
                                 std::string_view command, Expected<Reply> r, int64_t t0,
                                 std::chrono::milliseconds op_timeout, bool keep, bool replace) {
  const uint32_t i = lease.slot();
  ipc::SlotData& sd = lease.data();
  // The latency summary samples calls (a clock read costs 40 ns on a KVM
  // guest, a few % of a call): each thread's first 16, then 1 in 8, and
  // every failed one. Last activity takes the coarse clock.
  thread_local uint32_t t_calls = 0;
  const bool timed = !r.ok() || t_calls < 16 || (t_calls & 7) == 0;
  ++t_calls;
  const int64_t t1 = timed ? ipc::monotonic_ns() : ipc::coarse_monotonic_ns();
  sd.last_activity_ns.store(t1, std::memory_order_relaxed);
  if (timed) latency_.add(t1 - t0);
  if (r.ok() && !replace) {
    ipc::bump(sd.successes);  // we still hold the slot
    if (!keep) {
      role_.on_success(lease);
      lease.checkin();
    }
    record_session(session_id, int32_t(i), false);
    return r;
  }
  ipc::bump(sd.errors);  // we still hold the slot
  Error e = with_context(r.ok() ? make_error(Category::cancelled, "cancelled", "call cancelled")
                                : r.error(),
                         session_id, int(i), sd.worker_pid.load(std::memory_order_relaxed));
  // The owner is gone (a guest's call): its workers follow, nobody counts.
  if (e.type == kPoolNotAvailable) return e;
  e.with("command", std::string(command));
  if (e.type == kWorkerGone) {
    // How it exited, as the owner published it (any process's caller).
    const ExitInfo exit{sd.exit_code.load(std::memory_order_relaxed),
                        sd.exit_signal.load(std::memory_order_relaxed)};
    if (exit.signal != 0) {
      e.with("exit_signal", std::to_string(exit.signal));
    } else if (exit.exit_code >= 0) {
      e.with("exit_code", std::to_string(exit.exit_code));
    }
    if (exit.signal != 0 || exit.exit_code >= 0) e.with("exit", exit.describe());
  }
  if (replace || worker_must_be_replaced(e)) {
    // Dead before anyone else can check it out: the owner kills the worker
    // if it still runs (it may answer late), reaps it and starts another.
    lease.release_as(ipc::SlotState::dead);
    role_.on_worker_failed(i, e, op_timeout);
    if (e.type == kOperationTimeout) timeouts_.fetch_add(1, std::memory_order_relaxed);
  } else if (!keep) {
    lease.checkin();
  }
  record_session(session_id, int32_t(i), true);
  return count(std::move(e));
}

// ---- async calls and streams (async_engine.h) ----

AsyncEngine* CallPath::engine() {
  if (AsyncEngine* e = engine_ptr_.load(std::memory_order_acquire)) return e;
  std::lock_guard lock(async_m_);
  if (!async_ && !async_stopped_) {
    async_ = std::make_shared<AsyncEngine>(*this);
    engine_weak_ = async_;
    engine_ptr_.store(async_.get(), std::memory_order_release);  // publishes engine_weak_
  }
  return async_.get();
}

namespace {
// An op that failed before it reached the engine: its Call is ready at once
// and its callback runs here.
std::shared_ptr<AsyncOp> failed_op(std::shared_ptr<AsyncOp> op, Error e) {
  if (op->on_complete) op->on_complete(Expected<Reply>(e));
  Expected<Reply> r(std::move(e));
  if (op->consume) op->consume(std::move(r));
  op->result = std::move(r);
  op->done = true;
  op->ready.store(true, std::memory_order_release);
  return op;
}
}  // namespace

std::shared_ptr<AsyncOp> CallPath::start_async(std::shared_ptr<AsyncOp> op,
                                               std::string_view session_id,
                                               std::string_view command, const Args& args,
                                               const ExecOptions& opt) {
  op->t0 = ipc::monotonic_ns();
  if (auto refused = admit(session_id)) return failed_op(std::move(op), std::move(*refused));
  op->session = std::string(session_id);
  op->command = std::string(command);
  if (args.data() != empty_args().data()) op->args = args;  // (empty: sent as no args)
  op->opt = opt;
  // A payload in one of our arena blocks is read in place (the caller keeps
  // the PayloadBuffer alive); any other is copied now.
  if (!opt.payload.empty() && !(arena_ && in_own_block(*arena_, opt.payload))) {
    op->payload_copy.assign(opt.payload.begin(), opt.payload.end());
    op->opt.payload = op->payload_copy;
  }
  op->body_copy.assign(opt.body.begin(), opt.body.end());
  op->opt.body = op->body_copy;
  op->checkout_timeout = opt.checkout_timeout.value_or(settings_.checkout_timeout);
  op->op_timeout = opt.operation_timeout.value_or(settings_.operation_timeout);
  op->cancel_grace = opt.cancel_grace.value_or(settings_.cancel_grace);
  AsyncEngine* engine = this->engine();
  if (!engine) {  // stopped before any async call: there is no engine to say so
    std::lock_guard lock(async_m_);
    return failed_op(std::move(op), with_context(*async_stopped_, session_id));
  }
  op->engine = engine_weak_;
  engine->submit(op);  // a stopped engine fails it with the reason
  return op;
}

Call CallPath::call_async(std::string_view session_id, std::string_view command,
                          const Args& args, const ExecOptions& opt,
                          CompletionCallback on_complete,
                          std::function<void(Expected<Reply>&&)> consume) {
  auto op = std::make_shared<AsyncOp>();
  op->on_complete = std::move(on_complete);
  op->consume = std::move(consume);
  return Call(start_async(std::move(op), session_id, command, args, opt));
}

Stream CallPath::stream(std::string_view session_id, std::string_view command, const Args& args,
                        const ExecOptions& opt) {
  auto op = std::make_shared<AsyncOp>();
  op->stream = true;
  return Stream(start_async(std::move(op), session_id, command, args, opt));
}

std::future<Expected<Reply>> CallPath::submit(std::string_view session_id,
                                              std::string_view command, const Args& args,
                                              const ExecOptions& opt) {
  auto promise = std::make_shared<std::promise<Expected<Reply>>>();
  auto future = promise->get_future();
  call_async(session_id, command, args, opt, {},
             [promise](Expected<Reply>&& r) { promise->set_value(std::move(r)); });
  return future;
}

int CallPath::completion_fd() {
  AsyncEngine* engine = this->engine();
  return engine ? engine->completion_fd() : -1;
}

void CallPath::wake_async() {
  std::lock_guard lock(async_m_);
  if (async_) async_->wake();
}

void CallPath::stop_async(const Error& why) {
  std::shared_ptr<AsyncEngine> engine;
  {
    std::lock_guard lock(async_m_);
    if (async_stopped_) return;
    async_stopped_ = why;
    engine = async_;  // it stays until the CallPath goes: calls made meanwhile fail with `why`
  }
  if (!engine) return;
  // The checkout thread may wait in the queue: end its wait.
  async_closing_.store(true, std::memory_order_release);
  ipc::wake_all(seg_->header().queue);
  seg_->header().slots_changed.ring();
  engine->stop(why);
}

bool SlotLease::checkin() {
  if (!held_) return false;
  held_ = false;
  return path_.table_.checkin(slot_, word_);
}

bool SlotLease::release_as(ipc::SlotState to) {
  if (!held_) return false;
  held_ = false;
  return path_.table_.release_as(slot_, word_, to);
}

// ---- checkout ----

bool CallPath::try_slot(uint32_t i, uint64_t owner, Checkout* co) {
  if (!table_.try_checkout(i, owner, &co->word)) return false;
  if (seg_->slot(i).worker_alive.load(std::memory_order_acquire) != 0) {
    co->slot = i;
    return true;
  }
  table_.release_as(i, co->word, ipc::SlotState::dead);
  return false;
}

bool CallPath::scan(uint64_t owner, Checkout* co) {
  // This thread's last slot first: with few callers the same workers stay
  // hot (still polling) while the others go to sleep, which matters on few
  // cores. Then the others, from a rotating start (spreads threads).
  thread_local uint32_t last_slot = 0, rotation = 0;
  const uint32_t n = seg_->slot_count();
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

bool CallPath::any_idle() const {
  for (uint32_t i = 0; i < seg_->slot_count(); ++i) {
    if (ipc::slot_state(seg_->slot(i).state.load(std::memory_order_acquire)) ==
        ipc::SlotState::idle)
      return true;
  }
  return false;
}

uint64_t CallPath::next_owner() {
  return uint64_t(uint32_t(settings_.self_pid)) << 32 |
         (settings_.token_base + next_token_.fetch_add(1, std::memory_order_relaxed));
}

bool CallPath::try_checkout(std::string_view session_id, bool affinity, uint64_t owner,
                            Checkout* co) {
  if (!ipc::may_barge(seg_->header().queue)) return false;
  if (affinity && !session_id.empty()) {
    const int32_t last = sessions_.last_slot(session_id);
    if (last >= 0 && uint32_t(last) < seg_->slot_count() && try_slot(uint32_t(last), owner, co))
      return true;
  }
  return scan(owner, co);
}

Expected<CallPath::Checkout> CallPath::checkout(std::string_view session_id, bool affinity,
                                                int64_t deadline,
                                                std::chrono::milliseconds timeout) {
  const uint64_t owner = next_owner();
  ipc::CheckoutQueue& q = seg_->header().queue;
  Checkout co;
  if (try_checkout(session_id, affinity, owner, &co)) return co;
  co.waited = true;
  role_.on_checkout_wait();
  // kNoTicket: the queue is full; this caller waits outside it, unfairly.
  const uint64_t ticket = ipc::take_ticket(q, settings_.self_pid);
  // The owner's demand signal and status().queue_length, counted for this
  // process (a process that dies waiting is forgotten by the owner).
  ipc::add_waiting(q, waiter_count_);
  // However this returns: out of the queue (passing the turn if it is ours).
  struct Exit {
    ipc::CheckoutQueue& q;
    ipc::WaiterCount* count;
    uint64_t ticket;
    bool hungry = false;
    ~Exit() {
      if (hungry) q.hungry.store(0, std::memory_order_relaxed);
      if (ticket != ipc::kNoTicket) ipc::leave(q, ticket);
      ipc::remove_waiting(q, count);
    }
  } exit{q, waiter_count_, ticket};
  auto blocked = [this] {
    return role_.checkout_blocked() || async_closing_.load(std::memory_order_acquire);
  };
  int64_t turn_since = 0;               // when this caller got the turn
  thread_local ipc::SpinBudget budget;  // this thread's checkout waits (spin_budget.h)
  const ipc::WaitPolicy wait = ipc::with_budget(settings_.checkout_policy, budget);
  for (;;) {
    if (blocked()) {
      if (async_closing_.load(std::memory_order_acquire) && !role_.checkout_blocked()) {
        std::lock_guard lock(async_m_);
        return with_context(*async_stopped_, session_id);
      }
      return with_context(role_.blocked_error(), session_id);
    }
    const bool reached = ticket == ipc::kNoTicket || ipc::turn_reached(q, ticket);
    if (reached && scan(owner, &co)) return co;
    const int64_t now = ipc::monotonic_ns();
    if (now >= deadline) {
      seg_->header().checkout_timeouts.fetch_add(1, std::memory_order_relaxed);
      timeouts_.fetch_add(1, std::memory_order_relaxed);
      return with_context(
          make_error(Category::timeout_error, "checkout_timeout", "No workers available")
              .with("checkout_timeout_ms", std::to_string(timeout.count())),
          session_id);
    }
    if (!reached) {
      // Sleep on our own entry until the callers before us are served.
      ipc::wait_turn(q, ticket, deadline, wait, blocked);
      continue;
    }
    const bool holder = ticket != ipc::kNoTicket && ipc::is_turn(q, ticket);
    if (holder && !exit.hungry) {
      if (turn_since == 0) turn_since = now;
      if (now < turn_since + ipc::kBargeWindowNs) {
        // The barging window: running callers keep the workers busy while
        // we sleep (woken early only by wake_all).
        ipc::wait_until(q.entries[ticket % ipc::kQueueEntries].bell, blocked,
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
        seg_->header().slots_changed, [&] { return any_idle() || blocked(); }, deadline, wait);
  }
}

// ---- errors, sessions, events ----

int64_t CallPath::session_now() const {
  return settings_.clock ? settings_.clock() : ipc::monotonic_ns();
}

Error CallPath::with_context(Error e, std::string_view session_id, int slot, pid_t pid) const {
  e.with("pool_name", settings_.pool_name);
  if (!session_id.empty()) e.with("session_id", std::string(session_id));
  if (slot >= 0) e.with("slot", std::to_string(slot));
  if (pid > 0) e.with("worker_pid", std::to_string(pid));
  return e;
}

Error CallPath::count(Error e) const {
  if (e.type == kPoolNotAvailable) return e;
  seg_->header().errors_by_category[int(e.category)].fetch_add(1, std::memory_order_relaxed);
  if (settings_.on_event && e.category == Category::timeout_error) emit(timeout_event(e));
  return e;
}

void CallPath::record_session(std::string_view id, int32_t slot, bool failed) {
  if (id.empty()) return;
  bool created = false;
  if (sessions_.record(id, session_now(), slot, failed, &created) == ipc::Errc::ring_full) {
    seg_->header().session_table_full.fetch_add(1, std::memory_order_relaxed);
  }
  if (created) {
    emit({PoolEvent::Kind::session_created, ipc::monotonic_ns(), slot, 0, std::string(id), {}});
  }
}

Status CallPath::end_session(std::string_view id) {
  if (!sessions_.remove(id)) {
    return with_context(make_error(Category::config_error, "unknown_session", "no such session"),
                        id);
  }
  emit({PoolEvent::Kind::session_ended, ipc::monotonic_ns(), -1, 0, std::string(id), {}});
  return {};
}

std::optional<SessionInfo> CallPath::session(std::string_view id) const {
  ipc::SessionSnapshot snap;
  if (!ipc::valid_session_id(id) || !sessions_.find(id, &snap)) return std::nullopt;
  return session_info(snap);
}

std::vector<SessionInfo> CallPath::list_sessions() const {
  std::vector<SessionInfo> out;
  for (auto& s : sessions_.list()) out.push_back(session_info(s));
  return out;
}

}  // namespace shmpool::detail
