// Pool: starting (the configuration as status reports it, configurations
// refused, a name in use), shutting down, and workers dying with their owner.
// Real Python workers.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <set>
#include <string>
#include <thread>

#include "ipc/sys.h"
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
using test::unique_pool_name;

TEST_F(PoolTest, DefaultConfigurationIsReflectedInStatus) {
  PoolConfig c;
  c.name = unique_pool_name("defaults");
  c.handler_modules = {SHMPOOL_TEST_HANDLERS};
  auto pool = start(c);
  ASSERT_TRUE(pool);
  PoolStatus st = pool->status();
  EXPECT_EQ(st.name, c.name);
  EXPECT_EQ(st.config.size, std::max(1u, std::thread::hardware_concurrency()));
  EXPECT_EQ(st.config.max_overflow, 2u);
  EXPECT_EQ(st.config.checkout_timeout, std::chrono::milliseconds(5000));
  EXPECT_EQ(st.config.operation_timeout, std::chrono::milliseconds(30000));
  EXPECT_EQ(st.idle, st.config.size);
  EXPECT_EQ(st.workers.size(), st.config.size + 2);
  EXPECT_EQ(st.overflow, 0u);
}

TEST_F(PoolTest, CustomConfigurationIsReflectedInStatus) {
  PoolConfig c = config("custom", 3, 1);
  c.checkout_timeout = std::chrono::milliseconds(1234);
  c.operation_timeout = std::chrono::milliseconds(4321);
  c.session_ttl = std::chrono::minutes(7);
  auto pool = start(c);
  ASSERT_TRUE(pool);
  PoolStatus st = pool->status();
  EXPECT_EQ(pool->name(), c.name);
  EXPECT_EQ(st.config.size, 3u);
  EXPECT_EQ(st.config.max_overflow, 1u);
  EXPECT_EQ(st.config.checkout_timeout, std::chrono::milliseconds(1234));
  EXPECT_EQ(st.config.operation_timeout, std::chrono::milliseconds(4321));
  EXPECT_EQ(st.config.session_ttl, std::chrono::minutes(7));
  EXPECT_EQ(st.idle, 3u);
  std::set<pid_t> pids;
  for (auto& w : st.workers) {
    if (w.state == "idle") pids.insert(w.pid);
  }
  EXPECT_EQ(pids.size(), 3u);
}

TEST_F(PoolTest, InvalidConfigurationIsAConfigError) {
  PoolConfig c = config("invalid");
  c.checkout_timeout = std::chrono::milliseconds(0);
  auto p = Pool::start(c);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().category, Category::config_error);
  EXPECT_EQ(p.error().context.at("field"), "checkout_timeout");
  c = config("invalid");
  c.name = "bad name";
  p = Pool::start(c);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().type, "invalid_name");
  c = config("invalid");
  c.min_warm = 5;
  c.lazy = true;
  EXPECT_FALSE(Pool::start(c).ok());
}

TEST_F(PoolTest, ASecondPoolWithTheSameNameIsRefused) {
  PoolConfig c = config("dup", 1);
  auto first = start(c);
  ASSERT_TRUE(first);
  auto second = Pool::start(c);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().category, Category::config_error);
  EXPECT_EQ(second.error().type, "name_in_use");
  EXPECT_EQ(second.error().context.at("owner_pid"), std::to_string(::getpid()));
}

// The call is held (on a FIFO) until shutdown has begun, so it is in flight
// across the start of shutdown whatever the machine's speed.
TEST_F(PoolTest, GracefulShutdownLetsInFlightCallsFinish) {
  test::LogWatch log;
  PoolConfig c = config("graceful", 2);
  c.log = log.callback();
  auto pool = start(c);
  ASSERT_TRUE(pool);
  const test::Fifo fifo("graceful");
  auto inflight = pool->submit("s", "wait_for_fifo", fifo.args());
  ASSERT_TRUE(log.wait_for_line("BLOCKING")) << "the call is in flight";
  Status stopped;
  std::thread stopper([&] { stopped = pool->shutdown(std::chrono::seconds(10)); });
  const bool began = eventually(*pool, [&] { return pool->status().shutting_down; });
  const bool released = fifo.release();  // before any assertion: the stopper waits for the call
  stopper.join();
  ASSERT_TRUE(began) << "shutdown never began";
  ASSERT_TRUE(released);
  ASSERT_TRUE(stopped.ok());
  auto r = inflight.get();
  EXPECT_TRUE(r.ok()) << r.error().to_string();
  auto after = pool->execute_anonymous("ping");
  ASSERT_FALSE(after.ok());
  EXPECT_EQ(after.error().type, "pool_shutting_down");
  EXPECT_TRUE(test::child_pids().empty());
  EXPECT_TRUE(test::shm_entries().empty());
}

TEST_F(PoolTest, WorkersDieWithTheirOwnerAndANewOwnerReclaimsTheName) {
  const std::string name = unique_pool_name("orphan");
  int out[2];
  ASSERT_EQ(::pipe(out), 0);
  pid_t owner = ::fork();
  ASSERT_GE(owner, 0);
  if (owner == 0) {
    ::dup2(out[1], 1);
    ::close(out[0]);
    ::close(out[1]);
    ::execl(SHMPOOL_OWNER_HELPER, SHMPOOL_OWNER_HELPER, name.c_str(), SHMPOOL_TEST_HANDLERS,
            nullptr);
    _exit(127);
  }
  ::close(out[1]);
  FILE* in = ::fdopen(out[0], "r");
  char line[256] = {};
  ASSERT_NE(std::fgets(line, sizeof line, in), nullptr);
  std::fclose(in);
  int w1 = 0, w2 = 0;
  ASSERT_EQ(std::sscanf(line, "READY %d %d", &w1, &w2), 2) << line;
  // Descriptors that become readable when each worker exits (they are not
  // our children: the dead owner was their parent).
  ipc::SysError err;
  const int fd1 = ipc::pidfd_open(w1, &err), fd2 = ipc::pidfd_open(w2, &err);
  ASSERT_GE(fd1, 0) << err.message();
  ASSERT_GE(fd2, 0) << err.message();
  ASSERT_EQ(::kill(owner, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(owner, &status, 0), owner);
  const auto killed = std::chrono::steady_clock::now();
  const int64_t deadline = ipc::monotonic_ns() + 10'000'000'000;
  const bool gone1 = test::wait_exit(fd1, deadline), gone2 = test::wait_exit(fd2, deadline);
  ASSERT_TRUE(gone1 && gone2) << "orphaned workers still running";
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - killed).count();
  // (Printed, not asserted: a test states no wall-clock bound.)
  std::printf("workers gone %.1f ms after their owner was killed\n", ms);
  // The dead owner's segment is still there; a new owner reclaims the name.
  PoolConfig c = config("unused", 1);
  c.name = name;
  auto pool = start(c);
  ASSERT_TRUE(pool);
  EXPECT_TRUE(pool->execute_anonymous("ping").ok());
}

}  // namespace
}  // namespace shmpool
