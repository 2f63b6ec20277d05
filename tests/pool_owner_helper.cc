// pool_owner_helper NAME HANDLERS: starts a pool of 2 workers, prints
// "READY <pid> <pid>", then "LOG <line>" for every line its workers print,
// and waits to be killed. Used by the owner-death tests.
#include <unistd.h>

#include <cstdio>

#include "shmpool/pool.h"

int main(int argc, char** argv) {
  if (argc < 3) return 2;
  shmpool::PoolConfig c;
  c.name = argv[1];
  c.size = 2;
  c.max_overflow = 0;
  c.handler_modules = {argv[2]};
  c.log = [](const shmpool::LogLine& l) {
    std::printf("LOG %.*s\n", int(l.text.size()), l.text.data());
    std::fflush(stdout);
  };
  auto pool = shmpool::Pool::start(c);
  if (!pool.ok()) {
    std::printf("ERROR %s\n", pool.error().to_string().c_str());
    return 1;
  }
  auto st = (*pool)->status();
  std::printf("READY %d %d\n", int(st.workers[0].pid), int(st.workers[1].pid));
  std::fflush(stdout);
  for (;;) pause();
}
