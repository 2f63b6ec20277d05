// CheckoutQueue: turns in ticket order, leaving before or at one's turn,
// a full queue, a dead holder's turn skipped by the owner, and many threads
// taking, waiting for and passing turns (run under TSan too).
#include "ipc/checkout_queue.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "ipc/sys.h"

namespace shmpool::ipc {
namespace {

const WaitPolicy kBlock{WaitStrategy::block, 0};

TEST(CheckoutQueue, TurnsComeInTicketOrderAndLeaversAreSkipped) {
  auto q = std::make_unique<CheckoutQueue>();
  EXPECT_TRUE(may_barge(*q));
  const uint64_t a = take_ticket(*q, ::getpid()), b = take_ticket(*q, ::getpid()),
                 c = take_ticket(*q, ::getpid()), d = take_ticket(*q, ::getpid());
  EXPECT_EQ(b, a + 1);
  EXPECT_TRUE(is_turn(*q, a));
  EXPECT_FALSE(turn_reached(*q, b));
  leave(*q, c);  // before its turn: marked, skipped later
  EXPECT_TRUE(is_turn(*q, a));
  pass_turn(*q, a);
  EXPECT_TRUE(is_turn(*q, b));
  pass_turn(*q, a);  // a stale pass changes nothing
  EXPECT_TRUE(is_turn(*q, b));
  leave(*q, b);  // at its turn: passes it, over c, to d
  EXPECT_TRUE(is_turn(*q, d));
  q->hungry.store(1);
  EXPECT_FALSE(may_barge(*q));
  leave(*q, d);
  EXPECT_TRUE(may_barge(*q));  // empty again
}

TEST(CheckoutQueue, AFullQueueRefusesTickets) {
  auto q = std::make_unique<CheckoutQueue>();
  for (uint32_t i = 0; i < kQueueEntries; ++i) ASSERT_NE(take_ticket(*q, ::getpid()), kNoTicket);
  EXPECT_EQ(take_ticket(*q, ::getpid()), kNoTicket);
  pass_turn(*q, 0);
  EXPECT_EQ(take_ticket(*q, ::getpid()), kQueueEntries);  // its entry is ticket 0's
}

TEST(CheckoutQueue, TheOwnerSkipsADeadHoldersTurn) {
  auto q = std::make_unique<CheckoutQueue>();
  // A real process that took a ticket and died.
  pid_t child = ::fork();
  if (child == 0) _exit(0);
  ASSERT_GT(child, 0);
  ASSERT_EQ(::waitpid(child, nullptr, 0), child);
  const uint64_t dead = take_ticket(*q, child);
  const uint64_t live = take_ticket(*q, ::getpid());
  auto alive = [](pid_t pid) { return process_exists(pid); };
  uint64_t stalled = kNoTicket;
  EXPECT_TRUE(skip_dead_turn(*q, alive, &stalled));
  EXPECT_TRUE(is_turn(*q, live));
  EXPECT_FALSE(skip_dead_turn(*q, alive, &stalled));  // a live holder keeps its turn
  EXPECT_TRUE(is_turn(*q, live));
  (void)dead;
  // A ticket whose entry is never written (its taker died in between):
  // skipped on the second look, not the first.
  leave(*q, live);
  q->next.fetch_add(1);
  const uint64_t unwritten = q->serving.load();
  EXPECT_FALSE(skip_dead_turn(*q, alive, &stalled));
  EXPECT_TRUE(is_turn(*q, unwritten));
  EXPECT_TRUE(skip_dead_turn(*q, alive, &stalled));
  EXPECT_TRUE(may_barge(*q));
}

TEST(CheckoutQueue, ManyThreadsAreServedInTicketOrder) {
  // Each thread takes a ticket, waits for its turn and records it; some
  // give up before their turn. Turns must come in ticket order, exactly
  // once each, and the queue must end empty.
  const uint32_t seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  auto q = std::make_unique<CheckoutQueue>();
  constexpr int kThreads = 8, kRounds = 200;
  std::atomic<uint64_t> last_served{0};
  std::atomic<int> served{0}, left{0}, out_of_order{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(seed + uint32_t(t));
      for (int r = 0; r < kRounds; ++r) {
        const uint64_t ticket = take_ticket(*q, ::getpid());
        ASSERT_NE(ticket, kNoTicket);
        if (rng() % 8 == 0) {
          leave(*q, ticket);
          left.fetch_add(1);
          continue;
        }
        ASSERT_EQ(
            wait_turn(*q, ticket, monotonic_ns() + 20'000'000'000, kBlock, [] { return false; }),
            WaitResult::ready);
        ASSERT_TRUE(is_turn(*q, ticket));
        // Holding the turn: tickets served so far are all smaller.
        if (last_served.load() > ticket + 1) out_of_order.fetch_add(1);
        last_served.store(ticket + 1);
        served.fetch_add(1);
        leave(*q, ticket);  // served: pass the turn
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(out_of_order.load(), 0);
  EXPECT_EQ(served.load() + left.load(), kThreads * kRounds);
  EXPECT_TRUE(may_barge(*q));
  EXPECT_EQ(q->next.load(), q->serving.load());
}

}  // namespace
}  // namespace shmpool::ipc

namespace shmpool::ipc {
namespace {

TEST(WaiterCounts, ADeadProcessesWaitersAreForgottenAndItsEntryFreed) {
  auto q = std::make_unique<CheckoutQueue>();
  WaiterCount* dead = claim_waiter_count(*q, 1001);
  WaiterCount* live = claim_waiter_count(*q, 1002);
  ASSERT_NE(dead, nullptr);
  ASSERT_NE(live, nullptr);
  EXPECT_EQ(claim_waiter_count(*q, 1001), dead) << "one entry per process";
  for (int i = 0; i < 3; ++i) add_waiting(*q, dead);
  add_waiting(*q, live);
  add_waiting(*q, nullptr);  // a process without an entry
  EXPECT_EQ(waiting_callers(*q), 5u);
  auto alive = [](pid_t pid) { return pid != 1001; };
  EXPECT_EQ(forget_dead_waiters(*q, alive), 3u);
  EXPECT_EQ(waiting_callers(*q), 2u) << "exact again";
  EXPECT_EQ(dead->pid.load(), 0) << "freed";
  EXPECT_EQ(forget_dead_waiters(*q, alive), 0u);
  remove_waiting(*q, live);
  remove_waiting(*q, nullptr);
  EXPECT_EQ(waiting_callers(*q), 0u);
}

TEST(WaiterCounts, AZombieIsNotAlive) {
  // A client killed while its threads wait, not yet reaped by its parent:
  // its tickets and its waiters must be skipped now, not once it is reaped.
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ipc::Doorbell never;
  auto zombie = [&] {
    char state = 0;
    FILE* f = std::fopen(("/proc/" + std::to_string(child) + "/stat").c_str(), "r");
    if (f) {
      std::fscanf(f, "%*d %*s %c", &state);
      std::fclose(f);
    }
    return state == 'Z';
  };
  ASSERT_EQ(
      wait_until(never, zombie, monotonic_ns() + 10'000'000'000, WaitPolicy{WaitStrategy::spin, 0}),
      WaitResult::ready);
  EXPECT_FALSE(process_exists(child));
  EXPECT_TRUE(process_exists(::getpid()));
  int status = 0;
  ::waitpid(child, &status, 0);
  EXPECT_FALSE(process_exists(child));
}

TEST(WaiterCounts, AProcessPastTheTableCountsUnattributed) {
  auto q = std::make_unique<CheckoutQueue>();
  for (uint32_t i = 0; i < kWaiterProcesses; ++i)
    ASSERT_NE(claim_waiter_count(*q, pid_t(10 + i)), nullptr);
  EXPECT_EQ(claim_waiter_count(*q, 5), nullptr);
  add_waiting(*q, nullptr);
  EXPECT_EQ(waiting_callers(*q), 1u);
}

}  // namespace
}  // namespace shmpool::ipc
