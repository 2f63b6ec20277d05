// The supervisor's periodic passes (pool/src/passes.h) on a bare segment, no
// Python: each pass is given slot states and counters and must make exactly
// the transitions it documents. Slots have no worker process here, so the
// signals a pass sends go nowhere.
#include "pool/src/passes.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ipc/slot_table.h"
#include "tests/test_support.h"

namespace shmpool::detail {
namespace {

using ipc::SlotState;
using ipc::state_bit;

class PassesTest : public test::LeakCheck {
 protected:
  void SetUp() override {
    test::LeakCheck::SetUp();
    name_ = "passes-" + std::to_string(::getpid());
    // 2 core slots + 2 overflow slots, 4 sessions.
    ASSERT_EQ(ipc::Segment::create(name_, ipc::Geometry{4, 4, 4096, 4096}, &seg_), ipc::Errc::ok);
    cfg_.size = 2;
    cfg_.max_overflow = 2;
    for (int i = 0; i < 4; ++i) slots_.push_back(std::make_unique<SlotRuntime>());
  }
  void TearDown() override {
    seg_.reset();
    ipc::Segment::remove(name_);
    test::LeakCheck::TearDown();
  }
  PassContext context() {
    return PassContext{*seg_, slots_, cfg_, [this](const PoolEvent& e) { events_.push_back(e); },
                       ::getpid()};
  }
  // Moves slot i from empty to idle, as a started worker would.
  void make_idle(uint32_t i) {
    ASSERT_NE(ipc::SlotTable(*seg_).set_state(i, state_bit(SlotState::empty), SlotState::starting),
              0u);
    ASSERT_NE(ipc::SlotTable(*seg_).set_state(i, state_bit(SlotState::starting), SlotState::idle),
              0u);
  }
  SlotState state(uint32_t i) { return state_of(*seg_, i); }
  // A pid no process has any more (a child, reaped).
  static pid_t dead_pid() {
    const pid_t child = ::fork();
    if (child == 0) ::_exit(0);
    int status = 0;
    ::waitpid(child, &status, 0);
    return child;
  }

  std::string name_;
  std::unique_ptr<ipc::Segment> seg_;
  PoolConfig cfg_;
  std::vector<std::unique_ptr<SlotRuntime>> slots_;
  std::vector<PoolEvent> events_;
};

TEST_F(PassesTest, ASlotHeldByADeadProcessIsReclaimedOnTheSecondPassOnly) {
  make_idle(0);
  make_idle(1);
  uint64_t w0, w1;
  ASSERT_TRUE(ipc::SlotTable(*seg_).try_checkout(0, uint64_t(uint32_t(dead_pid())) << 32 | 1, &w0));
  ASSERT_TRUE(ipc::SlotTable(*seg_).try_checkout(1, uint64_t(uint32_t(::getpid())) << 32 | 1, &w1));
  const PassContext p = context();
  EXPECT_EQ(reclaim_orphans(p), 0u) << "first sighting: not yet";
  EXPECT_EQ(state(0), SlotState::busy);
  EXPECT_EQ(reclaim_orphans(p), 1u);
  EXPECT_EQ(state(0), SlotState::dead);
  EXPECT_EQ(state(1), SlotState::busy) << "the owner's own holders are never orphans";
  ASSERT_EQ(events_.size(), 1u);
  EXPECT_EQ(events_[0].kind, PoolEvent::Kind::client_slot_reclaimed);
  EXPECT_EQ(events_[0].slot, 0);
  EXPECT_EQ(reclaim_orphans(p), 0u) << "reclaimed once";
}

TEST_F(PassesTest, AHolderThatCheckedInBetweenPassesIsNotAnOrphan) {
  make_idle(0);
  uint64_t w;
  const uint64_t owner = uint64_t(uint32_t(dead_pid())) << 32 | 1;
  ASSERT_TRUE(ipc::SlotTable(*seg_).try_checkout(0, owner, &w));
  const PassContext p = context();
  EXPECT_EQ(reclaim_orphans(p), 0u);
  ASSERT_TRUE(ipc::SlotTable(*seg_).checkin(0, w));  // a new word: the sighting no longer counts
  ASSERT_TRUE(ipc::SlotTable(*seg_).try_checkout(0, owner, &w));
  EXPECT_EQ(reclaim_orphans(p), 0u);
  EXPECT_EQ(state(0), SlotState::busy);
}

TEST_F(PassesTest, AScribbledSlotWordGoesDead) {
  make_idle(0);
  seg_->slot(0).state.store(ipc::make_slot_word(7, SlotState(200), 0));
  EXPECT_EQ(reclaim_orphans(context()), 0u);
  EXPECT_EQ(state(0), SlotState::dead);
}

TEST_F(PassesTest, ADeadOverflowSlotWithoutAWorkerGoesEmptyACoreOneWaitsForItsRestart) {
  // The worker's exit was handled while a caller still held the slot; the
  // caller then released it dead. No process runs in it any more.
  for (uint32_t i : {0u, 2u}) {
    make_idle(i);
    ASSERT_NE(ipc::SlotTable(*seg_).set_state(i, state_bit(SlotState::idle), SlotState::dead), 0u);
  }
  slots_[0]->restart_at = 12345;  // a core slot's restart is scheduled
  EXPECT_EQ(reclaim_orphans(context()), 0u);
  EXPECT_EQ(state(2), SlotState::empty);
  EXPECT_EQ(state(0), SlotState::dead);
  slots_[2]->exit_pending = true;  // an exit not handled yet keeps it dead
  make_idle(2);
  ASSERT_NE(ipc::SlotTable(*seg_).set_state(2, state_bit(SlotState::idle), SlotState::dead), 0u);
  EXPECT_EQ(reclaim_orphans(context()), 0u);
  EXPECT_EQ(state(2), SlotState::dead);
}

TEST_F(PassesTest, OnlyOverflowWorkersIdlePastTheTimeoutRetire) {
  cfg_.overflow_idle_timeout = std::chrono::milliseconds(1000);
  for (uint32_t i = 0; i < 4; ++i) make_idle(i);
  const int64_t now = 10'000'000'000;
  seg_->slot(0).last_activity_ns.store(1);                    // core: never retires
  seg_->slot(2).last_activity_ns.store(now - 2'000'000'000);  // overflow, idle 2 s
  seg_->slot(3).last_activity_ns.store(now - 500'000'000);    // overflow, idle 0.5 s
  EXPECT_EQ(retire_idle_overflow(context(), now), 1u);
  EXPECT_EQ(state(0), SlotState::idle);
  EXPECT_EQ(state(2), SlotState::retiring);
  EXPECT_TRUE(slots_[2]->retiring);
  EXPECT_FALSE(slots_[2]->recycle);
  EXPECT_EQ(state(3), SlotState::idle);
}

TEST_F(PassesTest, AnOverflowWorkerIsIdleOnlySinceItStarted) {
  // A relaunched overflow worker must not inherit its slot's old activity:
  // it would retire as soon as it is ready, and demand would start it again.
  cfg_.overflow_idle_timeout = std::chrono::milliseconds(1000);
  make_idle(2);
  const int64_t now = 10'000'000'000;
  seg_->slot(2).last_activity_ns.store(now - 5'000'000'000);  // the previous worker's
  seg_->slot(2).started_ns.store(now - 100'000'000);          // this one started 0.1 s ago
  EXPECT_EQ(retire_idle_overflow(context(), now), 0u);
  EXPECT_EQ(state(2), SlotState::idle);
  EXPECT_EQ(retire_idle_overflow(context(), now + 1'000'000'000), 1u);
  EXPECT_EQ(state(2), SlotState::retiring);
}

TEST_F(PassesTest, IdleWorkersOverTheMemoryLimitAreRecycled) {
  cfg_.max_worker_rss_bytes = 1000;
  make_idle(0);
  make_idle(1);
  make_idle(2);
  seg_->slot(0).worker_pid.store(100);
  seg_->slot(1).worker_pid.store(101);
  seg_->slot(2).worker_pid.store(102);
  uint64_t w;
  ASSERT_TRUE(ipc::SlotTable(*seg_).try_checkout(2, 1, &w));  // busy: checked only when idle
  auto rss = [](pid_t pid) -> uint64_t { return pid == 101 ? 500 : 5000; };
  EXPECT_EQ(recycle_by_rss(context(), rss), 1u);
  EXPECT_EQ(state(0), SlotState::retiring);
  EXPECT_TRUE(slots_[0]->recycle);
  EXPECT_EQ(state(1), SlotState::idle);
  EXPECT_EQ(state(2), SlotState::busy);
}

TEST_F(PassesTest, DemandStartsCoreSlotsFirstAndNoMoreThanTheWaitingCallers) {
  seg_->header().queue.waiters.unattributed.store(0);
  EXPECT_TRUE(slots_for_demand(context()).empty());
  seg_->header().queue.waiters.unattributed.store(3);
  EXPECT_EQ(slots_for_demand(context()), (std::vector<uint32_t>{0, 1, 2}));
  make_idle(0);                // an idle worker serves one of them
  slots_[1]->starting = true;  // a starter owns slot 1
  EXPECT_EQ(slots_for_demand(context()), (std::vector<uint32_t>{2, 3}));
}

TEST_F(PassesTest, DemandLeavesADeadSlotWithARestartScheduledToItsBackoff) {
  make_idle(0);
  ASSERT_NE(ipc::SlotTable(*seg_).set_state(0, state_bit(SlotState::idle), SlotState::dead), 0u);
  slots_[0]->restart_at = 12345;
  seg_->header().queue.waiters.unattributed.store(1);
  EXPECT_EQ(slots_for_demand(context()), (std::vector<uint32_t>{1}));
}

TEST_F(PassesTest, RecyclingIsDueByCallsOrByAge) {
  ipc::SlotData& sd = seg_->slot(0);
  sd.started_ns.store(1'000'000'000);
  EXPECT_FALSE(due_for_recycling(cfg_, sd, 0, 100'000'000'000)) << "no limits set";
  cfg_.max_calls_per_worker = 3;
  sd.calls.store(3);  // the hello and 2 calls
  EXPECT_FALSE(due_for_recycling(cfg_, sd, 0, 2'000'000'000));
  sd.calls.store(4);
  EXPECT_TRUE(due_for_recycling(cfg_, sd, 0, 2'000'000'000));
  cfg_.max_calls_per_worker = 0;
  cfg_.max_worker_age = std::chrono::milliseconds(1000);
  EXPECT_FALSE(due_for_recycling(cfg_, sd, 0, 1'999'999'999));
  EXPECT_TRUE(due_for_recycling(cfg_, sd, 0, 2'000'000'000));
}

TEST_F(PassesTest, IdleSessionsExpireWithAnEventEach) {
  ipc::SessionTable sessions(seg_->sessions(), 4, &seg_->header().session_lock, 1);
  bool created = false;
  ASSERT_EQ(sessions.record("old", 1'000, 0, false, &created), ipc::Errc::ok);
  ASSERT_EQ(sessions.record("new", 9'000'000'000, 0, false, &created), ipc::Errc::ok);
  auto on_event = [this](const PoolEvent& e) { events_.push_back(e); };
  EXPECT_EQ(expire_sessions(sessions, 10'000'000'000, std::chrono::milliseconds(5000), on_event),
            1u);
  ASSERT_EQ(events_.size(), 1u);
  EXPECT_EQ(events_[0].kind, PoolEvent::Kind::session_expired);
  EXPECT_EQ(events_[0].session_id, "old");
  ipc::SessionSnapshot snap;
  EXPECT_FALSE(sessions.find("old", &snap));
  EXPECT_TRUE(sessions.find("new", &snap));
}

}  // namespace
}  // namespace shmpool::detail
