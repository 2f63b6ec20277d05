// wait_until: deadlines are honoured with every strategy; a ring wakes a
// sleeper in another thread.
#include "ipc/wait.h"

#include <gtest/gtest.h>

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

TEST(Doorbell, ZeroedMemoryIsAnIdleDoorbell) {
  alignas(Doorbell) unsigned char raw[sizeof(Doorbell)] = {};
  auto* bell = reinterpret_cast<Doorbell*>(raw);
  bell->ring();  // nobody waits: no syscall, no crash
  EXPECT_EQ(bell->waiters.load(), 0u);
}

}  // namespace
}  // namespace shmpool::ipc
