// test_support.h: the leak probe every multi-process test uses.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "ipc/segment.h"
#include "ipc/sys.h"
#include "ipc/wait.h"

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

// Waits (20 s at most) until `n` callers wait in the checkout queue of pool
// `name`. Polled: the queue's length rings no doorbell.
inline bool wait_queued(const std::string& name, uint32_t n) {
  std::unique_ptr<ipc::Segment> seg;
  if (ipc::Segment::attach(name, &seg) != ipc::Errc::ok) return false;
  ipc::Doorbell never;
  auto queued = [&] { return ipc::waiting_callers(seg->header().queue) == n; };
  return ipc::wait_until(never, queued, ipc::monotonic_ns() + 20'000'000'000,
                         ipc::WaitPolicy{ipc::WaitStrategy::spin, 0}) == ipc::WaitResult::ready;
}

// Waits until the process behind `pidfd` exits or the deadline passes
// (CLOCK_MONOTONIC ns); closes the pidfd. True if it exited.
inline bool wait_exit(int pidfd, int64_t deadline_ns) {
  pollfd p{pidfd, POLLIN, 0};
  int64_t left_ms = std::max<int64_t>(0, (deadline_ns - ipc::monotonic_ns()) / 1'000'000);
  int r = ipc::retry_eintr([&] { return ::poll(&p, 1, int(left_ms)); });
  ::close(pidfd);
  return r == 1;
}

// A child process whose stdout we read line by line.
struct Child {
  pid_t pid = -1;
  FILE* out = nullptr;
  // The next line of its stdout without the newline; empty at EOF.
  std::string read_line() {
    char buf[1024];
    if (!out || !std::fgets(buf, sizeof buf, out)) return {};
    std::string s = buf;
    if (!s.empty() && s.back() == '\n') s.pop_back();
    return s;
  }
  // Waits for it (it is our child) and returns the raw wait status.
  int wait() {
    int status = 0;
    if (pid > 0) ipc::retry_eintr([&] { return ::waitpid(pid, &status, 0); });
    pid = -1;
    if (out) std::fclose(out);
    out = nullptr;
    return status;
  }
};

inline Child spawn_child(std::vector<std::string> argv) {
  Child c;
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return c;
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  c.pid = ::fork();
  if (c.pid == 0) {
    ::dup2(fds[1], 1);
    ::execv(args[0], args.data());
    _exit(127);
  }
  ::close(fds[1]);
  c.out = ::fdopen(fds[0], "r");
  return c;
}

}  // namespace shmpool::test
