#include "bench/served_pool.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace shmpool::bench {

ServedPool::ServedPool(uint32_t pool_size) {
  const std::string name = "bench-served-" + std::to_string(::getpid());
  const std::string size = std::to_string(pool_size);
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) std::exit(1);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
  const char* argv[] = {SHMPOOL_CLI,  "serve",          "--name", name.c_str(), "--size",
                        size.c_str(), "--max-overflow", "0",      nullptr};
  if (posix_spawn(&pid, SHMPOOL_CLI, &fa, nullptr, const_cast<char**>(argv), environ) != 0) {
    std::fprintf(stderr, "cannot start %s serve\n", SHMPOOL_CLI);
    std::exit(1);
  }
  posix_spawn_file_actions_destroy(&fa);
  ::close(fds[1]);
  char line[256] = {};
  FILE* out = ::fdopen(fds[0], "r");
  const bool ready = std::fgets(line, sizeof line, out) && std::strstr(line, "serving pool");
  std::fclose(out);
  auto c = ready ? Client::attach(name)
                 : Expected<std::unique_ptr<Client>>(
                       make_error(Category::worker_error, "serve_failed", line));
  if (!c.ok()) {
    std::fprintf(stderr, "cannot attach: %s\n", c.error().to_string().c_str());
    std::exit(1);
  }
  client = std::move(c.value());
}

ServedPool::~ServedPool() {
  client.reset();
  ::kill(pid, SIGTERM);
  int status;
  ::waitpid(pid, &status, 0);
}

}  // namespace shmpool::bench
