// pool.h: start here. A pool of Python workers behind execute_in_session /
// execute_anonymous, over shared memory.
//
// Threads: every method is thread-safe; any number of threads may call at
// once (each call checks out one worker through the lock-free slot table in
// the segment, so calls run in parallel up to size + max_overflow).
//
// Guarantees: no call blocks past its checkout timeout plus its operation
// timeout; every failure is an Error {category, type, message, context} with
// the pool name (and session id, slot, worker pid when known) in context.
// A worker that crashes fails only its own call (worker_error/worker_crashed)
// and is replaced; a call past its operation timeout gets
// timeout_error/operation_timeout and its worker is killed, so a late reply
// never reaches another call. Session counts are exact as soon as a call
// returns.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "shmpool/call.h"
#include "shmpool/error.h"
#include "shmpool/value.h"
#include "shmpool/worker.h"

namespace shmpool {

// Something that happened to a pool, for the host's own metrics and logs.
// Delivered through PoolConfig::on_event (or ClientOptions::on_event) on the
// thread where it happened: the pool's supervisor thread for worker events
// and expiry, the calling thread for call and session events. Keep the
// callback short; it must not block on the pool. Exceptions are swallowed.
struct PoolEvent {
  enum class Kind {
    worker_started,         // a worker became ready in `slot` (its first in that slot)
    worker_restarted,       // a replacement worker became ready in `slot`
    worker_died,            // a worker exited unasked (`detail`: "killed by SIGSEGV", ...) or
                            // failed to start (`detail`: the error)
    worker_retired,         // an overflow or recycled worker was stopped on purpose
    call_timed_out,         // `detail`: checkout_timeout or operation_timeout
    session_created,        // first call of `session_id`
    session_ended,          // end_session(`session_id`)
    session_expired,        // removed after session_ttl idle
    client_slot_reclaimed,  // a client process died holding `slot` (`detail`: its pid)
    pool_lost,              // Client only: the owner process died
  };
  Kind kind = Kind::worker_started;
  int64_t time_ns = 0;  // CLOCK_MONOTONIC
  int32_t slot = -1;
  pid_t pid = 0;  // the worker's, when there is one
  std::string session_id;
  std::string detail;
};
std::string_view event_kind_name(PoolEvent::Kind k);
using EventCallback = std::function<void(const PoolEvent&)>;

struct PoolConfig {
  std::string name;           // required: 1-64 bytes of [A-Za-z0-9_.-]
  uint32_t size = 0;          // core workers; 0 = number of CPUs
  uint32_t max_overflow = 2;  // extra workers started when all are busy
  std::chrono::milliseconds checkout_timeout{5'000};
  std::chrono::milliseconds operation_timeout{30'000};
  std::chrono::milliseconds startup_timeout{10'000};
  // A cancelled call's handler still running after this is killed and its
  // worker replaced (call.h).
  std::chrono::milliseconds cancel_grace{1'000};
  bool lazy = false;      // start core workers on demand
  uint32_t min_warm = 0;  // with lazy: workers started (pre-warmed) at start
  std::chrono::milliseconds health_check_interval{0};  // ping idle workers; 0 = off
  std::chrono::milliseconds session_ttl{3'600'000};    // idle sessions removed after this
  std::chrono::milliseconds session_cleanup_interval{60'000};
  std::chrono::milliseconds overflow_idle_timeout{10'000};  // overflow workers retire after this
  uint32_t session_capacity = 4096;   // session table entries (full table: calls still run)
  uint32_t max_startup_failures = 3;  // consecutive start failures before failing fast
  // Recycling: a worker is replaced between calls after this many calls,
  // this age, or when its resident memory passes this size (0 = off).
  uint64_t max_calls_per_worker = 0;
  std::chrono::milliseconds max_worker_age{0};
  uint64_t max_worker_rss_bytes = 0;
  std::string python;  // default: the interpreter shmpool was configured with
  std::string python_path = SHMPOOL_DEFAULT_PACKAGE_PATH;  // python_shm_worker's directory
  std::vector<std::string> handler_modules;
  std::map<std::string, std::string> env;
  WaitStrategy wait = WaitStrategy::hybrid;
  std::chrono::nanoseconds spin{50'000};
  // Workers' malloc keeps memory for reuse up to this allocation size (see
  // WorkerOptions::worker_malloc_threshold; 0: glibc's defaults). Kept
  // memory counts in RSS: max_worker_rss_bytes recycles a worker that grew.
  std::size_t worker_malloc_threshold = kDefaultWorkerMallocThreshold;
  // Segment sizes. Unset: automatic, 4 MiB per ring and a 64 MiB payload
  // arena, shrunk to fit when /dev/shm cannot hold that (a container's
  // 64 MiB: README "Containers"; one log line says what was chosen).
  // Set: used exactly, or start fails with resource_error/shm_exhausted.
  // status().config shows the effective sizes.
  std::optional<std::size_t> request_ring_bytes;   // largest request frame, payload included
  std::optional<std::size_t> response_ring_bytes;  // largest response frame
  // Shared payload arena for payloads above 4 KiB, both ways (rounded up to
  // 4 KiB pages; 0 = none: payloads then travel in the rings). Pre-allocated
  // in /dev/shm with the rest of the segment. See payload.h.
  std::optional<std::size_t> payload_arena_bytes;
  LogCallback log;                 // worker stdout/stderr lines
  EventCallback on_event;          // worker, call and session events (see PoolEvent)
  std::function<int64_t()> clock;  // ns, for session times; default CLOCK_MONOTONIC
};

struct ExecOptions {
  std::optional<std::chrono::milliseconds> checkout_timeout;   // default: the pool's
  std::optional<std::chrono::milliseconds> operation_timeout;  // default: the pool's
  // Read in place when it lies in a PayloadBuffer from alloc_payload();
  // otherwise copied once (see payload.h).
  std::span<const uint8_t> payload;
  std::span<const uint8_t> body;  // typed nested FlatBuffer
  bool affinity = true;           // prefer the idle worker that served the session last
  // Async calls and streams (call.h).
  std::optional<std::chrono::milliseconds> cancel_grace;  // default: the pool's
  uint32_t stream_window_items = 16;                       // items sent and not yet taken
  std::size_t stream_window_bytes = std::size_t(16) << 20;  // their bytes (one item always fits)
  std::optional<std::chrono::milliseconds> stream_timeout;  // the whole stream; default none
};

struct SessionInfo {
  std::string id;
  int64_t created_ns = 0;
  int64_t last_activity_ns = 0;
  uint64_t operations = 0;
  uint64_t errors = 0;
  int32_t last_slot = -1;
};

struct WorkerInfo {
  uint32_t slot = 0;
  std::string state;  // empty, starting, idle, busy, retiring, dead
  bool overflow = false;
  pid_t pid = 0;
  uint64_t checkouts = 0, successes = 0, errors = 0, restarts = 0, recycled = 0;
  int64_t last_activity_ns = 0;  // CLOCK_MONOTONIC, 0 = never
};

struct PoolStatus {
  std::string name;
  PoolConfig config;  // the effective configuration (defaults resolved)
  uint32_t starting = 0, idle = 0, busy = 0, overflow = 0, dead = 0, retiring = 0;
  uint32_t queue_length = 0;  // callers waiting for a worker
  double uptime_s = 0;
  uint32_t active_sessions = 0;
  // calls and successes: by every process using the pool (its Clients too).
  uint64_t calls = 0, successes = 0, timeouts = 0, checkout_timeouts = 0;
  uint64_t session_table_full = 0;
  uint64_t reclaimed_from_dead_clients = 0;  // slots taken back from client processes that died
  uint64_t arena_bytes = 0, arena_bytes_in_use = 0;  // payload arena size and live blocks' bytes
  uint32_t arena_blocks_in_use = 0, arena_pinned_blocks = 0;
  std::map<std::string, uint64_t> errors_by_category;
  // From a log2 histogram of sampled calls: each calling thread's first 16,
  // then 1 in 8, and every failed call.
  double latency_p50_us = 0, latency_p99_us = 0;
  bool shutting_down = false;
  std::vector<WorkerInfo> workers;
};

class Pool {
 public:
  // Creates the segment, starts the workers (all of `size`, or `min_warm`
  // when lazy) and waits until they are ready. config_error for invalid
  // config; worker_error/startup_failed (stderr tail) if workers cannot start.
  static Expected<std::unique_ptr<Pool>> start(PoolConfig config);
  ~Pool();  // shutdown() with a 5 s grace

  Expected<Reply> execute_in_session(std::string_view session_id, std::string_view command,
                                     const Args& args = empty_args(),
                                     const ExecOptions& options = {});
  Expected<Reply> execute_anonymous(std::string_view command, const Args& args = empty_args(),
                                    const ExecOptions& options = {});
  // call_async() as a std::future. The payload is copied unless it lies in
  // a PayloadBuffer, which must then outlive the call. An empty session_id
  // makes an anonymous call.
  std::future<Expected<Reply>> submit(std::string session_id, std::string command,
                                      Args args = empty_args(), ExecOptions options = {});

  // A call that does not block (call.h): it is checked out and sent at
  // once when a worker is free (or can take it in its request ring), else
  // when one comes free, in turn with the callers waiting. An empty
  // session_id makes an anonymous call. The payload is copied unless it
  // lies in a PayloadBuffer, which must then outlive the call. Errors as
  // execute_in_session's, plus cancelled/cancelled.
  Call call_async(std::string_view session_id, std::string_view command,
                  const Args& args = empty_args(), const ExecOptions& options = {},
                  CompletionCallback on_complete = {});
  // A streaming call (call.h): the handler's items as they come.
  Stream stream(std::string_view session_id, std::string_view command,
                const Args& args = empty_args(), const ExecOptions& options = {});
  // An eventfd (EFD_NONBLOCK) that becomes readable when async calls or
  // stream items complete: for a host's event loop (epoll, Boost.Asio).
  // Read it to reset it, then look at your Calls (ready()). Owned by the
  // pool; -1 if it cannot be created.
  int completion_fd();

  // A block of n bytes in the payload arena: fill data() and pass it as
  // ExecOptions::payload, no copy. Waits up to `timeout` (default: the
  // checkout timeout) for space; resource_error/payload_too_large if n
  // exceeds the arena, resource_error/arena_exhausted after the timeout.
  Expected<PayloadBuffer> alloc_payload(std::size_t n,
                                        std::optional<std::chrono::milliseconds> timeout = {});

  // Ends a session (config_error/unknown_session if absent).
  Status end_session(std::string_view session_id);
  std::optional<SessionInfo> session(std::string_view session_id) const;
  std::vector<SessionInfo> sessions() const;
  // Removes sessions idle longer than the TTL now (the cleanup thread does
  // this every session_cleanup_interval). Returns how many.
  uint32_t cleanup_sessions();

  PoolStatus status() const;
  const std::string& name() const;

  // Stops accepting calls, lets in-flight calls finish within `grace`, then
  // SIGTERM and SIGKILL; reaps every worker and removes the segment.
  Status shutdown(std::chrono::milliseconds grace = std::chrono::milliseconds(5000));

  struct State;

 private:
  explicit Pool(std::shared_ptr<State> s);
  std::shared_ptr<State> s_;
};

}  // namespace shmpool
