// wait_until: deadlines are honoured with every strategy; a ring wakes a
// sleeper in another thread; what a waiter lets go of is let go before it
// blocks and held until the wait ends.
#include "ipc/wait.h"

#include <gtest/gtest.h>
#include <sched.h>

#include <thread>

namespace shmpool::ipc {
namespace {

class WaitStrategies : public ::testing::TestWithParam<WaitStrategy> {};

TEST_P(WaitStrategies, ReturnsTimedOutAtTheDeadlineAndNotBefore) {
  Doorbell bell;
  WaitPolicy policy{GetParam(), 100'000};
  const int64_t deadline = monotonic_ns() + 30'000'000;
  EXPECT_EQ(wait_until(
                bell, [] { return false; }, deadline, policy),
            WaitResult::timed_out);
  EXPECT_GE(monotonic_ns(), deadline);
}

TEST_P(WaitStrategies, ReturnsReadyWhenAnotherThreadPublishes) {
  Doorbell bell;
  std::atomic<uint64_t> value{0};
  WaitPolicy policy{GetParam(), 10'000};
  for (int round = 1; round <= 200; ++round) {
    std::thread publisher([&] {
      value.store(uint64_t(round), std::memory_order_release);
      bell.ring();
    });
    EXPECT_EQ(wait_until(
                  bell, [&] { return value.load(std::memory_order_acquire) == uint64_t(round); },
                  monotonic_ns() + 10'000'000'000, policy),
              WaitResult::ready);
    publisher.join();
  }
}

INSTANTIATE_TEST_SUITE_P(All, WaitStrategies,
                         ::testing::Values(WaitStrategy::spin, WaitStrategy::hybrid,
                                           WaitStrategy::block),
                         [](const auto& info) {
                           return info.param == WaitStrategy::spin     ? "spin"
                                  : info.param == WaitStrategy::hybrid ? "hybrid"
                                                                       : "block";
                         });

// Runs the calling thread on one CPU until destroyed, so that
// current_cpu() is the same in the test and in wait_until.
class PinnedToOneCpu {
 public:
  PinnedToOneCpu() {
    CPU_ZERO(&saved_);
    sched_getaffinity(0, sizeof saved_, &saved_);
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(sched_getcpu(), &one);
    EXPECT_EQ(sched_setaffinity(0, sizeof one, &one), 0);
  }
  ~PinnedToOneCpu() { sched_setaffinity(0, sizeof saved_, &saved_); }

 private:
  cpu_set_t saved_;
};

TEST(HybridWait, BlocksAtOnceWhenThePeerLastRanOnThisCpu) {
  PinnedToOneCpu pin;
  Doorbell bell;
  SpinBudget budget(100'000);
  WaitPolicy policy{WaitStrategy::hybrid, 100'000, &budget, current_cpu()};
  int polls = 0;
  EXPECT_EQ(wait_until(
                bell, [&] { return ++polls, false; }, monotonic_ns() + 2'000'000, policy),
            WaitResult::timed_out);
  // Not one poll before sleeping (only the checks around the futex), and the
  // budget was not consulted: blocking was no failed poll.
  EXPECT_LT(polls, 16);
  EXPECT_EQ(budget.budget_ns(), 100'000);
}

TEST(HybridWait, PollsWhenThePeerRanElsewhereAndAFailedPollHalvesTheBudget) {
  PinnedToOneCpu pin;
  Doorbell bell;
  SpinBudget budget(100'000);
  const uint32_t elsewhere = current_cpu() + 1;  // a CPU that is not ours
  WaitPolicy policy{WaitStrategy::hybrid, 100'000, &budget, elsewhere};
  int polls = 0;
  EXPECT_EQ(wait_until(
                bell, [&] { return ++polls, false; }, monotonic_ns() + 200'000'000, policy),
            WaitResult::timed_out);
  EXPECT_GT(polls, int(kTightPolls));
  EXPECT_EQ(budget.budget_ns(), 50'000);
}

TEST(HybridWait, AWaitThatEndsWhilePollingKeepsTheWholeBudget) {
  Doorbell bell;
  SpinBudget budget(100'000);
  budget.next();
  budget.blocked();  // 50 us left
  WaitPolicy policy{WaitStrategy::hybrid, 100'000, &budget, 0};
  int polls = 0;
  EXPECT_EQ(wait_until(
                bell, [&] { return ++polls > 3; }, monotonic_ns() + 10'000'000'000, policy),
            WaitResult::ready);
  EXPECT_EQ(budget.budget_ns(), 100'000);
}

// What a waiter lets go of before it blocks (the worker's GIL): a guard
// that says whether it is held, and counts how often it was taken.
struct LetGoProbe {
  int calls = 0;
  bool released = false;
  int polls_released = 0, polls_held = 0;
  struct Guard {
    LetGoProbe* probe;
    explicit Guard(LetGoProbe* p) : probe(p) {}
    Guard(const Guard&) = delete;  // as py::gil_scoped_release: returned as a prvalue
    ~Guard() { probe->released = false; }
  };
  auto let_go() {
    return [this] {
      ++calls;
      released = true;
      return Guard{this};
    };
  }
  bool poll() {
    ++(released ? polls_released : polls_held);
    return false;
  }
};

TEST(LetGo, IsNotCalledWhenTheWaitEndsWhilePolling) {
  Doorbell bell;
  SpinBudget budget(100'000);
  WaitPolicy policy{WaitStrategy::hybrid, 100'000, &budget, 0};
  LetGoProbe probe;
  int polls = 0;
  EXPECT_EQ(wait_until(
                bell, [&] { return ++polls > 3; }, monotonic_ns() + 10'000'000'000, policy,
                probe.let_go()),
            WaitResult::ready);
  EXPECT_EQ(probe.calls, 0);
}

TEST(LetGo, IsHeldWhileTheWaitSleepsAndEndsWithIt) {
  for (WaitStrategy s : {WaitStrategy::hybrid, WaitStrategy::block}) {
    Doorbell bell;
    SpinBudget budget(20'000);
    WaitPolicy policy{s, 20'000, &budget, 0};
    LetGoProbe probe;
    EXPECT_EQ(
        wait_until(
            bell, [&] { return probe.poll(); }, monotonic_ns() + 5'000'000, policy, probe.let_go()),
        WaitResult::timed_out);
    EXPECT_EQ(probe.calls, 1);
    EXPECT_FALSE(probe.released) << "the guard ends with the wait";
    EXPECT_GT(probe.polls_released, 0) << "the checks around the futex sleep";
    if (s == WaitStrategy::hybrid) {
      EXPECT_GT(probe.polls_held, int(kTightPolls));
    }
  }
}

TEST(LetGo, SpinPollsHoldingForSpinNsThenWithoutUntilTheDeadline) {
  Doorbell bell;
  WaitPolicy policy{WaitStrategy::spin, 1'000'000};
  LetGoProbe probe;
  const int64_t start = monotonic_ns();
  EXPECT_EQ(wait_until(
                bell, [&] { return probe.poll(); }, start + 20'000'000, policy, probe.let_go()),
            WaitResult::timed_out);
  EXPECT_GE(monotonic_ns(), start + 20'000'000);
  EXPECT_EQ(probe.calls, 1);
  EXPECT_GT(probe.polls_held, int(kTightPolls));
  EXPECT_GT(probe.polls_released, int(kTightPolls));
}

TEST(Doorbell, ZeroedMemoryIsAnIdleDoorbell) {
  alignas(Doorbell) unsigned char raw[sizeof(Doorbell)] = {};
  auto* bell = reinterpret_cast<Doorbell*>(raw);
  bell->ring();  // nobody waits: no syscall, no crash
  EXPECT_EQ(bell->waiters.load(), 0u);
}

}  // namespace
}  // namespace shmpool::ipc
