// The gRPC peer: bench_peer.proto's BenchPeer served by bench/grpc_server.py
// (grpcio, kGrpcServerThreads handler threads) on a UNIX socket of its own,
// unix:/tmp/shmpool-bench-<pid>-grpc-<index>.sock, called through the
// generated C++ stub over one channel per server. Server `index` starts on
// first use (grpc_server), ready once a Ping answered, and stops when the
// benchmark exits (SIGTERM, reaped, its socket unlinked); a benchmark that
// dies takes it along (--owner-pid). A server that cannot start exits the
// benchmark with a message. grpc_server() from the benchmark's main thread
// (it starts servers); a server's stub from any thread.
#pragma once

#include <grpcpp/grpcpp.h>
#include <sys/types.h>

#include <memory>
#include <string>

#include "bench_peer.grpc.pb.h"
#include "shmpool/error.h"

namespace shmpool::bench {

// grpcio's handler threads per server process: one, so that a server
// process stands for one worker, as a shm or ZeroMQ worker does (2, 4 and
// 16 threads measured no faster, pipelined or not: the GIL runs one handler
// at a time, and the process is CPU-bound).
inline constexpr int kGrpcServerThreads = 1;

class GrpcServerProcess {
 public:
  explicit GrpcServerProcess(int index);
  ~GrpcServerProcess();
  GrpcServerProcess(const GrpcServerProcess&) = delete;
  GrpcServerProcess& operator=(const GrpcServerProcess&) = delete;
  pb::BenchPeer::Stub& stub() { return *stub_; }

 private:
  void stop();  // SIGTERM, reap, unlink the socket

  std::string path_;
  pid_t pid_ = 0;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<pb::BenchPeer::Stub> stub_;
};

// Server 0 serves every gRPC case; BM_Pipelined/grpc/.../workers:2 adds server 1.
inline constexpr int kGrpcServers = 2;
GrpcServerProcess& grpc_server(int index = 0);

// A failed call's status as an Error (worker_error/grpc_<code>).
Error grpc_error(const grpc::Status& status);

// Every call's deadline: 30 s, as the ZeroMQ peer's receive timeout.
void set_deadline(grpc::ClientContext& ctx);

// One unary call on server 0, with a fresh ClientContext (as a gRPC client
// makes each call): grpc_call(&pb::BenchPeer::Stub::Ping, pb::PingRequest()).
template <class Reply, class Request>
Expected<Reply> grpc_call(grpc::Status (pb::BenchPeer::Stub::*method)(grpc::ClientContext*,
                                                                      const Request&, Reply*),
                          const Request& request) {
  grpc::ClientContext ctx;
  set_deadline(ctx);
  Reply reply;
  if (grpc::Status s = (grpc_server().stub().*method)(&ctx, request, &reply); !s.ok())
    return grpc_error(s);
  return reply;
}

}  // namespace shmpool::bench
