// Payload arena: zero-copy payloads both ways, numpy included, exhaustion,
// crashes while holding blocks, views that outlive their call. Every test
// ends with the arena empty (checked in TearDown).
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <numeric>
#include <thread>
#include <vector>

#include "ipc/segment.h"
#include "ipc/sys.h"
#include "ipc/wait.h"
#include "shmpool/pool.h"
#include "tests/process_support.h"
#include "tests/test_support.h"

namespace shmpool {
namespace {

constexpr std::size_t KiB = 1024, MiB = 1024 * 1024;

PoolConfig config(const char* tag, std::size_t arena_bytes, uint32_t size = 1) {
  static std::atomic<int> n{0};
  PoolConfig c;
  c.name = std::string("pay") + tag + "-" + std::to_string(::getpid()) + "-" + std::to_string(n++);
  c.size = size;
  c.max_overflow = 0;
  c.handler_modules = {SHMPOOL_TEST_HANDLERS};
  c.startup_timeout = std::chrono::seconds(30);
  c.request_ring_bytes = 64 * KiB;
  c.response_ring_bytes = 64 * KiB;
  c.payload_arena_bytes = arena_bytes;
  c.health_check_interval = std::chrono::milliseconds(20);
  return c;
}

ExecOptions with_payload(std::span<const uint8_t> p,
                         std::optional<std::chrono::milliseconds> op_timeout = {}) {
  ExecOptions o;
  o.payload = p;
  o.operation_timeout = op_timeout;
  return o;
}

std::vector<uint8_t> pattern(std::size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = uint8_t(i * 31 + seed + (i >> 12));
  return v;
}

class PayloadTest : public test::LeakCheck {
 protected:
  void start(PoolConfig c) {
    auto p = Pool::start(std::move(c));
    ASSERT_TRUE(p.ok()) << p.error().to_string();
    pool = std::move(p.value());
  }
  // Waits (on the arena's free doorbell, with a deadline) until no block is live.
  bool arena_drains(std::chrono::seconds limit = std::chrono::seconds(20)) {
    std::unique_ptr<ipc::Segment> seg;
    if (ipc::Segment::attach(pool->name(), &seg) != ipc::Errc::ok) return false;
    ipc::Arena arena = seg->arena();
    const int64_t deadline = ipc::monotonic_ns() + int64_t(limit.count()) * 1'000'000'000;
    return ipc::wait_until(
               seg->header().arena.freed, [&] { return arena.usage().blocks == 0; }, deadline,
               ipc::WaitPolicy{ipc::WaitStrategy::block, 0}) == ipc::WaitResult::ready;
  }
  void TearDown() override {
    if (pool) {
      auto st = pool->status();
      EXPECT_EQ(st.arena_bytes_in_use, 0u) << "arena blocks leaked: " << st.arena_blocks_in_use;
      EXPECT_EQ(st.arena_pinned_blocks, 0u);
      pool.reset();
    }
    LeakCheck::TearDown();
  }
  std::unique_ptr<Pool> pool;
};

TEST_F(PayloadTest, EchoRoundTripsEverySizeByCopyAndInPlace) {
  start(config("sizes", 160 * MiB));
  const std::size_t sizes[] = {0,      1,        7,           4095,     4096,    4097,
                               65'537, 64 * KiB, 1 * MiB + 3, 16 * MiB, 64 * MiB};
  for (std::size_t n : sizes) {
    SCOPED_TRACE(n);
    const auto data = pattern(n, uint8_t(n));
    {
      // From the caller's own memory: copied once.
      auto r = pool->execute_anonymous("echo_inplace", empty_args(), with_payload(data));
      ASSERT_TRUE(r.ok()) << r.error().to_string();
      ASSERT_EQ(r->payload().size(), n);
      EXPECT_TRUE(std::equal(data.begin(), data.end(), r->payload().begin()));
    }
    // Written in place into a PayloadBuffer: no copy on the way in.
    auto buf = pool->alloc_payload(n);
    ASSERT_TRUE(buf.ok()) << buf.error().to_string();
    if (n) std::memcpy(buf->begin(), data.data(), n);
    auto r2 = pool->execute_anonymous("echo_inplace", empty_args(), with_payload(buf->data()));
    ASSERT_TRUE(r2.ok()) << r2.error().to_string();
    ASSERT_EQ(r2->payload().size(), n);
    EXPECT_TRUE(std::equal(data.begin(), data.end(), r2->payload().begin()));
    if (n > 4096) {
      // Both blocks live now: the request buffer and the reply's.
      EXPECT_EQ(pool->status().arena_blocks_in_use, 2u);
    }
  }
  EXPECT_EQ(pool->status().arena_blocks_in_use, 0u) << "every Reply and buffer is gone";
}

TEST_F(PayloadTest, ThePayloadMayFillTheWholeArena) {
  start(config("limit", 2 * MiB));
  auto buf = pool->alloc_payload(2 * MiB);
  ASSERT_TRUE(buf.ok()) << buf.error().to_string();
  std::memset(buf->begin(), 3, buf->size());
  auto r = pool->execute_anonymous("checksum", empty_args(), with_payload(buf->data()));
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->value().AsMap()["bytes"].AsUInt64(), 2 * MiB);
  EXPECT_EQ(r->value().AsMap()["sum"].AsUInt64(), 3 * 2 * MiB);
}

TEST_F(PayloadTest, LargerThanTheArenaFailsAtOnce) {
  start(config("big", 1 * MiB));
  auto buf = pool->alloc_payload(1 * MiB + 1);
  ASSERT_FALSE(buf.ok());
  EXPECT_EQ(buf.error().category, Category::resource_error);
  EXPECT_EQ(buf.error().type, "payload_too_large");
  EXPECT_EQ(buf.error().context.at("arena_bytes"), std::to_string(1 * MiB));
  std::vector<uint8_t> big(2 * MiB);
  auto r = pool->execute_anonymous("ack", empty_args(), with_payload(big));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().type, "payload_too_large");
  // The worker asks for more than the arena holds: same error, from Python.
  auto out = pool->execute_anonymous(
      "alloc_output", make_args([](flexbuffers::Builder& b) { b.UInt("n", 2 * MiB); }));
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.error().category, Category::resource_error);
  EXPECT_EQ(out.error().type, "payload_too_large");
  EXPECT_TRUE(pool->execute_anonymous("ping").ok());
}

template <class T>
void check_numpy_double(Pool& pool, const char* dtype, bool in_place) {
  SCOPED_TRACE(dtype);
  std::vector<T> src(100'003);
  for (std::size_t i = 0; i < src.size(); ++i) src[i] = T(i % 100);
  auto buf = pool.alloc_payload(src.size() * sizeof(T));
  ASSERT_TRUE(buf.ok());
  std::memcpy(buf->begin(), src.data(), buf->size());
  Args args = make_args([&](flexbuffers::Builder& b) { b.String("dtype", dtype); });
  auto r = pool.execute_anonymous(in_place ? "numpy_double" : "numpy_double_copy", args,
                                  with_payload(buf->data()));
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  ASSERT_EQ(r->payload().size(), src.size() * sizeof(T));
  if (in_place) {
    EXPECT_EQ(r->value().AsMap()["n"].AsUInt64(), src.size());
    EXPECT_FALSE(r->value().AsMap()["src_writeable"].AsBool()) << "the request view is read-only";
  }
  std::vector<T> got(src.size());
  std::memcpy(got.data(), r->payload().data(), r->payload().size());
  for (std::size_t i = 0; i < src.size(); ++i) ASSERT_EQ(got[i], T(src[i] * 2)) << i;
}

TEST_F(PayloadTest, NumpyArraysOfSeveralDtypesBothWays) {
  start(config("numpy", 16 * MiB));
  for (bool in_place : {true, false}) {
    check_numpy_double<double>(*pool, "float64", in_place);
    check_numpy_double<float>(*pool, "float32", in_place);
    check_numpy_double<int32_t>(*pool, "int32", in_place);
    check_numpy_double<int64_t>(*pool, "int64", in_place);
    check_numpy_double<uint8_t>(*pool, "uint8", in_place);
    check_numpy_double<uint16_t>(*pool, "uint16", in_place);
  }
}

TEST_F(PayloadTest, AViewKeptPastTheCallPinsItsBlockUntilDropped) {
  start(config("pin", 1 * MiB));
  {
    auto buf = pool->alloc_payload(256 * KiB);
    ASSERT_TRUE(buf.ok());
    std::memset(buf->begin(), 7, buf->size());
    ASSERT_TRUE(pool->execute_anonymous("keep_view", empty_args(), with_payload(buf->data())).ok());
  }  // the caller frees its buffer while Python still views it
  auto st = pool->status();
  EXPECT_EQ(st.arena_blocks_in_use, 1u) << "the freed block stays while Python views it";
  EXPECT_EQ(st.arena_pinned_blocks, 1u);
  // Fill the rest of the arena with other bytes: the kept view must not see them.
  auto other = pool->alloc_payload(1 * MiB - 256 * KiB);
  ASSERT_TRUE(other.ok()) << other.error().to_string();
  std::memset(other->begin(), 9, other->size());
  auto r = pool->execute_anonymous("read_kept");
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->value().AsMap()["first"].AsInt64(), 7);
  EXPECT_EQ(r->value().AsMap()["sum"].AsUInt64(), 7u * 256 * KiB);
  other->reset();
  ASSERT_TRUE(pool->execute_anonymous("drop_kept").ok());
  EXPECT_EQ(pool->status().arena_blocks_in_use, 0u) << "the last view's death freed it";
}

TEST_F(PayloadTest, AKeptMemoryviewRaisesOnceItsCallHasEnded) {
  start(config("stale", 1 * MiB));
  std::vector<uint8_t> data(64 * KiB, 1);
  const uint8_t body[] = {9, 8, 7, 6};
  ExecOptions opts = with_payload(data);
  opts.body = body;
  ASSERT_TRUE(pool->execute_anonymous("keep_payload", empty_args(), opts).ok());
  auto out = pool->execute_anonymous(
      "keep_output", make_args([](flexbuffers::Builder& b) { b.UInt("n", 100 * KiB); }));
  ASSERT_TRUE(out.ok()) << out.error().to_string();
  EXPECT_EQ(pool->status().arena_blocks_in_use, 1u) << "the output was handed over in place";
  for (const char* which : {"payload", "output", "body"}) {
    auto r = pool->execute_anonymous(
        "touch_kept", make_args([&](flexbuffers::Builder& b) { b.Bool(which, true); }));
    ASSERT_TRUE(r.ok()) << r.error().to_string();
    EXPECT_TRUE(r->value().AsMap()["raised"].AsBool()) << which;
    EXPECT_NE(r->value().AsMap()["message"].AsString().str().find("released"), std::string::npos)
        << r->value().AsMap()["message"].AsString().str();
  }
  ASSERT_TRUE(pool->execute_anonymous("drop_output").ok());
}

TEST_F(PayloadTest, AnOutputBlockKeptByNumpyIsCopiedForTheCaller) {
  start(config("keepout", 1 * MiB));
  auto r = pool->execute_anonymous("keep_output", make_args([](flexbuffers::Builder& b) {
                                     b.UInt("n", 100 * KiB);
                                     b.Bool("numpy", true);
                                   }));
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  ASSERT_EQ(r->payload().size(), 100 * KiB);
  EXPECT_TRUE(
      std::all_of(r->payload().begin(), r->payload().end(), [](uint8_t b) { return b == 5; }));
  EXPECT_EQ(pool->status().arena_blocks_in_use, 2u) << "the worker's kept block and our copy";
  auto t = pool->execute_anonymous(
      "touch_kept", make_args([](flexbuffers::Builder& b) { b.Bool("output", true); }));
  ASSERT_TRUE(t.ok());
  EXPECT_FALSE(t->value().AsMap()["raised"].AsBool()) << "numpy still reads its own block";
  EXPECT_EQ(t->value().AsMap()["first"].AsInt64(), 5);
  r = Expected<Reply>(make_error(Category::protocol_error, "x", "drop the reply"));
  ASSERT_TRUE(pool->execute_anonymous("drop_output").ok());
  EXPECT_EQ(pool->status().arena_blocks_in_use, 0u);
}

TEST_F(PayloadTest, TheContextRaisesOnceItsCallHasEnded) {
  start(config("ctx", 1 * MiB));
  std::vector<uint8_t> data(64 * KiB, 1);
  ASSERT_TRUE(pool->execute_anonymous("keep_ctx", empty_args(), with_payload(data)).ok());
  auto r = pool->execute_anonymous("use_kept_ctx");
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->value().AsMap()["raised"].AsBool());
}

TEST_F(PayloadTest, ExhaustionGivesAClearErrorOrWaitsWithinTheTimeout) {
  start(config("full", 1 * MiB, 2));
  auto held = pool->alloc_payload(768 * KiB);
  ASSERT_TRUE(held.ok());
  // No room: a clear error at the timeout, never a hang.
  auto refused = pool->alloc_payload(512 * KiB, std::chrono::milliseconds(20));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().category, Category::resource_error);
  EXPECT_EQ(refused.error().type, "arena_exhausted");
  std::vector<uint8_t> data(512 * KiB, 2);
  auto call = pool->execute_anonymous("ack", empty_args(),
                                      with_payload(data, std::chrono::milliseconds(20)));
  ASSERT_FALSE(call.ok());
  EXPECT_EQ(call.error().type, "arena_exhausted");
  // Waiters get their block once space is freed, within their timeout.
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 5; ++i) {
        auto b = pool->alloc_payload(512 * KiB, std::chrono::seconds(30));
        if (!b.ok()) continue;
        std::memset(b->begin(), i, b->size());
        auto r = pool->execute_anonymous("checksum", empty_args(), with_payload(b->data()));
        if (r.ok() && r->value().AsMap()["sum"].AsUInt64() == uint64_t(i) * 512 * KiB) ++ok;
      }
    });
  }
  held->reset();
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 20);
}

TEST_F(PayloadTest, AWorkerKilledWhileHoldingABlockHasItReclaimed) {
  start(config("die", 4 * MiB));
  auto r = pool->execute_anonymous(
      "alloc_and_die", make_args([](flexbuffers::Builder& b) { b.UInt("n", 3 * MiB); }));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().category, Category::worker_error);
  EXPECT_TRUE(arena_drains()) << "the dead worker's block was not reclaimed";
  // The whole arena is usable again.
  auto b = pool->alloc_payload(4 * MiB);
  EXPECT_TRUE(b.ok()) << b.error().to_string();
}

TEST_F(PayloadTest, AHandlerThatFailsAfterAllocatingFreesItsBlock) {
  start(config("fail", 4 * MiB));
  auto r = pool->execute_anonymous(
      "alloc_and_fail", make_args([](flexbuffers::Builder& b) { b.UInt("n", 3 * MiB); }));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().category, Category::handler_error);
  EXPECT_EQ(pool->status().arena_blocks_in_use, 0u);
}

TEST_F(PayloadTest, ConcurrentCallersWithMixedSizesLoseNothing) {
  start(config("mixed", 32 * MiB, 2));
  std::atomic<int> good{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 25; ++i) {
        const std::size_t n = std::size_t(1) << ((t * 7 + i * 3) % 21);
        const auto data = pattern(n, uint8_t(t * 16 + i));
        auto r = pool->execute_anonymous(i % 2 ? "echo_inplace" : "echo", empty_args(),
                                         with_payload(data));
        if (r.ok() && r->payload().size() == n &&
            std::equal(data.begin(), data.end(), r->payload().begin()))
          ++good;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(good.load(), 100);
}

}  // namespace
}  // namespace shmpool
