#include "bench/grpc_pipeline.h"

namespace shmpool::bench {

GrpcPipeline::GrpcPipeline(int servers, uint32_t slots) : servers_(servers), calls_(slots) {
  for (int i = 0; i < servers; ++i) grpc_server(i);
}

GrpcPipeline::~GrpcPipeline() {
  size_t pending = 0;
  for (Call& c : calls_) {
    if (!c.in_flight) continue;
    c.ctx->TryCancel();
    ++pending;
  }
  void* tag;
  bool ok;
  for (; pending > 0 && cq_.Next(&tag, &ok); --pending) {
  }
  cq_.Shutdown();
  while (cq_.Next(&tag, &ok)) {
  }
}

Status GrpcPipeline::start(uint32_t slot) {
  Call& c = calls_.at(slot);
  c.ctx = std::make_unique<grpc::ClientContext>();
  set_deadline(*c.ctx);
  c.rpc = grpc_server(int(slot) % servers_).stub().AsyncPing(c.ctx.get(), pb::PingRequest(), &cq_);
  c.rpc->Finish(&c.reply, &c.status, reinterpret_cast<void*>(uintptr_t(slot)));
  c.in_flight = true;
  return {};
}

Expected<uint32_t> GrpcPipeline::finish_one() {
  void* tag;
  bool ok;
  if (!cq_.Next(&tag, &ok))
    return make_error(Category::worker_error, "queue_shut_down", "the completion queue closed");
  const uint32_t slot = uint32_t(reinterpret_cast<uintptr_t>(tag));
  Call& c = calls_.at(slot);
  c.in_flight = false;
  if (!ok) return make_error(Category::worker_error, "call_failed", "the call did not finish");
  if (!c.status.ok()) return grpc_error(c.status);
  if (!c.reply.pong()) return make_error(Category::protocol_error, "bad_reply", "no pong");
  return slot;
}

}  // namespace shmpool::bench
