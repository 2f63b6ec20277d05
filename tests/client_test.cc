// shmpool::Client: other processes calling a pool through its segment alone.
// Every call answered exactly once, exact session counts across processes, a
// client killed mid-call, the owner killed under its clients.
#include "shmpool/client.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <future>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "ipc/segment.h"
#include "ipc/sys.h"
#include "shmpool/call.h"
#include "shmpool/inspect.h"
#include "shmpool/pool.h"
#include "tests/process_support.h"
#include "tests/test_support.h"

namespace shmpool {
namespace {

std::string unique_name(const char* tag) {
  static int n = 0;
  return std::string("cl-") + tag + "-" + std::to_string(::getpid()) + "-" + std::to_string(++n);
}

PoolConfig config(const std::string& name, uint32_t size = 2) {
  PoolConfig c;
  c.name = name;
  c.size = size;
  c.max_overflow = 1;
  c.handler_modules = {SHMPOOL_TEST_HANDLERS};
  return c;
}

test::Child helper(std::vector<std::string> args) {
  args.insert(args.begin(), SHMPOOL_CLIENT_HELPER);
  return test::spawn_child(std::move(args));
}

bool exited_zero(int status) { return WIFEXITED(status) && WEXITSTATUS(status) == 0; }

class ClientTest : public test::LeakCheck {};

// Waits (on the slots_changed doorbell, 10 s at most) until `slot` serves
// again with a worker other than `old_pid`.
bool back_in_service(ipc::Segment& seg, uint32_t slot, pid_t old_pid) {
  const ipc::SlotData& sd = seg.slot(slot);
  auto ready = [&] {
    const auto st = ipc::slot_state(sd.state.load(std::memory_order_acquire));
    return (st == ipc::SlotState::idle || st == ipc::SlotState::busy) &&
           sd.worker_pid.load(std::memory_order_acquire) != old_pid;
  };
  return ipc::wait_until(seg.header().slots_changed, ready, ipc::monotonic_ns() + 10'000'000'000,
                         ipc::WaitPolicy{ipc::WaitStrategy::block, 0}) == ipc::WaitResult::ready;
}

// The busy slot (one at most) and its worker's pid.
std::pair<int, pid_t> busy_slot(const Pool& pool) {
  for (const auto& w : pool.status().workers)
    if (w.state == "busy") return {int(w.slot), w.pid};
  return {-1, 0};
}

TEST_F(ClientTest, AttachFailuresAreClear) {
  auto unknown = Client::attach(unique_name("none"));
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.error().category, Category::resource_error);
  EXPECT_EQ(unknown.error().type, "unknown_pool");
  auto bad = Client::attach("bad name");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().type, "invalid_name");
}

TEST_F(ClientTest, AClientsCrashedCallCarriesTheWorkersExitStatusAsTheOwnersDoes) {
  auto pool = Pool::start(config(unique_name("exitstatus"), 1));
  ASSERT_TRUE(pool.ok()) << pool.error().to_string();
  auto client = Client::attach((*pool)->name());
  ASSERT_TRUE(client.ok()) << client.error().to_string();
  auto code = [](int c) { return make_args([c](flexbuffers::Builder& b) { b.Int("code", c); }); };
  auto r = (*client)->execute_in_session("x", "exit_now", code(7));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().type, "worker_crashed");
  EXPECT_EQ(r.error().context.at("exit_code"), "7");
  EXPECT_EQ(r.error().context.at("exit"), "exited with code 7");
  auto owners = (*pool)->execute_in_session("x", "exit_now", code(8));
  ASSERT_FALSE(owners.ok());
  EXPECT_EQ(owners.error().context.at("exit_code"), "8");
  EXPECT_EQ(owners.error().context.at("exit"), "exited with code 8");
}

TEST_F(ClientTest, AClientSharesTheOwnersWorkersAndSessionTable) {
  auto pool = Pool::start(config(unique_name("share")));
  ASSERT_TRUE(pool.ok()) << pool.error().to_string();
  auto client = Client::attach((*pool)->name());
  ASSERT_TRUE(client.ok()) << client.error().to_string();
  EXPECT_TRUE((*client)->pool_available());
  ASSERT_TRUE((*client)->execute_in_session("x", "ping").ok());
  ASSERT_TRUE((*pool)->execute_in_session("x", "ping").ok());
  ASSERT_TRUE((*client)->execute_in_session("x", "ping").ok());
  auto echo = (*client)->execute_anonymous(
      "echo", make_args([](flexbuffers::Builder& b) { b.String("s", "hi"); }));
  ASSERT_TRUE(echo.ok()) << echo.error().to_string();
  EXPECT_EQ(echo->json(), R"({"s":"hi"})");
  auto fut = (*client)->submit("y", "whoami");
  auto who = fut.get();
  ASSERT_TRUE(who.ok()) << who.error().to_string();
  EXPECT_EQ(who->value().AsMap()["session_id"].AsString().str(), "y");

  EXPECT_EQ((*pool)->session("x")->operations, 3u);
  EXPECT_EQ((*client)->session("x")->operations, 3u);
  EXPECT_EQ((*client)->sessions().size(), 2u);
  auto bad = (*client)->execute_anonymous("no_such_command");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().category, Category::handler_error);
  EXPECT_EQ(bad.error().context.at("pool_name"), (*pool)->name());
  ASSERT_TRUE((*client)->end_session("x").ok());
  EXPECT_FALSE((*pool)->session("x"));
  EXPECT_EQ((*client)->end_session("x").error().type, "unknown_session");
  auto st = (*client)->status();
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->owner_pid, ::getpid());
  EXPECT_EQ(st->calls, 6u);  // 4 + whoami + the failed one
  EXPECT_EQ(st->errors_by_category["handler_error"], 1u);
}

// Two and four client processes plus the owner's threads on one pool: every
// call answered (each helper checks each reply), session counts exact.
void hammer(uint32_t clients) {
  auto pool = Pool::start(config(unique_name("hammer")));
  ASSERT_TRUE(pool.ok()) << pool.error().to_string();
  constexpr int kCalls = 200;
  std::vector<test::Child> children;
  for (uint32_t j = 0; j < clients; ++j) {
    children.push_back(
        helper({(*pool)->name(), "calls", "c" + std::to_string(j), std::to_string(kCalls)}));
  }
  std::vector<std::thread> owners;
  std::atomic<int> owner_ok{0};
  for (int t = 0; t < 2; ++t) {
    owners.emplace_back([&] {
      for (int k = 0; k < kCalls; ++k)
        owner_ok += (*pool)->execute_in_session("owner", "ping").ok();
    });
  }
  for (auto& t : owners) t.join();
  for (uint32_t j = 0; j < clients; ++j) {
    const std::string line = children[j].read_line();
    EXPECT_EQ(line, "OK " + std::to_string(kCalls)) << "client " << j;
    EXPECT_TRUE(exited_zero(children[j].wait())) << "client " << j;
  }
  EXPECT_EQ(owner_ok.load(), 2 * kCalls);
  for (uint32_t j = 0; j < clients; ++j) {
    auto s = (*pool)->session("c" + std::to_string(j));
    ASSERT_TRUE(s);
    EXPECT_EQ(s->operations, uint64_t(kCalls));
    EXPECT_EQ(s->errors, 0u);
  }
  EXPECT_EQ((*pool)->session("owner")->operations, uint64_t(2 * kCalls));
  EXPECT_EQ((*pool)->status().calls, uint64_t(kCalls) * (clients + 2));
}

TEST_F(ClientTest, TwoClientProcessesAndTheOwnerHammerOnePool) { hammer(2); }
TEST_F(ClientTest, FourClientProcessesAndTheOwnerHammerOnePool) { hammer(4); }

TEST_F(ClientTest, AClientKilledMidCallLosesItsWorkerAndTheOthersGoOn) {
  test::LogWatch log;
  test::EventLog events;
  PoolConfig c = config(unique_name("kill"));
  c.log = log.callback();
  c.on_event = events.callback();
  auto pool = Pool::start(c);
  ASSERT_TRUE(pool.ok()) << pool.error().to_string();
  test::Child holder = helper({(*pool)->name(), "hold", "doomed"});
  ASSERT_EQ(holder.read_line(), "CALLING");
  ASSERT_TRUE(log.wait_for_line("BLOCKING")) << "the call reached the worker";

  std::unique_ptr<ipc::Segment> seg;
  ASSERT_EQ(ipc::Segment::attach((*pool)->name(), &seg), ipc::Errc::ok);
  const auto [victim, victim_pid] = busy_slot(**pool);
  ASSERT_GE(victim, 0);
  const pid_t holder_pid = holder.pid;
  ASSERT_EQ(::kill(holder.pid, SIGKILL), 0);
  const auto killed = std::chrono::steady_clock::now();
  holder.wait();
  // Another client keeps working meanwhile.
  test::Child other = helper({(*pool)->name(), "calls", "other", "50"});
  // The owner takes the slot back and replaces the worker that was serving
  // nobody: the slot is usable again with a new worker.
  const bool back = back_in_service(*seg, uint32_t(victim), victim_pid);
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - killed).count();
  ASSERT_TRUE(back) << "the dead client's slot never came back";
  // (Printed, not asserted: a test states no wall-clock bound. The wait's
  // own deadline is the limit.)
  std::printf("slot back %.1f ms after its client was killed\n", ms);
  EXPECT_EQ(other.read_line(), "OK 50");
  EXPECT_TRUE(exited_zero(other.wait()));
  const PoolStatus st = (*pool)->status();
  EXPECT_EQ(st.reclaimed_from_dead_clients, 1u);
  auto reclaimed = events.of(PoolEvent::Kind::client_slot_reclaimed);
  ASSERT_EQ(reclaimed.size(), 1u);
  EXPECT_EQ(reclaimed[0].slot, victim);
  EXPECT_EQ(reclaimed[0].detail, std::to_string(holder_pid));
  EXPECT_TRUE((*pool)->execute_anonymous("ping").ok());
}

TEST_F(ClientTest, AClientKilledWhileQueuedDoesNotStallTheQueue) {
  // A client process holds the queue's turn (first in line for the only,
  // busy worker) and is killed. The owner's supervisor passes its turn on:
  // the caller queued behind it is served once the worker is free.
  test::LogWatch log;
  PoolConfig c = config(unique_name("queued"), 1);
  c.max_overflow = 0;
  c.log = log.callback();
  auto pool = Pool::start(c);
  ASSERT_TRUE(pool.ok()) << pool.error().to_string();
  const test::Fifo fifo("queued");
  auto holder = (*pool)->submit("", "wait_for_fifo", fifo.args());
  ASSERT_TRUE(log.wait_for_line("BLOCKING"));
  test::Child doomed = helper({(*pool)->name(), "calls", "doomed", "1"});
  ASSERT_TRUE(test::wait_queued((*pool)->name(), 1));
  ASSERT_EQ(::kill(doomed.pid, SIGKILL), 0);
  doomed.wait();
  // Its waiter is forgotten within a supervisor pass: the count is exact
  // again (a stale count would have the owner start workers for nobody).
  ASSERT_TRUE(test::wait_queued((*pool)->name(), 0));
  EXPECT_EQ((*pool)->status().queue_length, 0u);
  auto behind =
      std::async(std::launch::async, [&] { return (*pool)->execute_in_session("behind", "ping"); });
  ASSERT_TRUE(test::wait_queued((*pool)->name(), 1));
  ASSERT_TRUE(fifo.release());
  ASSERT_EQ(holder.wait_for(std::chrono::seconds(20)), std::future_status::ready);
  EXPECT_TRUE(holder.get().ok());
  ASSERT_EQ(behind.wait_for(std::chrono::seconds(20)), std::future_status::ready)
      << "the queue stalled behind the dead client";
  auto r = behind.get();
  EXPECT_TRUE(r.ok()) << r.error().to_string();
}

TEST_F(ClientTest, AClientKilledHoldingArenaBlocksHasThemReclaimed) {
  PoolConfig c = config(unique_name("arena"));
  c.payload_arena_bytes = 4u << 20;
  auto pool = Pool::start(c);
  ASSERT_TRUE(pool.ok()) << pool.error().to_string();
  test::Child holder = helper({(*pool)->name(), "payload", "blocks", std::to_string(1 << 20)});
  ASSERT_EQ(holder.read_line(), "HOLDING");
  EXPECT_EQ((*pool)->status().arena_blocks_in_use, 2u) << "its buffer and its echo reply";
  std::unique_ptr<ipc::Segment> seg;
  ASSERT_EQ(ipc::Segment::attach((*pool)->name(), &seg), ipc::Errc::ok);
  ASSERT_EQ(::kill(holder.pid, SIGKILL), 0);
  holder.wait();
  // The owner's supervisor frees them; wait on the arena's free doorbell.
  ipc::Arena arena = seg->arena();
  EXPECT_EQ(ipc::wait_until(
                seg->header().arena.freed, [&] { return arena.usage().blocks == 0; },
                ipc::monotonic_ns() + 10'000'000'000, ipc::WaitPolicy{ipc::WaitStrategy::block, 0}),
            ipc::WaitResult::ready)
      << "blocks of the dead client were not reclaimed";
  auto all = (*pool)->alloc_payload(4u << 20);
  EXPECT_TRUE(all.ok()) << "the whole arena is free again";
}

TEST_F(ClientTest, AClientsOperationTimeoutHasTheOwnerReplaceTheWorker) {
  test::LogWatch log;
  PoolConfig c = config(unique_name("timeout"));
  c.log = log.callback();
  auto pool = Pool::start(c);
  ASSERT_TRUE(pool.ok()) << pool.error().to_string();
  test::EventLog client_events;
  ClientOptions co;
  co.on_event = client_events.callback();
  auto client = Client::attach((*pool)->name(), co);
  ASSERT_TRUE(client.ok()) << client.error().to_string();
  std::unique_ptr<ipc::Segment> seg;
  ASSERT_EQ(ipc::Segment::attach((*pool)->name(), &seg), ipc::Errc::ok);
  ExecOptions short_op;
  short_op.operation_timeout = std::chrono::milliseconds(300);
  auto r = (*client)->execute_in_session("slow", "announce_and_block", empty_args(), short_op);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().type, "operation_timeout") << r.error().to_string();
  ASSERT_TRUE(log.wait_for_line("BLOCKING"));
  const uint32_t slot = uint32_t(std::stoul(r.error().context.at("slot")));
  const pid_t pid = pid_t(std::stol(r.error().context.at("worker_pid")));
  // The client gave the slot up as dead; the owner kills the worker that
  // still blocks (clients never signal the owner's children) and restarts it.
  EXPECT_TRUE(back_in_service(*seg, slot, pid)) << "the owner never replaced the worker";
  EXPECT_TRUE((*client)->execute_in_session("slow", "ping").ok());
  EXPECT_EQ((*pool)->session("slow")->errors, 1u);
  auto timed_out = client_events.of(PoolEvent::Kind::call_timed_out);
  ASSERT_EQ(timed_out.size(), 1u);
  EXPECT_EQ(timed_out[0].session_id, "slow");
  EXPECT_EQ(timed_out[0].pid, pid);
  ASSERT_EQ(client_events.of(PoolEvent::Kind::session_created).size(), 1u);
}

TEST_F(ClientTest, TheOwnerKilledFailsWaitingAndNewCallsWithPoolNotAvailable) {
  const std::string name = unique_name("owner");
  test::Child owner = test::spawn_child({SHMPOOL_OWNER_HELPER, name, SHMPOOL_TEST_HANDLERS});
  const std::string ready = owner.read_line();
  int w1 = 0, w2 = 0;
  ASSERT_EQ(std::sscanf(ready.c_str(), "READY %d %d", &w1, &w2), 2) << ready;
  ipc::SysError err;
  const int fd1 = ipc::pidfd_open(w1, &err), fd2 = ipc::pidfd_open(w2, &err);
  ASSERT_GE(fd1, 0);
  ASSERT_GE(fd2, 0);
  {
    test::EventLog client_events;
    ClientOptions co;
    co.on_event = client_events.callback();
    auto client = Client::attach(name, co);
    ASSERT_TRUE(client.ok()) << client.error().to_string();
    // A call that would wait forever; the owner dies under it.
    auto blocked = (*client)->submit("s", "announce_and_block");
    std::string line;
    do {
      line = owner.read_line();  // the owner forwards its workers' output
    } while (!line.empty() && line.rfind("LOG BLOCKING", 0) != 0);
    ASSERT_FALSE(line.empty()) << "the blocking call never reached a worker";
    ASSERT_TRUE((*client)->execute_anonymous("ping").ok()) << "the other worker still answers";
    // A stream in flight on the other worker (its generator never ends).
    ExecOptions small_window;
    small_window.stream_window_items = 2;
    Stream stream = (*client)->stream(
        "s2", "count_stream",
        make_args([](flexbuffers::Builder& b) { b.Int("n", int64_t(1) << 40); }), small_window);
    auto first = stream.next();
    ASSERT_TRUE(first.ok() && first->has_value()) << "the stream never started";
    ASSERT_EQ(::kill(owner.pid, SIGKILL), 0);
    const auto killed = std::chrono::steady_clock::now();
    owner.wait();
    ASSERT_EQ(blocked.wait_for(std::chrono::seconds(10)), std::future_status::ready);
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - killed)
            .count();
    auto r = blocked.get();
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().category, Category::resource_error);
    EXPECT_EQ(r.error().type, "pool_not_available") << r.error().to_string();
    std::printf("waiting call failed %.1f ms after the owner was killed\n", ms);
    // The stream ends the same way, after the items already there.
    std::optional<Error> stream_end;
    for (int items = 0; items < 10 && !stream_end; ++items) {
      auto n = stream.next();
      if (!n.ok()) stream_end = n.error();
    }
    ASSERT_TRUE(stream_end) << "the stream did not end";
    EXPECT_EQ(stream_end->type, "pool_not_available") << stream_end->to_string();
    EXPECT_FALSE((*client)->pool_available());
    ASSERT_TRUE(client_events.wait_for(PoolEvent::Kind::pool_lost));
    auto next = (*client)->execute_in_session("s", "ping");
    ASSERT_FALSE(next.ok());
    EXPECT_EQ(next.error().type, "pool_not_available");
    // Attaching now is refused the same way.
    auto late = Client::attach(name);
    ASSERT_FALSE(late.ok());
    EXPECT_EQ(late.error().type, "pool_not_available");
  }
  const int64_t deadline = ipc::monotonic_ns() + 10'000'000'000;
  EXPECT_TRUE(test::wait_exit(fd1, deadline) && test::wait_exit(fd2, deadline))
      << "workers outlived their owner";
  auto removed = remove_stale_pools({name});
  EXPECT_EQ(removed.size(), 1u);
}

}  // namespace
}  // namespace shmpool
