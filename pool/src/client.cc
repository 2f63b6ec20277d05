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
#include "pool/src/caller.h"
#include "pool/src/shm_channel.h"
#include "pool/src/stale_segment.h"
#include "pool/src/worker_setup.h"

namespace shmpool {

namespace {
int64_t ms_to_ns(std::chrono::milliseconds ms) { return int64_t(ms.count()) * 1'000'000; }
}  // namespace

struct Client::State : detail::Caller {
  ClientOptions opt;
  ipc::WaitPolicy policy;
  std::vector<std::unique_ptr<detail::ShmChannel>> channels;  // one per slot; used by its holder
  // Written once by the watcher (release, then the doorbells are rung);
  // read by callers and their ShmChannels (acquire) when a wait ends.
  std::atomic<bool> owner_dead{false};
  int owner_pidfd = -1, stop_fd = -1;
  std::thread watcher;

  ~State() {
    if (watcher.joinable()) {
      uint64_t one = 1;
      (void)!::write(stop_fd, &one, sizeof one);
      watcher.join();
    }
    if (owner_pidfd >= 0) ::close(owner_pidfd);
    if (stop_fd >= 0) ::close(stop_fd);
  }

  uint32_t slot_count() const { return seg->slot_count(); }

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
    for (uint32_t i = 0; i < slot_count(); ++i) seg->slot(i).response.data.ring();
    seg->header().slots_changed.ring();
    ipc::wake_all(seg->header().queue);
    emit({PoolEvent::Kind::pool_lost,
          ipc::monotonic_ns(),
          -1,
          0,
          {},
          "owner " + std::to_string(seg->header().owner_pid) + " died"});
  }

  Error pool_not_available() const {
    return make_error(Category::resource_error, std::string(detail::kPoolNotAvailable),
                      "the pool's owner process has died")
        .with("pool_name", pool_name)
        .with("owner_pid", std::to_string(seg->header().owner_pid));
  }

  bool closing() const {
    return seg->header().pool_state.load(std::memory_order_acquire) ==
           uint32_t(ipc::PoolState::closing);
  }

  // ---- checkout (detail::Caller) ----
  bool checkout_blocked() const override {
    return owner_dead.load(std::memory_order_relaxed) || closing();
  }
  Error checkout_blocked_error() override {
    if (owner_dead.load(std::memory_order_acquire)) return pool_not_available();
    return make_error(Category::resource_error, "pool_shutting_down", "the pool is shutting down");
  }

  Expected<Reply> execute(std::string_view session_id, std::string_view command, const Args& args,
                          const ExecOptions& opt) {
    if (!session_id.empty() && !ipc::valid_session_id(session_id)) {
      return count(
          with_context(make_error(Category::config_error, "invalid_session_id",
                                  "session ids are 1-64 printable ASCII bytes without spaces"),
                       {})
              .with("session_id_length", std::to_string(session_id.size())));
    }
    if (owner_dead.load(std::memory_order_acquire)) {
      return with_context(pool_not_available(), session_id);
    }
    const int64_t t0 = ipc::monotonic_ns();
    const auto checkout_timeout = opt.checkout_timeout.value_or(this->opt.checkout_timeout);
    const auto op_timeout = opt.operation_timeout.value_or(this->opt.operation_timeout);
    auto co = checkout(session_id, opt.affinity, t0 + ms_to_ns(checkout_timeout), checkout_timeout);
    if (!co.ok()) {
      if (co.error().type != detail::kPoolNotAvailable) {
        record_session(session_id, -1, true);
        return count(co.error());
      }
      return co.error();
    }
    const uint32_t i = co->slot;
    ipc::SlotData& sd = seg->slot(i);
    detail::ShmChannel& channel = *channels[i];
    detail::CallSpec spec;
    spec.id = channel.next_request_id();
    spec.session_id = session_id;
    spec.command = command;
    spec.args = args;
    spec.payload = opt.payload;
    spec.body = opt.body;
    // The operation timeout starts now: after the checkout wait, if any.
    spec.deadline_ns = (co->waited ? ipc::monotonic_ns() : t0) + ms_to_ns(op_timeout);
    Expected<Reply> r = channel.call(spec);
    if (r.ok()) r->own_payload();
    channel.release_held();
    sd.last_activity_ns.store(ipc::coarse_monotonic_ns(), std::memory_order_relaxed);
    if (r.ok()) {
      ipc::bump(sd.successes);  // we still hold the slot
      ipc::checkin(*seg, i, co->word);
      record_session(session_id, int32_t(i), false);
      return r;
    }
    ipc::bump(sd.errors);  // we still hold the slot
    const pid_t pid = sd.worker_pid.load(std::memory_order_relaxed);
    if (r.error().type == detail::kPoolNotAvailable) {
      // The owner is gone; its workers follow. Nobody will restart the slot.
      return with_context(r.error(), session_id, int(i), pid);
    }
    Error e = with_context(r.error(), session_id, int(i), pid);
    e.with("command", std::string(command));
    if (detail::worker_must_be_replaced(e)) {
      // Dead, so nobody checks it out again. The owner kills the worker if
      // it still runs (it may answer late), reaps it and starts another:
      // only the owner signals its children, whose pids it alone can trust.
      ipc::release_as(*seg, i, co->word, ipc::SlotState::dead);
    } else {
      ipc::checkin(*seg, i, co->word);
    }
    record_session(session_id, int32_t(i), true);
    return count(std::move(e));
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
  s->on_event = options.on_event;
  s->seg = std::move(seg.value());
  s->arena = std::make_shared<detail::ArenaHandle>(s->seg);
  ipc::SysError err;
  const ipc::SegmentHeader& h = s->seg->header();
  // The pidfd first, then the liveness check: an owner that dies after this
  // point is seen by the watcher.
  s->owner_pidfd = ipc::pidfd_open(h.owner_pid, &err);
  if ((s->owner_pidfd < 0 && err.errnum == ESRCH) ||
      detail::owner_liveness(h) != detail::OwnerLiveness::alive) {
    return s->pool_not_available();
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
  s->self_pid = ::getpid();
  s->token_base = (clients.fetch_add(1) + 1) << 20;
  s->sessions = ipc::SessionTable(s->seg->sessions(), s->seg->geometry().session_capacity,
                                  &s->seg->header().session_lock, s->token_base);
  s->policy = detail::to_policy(options.wait, options.spin);
  s->checkout_policy = s->policy;
  s->checkout_policy.spin_ns = std::min<int64_t>(s->policy.spin_ns, 2'000);
  for (uint32_t i = 0; i < s->slot_count(); ++i) {
    s->channels.push_back(
        std::make_unique<detail::ShmChannel>(s->seg.get(), i, s->policy, s->arena));
    s->channels.back()->set_abandon_flag(&s->owner_dead);
  }
  s->watcher = std::thread([st = s.get()] { st->watch_owner(); });
  return std::unique_ptr<Client>(new Client(std::move(s)));
}

Expected<Reply> Client::execute_in_session(std::string_view session_id, std::string_view command,
                                           const Args& args, const ExecOptions& options) {
  if (session_id.empty()) {
    return s_->count(s_->with_context(
        make_error(Category::config_error, "invalid_session_id", "the session id is empty"), {}));
  }
  return s_->execute(session_id, command, args, options);
}

Expected<Reply> Client::execute_anonymous(std::string_view command, const Args& args,
                                          const ExecOptions& options) {
  return s_->execute({}, command, args, options);
}

std::future<Expected<Reply>> Client::submit(std::string session_id, std::string command, Args args,
                                            ExecOptions options) {
  // A payload in one of our arena blocks is read in place (the caller keeps
  // the PayloadBuffer alive); any other is copied now.
  const bool in_arena = detail::in_own_block(*s_->arena, options.payload);
  auto payload = in_arena ? std::vector<uint8_t>()
                          : std::vector<uint8_t>(options.payload.begin(), options.payload.end());
  auto body = std::vector<uint8_t>(options.body.begin(), options.body.end());
  // std::async's future joins its thread when destroyed; s_ keeps the
  // mapping alive for as long as the call runs.
  return std::async(std::launch::async,
                    [s = s_, session_id = std::move(session_id), command = std::move(command),
                     args = std::move(args), options, payload = std::move(payload),
                     body = std::move(body), in_arena]() mutable {
                      if (!in_arena) options.payload = payload;
                      options.body = body;
                      return s->execute(session_id, command, args, options);
                    });
}

Expected<PayloadBuffer> Client::alloc_payload(std::size_t n, std::chrono::milliseconds timeout) {
  return detail::alloc_payload(
      s_->arena, n, ipc::monotonic_ns() + int64_t(timeout.count()) * 1'000'000, s_->policy);
}

Status Client::end_session(std::string_view session_id) { return s_->end_session(session_id); }

std::optional<SessionInfo> Client::session(std::string_view session_id) const {
  return s_->session(session_id);
}

std::vector<SessionInfo> Client::sessions() const { return s_->list_sessions(); }

Expected<PoolSnapshot> Client::status() const { return detail::snapshot_of(*s_->seg); }

bool Client::pool_available() const { return !s_->owner_dead.load(std::memory_order_acquire); }

const std::string& Client::name() const { return s_->pool_name; }

}  // namespace shmpool
