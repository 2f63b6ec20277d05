// Pool: sessions (exact counts, lifecycle, ids, expiry on an injected
// clock), anonymous calls, and which workers serve a session: any of them,
// the last one first. Real Python workers.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <map>
#include <memory>
#include <set>
#include <string>
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

TEST_F(PoolTest, PingInSessionIsTrackedWithExactCounts) {
  auto pool = start(config("session"));
  ASSERT_TRUE(pool);
  for (int i = 0; i < 3; ++i) {
    auto r = pool->execute_in_session("user-1", "ping");
    ASSERT_TRUE(r.ok()) << r.error().to_string();
    EXPECT_TRUE(r->value().AsMap()["pong"].AsBool());
  }
  auto s = pool->session("user-1");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->operations, 3u);
  EXPECT_EQ(s->errors, 0u);
  EXPECT_GE(s->last_activity_ns, s->created_ns);
  EXPECT_EQ(pool->status().active_sessions, 1u);
  auto failed = pool->execute_in_session("user-1", "fail");
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(pool->session("user-1")->operations, 4u);
  EXPECT_EQ(pool->session("user-1")->errors, 1u);
}

TEST_F(PoolTest, AnonymousCallsHaveNoSession) {
  auto pool = start(config("anon"));
  ASSERT_TRUE(pool);
  auto r = pool->execute_anonymous("whoami");
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->value().AsMap()["session_id"].IsNull());
  auto e = pool->execute_anonymous("fail");
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.error().context.count("session_id"), 0u);
  EXPECT_EQ(e.error().context.at("pool_name"), pool->name());
  EXPECT_TRUE(pool->sessions().empty());
}

TEST_F(PoolTest, SessionLifecycleCreateIncrementEndList) {
  auto pool = start(config("lifecycle"));
  ASSERT_TRUE(pool);
  ASSERT_TRUE(pool->execute_in_session("a", "ping").ok());
  ASSERT_TRUE(pool->execute_in_session("b", "ping").ok());
  ASSERT_TRUE(pool->execute_in_session("a", "ping").ok());
  auto all = pool->sessions();
  ASSERT_EQ(all.size(), 2u);
  std::map<std::string, uint64_t> ops;
  for (auto& s : all) ops[s.id] = s.operations;
  EXPECT_EQ(ops["a"], 2u);
  EXPECT_EQ(ops["b"], 1u);
  EXPECT_TRUE(pool->end_session("a").ok());
  EXPECT_FALSE(pool->session("a"));
  auto again = pool->end_session("a");
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().type, "unknown_session");
  EXPECT_EQ(pool->sessions().size(), 1u);
}

TEST_F(PoolTest, InvalidSessionIdsAreConfigErrors) {
  auto pool = start(config("ids"));
  ASSERT_TRUE(pool);
  for (std::string bad : {std::string(), std::string("has space"), std::string(65, 'x')}) {
    auto r = pool->execute_in_session(bad, "ping");
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().category, Category::config_error);
    EXPECT_EQ(r.error().type, "invalid_session_id");
  }
}

TEST_F(PoolTest, StaleSessionsAreCleanedUpByTTLWithAnInjectedClock) {
  auto fake_now = std::make_shared<std::atomic<int64_t>>(1'000'000'000);
  PoolConfig c = config("ttl");
  c.session_ttl = std::chrono::seconds(60);
  c.clock = [fake_now] { return fake_now->load(); };
  auto pool = start(c);
  ASSERT_TRUE(pool);
  ASSERT_TRUE(pool->execute_in_session("old", "ping").ok());
  fake_now->fetch_add(50'000'000'000);  // +50 s
  ASSERT_TRUE(pool->execute_in_session("fresh", "ping").ok());
  EXPECT_EQ(pool->cleanup_sessions(), 0u);
  fake_now->fetch_add(20'000'000'000);  // old idle 70 s, fresh 20 s
  EXPECT_EQ(pool->cleanup_sessions(), 1u);
  EXPECT_FALSE(pool->session("old"));
  EXPECT_TRUE(pool->session("fresh"));
}

// Three calls of one session inside handlers at the same time (each waits at
// a gate the test opens once it has seen all three arrive) are three
// different workers: any worker serves any session.
TEST_F(PoolTest, AnyWorkerServesAnySession) {
  test::LogWatch log;
  PoolConfig c = config("stateless", 3);
  c.log = log.callback();
  auto pool = start(c);
  ASSERT_TRUE(pool);
  const test::Gate gate("stateless");
  std::set<int64_t> pids;
  ExecOptions no_affinity;
  no_affinity.affinity = false;
  for (int round = 0; round < 3; ++round) {
    std::vector<std::future<Expected<Reply>>> inflight;
    for (int k = 0; k < 3; ++k) {
      inflight.push_back(pool->submit("shared", "wait_at_gate", gate.args(), no_affinity));
    }
    ASSERT_TRUE(log.wait_for_line("AT_GATE", size_t(3 * (round + 1))))
        << "round " << round << ": three calls of the session never were inside at once";
    ASSERT_TRUE(gate.open(3));
    for (auto& f : inflight) {
      auto r = f.get();
      ASSERT_TRUE(r.ok()) << r.error().to_string();
      pids.insert(r->value().AsMap()["pid"].AsInt64());
    }
  }
  EXPECT_EQ(pids.size(), 3u);
  EXPECT_EQ(pool->session("shared")->operations, 9u);
}

TEST_F(PoolTest, SessionAffinityPrefersTheLastWorker) {
  auto pool = start(config("affinity", 3));
  ASSERT_TRUE(pool);
  auto first = pool->execute_in_session("sticky", "whoami");
  ASSERT_TRUE(first.ok());
  const int64_t pid = first->value().AsMap()["pid"].AsInt64();
  for (int i = 0; i < 10; ++i) {
    auto r = pool->execute_in_session("sticky", "whoami");
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->value().AsMap()["pid"].AsInt64(), pid);
  }
}

}  // namespace
}  // namespace shmpool
