#include "shmpool/worker.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <optional>

#include "ipc/segment.h"
#include "pool/src/pipe_channel.h"
#include "pool/src/shm_channel.h"
#include "pool/src/stale_segment.h"
#include "pool/src/worker_process.h"
#include "pool/src/worker_setup.h"

namespace shmpool {

std::string_view transport_name(Transport t) { return t == Transport::shm ? "shm" : "pipe_json"; }

std::string_view wait_strategy_name(WaitStrategy w) {
  switch (w) {
    case WaitStrategy::spin:
      return "spin";
    case WaitStrategy::hybrid:
      return "hybrid";
    case WaitStrategy::block:
      return "block";
  }
  return "hybrid";
}

struct Worker::State {
  WorkerOptions opt;
  std::shared_ptr<ipc::Segment> segment;  // before proc: outlives it
  std::shared_ptr<detail::ArenaHandle> arena;
  std::unique_ptr<detail::WorkerProcess> proc;
  std::optional<detail::ShmChannel> shm;
  std::optional<detail::PipeChannel> pipe;
  Reply hello;
  uint64_t next_id = 1;
  bool broken = false;  // killed after a timeout/protocol error, or crashed
  bool stopped = false;
  std::string broken_reason;

  ~State() {
    shm.reset();
    proc.reset();
    if (segment) ipc::Segment::remove(segment->pool_name());
  }
};

namespace {
std::atomic<uint32_t> g_worker_counter{0};
}  // namespace

Expected<std::unique_ptr<Worker>> Worker::start(WorkerOptions opt) {
  if (opt.python.empty()) opt.python = detail::default_python();
  if (opt.name.empty()) {
    // Built by appending to a new string and moved in: GCC 12 at -O3
    // misreads basic_string::_M_replace, which `"w" + std::string` (an
    // insert) and assigning a C string both inline, as an overlapping copy
    // (a false -Wrestrict, GCC bug 105651).
    std::string name(1, 'w');
    name += std::to_string(::getpid());
    name += '-';
    // relaxed: only makes the name unique, orders nothing.
    name += std::to_string(g_worker_counter.fetch_add(1, std::memory_order_relaxed));
    opt.name = std::move(name);
  }
  auto s = std::make_unique<State>();
  ipc::WaitPolicy policy = detail::to_policy(opt.wait, opt.spin);
  detail::SpawnSpec spec;
  spec.python = opt.python;
  spec.python_path = opt.python_path;
  spec.env = detail::worker_env(opt.env, opt.worker_malloc_threshold);
  spec.log = opt.log;
  spec.slot = 0;
  if (opt.transport == Transport::shm) {
    ipc::Geometry g;
    g.slot_count = 1;
    g.request_ring_bytes = opt.request_ring_bytes;
    g.response_ring_bytes = opt.response_ring_bytes;
    g.arena_bytes = detail::arena_bytes_for(opt.payload_arena_bytes);
    auto seg = detail::create_segment(opt.name, g);
    if (!seg.ok()) return seg.error();
    s->segment = std::move(seg.value());
    s->arena = std::make_shared<detail::ArenaHandle>(s->segment);
    ipc::Segment* segment = s->segment.get();
    segment->slot(0).worker_alive.store(
        1, std::memory_order_release);  // pairs with ShmChannel's acquire
    spec.args = detail::shm_worker_args(opt.name, 0, opt.wait, opt.spin, opt.handler_modules);
    spec.on_exit = [segment](const detail::ExitInfo&) {
      detail::mark_worker_gone(*segment, 0);
      segment->arena().reclaim_dead();  // blocks the worker held
    };
  } else {
    spec.pipe_stdio = true;
    spec.args = {"--transport", "pipe-json"};
    for (auto& h : opt.handler_modules) {
      spec.args.push_back("--handlers");
      spec.args.push_back(h);
    }
  }
  auto proc = detail::WorkerProcess::spawn(std::move(spec));
  if (!proc.ok()) return proc.error();
  s->proc = std::move(proc.value());
  if (s->segment) s->segment->slot(0).worker_pid.store(s->proc->pid(), std::memory_order_relaxed);
  const int64_t deadline = ipc::monotonic_ns() + int64_t(opt.startup_timeout.count()) * 1'000'000;
  Expected<Reply> hello = [&]() -> Expected<Reply> {
    if (opt.transport == Transport::shm) {
      s->shm.emplace(s->segment.get(), 0, policy, s->arena);
      return s->shm->await_hello(deadline);
    }
    s->pipe.emplace(s->proc->stdin_fd(), s->proc->stdout_fd());
    return s->pipe->await_hello(deadline);
  }();
  if (!hello.ok()) {
    Error e = detail::startup_error(hello.error(), *s->proc, opt.startup_timeout);
    e.with("transport", std::string(transport_name(opt.transport)));
    return e;
  }
  s->hello = std::move(hello.value());
  s->opt = std::move(opt);
  return std::unique_ptr<Worker>(new Worker(std::move(s)));
}

Worker::Worker(std::unique_ptr<State> s) : s_(std::move(s)) {}

Worker::~Worker() {
  if (s_) stop();
}

Expected<Reply> Worker::call(std::string_view command, const Args& args,
                             std::span<const uint8_t> payload, const CallOptions& options) {
  State& s = *s_;
  if (s.stopped || s.broken) {
    return make_error(Category::worker_error, "worker_unavailable",
                      s.stopped ? "worker was stopped" : "worker was lost: " + s.broken_reason)
        .with("worker_pid", std::to_string(s.proc->pid()));
  }
  detail::CallSpec spec;
  spec.id = s.next_id++;
  spec.session_id = options.session_id;
  spec.command = command;
  spec.args = args;
  spec.payload = payload;
  spec.body = options.body;
  spec.deadline_ns = ipc::monotonic_ns() + int64_t(options.timeout.count()) * 1'000'000;
  spec.payload_in_ring = true;  // until the next call (worker.h)
  Expected<Reply> r = s.shm ? s.shm->call(spec) : s.pipe->call(spec);
  if (r.ok()) return r;
  Error e = r.error();
  e.with("command", std::string(command)).with("worker_pid", std::to_string(s.proc->pid()));
  if (!options.session_id.empty()) e.with("session_id", std::string(options.session_id));
  if (detail::worker_must_be_replaced(e)) {
    detail::finish_failed_worker(e, *s.proc, options.timeout, /*wait_for_exit=*/true);
    s.broken = true;
    s.broken_reason = e.type;
  }
  return e;
}

Status Worker::stop(std::chrono::milliseconds grace) {
  State& s = *s_;
  if (s.stopped) return {};
  s.stopped = true;
  if (s.shm) s.shm->release_held();
  const int64_t deadline = ipc::monotonic_ns() + int64_t(grace.count()) * 1'000'000;
  if (!s.broken && !s.proc->exited()) {
    detail::CallSpec spec;
    spec.id = s.next_id++;
    spec.command = "__shutdown__";
    spec.deadline_ns = deadline;
    (void)(s.shm ? s.shm->call(spec) : s.pipe->call(spec));
  }
  if (!s.proc->wait_exit(deadline)) s.proc->terminate(0);
  if (s.segment) {
    ipc::Segment::remove(s.segment->pool_name());
    s.shm.reset();
    s.segment.reset();
  }
  return {};
}

Expected<PayloadBuffer> Worker::alloc_payload(std::size_t n, std::chrono::milliseconds timeout) {
  return detail::alloc_payload(s_->arena, n,
                               ipc::monotonic_ns() + int64_t(timeout.count()) * 1'000'000,
                               detail::to_policy(s_->opt.wait, s_->opt.spin));
}

pid_t Worker::pid() const { return s_->proc->pid(); }
Transport Worker::transport() const { return s_->opt.transport; }
const std::string& Worker::name() const { return s_->opt.name; }
const Reply& Worker::info() const { return s_->hello; }
std::vector<std::string> Worker::stderr_tail() const { return s_->proc->stderr_tail(); }

}  // namespace shmpool
