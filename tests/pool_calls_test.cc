// Pool: calls, their errors and their concurrency: an error's context,
// several calls in flight through submit(), many callers on few workers.
// Real Python workers.
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "shmpool/pool.h"
#include "tests/pool_support.h"
#include "tests/process_support.h"
#include "tests/test_support.h"

namespace shmpool {
namespace {

using test::config;
using test::PoolTest;
using test::start;

TEST_F(PoolTest, ErrorsAreWellFormedWithContext) {
  auto pool = start(config("errors"));
  ASSERT_TRUE(pool);
  auto r = pool->execute_in_session(
      "s-err", "fail", make_args([](flexbuffers::Builder& b) { b.String("message", "nope"); }));
  ASSERT_FALSE(r.ok());
  const Error& e = r.error();
  EXPECT_EQ(e.category, Category::handler_error);
  EXPECT_EQ(e.type, "handler_exception");
  EXPECT_EQ(e.message, "nope");
  EXPECT_EQ(e.context.at("pool_name"), pool->name());
  EXPECT_EQ(e.context.at("session_id"), "s-err");
  EXPECT_EQ(e.context.at("command"), "fail");
  EXPECT_TRUE(e.context.count("slot"));
  EXPECT_TRUE(e.context.count("worker_pid"));
  EXPECT_NE(e.context.at("traceback").find("ValueError"), std::string::npos);
  EXPECT_EQ(pool->status().errors_by_category.at("handler_error"), 1u);
  auto unknown = pool->execute_anonymous("no_such_command");
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.error().type, "unknown_command");
}

TEST_F(PoolTest, SubmitKeepsSeveralCallsInFlight) {
  auto pool = start(config("async", 2));
  ASSERT_TRUE(pool);
  std::vector<std::future<Expected<Reply>>> futures;
  std::vector<uint8_t> payload = {1, 2, 3};
  ExecOptions o;
  o.payload = payload;
  for (int i = 0; i < 20; ++i) futures.push_back(pool->submit("async", "echo", empty_args(), o));
  payload.assign(3, 0);  // submit copied it
  for (auto& f : futures) {
    auto r = f.get();
    ASSERT_TRUE(r.ok()) << r.error().to_string();
    ASSERT_EQ(r->payload().size(), 3u);
    EXPECT_EQ(r->payload()[2], 3);
  }
  EXPECT_EQ(pool->session("async")->operations, 20u);
}

TEST_F(PoolTest, TenConcurrentCallsOnThreePlusTwoOverflowAllSucceed) {
  auto pool = start(config("ten", 3, 2));
  ASSERT_TRUE(pool);
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  std::vector<std::string> failures;
  std::mutex mu;
  for (int i = 0; i < 10; ++i) {
    threads.emplace_back([&, i] {
      auto r =
          pool->execute_in_session("s" + std::to_string(i % 3), "sleep_ms",
                                   make_args([](flexbuffers::Builder& b) { b.Int("ms", 100); }));
      if (r.ok()) {
        ++ok;
      } else {
        std::lock_guard lock(mu);
        failures.push_back(r.error().to_string());
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 10) << (failures.empty() ? "" : failures[0]);
  uint64_t ops = 0;
  for (auto& s : pool->sessions()) ops += s.operations;
  EXPECT_EQ(ops, 10u);
}

TEST_F(PoolTest, SixtyFourCallersOnFourWorkersAllSucceed) {
  auto pool = start(config("sixtyfour", 4, 0));
  ASSERT_TRUE(pool);
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int i = 0; i < 64; ++i) {
    threads.emplace_back([&, i] {
      for (int k = 0; k < 20; ++k) {
        auto r = i % 2 ? pool->execute_in_session("c" + std::to_string(i), "ping")
                       : pool->execute_anonymous("ping");
        if (r.ok()) ++ok;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 64 * 20);
  PoolStatus st = pool->status();
  EXPECT_EQ(st.successes, uint64_t(64 * 20));
  EXPECT_EQ(st.active_sessions, 32u);
  for (auto& s : pool->sessions()) EXPECT_EQ(s.operations, 20u) << s.id;
}

}  // namespace
}  // namespace shmpool
