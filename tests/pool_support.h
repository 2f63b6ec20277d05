// pool_support.h: what the pool tests (pool_*_test.cc) share: a small pool's
// configuration under a name no other test uses, starting it, waiting on its
// slots_changed doorbell, and the PoolTest fixture (the leak probe).
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>

#include "ipc/segment.h"
#include "ipc/sys.h"
#include "ipc/wait.h"
#include "shmpool/pool.h"
#include "tests/process_support.h"
#include "tests/test_support.h"

namespace shmpool::test {

// "p<tag>-<pid>-<n>": unique across this process and the test processes
// running beside it.
inline std::string unique_pool_name(const char* tag) {
  static std::atomic<int> n{0};
  return std::string("p") + tag + "-" + std::to_string(::getpid()) + "-" + std::to_string(n++);
}

// `size` workers and `overflow` more on demand, the test handlers, 1 MiB rings.
inline PoolConfig config(const char* tag, uint32_t size = 2, uint32_t overflow = 0) {
  PoolConfig c;
  c.name = unique_pool_name(tag);
  c.size = size;
  c.max_overflow = overflow;
  c.handler_modules = {SHMPOOL_TEST_HANDLERS};
  c.startup_timeout = std::chrono::seconds(30);
  c.request_ring_bytes = 1 << 20;
  c.response_ring_bytes = 1 << 20;
  return c;
}

// Waits until pred() holds, sleeping on the pool's slots_changed doorbell
// (rung on every slot transition but a checkout, and when shutdown begins)
// between checks; false at the deadline.
template <class Pred>
bool eventually(const Pool& pool, Pred pred,
                std::chrono::seconds limit = std::chrono::seconds(20)) {
  std::unique_ptr<ipc::Segment> seg;
  if (ipc::Segment::attach(pool.name(), &seg) != ipc::Errc::ok) return false;
  const int64_t deadline = ipc::monotonic_ns() + int64_t(limit.count()) * 1'000'000'000;
  return ipc::wait_until(seg->header().slots_changed, pred, deadline,
                         ipc::WaitPolicy{ipc::WaitStrategy::block, 0}) == ipc::WaitResult::ready;
}

// The started pool, or null (and a failed expectation) if it did not start.
inline std::unique_ptr<Pool> start(PoolConfig c) {
  auto p = Pool::start(std::move(c));
  EXPECT_TRUE(p.ok()) << (p.ok() ? "" : p.error().to_string());
  return p.ok() ? std::move(p.value()) : nullptr;
}

// A pool of one worker and no overflow, its output lines going to `log`
// (tests block the worker and wait for its "BLOCKING" line).
inline std::unique_ptr<Pool> start_one_worker(const char* tag, LogWatch& log) {
  PoolConfig c = config(tag, 1, 0);
  c.log = log.callback();
  return start(std::move(c));
}

class PoolTest : public LeakCheck {};

}  // namespace shmpool::test
