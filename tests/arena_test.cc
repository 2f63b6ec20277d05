// Payload arena (ipc/arena.h): first-fit allocation, ownership hand-over,
// pins, bounds checks on references read from shared memory, and reclaim of
// blocks whose holder or pinner died. Threads race it for TSan.
#include "ipc/arena.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <thread>
#include <vector>

#include "ipc/segment.h"
#include "tests/test_support.h"

namespace shmpool::ipc {
namespace {

class ArenaTest : public test::LeakCheck {
 protected:
  void SetUp() override {
    LeakCheck::SetUp();
    name_ = "tarena-" + std::to_string(::getpid()) + "-" + std::to_string(counter_++);
    Geometry g;
    g.arena_bytes = 16 * kArenaPage;
    ASSERT_EQ(Segment::create(name_, g, &seg_), Errc::ok);
    arena_ = seg_->arena();
  }
  void TearDown() override {
    seg_.reset();
    Segment::remove(name_);
    LeakCheck::TearDown();
  }
  // Forks a child that allocates `pages` pages (and pins `pin` if >= 0),
  // then exits without freeing anything; returns the block index.
  uint32_t child_leaves_block(uint32_t pages, int pin = -1, uint64_t pin_word = 0,
                              pid_t* child = nullptr) {
    int fds[2];
    EXPECT_EQ(::pipe(fds), 0);
    pid_t pid = ::fork();
    if (pid == 0) {
      BlockRef b;
      uint32_t index = 0xffffffff;
      if (pages && arena_.try_alloc(pages * kArenaPage, &b) == Errc::ok) index = b.index;
      if (pin >= 0 && !arena_.pin(uint32_t(pin), pin_word)) index = 0xfffffffe;
      [[maybe_unused]] auto n = ::write(fds[1], &index, sizeof index);
      _exit(0);
    }
    ::close(fds[1]);
    uint32_t index = 0;
    EXPECT_EQ(::read(fds[0], &index, sizeof index), ssize_t(sizeof index));
    ::close(fds[0]);
    int status = 0;
    EXPECT_EQ(::waitpid(pid, &status, 0), pid);  // reaped: the pid is gone
    if (child) *child = pid;
    return index;
  }
  static inline int counter_ = 0;
  std::string name_;
  std::unique_ptr<Segment> seg_;
  Arena arena_;
};

TEST_F(ArenaTest, FirstFitAllocFreeAndUsage) {
  EXPECT_EQ(arena_.capacity(), 16 * kArenaPage);
  BlockRef a, b, c;
  ASSERT_EQ(arena_.try_alloc(1, &a), Errc::ok);
  ASSERT_EQ(arena_.try_alloc(3 * kArenaPage, &b), Errc::ok);
  ASSERT_EQ(arena_.try_alloc(kArenaPage + 1, &c), Errc::ok);
  EXPECT_EQ(a.index, 0u);
  EXPECT_EQ(b.index, 1u);
  EXPECT_EQ(c.index, 4u);
  EXPECT_EQ(c.bytes.size(), 2 * kArenaPage);
  EXPECT_EQ(arena_.usage().blocks, 3u);
  EXPECT_EQ(arena_.usage().bytes, 6 * kArenaPage);
  arena_.free(b.index, b.word);
  BlockRef d;
  ASSERT_EQ(arena_.try_alloc(2 * kArenaPage, &d), Errc::ok);
  EXPECT_EQ(d.index, 1u) << "first fit reuses the hole";
  // A stale word frees nothing.
  arena_.free(b.index, b.word);
  EXPECT_EQ(arena_.usage().blocks, 3u);
  arena_.free(a.index, a.word);
  arena_.free(c.index, c.word);
  arena_.free(d.index, d.word);
  EXPECT_EQ(arena_.usage().blocks, 0u);
}

TEST_F(ArenaTest, TooLargeAndFull) {
  BlockRef b;
  EXPECT_EQ(arena_.try_alloc(16 * kArenaPage + 1, &b), Errc::frame_too_large);
  ASSERT_EQ(arena_.try_alloc(16 * kArenaPage, &b), Errc::ok);
  BlockRef c;
  EXPECT_EQ(arena_.try_alloc(1, &c), Errc::no_space);
  const int64_t deadline = monotonic_ns() + 5'000'000;
  EXPECT_EQ(arena_.alloc(1, deadline, WaitPolicy{}, &c), Errc::timed_out);
  arena_.free(b.index, b.word);
}

TEST_F(ArenaTest, AWaitingAllocationGetsSpaceWhenItIsFreed) {
  BlockRef all;
  ASSERT_EQ(arena_.try_alloc(16 * kArenaPage, &all), Errc::ok);
  std::atomic<bool> got{false};
  std::thread waiter([&] {
    BlockRef b;
    if (arena_.alloc(8 * kArenaPage, monotonic_ns() + 30'000'000'000, WaitPolicy{}, &b) ==
        Errc::ok) {
      got = true;
      arena_.free(b.index, b.word);
    }
  });
  arena_.free(all.index, all.word);
  waiter.join();
  EXPECT_TRUE(got.load());
}

TEST_F(ArenaTest, ResolveChecksEveryBound) {
  BlockRef b;
  ASSERT_EQ(arena_.try_alloc(2 * kArenaPage, &b), Errc::ok);
  std::span<uint8_t> s;
  EXPECT_EQ(arena_.resolve(b.index, 0, 2 * kArenaPage, &s), Errc::ok);
  EXPECT_EQ(s.data(), b.bytes.data());
  EXPECT_EQ(arena_.resolve(b.index, 1, 2 * kArenaPage, &s), Errc::corrupt);
  EXPECT_EQ(arena_.resolve(b.index, ~0ull, 2, &s), Errc::corrupt) << "offset overflow";
  EXPECT_EQ(arena_.resolve(b.index + 1, 0, 1, &s), Errc::corrupt) << "not a live head";
  EXPECT_EQ(arena_.resolve(99, 0, 1, &s), Errc::corrupt);
  arena_.free(b.index, b.word);
  EXPECT_EQ(arena_.resolve(b.index, 0, 1, &s), Errc::corrupt) << "freed";
}

TEST_F(ArenaTest, TakeHandsABlockOver) {
  BlockRef b;
  ASSERT_EQ(arena_.try_alloc(1, &b), Errc::ok);
  BlockRef t;
  EXPECT_FALSE(arena_.take(b.index, uint32_t(::getpid()) + 1, &t)) << "wrong holder";
  ASSERT_TRUE(arena_.take(b.index, uint32_t(::getpid()), &t));
  EXPECT_NE(t.word, b.word);
  arena_.free(b.index, b.word);  // the old word no longer frees it
  EXPECT_EQ(arena_.usage().blocks, 1u);
  arena_.free(t.index, t.word);
  EXPECT_EQ(arena_.usage().blocks, 0u);
}

TEST_F(ArenaTest, APinnedBlockIsFreedByTheUnpin) {
  BlockRef b;
  ASSERT_EQ(arena_.try_alloc(1, &b), Errc::ok);
  ASSERT_TRUE(arena_.pin(b.index, b.word));
  EXPECT_FALSE(arena_.pin(b.index, b.word)) << "one pinner at a time";
  arena_.free(b.index, b.word);
  EXPECT_EQ(arena_.usage().blocks, 1u) << "released but pinned";
  EXPECT_EQ(arena_.usage().pinned, 1u);
  arena_.unpin(b.index);
  EXPECT_EQ(arena_.usage().blocks, 0u);
  // Unpinned before the free: the free frees it.
  ASSERT_EQ(arena_.try_alloc(1, &b), Errc::ok);
  ASSERT_TRUE(arena_.pin(b.index, b.word));
  arena_.unpin(b.index);
  arena_.free(b.index, b.word);
  EXPECT_EQ(arena_.usage().blocks, 0u);
}

TEST_F(ArenaTest, FreeAndUnpinRacingFreeExactlyOnce) {
  for (int i = 0; i < 2000; ++i) {
    BlockRef b;
    ASSERT_EQ(arena_.try_alloc(1, &b), Errc::ok);
    ASSERT_TRUE(arena_.pin(b.index, b.word));
    std::thread t([&] { arena_.unpin(b.index); });
    arena_.free(b.index, b.word);
    t.join();
    ASSERT_EQ(arena_.usage().blocks, 0u) << "iteration " << i;
  }
}

TEST_F(ArenaTest, ConcurrentAllocatorsNeverOverlap) {
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 500; ++i) {
        BlockRef b;
        if (arena_.try_alloc(uint64_t(1 + (i + t) % 3) * kArenaPage, &b) != Errc::ok) continue;
        std::memset(b.bytes.data(), t + 1, b.bytes.size());
        for (uint8_t x : b.bytes)
          if (x != t + 1) ++failures;
        arena_.free(b.index, b.word);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(arena_.usage().blocks, 0u);
}

TEST_F(ArenaTest, ReclaimFreesBlocksOfDeadHoldersAndDeadPins) {
  const uint32_t leaked = child_leaves_block(3);
  ASSERT_LT(leaked, 16u);
  EXPECT_EQ(arena_.usage().blocks, 1u);
  BlockRef mine;
  ASSERT_EQ(arena_.try_alloc(1, &mine), Errc::ok);
  EXPECT_EQ(arena_.reclaim_dead(), 1u) << "only the dead process's block";
  EXPECT_EQ(arena_.usage().blocks, 1u);
  // A dead pinner of a block we released: reclaim frees it.
  ASSERT_EQ(child_leaves_block(0, int(mine.index), mine.word), 0xffffffffu);
  arena_.free(mine.index, mine.word);
  EXPECT_EQ(arena_.usage().pinned, 1u);
  EXPECT_EQ(arena_.reclaim_dead(), 1u);
  EXPECT_EQ(arena_.usage().blocks, 0u);
}

TEST_F(ArenaTest, ADeadWorkersReplyBlockStaysForTheCallerHoldingItsSlot) {
  // A worker sealed a reply whose payload is in the arena and died before
  // its caller took the block. While the caller holds the slot (busy, with
  // that worker's pid), reclaim keeps the block and the caller can take it;
  // once the slot is let go, an untaken block is freed.
  pid_t worker = 0;
  const uint32_t index = child_leaves_block(2, -1, 0, &worker);
  ASSERT_LT(index, 16u);
  SlotData& slot = seg_->slot(0);
  slot.worker_pid.store(worker);
  slot.state.store(make_slot_word(1, SlotState::busy, uint32_t(::getpid())));
  EXPECT_EQ(arena_.reclaim_dead(), 0u) << "in transit to the slot's holder";
  BlockRef taken;
  ASSERT_TRUE(arena_.take(index, uint32_t(worker), &taken)) << "the caller takes it";
  arena_.free(taken.index, taken.word);
  EXPECT_EQ(arena_.usage().blocks, 0u);
  // Not taken this time, and the caller lets the slot go: freed.
  const uint32_t again = child_leaves_block(2, -1, 0, &worker);
  ASSERT_LT(again, 16u);
  slot.worker_pid.store(worker);
  EXPECT_EQ(arena_.reclaim_dead(), 0u);
  slot.state.store(make_slot_word(2, SlotState::dead, 0));
  EXPECT_EQ(arena_.reclaim_dead(), 1u);
  EXPECT_EQ(arena_.usage().blocks, 0u);
}

}  // namespace
}  // namespace shmpool::ipc
