// call.cc: the handles of async calls and streams (shmpool/call.h); the
// work is the engine's (async_engine.h).
#include "shmpool/call.h"

#include "pool/src/async_engine.h"

namespace shmpool {

namespace {
std::shared_ptr<detail::AsyncEngine> engine_of(detail::AsyncOp& op) { return op.engine.lock(); }
}  // namespace

bool Call::ready() const { return op_ && op_->ready.load(std::memory_order_acquire); }

Expected<Reply>& Call::wait() & { return wait_result(); }

Expected<Reply>& Call::wait_result() {
  // Once ready, the result no longer changes: no lock.
  if (op_->ready.load(std::memory_order_acquire)) return *op_->result;
  if (auto engine = engine_of(*op_)) engine->await(*op_, 0);
  std::unique_lock lock(op_->m);
  op_->cv.wait(lock, [&] { return op_->done; });
  return *op_->result;
}

bool Call::wait_for(std::chrono::nanoseconds d) {
  if (!op_->ready.load(std::memory_order_acquire)) {
    if (auto engine = engine_of(*op_)) engine->await(*op_, ipc::monotonic_ns() + d.count());
  }
  std::unique_lock lock(op_->m);
  return op_->cv.wait_for(lock, d, [&] { return op_->done; });
}

bool Call::cancel() {
  if (!op_) return false;
  auto engine = engine_of(*op_);
  return engine && engine->cancel(*op_);
}

Stream& Stream::operator=(Stream&& o) noexcept {
  if (this != &o) {
    if (op_ && !finished_) cancel();
    op_ = std::move(o.op_);
    finished_ = o.finished_;
  }
  return *this;
}

Stream::~Stream() {
  if (op_ && !op_->ready.load(std::memory_order_acquire)) cancel();
}

bool Stream::cancel() {
  if (!op_) return false;
  auto engine = engine_of(*op_);
  return engine && engine->cancel(*op_);
}

Expected<std::optional<Reply>> Stream::next(std::optional<std::chrono::milliseconds> timeout) {
  if (!op_) return make_error(Category::config_error, "no_stream", "this Stream holds no stream");
  if (auto engine = engine_of(*op_)) {
    engine->await(*op_, timeout ? ipc::monotonic_ns() + timeout->count() * 1'000'000 : 0);
  }
  std::unique_lock lock(op_->m);
  auto there = [&] { return !op_->items.empty() || op_->done; };
  if (!timeout) {
    op_->cv.wait(lock, there);
  } else if (!op_->cv.wait_for(lock, *timeout, there)) {
    return make_error(Category::timeout_error, "next_timeout", "no stream item came in time")
        .with("timeout_ms", std::to_string(timeout->count()));
  }
  if (!op_->items.empty()) {
    auto [reply, bytes] = std::move(op_->items.front());
    op_->items.pop_front();
    op_->items_bytes -= bytes;
    op_->items_ready.store(uint32_t(op_->items.size()), std::memory_order_release);
    lock.unlock();
    if (auto engine = engine_of(*op_)) engine->took(*op_, bytes);
    return std::optional<Reply>(std::move(reply));
  }
  finished_ = true;
  const Expected<Reply>& end = *op_->result;
  if (end.ok()) return std::optional<Reply>();
  return end.error();
}

void Stream::iterator::advance() {
  cur_.reset();
  if (!s_ || s_->done()) return;
  auto n = s_->next();
  if (!n.ok()) {
    cur_.emplace(n.error());
  } else if (n.value()) {
    cur_.emplace(std::move(*n.value()));
  }
}

}  // namespace shmpool
