// test_support.h: the leak probe every multi-process test uses.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "ipc/segment.h"

namespace shmpool::test {

// shmpool segments in /dev/shm created by this process (tests run in
// parallel: other test processes' segments are not ours to count).
inline std::set<std::string> shm_entries() {
  std::set<std::string> out;
  if (DIR* d = opendir("/dev/shm")) {
    while (dirent* e = readdir(d)) {
      if (std::strncmp(e->d_name, "shmpool.", 8) != 0) continue;
      int fd = ::open((std::string("/dev/shm/") + e->d_name).c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) continue;
      int32_t owner = 0;
      bool ours = ::pread(fd, &owner, sizeof owner, offsetof(ipc::SegmentHeader, owner_pid)) ==
                      ssize_t(sizeof owner) &&
                  owner == ::getpid();
      ::close(fd);
      if (ours) out.insert(e->d_name);
    }
    closedir(d);
  }
  return out;
}

inline std::set<std::string> child_pids() {
  std::set<std::string> out;
  if (DIR* d = opendir("/proc/self/task")) {
    while (dirent* e = readdir(d)) {
      if (e->d_name[0] == '.') continue;
      std::ifstream in(std::string("/proc/self/task/") + e->d_name + "/children");
      std::string pid;
      while (in >> pid) out.insert(pid);
    }
    closedir(d);
  }
  return out;
}

inline int open_fds() {
  int n = 0;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (readdir(d)) ++n;
    closedir(d);
  }
  return n;
}

inline std::string join(const std::set<std::string>& s) {
  std::string out;
  for (auto& x : s) out += x + " ";
  return out;
}

// Fails the test if it left /dev/shm entries, child processes or file
// descriptors behind.
class LeakCheck : public ::testing::Test {
 protected:
  void SetUp() override {
    shm_before_ = shm_entries();
    fds_before_ = open_fds();
    ASSERT_TRUE(child_pids().empty()) << "children alive before the test: " << join(child_pids());
  }
  void TearDown() override {
    auto shm_after = shm_entries();
    EXPECT_EQ(shm_after, shm_before_) << "leaked /dev/shm entries: " << join(shm_after);
    EXPECT_TRUE(child_pids().empty()) << "leaked child processes: " << join(child_pids());
    EXPECT_EQ(open_fds(), fds_before_) << "leaked file descriptors";
  }

 private:
  std::set<std::string> shm_before_;
  int fds_before_ = 0;
};

}  // namespace shmpool::test
