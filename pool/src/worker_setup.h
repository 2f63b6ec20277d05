// worker_setup.h: the steps Worker and Pool share to create a segment, start
// a worker in a slot, and turn its failures into structured errors.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ipc/segment.h"
#include "pool/src/arena_handle.h"
#include "pool/src/worker_process.h"
#include "shmpool/error.h"
#include "shmpool/worker.h"

namespace shmpool::detail {

ipc::WaitPolicy to_policy(WaitStrategy w, std::chrono::nanoseconds spin);

// Creates the segment, reclaiming a stale one left by a dead owner.
// config_error/invalid_name, config_error/name_in_use (live owner),
// config_error/invalid_ring_size, resource_error/shm_exhausted (with the
// needed and available bytes).
Expected<std::unique_ptr<ipc::Segment>> create_segment(const std::string& name,
                                                       const ipc::Geometry& g);

// A configured arena size rounded up to whole arena pages.
uint64_t arena_bytes_for(std::size_t configured);

// The environment a worker gets on top of ours: `env`, plus the malloc
// settings for `malloc_threshold` (0: none) unless `env` or our own
// environment sets them.
std::map<std::string, std::string> worker_env(const std::map<std::string, std::string>& env,
                                              std::size_t malloc_threshold);

std::vector<std::string> shm_worker_args(const std::string& pool, uint32_t slot, WaitStrategy w,
                                         std::chrono::nanoseconds spin,
                                         const std::vector<std::string>& handler_modules);

// Owner side, after the worker in `slot` exited: wakes a client waiting on it.
void mark_worker_gone(ipc::Segment& segment, uint32_t slot);

// Startup failed with `e`: kills the worker and returns worker_error/
// startup_failed (it exited; exit status and stderr tail in context) or
// timeout_error/startup_timeout.
Error startup_error(const Error& e, WorkerProcess& proc, std::chrono::milliseconds timeout);

// Kills the worker if it still runs (so a late reply cannot reach anyone)
// and adds its exit status and stderr tail to `e`. With `wait_for_exit`
// it waits (2 s at most) for the reap; without, the call returns at once,
// and a worker it killed is reported as killed by SIGKILL.
void finish_failed_worker(Error& e, WorkerProcess& proc, std::chrono::milliseconds timeout,
                          bool wait_for_exit);

}  // namespace shmpool::detail
