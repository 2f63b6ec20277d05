// worker_process.h: a spawned Python worker process (Boost.Process) under
// watch: its pidfd, its output forwarded line by line, its exit recorded.
//
// Threads: all methods are thread-safe. The exit callback runs on the
// ChildWatch thread after the process was reaped.
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "pool/src/child_watch.h"
#include "shmpool/error.h"
#include "shmpool/worker.h"

namespace shmpool::detail {

struct SpawnSpec {
  std::string python;
  std::string python_path;        // empty: default_python_path()
  std::vector<std::string> args;  // after "-m python_shm_worker"
  std::map<std::string, std::string> env;
  bool pipe_stdio = false;  // keep stdin/stdout for the pipe-json protocol
  int slot = 0;
  LogCallback log;
  // Optional, after reaping and before exited()/wait_exit() report the exit.
  std::function<void(const ExitInfo&)> on_exit;
};

class WorkerProcess {
 public:
  // resource_error/spawn_failed if the interpreter cannot be started.
  static Expected<std::unique_ptr<WorkerProcess>> spawn(SpawnSpec spec);
  ~WorkerProcess();  // kills (SIGKILL) and reaps if still running

  pid_t pid() const { return pid_; }
  int stdin_fd() const { return in_fd_; }    // pipe_stdio only
  int stdout_fd() const { return out_fd_; }  // pipe_stdio only
  bool exited() const;
  std::optional<ExitInfo> exit_info() const;
  // Waits for the exit until deadline (CLOCK_MONOTONIC ns); true if exited.
  bool wait_exit(int64_t deadline_ns) const;
  void kill(int sig) const;  // no-op after exit
  // Sends SIGTERM, waits `grace_ns`, then SIGKILL and waits for the reap.
  void terminate(int64_t grace_ns);
  std::vector<std::string> stderr_tail() const;
  std::string stderr_tail_text() const;  // joined with '\n'

 private:
  WorkerProcess() = default;
  pid_t pid_ = 0;
  int in_fd_ = -1, out_fd_ = -1;
  int pidfd_ = -1;  // our own dup, for pidfd_send_signal (immune to pid reuse)
  int watch_id_ = 0;
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::optional<ExitInfo> exit_;
  std::deque<std::string> tail_;
};

// The configured interpreter (from CMake).
std::string default_python();
// The package directory when none is given: the installed package beside
// the running executable (<exe dir>/../lib/shmpool/python) if there is one,
// else the build tree's.
std::string default_python_path();

}  // namespace shmpool::detail
