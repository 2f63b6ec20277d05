// Async calls, streams and cancellation over shm (shmpool/call.h), with
// the handlers of bench/stream_handlers.py:
//   BM_Pipelined/shm/inflight:64/workers:N  one host thread keeps 64 pings in flight
//   BM_StreamItems/shm                       a generator of 100,000 small dicts
//   BM_StreamChunks/shm/1MiB                 a generator of 1 MiB numpy chunks
//   BM_CancelLatency/shm/cooperative|kill    cancel() of a running handler until its
//                                            worker is idle again (kill: replaced)
// The peers' cases of the same names are in stream_cases.cc and pipelined_cases.cc.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "bench/case_names.h"
#include "bench/cases.h"
#include "bench/timing.h"
#include "shmpool/call.h"
#include "shmpool/pool.h"

namespace shmpool::bench {
namespace {

constexpr int kInFlight = 64;
constexpr int64_t kStreamItems = 100'000;
constexpr int64_t kChunks = 64;

// A pool of `size` workers with the stream handlers, started once per size.
Pool& async_pool(uint32_t size) {
  static std::map<uint32_t, std::unique_ptr<Pool>> pools;
  auto& p = pools[size];
  if (!p) {
    PoolConfig c;
    c.name = "bench-async-" + std::to_string(::getpid()) + "-" + std::to_string(size);
    c.size = size;
    c.max_overflow = 0;
    c.python = SHMPOOL_PYTHON;
    c.handler_modules = {SHMPOOL_BENCH_DIR "/stream_handlers.py"};
    c.payload_arena_bytes = 256u << 20;
    c.cancel_grace = std::chrono::milliseconds(10);
    auto started = Pool::start(c);
    if (!started.ok()) {
      std::fprintf(stderr, "cannot start pool: %s\n", started.error().to_string().c_str());
      std::exit(1);
    }
    p = std::move(started.value());
  }
  return *p;
}

void report_percentiles(benchmark::State& state, std::vector<double> us) {
  if (us.empty()) return;
  std::sort(us.begin(), us.end());
  state.counters["p50_us"] = us[us.size() / 2];
  state.counters["p99_us"] = us[std::min(us.size() - 1, us.size() * 99 / 100)];
}

// One thread, kInFlight pings in flight: each iteration waits for the
// oldest and sends another in its place.
void pipelined(benchmark::State& state, uint32_t workers) {
  Pool& pool = async_pool(workers);
  std::vector<Call> ring(kInFlight);
  for (auto& c : ring) c = pool.call_async({}, "ping");
  size_t oldest = 0;
  for (auto _ : state) {
    Expected<Reply>& r = ring[oldest].wait();
    if (!r.ok()) return (void)fail(state, r.error());
    ring[oldest] = pool.call_async({}, "ping");
    oldest = (oldest + 1) % kInFlight;
  }
  for (auto& c : ring) c.wait();
  state.SetItemsProcessed(state.iterations());
}

Args stream_args(int64_t n, int64_t size = 0) {
  return make_args([&](flexbuffers::Builder& b) {
    b.Int("n", n);
    if (size) b.Int("size", size);
  });
}

// Each iteration is a whole stream; first_item_us: from the call to its first item.
template <class Check>
void stream_case(benchmark::State& state, const char* command, const Args& args, int64_t n,
                 int64_t item_bytes, Check&& check) {
  Pool& pool = async_pool(1);
  std::vector<double> first;
  for (auto _ : state) {
    const auto t0 = Clock::now();
    Stream s = pool.stream({}, command, args);
    int64_t got = 0;
    for (Expected<Reply>& item : s) {
      if (!item.ok()) return (void)fail(state, item.error());
      if (got == 0) first.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
      if (const char* wrong = check(*item)) return (void)bad_reply(state, wrong);
      ++got;
    }
    if (got != n) return (void)bad_reply(state, "the stream ended early");
  }
  state.SetItemsProcessed(state.iterations() * n);
  if (item_bytes) state.SetBytesProcessed(state.iterations() * n * item_bytes);
  std::sort(first.begin(), first.end());
  if (!first.empty()) state.counters["first_item_us"] = first[first.size() / 2];
}

// cancel() of a running handler until its worker is idle again: the stream
// ends (the cooperative handler saw ctx.cancelled, or the worker was killed
// after the 10 ms grace) and a ping finds the worker (a new one after a kill).
void cancel_latency(benchmark::State& state, bool cooperative) {
  Pool& pool = async_pool(1);
  std::vector<double> us;
  for (auto _ : state) {
    Stream s = pool.stream({}, cooperative ? "started_then_poll_cancel"
                                           : "started_then_ignore_cancel");
    auto started = s.next();
    if (!started.ok() || !*started) return (void)bad_reply(state, "the handler did not start");
    const auto t0 = Clock::now();
    s.cancel();
    auto end = s.next();
    if (end.ok() || end.error().category != Category::cancelled) {
      return (void)bad_reply(state, "the stream did not end cancelled");
    }
    auto ping = pool.execute_anonymous("ping");
    const double t = std::chrono::duration<double>(Clock::now() - t0).count();
    if (!ping.ok()) return (void)fail(state, ping.error());
    state.SetIterationTime(t);
    us.push_back(t * 1e6);
  }
  report_percentiles(state, us);
}

}  // namespace

void register_async_cases() {
  for (uint32_t w : {1u, 2u}) {
    add_case({"BM_Pipelined", "shm", {"inflight:64", "workers:" + std::to_string(w)}, 0, -1, -1},
             [w](auto& s) { pipelined(s, w); })
        ->UseRealTime();
  }
  add_case({"BM_StreamItems", "shm", {}, 0, -1, -1}, [](auto& s) {
    stream_case(s, "stream_items", stream_args(kStreamItems), kStreamItems, 0,
                [](const Reply& r) -> const char* {
                  return r.value().AsMap()["name"].AsString().str() == "item" ? nullptr
                                                                              : "not an item";
                });
  })->UseRealTime()->Unit(benchmark::kMillisecond);
  add_case({"BM_StreamChunks", "shm", {"1MiB"}, 0, -1, 1 << 20}, [](auto& s) {
    stream_case(s, "stream_chunks", stream_args(kChunks, 1 << 20), kChunks, 1 << 20,
                [](const Reply& r) -> const char* {
                  return r.payload().size() == (1u << 20) && r.payload()[12345] == 7
                             ? nullptr
                             : "not a chunk";
                });
  })->UseRealTime()->Unit(benchmark::kMillisecond);
  add_case({"BM_CancelLatency", "shm", {"cooperative"}, 0, -1, -1},
           [](auto& s) { cancel_latency(s, true); })
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond);
  add_case({"BM_CancelLatency", "shm", {"kill"}, 0, -1, -1},
           [](auto& s) { cancel_latency(s, false); })
      ->UseManualTime()
      ->Iterations(20)
      ->Unit(benchmark::kMillisecond);
}

}  // namespace shmpool::bench
