#include "pool/src/async_engine.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>

#include "ipc/checkout_queue.h"
#include "pool/src/call_path.h"

namespace shmpool::detail {

namespace {
constexpr int64_t kIdleSliceNs = 100'000'000;  // the longest sleep without a look at the clock
constexpr int64_t kPollSliceNs = 1'000'000;    // without a bell in the segment

Error cancelled_error(const char* why) {
  return make_error(Category::cancelled, "cancelled", why);
}
}  // namespace

AsyncEngine::AsyncEngine(CallPath& path)
    : path_(path), bell_(&local_bell_), budget_(path.settings().policy.spin_ns) {
  if (path_.waiter_count_) {
    bell_ = &path_.waiter_count_->completions;
    notify_ = uint32_t(path_.waiter_count_ - path_.seg_->header().queue.waiters.by_process) + 1;
  }
}

AsyncEngine::~AsyncEngine() {
  if (const int fd = event_fd_.load(std::memory_order_relaxed); fd >= 0) ::close(fd);
}

void AsyncEngine::start_threads() {
  if (started_) return;
  started_ = true;
  completer_ = std::thread([this] { run_completions(); });
  checkouter_ = std::thread([this] { run_checkouts(); });
}

// ---- submission ----

void AsyncEngine::submit(const std::shared_ptr<AsyncOp>& op) {
  Done done;
  {
    std::lock_guard lock(m_);
    if (stopping_) {
      finish(*op, path_.with_context(*stopped_, op->session), done, op);
    } else {
      start_threads();
      if (!place(op, done)) {
        op->phase = AsyncOp::Phase::queued;
        op->checkout_deadline = op->t0 + ms_to_ns(op->checkout_timeout);
        pending_.push_back(op);
        checkout_cv_.notify_one();
      }
    }
  }
  deliver(done);
}

bool AsyncEngine::others_waiting() const {
  const ipc::CheckoutQueue& q = path_.seg_->header().queue;
  return q.next.load(std::memory_order_acquire) != q.serving.load(std::memory_order_acquire);
}

bool AsyncEngine::pool_can_grow() const {
  for (uint32_t i = 0; i < path_.seg_->slot_count(); ++i) {
    const ipc::SlotState st =
        ipc::slot_state(path_.seg_->slot(i).state.load(std::memory_order_acquire));
    if (st == ipc::SlotState::empty || st == ipc::SlotState::starting) return true;
  }
  return false;
}

bool AsyncEngine::shareable(const Pipeline& p) const {
  return p.lease->held() && !p.exclusive && !p.ops.empty() && p.ops.size() < ipc::kMaxInFlight;
}

bool AsyncEngine::place(const std::shared_ptr<AsyncOp>& op, Done& done) {
  if (!pending_.empty() || others_waiting()) return false;  // in turn behind them
  // A free worker (the session's last first, as a synchronous call); else,
  // not a stream, the pipeline with the fewest calls.
  CallPath::Checkout co;
  if (path_.try_checkout(op->session, op->opt.affinity, path_.next_owner(), &co)) {
    Pipeline& p = add_pipeline(co.slot, co.word);
    send(p, op, done);
    drop_released_pipelines();
    return true;
  }
  // Behind another call only when the pool has no worker to start (a lazy
  // or overflow one): waiting in the queue asks the owner for one.
  if (op->stream || pool_can_grow()) return false;
  Pipeline* best = nullptr;
  for (Pipeline& p : pipes_) {
    if (shareable(p) && (!best || p.ops.size() < best->ops.size())) best = &p;
  }
  if (!best) return false;
  send(*best, op, done);
  return true;
}

Pipeline& AsyncEngine::add_pipeline(uint32_t slot, uint64_t word) {
  Pipeline& p = pipes_.emplace_back();
  p.lease = std::make_unique<SlotLease>(path_, slot, word);
  kick();  // the completion thread watches one more ring
  return p;
}

void AsyncEngine::send(Pipeline& p, const std::shared_ptr<AsyncOp>& op, Done& done) {
  ShmChannel& ch = p.lease->channel();
  const int64_t now = ipc::monotonic_ns();
  op->request_id = ch.next_request_id();
  CallSpec spec;
  spec.id = op->request_id;
  spec.session_id = op->session;
  spec.command = op->command;
  spec.args = op->args;
  spec.payload = op->opt.payload;
  spec.body = op->opt.body;
  spec.deadline_ns = now + ms_to_ns(op->op_timeout);
  spec.notify = notify_;
  spec.stream = op->stream;
  if (op->stream) {
    spec.window_items = std::max<uint32_t>(1, op->opt.stream_window_items);
    spec.window_bytes = std::max<uint64_t>(1, op->opt.stream_window_bytes);
  }
  op->temp.reset();
  if (Status sent = ch.send(spec, &op->temp); !sent.ok()) {
    // The worker never saw it: the call fails, the worker stays.
    Error e = path_.with_context(sent.error(), op->session, int(p.lease->slot()))
                  .with("command", op->command);
    path_.record_session(op->session, int32_t(p.lease->slot()), true);
    if (p.ops.empty()) p.lease->checkin();  // a new pipeline: nothing else on it
    finish(*op, path_.count(std::move(e)), done, op);
    return;
  }
  op->phase = AsyncOp::Phase::sent;
  op->pipe = &p;
  if (op->stream) p.exclusive = true;
  p.ops.push_back(op);
  if (p.ops.size() == 1) become_front(*op, now);
  if (op->stream && op->opt.stream_timeout) {
    op->stream_deadline = now + ms_to_ns(*op->opt.stream_timeout);
  }
}

void AsyncEngine::become_front(AsyncOp& op, int64_t now) {
  op.deadline = now + ms_to_ns(op.op_timeout);
  if (op.cancel_requested) op.grace_deadline = now + ms_to_ns(op.cancel_grace);
}

// ---- cancellation and stream credit ----

bool AsyncEngine::cancel(AsyncOp& op) {
  Done done;
  {
    std::lock_guard lock(m_);
    if (op.phase == AsyncOp::Phase::done || stopping_) return false;
    if (op.cancel_requested) return true;
    op.cancel_requested = true;
    if (op.phase == AsyncOp::Phase::queued) {
      auto it = std::find_if(pending_.begin(), pending_.end(),
                             [&](const auto& p) { return p.get() == &op; });
      std::shared_ptr<AsyncOp> ref = *it;
      pending_.erase(it);
      finish(op,
             path_.count(path_.with_context(cancelled_error("cancelled before it was sent"),
                                            op.session)
                             .with("command", op.command)),
             done, ref);
    } else {
      ipc::SlotData& sd = op.pipe->lease->data();
      sd.cancel[op.request_id % ipc::kMaxInFlight].store(op.request_id, std::memory_order_release);
      sd.credit.ring();  // a stream's worker may wait for room in its window
      if (op.pipe->ops.front().get() == &op) {
        op.grace_deadline = ipc::monotonic_ns() + ms_to_ns(op.cancel_grace);
      }
      {
        std::lock_guard op_lock(op.m);
        op.items.clear();  // dropped: their blocks go back to the arena
        op.items_bytes = 0;
        op.items_ready.store(0, std::memory_order_release);
      }
      kick();  // the completion thread's next deadline changed
    }
  }
  deliver(done);
  return true;
}

void AsyncEngine::took(AsyncOp& op, uint64_t bytes) {
  std::lock_guard lock(m_);
  if (op.phase != AsyncOp::Phase::sent || stopping_) return;
  ipc::SlotData& sd = op.pipe->lease->data();
  sd.items_taken.fetch_add(1, std::memory_order_release);
  sd.bytes_taken.fetch_add(bytes, std::memory_order_release);
  sd.credit.ring();
  // Progress on the consumer's side: the wait for the next item starts now.
  if (op.pipe->ops.front().get() == &op) op.deadline = ipc::monotonic_ns() + ms_to_ns(op.op_timeout);
}

// ---- completions ----

void AsyncEngine::harvest(Pipeline& p, int64_t now, Done& done) {
  while (!p.ops.empty() && p.lease->held()) {
    AsyncOp& op = *p.ops.front();
    std::optional<Polled> got = p.lease->channel().poll_reply(op.request_id);
    if (!got) return;
    if (got->reply.ok() && got->more) {
      if (!op.stream) {
        finish_front(p,
                     make_error(Category::protocol_error, "unexpected_response",
                                "a stream item answered a call that is not a stream"),
                     true, now, done);
        return;
      }
      op.deadline = now + ms_to_ns(op.op_timeout);
      if (op.cancel_requested) continue;  // dropped (the worker stops at its next item)
      std::unique_lock op_lock(op.m);
      // A worker sends an item only while the window has room, so what is
      // here untaken stays under it; more is a broken (or hostile) worker,
      // and what a worker sends never grows this process's memory.
      if (op.items.size() >= std::max<uint32_t>(1, op.opt.stream_window_items) ||
          (!op.items.empty() && op.items_bytes >= op.opt.stream_window_bytes)) {
        op_lock.unlock();
        finish_front(p,
                     make_error(Category::protocol_error, "stream_window_exceeded",
                                "the worker sent stream items past the caller's window")
                         .with("window_items", std::to_string(op.opt.stream_window_items)),
                     true, now, done);
        return;
      }
      op.items_bytes += got->item_bytes;
      op.items.emplace_back(std::move(got->reply.value()), got->item_bytes);
      op.items_ready.store(uint32_t(op.items.size()), std::memory_order_release);
      op.cv.notify_all();
      done.items = true;
      continue;
    }
    finish_front(p, std::move(got->reply), false, now, done);
  }
}

void AsyncEngine::finish_front(Pipeline& p, Expected<Reply> r, bool replace, int64_t now,
                               Done& done) {
  std::shared_ptr<AsyncOp> op = std::move(p.ops.front());
  p.ops.pop_front();
  ipc::SlotData& sd = p.lease->data();
  if (op->cancel_requested) {
    // Cleared before the slot can change hands: no later call of this id is cancelled.
    uint64_t id = op->request_id;
    sd.cancel[id % ipc::kMaxInFlight].compare_exchange_strong(id, 0, std::memory_order_relaxed);
  }
  // A cancelled call ends cancelled, whatever its handler managed to return
  // (a crash or a timeout stays what it was: its worker must go).
  if (op->cancel_requested && (r.ok() || !worker_must_be_replaced(r.error()))) {
    r = cancelled_error(r.ok() ? "the call was cancelled (its handler returned)"
                               : "the call was cancelled");
  }
  const bool keep = !p.ops.empty();
  finish(*op,
         path_.settle(*p.lease, op->session, op->command, std::move(r), op->t0, op->op_timeout,
                      keep, replace),
         done, op);
  if (p.lease->held()) {
    if (!p.ops.empty()) become_front(*p.ops.front(), now);
    return;
  }
  // The worker went: the calls behind it never started. They queue again,
  // first, for another worker (a cancelled one ends now).
  while (!p.ops.empty()) {
    std::shared_ptr<AsyncOp> next = std::move(p.ops.back());
    p.ops.pop_back();
    next->pipe = nullptr;
    next->deadline = 0;
    next->temp.reset();
    if (next->cancel_requested) {
      finish(*next,
             path_.count(path_.with_context(cancelled_error("cancelled before it started"),
                                            next->session)
                             .with("command", next->command)),
             done, next);
      continue;
    }
    next->phase = AsyncOp::Phase::queued;
    next->checkout_deadline = now + ms_to_ns(next->checkout_timeout);
    pending_.push_front(std::move(next));
  }
  checkout_cv_.notify_one();
}

void AsyncEngine::expire(int64_t now, Done& done) {
  if (path_.abandoned()) {
    // The owner died: nothing will answer. Every call ends, nobody counts.
    const Error gone = make_error(Category::resource_error, std::string(kPoolNotAvailable),
                                  "the pool's owner process died");
    for (Pipeline& p : pipes_) {
      for (auto& op : p.ops) finish(*op, path_.with_context(gone, op->session), done, op);
      p.ops.clear();
      p.lease->release_as(ipc::SlotState::dead);
    }
    for (auto& op : pending_) finish(*op, path_.with_context(gone, op->session), done, op);
    pending_.clear();
    return;
  }
  for (Pipeline& p : pipes_) {
    if (p.ops.empty() || !p.lease->held()) continue;
    AsyncOp& op = *p.ops.front();
    const bool alive = p.lease->data().worker_alive.load(std::memory_order_acquire) != 0;
    if (!alive && !p.lease->channel().reply_readable()) {
      finish_front(p,
                   make_error(Category::worker_error, std::string(kWorkerGone),
                              "worker exited during the call"),
                   true, now, done);
    } else if (op.grace_deadline != 0 && now >= op.grace_deadline) {
      finish_front(p,
                   cancelled_error("the handler did not stop within the cancel grace: its "
                                   "worker was replaced"),
                   true, now, done);
    } else if ((op.deadline != 0 && now >= op.deadline) ||
               (op.stream_deadline != 0 && now >= op.stream_deadline)) {
      finish_front(p,
                   make_error(Category::timeout_error, std::string(kOperationTimeout),
                              op.stream ? "no stream item before the operation timeout (or the "
                                          "stream's timeout passed)"
                                        : "no reply before the operation timeout")
                       .with("operation_timeout_ms", std::to_string(op.op_timeout.count())),
                   true, now, done);
    }
  }
}

void AsyncEngine::expire_queued(int64_t now, Done& done) {
  for (auto it = pending_.begin(); it != pending_.end();) {
    AsyncOp& op = **it;
    if (now < op.checkout_deadline) {
      ++it;
      continue;
    }
    path_.seg_->header().checkout_timeouts.fetch_add(1, std::memory_order_relaxed);
    path_.timeouts_.fetch_add(1, std::memory_order_relaxed);
    path_.record_session(op.session, -1, true);
    Error e = path_.with_context(
        make_error(Category::timeout_error, "checkout_timeout", "No workers available")
            .with("checkout_timeout_ms", std::to_string(op.checkout_timeout.count())),
        op.session);
    std::shared_ptr<AsyncOp> ref = *it;
    it = pending_.erase(it);
    finish(op, path_.count(std::move(e)), done, ref);
  }
}

void AsyncEngine::drop_released_pipelines() {
  pipes_.remove_if([](const Pipeline& p) { return !p.lease->held() && p.ops.empty(); });
}

void AsyncEngine::finish(AsyncOp& op, Expected<Reply> r, Done& done,
                         const std::shared_ptr<AsyncOp>& ref) {
  op.phase = AsyncOp::Phase::done;
  op.pipe = nullptr;
  op.temp.reset();
  {
    std::lock_guard op_lock(op.m);
    op.result = std::move(r);
  }
  done.ops.push_back(ref);
}

void AsyncEngine::deliver(Done& done, bool from_driver) {
  for (auto& op : done.ops) {
    // The callback sees the result first; then waiters do.
    if (op->on_complete) {
      try {
        op->on_complete(*op->result);
      } catch (...) {
      }
    }
    std::lock_guard op_lock(op->m);
    if (op->consume) op->consume(std::move(*op->result));
    op->done = true;
    op->ready.store(true, std::memory_order_seq_cst);  // before drivers_ is read below
    op->cv.notify_all();
  }
  if (done.ops.empty() && !done.items) return;
  // Other callers driving in await() may sleep on the bell for one of
  // these (a caller that sleeps is counted in drivers_ first). Without
  // them, no ring: the bell's line stays with the workers that ring it.
  if (drivers_.load(std::memory_order_seq_cst) > (from_driver ? 1 : 0)) bell_->ring();
  if (const int fd = event_fd_.load(std::memory_order_acquire); fd >= 0) {
    const uint64_t one = 1;
    (void)!::write(fd, &one, sizeof one);
  }
  done.ops.clear();
  done.items = false;
}

int64_t AsyncEngine::next_deadline(int64_t now) const {
  int64_t next = now + (notify_ != 0 ? kIdleSliceNs : kPollSliceNs);
  for (const Pipeline& p : pipes_) {
    if (p.ops.empty()) continue;
    const AsyncOp& op = *p.ops.front();
    for (int64_t d : {op.deadline, op.grace_deadline, op.stream_deadline}) {
      if (d != 0) next = std::min(next, d);
    }
  }
  return next;
}

void AsyncEngine::kick() {
  kicked_.store(true, std::memory_order_release);
  bell_->ring();
}

void AsyncEngine::wake() {
  std::lock_guard lock(m_);
  kick();
}

void AsyncEngine::run_completions() {
  ipc::WaitPolicy policy = path_.settings().policy;
  policy.budget = &budget_;
  std::unique_lock lock(m_);
  std::vector<const ShmChannel*> watch;
  uint64_t drives_seen = 0;
  while (!stopping_) {
    const uint64_t drives = drives_.load(std::memory_order_acquire);
    if (drivers_.load(std::memory_order_acquire) > 0 || drives != drives_seen) {
      // Callers read the replies (await), or did within the last slice:
      // stand by. Taking over between two of a caller's waits would only
      // wake this thread for every reply and contend for the lock.
      drives_seen = drives;
      standby_cv_.wait_for(lock, std::chrono::milliseconds(1), [&] { return stopping_; });
      continue;
    }
    Done done;
    const int64_t now = ipc::monotonic_ns();
    collect(now, done, &watch);
    if (!done.ops.empty() || done.items) {
      lock.unlock();
      deliver(done);
      lock.lock();
      continue;
    }
    const int64_t until = next_deadline(now);
    const ipc::WaitPolicy wait = wait_policy(watch, policy);  // under the lock: the rings' reader state
    lock.unlock();
    // The channels stay (the CallPath owns them); a released pipeline's
    // ring is only looked at, never read.
    ipc::wait_until(
        *bell_,
        [&] {
          if (kicked_.load(std::memory_order_acquire)) return true;
          for (const ShmChannel* c : watch) {
            if (c->reply_readable()) return true;
          }
          return false;
        },
        until, wait);
    kicked_.store(false, std::memory_order_relaxed);
    lock.lock();
  }
}

void AsyncEngine::collect(int64_t now, Done& done, std::vector<const ShmChannel*>* watch) {
  for (Pipeline& p : pipes_) harvest(p, now, done);
  expire(now, done);
  drop_released_pipelines();
  watch->clear();
  for (const Pipeline& p : pipes_) {
    if (!p.ops.empty()) watch->push_back(&p.lease->channel());
  }
}

ipc::WaitPolicy AsyncEngine::wait_policy(const std::vector<const ShmChannel*>& watch,
                                         ipc::WaitPolicy policy) const {
  if (watch.empty()) return ipc::WaitPolicy{ipc::WaitStrategy::block, 0};
  // One worker awaited: poll only while it may be running (wait.h,
  // beside_peer): not when it last ran on this thread's CPU.
  if (watch.size() == 1) policy.peer_cpu = watch.front()->worker_cpu();
  return policy;
}

bool AsyncEngine::await(AsyncOp& op, int64_t deadline_ns) {
  auto there = [&] {
    return op.ready.load(std::memory_order_acquire) ||
           op.items_ready.load(std::memory_order_acquire) > 0;
  };
  if (there()) return true;
  drivers_.fetch_add(1, std::memory_order_seq_cst);  // before `op` is looked at again
  drives_.fetch_add(1, std::memory_order_relaxed);
  // Leaving does not wake the completion thread: a caller that drives
  // usually comes back at once (the next wait), and each wake-up costs
  // both a switch. It looks again within its standby slice.
  struct Leave {
    AsyncEngine* e;
    ~Leave() { e->drivers_.fetch_sub(1, std::memory_order_acq_rel); }
  } leave{this};
  std::vector<const ShmChannel*> watch;
  for (;;) {
    Done done;
    int64_t until = 0;
    ipc::WaitPolicy policy;
    {
      std::lock_guard lock(m_);
      if (stopping_) return there();
      const int64_t now = ipc::monotonic_ns();
      collect(now, done, &watch);
      until = next_deadline(now);
      policy = wait_policy(watch, path_.settings().policy);
    }
    deliver(done, /*from_driver=*/true);
    if (there()) return true;
    if (deadline_ns != 0) {
      if (ipc::monotonic_ns() >= deadline_ns) return false;
      until = std::min(until, deadline_ns);
    }
    // The channels stay while this engine runs (stop() waits for drivers).
    ipc::wait_until(
        *bell_,
        [&] {
          if (there() || stop_flag_.load(std::memory_order_acquire)) return true;
          for (const ShmChannel* c : watch) {
            if (c->reply_readable()) return true;
          }
          return false;
        },
        until, policy);
  }
}

void AsyncEngine::run_checkouts() {
  std::unique_lock lock(m_);
  while (!stopping_) {
    Done done;
    expire_queued(ipc::monotonic_ns(), done);
    if (!done.ops.empty()) {
      lock.unlock();
      deliver(done);
      lock.lock();
      continue;
    }
    if (pending_.empty()) {
      checkout_cv_.wait(lock);
      continue;
    }
    std::shared_ptr<AsyncOp> head = pending_.front();
    lock.unlock();
    // In turn with every other caller, as a synchronous call waits.
    auto co = path_.checkout(head->session, head->opt.affinity, head->checkout_deadline,
                             head->checkout_timeout);
    lock.lock();
    if (stopping_) {
      if (co.ok()) SlotLease(path_, co->slot, co->word).checkin();
      break;
    }
    if (!co.ok()) {
      if (!pending_.empty() && pending_.front() == head) {
        pending_.pop_front();
        if (co.error().type != kPoolNotAvailable) path_.record_session(head->session, -1, true);
        finish(*head, path_.count(co.error()), done, head);
      }
    } else {
      Pipeline& p = add_pipeline(co->slot, co->word);
      // The queue's first (whoever it is now), then more while the worker
      // may take them.
      while (!pending_.empty()) {
        std::shared_ptr<AsyncOp> op = pending_.front();
        if (!p.ops.empty() &&
            (p.exclusive || op->stream || !shareable(p) || others_waiting() || pool_can_grow()))
          break;
        pending_.pop_front();
        send(p, op, done);
        if (!p.lease->held()) break;
      }
      if (p.ops.empty() && p.lease->held()) p.lease->checkin();
      drop_released_pipelines();
    }
    lock.unlock();
    deliver(done);
    lock.lock();
  }
}

int AsyncEngine::completion_fd() {
  std::lock_guard lock(m_);
  int fd = event_fd_.load(std::memory_order_relaxed);
  if (fd < 0) {
    fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    event_fd_.store(fd, std::memory_order_release);
  }
  return fd;
}

void AsyncEngine::stop(const Error& why) {
  Done done;
  {
    std::lock_guard lock(m_);
    if (stopping_) return;
    stopping_ = true;
    stop_flag_.store(true, std::memory_order_release);
    stopped_ = why;
    for (Pipeline& p : pipes_) {
      for (auto& op : p.ops) finish(*op, path_.with_context(why, op->session), done, op);
      // Its worker is mid-call for a caller that left: the owner replaces it.
      if (!p.ops.empty() && p.lease->held()) {
        const uint32_t slot = p.lease->slot();
        p.lease->release_as(ipc::SlotState::dead);
        Error e = why;
        path_.role_.on_worker_failed(slot, e, std::chrono::milliseconds(0));
      }
      p.ops.clear();
    }
    pipes_.clear();
    for (auto& op : pending_) finish(*op, path_.with_context(why, op->session), done, op);
    pending_.clear();
    kick();
    checkout_cv_.notify_all();
    standby_cv_.notify_all();
  }
  // Callers in await() leave before the channels they watch can go.
  while (drivers_.load(std::memory_order_acquire) > 0) {
    bell_->ring();
    std::this_thread::yield();
  }
  if (completer_.joinable()) completer_.join();
  if (checkouter_.joinable()) checkouter_.join();
  deliver(done);
}

}  // namespace shmpool::detail
