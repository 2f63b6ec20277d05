// Pipelined pings over gRPC's asynchronous API: one CompletionQueue, a call
// per slot, the call of slot s to gRPC server s % servers (grpc_peer.h:
// each server a grpcio process of its own). Each call has a fresh
// ClientContext and the peer's 30 s deadline. One thread.
#pragma once

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "bench/grpc_peer.h"

namespace shmpool::bench {

class GrpcPipeline {
 public:
  // Starts servers 0..servers-1 if they are not up yet.
  GrpcPipeline(int servers, uint32_t slots);
  // Cancels the calls still in flight and drains the queue.
  ~GrpcPipeline();
  GrpcPipeline(const GrpcPipeline&) = delete;
  GrpcPipeline& operator=(const GrpcPipeline&) = delete;

  // Starts a ping in `slot` (a slot not in flight).
  Status start(uint32_t slot);
  // Waits for the next call to finish; returns its slot. Errors: the call
  // failed (its status), or its reply is not a pong.
  Expected<uint32_t> finish_one();

 private:
  struct Call {
    std::unique_ptr<grpc::ClientContext> ctx;
    std::unique_ptr<grpc::ClientAsyncResponseReader<pb::PingReply>> rpc;
    pb::PingReply reply;
    grpc::Status status;
    bool in_flight = false;
  };
  int servers_;
  grpc::CompletionQueue cq_;
  std::vector<Call> calls_;
};

}  // namespace shmpool::bench
