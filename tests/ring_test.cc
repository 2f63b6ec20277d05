// FrameRing: wrap-around, full, oversize, padding, corrupt input, and a
// concurrent producer/consumer (run under TSan too).
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "ipc/frame_ring.h"

namespace shmpool::ipc {
namespace {

struct RingFixture {
  explicit RingFixture(uint64_t capacity) : data(capacity) {}
  RingControl control;
  std::vector<uint8_t> data;
  FrameRing producer() { return FrameRing(&control, data.data(), data.size()); }
};

WaitPolicy no_wait{WaitStrategy::block, 0};

int64_t soon() { return monotonic_ns() + 1'000'000; }  // 1 ms

Errc put(FrameRing& r, const std::string& s, int64_t deadline = 0) {
  FrameSpace sp;
  Errc e = r.reserve(uint32_t(s.size()), deadline ? deadline : soon(), no_wait, &sp);
  if (e != Errc::ok) return e;
  std::memcpy(sp.body, s.data(), s.size());
  r.commit(uint32_t(s.size()), 0, uint32_t(s.size()));
  return Errc::ok;
}

std::string get(FrameRing& r, Errc* err = nullptr) {
  Frame f;
  Errc e = r.peek(&f);
  if (err) *err = e;
  if (e != Errc::ok) return "";
  std::string s(reinterpret_cast<const char*>(f.body), f.body_length);
  r.release(f);
  return s;
}

TEST(FrameRing, EmptyRingHasNothingToRead) {
  RingFixture f(4096);
  FrameRing r = f.producer();
  Errc e;
  EXPECT_EQ(get(r, &e), "");
  EXPECT_EQ(e, Errc::empty);
  EXPECT_FALSE(r.readable());
}

TEST(FrameRing, FramesComeOutInOrder) {
  RingFixture f(4096);
  FrameRing p = f.producer(), c = f.producer();
  ASSERT_EQ(put(p, "one"), Errc::ok);
  ASSERT_EQ(put(p, "two"), Errc::ok);
  EXPECT_TRUE(c.readable());
  EXPECT_EQ(get(c), "one");
  EXPECT_EQ(get(c), "two");
}

TEST(FrameRing, WrapsAroundWithPaddingAndFramesStayContiguous) {
  RingFixture f(4096);
  FrameRing p = f.producer(), c = f.producer();
  // 1000-byte bodies take 1088 bytes: the fourth frame cannot fit before the
  // end and must start again at offset 0.
  for (int round = 0; round < 50; ++round) {
    std::string s(1000, char('a' + round % 26));
    ASSERT_EQ(put(p, s), Errc::ok) << round;
    Frame fr;
    ASSERT_EQ(c.peek(&fr), Errc::ok);
    ASSERT_LE(fr.body + fr.body_length, f.data.data() + f.data.size());
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(fr.body), fr.body_length), s);
    c.release(fr);
  }
}

TEST(FrameRing, FullRingReportsRingFullAtTheDeadline) {
  RingFixture f(4096);
  FrameRing p = f.producer();
  std::string s(1900, 'x');  // 2 frames of 1984 bytes fill 3968 of 4096
  ASSERT_EQ(put(p, s), Errc::ok);
  ASSERT_EQ(put(p, s), Errc::ok);
  int64_t deadline = monotonic_ns() + 20'000'000;
  EXPECT_EQ(put(p, s, deadline), Errc::ring_full);
  EXPECT_GE(monotonic_ns(), deadline);
}

TEST(FrameRing, FrameLargerThanTheRingIsRejectedAtOnce) {
  RingFixture f(4096);
  FrameRing p = f.producer();
  FrameSpace sp;
  EXPECT_EQ(p.reserve(4096, 0, no_wait, &sp), Errc::frame_too_large);
  EXPECT_EQ(p.reserve(uint32_t(p.max_body()), soon(), no_wait, &sp), Errc::ok);
}

TEST(FrameRing, ConsumerFreesSpaceForAWaitingProducer) {
  RingFixture f(4096);
  FrameRing p = f.producer(), c = f.producer();
  std::string s(1900, 'x');
  ASSERT_EQ(put(p, s), Errc::ok);
  ASSERT_EQ(put(p, s), Errc::ok);
  std::thread consumer([&] {
    c.wait_readable(monotonic_ns() + 5'000'000'000, no_wait, [] { return false; });
    EXPECT_EQ(get(c), s);
  });
  EXPECT_EQ(put(p, s, monotonic_ns() + 5'000'000'000), Errc::ok);
  consumer.join();
}

TEST(FrameRing, CorruptHeaderIsReportedNotFollowed) {
  RingFixture f(4096);
  FrameRing p = f.producer(), c = f.producer();
  ASSERT_EQ(put(p, "hello"), Errc::ok);
  FrameHeader h;
  std::memcpy(&h, f.data.data(), sizeof h);
  h.body_length = 1u << 30;  // runs past the ring
  std::memcpy(f.data.data(), &h, sizeof h);
  Errc e;
  get(c, &e);
  EXPECT_EQ(e, Errc::corrupt);
  h.body_length = 5;
  h.envelope_offset = 4;
  h.envelope_length = 100;  // envelope past the body
  std::memcpy(f.data.data(), &h, sizeof h);
  get(c, &e);
  EXPECT_EQ(e, Errc::corrupt);
  h.envelope_length = 1;
  h.seal = frame_seal(0, FrameKind::pad);
  h.body_length = 4096;  // a padding frame past the end
  std::memcpy(f.data.data(), &h, sizeof h);
  get(c, &e);
  EXPECT_EQ(e, Errc::corrupt);
  h.seal = frame_seal(4096, FrameKind::data);  // sealed for the next lap: not there yet
  std::memcpy(f.data.data(), &h, sizeof h);
  get(c, &e);
  EXPECT_EQ(e, Errc::empty);
}

TEST(FrameRing, StaleBytesAtTheNextSlotAreNeverTakenForAFrame) {
  // A payload can hold any bytes, including the seal the next frame's slot
  // will carry one lap later. The producer unseals that slot before sealing a
  // frame, so the consumer never takes leftovers for a frame.
  RingFixture f(4096);
  FrameRing p = f.producer(), c = f.producer();
  constexpr uint64_t kFrame = 4096 - 64;  // the largest frame, header included
  for (int round = 0; round < 4; ++round) {
    // One-line frames up to the start of a lap, where the big frame goes.
    while (f.control.head.load() % 4096 != 0) {
      ASSERT_EQ(put(p, "filler"), Errc::ok);
      ASSERT_EQ(get(c), "filler");
    }
    const uint64_t at = f.control.head.load();
    // Its body forges, on every line, a data header sealed for that slot's
    // position one lap later.
    std::string forged(kFrame - sizeof(FrameHeader), '\0');
    for (uint64_t line = 64; line < kFrame; line += 64) {
      FrameHeader h{};
      h.seal = frame_seal(at + line + 4096, FrameKind::data);
      h.body_length = 8;
      h.envelope_length = 8;
      std::memcpy(forged.data() + line - sizeof(FrameHeader), &h, sizeof h);
    }
    ASSERT_EQ(put(p, forged), Errc::ok);
    ASSERT_EQ(f.control.head.load(), at + kFrame);
    ASSERT_EQ(get(c), forged);
    Errc e;
    get(c, &e);
    EXPECT_EQ(e, Errc::empty) << "round " << round;
    // Small frames walk the consumer across every forged slot.
    for (int i = 0; i < 70; ++i) {
      const std::string small(20, char('a' + i % 26));
      ASSERT_EQ(put(p, small), Errc::ok);
      ASSERT_EQ(get(c), small);
      get(c, &e);
      ASSERT_EQ(e, Errc::empty) << "round " << round << " frame " << i;
    }
  }
}

TEST(FrameRing, TornCountersAreReportedOnBothSides) {
  RingFixture f(4096);
  FrameRing p = f.producer(), c = f.producer();
  f.control.tail.store(100);  // not frame-aligned
  Errc e;
  get(c, &e);
  EXPECT_EQ(e, Errc::corrupt);
  f.control.head.store(64);
  f.control.tail.store(128);  // tail ahead of head
  FrameSpace sp;
  EXPECT_EQ(p.reserve(8, soon(), no_wait, &sp), Errc::corrupt);
  f.control.head.store(1u << 20);  // head far beyond tail + capacity
  f.control.tail.store(0);
  EXPECT_EQ(p.reserve(8, soon(), no_wait, &sp), Errc::corrupt);
  f.control.head.store(100);  // not frame-aligned
  EXPECT_EQ(p.reserve(8, soon(), no_wait, &sp), Errc::corrupt);
}

TEST(FrameRing, RandomFrameSizesSingleThreaded) {
  const uint32_t seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  RingFixture f(8192);
  FrameRing p = f.producer(), c = f.producer();
  for (int i = 0; i < 2000; ++i) {
    std::string s(rng() % 3000, char('a' + i % 26));
    ASSERT_EQ(put(p, s), Errc::ok);
    const bool second = rng() % 2;
    if (second) {
      ASSERT_EQ(put(p, s.substr(0, 100)), Errc::ok);
    }
    ASSERT_EQ(get(c), s);
    Errc e;
    std::string rest = get(c, &e);
    EXPECT_EQ(e == Errc::ok, second);
    if (second) {
      ASSERT_EQ(rest, s.substr(0, 100));
    }
  }
}

TEST(FrameRing, ConcurrentProducerAndConsumerSeeEveryFrameOnce) {
  const uint32_t seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  RingFixture f(16384);
  FrameRing p = f.producer(), c = f.producer();
  constexpr int kFrames = 20000;
  WaitPolicy hybrid{WaitStrategy::hybrid, 20'000};
  std::thread producer([&] {
    std::mt19937 rng(seed);
    for (int i = 0; i < kFrames; ++i) {
      uint32_t n = 5 + rng() % 5000;
      FrameSpace sp;
      ASSERT_EQ(p.reserve(n, monotonic_ns() + 10'000'000'000, hybrid, &sp), Errc::ok);
      std::memcpy(sp.body, &i, 4);
      std::memset(sp.body + 4, i & 0xff, n - 4);
      p.commit(n, 0, n);
    }
  });
  std::mt19937 rng(seed);
  for (int i = 0; i < kFrames; ++i) {
    uint32_t n = 5 + rng() % 5000;
    Frame fr;
    Errc e;
    while ((e = c.peek(&fr)) == Errc::empty) {
      ASSERT_EQ(c.wait_readable(monotonic_ns() + 10'000'000'000, hybrid, [] { return false; }),
                WaitResult::ready);
    }
    ASSERT_EQ(e, Errc::ok);
    ASSERT_EQ(fr.body_length, n);
    int got;
    std::memcpy(&got, fr.body, 4);
    ASSERT_EQ(got, i);
    ASSERT_EQ(fr.body[n - 1], uint8_t(i & 0xff));
    c.release(fr);
  }
  producer.join();
}

}  // namespace
}  // namespace shmpool::ipc
