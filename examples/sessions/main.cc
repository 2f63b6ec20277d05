// Sessions: calls tagged with a session id are counted per session in the
// pool's shared session table; any worker may serve any session.
#include <unistd.h>

#include <cstdio>

#include "shmpool/pool.h"

int main() {
  shmpool::PoolConfig config;
  config.name = "example-sessions-" + std::to_string(::getpid());
  config.size = 2;
  auto pool = shmpool::Pool::start(config);
  if (!pool.ok()) {
    std::fprintf(stderr, "%s\n", pool.error().to_string().c_str());
    return 1;
  }
  for (const char* user : {"alice", "bob", "alice", "alice"}) {
    auto r = (*pool)->execute_in_session(user, "ping");
    if (!r.ok()) {
      std::fprintf(stderr, "%s\n", r.error().to_string().c_str());
      return 1;
    }
  }
  auto bad = (*pool)->execute_in_session("bob", "no_such_command");
  std::printf("a failing call: %s\n", bad.ok() ? "ok?" : bad.error().to_string().c_str());
  for (const auto& s : (*pool)->sessions()) {
    std::printf("session %-6s operations %llu errors %llu last worker slot %d\n", s.id.c_str(),
                (unsigned long long)s.operations, (unsigned long long)s.errors, s.last_slot);
  }
  (void)(*pool)->end_session("alice");
  std::printf("after end_session(alice): %zu session(s)\n", (*pool)->sessions().size());
  auto alice = (*pool)->session("alice");
  auto bob = (*pool)->session("bob");
  return !alice && bob && bob->operations == 2 && bob->errors == 1 ? 0 : 1;
}
