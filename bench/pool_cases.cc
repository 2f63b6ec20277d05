// Pools of kPoolSize workers over each transport under 1/4/16 caller
// threads, the same pool served by another process, and a bare checkout.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "bench/calls.h"
#include "bench/case_names.h"
#include "bench/cases.h"
#include "bench/peers.h"
#include "bench/timing.h"
#include "ipc/segment.h"
#include "ipc/slot_table.h"

namespace shmpool::bench {
namespace {

constexpr int64_t kCold = 1000;                // us a cold caller idles before each call
constexpr int64_t kPing = -1, kSmallArgs = 0;  // pool_case's payload sizes that are not one

Expected<Reply> pool_ping(Peer p, int thread_index = 0) {
  return call_pool(p, thread_index, "ping");
}

// One caller, pool of 2: the round trip including checkout and checkin.
void pool_ping_case(benchmark::State& state, Peer p) {
  timed_calls(
      state, [&] { return pool_ping(p); }, pong);
}

// BM_PoolPing's call from a second process: checkout, rings and checkin
// through the shared segment alone.
void client_ping(benchmark::State& state) {
  Client& client = served_pool_client();
  timed_calls(
      state, [&] { return client.execute_anonymous("ping"); }, pong);
}

void pool_throughput(benchmark::State& state, Peer p) {
  pool_calls(
      state, [&] { return pool_ping(p, state.thread_index()); }, pong);
}

// The other cases under 1/4/16 callers: small_args is the small-args echo,
// a size hands that many bytes (the caller's own buffer) to Python and gets
// the ack, ping (cold only) is the ping. bytes_per_second counts the payload.
void pool_case(benchmark::State& state, Peer p, int64_t payload, int64_t idle_us) {
  if (payload == kPing) {
    pool_calls(
        state, [&] { return pool_ping(p, state.thread_index()); }, pong, idle_us);
    return;
  }
  if (payload == kSmallArgs) {
    const Args args = small_args_map();
    pool_calls(
        state, [&] { return call_pool(p, state.thread_index(), "echo", args); }, small_args_echoed,
        idle_us);
    return;
  }
  const size_t n = size_t(payload);
  const std::vector<uint8_t> bytes(n, 0x5a);
  pool_calls(
      state, [&] { return call_pool(p, state.thread_index(), "ack", empty_args(), bytes); },
      acked(n), idle_us);
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(n));
}

std::string payload_label(int64_t payload) {
  return payload == kPing ? "ping" : payload == kSmallArgs ? "small_args" : size_label(payload);
}

// Uncontended checkout + checkin of a slot in the segment (no worker).
void checkout_checkin(benchmark::State& state) {
  const std::string name = "bench-slots-" + std::to_string(::getpid());
  std::unique_ptr<ipc::Segment> seg;
  if (ipc::Segment::create(name, ipc::Geometry{4, 0, 4096, 4096}, &seg) != ipc::Errc::ok) {
    state.SkipWithError("cannot create segment");
    return;
  }
  for (uint32_t i = 0; i < 4; ++i)
    ipc::SlotTable(*seg).set_state(i, ipc::state_bit(ipc::SlotState::empty), ipc::SlotState::idle);
  for (auto _ : state) {
    uint64_t word;
    if (!ipc::SlotTable(*seg).try_checkout(0, 1, &word) || !ipc::SlotTable(*seg).checkin(0, word)) {
      state.SkipWithError("checkout failed");
      break;
    }
  }
  seg.reset();
  ipc::Segment::remove(name);
}

}  // namespace

void register_pool_cases() {
  for (Peer p : kPeers)
    add_case(case_name("BM_PoolPing", p), [p](auto& s) { pool_ping_case(s, p); })
        ->UseManualTime()
        ->Repetitions(5);
  add_case({"BM_ClientPing", "", {}, -1, -1, -1}, client_ping)->UseManualTime();
  // N caller threads on a pool of 2 workers, each timing its calls: calls/s
  // (items_per_second, summed over threads) and per-thread p50/p99/p99.9.
  for (Peer p : kPeers)
    add_case(case_name("BM_PoolThroughput", p), [p](auto& s) { pool_throughput(s, p); })
        ->Threads(1)
        ->Threads(4)
        ->Threads(16)
        ->UseRealTime();
  for (int64_t n : {kSmallArgs, int64_t(64) << 10, int64_t(1) << 20, int64_t(16) << 20})
    for (Peer p : kPeers)
      add_case(case_name("BM_PoolCalls", p, {payload_label(n)}),
               [p, n](auto& s) { pool_case(s, p, n, 0); })
          ->Threads(1)
          ->Threads(4)
          ->Threads(16)
          ->UseRealTime();
  // Cold: every caller idles 1 ms before each call (calls/s then counts the idling).
  for (int64_t n : {kPing, kSmallArgs, int64_t(64) << 10, int64_t(1) << 20, int64_t(16) << 20})
    for (Peer p : kPeers)
      add_case(case_name("BM_PoolCallsCold", p, {payload_label(n)}),
               [p, n](auto& s) { pool_case(s, p, n, kCold); })
          ->Threads(1)
          ->Threads(4)
          ->Threads(16)
          ->UseRealTime()
          ->MinTime(0.2);
  add_case({"BM_CheckoutCheckin", "", {}, -1, -1, -1}, checkout_checkin);
}

}  // namespace shmpool::bench
