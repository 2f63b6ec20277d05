// A throughput benchmark of the user's own handler, written to be gated:
// BM_Ping is the in-run baseline (the transport alone), BM_Checksum the work
// under test. `shmpool bench compare --baseline BM_Ping` divides one by the
// other per run, so a uniformly slower CI machine does not fail the gate.
//
//   bench HANDLERS.py [google benchmark flags]
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <cstdio>
#include <numeric>
#include <vector>

#include "shmpool/pool.h"

namespace {

shmpool::Pool* g_pool = nullptr;

void BM_Ping(benchmark::State& state) {
  for (auto _ : state) {
    auto r = g_pool->execute_anonymous("ping");
    // Every timed call is checked: a benchmark of failing calls is a bug.
    if (!r.ok() || !r->value().AsMap()["pong"].AsBool()) {
      state.SkipWithError(r.ok() ? "no pong" : r.error().to_string().c_str());
      return;
    }
  }
  state.SetItemsProcessed(state.iterations());
}

// `bytes` of uint32 handed to the handler as the payload, read in place.
void BM_Checksum(benchmark::State& state, size_t bytes) {
  std::vector<uint32_t> values(bytes / sizeof(uint32_t));
  std::iota(values.begin(), values.end(), 1u);
  const uint64_t expected = std::accumulate(values.begin(), values.end(), uint64_t(0));
  shmpool::ExecOptions o;
  o.payload = {reinterpret_cast<const uint8_t*>(values.data()), values.size() * sizeof(uint32_t)};
  for (auto _ : state) {
    auto r = g_pool->execute_anonymous("checksum", shmpool::empty_args(), o);
    if (!r.ok() || r->value().AsMap()["sum"].AsUInt64() != expected) {
      state.SkipWithError(r.ok() ? "wrong checksum" : r.error().to_string().c_str());
      return;
    }
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * int64_t(bytes));
}

BENCHMARK(BM_Ping)->UseRealTime();
// Named by its payload size (BM_Checksum/64KiB), not by a raw argument.
BENCHMARK_CAPTURE(BM_Checksum, 64KiB, size_t(64) << 10)->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);  // removes the --benchmark_* flags
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s HANDLERS.py [--benchmark_* flags]\n", argv[0]);
    return 2;
  }
  shmpool::PoolConfig config;
  config.name = "example-gate-" + std::to_string(::getpid());
  config.size = 1;
  config.max_overflow = 0;
  config.handler_modules = {argv[1]};
  auto pool = shmpool::Pool::start(config);
  if (!pool.ok()) {
    std::fprintf(stderr, "%s\n", pool.error().to_string().c_str());
    return 1;
  }
  g_pool = pool->get();
  // Warm-up outside the timed loops: the first calls import numpy and fault
  // pages in.
  for (int i = 0; i < 100; ++i) (void)g_pool->execute_anonymous("ping");
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
