#include "bench/grpc_peer.h"

#include <signal.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "bench/python_process.h"

namespace shmpool::bench {

GrpcServerProcess::GrpcServerProcess(int index) {
  path_ = "/tmp/shmpool-bench-" + std::to_string(::getpid()) + "-grpc-" + std::to_string(index) +
          ".sock";
  const std::string address = "unix:" + path_;
  pid_ =
      spawn_python({SHMPOOL_BENCH_DIR "/grpc_server.py", "--address", address, "--generated",
                    SHMPOOL_BENCH_GENERATED_DIR, "--threads", std::to_string(kGrpcServerThreads)});
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);  // payloads and chunks beyond the default 4 MiB
  // Until the server listens, retry every 20 ms rather than after gRPC's 1 s backoff.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 20);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 20);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 100);
  channel_ = grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
  stub_ = pb::BenchPeer::NewStub(channel_);
  grpc::ClientContext ctx;
  set_deadline(ctx);
  ctx.set_wait_for_ready(true);  // the first Ping waits for the server to listen
  pb::PingReply pong;
  const grpc::Status s = stub_->Ping(&ctx, pb::PingRequest(), &pong);
  if (!s.ok() || !pong.pong()) {
    std::fprintf(stderr, "gRPC peer: %s\n", s.ok() ? "no pong" : grpc_error(s).to_string().c_str());
    stop();
    std::exit(1);
  }
}

GrpcServerProcess::~GrpcServerProcess() { stop(); }

void GrpcServerProcess::stop() {
  stub_.reset();
  channel_.reset();
  ::kill(pid_, SIGTERM);
  reap(pid_);
  ::unlink(path_.c_str());
}

GrpcServerProcess& grpc_server(int index) {
  static std::array<std::unique_ptr<GrpcServerProcess>, kGrpcServers> servers;
  auto& s = servers.at(size_t(index));
  if (!s) s = std::make_unique<GrpcServerProcess>(index);
  return *s;
}

Error grpc_error(const grpc::Status& status) {
  return make_error(Category::worker_error, "grpc_" + std::to_string(int(status.error_code())),
                    status.error_message());
}

void set_deadline(grpc::ClientContext& ctx) {
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
}

}  // namespace shmpool::bench
