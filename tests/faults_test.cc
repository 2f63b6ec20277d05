// Faults: workers that die by SIGKILL, SIGSEGV, SIGABRT or os._exit during a
// call; how fast the caller hears of it; 200 crash cycles with no leak.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>

#include "shmpool/pool.h"
#include "tests/process_support.h"
#include "tests/test_support.h"

namespace shmpool {
namespace {

PoolConfig config(const char* tag) {
  static int n = 0;
  PoolConfig c;
  c.name = std::string("f") + tag + "-" + std::to_string(::getpid()) + "-" + std::to_string(n++);
  c.size = 1;
  c.max_overflow = 0;
  c.handler_modules = {SHMPOOL_TEST_HANDLERS};
  c.startup_timeout = std::chrono::seconds(30);
  c.request_ring_bytes = 64 * 1024;
  c.response_ring_bytes = 64 * 1024;
  return c;
}

class FaultsTest : public test::LeakCheck {};

TEST_F(FaultsTest, EveryWayOfDyingDuringACallIsAWorkerErrorAndTheNextCallSucceeds) {
  auto p = Pool::start(config("ways"));
  ASSERT_TRUE(p.ok()) << p.error().to_string();
  Pool& pool = **p;
  struct Case {
    const char* command;
    const char* key;
    std::string value;
  };
  for (const Case& c : {Case{"segfault", "exit_signal", std::to_string(SIGSEGV)},
                        Case{"abort", "exit_signal", std::to_string(SIGABRT)},
                        Case{"exit_now", "exit_code", "7"}}) {
    auto r = pool.execute_anonymous(c.command);
    ASSERT_FALSE(r.ok()) << c.command;
    EXPECT_EQ(r.error().category, Category::worker_error) << c.command;
    EXPECT_EQ(r.error().type, "worker_crashed") << c.command;
    EXPECT_EQ(r.error().context.at(c.key), c.value) << c.command << ": " << r.error().to_string();
    auto next = pool.execute_anonymous("ping");
    ASSERT_TRUE(next.ok()) << c.command << ": " << next.error().to_string();
  }
  EXPECT_EQ(pool.status().workers[0].restarts, 3u);
}

TEST_F(FaultsTest, SigkillDuringACallIsReportedAsACrashNotATimeout) {
  std::mutex mu;
  std::condition_variable cv;
  int blocking = 0;
  PoolConfig c = config("latency");
  c.log = [&](const LogLine& l) {
    if (l.text.rfind("BLOCKING", 0) == 0) {
      std::lock_guard lock(mu);
      ++blocking;
      cv.notify_all();
    }
  };
  auto p = Pool::start(c);
  ASSERT_TRUE(p.ok());
  Pool& pool = **p;
  std::vector<double> latencies_ms;
  for (int cycle = 1; cycle <= 20; ++cycle) {
    std::chrono::steady_clock::time_point killed;
    std::thread killer([&] {
      std::unique_lock lock(mu);
      ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(30), [&] { return blocking >= cycle; }));
      pid_t pid = pool.status().workers[0].pid;
      killed = std::chrono::steady_clock::now();
      ::kill(pid, SIGKILL);
    });
    auto r = pool.execute_anonymous("announce_and_block");
    auto returned = std::chrono::steady_clock::now();
    killer.join();
    ASSERT_FALSE(r.ok());
    ASSERT_EQ(r.error().type, "worker_crashed");
    ASSERT_EQ(r.error().context.at("exit_signal"), std::to_string(SIGKILL));
    latencies_ms.push_back(std::chrono::duration<double, std::milli>(returned - killed).count());
  }
  std::sort(latencies_ms.begin(), latencies_ms.end());
  std::printf("kill-to-error latency over %zu cycles: p50 %.2f ms, max %.2f ms\n",
              latencies_ms.size(), latencies_ms[latencies_ms.size() / 2], latencies_ms.back());
  // worker_crashed, not operation_timeout, is the proof the death was seen
  // at once; the latency is printed, never asserted (no wall-clock bounds).
}

TEST_F(FaultsTest, TwoHundredCrashCyclesLoseNothingAndLeakNothing) {
  auto p = Pool::start(config("cycles"));
  ASSERT_TRUE(p.ok());
  Pool& pool = **p;
  // Every other cycle the worker dies holding arena blocks: the caller's
  // request block (a temporary copy) and an output block of its own.
  const std::vector<uint8_t> payload(64 * 1024, 7);
  ExecOptions with_payload;
  with_payload.payload = payload;
  const Args die_holding = make_args([](flexbuffers::Builder& b) { b.UInt("n", 256 * 1024); });
  for (int cycle = 0; cycle < 200; ++cycle) {
    auto r = cycle % 2
                 ? pool.execute_in_session("cycles", "alloc_and_die", die_holding, with_payload)
                 : pool.execute_in_session("cycles", "exit_now");
    ASSERT_FALSE(r.ok()) << cycle;
    ASSERT_EQ(r.error().type, "worker_crashed") << cycle << ": " << r.error().to_string();
    auto ok = pool.execute_in_session("cycles", "ping");
    ASSERT_TRUE(ok.ok()) << cycle << ": " << ok.error().to_string();
    // The replacement started after the dead worker's exit was handled, and
    // handling it freed what that worker held.
    ASSERT_EQ(pool.status().arena_bytes_in_use, 0u) << cycle;
  }
  PoolStatus st = pool.status();
  EXPECT_EQ(st.workers[0].restarts, 200u);
  EXPECT_EQ(pool.session("cycles")->operations, 400u);
  EXPECT_EQ(pool.session("cycles")->errors, 200u);
  EXPECT_EQ(st.errors_by_category.at("worker_error"), 200u);
  // LeakCheck then verifies: no /dev/shm entry, child process or fd left.
}

}  // namespace
}  // namespace shmpool
