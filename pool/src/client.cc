// A process that calls a pool it does not own. Same slot table, rings and
// session table as the owner; no supervision (the owner does that). A
// watcher thread holds a pidfd on the owner: when the owner dies, every wait
// of this client is woken and fails with pool_not_available.
#include "shmpool/client.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cstring>
#include <mutex>
#include <thread>

#include "ipc/segment.h"
#include "ipc/session_table.h"
#include "ipc/slot_table.h"
#include "pool/src/call_path.h"
#include "pool/src/shm_channel.h"
#include "pool/src/stale_segment.h"
#include "pool/src/worker_setup.h"

namespace shmpool {

namespace {

// A guest's part on the call path: it refuses calls once the owner died,
// and stops waiting for a worker when the owner died or the pool closes.
// Failed workers are the owner's to kill (it alone can trust its children's
// pids): a guest only releases their slot dead.
class GuestRole final : public detail::CallRole {
 public:
  GuestRole(const ipc::Segment& seg, const std::atomic<bool>& owner_dead, std::string pool_name)
      : seg_(seg), owner_dead_(owner_dead), pool_name_(std::move(pool_name)) {}

  std::optional<Error> refuse() const override {
    if (!owner_dead_.load(std::memory_order_acquire)) return std::nullopt;
    return pool_not_available();
  }
  bool checkout_blocked() const override {
    return owner_dead_.load(std::memory_order_relaxed) || closing();
  }
  Error blocked_error() const override {
    if (owner_dead_.load(std::memory_order_acquire)) return pool_not_available();
    return make_error(Category::resource_error, "pool_shutting_down", "the pool is shutting down");
  }

  Error pool_not_available() const {
    return make_error(Category::resource_error, std::string(detail::kPoolNotAvailable),
                      "the pool's owner process has died")
        .with("pool_name", pool_name_)
        .with("owner_pid", std::to_string(seg_.header().owner_pid));
  }

 private:
  bool closing() const {
    return seg_.header().pool_state.load(std::memory_order_acquire) ==
           uint32_t(ipc::PoolState::closing);
  }
  const ipc::Segment& seg_;
  const std::atomic<bool>& owner_dead_;
  std::string pool_name_;
};

}  // namespace

struct Client::State {
  std::string pool_name;
  ClientOptions opt;
  std::shared_ptr<ipc::Segment> seg;
  std::shared_ptr<detail::ArenaHandle> arena;
  ipc::WaitPolicy policy;
  // Written once by the watcher (release, then the doorbells are rung);
  // read by callers and their channels (acquire) when a wait ends.
  std::atomic<bool> owner_dead{false};
  std::unique_ptr<GuestRole> role;
  std::unique_ptr<detail::CallPath> calls;
  int owner_pidfd = -1, stop_fd = -1;
  std::thread watcher;

  ~State() {
    // Async calls still in flight end before the mapping goes.
    if (calls) {
      calls->stop_async(make_error(Category::resource_error, std::string(detail::kPoolNotAvailable),
                                   "the Client was destroyed before the call ended")
                            .with("pool_name", pool_name));
    }
    if (watcher.joinable()) {
      uint64_t one = 1;
      (void)!::write(stop_fd, &one, sizeof one);
      watcher.join();
    }
    if (owner_pidfd >= 0) ::close(owner_pidfd);
    if (stop_fd >= 0) ::close(stop_fd);
  }

  // The owner died: wake every wait of ours (reply waits on the response
  // doorbells, checkout waits on slots_changed).
  void watch_owner() {
    pollfd fds[2] = {{owner_pidfd, POLLIN, 0}, {stop_fd, POLLIN, 0}};
    for (;;) {
      int n = ipc::retry_eintr([&] { return ::poll(fds, 2, 100); });
      if (n > 0 && (fds[1].revents & POLLIN)) return;  // stopping
      if (n > 0 && (fds[0].revents & POLLIN)) break;   // the owner exited
      // A poll error (never expected) degrades to checking every 100 ms.
      if (n < 0 && detail::owner_liveness(seg->header()) == detail::OwnerLiveness::dead) break;
    }
    owner_dead.store(true, std::memory_order_release);
    calls->wake_async();
    for (uint32_t i = 0; i < seg->slot_count(); ++i) seg->slot(i).response.data.ring();
    seg->header().slots_changed.ring();
    ipc::wake_all(seg->header().queue);
    detail::emit_event(opt.on_event,
                       {PoolEvent::Kind::pool_lost,
                        ipc::monotonic_ns(),
                        -1,
                        0,
                        {},
                        "owner " + std::to_string(seg->header().owner_pid) + " died"});
  }
};

Client::Client(std::shared_ptr<State> s) : s_(std::move(s)) {}
Client::~Client() = default;

Expected<std::unique_ptr<Client>> Client::attach(std::string_view pool_name,
                                                 ClientOptions options) {
  auto seg = detail::attach_segment(pool_name, ipc::Segment::Access::read_write);
  if (!seg.ok()) return seg.error();
  auto s = std::make_shared<State>();
  s->pool_name = std::string(pool_name);
  s->opt = options;
  s->seg = std::move(seg.value());
  s->arena = std::make_shared<detail::ArenaHandle>(s->seg);
  s->role = std::make_unique<GuestRole>(*s->seg, s->owner_dead, s->pool_name);
  ipc::SysError err;
  const ipc::SegmentHeader& h = s->seg->header();
  // The pidfd first, then the liveness check: an owner that dies after this
  // point is seen by the watcher.
  s->owner_pidfd = ipc::pidfd_open(h.owner_pid, &err);
  if ((s->owner_pidfd < 0 && err.errnum == ESRCH) ||
      detail::owner_liveness(h) != detail::OwnerLiveness::alive) {
    return s->role->pool_not_available();
  }
  if (s->owner_pidfd < 0) {
    return make_error(Category::resource_error, "attach_failed", "cannot watch the pool's owner")
        .with("pool_name", s->pool_name)
        .with("reason", err.message());
  }
  if (h.pool_state.load(std::memory_order_acquire) != uint32_t(ipc::PoolState::ready)) {
    return make_error(Category::resource_error, std::string(detail::kPoolNotAvailable),
                      "the pool is starting or shutting down")
        .with("pool_name", s->pool_name);
  }
  s->stop_fd = ::eventfd(0, EFD_CLOEXEC);
  if (s->stop_fd < 0) {
    return make_error(Category::resource_error, "attach_failed", "eventfd failed")
        .with("errno", std::strerror(errno));
  }
  // Session-lock and checkout tokens: this process's pid is in the high
  // half already; the base keeps two Clients in one process apart.
  static std::atomic<uint32_t> clients{0};
  detail::CallSettings cs;
  cs.pool_name = s->pool_name;
  cs.self_pid = ::getpid();
  cs.token_base = (clients.fetch_add(1, std::memory_order_relaxed) + 1) << 20;  // only unique
  cs.policy = detail::to_policy(options.wait, options.spin);
  cs.checkout_policy = cs.policy;
  cs.checkout_policy.spin_ns = std::min<int64_t>(cs.policy.spin_ns, 2'000);
  cs.checkout_timeout = options.checkout_timeout;
  cs.operation_timeout = options.operation_timeout;
  cs.cancel_grace = options.cancel_grace;
  cs.on_event = options.on_event;
  s->policy = cs.policy;
  const ipc::SessionTable sessions(s->seg->sessions(), s->seg->geometry().session_capacity,
                                   &s->seg->header().session_lock, cs.token_base);
  s->calls = std::make_unique<detail::CallPath>(s->seg, s->arena, sessions, std::move(cs), *s->role,
                                                &s->owner_dead);
  s->watcher = std::thread([st = s.get()] { st->watch_owner(); });
  return std::unique_ptr<Client>(new Client(std::move(s)));
}

Expected<Reply> Client::execute_in_session(std::string_view session_id, std::string_view command,
                                           const Args& args, const ExecOptions& options) {
  return s_->calls->execute_in_session(session_id, command, args, options);
}

Expected<Reply> Client::execute_anonymous(std::string_view command, const Args& args,
                                          const ExecOptions& options) {
  return s_->calls->execute({}, command, args, options);
}

std::future<Expected<Reply>> Client::submit(std::string session_id, std::string command, Args args,
                                            ExecOptions options) {
  return s_->calls->submit(session_id, command, args, options);
}

Call Client::call_async(std::string_view session_id, std::string_view command, const Args& args,
                        const ExecOptions& options, CompletionCallback on_complete) {
  return s_->calls->call_async(session_id, command, args, options, std::move(on_complete));
}

Stream Client::stream(std::string_view session_id, std::string_view command, const Args& args,
                      const ExecOptions& options) {
  return s_->calls->stream(session_id, command, args, options);
}

int Client::completion_fd() { return s_->calls->completion_fd(); }

Expected<PayloadBuffer> Client::alloc_payload(std::size_t n, std::chrono::milliseconds timeout) {
  return detail::alloc_payload(
      s_->arena, n, ipc::monotonic_ns() + int64_t(timeout.count()) * 1'000'000, s_->policy);
}

Status Client::end_session(std::string_view session_id) {
  return s_->calls->end_session(session_id);
}

std::optional<SessionInfo> Client::session(std::string_view session_id) const {
  return s_->calls->session(session_id);
}

std::vector<SessionInfo> Client::sessions() const { return s_->calls->list_sessions(); }

Expected<PoolSnapshot> Client::status() const { return detail::snapshot_of(*s_->seg); }

bool Client::pool_available() const { return !s_->owner_dead.load(std::memory_order_acquire); }

const std::string& Client::name() const { return s_->pool_name; }

}  // namespace shmpool
