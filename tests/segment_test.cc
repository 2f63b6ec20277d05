// Segment: create / attach / remove, names, mode, bad magic and version.
#include "ipc/segment.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "tests/test_support.h"

namespace shmpool::ipc {
namespace {

std::string unique_name(const char* tag) {
  return std::string("t") + tag + "-" + std::to_string(::getpid());
}

class SegmentTest : public test::LeakCheck {};

TEST_F(SegmentTest, CreateAttachRemove) {
  const std::string name = unique_name("car");
  Geometry g{2, 0, 8192, 4096};
  std::unique_ptr<Segment> owner, client;
  ASSERT_EQ(Segment::create(name, g, &owner), Errc::ok);
  EXPECT_EQ(owner->header().owner_pid, ::getpid());
  EXPECT_STREQ(owner->header().pool_name, name.c_str());
  ASSERT_EQ(Segment::attach(name, &client), Errc::ok);
  EXPECT_EQ(client->slot_count(), 2u);
  EXPECT_EQ(client->geometry().request_ring_bytes, 8192u);
  owner->slot(1).calls.store(5);
  EXPECT_EQ(client->slot(1).calls.load(), 5u);  // same memory
  std::unique_ptr<Segment> again;
  EXPECT_EQ(Segment::create(name, g, &again), Errc::exists);
  EXPECT_EQ(Segment::remove(name), Errc::ok);
  EXPECT_EQ(Segment::attach(name, &again), Errc::not_found);
  EXPECT_EQ(Segment::remove(name), Errc::not_found);
}

TEST_F(SegmentTest, IsCreatedWithMode0600) {
  const std::string name = unique_name("mode");
  std::unique_ptr<Segment> seg;
  ASSERT_EQ(Segment::create(name, Geometry{}, &seg), Errc::ok);
  struct stat st {};
  ASSERT_EQ(::stat(("/dev/shm/" + shm_object_name(name)).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(uint64_t(st.st_size), seg->size());
  EXPECT_GE(uint64_t(st.st_blocks) * 512, seg->size()) << "segment must be pre-allocated";
  Segment::remove(name);
}

TEST_F(SegmentTest, RejectsBadNames) {
  std::unique_ptr<Segment> seg;
  for (std::string bad :
       {std::string(), std::string(".hidden"), std::string("a/b"), std::string("sp ace"),
        std::string("new\nline"), std::string(65, 'a'), std::string("\xc3\xbcn")}) {
    EXPECT_EQ(Segment::create(bad, Geometry{}, &seg), Errc::bad_name) << bad;
    EXPECT_EQ(Segment::attach(bad, &seg), Errc::bad_name) << bad;
  }
  EXPECT_TRUE(valid_pool_name("ok_name-1.2"));
  EXPECT_TRUE(valid_pool_name(std::string(64, 'a')));
}

TEST_F(SegmentTest, RejectsBadGeometry) {
  std::unique_ptr<Segment> seg;
  const std::string name = unique_name("geo");
  EXPECT_EQ(Segment::create(name, Geometry{0, 0, 4096, 4096}, &seg), Errc::bad_layout);
  EXPECT_EQ(Segment::create(name, Geometry{1, 0, 4100, 4096}, &seg), Errc::bad_layout);
  EXPECT_EQ(Segment::create(name, Geometry{1, 0, 4096, 1024}, &seg), Errc::bad_layout);
}

TEST_F(SegmentTest, AttachRejectsForeignObjectsAndOtherVersions) {
  const std::string name = unique_name("magic");
  // A foreign object under our prefix.
  int fd = shm_open(("/" + shm_object_name(name)).c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(ftruncate(fd, 65536), 0);
  ::close(fd);
  std::unique_ptr<Segment> seg;
  EXPECT_EQ(Segment::attach(name, &seg), Errc::bad_magic);
  Segment::remove(name);
  // A real segment whose header claims another layout version.
  std::unique_ptr<Segment> owner;
  ASSERT_EQ(Segment::create(name, Geometry{}, &owner), Errc::ok);
  owner->header().layout_version = kLayoutVersion + 1;
  EXPECT_EQ(Segment::attach(name, &seg), Errc::bad_version);
  owner->header().layout_version = kLayoutVersion;
  owner->header().geometry.slot_count = 7;  // sizes disagree with the file
  EXPECT_EQ(Segment::attach(name, &seg), Errc::bad_layout);
  Segment::remove(name);
}

TEST_F(SegmentTest, ZeroedSlotsAreEmpty) {
  const std::string name = unique_name("zero");
  std::unique_ptr<Segment> seg;
  ASSERT_EQ(Segment::create(name, Geometry{3, 0, 4096, 4096}, &seg), Errc::ok);
  for (uint32_t i = 0; i < 3; ++i) {
    EXPECT_EQ(slot_state(seg->slot(i).state.load()), SlotState::empty);
    EXPECT_FALSE(seg->request_ring(i).readable());
  }
  Segment::remove(name);
}

}  // namespace
}  // namespace shmpool::ipc
