// SessionTable: exact counts (single-threaded, then concurrent), removal,
// expiry with an injected clock, a full table, id validation.
#include "ipc/session_table.h"

#include <gtest/gtest.h>

#include <set>
#include <thread>
#include <vector>

#include "ipc/frame_ring.h"

namespace shmpool::ipc {
namespace {

struct Table {
  explicit Table(uint32_t capacity) : memory(capacity * kSessionEntryBytes + kCacheLine) {
    auto* base = reinterpret_cast<uint8_t*>(
        align_up(reinterpret_cast<uintptr_t>(memory.data()), kCacheLine));
    for (uint32_t i = 0; i < capacity; ++i) new (base + i * kSessionEntryBytes) SessionEntry{};
    table = SessionTable(base, capacity, &lock, 1);
  }
  std::vector<uint8_t> memory;
  std::atomic<uint64_t> lock{0};
  SessionTable table;
};

TEST(SessionTable, CountsAreExact) {
  Table t(64);
  for (int i = 0; i < 3; ++i) ASSERT_EQ(t.table.record("s1", 100 + i, 2, i == 1), Errc::ok);
  SessionSnapshot s;
  ASSERT_TRUE(t.table.find("s1", &s));
  EXPECT_EQ(s.operations, 3u);
  EXPECT_EQ(s.errors, 1u);
  EXPECT_EQ(s.created_ns, 100);
  EXPECT_EQ(s.last_activity_ns, 102);
  EXPECT_EQ(s.last_slot, 2);
  EXPECT_EQ(t.table.last_slot("s1"), 2);
  EXPECT_FALSE(t.table.find("s2", &s));
  EXPECT_EQ(t.table.active_count(), 1u);
}

TEST(SessionTable, RemoveAndReinsert) {
  Table t(8);
  ASSERT_EQ(t.table.record("a", 1, 0, false), Errc::ok);
  EXPECT_TRUE(t.table.remove("a"));
  EXPECT_FALSE(t.table.remove("a"));
  SessionSnapshot s;
  EXPECT_FALSE(t.table.find("a", &s));
  ASSERT_EQ(t.table.record("a", 5, 0, false), Errc::ok);
  ASSERT_TRUE(t.table.find("a", &s));
  EXPECT_EQ(s.operations, 1u) << "a re-created session starts from zero";
  EXPECT_EQ(s.created_ns, 5);
}

TEST(SessionTable, ExpireRemovesOnlyIdleSessionsAndFreesRoom) {
  Table t(4);
  ASSERT_EQ(t.table.record("old1", 10, 0, false), Errc::ok);
  ASSERT_EQ(t.table.record("old2", 20, 0, false), Errc::ok);
  ASSERT_EQ(t.table.record("new", 1000, 0, false), Errc::ok);
  EXPECT_EQ(t.table.expire(/*now=*/1050, /*ttl=*/100), 2u);
  SessionSnapshot s;
  EXPECT_TRUE(t.table.find("new", &s));
  EXPECT_FALSE(t.table.find("old1", &s));
  // The freed entries are usable again: fill the table.
  ASSERT_EQ(t.table.record("x", 1100, 0, false), Errc::ok);
  ASSERT_EQ(t.table.record("y", 1100, 0, false), Errc::ok);
  ASSERT_EQ(t.table.record("z", 1100, 0, false), Errc::ok);
  EXPECT_EQ(t.table.record("overflow", 1100, 0, false), Errc::ring_full);
  EXPECT_EQ(t.table.active_count(), 4u);
}

TEST(SessionTable, RejectsInvalidIds) {
  Table t(4);
  EXPECT_EQ(t.table.record("", 1, 0, false), Errc::bad_name);
  EXPECT_EQ(t.table.record(std::string(65, 'a'), 1, 0, false), Errc::bad_name);
  EXPECT_EQ(t.table.record("has space", 1, 0, false), Errc::bad_name);
  EXPECT_EQ(t.table.record(std::string("nul\0", 4), 1, 0, false), Errc::bad_name);
  EXPECT_EQ(t.table.record(std::string(64, 'a'), 1, 0, false), Errc::ok);
}

TEST(SessionTable, ConcurrentRecordsAreExactAndNeverDuplicated) {
  Table t(256);
  constexpr int kThreads = 8, kCalls = 2000, kIds = 20;
  std::vector<std::thread> threads;
  for (int th = 0; th < kThreads; ++th) {
    threads.emplace_back([&, th] {
      for (int i = 0; i < kCalls; ++i) {
        std::string id = "session-" + std::to_string((i + th) % kIds);
        ASSERT_EQ(t.table.record(id, i, th, i % 10 == 0), Errc::ok);
        if (i % 500 == 0) t.table.expire(0, 1);  // takes the lock, removes nothing
      }
    });
  }
  for (auto& th : threads) th.join();
  auto all = t.table.list();
  ASSERT_EQ(all.size(), size_t(kIds));
  std::set<std::string> ids;
  uint64_t ops = 0, errors = 0;
  for (auto& s : all) {
    ids.insert(s.id);
    ops += s.operations;
    errors += s.errors;
  }
  EXPECT_EQ(ids.size(), size_t(kIds)) << "no session appears twice";
  EXPECT_EQ(ops, uint64_t(kThreads) * kCalls);
  EXPECT_EQ(errors, uint64_t(kThreads) * (kCalls / 10));
}

}  // namespace
}  // namespace shmpool::ipc
