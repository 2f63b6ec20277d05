// call.h: calls that do not block their caller, and streams of results.
//
//   Call c = pool->call_async("s1", "predict", args);   // returns at once
//   ...                                                  // many may be in flight
//   Expected<Reply>& r = c.wait();                       // or wait_for, ready, a callback
//
//   Stream s = pool->stream("s1", "tokens", args);       // a generator handler
//   for (Expected<Reply>& item : s) { ... }              // items as they come
//
// No thread per call: a pool (or client) keeps one completion thread that
// reads every in-flight call's replies, and one that waits for workers for
// calls that found none free. Calls from one thread run on several workers
// at once and, when all are taken, queue in a worker's request ring
// (pipelining, up to 64 per worker); each worker answers in order.
//
// Cancellation: cancel() ends the call with cancelled/cancelled. A call
// its worker has not started never runs its handler; a running handler
// sees ctx.cancelled turn true, and a generator is closed at its next
// yield (GeneratorExit: its `finally` runs). A handler still running after
// the cancel grace (ExecOptions::cancel_grace, default 1 s) is killed and
// its worker replaced, as after an operation timeout.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <iterator>
#include <memory>
#include <optional>

#include "shmpool/error.h"
#include "shmpool/reply.h"

namespace shmpool {

namespace detail {
struct AsyncOp;
}

// Runs once when an async call ends, on the pool's completion thread (or
// on the calling thread when the call fails before it is sent, e.g. an
// invalid session id). Keep it short and never wait on another Call or
// Stream from it: it holds up every other completion.
using CompletionCallback = std::function<void(const Expected<Reply>&)>;

// The handle of an async call. Copies share the call. Dropping every copy
// does not cancel the call; it runs to its end unobserved.
class Call {
 public:
  Call() = default;  // no call: valid() is false
  explicit Call(std::shared_ptr<detail::AsyncOp> op) : op_(std::move(op)) {}

  bool valid() const { return op_ != nullptr; }
  // True once the result is there (never blocks).
  bool ready() const;
  // Waits for the result; it stays in the Call (move it out if you like).
  Expected<Reply>& wait() &;
  // On a temporary (`pool->call_async(...).wait()`): the result itself.
  Expected<Reply> wait() && { return std::move(wait_result()); }
  // Waits at most `d`; true if the result is there.
  bool wait_for(std::chrono::nanoseconds d);
  // Ends the call with cancelled/cancelled unless it has ended already
  // (then it has no effect and returns false). See the top for what the
  // handler sees.
  bool cancel();

 private:
  Expected<Reply>& wait_result();
  std::shared_ptr<detail::AsyncOp> op_;
};

// The items of a streaming call (a handler that is a Python generator, or
// calls ctx.send). Move-only; dropping a Stream that has not ended cancels it.
//
// Backpressure: at most ExecOptions::stream_window_items items (default 16)
// and stream_window_bytes bytes (default 16 MiB; one item always fits) are
// sent and not yet taken with next(); a generator that runs ahead waits in
// its yield. Deadlines: operation_timeout bounds the wait for each item (it
// restarts with every item sent or taken), stream_timeout (default none)
// the whole stream; past either the worker is replaced and the stream ends
// with timeout_error/operation_timeout.
class Stream {
 public:
  Stream() = default;
  explicit Stream(std::shared_ptr<detail::AsyncOp> op) : op_(std::move(op)) {}
  Stream(Stream&&) noexcept = default;
  Stream& operator=(Stream&& o) noexcept;
  ~Stream();

  // The next item; std::nullopt at the end; the stream's error (after its
  // items: a handler exception, worker_crashed, cancelled, ...) once it has
  // failed. Each returns again once the stream is over. With a timeout,
  // timeout_error/next_timeout when no item came in time (the stream goes on).
  Expected<std::optional<Reply>> next(
      std::optional<std::chrono::milliseconds> timeout = std::nullopt);
  // True once next() has returned the end or the stream's error.
  bool done() const { return finished_; }
  // Cancels the stream (see Call::cancel): items not taken yet are
  // dropped and next() returns cancelled/cancelled. False if it had ended.
  bool cancel();

  // for (Expected<Reply>& item : stream): every item, then the stream's
  // error as a last element if it failed.
  class iterator {
   public:
    using value_type = Expected<Reply>;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    explicit iterator(Stream* s) : s_(s) { advance(); }
    Expected<Reply>& operator*() { return *cur_; }
    iterator& operator++() {
      advance();
      return *this;
    }
    void operator++(int) { advance(); }
    bool operator==(std::default_sentinel_t) const { return !cur_.has_value(); }

   private:
    void advance();
    Stream* s_ = nullptr;
    std::optional<Expected<Reply>> cur_;
  };
  iterator begin() { return iterator(this); }
  std::default_sentinel_t end() { return {}; }

 private:
  std::shared_ptr<detail::AsyncOp> op_;
  bool finished_ = false;
};

}  // namespace shmpool
