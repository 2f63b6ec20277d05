// child_watch.h: one thread per ChildWatch that waits (epoll) on the pidfd
// and the stdout/stderr pipes of every registered child. It reaps a child as
// soon as it exits and reports the exit; it splits output into lines.
//
// Threads: add()/remove() from any thread. Callbacks run on the watch
// thread, one at a time. After remove(id) returns, no callback for `id` runs
// (remove() called from a callback of that id is allowed).
#pragma once

#include <sys/types.h>

#include <functional>
#include <memory>
#include <string_view>

namespace shmpool::detail {

struct ExitInfo {
  int exit_code = -1;            // valid when signal == 0
  int signal = 0;                // terminating signal, 0 if it exited normally
  std::string describe() const;  // "killed by SIGKILL" / "exited with code 3"
};

struct ChildCallbacks {
  std::function<void(std::string_view line, bool is_stderr)> on_line;
  std::function<void(const ExitInfo&)> on_exit;  // after the child is reaped
};

class ChildWatch {
 public:
  ChildWatch();
  ~ChildWatch();
  ChildWatch(const ChildWatch&) = delete;
  ChildWatch& operator=(const ChildWatch&) = delete;

  // Takes ownership of pidfd, out_fd and err_fd (-1 when not watched).
  // Returns an id for remove().
  int add(int pidfd, int out_fd, int err_fd, ChildCallbacks callbacks);
  void remove(int id);

 private:
  struct State;
  std::unique_ptr<State> s_;
};

// The process-wide watch used by Worker and Pool.
ChildWatch& child_watch();

}  // namespace shmpool::detail
