// sys.h: the one place shmpool makes raw syscalls. Every call retries EINTR
// and maps errno once into a SysError. Callers in ipc/ and pool/ never touch
// errno themselves.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <string>

namespace shmpool::ipc {

// A failed syscall: which call and its errno. `ok()` when errnum == 0.
struct SysError {
  int errnum = 0;
  const char* call = "";
  bool ok() const { return errnum == 0; }
  std::string message() const;  // "call: strerror(errnum)"
};

// CLOCK_MONOTONIC in nanoseconds; system-wide, so usable across processes.
int64_t monotonic_ns();
// CLOCK_MONOTONIC_COARSE: the time of the last clock tick, a few ms behind
// monotonic_ns() (up to 7 ms measured here), for 8 ns instead of 40 ns on a
// KVM guest. For bookkeeping (last activity), never for deadlines.
int64_t coarse_monotonic_ns();

enum class FutexResult { woken, timed_out, value_changed };

// Blocks while *word == expected, until woken or CLOCK_MONOTONIC reaches
// deadline_ns (<= 0: no deadline). Shared (not PRIVATE) futex: works across
// processes mapping the same page. Spurious wake-ups are reported as woken;
// callers re-check their condition.
FutexResult futex_wait(const std::atomic<uint32_t>* word, uint32_t expected, int64_t deadline_ns);
// Wakes up to `count` waiters on word. Returns the number woken.
int futex_wake(const std::atomic<uint32_t>* word, int count);

// pidfd_open(2): a descriptor that becomes readable when `pid` exits.
// Returns -1 and sets err on failure.
int pidfd_open(pid_t pid, SysError* err);
// True while `pid` exists (kill(pid, 0); EPERM counts as alive) and is not
// a zombie: a process killed but not yet reaped by its parent holds nothing.
bool process_exists(pid_t pid);
// Start time of `pid` in clock ticks since boot (field 22 of /proc/pid/stat),
// 0 if the process does not exist. Guards pid reuse in liveness checks.
uint64_t process_start_time(pid_t pid);

// Retries fn while it returns -1 with errno == EINTR.
template <class Fn>
auto retry_eintr(Fn fn) -> decltype(fn());

}  // namespace shmpool::ipc

#include <cerrno>
namespace shmpool::ipc {
template <class Fn>
auto retry_eintr(Fn fn) -> decltype(fn()) {
  decltype(fn()) r;
  do {
    r = fn();
  } while (r == -1 && errno == EINTR);
  return r;
}
}  // namespace shmpool::ipc
