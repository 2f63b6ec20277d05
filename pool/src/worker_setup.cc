#include "pool/src/worker_setup.h"

#include <signal.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>

#include "pool/src/shm_channel.h"
#include "pool/src/stale_segment.h"

namespace shmpool::detail {

ipc::WaitPolicy to_policy(WaitStrategy w, std::chrono::nanoseconds spin) {
  ipc::WaitPolicy p;
  p.strategy = w == WaitStrategy::spin    ? ipc::WaitStrategy::spin
               : w == WaitStrategy::block ? ipc::WaitStrategy::block
                                          : ipc::WaitStrategy::hybrid;
  p.spin_ns = spin.count();
  return p;
}

Expected<std::unique_ptr<ipc::Segment>> create_segment(const std::string& name,
                                                       const ipc::Geometry& g) {
  std::unique_ptr<ipc::Segment> seg;
  ipc::SysError err;
  ipc::Errc e = ipc::Segment::create(name, g, &seg, &err);
  if (e == ipc::Errc::exists && reclaim_if_stale(name)) {
    e = ipc::Segment::create(name, g, &seg, &err);
  }
  switch (e) {
    case ipc::Errc::ok:
      return seg;
    case ipc::Errc::bad_name:
      return make_error(Category::config_error, "invalid_name",
                        "pool names are 1-64 bytes of [A-Za-z0-9_.-], not starting with '.'")
          .with("pool_name", name);
    case ipc::Errc::exists: {
      int pid = 0;
      segment_owner(name, &pid);
      return make_error(Category::config_error, "name_in_use", "a live pool already uses this name")
          .with("pool_name", name)
          .with("owner_pid", std::to_string(pid));
    }
    case ipc::Errc::bad_layout:
      return make_error(Category::config_error, "invalid_ring_size",
                        "ring sizes must be multiples of 64 between 4 KiB and 2 GiB; 1-1024 slots; "
                        "payload arena up to 64 GiB")
          .with("pool_name", name);
    case ipc::Errc::no_space: {
      ipc::Layout l{};
      ipc::compute_layout(g, &l);
      struct statvfs st {};
      std::string avail = "unknown";
      if (::statvfs("/dev/shm", &st) == 0)
        avail = std::to_string(uint64_t(st.f_bavail) * st.f_frsize);
      return make_error(Category::resource_error, "shm_exhausted",
                        "/dev/shm cannot hold the pool's segment")
          .with("pool_name", name)
          .with("needed_bytes", std::to_string(l.total))
          .with("available_bytes", avail);
    }
    default:
      return make_error(Category::resource_error, "segment_failed", "cannot create the segment")
          .with("pool_name", name)
          .with("reason", err.ok() ? std::string(ipc::errc_name(e)) : err.message());
  }
}

uint64_t arena_bytes_for(std::size_t configured) {
  return (uint64_t(configured) + ipc::kArenaPage - 1) / ipc::kArenaPage * ipc::kArenaPage;
}

std::map<std::string, std::string> worker_env(const std::map<std::string, std::string>& env,
                                              std::size_t malloc_threshold) {
  std::map<std::string, std::string> out = env;
  if (malloc_threshold == 0) return out;
  malloc_threshold = std::min(malloc_threshold, kMaxWorkerMallocThreshold);  // glibc ignores more
  auto set_unless_given = [&](const char* key, uint64_t value) {
    if (out.count(key) || std::getenv(key)) return;
    out[key] = std::to_string(value);
  };
  // A fixed mmap threshold also turns off glibc's dynamic one, which rises
  // only after the first large free and is undone by trimming.
  set_unless_given("MALLOC_MMAP_THRESHOLD_", malloc_threshold);
  set_unless_given("MALLOC_TRIM_THRESHOLD_", uint64_t(malloc_threshold) * 8);
  return out;
}

std::vector<std::string> shm_worker_args(const std::string& pool, uint32_t slot, WaitStrategy w,
                                         std::chrono::nanoseconds spin,
                                         const std::vector<std::string>& handler_modules) {
  std::vector<std::string> a = {"--transport",     "shm",
                                "--pool",          pool,
                                "--slot",          std::to_string(slot),
                                "--owner-pid",     std::to_string(::getpid()),
                                "--wait-strategy", std::string(wait_strategy_name(w)),
                                "--spin-ns",       std::to_string(spin.count())};
  for (auto& h : handler_modules) {
    a.push_back("--handlers");
    a.push_back(h);
  }
  return a;
}

void mark_worker_gone(ipc::Segment& segment, uint32_t slot) {
  ipc::SlotData& s = segment.slot(slot);
  s.worker_alive.store(0, std::memory_order_release);  // pairs with the acquire in ShmChannel
  s.response.data.ring();
  // Async callers sleep on their process's completion bell, not on the ring.
  for (ipc::WaiterCount& w : segment.header().queue.waiters.by_process) w.completions.ring();
}

namespace {
void add_exit_context(Error& e, WorkerProcess& proc) {
  if (auto info = proc.exit_info()) {
    if (info->signal) {
      e.with("exit_signal", std::to_string(info->signal));
    } else {
      e.with("exit_code", std::to_string(info->exit_code));
    }
    e.with("exit", info->describe());
  }
  std::string tail = proc.stderr_tail_text();
  if (!tail.empty()) e.with("stderr_tail", tail);
  e.with("worker_pid", std::to_string(proc.pid()));
}
}  // namespace

Error startup_error(const Error& e, WorkerProcess& proc, std::chrono::milliseconds timeout) {
  const bool exited = e.type == kWorkerGone && proc.wait_exit(ipc::monotonic_ns() + 2'000'000'000);
  proc.terminate(0);
  Error out;
  if (exited) {
    out = make_error(Category::worker_error, "startup_failed",
                     "worker exited during startup (" + proc.exit_info()->describe() + ")");
  } else if (e.category == Category::timeout_error) {
    out = make_error(Category::timeout_error, "startup_timeout", "worker was not ready in time")
              .with("startup_timeout_ms", std::to_string(timeout.count()));
  } else {
    out = e;
  }
  add_exit_context(out, proc);
  return out;
}

void finish_failed_worker(Error& e, WorkerProcess& proc, std::chrono::milliseconds timeout,
                          bool wait_for_exit) {
  if (e.type == kOperationTimeout) e.with("timeout_ms", std::to_string(timeout.count()));
  const bool killed = e.type != kWorkerGone && !proc.exited();
  if (killed) proc.kill(SIGKILL);
  // Death was seen through the pidfd, so the reap is imminent.
  if (wait_for_exit) proc.wait_exit(ipc::monotonic_ns() + 2'000'000'000);
  if (killed && !proc.exited()) {
    // SIGKILL cannot be caught: this is how it ends.
    e.with("exit_signal", std::to_string(SIGKILL)).with("exit", "killed by SIGKILL");
  }
  add_exit_context(e, proc);
}

}  // namespace shmpool::detail
