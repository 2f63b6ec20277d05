// One worker per transport, called from the benchmark's main thread; every
// timed call's reply is checked (timing.h).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "bench/calls.h"
#include "bench/case_names.h"
#include "bench/cases.h"
#include "bench/peers.h"
#include "bench/timing.h"

namespace shmpool::bench {
namespace {

constexpr int64_t kCold = 1000;  // us a cold caller idles before each call

void ping(benchmark::State& state, Peer p, int64_t idle_us) {
  timed_calls(
      state, [&] { return call_worker(p, "ping"); }, pong, idle_us);
}

void small_args(benchmark::State& state, Peer p, int64_t idle_us) {
  const Args args = small_args_map();
  timed_calls(
      state, [&] { return call_worker(p, "echo", args); }, small_args_echoed, idle_us);
}

// The payload handed to Python, which acknowledges it (returns its length).
void payload_to_python(benchmark::State& state, Peer p, size_t n, int64_t idle_us) {
  std::vector<uint8_t> payload(n, 0x5a);
  timed_calls(
      state, [&] { return call_worker(p, "ack", empty_args(), payload); }, acked(n), idle_us);
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(n));
}

// The payload echoed back by Python.
void payload_echo(benchmark::State& state, Peer p, size_t n) {
  std::vector<uint8_t> payload(n, 0x5a);
  timed_calls(
      state, [&] { return call_worker(p, "echo", empty_args(), payload); },
      [&](const Reply& r) {
        return r.payload().size() == n && (n == 0 || r.payload()[n - 1] == 0x5a) ? nullptr
                                                                                 : "echo mismatch";
      });
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(n) * 2);
}

// Bulk payloads (issue: zero-copy payloads), three ways to hand them over:
// shm in place (filled once in a PayloadBuffer, each call passes it: no
// copy), shm copy (from the caller's own memory: one copy into the arena),
// and pipe_json (base64 in JSON), beside ZeroMQ. Three things Python does
// with them: ack (returns the length), echo (copies it into
// ctx.alloc_output, returned in place) and numpy_sum
// (numpy.frombuffer(...).sum()).
const char* const kBulkModeNames[] = {"in_place", "copy", "pipe_json", "zmq"};
const char* const kBulkOpNames[] = {"ack", "echo", "numpy_sum"};

void bulk(benchmark::State& state, BulkMode mode, BulkOp op, size_t n) {
  const Peer peer = mode == kPipe ? Peer::pipe_json : mode == kZmqBulk ? Peer::zmq : Peer::shm;
  std::vector<uint8_t> data(n);
  const double one = 1.0;
  for (size_t i = 0; i + sizeof one <= n; i += sizeof one) std::memcpy(&data[i], &one, sizeof one);
  std::span<const uint8_t> payload = data;
  PayloadBuffer buf;
  if (mode == kInPlace) {
    auto b = worker(Transport::shm).alloc_payload(n);
    if (!b.ok()) return (void)fail(state, b.error());
    buf = std::move(b.value());
    std::memcpy(buf.begin(), data.data(), n);
    payload = buf.data();
  }
  const char* command = kBulkOpNames[op];
  timed_calls(
      state, [&] { return call_worker(peer, command, empty_args(), payload); },
      [&](const Reply& r) -> const char* {
        if (op == kAck && r.value().AsMap()["bytes"].AsUInt64() != n) return "wrong length";
        if (op == kEcho &&
            (r.payload().size() != n || !std::equal(data.begin(), data.end(), r.payload().begin())))
          return "echo mismatch";
        if (op == kNumpySum && r.value().AsMap()["sum"].AsDouble() != double(n / sizeof one))
          return "wrong sum";
        return nullptr;
      });
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(n) * (op == kEcho ? 2 : 1));
}

// The machine's memcpy of the same sizes, in the same run (the bar for echo).
void memcpy_case(benchmark::State& state, size_t n) {
  std::vector<uint8_t> src(n, 0x5a), dst(n, 0);
  std::vector<double> lat;
  for (auto _ : state) {
    auto t0 = Clock::now();
    std::memcpy(dst.data(), src.data(), n);
    benchmark::ClobberMemory();
    auto t1 = Clock::now();
    double s = std::chrono::duration<double>(t1 - t0).count();
    state.SetIterationTime(s);
    lat.push_back(s * 1e6);
  }
  if (dst.front() != 0x5a || dst.back() != 0x5a) state.SkipWithError("memcpy did not copy");
  std::sort(lat.begin(), lat.end());
  if (!lat.empty()) state.counters["p50_us"] = lat[lat.size() / 2];
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(n));
}

// Spawn to ready: Worker::start until the worker's hello arrived.
void worker_startup(benchmark::State& state, Transport t) {
  for (auto _ : state) {
    WorkerOptions o;
    o.transport = t;
    auto t0 = Clock::now();
    auto w = Worker::start(o);
    auto t1 = Clock::now();
    if (!w.ok()) {
      fail(state, w.error());
      return;
    }
    state.SetIterationTime(std::chrono::duration<double>(t1 - t0).count());
    (*w)->stop();
  }
}

}  // namespace

void register_worker_cases() {
  // The headline ratios: 5 repetitions each, the tables take the median p50.
  for (Peer p : kPeers)
    add_case(case_name("BM_Ping", p), [p](auto& s) { ping(s, p, 0); })
        ->UseManualTime()
        ->Repetitions(5);
  for (Peer p : kPeers)
    add_case(case_name("BM_PingCold", p), [p](auto& s) { ping(s, p, kCold); })
        ->UseManualTime()
        ->Iterations(300);
  for (Peer p : kPeers)
    add_case(case_name("BM_SmallArgs", p), [p](auto& s) { small_args(s, p, 0); })->UseManualTime();
  // Cold: the caller idles 1 ms before each call (the worker has gone to sleep).
  for (Peer p : kPeers)
    add_case(case_name("BM_SmallArgsCold", p), [p](auto& s) { small_args(s, p, kCold); })
        ->UseManualTime()
        ->Iterations(300);
  for (int64_t n : kPayloadSizes)
    for (Peer p : kPeers)
      add_case(case_name("BM_PayloadToPython", p, {size_label(n)}, n), [p, n](auto& s) {
        payload_to_python(s, p, size_t(n), 0);
      })->UseManualTime();
  // Cold: the caller idles 1 ms before each call.
  for (int64_t n : {int64_t(64) << 10, int64_t(1) << 20, int64_t(16) << 20})
    for (Peer p : kPeers)
      add_case(case_name("BM_PayloadToPythonCold", p, {size_label(n)}, n),
               [p, n](auto& s) { payload_to_python(s, p, size_t(n), kCold); })
          ->UseManualTime()
          ->Iterations(30);
  for (int64_t n : kPayloadSizes)
    for (Peer p : kPeers)
      add_case(case_name("BM_PayloadEcho", p, {size_label(n)}, n), [p, n](auto& s) {
        payload_echo(s, p, size_t(n));
      })->UseManualTime();
  const int64_t bulk_sizes[] = {int64_t(64) << 10, int64_t(1) << 20, int64_t(16) << 20,
                                int64_t(64) << 20};
  for (BulkOp op : {kAck, kEcho, kNumpySum})
    for (int64_t n : bulk_sizes)
      for (BulkMode mode : {kInPlace, kCopy, kPipe, kZmqBulk})
        add_case({"BM_Bulk", kBulkModeNames[mode], {kBulkOpNames[op], size_label(n)}, mode, op, n},
                 [mode, op, n](auto& s) { bulk(s, mode, op, size_t(n)); })
            ->UseManualTime()
            ->MinTime(0.2);
  for (int64_t n : bulk_sizes)
    add_case({"BM_Memcpy", "", {size_label(n)}, -1, -1, n},
             [n](auto& s) { memcpy_case(s, size_t(n)); })
        ->UseManualTime()
        ->MinTime(0.2);
}

void register_startup_cases() {
  for (Peer p : {Peer::shm, Peer::pipe_json}) {
    const Transport t = p == Peer::shm ? Transport::shm : Transport::pipe_json;
    add_case(case_name("BM_WorkerStartup", p), [t](auto& s) { worker_startup(s, t); })
        ->UseManualTime()
        ->Iterations(10)
        ->Unit(benchmark::kMillisecond);
  }
}

}  // namespace shmpool::bench
