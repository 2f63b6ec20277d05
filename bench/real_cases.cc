// Real workloads (bench/real_handlers.py): numpy rfft returning the
// spectrum as a payload, sha256 and zlib, on the same bytes over shm,
// pipe-JSON and ZeroMQ, and the compute floor: the same function in a loop
// inside one plain Python process (bench/real_floor.py), with glibc's malloc
// defaults and with the settings a pool gives its workers. Counters: p50/p99
// end to end, handler_us (the handler's own compute, median) and faults
// (minor page faults per call, median). Each reply is checked against the
// floor's result (sha256 digest, zlib length and crc, the spectrum's DC term).
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "bench/case_names.h"
#include "bench/cases.h"
#include "bench/peers.h"
#include "bench/timing.h"
#include "shmpool/pool.h"

namespace shmpool::bench {

const char* real_work_name(int64_t w) {
  return w == kRfft ? "rfft" : w == kSha256 ? "sha256" : "zlib";
}

namespace {

// The input of a case: float64 samples of two tones for rfft, text-like
// bytes for sha256 and zlib; also written to a file for the floor.
std::vector<uint8_t> real_input(int64_t work, size_t n) {
  std::vector<uint8_t> data(n);
  if (work == kRfft) {
    for (size_t i = 0; i + 8 <= n; i += 8) {
      const double x = std::sin(double(i / 8) * 0.01) + 0.5 * std::sin(double(i / 8) * 0.37);
      std::memcpy(&data[i], &x, 8);
    }
  } else {
    uint32_t seed = 12345;
    for (size_t i = 0; i < n; ++i) {
      seed = seed * 1103515245u + 12345u;
      data[i] = uint8_t("shmpool calls python at memory speed 0123456789\n"[(seed >> 16) % 48]);
    }
  }
  return data;
}

struct FloorResult {
  double p50_us = 0, p99_us = 0, faults = 0;
  std::string check;  // the result's fingerprint, as the handlers report it
};

// Runs real_floor.py on `data`: tuned selects the pool's malloc settings.
std::optional<FloorResult> run_floor(int64_t work, const std::vector<uint8_t>& data, bool tuned,
                                     int reps) {
  const std::string path =
      "/tmp/shmpool-bench-real-" + std::to_string(::getpid()) + "-" + std::to_string(work);
  {
    std::ofstream f(path, std::ios::binary);
    f.write(reinterpret_cast<const char*>(data.data()), std::streamsize(data.size()));
  }
  const std::string malloc_env =
      tuned ? "MALLOC_MMAP_THRESHOLD_=" + std::to_string(kDefaultWorkerMallocThreshold) +
                  " MALLOC_TRIM_THRESHOLD_=" + std::to_string(8 * kDefaultWorkerMallocThreshold)
            : "-u MALLOC_MMAP_THRESHOLD_ -u MALLOC_TRIM_THRESHOLD_";
  const std::string cmd = "env " + malloc_env +
                          " PYTHONPATH=" SHMPOOL_PYTHON_DIR " " SHMPOOL_PYTHON " " SHMPOOL_BENCH_DIR
                          "/real_floor.py " +
                          real_work_name(work) + " " + path + " " + std::to_string(reps);
  FILE* p = ::popen(cmd.c_str(), "r");
  std::string out;
  char buf[512];
  while (p && std::fgets(buf, sizeof buf, p)) out += buf;
  const int rc = p ? ::pclose(p) : -1;
  ::unlink(path.c_str());
  if (rc != 0) return std::nullopt;
  auto field = [&](const char* key) {
    auto at = out.find(std::string("\"") + key + "\": ");
    return at == std::string::npos ? std::string() : out.substr(at + std::strlen(key) + 4);
  };
  FloorResult r;
  r.p50_us = std::atof(field("p50_us").c_str());
  r.p99_us = std::atof(field("p99_us").c_str());
  r.faults = std::atof(field("faults").c_str());
  const std::string key = work == kRfft ? "dc" : work == kSha256 ? "digest" : "crc";
  std::string v = field(key.c_str());
  r.check = v.substr(0, v.find_first_of(",}"));
  return r;
}

// The fingerprint of a handler's reply, in real_floor.py's JSON spelling.
std::string reply_check(int64_t work, const Reply& r) {
  auto m = r.value().AsMap();
  if (work == kSha256) return "\"" + m["digest"].AsString().str() + "\"";
  if (work == kZlib) return std::to_string(m["crc"].AsUInt64());
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", m["dc"].AsDouble());
  return buf;
}

// peer: a Peer's index, or kFloorDefault / kFloorTuned.
void real(benchmark::State& state, int64_t work, size_t n, int peer) {
  const std::vector<uint8_t> data = real_input(work, n);
  auto floor = run_floor(work, data, peer == kFloorTuned, 31);
  if (!floor) {
    state.SkipWithError("bench/real_floor.py failed");
    return;
  }
  if (peer >= kFloorDefault) {
    for (auto _ : state) state.SetIterationTime(floor->p50_us * 1e-6);
    state.counters["p50_us"] = floor->p50_us;
    state.counters["p99_us"] = floor->p99_us;
    state.counters["handler_us"] = floor->p50_us;
    state.counters["faults"] = floor->faults;
    return;
  }
  const std::string command = std::string("real_") + real_work_name(work);
  // shm: the input is built in place in the payload arena, as zero-copy
  // users do (alloc_payload); the peers send the caller's own buffer.
  std::span<const uint8_t> payload = data;
  PayloadBuffer in_place;
  if (Peer(peer) == Peer::shm) {
    auto b = worker(Transport::shm).alloc_payload(n);
    if (!b.ok()) return (void)fail(state, b.error());
    in_place = std::move(b.value());
    std::memcpy(in_place.begin(), data.data(), n);
    payload = in_place.data();
  }
  std::vector<double> lat, handler, faults;
  for (int i = -1; i < int(state.max_iterations); ++i) {  // -1: the warm-up call
    auto t0 = Clock::now();
    auto r = call_worker(Peer(peer), command, empty_args(), payload);
    auto t1 = Clock::now();
    if (!r.ok()) return (void)fail(state, r.error());
    // Checked outside the timed region, against the floor's result.
    const std::string got = reply_check(work, *r);
    const bool same =
        work == kRfft ? std::fabs(std::atof(got.c_str()) - std::atof(floor->check.c_str())) <=
                                1e-9 * std::max(1.0, std::fabs(std::atof(floor->check.c_str()))) &&
                            r->payload().size() == (n / 16 + 1) * 16
                      : got == floor->check;
    if (!same) {
      return (void)bad_reply(state,
                             "result differs from the floor's: " + got + " vs " + floor->check);
    }
    if (i < 0) continue;
    lat.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
    handler.push_back(r->value().AsMap()["us"].AsDouble());
    faults.push_back(double(r->value().AsMap()["faults"].AsInt64()));
  }
  for (auto _ : state)
    state.SetIterationTime(lat[size_t(state.iterations() - 1) % lat.size()] * 1e-6);
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  std::sort(lat.begin(), lat.end());
  state.counters["p50_us"] = lat[lat.size() / 2];
  state.counters["p99_us"] = lat[std::min(lat.size() - 1, lat.size() * 99 / 100)];
  state.counters["handler_us"] = median(handler);
  state.counters["faults"] = median(faults);
  state.counters["floor_us"] = floor->p50_us;
}

}  // namespace

void register_real_cases() {
  const std::pair<RealWork, int64_t> cases[] = {
      {kRfft, 1 << 20}, {kRfft, 8 << 20}, {kSha256, 1 << 20}, {kSha256, 8 << 20}, {kZlib, 1 << 20}};
  const char* const peers[] = {peer_name(Peer::shm), peer_name(Peer::pipe_json),
                               peer_name(Peer::zmq), "floor_default_malloc", "floor_pool_malloc"};
  for (auto [work, n] : cases)
    for (int peer = 0; peer <= kFloorTuned; ++peer)
      add_case({"BM_Real", peers[peer], {real_work_name(work), size_label(n)}, peer, work, n},
               [work, n, peer](auto& s) { real(s, work, size_t(n), peer); })
          ->UseManualTime()
          ->Iterations(31)
          ->Unit(benchmark::kMillisecond);
}

}  // namespace shmpool::bench
