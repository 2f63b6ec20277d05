// `shmpool serve`: a pool in this process until SIGINT or SIGTERM.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <iostream>

#include "tools/commands.h"

namespace shmpool::tools {

int serve(ServeOptions o) {
  for (const auto& kv : o.env) {
    auto eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) {
      std::cerr << "shmpool serve: --env wants KEY=VALUE, got '" << kv << "'\n";
      return 2;
    }
    o.config.env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  if (o.arena_bytes) o.config.payload_arena_bytes = *o.arena_bytes;
  if (o.ring_bytes) {
    o.config.request_ring_bytes = *o.ring_bytes;
    o.config.response_ring_bytes = *o.ring_bytes;
  }
  auto ms = [](double s) { return std::chrono::milliseconds(int64_t(s * 1000)); };
  o.config.checkout_timeout = ms(o.checkout_timeout_s);
  o.config.operation_timeout = ms(o.operation_timeout_s);
  o.config.startup_timeout = ms(o.startup_timeout_s);
  o.config.health_check_interval = ms(o.health_check_s);
  o.config.session_ttl = ms(o.session_ttl_s);
  // A closed stdout (`shmpool serve | head -1`, a parent that read the
  // ready line and closed its pipe) must not kill the pool by SIGPIPE at its
  // "shutting down" line, before it removes its segment. Workers get the
  // default back when they are spawned.
  std::signal(SIGPIPE, SIG_IGN);
  // Block the stop signals before any thread starts, then wait for one.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  auto pool = Pool::start(o.config);
  if (!pool.ok()) return fail(pool.error());
  std::cout << "serving pool " << (*pool)->name() << " (pid " << ::getpid()
            << "); SIGINT or SIGTERM stops it" << std::endl;
  int sig = 0;
  sigwait(&stop, &sig);
  std::cout << "signal " << sig << ": shutting down" << std::endl;
  auto done = (*pool)->shutdown(std::chrono::seconds(10));
  if (!done.ok()) return fail(done.error());
  return 0;
}

}  // namespace shmpool::tools
