// fit_segment: sizes the caller set are kept exactly; unset ones shrink to
// fit half of a small /dev/shm, within their minimums, or fail clearly.
// A pure function: no /dev/shm of any size is needed here.
#include "pool/src/segment_sizing.h"

#include <gtest/gtest.h>

namespace shmpool::detail {
namespace {

constexpr uint64_t MiB = 1u << 20;

uint64_t segment_bytes(const ipc::Geometry& g) {
  ipc::Layout l{};
  EXPECT_EQ(ipc::compute_layout(g, &l), ipc::Errc::ok);
  return l.total;
}

SizeRequest defaults(uint32_t slots = 4) {
  SizeRequest r;
  r.slot_count = slots;
  r.session_capacity = 4096;
  return r;
}

TEST(SegmentSizing, DefaultsAreKeptWhenTheyFit) {
  auto f = fit_segment(defaults(), 24ull << 30);
  ASSERT_TRUE(f.ok());
  EXPECT_FALSE(f->shrunk);
  EXPECT_EQ(f->geometry.request_ring_bytes, kDefaultRingBytes);
  EXPECT_EQ(f->geometry.response_ring_bytes, kDefaultRingBytes);
  EXPECT_EQ(f->geometry.arena_bytes, kDefaultArenaBytes);
  EXPECT_EQ(f->segment_bytes, segment_bytes(f->geometry));
  EXPECT_TRUE(f->note.empty());
}

TEST(SegmentSizing, UnknownFreeSpaceShrinksNothing) {
  auto f = fit_segment(defaults(), 0);
  ASSERT_TRUE(f.ok());
  EXPECT_FALSE(f->shrunk);
  EXPECT_EQ(f->geometry.arena_bytes, kDefaultArenaBytes);
}

TEST(SegmentSizing, ADockerSizedShmGetsAPoolOfAtMostHalfOfIt) {
  const uint64_t free = 64 * MiB;
  auto f = fit_segment(defaults(), free);
  ASSERT_TRUE(f.ok()) << f.error().to_string();
  EXPECT_TRUE(f->shrunk);
  EXPECT_LE(f->segment_bytes, free / 2);
  EXPECT_EQ(f->segment_bytes, segment_bytes(f->geometry));
  EXPECT_GE(f->geometry.arena_bytes, kMinAutoArenaBytes);
  EXPECT_LT(f->geometry.arena_bytes, kDefaultArenaBytes);
  EXPECT_EQ(f->geometry.arena_bytes % ipc::kArenaPage, 0u);
  EXPECT_GE(f->geometry.request_ring_bytes, kMinAutoRingBytes);
  // The arena takes what the rings leave: within a page or two of the half.
  EXPECT_GT(f->segment_bytes + 64 * 1024, free / 2);
  EXPECT_NE(f->note.find("64 MiB free"), std::string::npos) << f->note;
}

TEST(SegmentSizing, ExplicitSizesAreNeverShrunk) {
  SizeRequest r = defaults();
  r.arena_bytes = 64 * MiB;
  r.request_ring_bytes = 4 * MiB;
  r.response_ring_bytes = 4 * MiB;
  auto f = fit_segment(r, 64 * MiB);
  ASSERT_TRUE(f.ok());  // returned as asked: creating the segment reports shm_exhausted
  EXPECT_FALSE(f->shrunk);
  EXPECT_EQ(f->geometry.arena_bytes, 64 * MiB);
  EXPECT_GT(f->segment_bytes, 64 * MiB);
}

TEST(SegmentSizing, OnlyTheUnsetSizesShrink) {
  SizeRequest r = defaults();
  r.request_ring_bytes = 1 * MiB;
  r.response_ring_bytes = 1 * MiB;  // set: the arena alone gives way
  auto f = fit_segment(r, 64 * MiB);
  ASSERT_TRUE(f.ok());
  EXPECT_TRUE(f->shrunk);
  EXPECT_EQ(f->geometry.request_ring_bytes, 1 * MiB);
  EXPECT_EQ(f->geometry.response_ring_bytes, 1 * MiB);
  EXPECT_LE(f->segment_bytes, 32 * MiB);
  r = defaults();
  r.arena_bytes = 8 * MiB;  // set: the rings give way (42 MiB in all by default)
  f = fit_segment(r, 40 * MiB);
  ASSERT_TRUE(f.ok()) << f.error().to_string();
  EXPECT_EQ(f->geometry.arena_bytes, 8 * MiB);
  EXPECT_LT(f->geometry.request_ring_bytes, kDefaultRingBytes);
  EXPECT_LE(f->segment_bytes, 20 * MiB);
}

TEST(SegmentSizing, A16MiBShmStillFitsADefaultPool) {
  auto f = fit_segment(defaults(), 16 * MiB);
  ASSERT_TRUE(f.ok()) << f.error().to_string();
  EXPECT_LE(f->segment_bytes, 8 * MiB);
  EXPECT_GE(f->geometry.arena_bytes, kMinAutoArenaBytes);
}

TEST(SegmentSizing, TooSmallAShmIsAClearErrorNamingTheMinimum) {
  auto f = fit_segment(defaults(64), 8 * MiB);
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.error().category, Category::resource_error);
  EXPECT_EQ(f.error().type, "shm_exhausted");
  const uint64_t minimum = std::stoull(f.error().context.at("minimum_shm_bytes"));
  EXPECT_GT(minimum, 8 * MiB);
  // That minimum does fit.
  EXPECT_TRUE(fit_segment(defaults(64), minimum).ok());
}

TEST(SegmentSizing, BytesAreFormattedForPeople) {
  EXPECT_EQ(format_bytes(64 * MiB), "64 MiB");
  EXPECT_EQ(format_bytes(256 * 1024), "256 KiB");
  EXPECT_EQ(format_bytes(MiB + MiB / 2), "1.5 MiB");
  EXPECT_EQ(format_bytes(100), "100 bytes");
}

}  // namespace
}  // namespace shmpool::detail
