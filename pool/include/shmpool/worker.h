// worker.h: one Python worker process and calls to it, over shared memory
// or over the pipe + JSON baseline. shmpool::Pool builds on the same pieces;
// use Worker directly when one process is all you need (or to benchmark the
// transports).
//
// Threads: a Worker serves one call at a time; call() and stop() must not run
// concurrently on the same Worker (use Pool for concurrency). Worker death is
// detected at once (pidfd), failing an in-flight call with
// worker_error/worker_crashed.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "shmpool/error.h"
#include "shmpool/payload.h"
#include "shmpool/reply.h"
#include "shmpool/value.h"

namespace shmpool::detail {
// The installed python_shm_worker package's directory: `relative` resolved
// against the directory of the installed header `header` (the __FILE__ of
// pool.h or worker.h, as the consumer's compiler found it). "" when `header`
// is not an absolute path or no package is there (then the library's own
// default applies: beside the running executable, else the build tree's).
std::string package_path_from_header(const char* header, const char* relative);
}  // namespace shmpool::detail

// Where workers find the python_shm_worker package, wherever the prefix was
// moved:
//  - SHMPOOL_PACKAGE_PYTHON_PATH if defined (the installed CMake package
//    defines it from its own location);
//  - else, for headers included from an install (CMake, pkg-config, the
//    .deb), the package of the same prefix, found relative to this header;
//  - else "": the library's default (the package beside the running
//    executable's prefix, e.g. the installed `shmpool` command; else the
//    build tree's).
#if defined(SHMPOOL_PACKAGE_PYTHON_PATH)
#define SHMPOOL_DEFAULT_PACKAGE_PATH SHMPOOL_PACKAGE_PYTHON_PATH
#elif __has_include("shmpool_install_layout.h")  // only in an install, beside this header
#include "shmpool_install_layout.h"
#define SHMPOOL_DEFAULT_PACKAGE_PATH \
  ::shmpool::detail::package_path_from_header(__FILE__, SHMPOOL_PYTHON_PATH_FROM_HEADERS)
#else
#define SHMPOOL_DEFAULT_PACKAGE_PATH ""
#endif

namespace shmpool {

enum class Transport { shm, pipe_json };
std::string_view transport_name(Transport t);

// How a waiting process waits (for a request, a reply, a free worker).
enum class WaitStrategy {
  spin,    // busy-poll: lowest latency, burns a core per waiter
  hybrid,  // poll for `spin`, then sleep on a futex (default)
  block,   // sleep on a futex at once
};
std::string_view wait_strategy_name(WaitStrategy w);

// One line a worker wrote to stdout or stderr.
struct LogLine {
  int slot = 0;
  pid_t pid = 0;
  bool is_stderr = false;
  std::string_view text;
};
using LogCallback = std::function<void(const LogLine&)>;

// WorkerOptions/PoolConfig::worker_malloc_threshold: the default and the
// largest value glibc accepts on 64-bit (HEAP_MAX_SIZE / 2).
inline constexpr std::size_t kDefaultWorkerMallocThreshold = 32u << 20;
inline constexpr std::size_t kMaxWorkerMallocThreshold = 32u << 20;

struct WorkerOptions {
  Transport transport = Transport::shm;
  // Interpreter; empty = the one shmpool was configured with (Python3_EXECUTABLE).
  std::string python;
  // Directory holding the python_shm_worker package; empty = the build tree's.
  std::string python_path = SHMPOOL_DEFAULT_PACKAGE_PATH;
  // Handler modules to import, by dotted name or path to a .py file.
  std::vector<std::string> handler_modules;
  // Added to (and overriding) the inherited environment.
  std::map<std::string, std::string> env;
  std::chrono::milliseconds startup_timeout{10'000};
  WaitStrategy wait = WaitStrategy::hybrid;
  std::chrono::nanoseconds spin{50'000};
  // The worker's glibc malloc serves allocations up to this size from its
  // heap and keeps freed memory for the next call (MALLOC_MMAP_THRESHOLD_,
  // and MALLOC_TRIM_THRESHOLD_ at 8x), instead of mapping and unmapping
  // numpy's large temporaries on every call. At most 32 MiB; 0: glibc's
  // defaults. Either variable in `env` or our environment wins. See README
  // "Handler speed".
  std::size_t worker_malloc_threshold = kDefaultWorkerMallocThreshold;
  std::size_t request_ring_bytes = 4u << 20;   // largest request frame, payload included
  std::size_t response_ring_bytes = 4u << 20;  // largest response frame
  // Shared payload arena for payloads above 4 KiB (rounded up to 4 KiB
  // pages; 0 = none: payloads then travel in the rings). See payload.h.
  std::size_t payload_arena_bytes = 16u << 20;
  LogCallback log;   // default: lines go to our stderr
  std::string name;  // segment name (shm); default: unique "w<pid>-<n>"
};

struct CallOptions {
  std::chrono::milliseconds timeout{30'000};  // operation timeout
  std::string_view session_id;                // optional
  std::span<const uint8_t> body;              // optional typed nested FlatBuffer
};

class Worker {
 public:
  // Spawns the worker and waits until it is ready or options.startup_timeout.
  // worker_error/startup_failed (with the stderr tail) if it exits first,
  // timeout_error/startup_timeout, config_error for bad options,
  // resource_error/shm_exhausted if /dev/shm cannot hold the rings.
  static Expected<std::unique_ptr<Worker>> start(WorkerOptions options);
  ~Worker();  // stop() with a 2 s grace

  // Calls `command`. Errors: handler_error (handler_exception with
  // exception_type and traceback in context; unknown_command),
  // worker_error/worker_crashed (pid, signal or exit code, stderr tail),
  // timeout_error/operation_timeout (the worker is then killed: a late reply
  // can never be mistaken for a later call's), protocol_error,
  // resource_error/payload_too_large.
  Expected<Reply> call(std::string_view command, const Args& args = empty_args(),
                       std::span<const uint8_t> payload = {}, const CallOptions& options = {});

  // A block of n bytes in the payload arena (shm only): fill it and pass
  // data() as a call's payload, no copy. resource_error/payload_too_large
  // if n exceeds the arena, resource_error/arena_exhausted after `timeout`.
  Expected<PayloadBuffer> alloc_payload(
      std::size_t n, std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));

  // Asks the worker to exit, waits up to `grace`, then SIGKILL; reaps it and
  // removes the segment. Idempotent.
  Status stop(std::chrono::milliseconds grace = std::chrono::milliseconds(2000));

  pid_t pid() const;
  Transport transport() const;
  const std::string& name() const;
  // The worker's hello: {"pid", "python", "executable", "handlers"}.
  const Reply& info() const;
  // Last lines the worker wrote to stderr (newest last).
  std::vector<std::string> stderr_tail() const;

  struct State;

 private:
  explicit Worker(std::unique_ptr<State> s);
  std::unique_ptr<State> s_;
};

}  // namespace shmpool
