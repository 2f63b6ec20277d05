// A Python process the benchmark starts beside itself (the ZeroMQ worker,
// the gRPC server, the pipe-JSON stream peer): Debian's interpreter with the
// built python_shm_worker package on PYTHONPATH and nothing from the working
// directory (PYTHONSAFEPATH), told to exit with the benchmark however it
// ends (--owner-pid <our pid>, a pidfd watch on the Python side). Call from
// one thread at a time; a process that cannot be spawned exits the benchmark.
#pragma once

#include <spawn.h>
#include <sys/types.h>

#include <string>
#include <vector>

namespace shmpool::bench {

// Spawns SHMPOOL_PYTHON with `args` and "--owner-pid <getpid()>" appended;
// `actions` (may be null) redirects its fds. Returns its pid.
pid_t spawn_python(std::vector<std::string> args,
                   const posix_spawn_file_actions_t* actions = nullptr);

// Waits for `pid` to exit (after the caller asked it to).
void reap(pid_t pid);

}  // namespace shmpool::bench
