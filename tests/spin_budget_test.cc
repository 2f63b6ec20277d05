// SpinBudget: fed wait outcomes, it chooses how long the next wait polls.
// Deterministic: no clock, no threads.
#include "ipc/spin_budget.h"

#include <gtest/gtest.h>

namespace shmpool::ipc {
namespace {

constexpr int64_t kMax = 50'000;

// Misses in a row until the budget collapses (to 0: block at once).
int misses_to_collapse(SpinBudget& b) {
  int n = 0;
  while (b.budget_ns() >= SpinBudget::kMinSpinNs) {
    EXPECT_EQ(b.next(), b.budget_ns());
    b.blocked();
    ++n;
  }
  return n;
}

TEST(SpinBudget, StartsWithTheWholeBudgetAndKeepsItWhilePollingPays) {
  SpinBudget b(kMax);
  for (int i = 0; i < 1000; ++i) {
    ASSERT_EQ(b.next(), kMax);
    b.spun();
  }
}

TEST(SpinBudget, EachMissHalvesTheBudgetUntilItBlocksAtOnce) {
  SpinBudget b(kMax);
  EXPECT_EQ(b.next(), kMax);
  b.blocked();
  EXPECT_EQ(b.budget_ns(), kMax / 2);
  EXPECT_EQ(b.next(), kMax / 2);
  b.blocked();
  EXPECT_EQ(b.budget_ns(), kMax / 4);
  // 50 us -> 25 -> 12.5 -> 6.25 -> 3.1 -> (1.6 < kMinSpinNs) 0.
  EXPECT_EQ(misses_to_collapse(b), 3);
  EXPECT_EQ(b.budget_ns(), 0);
  EXPECT_EQ(b.next(), 0);
}

TEST(SpinBudget, OneSuccessRestoresTheWholeBudget) {
  SpinBudget b(kMax);
  b.next();
  b.blocked();
  b.next();
  b.blocked();
  b.next();
  b.spun();
  EXPECT_EQ(b.next(), kMax);
  // Also after a collapse: a wait that ended within the tight polls.
  misses_to_collapse(b);
  EXPECT_EQ(b.next(), 0);
  b.spun();
  EXPECT_EQ(b.next(), kMax);
}

TEST(SpinBudget, ACollapsedBudgetProbesWithAFullPollAfterTheGap) {
  SpinBudget b(kMax);
  misses_to_collapse(b);
  for (uint32_t i = 0; i < SpinBudget::kMinProbeGap; ++i) {
    ASSERT_EQ(b.next(), 0) << "wait " << i;
    b.blocked();  // blocking as chosen is not a failed poll
  }
  EXPECT_EQ(b.next(), kMax);  // the probe
  b.spun();                   // it paid: poll again
  EXPECT_EQ(b.budget_ns(), kMax);
  EXPECT_EQ(b.next(), kMax);
  EXPECT_EQ(b.probe_gap(), SpinBudget::kMinProbeGap);
}

TEST(SpinBudget, FailedProbesDoubleTheGapUpToItsCap) {
  SpinBudget b(kMax);
  misses_to_collapse(b);
  uint64_t waits = 0, probes = 0;
  uint32_t expected_gap = SpinBudget::kMinProbeGap;
  while (probes < 12) {
    const int64_t spin = b.next();
    ++waits;
    if (spin != 0) {
      ASSERT_EQ(spin, kMax);
      ++probes;
      b.blocked();  // the probe failed
      expected_gap = std::min(expected_gap * 2, SpinBudget::kMaxProbeGap);
      ASSERT_EQ(b.probe_gap(), expected_gap);
      ASSERT_EQ(b.budget_ns(), 0) << "a failed probe does not restore the budget";
    } else {
      b.blocked();
    }
  }
  EXPECT_EQ(b.probe_gap(), SpinBudget::kMaxProbeGap);
  // On a machine that stays busy, at most one failed poll per kMaxProbeGap waits.
  uint64_t polls = 0;
  for (uint32_t i = 0; i < 10 * SpinBudget::kMaxProbeGap; ++i) {
    if (b.next() != 0) ++polls;
    b.blocked();
  }
  EXPECT_LE(polls, 10u);
  EXPECT_GE(polls, 9u);
}

TEST(SpinBudget, AZeroMaximumNeverPolls) {
  SpinBudget b(0);
  for (int i = 0; i < 100; ++i) {
    ASSERT_EQ(b.next(), 0);
    b.blocked();
  }
}

}  // namespace
}  // namespace shmpool::ipc
