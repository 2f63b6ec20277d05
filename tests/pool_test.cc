// Pool: the seed's scenarios, every one deterministic, plus crashes,
// timeouts, startup failure, overflow and shutdown. Real Python workers.
#include "shmpool/pool.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <set>
#include <thread>

#include "ipc/segment.h"
#include "ipc/sys.h"
#include "ipc/wait.h"
#include "tests/process_support.h"
#include "tests/test_support.h"

namespace shmpool {
namespace {

std::string unique_pool_name(const char* tag) {
  static std::atomic<int> n{0};
  return std::string("p") + tag + "-" + std::to_string(::getpid()) + "-" + std::to_string(n++);
}

PoolConfig config(const char* tag, uint32_t size = 2, uint32_t overflow = 0) {
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
// (rung on every slot transition but a checkout) between checks; false at
// the deadline.
template <class Pred>
bool eventually(const Pool& pool, Pred pred,
                std::chrono::seconds limit = std::chrono::seconds(20)) {
  std::unique_ptr<ipc::Segment> seg;
  if (ipc::Segment::attach(pool.name(), &seg) != ipc::Errc::ok) return false;
  const int64_t deadline = ipc::monotonic_ns() + int64_t(limit.count()) * 1'000'000'000;
  return ipc::wait_until(seg->header().slots_changed, pred, deadline,
                         ipc::WaitPolicy{ipc::WaitStrategy::block, 0}) == ipc::WaitResult::ready;
}

std::unique_ptr<Pool> start(PoolConfig c) {
  auto p = Pool::start(std::move(c));
  EXPECT_TRUE(p.ok()) << (p.ok() ? "" : p.error().to_string());
  return p.ok() ? std::move(p.value()) : nullptr;
}

// A pool of one worker and no overflow, its output lines going to `log`
// (tests block the worker and wait for its "BLOCKING" line).
std::unique_ptr<Pool> start_one_worker(const char* tag, test::LogWatch& log) {
  PoolConfig c = config(tag, 1, 0);
  c.log = log.callback();
  return start(std::move(c));
}

class PoolTest : public test::LeakCheck {};

// Starts a worker once so the process-wide child watch exists before the
// leak probe counts descriptors.

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

TEST_F(PoolTest, AnyWorkerServesAnySession) {
  auto pool = start(config("stateless", 3));
  ASSERT_TRUE(pool);
  std::set<int64_t> pids;
  ExecOptions no_affinity;
  no_affinity.affinity = false;
  // Hold two workers busy so the session must be served by different ones.
  for (int round = 0; round < 3; ++round) {
    std::vector<std::future<Expected<Reply>>> inflight;
    for (int k = 0; k < 3; ++k) {
      inflight.push_back(pool->submit("shared", "sleep_ms",
                                      make_args([](flexbuffers::Builder& b) { b.Int("ms", 50); }),
                                      no_affinity));
    }
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

TEST_F(PoolTest, LazyPoolPreWarmsAndStartsTheRestOnDemand) {
  PoolConfig c = config("lazy", 3, 0);
  c.lazy = true;
  c.min_warm = 1;
  auto pool = start(c);
  ASSERT_TRUE(pool);
  EXPECT_EQ(pool->status().idle, 1u);
  std::vector<std::future<Expected<Reply>>> calls;
  for (int i = 0; i < 3; ++i) {
    calls.push_back(
        pool->submit("", "sleep_ms", make_args([](flexbuffers::Builder& b) { b.Int("ms", 300); })));
  }
  std::set<int64_t> pids;
  for (auto& f : calls) {
    auto r = f.get();
    ASSERT_TRUE(r.ok()) << r.error().to_string();
    pids.insert(r->value().AsMap()["pid"].AsInt64());
  }
  EXPECT_GE(pids.size(), 2u) << "more workers were started on demand";
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

TEST_F(PoolTest, GracefulShutdownLetsInFlightCallsFinish) {
  test::LogWatch log;
  PoolConfig c = config("graceful", 2);
  c.log = log.callback();
  auto pool = start(c);
  ASSERT_TRUE(pool);
  auto inflight = pool->submit("s", "announce_and_sleep",
                               make_args([](flexbuffers::Builder& b) { b.Int("ms", 200); }));
  ASSERT_TRUE(log.wait_for_line("SLEEPING")) << "the call is in flight";
  ASSERT_TRUE(pool->shutdown(std::chrono::seconds(10)).ok());
  auto r = inflight.get();
  EXPECT_TRUE(r.ok()) << r.error().to_string();
  auto after = pool->execute_anonymous("ping");
  ASSERT_FALSE(after.ok());
  EXPECT_EQ(after.error().type, "pool_shutting_down");
  EXPECT_TRUE(test::child_pids().empty());
  EXPECT_TRUE(test::shm_entries().empty());
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

}  // namespace
}  // namespace shmpool

namespace shmpool {
namespace {

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

namespace shmpool {
namespace {

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
