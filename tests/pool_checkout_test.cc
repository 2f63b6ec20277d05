// Pool: waiting for a worker (the checkout queue): the checkout timeout,
// callers served in arrival order, shutdown waking the queue. One worker,
// held by a call the test releases. Real Python workers.
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "shmpool/pool.h"
#include "tests/pool_support.h"
#include "tests/process_support.h"
#include "tests/test_support.h"

namespace shmpool {
namespace {

using test::PoolTest;
using test::start_one_worker;

TEST_F(PoolTest, CheckoutTimeoutCarriesPoolAndSession) {
  test::LogWatch log;
  auto pool = start_one_worker("checkout", log);
  ASSERT_TRUE(pool);
  std::thread holder([&] { (void)pool->execute_anonymous("announce_and_block"); });
  ASSERT_TRUE(log.wait_for_line("BLOCKING"));
  ExecOptions quick;
  quick.checkout_timeout = std::chrono::milliseconds(100);
  auto r = pool->execute_in_session("waiting-session", "ping", empty_args(), quick);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().category, Category::timeout_error);
  EXPECT_EQ(r.error().type, "checkout_timeout");
  EXPECT_EQ(r.error().message, "No workers available");
  EXPECT_EQ(r.error().context.at("pool_name"), pool->name());
  EXPECT_EQ(r.error().context.at("session_id"), "waiting-session");
  auto anon = pool->execute_anonymous("ping", empty_args(), quick);
  ASSERT_FALSE(anon.ok());
  EXPECT_EQ(anon.error().context.count("session_id"), 0u);
  EXPECT_EQ(pool->status().checkout_timeouts, 2u);
  ASSERT_TRUE(pool->shutdown(std::chrono::milliseconds(0)).ok());  // ends the blocked call
  holder.join();
}

TEST_F(PoolTest, WaitingCallersAreServedInArrivalOrder) {
  // One worker, held by a call that blocks on a FIFO. Eight callers arrive
  // one after another (each once the previous one holds its place in the
  // queue); when the worker comes free they must be served in that order:
  // the worker numbers the calls it serves.
  test::LogWatch log;
  auto pool = start_one_worker("arrival", log);
  ASSERT_TRUE(pool);
  const test::Fifo fifo("arrival");
  std::thread holder([&] {
    auto r = pool->execute_anonymous("wait_for_fifo", fifo.args());
    EXPECT_TRUE(r.ok()) << r.error().to_string();
  });
  ASSERT_TRUE(log.wait_for_line("BLOCKING"));
  constexpr int kCallers = 8;
  std::vector<int64_t> served(kCallers, -1);  // caller -> the worker's call number
  std::vector<std::thread> callers;
  for (int k = 0; k < kCallers; ++k) {
    callers.emplace_back([&, k] {
      auto r = pool->execute_in_session("caller-" + std::to_string(k), "next_seq");
      if (r.ok()) served[size_t(k)] = r->value().AsMap()["seq"].AsInt64();
    });
    ASSERT_TRUE(test::wait_queued(pool->name(), uint32_t(k + 1)))
        << "caller " << k << " never queued";
  }
  ASSERT_TRUE(fifo.release());
  holder.join();
  for (auto& t : callers) t.join();
  std::vector<int64_t> expected(kCallers);
  for (int k = 0; k < kCallers; ++k) expected[size_t(k)] = k;
  EXPECT_EQ(served, expected);
  EXPECT_EQ(pool->status().queue_length, 0u);
}

TEST_F(PoolTest, ShutdownWakesTheCallersWaitingInTheQueue) {
  // Three callers queue for the only worker with a checkout timeout far
  // beyond the test's own; shutdown must end their waits at once.
  test::LogWatch log;
  auto pool = start_one_worker("queued-shutdown", log);
  ASSERT_TRUE(pool);
  auto holder = pool->submit("", "announce_and_block");
  ASSERT_TRUE(log.wait_for_line("BLOCKING"));
  ExecOptions patient;
  patient.checkout_timeout = std::chrono::minutes(10);
  std::vector<std::future<Expected<Reply>>> queued;
  for (int k = 0; k < 3; ++k) {
    queued.push_back(std::async(std::launch::async, [&, k] {
      return pool->execute_in_session("q" + std::to_string(k), "ping", empty_args(), patient);
    }));
    ASSERT_TRUE(test::wait_queued(pool->name(), uint32_t(k + 1)));
  }
  ASSERT_TRUE(pool->shutdown(std::chrono::milliseconds(0)).ok());
  for (auto& f : queued) {
    ASSERT_EQ(f.wait_for(std::chrono::seconds(20)), std::future_status::ready);
    auto r = f.get();
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().type, "pool_shutting_down") << r.error().to_string();
  }
  ASSERT_EQ(holder.wait_for(std::chrono::seconds(20)), std::future_status::ready);
  EXPECT_FALSE(holder.get().ok());
}

}  // namespace
}  // namespace shmpool
