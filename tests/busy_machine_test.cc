// Calls on a busy machine: with busy loops beside them (one per core, at
// normal priority, unpinned), every call of every kind succeeds with the
// right answer and exact session counts, for each wait strategy that a
// pool offers. How fast is the benchmark's business (`shmpool_bench --load`),
// not this test's: it asserts no time.
#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "bench/busy_loops.h"
#include "shmpool/pool.h"
#include "shmpool/worker.h"
#include "tests/process_support.h"
#include "tests/test_support.h"

namespace shmpool {
namespace {

Args small_args(int64_t i) {
  return make_args([&](flexbuffers::Builder& b) {
    b.Int("id", i);
    b.String("name", "shmpool");
    b.Bool("flag", true);
  });
}

class BusyMachineTest : public test::LeakCheck,
                        public ::testing::WithParamInterface<std::tuple<WaitStrategy, int>> {};

// Caller threads x calls per thread, cycling ping, a small-args echo and a
// 64 KiB payload echo (through the arena), each in its thread's session.
TEST_P(BusyMachineTest, EveryPoolCallSucceedsBesideBusyLoops) {
  const auto [wait, loops] = GetParam();
  PoolConfig c;
  c.name = "busy-" + std::to_string(::getpid()) + "-" + std::to_string(int(wait)) + "-" +
           std::to_string(loops);
  c.size = 2;
  c.max_overflow = 0;
  c.wait = wait;
  c.startup_timeout = std::chrono::seconds(30);
  c.request_ring_bytes = 1 << 20;
  c.response_ring_bytes = 1 << 20;
  c.payload_arena_bytes = 8u << 20;
  auto started = Pool::start(c);
  ASSERT_TRUE(started.ok()) << started.error().to_string();
  Pool& pool = **started;
  constexpr int kThreads = 4, kCalls = 600;
  std::vector<std::string> failures(kThreads);
  {
    bench::BusyLoops busy(loops);
    std::vector<std::thread> callers;
    for (int t = 0; t < kThreads; ++t) {
      callers.emplace_back([&, t] {
        const std::string session = "s" + std::to_string(t);
        std::vector<uint8_t> payload(64 << 10);
        for (int i = 0; i < kCalls && failures[t].empty(); ++i) {
          std::string wrong;
          if (i % 3 == 0) {
            auto r = pool.execute_in_session(session, "ping");
            if (!r.ok())
              wrong = r.error().to_string();
            else if (!r->value().AsMap()["pong"].AsBool())
              wrong = "no pong";
          } else if (i % 3 == 1) {
            auto r = pool.execute_in_session(session, "echo", small_args(i));
            if (!r.ok())
              wrong = r.error().to_string();
            else if (r->value().AsMap()["id"].AsInt64() != i)
              wrong = "echo of another call";
          } else {
            payload.front() = uint8_t(i);
            payload.back() = uint8_t(i + t);
            ExecOptions o;
            o.payload = payload;
            auto r = pool.execute_in_session(session, "echo", empty_args(), o);
            if (!r.ok())
              wrong = r.error().to_string();
            else if (r->payload().size() != payload.size() ||
                     !std::equal(payload.begin(), payload.end(), r->payload().begin()))
              wrong = "payload echo differs";
          }
          if (!wrong.empty()) failures[t] = "call " + std::to_string(i) + ": " + wrong;
        }
      });
    }
    for (auto& th : callers) th.join();
  }
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(failures[t], "") << "thread " << t;
    auto s = pool.session("s" + std::to_string(t));
    ASSERT_TRUE(s);
    EXPECT_EQ(s->operations, uint64_t(kCalls));
    EXPECT_EQ(s->errors, 0u);
  }
  EXPECT_TRUE(pool.shutdown().ok());
}

// One worker, one caller: the ping-pong whose two sides the scheduler puts
// on one core beside a busy loop (where polling would keep the other side
// off the core) or on two cores shared with busy loops.
TEST_P(BusyMachineTest, EveryWorkerPingSucceedsBesideBusyLoops) {
  const auto [wait, loops] = GetParam();
  WorkerOptions o;
  o.wait = wait;
  auto started = Worker::start(o);
  ASSERT_TRUE(started.ok()) << started.error().to_string();
  Worker& w = **started;
  int ok = 0;
  {
    bench::BusyLoops busy(loops);
    for (int i = 0; i < 5000; ++i) {
      auto r = w.call("echo", small_args(i));
      ASSERT_TRUE(r.ok()) << "call " << i << ": " << r.error().to_string();
      ASSERT_EQ(r->value().AsMap()["id"].AsInt64(), i);
      ++ok;
    }
  }
  EXPECT_EQ(ok, 5000);
  w.stop();
}

INSTANTIATE_TEST_SUITE_P(Loops, BusyMachineTest,
                         ::testing::Combine(::testing::Values(WaitStrategy::hybrid,
                                                              WaitStrategy::block),
                                            ::testing::Values(1, 2)),
                         [](const auto& info) {
                           return std::string(wait_strategy_name(std::get<0>(info.param))) + "_" +
                                  std::to_string(std::get<1>(info.param)) + "_loops";
                         });

}  // namespace
}  // namespace shmpool
