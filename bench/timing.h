// How the cases time their calls: each call on its own (the iteration time
// is the call's, manual time), the reply checked outside the timed region,
// p50/p99/p99.9 reported as counters in microseconds. A failed call or a
// wrong reply ends the case with SkipWithError: a benchmark of failing
// calls is a bug.
#pragma once

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <optional>
#include <thread>
#include <vector>

#include "shmpool/worker.h"

namespace shmpool::bench {

using Clock = std::chrono::steady_clock;

// Ends the case with the error; returns false.
inline bool fail(benchmark::State& state, const Error& e) {
  state.SkipWithError(e.to_string().c_str());
  return false;
}

// Ends the case with a bad_reply error saying `what`; returns false.
inline bool bad_reply(benchmark::State& state, const std::string& what) {
  return fail(state, make_error(Category::protocol_error, "bad_reply", what));
}

// The benchmark loop of every timed case: idles idle_us before each call
// (cold calls), times each call (`call` returns the reply), then checks the
// reply outside the timed region (`check` says what is wrong with it, or
// nullptr). Returns each call's latency in us, sorted, or nullopt after a
// failure (reported to `state`). manual_time: the iteration time is the
// call's.
template <class Call, class Check>
std::optional<std::vector<double>> time_each_call(benchmark::State& state, Call&& call,
                                                  Check&& check, int64_t idle_us,
                                                  bool manual_time) {
  std::vector<double> lat;
  lat.reserve(1 << 16);
  // Warm-up, not timed: imports, first touch of pages, a pool's start, a
  // thread's ZeroMQ socket.
  if (auto r = call(); !r.ok()) {
    fail(state, r.error());
    return std::nullopt;
  }
  for (auto _ : state) {
    if (idle_us) std::this_thread::sleep_for(std::chrono::microseconds(idle_us));
    auto t0 = Clock::now();
    auto r = call();
    auto t1 = Clock::now();
    if (!r.ok()) {
      fail(state, r.error());
      return std::nullopt;
    }
    if (const char* wrong = check(*r)) {
      bad_reply(state, wrong);
      return std::nullopt;
    }
    const double s = std::chrono::duration<double>(t1 - t0).count();
    if (manual_time) state.SetIterationTime(s);
    lat.push_back(s * 1e6);
  }
  std::sort(lat.begin(), lat.end());
  return lat;
}

// One caller: reports p50/p99/p99.9 (us) of its calls.
template <class Call, class Check>
void timed_calls(benchmark::State& state, Call&& call, Check&& check, int64_t idle_us = 0) {
  auto lat = time_each_call(state, call, check, idle_us, true);
  if (!lat || lat->empty()) return;
  auto pct = [&](double p) {
    return (*lat)[std::min(lat->size() - 1, size_t(p * double(lat->size())))];
  };
  state.counters["p50_us"] = pct(0.50);
  state.counters["p99_us"] = pct(0.99);
  state.counters["p999_us"] = pct(0.999);
}

// N caller threads on a pool, each timing its calls: calls/s
// (items_per_second, summed over threads) and per-thread p50/p99/p99.9.
// `call` returns the reply; `check` says what is wrong with it, or nullptr.
// idle_us > 0: each thread idles that long before each call (cold calls).
template <class Call, class Check>
void pool_calls(benchmark::State& state, Call&& call, Check&& check, int64_t idle_us = 0) {
  auto lat = time_each_call(state, call, check, idle_us, false);
  if (!lat) return;
  state.SetItemsProcessed(int64_t(state.iterations()));
  if (lat->empty()) return;
  auto pct = [&](size_t per_mille) {
    return benchmark::Counter((*lat)[std::min(lat->size() - 1, lat->size() * per_mille / 1000)],
                              benchmark::Counter::kAvgThreads);
  };
  state.counters["p50_us"] = pct(500);
  state.counters["p99_us"] = pct(990);
  state.counters["p999_us"] = pct(999);
}

}  // namespace shmpool::bench
