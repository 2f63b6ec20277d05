// client.h: call a pool served by another process. Several independent
// processes share one pool's workers through its shared segment alone (no
// socket, no broker): they check workers out of the same lock-free slot
// table as the owner, and the owner keeps supervising the workers.
//
//   auto client = shmpool::Client::attach("models");   // same user as the owner
//   auto r = (*client)->execute_in_session("user-42", "add", args);
//
// What a dead process leaves behind:
//  - A client that dies holding a worker (mid-call or right after checkout):
//    the slot's state word names the holder's pid (set by the checkout CAS);
//    the owner's supervisor sees that process gone on two passes in a row
//    (passes run every 20 ms or sooner) and replaces the worker; the slot is
//    back within a worker start. Clients must share the owner's pid namespace.
//  - The owner dies: its workers exit by themselves (they watch the owner),
//    and every client call, waiting for a worker or for its reply, or new,
//    fails at once with resource_error/pool_not_available. (A call still
//    waiting for room in a full request ring waits until its operation
//    timeout.) A new owner can then reclaim the name.
//  - Sessions recorded by clients are timestamped with CLOCK_MONOTONIC; an
//    owner configured with a custom PoolConfig::clock expires them by its own.
// Thread-safe: any number of threads may call one Client.
#pragma once

#include <chrono>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "shmpool/error.h"
#include "shmpool/inspect.h"
#include "shmpool/pool.h"
#include "shmpool/value.h"
#include "shmpool/worker.h"

namespace shmpool {

struct ClientOptions {
  std::chrono::milliseconds checkout_timeout{5'000};    // per call, unless ExecOptions says
  std::chrono::milliseconds operation_timeout{30'000};  // per call, unless ExecOptions says
  std::chrono::milliseconds cancel_grace{1'000};        // per call, unless ExecOptions says
  WaitStrategy wait = WaitStrategy::hybrid;
  std::chrono::nanoseconds spin{50'000};
  // This client's events: call_timed_out, session_created (sessions this
  // client created), session_ended, pool_lost. Worker events go to the owner.
  EventCallback on_event;
};

class Client {
 public:
  // Maps the pool's segment and checks magic, version and layout.
  // resource_error/unknown_pool (no such pool), resource_error/pool_not_available
  // (its owner is dead or it is shutting down), protocol_error/bad_segment,
  // resource_error/permission_denied, config_error/invalid_name.
  static Expected<std::unique_ptr<Client>> attach(std::string_view pool_name,
                                                  ClientOptions options = {});
  ~Client();  // async calls still in flight end with pool_not_available
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // As Pool's. Errors carry context {pool_name, session_id, slot, worker_pid,
  // command} like the owner's, and are counted in the pool's statistics.
  Expected<Reply> execute_in_session(std::string_view session_id, std::string_view command,
                                     const Args& args = empty_args(),
                                     const ExecOptions& options = {});
  Expected<Reply> execute_anonymous(std::string_view command, const Args& args = empty_args(),
                                    const ExecOptions& options = {});
  // As Pool's: call_async() as a std::future.
  std::future<Expected<Reply>> submit(std::string session_id, std::string command,
                                      Args args = empty_args(), ExecOptions options = {});
  // As Pool's (call.h). When the owner dies, calls and streams in flight
  // end with resource_error/pool_not_available.
  Call call_async(std::string_view session_id, std::string_view command,
                  const Args& args = empty_args(), const ExecOptions& options = {},
                  CompletionCallback on_complete = {});
  Stream stream(std::string_view session_id, std::string_view command,
                const Args& args = empty_args(), const ExecOptions& options = {});
  int completion_fd();

  // As Pool::alloc_payload, in the same arena (blocks are held by this
  // process; the owner reclaims them if it dies).
  Expected<PayloadBuffer> alloc_payload(
      std::size_t n, std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));

  Status end_session(std::string_view session_id);
  std::optional<SessionInfo> session(std::string_view session_id) const;
  std::vector<SessionInfo> sessions() const;
  // The pool as this client's mapping of its segment shows it (see inspect.h).
  Expected<PoolSnapshot> status() const;
  // False once the owner process has died.
  bool pool_available() const;
  const std::string& name() const;

 private:
  struct State;
  explicit Client(std::shared_ptr<State> s);
  std::shared_ptr<State> s_;
};

}  // namespace shmpool
