// The gRPC peer's unary cases (grpc_peer.h), rows of the worker cases'
// table beside shm, pipe-JSON and ZeroMQ: BM_Ping/grpc, BM_SmallArgs/grpc,
// BM_PayloadEcho/grpc/<size>, timed and checked as the others (timing.h),
// one blocking call at a time from the benchmark's main thread.
#include <benchmark/benchmark.h>

#include <string>

#include "bench/calls.h"
#include "bench/cases.h"
#include "bench/grpc_peer.h"
#include "bench/peers.h"
#include "bench/timing.h"

namespace shmpool::bench {
namespace {

using Stub = pb::BenchPeer::Stub;

void ping(benchmark::State& state) {
  timed_calls(
      state, [] { return grpc_call(&Stub::Ping, pb::PingRequest()); },
      [](const pb::PingReply& r) { return r.pong() ? nullptr : "no pong"; });
}

// The small-args case's map (calls.h) as the message SmallArgs echoes.
pb::SmallArgsMessage small_args_message() {
  const Args args = small_args_map();
  const auto m = flexbuffers::GetRoot(args.data(), args.size()).AsMap();
  pb::SmallArgsMessage msg;
  msg.set_id(m["id"].AsInt64());
  msg.set_score(m["score"].AsDouble());
  msg.set_name(m["name"].AsString().str());
  msg.set_flag(m["flag"].AsBool());
  const auto tags = m["tags"].AsVector();
  for (size_t i = 0; i < tags.size(); ++i) msg.add_tags(tags[i].AsString().str());
  return msg;
}

void small_args(benchmark::State& state) {
  const pb::SmallArgsMessage args = small_args_message();
  const std::string sent = args.SerializeAsString();
  timed_calls(
      state, [&] { return grpc_call(&Stub::SmallArgs, args); },
      [&](const pb::SmallArgsMessage& r) {
        return r.SerializeAsString() == sent ? nullptr : "echo mismatch";
      });
}

// The payload echoed back by Python.
void payload_echo(benchmark::State& state, size_t n) {
  pb::Payload payload;
  payload.set_data(std::string(n, '\x5a'));
  timed_calls(
      state, [&] { return grpc_call(&Stub::Echo, payload); },
      [&](const pb::Payload& r) {
        return r.data().size() == n && (n == 0 || r.data()[n - 1] == '\x5a') ? nullptr
                                                                             : "echo mismatch";
      });
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(n) * 2);
}

}  // namespace

void register_grpc_cases() {
  // As the worker cases of the same names (worker_cases.cc).
  add_case(case_name("BM_Ping", Peer::grpc), ping)->UseManualTime()->Repetitions(5);
  add_case(case_name("BM_SmallArgs", Peer::grpc), small_args)->UseManualTime();
  for (int64_t n : kPayloadSizes)
    add_case(case_name("BM_PayloadEcho", Peer::grpc, {size_label(n)}, n), [n](auto& s) {
      payload_echo(s, size_t(n));
    })->UseManualTime();
}

}  // namespace shmpool::bench
