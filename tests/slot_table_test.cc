// Slot checkout/checkin: transitions, generations, and mutual exclusion
// under contention (run under TSan as well).
#include "ipc/slot_table.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <thread>
#include <vector>

#include "tests/test_support.h"

namespace shmpool::ipc {
namespace {

class SlotTableTest : public test::LeakCheck {
 protected:
  void SetUp() override {
    test::LeakCheck::SetUp();
    name_ = "slots-" + std::to_string(::getpid());
    ASSERT_EQ(Segment::create(name_, Geometry{3, 0, 4096, 4096}, &seg_), Errc::ok);
  }
  void TearDown() override {
    seg_.reset();
    Segment::remove(name_);
    test::LeakCheck::TearDown();
  }
  std::string name_;
  std::unique_ptr<Segment> seg_;
};

TEST_F(SlotTableTest, OnlyIdleSlotsCanBeCheckedOut) {
  uint64_t w;
  EXPECT_FALSE(SlotTable(*seg_).try_checkout(0, 1, &w)) << "empty";
  ASSERT_NE(SlotTable(*seg_).set_state(0, state_bit(SlotState::empty), SlotState::starting), 0u);
  EXPECT_FALSE(SlotTable(*seg_).try_checkout(0, 1, &w)) << "starting";
  ASSERT_NE(SlotTable(*seg_).set_state(0, state_bit(SlotState::starting), SlotState::idle), 0u);
  ASSERT_TRUE(SlotTable(*seg_).try_checkout(0, 42, &w));
  EXPECT_EQ(slot_state(w), SlotState::busy);
  EXPECT_EQ(seg_->slot(0).owner.load(), 42u);
  uint64_t w2;
  EXPECT_FALSE(SlotTable(*seg_).try_checkout(0, 43, &w2)) << "busy";
  EXPECT_TRUE(SlotTable(*seg_).checkin(0, w));
  EXPECT_EQ(slot_state(seg_->slot(0).state.load()), SlotState::idle);
  EXPECT_GT(slot_generation(seg_->slot(0).state.load()), slot_generation(w));
}

TEST_F(SlotTableTest, TheBusyWordNamesItsHolderFromTheCheckoutCasOn) {
  // The owner tells a slot held by a dead process from one just checked out
  // by reading the holder from the state word: it must be there at once.
  ASSERT_NE(SlotTable(*seg_).set_state(1, state_bit(SlotState::empty), SlotState::idle), 0u);
  const uint32_t pid = 4'000'000;  // above the default pid_max, within 22 bits
  uint64_t w;
  ASSERT_TRUE(SlotTable(*seg_).try_checkout(1, uint64_t(pid) << 32 | 7, &w));
  EXPECT_EQ(slot_holder_pid(seg_->slot(1).state.load()), pid);
  EXPECT_EQ(slot_state(w), SlotState::busy);
  const uint32_t generation = slot_generation(w);
  ASSERT_TRUE(SlotTable(*seg_).checkin(1, w));
  const uint64_t idle = seg_->slot(1).state.load();
  EXPECT_EQ(slot_holder_pid(idle), 0u);
  EXPECT_EQ(slot_generation(idle), generation + 1);
  EXPECT_EQ(slot_holder_pid(make_slot_word(1, SlotState::busy, kMaxHolderPid + 2)), 1u)
      << "masked to 24 bits, never spilling into the generation";
  EXPECT_EQ(slot_generation(make_slot_word(5, SlotState::busy, ~0u)), 5u);
}

TEST_F(SlotTableTest, CheckinAfterTheOwnerMarkedTheSlotDeadFails) {
  SlotTable(*seg_).set_state(1, state_bit(SlotState::empty), SlotState::idle);
  uint64_t w;
  ASSERT_TRUE(SlotTable(*seg_).try_checkout(1, 7, &w));
  ASSERT_NE(SlotTable(*seg_).set_state(1, ~0u, SlotState::dead), 0u);
  EXPECT_FALSE(SlotTable(*seg_).checkin(1, w)) << "a stale generation never wins";
  EXPECT_EQ(slot_state(seg_->slot(1).state.load()), SlotState::dead);
}

TEST_F(SlotTableTest, ContendedCheckoutsAreMutuallyExclusive) {
  for (uint32_t i = 0; i < 3; ++i)
    SlotTable(*seg_).set_state(i, state_bit(SlotState::empty), SlotState::idle);
  std::atomic<int> in_use[3] = {0, 0, 0};
  std::atomic<uint64_t> total{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&, t] {
      for (int n = 0; n < 5000;) {
        for (uint32_t i = 0; i < 3 && n < 5000; ++i) {
          uint64_t w;
          if (!SlotTable(*seg_).try_checkout(i, uint64_t(t), &w)) continue;
          EXPECT_EQ(in_use[i].exchange(1), 0) << "two holders of slot " << i;
          seg_->slot(i).calls.fetch_add(1, std::memory_order_relaxed);
          in_use[i].store(0);
          EXPECT_TRUE(SlotTable(*seg_).checkin(i, w));
          ++n;
          total.fetch_add(1);
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(total.load(), 30000u);
  uint64_t checkouts = 0;
  for (uint32_t i = 0; i < 3; ++i) checkouts += seg_->slot(i).checkouts.load();
  EXPECT_EQ(checkouts, 30000u);
}

}  // namespace
}  // namespace shmpool::ipc

namespace shmpool::ipc {
namespace {

// Every transition in segment.h's state table, made the way the code makes
// it (the same function and, for the owner's set_state, the same from-mask),
// in one walk through a slot's life.
TEST(SlotStateTable, EveryTransitionTheCodeMakes) {
  const std::string name = "slot-walk-" + std::to_string(::getpid());
  std::unique_ptr<Segment> seg;
  ASSERT_EQ(Segment::create(name, Geometry{1, 0, 4096, 4096}, &seg), Errc::ok);
  auto state = [&] { return slot_state(seg->slot(0).state.load()); };
  auto owner_sets = [&](uint32_t from_mask, SlotState to) {
    return SlotTable(*seg).set_state(0, from_mask, to) != 0;
  };
  const uint32_t launchable = state_bit(SlotState::empty) | state_bit(SlotState::dead);
  const uint32_t on_exit =
      state_bit(SlotState::starting) | state_bit(SlotState::idle) | state_bit(SlotState::retiring);
  uint64_t w = 0;
  // empty -> starting -> idle (a worker starts)
  ASSERT_TRUE(owner_sets(launchable, SlotState::starting));
  ASSERT_TRUE(owner_sets(state_bit(SlotState::starting), SlotState::idle));
  EXPECT_EQ(state(), SlotState::idle);
  // idle -> busy -> idle (a call)
  ASSERT_TRUE(SlotTable(*seg).try_checkout(0, 1, &w));
  EXPECT_EQ(state(), SlotState::busy);
  ASSERT_TRUE(SlotTable(*seg).checkin(0, w));
  // idle -> busy -> dead (a call whose worker must go)
  ASSERT_TRUE(SlotTable(*seg).try_checkout(0, 1, &w));
  ASSERT_TRUE(SlotTable(*seg).release_as(0, w, SlotState::dead));
  EXPECT_EQ(state(), SlotState::dead);
  // dead -> starting -> dead (a restart that fails)
  ASSERT_TRUE(owner_sets(launchable, SlotState::starting));
  ASSERT_TRUE(owner_sets(kAnySlotState, SlotState::dead));
  // dead -> starting -> idle -> dead (the idle worker exits)
  ASSERT_TRUE(owner_sets(launchable, SlotState::starting));
  ASSERT_TRUE(owner_sets(state_bit(SlotState::starting), SlotState::idle));
  ASSERT_TRUE(owner_sets(on_exit, SlotState::dead));
  // ... or a caller checks out a slot whose worker is gone and releases it dead
  ASSERT_TRUE(owner_sets(launchable, SlotState::starting));
  ASSERT_TRUE(owner_sets(state_bit(SlotState::starting), SlotState::idle));
  ASSERT_TRUE(SlotTable(*seg).try_checkout(0, 1, &w));
  ASSERT_TRUE(SlotTable(*seg).release_as(0, w, SlotState::dead));
  // busy -> retiring -> dead -> empty (recycled after a call)
  ASSERT_TRUE(owner_sets(launchable, SlotState::starting));
  ASSERT_TRUE(owner_sets(state_bit(SlotState::starting), SlotState::idle));
  ASSERT_TRUE(SlotTable(*seg).try_checkout(0, 1, &w));
  ASSERT_TRUE(SlotTable(*seg).release_as(0, w, SlotState::retiring));
  EXPECT_EQ(state(), SlotState::retiring);
  ASSERT_TRUE(owner_sets(on_exit, SlotState::dead));
  ASSERT_TRUE(owner_sets(state_bit(SlotState::dead), SlotState::empty));
  // idle -> retiring (overflow idle, or memory) -> dead -> empty
  ASSERT_TRUE(owner_sets(launchable, SlotState::starting));
  ASSERT_TRUE(owner_sets(state_bit(SlotState::starting), SlotState::idle));
  ASSERT_TRUE(owner_sets(state_bit(SlotState::idle), SlotState::retiring));
  ASSERT_TRUE(owner_sets(on_exit, SlotState::dead));
  ASSERT_TRUE(owner_sets(state_bit(SlotState::dead), SlotState::empty));
  // busy -> dead by the owner (the holder's process died): release_as with the seen word
  ASSERT_TRUE(owner_sets(launchable, SlotState::starting));
  ASSERT_TRUE(owner_sets(state_bit(SlotState::starting), SlotState::idle));
  ASSERT_TRUE(SlotTable(*seg).try_checkout(0, 1, &w));
  const uint64_t seen = seg->slot(0).state.load();
  ASSERT_TRUE(SlotTable(*seg).release_as(0, seen, SlotState::dead));
  // a busy slot's worker exits: the exit's mask leaves it busy for its holder
  ASSERT_TRUE(owner_sets(launchable, SlotState::starting));
  ASSERT_TRUE(owner_sets(state_bit(SlotState::starting), SlotState::idle));
  ASSERT_TRUE(SlotTable(*seg).try_checkout(0, 1, &w));
  EXPECT_FALSE(owner_sets(on_exit, SlotState::dead));
  EXPECT_EQ(state(), SlotState::busy);
  ASSERT_TRUE(SlotTable(*seg).release_as(0, w, SlotState::dead));
  // invalid -> dead (a scribbled word)
  seg->slot(0).state.store(make_slot_word(99, SlotState(77)));
  const uint64_t scribbled = seg->slot(0).state.load();
  ASSERT_TRUE(SlotTable(*seg).release_as(0, scribbled, SlotState::dead));
  EXPECT_EQ(state(), SlotState::dead);
  // A transition from a state the mask leaves out never happens.
  EXPECT_FALSE(owner_sets(state_bit(SlotState::idle), SlotState::retiring));
  seg.reset();
  Segment::remove(name);
}

}  // namespace
}  // namespace shmpool::ipc
