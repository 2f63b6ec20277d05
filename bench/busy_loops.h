// busy_loops.h: N processes that burn a CPU each (like a compiler or another
// service beside the benchmark), at normal priority, unpinned, in the
// benchmark's own session (so they share its scheduler autogroup: each loop
// competes with each of our threads one to one, the harder case). They stop
// when the BusyLoops goes, and die with the benchmark if it is killed.
#pragma once

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace shmpool::bench {

class BusyLoops {
 public:
  explicit BusyLoops(int n) {
    for (int i = 0; i < n; ++i) {
      const pid_t parent = ::getpid();
      const pid_t pid = ::fork();
      if (pid < 0) {
        std::perror("fork");
        std::exit(1);
      }
      if (pid == 0) {
        // Only async-signal-safe calls: the parent has threads.
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (::getppid() != parent) ::_exit(0);
        volatile uint64_t spins = 0;
        for (;;) spins = spins + 1;
      }
      pids_.push_back(pid);
    }
  }
  ~BusyLoops() {
    for (pid_t p : pids_) ::kill(p, SIGKILL);
    for (pid_t p : pids_) ::waitpid(p, nullptr, 0);
  }
  BusyLoops(const BusyLoops&) = delete;
  BusyLoops& operator=(const BusyLoops&) = delete;

 private:
  std::vector<pid_t> pids_;
};

}  // namespace shmpool::bench
