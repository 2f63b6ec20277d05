// small_shm_helper: run by small_shm.sh inside a private mount namespace
// whose /dev/shm is a small tmpfs (a default Docker container's 64 MiB, or
// 16 MiB). Checks, as a user would: a default Pool starts, says in one log
// line what it chose, serves payloads up to its effective arena size, and
// refuses a larger one at once with resource_error/payload_too_large; then
// the same with a default `shmpool serve` and a Client. Prints the sizes it
// got and the p50 of 1 MiB payload calls (figures, not checks).
//   small_shm_helper SHMPOOL_CLI
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "shmpool/client.h"
#include "shmpool/pool.h"

namespace {

int failures = 0;
#define CHECK(cond, ...)                                            \
  do {                                                              \
    if (!(cond)) {                                                  \
      ++failures;                                                   \
      std::printf("FAILED %s:%d: %s: ", __FILE__, __LINE__, #cond); \
      std::printf(__VA_ARGS__);                                     \
      std::printf("\n");                                            \
    }                                                               \
  } while (0)

// Calls `call(payload)` with payloads of 1 MiB, the arena's size, and one
// byte more; returns the p50 of the 1 MiB calls in us.
template <class Call>
double check_payloads(const char* who, uint64_t arena_bytes, Call&& call) {
  std::vector<uint8_t> data(arena_bytes + 1, 0x5a);
  auto ack = [&](std::size_t n) {
    shmpool::ExecOptions o;
    o.payload = std::span<const uint8_t>(data.data(), n);
    return call("ack", o);
  };
  std::vector<double> us;
  for (int i = 0; i < 101; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    auto r = ack(1u << 20);
    auto t1 = std::chrono::steady_clock::now();
    CHECK(r.ok(), "%s: 1 MiB: %s", who, r.ok() ? "" : r.error().to_string().c_str());
    if (!r.ok()) return 0;
    CHECK(r->value().AsMap()["bytes"].AsUInt64() == 1u << 20, "%s: wrong length", who);
    us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
  }
  auto full = ack(arena_bytes);
  CHECK(full.ok(), "%s: a payload of the whole arena (%llu bytes): %s", who,
        (unsigned long long)arena_bytes, full.ok() ? "" : full.error().to_string().c_str());
  if (full.ok()) CHECK(full->value().AsMap()["bytes"].AsUInt64() == arena_bytes, "%s", who);
  auto over = ack(arena_bytes + 1);
  CHECK(!over.ok() && over.error().type == "payload_too_large",
        "%s: one byte more than the arena: %s", who,
        over.ok() ? "succeeded" : over.error().to_string().c_str());
  std::vector<uint8_t> echo_in(1u << 20, 0x33);
  shmpool::ExecOptions o;
  o.payload = echo_in;
  auto echo = call("echo", o);
  CHECK(echo.ok() && echo->payload().size() == echo_in.size() &&
            std::equal(echo_in.begin(), echo_in.end(), echo->payload().begin()),
        "%s: 1 MiB echo: %s", who, echo.ok() ? "wrong bytes" : echo.error().to_string().c_str());
  std::sort(us.begin(), us.end());
  return us[us.size() / 2];
}

void default_pool() {
  shmpool::PoolConfig c;
  c.name = "small-shm-" + std::to_string(::getpid());
  std::vector<std::string> lines;
  c.log = [&](const shmpool::LogLine& l) {
    if (l.slot < 0) lines.emplace_back(l.text);
  };
  auto pool = shmpool::Pool::start(c);
  CHECK(pool.ok(), "a default pool: %s", pool.ok() ? "" : pool.error().to_string().c_str());
  if (!pool.ok()) return;
  const shmpool::PoolStatus st = (*pool)->status();
  const uint64_t arena = *st.config.payload_arena_bytes;
  CHECK(lines.size() == 1, "one line about the sizes, got %zu", lines.size());
  for (const auto& l : lines) std::printf("pool log: %s\n", l.c_str());
  CHECK(arena == st.arena_bytes && arena < (64u << 20), "arena %llu, status %llu",
        (unsigned long long)arena, (unsigned long long)st.arena_bytes);
  const double p50 =
      check_payloads("Pool", arena, [&](const char* cmd, const shmpool::ExecOptions& o) {
        return (*pool)->execute_anonymous(cmd, shmpool::empty_args(), o);
      });
  std::printf("Pool: %u workers, rings %zu / %zu bytes, arena %llu bytes; 1 MiB ack p50 %.1f us\n",
              st.config.size + st.config.max_overflow, *st.config.request_ring_bytes,
              *st.config.response_ring_bytes, (unsigned long long)arena, p50);
  CHECK((*pool)->shutdown().ok(), "shutdown");
}

void default_serve(const char* cli) {
  const std::string name = "small-serve-" + std::to_string(::getpid());
  int out[2];
  if (::pipe(out) != 0) return;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_addclose(&fa, out[0]);
  const char* argv[] = {cli, "serve", "--name", name.c_str(), nullptr};
  pid_t pid = 0;
  CHECK(posix_spawn(&pid, cli, &fa, nullptr, const_cast<char**>(argv), environ) == 0, "spawn");
  posix_spawn_file_actions_destroy(&fa);
  ::close(out[1]);
  // The ready line ("serving pool ..."): read until it or EOF (serve failed).
  std::string text;
  char buf[256];
  for (ssize_t n;
       text.find("serving pool") == std::string::npos && (n = ::read(out[0], buf, sizeof buf)) > 0;)
    text.append(buf, size_t(n));
  CHECK(text.find("serving pool") != std::string::npos, "shmpool serve did not start: %s",
        text.c_str());
  if (text.find("serving pool") != std::string::npos) {
    auto client = shmpool::Client::attach(name);
    CHECK(client.ok(), "attach: %s", client.ok() ? "" : client.error().to_string().c_str());
    if (client.ok()) {
      auto snap = (*client)->status();
      CHECK(snap.ok(), "status");
      const uint64_t snap_arena = snap.ok() ? snap->arena_bytes : 0;
      const double p50 =
          check_payloads("serve", snap_arena, [&](const char* cmd, const shmpool::ExecOptions& o) {
            return (*client)->execute_anonymous(cmd, shmpool::empty_args(), o);
          });
      std::printf("shmpool serve: arena %llu bytes; 1 MiB ack p50 %.1f us (from a Client)\n",
                  (unsigned long long)snap_arena, p50);
    }
  }
  ::kill(pid, SIGTERM);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ::close(out[0]);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "shmpool serve exit status %d", status);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: small_shm_helper SHMPOOL_CLI\n");
    return 2;
  }
  default_pool();
  default_serve(argv[1]);
  std::printf("%d failed\n", failures);
  return failures == 0 ? 0 : 1;
}
