#include "ipc/sys.h"

#include <fcntl.h>
#include <linux/futex.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

namespace shmpool::ipc {

static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t));
static_assert(std::atomic<uint32_t>::is_always_lock_free);

std::string SysError::message() const { return std::string(call) + ": " + std::strerror(errnum); }

int64_t monotonic_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

int64_t coarse_monotonic_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return int64_t(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

FutexResult futex_wait(const std::atomic<uint32_t>* word, uint32_t expected, int64_t deadline_ns) {
  timespec ts{};
  timespec* tsp = nullptr;
  if (deadline_ns > 0) {
    ts.tv_sec = deadline_ns / 1'000'000'000;
    ts.tv_nsec = deadline_ns % 1'000'000'000;
    tsp = &ts;
  }
  // FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC deadline, so retrying
  // after EINTR does not stretch the wait.
  long r = retry_eintr([&] {
    return syscall(SYS_futex, reinterpret_cast<const uint32_t*>(word), FUTEX_WAIT_BITSET, expected,
                   tsp, nullptr, FUTEX_BITSET_MATCH_ANY);
  });
  if (r == 0) return FutexResult::woken;
  if (errno == ETIMEDOUT) return FutexResult::timed_out;
  return FutexResult::value_changed;  // EAGAIN
}

int futex_wake(const std::atomic<uint32_t>* word, int count) {
  long r = syscall(SYS_futex, reinterpret_cast<const uint32_t*>(word), FUTEX_WAKE, count, nullptr,
                   nullptr, 0);
  return r < 0 ? 0 : int(r);
}

int pidfd_open(pid_t pid, SysError* err) {
  int fd = int(retry_eintr([&] { return syscall(SYS_pidfd_open, pid, 0); }));
  if (fd < 0 && err) *err = SysError{errno, "pidfd_open"};
  return fd;
}

bool process_exists(pid_t pid) {
  if (pid <= 0) return false;
  if (::kill(pid, 0) != 0 && errno != EPERM) return false;
  // A zombie (dead, not yet reaped by its parent) still answers kill(0):
  // it holds nothing any more, so it does not exist for us. Its state is
  // the field after the last ')' of /proc/<pid>/stat.
  char path[32];
  std::snprintf(path, sizeof path, "/proc/%d/stat", int(pid));
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno != ENOENT;
  char buf[512];
  const ssize_t n = retry_eintr([&] { return ::read(fd, buf, sizeof buf - 1); });
  ::close(fd);
  if (n <= 0) return true;
  buf[n] = 0;
  const char* close = std::strrchr(buf, ')');
  if (!close || close[1] == 0 || close[2] == 0) return true;
  return close[2] != 'Z' && close[2] != 'X';
}

uint64_t process_start_time(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return 0;
  // comm (field 2) may contain spaces and parens: parse after the last ')'.
  auto close = line.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream rest(line.substr(close + 2));
  std::string field;
  // Fields 3..22: state is field 3; starttime is field 22 (index 19 here).
  for (int i = 3; i <= 22; ++i) {
    if (!(rest >> field)) return 0;
  }
  return std::stoull(field);
}

}  // namespace shmpool::ipc
