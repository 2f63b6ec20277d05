// Pool: workers recycled after a number of calls, past an age or a resident
// size, and the workers' malloc settings that decide how much memory they
// keep. Real Python workers.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <vector>

#include "shmpool/pool.h"
#include "tests/pool_support.h"
#include "tests/process_support.h"
#include "tests/test_support.h"

namespace shmpool {
namespace {

using test::config;
using test::eventually;
using test::PoolTest;
using test::start;

TEST_F(PoolTest, WorkersAreRecycledAfterMaxCalls) {
  PoolConfig c = config("recycle-calls", 1, 0);
  c.max_calls_per_worker = 2;
  auto pool = start(c);
  ASSERT_TRUE(pool);
  std::vector<int64_t> pids;
  for (int i = 0; i < 6; ++i) {
    auto r = pool->execute_anonymous("whoami");
    ASSERT_TRUE(r.ok()) << r.error().to_string();
    pids.push_back(r->value().AsMap()["pid"].AsInt64());
  }
  EXPECT_EQ(pids[0], pids[1]);
  EXPECT_NE(pids[1], pids[2]);
  EXPECT_EQ(pids[2], pids[3]);
  EXPECT_NE(pids[3], pids[4]);
  EXPECT_GE(pool->status().workers[0].recycled, 2u);
}

TEST_F(PoolTest, WorkersAreRecycledPastMaxAgeAndMaxRss) {
  PoolConfig c = config("recycle-rss", 1, 0);
  c.max_worker_rss_bytes = 4096;  // any Python process is larger
  auto pool = start(c);
  ASSERT_TRUE(pool);
  const pid_t first = pool->status().workers[0].pid;
  ASSERT_TRUE(eventually(*pool, [&] { return pool->status().workers[0].recycled >= 1; }));
  ASSERT_TRUE(pool->shutdown().ok());

  PoolConfig a = config("recycle-age", 1, 0);
  a.max_worker_age = std::chrono::milliseconds(1);
  auto aged = start(a);
  ASSERT_TRUE(aged);
  auto r1 = aged->execute_anonymous("whoami");
  ASSERT_TRUE(r1.ok());
  auto r2 = aged->execute_anonymous("whoami");  // waits for the replacement
  ASSERT_TRUE(r2.ok()) << r2.error().to_string();
  EXPECT_NE(r1->value().AsMap()["pid"].AsInt64(), r2->value().AsMap()["pid"].AsInt64());
  EXPECT_NE(first, 0);
}

// Handler speed: the workers' malloc keeps a large allocation on its heap
// (read back through mallinfo2 in the worker), and 0 restores glibc's
// defaults (it maps one of 16 MiB).
TEST_F(PoolTest, WorkersMallocKeepsLargeAllocationsUnlessTurnedOff) {
  const Args probe = make_args([](flexbuffers::Builder& b) { b.UInt("bytes", 16u << 20); });
  auto tuned = start(config("malloc-on", 1, 0));
  ASSERT_TRUE(tuned);
  auto r = tuned->execute_anonymous("malloc_probe", probe);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_FALSE(r->value().AsMap()["mmapped"].AsBool());
  EXPECT_EQ(r->value().AsMap()["env_mmap_threshold"].AsString().str(),
            std::to_string(kDefaultWorkerMallocThreshold));
  ASSERT_TRUE(tuned->shutdown().ok());

  PoolConfig off = config("malloc-off", 1, 0);
  off.worker_malloc_threshold = 0;
  auto plain = start(off);
  ASSERT_TRUE(plain);
  r = plain->execute_anonymous("malloc_probe", probe);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_TRUE(r->value().AsMap()["mmapped"].AsBool());
  EXPECT_TRUE(r->value().AsMap()["env_mmap_threshold"].IsNull());
  ASSERT_TRUE(plain->shutdown().ok());

  PoolConfig too_big = config("malloc-big", 1, 0);
  too_big.worker_malloc_threshold = 64u << 20;
  auto refused = Pool::start(too_big);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().type, "invalid_config");
}

// The memory the workers' malloc keeps counts in their RSS, and
// max_worker_rss_bytes still recycles a worker that grew.
TEST_F(PoolTest, AWorkerThatKeptMemoryIsRecycledPastMaxRss) {
  PoolConfig c = config("malloc-rss", 1, 0);
  c.max_worker_rss_bytes = 150u << 20;
  auto pool = start(c);
  ASSERT_TRUE(pool);
  const Args churn = make_args([](flexbuffers::Builder& b) {
    b.UInt("bytes", 24u << 20);
    b.UInt("count", 8);  // 192 MiB, below the trim threshold (8 x 32 MiB)
  });
  auto r = pool->execute_anonymous("heap_churn", churn);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_TRUE(eventually(*pool, [&] { return pool->status().workers[0].recycled >= 1; }));
}

}  // namespace
}  // namespace shmpool
