// A C++ host hands an array of doubles to a numpy handler and reads back a
// scaled array, with no copy either way: the host fills a PayloadBuffer in
// shared memory, numpy reads it in place and writes its result into a block
// the host then reads in place. Run: numpy_sum <path to handlers.py>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <span>

#include "shmpool/pool.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s HANDLERS.py\n", argv[0]);
    return 2;
  }
  shmpool::PoolConfig config;
  config.name = "example-numpy-" + std::to_string(::getpid());
  config.size = 1;
  config.handler_modules = {argv[1]};
  auto pool = shmpool::Pool::start(config);
  if (!pool.ok()) {
    std::fprintf(stderr, "%s\n", pool.error().to_string().c_str());
    return 1;
  }
  // 100,000 doubles written straight into the payload arena.
  constexpr std::size_t n = 100000;
  auto buffer = (*pool)->alloc_payload(n * sizeof(double));
  if (!buffer.ok()) {
    std::fprintf(stderr, "%s\n", buffer.error().to_string().c_str());
    return 1;
  }
  std::span<double> values(reinterpret_cast<double*>(buffer->begin()), n);
  std::iota(values.begin(), values.end(), 0.0);

  shmpool::ExecOptions with_payload;
  with_payload.payload = buffer->data();  // in the arena: the worker reads it in place
  auto stats = (*pool)->execute_anonymous("stats", shmpool::empty_args(), with_payload);
  if (!stats.ok()) {
    std::fprintf(stderr, "%s\n", stats.error().to_string().c_str());
    return 1;
  }
  std::printf("stats: %s\n", stats->json().c_str());

  auto scaled = (*pool)->execute_anonymous(
      "scale", shmpool::make_args([](flexbuffers::Builder& b) { b.Double("factor", 0.5); }),
      with_payload);
  if (!scaled.ok()) {
    std::fprintf(stderr, "%s\n", scaled.error().to_string().c_str());
    return 1;
  }
  // The reply's payload is numpy's output block; it lives as long as `scaled`.
  std::span<const double> out(reinterpret_cast<const double*>(scaled->payload().data()),
                              scaled->payload().size() / sizeof(double));
  const double expected_sum = 0.5 * (99999.0 * 100000.0 / 2.0);
  const double got_sum = std::accumulate(out.begin(), out.end(), 0.0);
  std::printf("scaled: %zu values, sum %.1f (expected %.1f)\n", out.size(), got_sum, expected_sum);
  return out.size() == n && std::fabs(got_sum - expected_sum) < 1e-6 * expected_sum &&
                 stats->value().AsMap()["sum"].AsDouble() == 2 * expected_sum
             ? 0
             : 1;
}
