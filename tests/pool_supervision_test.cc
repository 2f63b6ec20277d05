// Pool: what its supervisor does with workers: replacing one that crashed,
// was killed, timed out or stopped answering; failing fast when workers
// cannot start, and recovering; overflow and lazy workers started on demand;
// the events that report it all. Real Python workers.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <future>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "ipc/segment.h"
#include "shmpool/inspect.h"
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

TEST_F(PoolTest, WorkerCrashMidCallFailsOnlyThatCallAndIsReplaced) {
  auto pool = start(config("crash", 1, 0));
  ASSERT_TRUE(pool);
  const pid_t before = pool->status().workers[0].pid;
  auto r = pool->execute_in_session("s", "exit_now",
                                    make_args([](flexbuffers::Builder& b) { b.Int("code", 9); }));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().category, Category::worker_error);
  EXPECT_EQ(r.error().type, "worker_crashed");
  EXPECT_EQ(r.error().context.at("exit_code"), "9");
  EXPECT_EQ(r.error().context.at("worker_pid"), std::to_string(before));
  // The replacement serves the next call (checkout waits for it to start).
  auto next = pool->execute_in_session("s", "whoami");
  ASSERT_TRUE(next.ok()) << next.error().to_string();
  EXPECT_NE(next->value().AsMap()["pid"].AsInt64(), before);
  EXPECT_EQ(pool->status().workers[0].restarts, 1u);
  EXPECT_EQ(pool->session("s")->errors, 1u);
}

TEST_F(PoolTest, KilledWorkerIsReplaced) {
  auto pool = start(config("killed", 1, 0));
  ASSERT_TRUE(pool);
  const pid_t before = pool->status().workers[0].pid;
  ASSERT_EQ(::kill(before, SIGKILL), 0);
  ASSERT_TRUE(eventually(*pool, [&] {
    auto w = pool->status().workers[0];
    return w.state == "idle" && w.pid != before;
  }));
  EXPECT_TRUE(pool->execute_anonymous("ping").ok());
}

TEST_F(PoolTest, OperationTimeoutKillsAndReplacesTheWorker) {
  auto pool = start(config("optimeout", 1, 0));
  ASSERT_TRUE(pool);
  ExecOptions o;
  o.operation_timeout = std::chrono::milliseconds(200);
  auto r = pool->execute_anonymous("announce_and_block", empty_args(), o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().category, Category::timeout_error);
  EXPECT_EQ(r.error().type, "operation_timeout");
  EXPECT_EQ(r.error().context.at("exit_signal"), std::to_string(SIGKILL));
  auto next = pool->execute_anonymous("ping");
  ASSERT_TRUE(next.ok()) << next.error().to_string();
  EXPECT_EQ(pool->status().timeouts, 1u);
}

TEST_F(PoolTest, AHealthCheckWaitingOnAStoppedWorkerDoesNotHoldUpARestart) {
  // Slot 0's worker is stopped and the health checker waits on its ping (up
  // to 5 s). Meanwhile slot 1's worker is killed: the supervisor replaces it
  // at once, while the checker still holds slot 0 (it never waits on a
  // worker itself).
  PoolConfig c = config("health-apart", 2, 0);
  c.health_check_interval = std::chrono::milliseconds(20);
  c.operation_timeout = std::chrono::seconds(60);  // the ping's limit is then 5 s
  auto pool = start(c);
  ASSERT_TRUE(pool);
  std::unique_ptr<ipc::Segment> seg;
  ASSERT_EQ(ipc::Segment::attach(pool->name(), &seg), ipc::Errc::ok);
  const pid_t stopped = pool->status().workers[0].pid;
  const pid_t killed = pool->status().workers[1].pid;
  ASSERT_EQ(::kill(stopped, SIGSTOP), 0);
  auto checker_holds_slot0 = [&] {
    const uint64_t w = seg->slot(0).state.load();
    return ipc::slot_state(w) == ipc::SlotState::busy && ipc::slot_holder_pid(w) == 0;
  };
  // A checkout rings no doorbell: poll for it.
  ipc::Doorbell never;
  ASSERT_EQ(ipc::wait_until(never, checker_holds_slot0, ipc::monotonic_ns() + 20'000'000'000,
                            ipc::WaitPolicy{ipc::WaitStrategy::spin, 0}),
            ipc::WaitResult::ready);
  ASSERT_EQ(::kill(killed, SIGKILL), 0);
  ASSERT_TRUE(eventually(*pool, [&] {
    auto w = pool->status().workers[1];
    return w.state == "idle" && w.pid != killed && w.pid != 0;
  }));
  EXPECT_TRUE(checker_holds_slot0()) << "slot 1 was replaced only after the health check gave up";
  ::kill(stopped, SIGCONT);
}

TEST_F(PoolTest, HealthChecksAreNotCountedAsCallsForRecycling) {
  PoolConfig c = config("health-calls", 1, 0);
  c.health_check_interval = std::chrono::milliseconds(5);
  c.max_calls_per_worker = 3;
  auto pool = start(c);
  ASSERT_TRUE(pool);
  // The worker answers pings: its frame count passes max_calls_per_worker.
  ASSERT_TRUE(eventually(*pool, [&] {
    auto snap = inspect_pool(pool->name());
    return snap.ok() && snap->slots[0].calls >= 8;
  }));
  std::vector<int64_t> pids;
  for (int i = 0; i < 4; ++i) {
    auto r = pool->execute_anonymous("whoami");
    ASSERT_TRUE(r.ok()) << r.error().to_string();
    pids.push_back(r->value().AsMap()["pid"].AsInt64());
  }
  EXPECT_EQ(pids[0], pids[1]);
  EXPECT_EQ(pids[1], pids[2]) << "recycled after fewer than 3 calls";
  EXPECT_NE(pids[2], pids[3]) << "3 calls recycle it";
}

TEST_F(PoolTest, HealthCheckReplacesAStoppedWorker) {
  PoolConfig c = config("health", 1, 0);
  c.health_check_interval = std::chrono::milliseconds(50);
  c.operation_timeout = std::chrono::milliseconds(300);
  auto pool = start(c);
  ASSERT_TRUE(pool);
  const pid_t before = pool->status().workers[0].pid;
  ASSERT_EQ(::kill(before, SIGSTOP), 0);  // alive but not answering
  ASSERT_TRUE(eventually(*pool, [&] {
    auto w = pool->status().workers[0];
    return w.state == "idle" && w.pid != before;
  }));
  EXPECT_TRUE(pool->execute_anonymous("ping").ok());
}

TEST_F(PoolTest, StartupFailureFailsFastWithTheStderrTail) {
  PoolConfig c = config("badstart", 2, 0);
  c.handler_modules = {SHMPOOL_BAD_HANDLERS};
  auto p = Pool::start(c);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().category, Category::worker_error);
  EXPECT_EQ(p.error().type, "startup_failed");
  EXPECT_NE(p.error().context.at("stderr_tail").find("ModuleNotFoundError"), std::string::npos);
  EXPECT_EQ(p.error().context.at("pool_name"), c.name);
}

// A slot that failed to start max_startup_failures times makes calls fail
// fast, but keeps retrying with backoff; once a start succeeds the pool
// serves again (it used to fail fast for the rest of its life).
TEST_F(PoolTest, FailingFastEndsWhenAStartSucceeds) {
  const std::string counter = ::testing::TempDir() + "flaky-" + std::to_string(::getpid());
  std::remove(counter.c_str());
  PoolConfig c = config("flaky", 1, 0);
  c.handler_modules.push_back(SHMPOOL_SOURCE_DIR "/tests/handlers/flaky_import.py");
  c.env = {{"FLAKY_COUNTER", counter}, {"FLAKY_FAIL_FROM", "1"}, {"FLAKY_FAIL_UNTIL", "3"}};
  c.max_startup_failures = 2;
  auto pool = start(c);
  ASSERT_TRUE(pool);
  auto first = pool->execute_anonymous("which_start");
  ASSERT_TRUE(first.ok()) << first.error().to_string();
  EXPECT_EQ(first->value().AsMap()["start"].AsInt64(), 0);
  // The worker dies; starts 1 and 2 fail (failing fast), start 3 succeeds.
  EXPECT_FALSE(pool->execute_anonymous("exit_now").ok());
  ASSERT_TRUE(eventually(*pool, [&] {
    return pool->status().workers[0].restarts >= 1 && pool->status().idle == 1;
  })) << "the pool never started a worker again after failing fast";
  auto again = pool->execute_anonymous("which_start");
  ASSERT_TRUE(again.ok()) << again.error().to_string();
  EXPECT_EQ(again->value().AsMap()["start"].AsInt64(), 3);
  ASSERT_TRUE(pool->shutdown().ok());
  std::remove(counter.c_str());
}

TEST_F(PoolTest, OverflowWorkersStartWhenAllAreBusyAndRetireWhenIdle) {
  test::LogWatch log;
  PoolConfig c = config("overflow", 1, 1);
  c.overflow_idle_timeout = std::chrono::milliseconds(200);
  c.log = log.callback();
  auto pool = start(c);
  ASSERT_TRUE(pool);
  EXPECT_EQ(pool->status().overflow, 0u);
  std::thread holder([&] {
    ExecOptions o;
    o.operation_timeout = std::chrono::milliseconds(60000);
    (void)pool->execute_anonymous("announce_and_block", empty_args(), o);
  });
  ASSERT_TRUE(log.wait_for_line("BLOCKING"));
  auto r = pool->execute_anonymous("whoami");  // served by an overflow worker
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  PoolStatus st = pool->status();
  EXPECT_EQ(st.overflow, 1u);
  EXPECT_EQ(st.workers[1].pid, r->value().AsMap()["pid"].AsInt64());
  ASSERT_TRUE(eventually(*pool, [&] { return pool->status().workers[1].state == "empty"; }))
      << "the overflow worker retires";
  EXPECT_EQ(pool->status().overflow, 0u);
  ASSERT_TRUE(pool->shutdown(std::chrono::milliseconds(0)).ok());
  holder.join();
}

// A lazy pool starts with min_warm workers; three calls that wait at a gate
// until all three are inside a handler need the other two started on demand.
TEST_F(PoolTest, LazyPoolPreWarmsAndStartsTheRestOnDemand) {
  test::LogWatch log;
  PoolConfig c = config("lazy", 3, 0);
  c.lazy = true;
  c.min_warm = 1;
  c.log = log.callback();
  auto pool = start(c);
  ASSERT_TRUE(pool);
  EXPECT_EQ(pool->status().idle, 1u);
  const test::Gate gate("lazy");
  std::vector<std::future<Expected<Reply>>> calls;
  for (int i = 0; i < 3; ++i) calls.push_back(pool->submit("", "wait_at_gate", gate.args()));
  ASSERT_TRUE(log.wait_for_line("AT_GATE", 3)) << "the other workers were never started";
  ASSERT_TRUE(gate.open(3));
  std::set<int64_t> pids;
  for (auto& f : calls) {
    auto r = f.get();
    ASSERT_TRUE(r.ok()) << r.error().to_string();
    pids.insert(r->value().AsMap()["pid"].AsInt64());
  }
  EXPECT_GE(pids.size(), 2u) << "more workers were started on demand";
}

TEST_F(PoolTest, EventsReportWorkersTimeoutsAndSessions) {
  using Kind = PoolEvent::Kind;
  test::EventLog events;
  auto fake_now = std::make_shared<std::atomic<int64_t>>(1'000'000'000);
  PoolConfig c = config("events", 1, 0);
  c.on_event = events.callback();
  c.session_ttl = std::chrono::seconds(60);
  c.clock = [fake_now] { return fake_now->load(); };
  auto pool = start(c);
  ASSERT_TRUE(pool);
  ASSERT_TRUE(events.wait_for(Kind::worker_started));
  const auto started = events.of(Kind::worker_started);
  ASSERT_EQ(started.size(), 1u);
  EXPECT_EQ(started[0].slot, 0);
  EXPECT_EQ(started[0].pid, pool->status().workers[0].pid);

  // A session is created once, however many calls it gets.
  ASSERT_TRUE(pool->execute_in_session("s", "ping").ok());
  ASSERT_TRUE(pool->execute_in_session("s", "ping").ok());
  auto created = events.of(Kind::session_created);
  ASSERT_EQ(created.size(), 1u);
  EXPECT_EQ(created[0].session_id, "s");

  // An operation timeout: the event, then the worker's death and restart.
  ExecOptions short_op;
  short_op.operation_timeout = std::chrono::milliseconds(300);
  const pid_t first = pool->status().workers[0].pid;
  auto r = pool->execute_in_session("s", "announce_and_block", empty_args(), short_op);
  ASSERT_FALSE(r.ok());
  auto timed_out = events.of(Kind::call_timed_out);
  ASSERT_EQ(timed_out.size(), 1u);
  EXPECT_EQ(timed_out[0].detail, "operation_timeout");
  EXPECT_EQ(timed_out[0].session_id, "s");
  EXPECT_EQ(timed_out[0].pid, first);
  ASSERT_TRUE(events.wait_for(Kind::worker_restarted));
  auto died = events.of(Kind::worker_died);
  ASSERT_EQ(died.size(), 1u);
  EXPECT_EQ(died[0].pid, first);
  EXPECT_NE(died[0].detail.find("SIGKILL"), std::string::npos) << died[0].detail;
  EXPECT_NE(events.of(Kind::worker_restarted)[0].pid, first);

  // A worker that exits by itself.
  ASSERT_TRUE(pool->execute_anonymous("ping").ok());
  (void)pool->execute_anonymous("exit_now",
                                make_args([](flexbuffers::Builder& b) { b.Int("code", 7); }));
  ASSERT_TRUE(events.wait_for(Kind::worker_restarted, 2));
  died = events.of(Kind::worker_died);
  ASSERT_EQ(died.size(), 2u);
  EXPECT_NE(died[1].detail.find("code 7"), std::string::npos) << died[1].detail;

  // Sessions ended and expired.
  ASSERT_TRUE(pool->execute_in_session("old", "ping").ok());
  ASSERT_TRUE(pool->end_session("s").ok());
  fake_now->fetch_add(61'000'000'000);
  EXPECT_EQ(pool->cleanup_sessions(), 1u);
  auto ended = events.of(Kind::session_ended), expired = events.of(Kind::session_expired);
  ASSERT_EQ(ended.size(), 1u);
  EXPECT_EQ(ended[0].session_id, "s");
  ASSERT_EQ(expired.size(), 1u);
  EXPECT_EQ(expired[0].session_id, "old");
  EXPECT_EQ(event_kind_name(Kind::session_expired), "session_expired");
}

}  // namespace
}  // namespace shmpool
