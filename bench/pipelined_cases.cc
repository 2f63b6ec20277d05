// Pipelined calls: ONE host thread keeps kInFlight pings in flight, sending
// a new one as each reply arrives, on the peers' asynchronous APIs:
//   BM_Pipelined/zmq/inflight:64/workers:N    one DEALER socket to N ZeroMQ
//       workers (the ZeroMQ pool's worker processes; zmq_pipeline.h)
//   BM_Pipelined/grpc/inflight:64/workers:N   a CompletionQueue, the calls
//       dealt round-robin to N grpcio server processes of one handler thread
//       each (grpc_pipeline.h): workers are processes for both peers
// (BM_Pipelined/shm, over Pool::call_async, is in async_cases.cc.) calls/s
// is items_per_second over real time: the replies that arrived while the
// loop ran. Every reply is checked (a pong, of a call in flight). Not
// timed: the peers' start, a warm-up round (kInFlight calls out and back),
// filling the pipeline before the loop and draining it after.
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "bench/grpc_pipeline.h"
#include "bench/peers.h"
#include "bench/timing.h"
#include "bench/zmq_pipeline.h"

namespace shmpool::bench {
namespace {

constexpr uint32_t kInFlight = 64;

// Starts a call in every slot.
template <class Pipeline>
Status fill(Pipeline& p) {
  for (uint32_t s = 0; s < kInFlight; ++s)
    if (Status st = p.start(s); !st.ok()) return st;
  return {};
}

// Waits for the reply of every slot.
template <class Pipeline>
Status drain(Pipeline& p) {
  for (uint32_t s = 0; s < kInFlight; ++s)
    if (auto done = p.finish_one(); !done.ok()) return done.error();
  return {};
}

template <class Pipeline>
void pipelined(benchmark::State& state, Pipeline& p) {
  if (Status s = fill(p); !s.ok()) return (void)fail(state, s.error());
  if (Status s = drain(p); !s.ok()) return (void)fail(state, s.error());  // warm-up
  if (Status s = fill(p); !s.ok()) return (void)fail(state, s.error());
  for (auto _ : state) {
    auto done = p.finish_one();
    if (!done.ok()) return (void)fail(state, done.error());
    if (Status s = p.start(*done); !s.ok()) return (void)fail(state, s.error());
  }
  if (Status s = drain(p); !s.ok()) return (void)fail(state, s.error());
  state.SetItemsProcessed(int64_t(state.iterations()));
}

void zmq_pipelined(benchmark::State& state, uint32_t workers) {
  std::vector<std::string> endpoints;
  for (uint32_t i = 0; i < workers; ++i) endpoints.push_back(zmq_pool_endpoint(i));
  ZmqPipeline p(endpoints, kInFlight);
  pipelined(state, p);
}

void grpc_pipelined(benchmark::State& state, uint32_t workers) {
  GrpcPipeline p(int(workers), kInFlight);
  pipelined(state, p);
}

}  // namespace

void register_pipelined_cases() {
  static_assert(kPoolSize >= 2 && kGrpcServers >= 2, "workers:2 needs two worker processes");
  for (Peer p : {Peer::zmq, Peer::grpc})
    for (uint32_t workers : {1u, 2u})
      add_case(case_name(
                   "BM_Pipelined", p,
                   {"inflight:" + std::to_string(kInFlight), "workers:" + std::to_string(workers)}),
               [p, workers](auto& s) {
                 p == Peer::zmq ? zmq_pipelined(s, workers) : grpc_pipelined(s, workers);
               })
          ->UseRealTime();
}

}  // namespace shmpool::bench
