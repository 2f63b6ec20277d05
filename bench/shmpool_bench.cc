// shmpool_bench: shared memory vs the pipe + JSON baseline, in one run, with
// the same Python handlers. Every timed call's reply is checked; worker start
// is excluded; each call is timed on its own (manual real time) so p50/p99
// are reported as counters.
//
//   shmpool_bench [google benchmark flags]   e.g. --benchmark_out=b.json
//   --benchmark_out_format=json shmpool_bench --demo                     headline cases and a
//   comparison table
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>
#include <zmq.hpp>

#include "bench/busy_loops.h"
#include "ipc/segment.h"
#include "ipc/slot_table.h"
#include "shmpool/client.h"
#include "shmpool/pool.h"
#include "shmpool/schema/envelope_generated.h"
#include "shmpool/worker.h"

namespace {

using shmpool::Transport;
using Clock = std::chrono::steady_clock;

shmpool::Worker& worker(Transport t) {
  static std::map<Transport, std::unique_ptr<shmpool::Worker>> workers;
  auto& w = workers[t];
  if (!w) {
    shmpool::WorkerOptions o;
    o.transport = t;
    o.request_ring_bytes = 8u << 20;
    o.response_ring_bytes = 8u << 20;
    o.payload_arena_bytes = 256u << 20;  // 64 MiB in place + echo output + a copy
    o.handler_modules = {SHMPOOL_BENCH_DIR "/real_handlers.py"};  // BM_Real
    // The pipe-JSON peer stands for a plain Python process: glibc's malloc
    // defaults (shm workers get the pool's, see BM_Real).
    if (t == Transport::pipe_json) o.worker_malloc_threshold = 0;
    auto started = shmpool::Worker::start(o);
    if (!started.ok()) {
      std::fprintf(stderr, "cannot start worker: %s\n", started.error().to_string().c_str());
      std::exit(1);
    }
    w = std::move(started.value());
  }
  return *w;
}

// ---- the ZeroMQ peer ----
// The same Python handlers behind a ZeroMQ REP socket over ipc://, with the
// same FlatBuffers envelope (encoded and decoded by the worker's native
// core): `python3 -m python_shm_worker --transport zmq-ipc`. Payloads go as
// a second message part, zero-copy on our side.
zmq::context_t& zmq_context() {
  static zmq::context_t ctx;
  return ctx;
}

// One REQ socket to a ZeroMQ worker; one thread at a time.
class ZmqCaller {
 public:
  explicit ZmqCaller(const std::string& endpoint)
      : endpoint_(endpoint), sock_(zmq_context(), zmq::socket_type::req) {
    sock_.set(zmq::sockopt::linger, 0);
    sock_.set(zmq::sockopt::rcvtimeo, 30'000);  // the first reply waits for the bind
    sock_.connect(endpoint);
  }
  const std::string& endpoint() const { return endpoint_; }
  // The reply's payload points into the last received message: valid until
  // the next call.
  shmpool::Expected<shmpool::Reply> call(std::string_view command, const shmpool::Args& args,
                                         std::span<const uint8_t> payload) {
    fbb_.Clear();
    auto cmd = fbb_.CreateString(command.data(), command.size());
    auto a = args.empty() ? 0 : fbb_.CreateVector(args.data(), args.size());
    shmpool::schema::RequestBuilder rb(fbb_);
    rb.add_id(++next_id_);
    rb.add_command(cmd);
    if (!a.IsNull()) rb.add_args(a);
    fbb_.Finish(rb.Finish());
    zmq::message_t env(fbb_.GetBufferPointer(), fbb_.GetSize());
    if (payload.empty()) {
      sock_.send(env, zmq::send_flags::none);
    } else {
      sock_.send(env, zmq::send_flags::sndmore);
      // Zero-copy: the span outlives the call, and REQ/REP is lockstep.
      zmq::message_t part(const_cast<uint8_t*>(payload.data()), payload.size(), nullptr, nullptr);
      sock_.send(part, zmq::send_flags::none);
    }
    zmq::message_t renv;
    if (!sock_.recv(renv)) {
      return shmpool::make_error(shmpool::Category::timeout_error, "operation_timeout",
                                 "no reply from the ZeroMQ peer");
    }
    last_payload_.rebuild(0);
    if (renv.more() && !sock_.recv(last_payload_)) {
      return shmpool::make_error(shmpool::Category::protocol_error, "truncated", "no payload part");
    }
    shmpool::Reply::Parts parts;
    parts.storage.assign(renv.data<uint8_t>(), renv.data<uint8_t>() + renv.size());
    parts.storage.push_back(0);  // a NUL after the end, as the shm host keeps
    flatbuffers::Verifier verifier(parts.storage.data(), renv.size());
    if (!verifier.VerifyBuffer<shmpool::schema::Response>(nullptr)) {
      return shmpool::make_error(shmpool::Category::protocol_error, "invalid_response",
                                 "reply envelope failed verification");
    }
    const auto* r = flatbuffers::GetRoot<shmpool::schema::Response>(parts.storage.data());
    if (r->status() != shmpool::schema::Status::Ok) {
      return shmpool::make_error(
          shmpool::Category::handler_error,
          r->error() && r->error()->type() ? r->error()->type()->str() : "",
          r->error() && r->error()->message() ? r->error()->message()->str() : "");
    }
    parts.id = r->id();
    if (r->result()) parts.result = {r->result()->data(), r->result()->size()};
    parts.payload = {last_payload_.data<uint8_t>(), last_payload_.size()};
    return shmpool::Reply(std::move(parts));
  }

 private:
  std::string endpoint_;
  zmq::socket_t sock_;
  flatbuffers::FlatBufferBuilder fbb_{1024};
  zmq::message_t last_payload_;
  uint64_t next_id_ = 0;
};

// A ZeroMQ worker process, bound at its own ipc:// endpoint; ready once it
// answered a ping. Its REP socket queues the requests of several callers
// fairly, so a few of them make a pool.
class ZmqWorkerProcess {
 public:
  explicit ZmqWorkerProcess(int index) {
    endpoint_ = "ipc:///tmp/shmpool-bench-" + std::to_string(::getpid()) + "-" +
                std::to_string(index) + ".sock";
    std::vector<std::string> args = {
        SHMPOOL_PYTHON, "-m",         "python_shm_worker",
        "--transport",  "zmq-ipc",    "--endpoint",
        endpoint_,      "--handlers", SHMPOOL_BENCH_DIR "/real_handlers.py"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::vector<std::string> env_strings;
    for (char** e = environ; *e; ++e)
      if (std::strncmp(*e, "PYTHONPATH=", 11) != 0) env_strings.emplace_back(*e);
    env_strings.push_back(std::string("PYTHONPATH=") + SHMPOOL_PYTHON_DIR);
    env_strings.push_back("PYTHONSAFEPATH=1");  // not a source checkout in the working directory
    std::vector<char*> envp;
    for (auto& e : env_strings) envp.push_back(e.data());
    envp.push_back(nullptr);
    if (posix_spawn(&pid_, argv[0], nullptr, nullptr, argv.data(), envp.data()) != 0) {
      std::fprintf(stderr, "cannot start the ZeroMQ peer\n");
      std::exit(1);
    }
    ZmqCaller probe(endpoint_);
    auto hello = probe.call("ping", shmpool::empty_args(), {});
    if (!hello.ok()) {
      std::fprintf(stderr, "ZeroMQ peer: %s\n", hello.error().to_string().c_str());
      std::exit(1);
    }
  }
  ~ZmqWorkerProcess() {
    (void)ZmqCaller(endpoint_).call("__shutdown__", shmpool::empty_args(), {});
    int status = 0;
    waitpid(pid_, &status, 0);
    ::unlink(endpoint_.c_str() + 6);  // "ipc://" prefix
  }
  const std::string& endpoint() const { return endpoint_; }

 private:
  std::string endpoint_;
  pid_t pid_ = 0;
};

// The single-worker peer (BM_Ping etc.), called from the main thread.
ZmqCaller& zmq_peer() {
  static ZmqWorkerProcess worker(0);
  static ZmqCaller caller(worker.endpoint());
  return caller;
}

// Transports in the benchmarks' names: transport:0 shm, 1 pipe_json, 2 zmq.
constexpr int64_t kZmq = 2;

shmpool::Expected<shmpool::Reply> call_on(int64_t transport, std::string_view command,
                                          const shmpool::Args& args = shmpool::empty_args(),
                                          std::span<const uint8_t> payload = {}) {
  if (transport == kZmq) return zmq_peer().call(command, args, payload);
  return worker(Transport(transport)).call(command, args, payload);
}

Transport transport_of(const benchmark::State& state) { return Transport(state.range(0)); }

bool fail(benchmark::State& state, const shmpool::Error& e);

// The benchmark loop of every timed case: idles idle_us before each call
// (cold calls), times each call (`call` returns the reply), then checks the
// reply outside the timed region (`check` says what is wrong with it, or
// nullptr). Returns each call's latency in us, or nullopt after a failure
// (reported to `state`). manual_time: the iteration time is the call's.
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
      fail(state, shmpool::make_error(shmpool::Category::protocol_error, "bad_reply", wrong));
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

// The checks of the replies the cases expect (nullptr: as expected).
const char* pong(const shmpool::Reply& r) {
  return r.value().AsMap()["pong"].AsBool() ? nullptr : "no pong";
}
// The small-args map (small_args_map()) echoed back.
const char* small_args_echoed(const shmpool::Reply& r) {
  return r.value().AsMap()["id"].AsInt64() == 42 ? nullptr : "echo mismatch";
}
// An `ack` of an n-byte payload.
auto acked(size_t n) {
  return [n](const shmpool::Reply& r) -> const char* {
    return r.value().AsMap()["bytes"].AsUInt64() == n ? nullptr : "wrong length";
  };
}

bool fail(benchmark::State& state, const shmpool::Error& e) {
  state.SkipWithError(e.to_string().c_str());
  return false;
}

void BM_Ping(benchmark::State& state) {
  timed_calls(
      state, [&] { return call_on(state.range(0), "ping"); }, pong);
}

void BM_PingCold(benchmark::State& state) {
  timed_calls(
      state, [&] { return call_on(state.range(0), "ping"); }, pong, 1000);
}

// The small-args case: 5 fields of mixed types.
shmpool::Args small_args_map() {
  return shmpool::make_args([](flexbuffers::Builder& b) {
    b.Int("id", 42);
    b.Double("score", 0.75);
    b.String("name", "shmpool");
    b.Bool("flag", true);
    b.Vector("tags", [&] {
      b.String("a");
      b.String("b");
    });
  });
}

void small_args(benchmark::State& state, int64_t idle_us) {
  const shmpool::Args args = small_args_map();
  timed_calls(
      state, [&] { return call_on(state.range(0), "echo", args); }, small_args_echoed, idle_us);
}

void BM_SmallArgs(benchmark::State& state) { small_args(state, 0); }
// Cold: the caller idles 1 ms before each call (the worker has gone to sleep).
void BM_SmallArgsCold(benchmark::State& state) { small_args(state, 1000); }

// The payload handed to Python, which acknowledges it (returns its length).
void payload_to_python(benchmark::State& state, int64_t idle_us) {
  const size_t n = size_t(state.range(1));
  std::vector<uint8_t> payload(n, 0x5a);
  timed_calls(
      state, [&] { return call_on(state.range(0), "ack", shmpool::empty_args(), payload); },
      acked(n), idle_us);
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(n));
}

void BM_PayloadToPython(benchmark::State& state) { payload_to_python(state, 0); }
// Cold: the caller idles 1 ms before each call.
void BM_PayloadToPythonCold(benchmark::State& state) { payload_to_python(state, 1000); }

// The payload echoed back by Python.
void BM_PayloadEcho(benchmark::State& state) {
  const size_t n = size_t(state.range(1));
  std::vector<uint8_t> payload(n, 0x5a);
  timed_calls(
      state, [&] { return call_on(state.range(0), "echo", shmpool::empty_args(), payload); },
      [&](const shmpool::Reply& r) {
        return r.payload().size() == n && (n == 0 || r.payload()[n - 1] == 0x5a) ? nullptr
                                                                                 : "echo mismatch";
      });
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(n) * 2);
}

// Bulk payloads (issue: zero-copy payloads), three ways to hand them over:
// shm in place (filled once in a PayloadBuffer, each call passes it: no
// copy), shm copy (from the caller's own memory: one copy into the arena),
// and pipe_json (base64 in JSON). Three things Python does with them: ack
// (returns the length), echo (copies it into ctx.alloc_output, returned in
// place) and numpy_sum (numpy.frombuffer(...).sum()).
enum BulkMode { kInPlace = 0, kCopy = 1, kPipe = 2, kZmqBulk = 3 };
enum BulkOp { kAck = 0, kEcho = 1, kNumpySum = 2 };

void BM_Bulk(benchmark::State& state) {
  const auto mode = BulkMode(state.range(0));
  const auto op = BulkOp(state.range(1));
  const size_t n = size_t(state.range(2));
  auto& w = worker(mode == kPipe ? Transport::pipe_json : Transport::shm);
  const int64_t transport = mode == kPipe ? 1 : mode == kZmqBulk ? kZmq : 0;
  std::vector<uint8_t> data(n);
  const double one = 1.0;
  for (size_t i = 0; i + sizeof one <= n; i += sizeof one) std::memcpy(&data[i], &one, sizeof one);
  std::span<const uint8_t> payload = data;
  shmpool::PayloadBuffer buf;
  if (mode == kInPlace) {
    auto b = w.alloc_payload(n);
    if (!b.ok()) return (void)fail(state, b.error());
    buf = std::move(b.value());
    std::memcpy(buf.begin(), data.data(), n);
    payload = buf.data();
  }
  const char* command = op == kAck ? "ack" : op == kEcho ? "echo" : "numpy_sum";
  auto bad = [&](const char* what) {
    return fail(state, shmpool::make_error(shmpool::Category::protocol_error, "bad_reply", what));
  };
  std::vector<double> lat;
  auto one_call = [&](bool timed) {
    auto t0 = Clock::now();
    auto r = call_on(transport, command, shmpool::empty_args(), payload);
    auto t1 = Clock::now();
    if (!r.ok()) return fail(state, r.error());
    // Verified outside the timed region.
    if (op == kAck && r->value().AsMap()["bytes"].AsUInt64() != n) return bad("wrong length");
    if (op == kEcho &&
        (r->payload().size() != n || !std::equal(data.begin(), data.end(), r->payload().begin())))
      return bad("echo mismatch");
    if (op == kNumpySum && r->value().AsMap()["sum"].AsDouble() != double(n / sizeof one))
      return bad("wrong sum");
    if (timed) {
      double s = std::chrono::duration<double>(t1 - t0).count();
      state.SetIterationTime(s);
      lat.push_back(s * 1e6);
    }
    return true;
  };
  if (!one_call(false)) return;  // warm-up
  for (auto _ : state) {
    if (!one_call(true)) return;
  }
  std::sort(lat.begin(), lat.end());
  if (lat.empty()) return;
  state.counters["p50_us"] = lat[lat.size() / 2];
  state.counters["p99_us"] = lat[std::min(lat.size() - 1, size_t(0.99 * double(lat.size())))];
  state.counters["p999_us"] = lat[std::min(lat.size() - 1, size_t(0.999 * double(lat.size())))];
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(n) * (op == kEcho ? 2 : 1));
}

// The machine's memcpy of the same sizes, in the same run (the bar for echo).
void BM_Memcpy(benchmark::State& state) {
  const size_t n = size_t(state.range(0));
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

// Real workloads (bench/real_handlers.py): numpy rfft returning the
// spectrum as a payload, sha256 and zlib, on the same bytes over shm,
// pipe-JSON and ZeroMQ, and the compute floor: the same function in a loop
// inside one plain Python process (bench/real_floor.py), with glibc's malloc
// defaults and with the settings a pool gives its workers. Counters: p50/p99
// end to end, handler_us (the handler's own compute, median) and faults
// (minor page faults per call, median). Each reply is checked against the
// floor's result (sha256 digest, zlib length and crc, the spectrum's DC term).
enum RealWork { kRfft = 0, kSha256 = 1, kZlib = 2 };
constexpr int64_t kFloorDefault = 3, kFloorTuned = 4;
const char* real_work_name(int64_t w) {
  return w == kRfft ? "rfft" : w == kSha256 ? "sha256" : "zlib";
}

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
      tuned ? "MALLOC_MMAP_THRESHOLD_=" + std::to_string(shmpool::kDefaultWorkerMallocThreshold) +
                  " MALLOC_TRIM_THRESHOLD_=" +
                  std::to_string(8 * shmpool::kDefaultWorkerMallocThreshold)
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
std::string reply_check(int64_t work, const shmpool::Reply& r) {
  auto m = r.value().AsMap();
  if (work == kSha256) return "\"" + m["digest"].AsString().str() + "\"";
  if (work == kZlib) return std::to_string(m["crc"].AsUInt64());
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", m["dc"].AsDouble());
  return buf;
}

void BM_Real(benchmark::State& state) {
  const int64_t work = state.range(0), transport = state.range(2);
  const size_t n = size_t(state.range(1));
  const std::vector<uint8_t> data = real_input(work, n);
  auto floor = run_floor(work, data, transport == kFloorTuned, 31);
  if (!floor) {
    state.SkipWithError("bench/real_floor.py failed");
    return;
  }
  if (transport >= kFloorDefault) {
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
  shmpool::PayloadBuffer in_place;
  if (transport == int64_t(Transport::shm)) {
    auto b = worker(Transport::shm).alloc_payload(n);
    if (!b.ok()) return (void)fail(state, b.error());
    in_place = std::move(b.value());
    std::memcpy(in_place.begin(), data.data(), n);
    payload = in_place.data();
  }
  std::vector<double> lat, handler, faults;
  for (int i = -1; i < int(state.max_iterations); ++i) {  // -1: the warm-up call
    auto t0 = Clock::now();
    auto r = call_on(transport, command, shmpool::empty_args(), payload);
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
      return (void)fail(state, shmpool::make_error(shmpool::Category::protocol_error, "bad_reply",
                                                   "result differs from the floor's: " + got +
                                                       " vs " + floor->check));
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

void real_cases(benchmark::internal::Benchmark* b) {
  b->ArgNames({"work", "bytes", "transport"});
  const std::pair<int64_t, int64_t> cases[] = {
      {kRfft, 1 << 20}, {kRfft, 8 << 20}, {kSha256, 1 << 20}, {kSha256, 8 << 20}, {kZlib, 1 << 20}};
  for (auto [w, n] : cases)
    for (int64_t t :
         {int64_t(Transport::shm), int64_t(Transport::pipe_json), kZmq, kFloorDefault, kFloorTuned})
      b->Args({w, n, t});
}

void bulk_cases(benchmark::internal::Benchmark* b) {
  b->ArgNames({"mode", "op", "bytes"});
  for (int64_t op : {kAck, kEcho, kNumpySum})
    for (int64_t n : {int64_t(64) << 10, int64_t(1) << 20, int64_t(16) << 20, int64_t(64) << 20})
      for (int64_t mode : {kInPlace, kCopy, kPipe, kZmqBulk}) b->Args({mode, op, n});
}

void transports(benchmark::internal::Benchmark* b) {
  b->ArgNames({"transport"})->Arg(int(Transport::shm))->Arg(int(Transport::pipe_json))->Arg(kZmq);
}
// Pools: shm, pipe_json and ZeroMQ workers. Worker start-up: shm and pipe_json.
void pool_transports(benchmark::internal::Benchmark* b) {
  b->ArgNames({"transport"})->Arg(int(Transport::shm))->Arg(int(Transport::pipe_json))->Arg(kZmq);
}
void pool_call_cases(benchmark::internal::Benchmark* b) {
  b->ArgNames({"transport", "payload"});
  for (int64_t n : {int64_t(0), int64_t(64) << 10, int64_t(1) << 20, int64_t(16) << 20}) {
    b->Args({int64_t(Transport::shm), n})
        ->Args({int64_t(Transport::pipe_json), n})
        ->Args({kZmq, n});
  }
}
void pool_cold_cases(benchmark::internal::Benchmark* b) {
  b->ArgNames({"transport", "payload"});
  for (int64_t n :
       {int64_t(-1), int64_t(0), int64_t(64) << 10, int64_t(1) << 20, int64_t(16) << 20}) {
    b->Args({int64_t(Transport::shm), n})
        ->Args({int64_t(Transport::pipe_json), n})
        ->Args({kZmq, n});
  }
}
void startup_transports(benchmark::internal::Benchmark* b) {
  b->ArgNames({"transport"})->Arg(int(Transport::shm))->Arg(int(Transport::pipe_json));
}
void cold_payload_sizes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"transport", "bytes"});
  for (int64_t n : {int64_t(64) << 10, int64_t(1) << 20, int64_t(16) << 20}) {
    b->Args({int64_t(Transport::shm), n})
        ->Args({int64_t(Transport::pipe_json), n})
        ->Args({kZmq, n});
  }
}
void payload_sizes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"transport", "bytes"});
  for (int64_t n : {64, 4096, 65536, 1 << 20}) {
    b->Args({int64_t(Transport::shm), n})
        ->Args({int64_t(Transport::pipe_json), n})
        ->Args({kZmq, n});
  }
}

}  // namespace

// ---- pools ----

// The baseline pool: pipe-JSON workers behind a mutex-and-condvar free list,
// the way the pool shmpool replaces handed out its workers.
class PipeJsonPool {
 public:
  explicit PipeJsonPool(uint32_t size) {
    for (uint32_t i = 0; i < size; ++i) {
      shmpool::WorkerOptions o;
      o.transport = Transport::pipe_json;
      auto w = shmpool::Worker::start(o);
      if (!w.ok()) {
        std::fprintf(stderr, "cannot start worker: %s\n", w.error().to_string().c_str());
        std::exit(1);
      }
      workers_.push_back(std::move(w.value()));
      free_.push_back(workers_.back().get());
    }
  }
  shmpool::Expected<shmpool::Reply> call(std::string_view command,
                                         const shmpool::Args& args = shmpool::empty_args(),
                                         std::span<const uint8_t> payload = {}) {
    shmpool::Worker* w;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return !free_.empty(); });
      w = free_.back();
      free_.pop_back();
    }
    auto r = w->call(command, args, payload);
    if (r.ok()) r->own_payload();  // the worker's ring is reused once it is free again
    {
      std::lock_guard lock(mu_);
      free_.push_back(w);
    }
    cv_.notify_one();
    return r;
  }

 private:
  std::vector<std::unique_ptr<shmpool::Worker>> workers_;
  std::vector<shmpool::Worker*> free_;
  std::mutex mu_;
  std::condition_variable cv_;
};

constexpr uint32_t kPoolSize = 2;

shmpool::Pool& shm_pool() {
  static std::unique_ptr<shmpool::Pool> pool = [] {
    shmpool::PoolConfig c;
    c.name = "bench-" + std::to_string(::getpid());
    c.size = kPoolSize;
    c.max_overflow = 0;
    auto p = shmpool::Pool::start(c);
    if (!p.ok()) {
      std::fprintf(stderr, "cannot start pool: %s\n", p.error().to_string().c_str());
      std::exit(1);
    }
    return std::move(p.value());
  }();
  return *pool;
}

// The same pool served by another process (`shmpool serve`) and called
// through a Client: the cross-process path, same size and wait strategy.
struct ServedPool {
  pid_t pid = -1;
  std::unique_ptr<shmpool::Client> client;
  ServedPool() {
    const std::string name = "bench-served-" + std::to_string(::getpid());
    const std::string size = std::to_string(kPoolSize);
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) std::exit(1);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    const char* argv[] = {SHMPOOL_CLI,  "serve",          "--name", name.c_str(), "--size",
                          size.c_str(), "--max-overflow", "0",      nullptr};
    if (posix_spawn(&pid, SHMPOOL_CLI, &fa, nullptr, const_cast<char**>(argv), environ) != 0) {
      std::fprintf(stderr, "cannot start %s serve\n", SHMPOOL_CLI);
      std::exit(1);
    }
    posix_spawn_file_actions_destroy(&fa);
    ::close(fds[1]);
    char line[256] = {};
    FILE* out = ::fdopen(fds[0], "r");
    const bool ready = std::fgets(line, sizeof line, out) && std::strstr(line, "serving pool");
    std::fclose(out);
    auto c = ready ? shmpool::Client::attach(name)
                   : shmpool::Expected<std::unique_ptr<shmpool::Client>>(shmpool::make_error(
                         shmpool::Category::worker_error, "serve_failed", line));
    if (!c.ok()) {
      std::fprintf(stderr, "cannot attach: %s\n", c.error().to_string().c_str());
      std::exit(1);
    }
    client = std::move(c.value());
  }
  ~ServedPool() {
    client.reset();
    ::kill(pid, SIGTERM);
    int status;
    ::waitpid(pid, &status, 0);
  }
};

ServedPool& served_pool() {
  static ServedPool pool;
  return pool;
}

PipeJsonPool& pipe_pool() {
  static PipeJsonPool pool(kPoolSize);
  return pool;
}

// The ZeroMQ pool: kPoolSize worker processes; each calling thread has its
// own REQ socket, to worker (thread index mod kPoolSize).
ZmqCaller& zmq_pool_caller(int thread_index) {
  static std::vector<std::unique_ptr<ZmqWorkerProcess>> workers = [] {
    std::vector<std::unique_ptr<ZmqWorkerProcess>> w;
    for (uint32_t i = 0; i < kPoolSize; ++i) w.push_back(std::make_unique<ZmqWorkerProcess>(1 + i));
    return w;
  }();
  thread_local std::unique_ptr<ZmqCaller> caller;
  const std::string& endpoint = workers[size_t(thread_index) % kPoolSize]->endpoint();
  if (!caller || caller->endpoint() != endpoint) caller = std::make_unique<ZmqCaller>(endpoint);
  return *caller;
}

// One call on the pool of `transport` from benchmark thread `thread_index`.
shmpool::Expected<shmpool::Reply> pool_call(int64_t transport, int thread_index,
                                            std::string_view command,
                                            const shmpool::Args& args = shmpool::empty_args(),
                                            std::span<const uint8_t> payload = {}) {
  if (transport == kZmq) return zmq_pool_caller(thread_index).call(command, args, payload);
  if (Transport(transport) == Transport::pipe_json) return pipe_pool().call(command, args, payload);
  shmpool::ExecOptions o;
  o.payload = payload;
  return shm_pool().execute_anonymous(command, args, o);
}

shmpool::Expected<shmpool::Reply> pool_ping(int64_t transport, int thread_index = 0) {
  return pool_call(transport, thread_index, "ping");
}

// One caller, pool of 2: the round trip including checkout and checkin.
void BM_PoolPing(benchmark::State& state) {
  const int64_t t = state.range(0);
  timed_calls(
      state, [&] { return pool_ping(t); }, pong);
}

// BM_PoolPing's call from a second process: checkout, rings and checkin
// through the shared segment alone.
void BM_ClientPing(benchmark::State& state) {
  shmpool::Client& client = *served_pool().client;
  timed_calls(
      state, [&] { return client.execute_anonymous("ping"); }, pong);
}

// N caller threads on a pool of 2 workers, each timing its calls: calls/s
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

void BM_PoolThroughput(benchmark::State& state) {
  const int64_t t = state.range(0);
  pool_calls(
      state, [&] { return pool_ping(t, state.thread_index()); }, pong);
}

// The other cases under 1/4/16 callers: payload:0 is the small-args echo,
// payload:N hands N bytes (the caller's own buffer) to Python and gets the
// ack, payload:-1 (cold only) is the ping. bytes_per_second counts the payload.
void pool_case(benchmark::State& state, int64_t idle_us) {
  const int64_t t = state.range(0);
  if (state.range(1) < 0) {
    pool_calls(
        state, [&] { return pool_ping(t, state.thread_index()); }, pong, idle_us);
    return;
  }
  const size_t n = size_t(state.range(1));
  if (n == 0) {
    const shmpool::Args args = small_args_map();
    pool_calls(
        state, [&] { return pool_call(t, state.thread_index(), "echo", args); }, small_args_echoed,
        idle_us);
    return;
  }
  const std::vector<uint8_t> payload(n, 0x5a);
  pool_calls(
      state,
      [&] { return pool_call(t, state.thread_index(), "ack", shmpool::empty_args(), payload); },
      acked(n), idle_us);
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(n));
}

void BM_PoolCalls(benchmark::State& state) { pool_case(state, 0); }
// Cold: every caller idles 1 ms before each call (calls/s then counts the idling).
void BM_PoolCallsCold(benchmark::State& state) { pool_case(state, 1000); }

// Uncontended checkout + checkin of a slot in the segment (no worker).
void BM_CheckoutCheckin(benchmark::State& state) {
  const std::string name = "bench-slots-" + std::to_string(::getpid());
  std::unique_ptr<shmpool::ipc::Segment> seg;
  if (shmpool::ipc::Segment::create(name, shmpool::ipc::Geometry{4, 0, 4096, 4096}, &seg) !=
      shmpool::ipc::Errc::ok) {
    state.SkipWithError("cannot create segment");
    return;
  }
  for (uint32_t i = 0; i < 4; ++i) {
    shmpool::ipc::set_state(*seg, i, shmpool::ipc::state_bit(shmpool::ipc::SlotState::empty),
                            shmpool::ipc::SlotState::idle);
  }
  for (auto _ : state) {
    uint64_t word;
    if (!shmpool::ipc::try_checkout(*seg, 0, 1, &word) || !shmpool::ipc::checkin(*seg, 0, word)) {
      state.SkipWithError("checkout failed");
      break;
    }
  }
  seg.reset();
  shmpool::ipc::Segment::remove(name);
}

// Spawn to ready: Worker::start until the worker's hello arrived.
void BM_WorkerStartup(benchmark::State& state) {
  for (auto _ : state) {
    shmpool::WorkerOptions o;
    o.transport = transport_of(state);
    auto t0 = Clock::now();
    auto w = shmpool::Worker::start(o);
    auto t1 = Clock::now();
    if (!w.ok()) {
      fail(state, w.error());
      return;
    }
    state.SetIterationTime(std::chrono::duration<double>(t1 - t0).count());
    (*w)->stop();
  }
}

// The headline ratios: 5 repetitions each, the tables take the median p50.
BENCHMARK(BM_Ping)->Apply(transports)->UseManualTime()->Repetitions(5);
BENCHMARK(BM_PingCold)->Apply(transports)->UseManualTime()->Iterations(300);
BENCHMARK(BM_SmallArgs)->Apply(transports)->UseManualTime();
BENCHMARK(BM_SmallArgsCold)->Apply(transports)->UseManualTime()->Iterations(300);
BENCHMARK(BM_PayloadToPython)->Apply(payload_sizes)->UseManualTime();
BENCHMARK(BM_PayloadToPythonCold)->Apply(cold_payload_sizes)->UseManualTime()->Iterations(30);
BENCHMARK(BM_PayloadEcho)->Apply(payload_sizes)->UseManualTime();
BENCHMARK(BM_Bulk)->Apply(bulk_cases)->UseManualTime()->MinTime(0.2);
BENCHMARK(BM_Memcpy)
    ->ArgNames({"bytes"})
    ->Arg(64 << 10)
    ->Arg(1 << 20)
    ->Arg(16 << 20)
    ->Arg(64 << 20)
    ->UseManualTime()
    ->MinTime(0.2);
BENCHMARK(BM_Real)
    ->Apply(real_cases)
    ->UseManualTime()
    ->Iterations(31)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_PoolPing)->Apply(pool_transports)->UseManualTime()->Repetitions(5);
BENCHMARK(BM_ClientPing)->UseManualTime();
BENCHMARK(BM_PoolThroughput)
    ->Apply(pool_transports)
    ->Threads(1)
    ->Threads(4)
    ->Threads(16)
    ->UseRealTime();
BENCHMARK(BM_PoolCalls)->Apply(pool_call_cases)->Threads(1)->Threads(4)->Threads(16)->UseRealTime();
BENCHMARK(BM_PoolCallsCold)
    ->Apply(pool_cold_cases)
    ->Threads(1)
    ->Threads(4)
    ->Threads(16)
    ->UseRealTime()
    ->MinTime(0.2);
BENCHMARK(BM_CheckoutCheckin);
BENCHMARK(BM_WorkerStartup)
    ->Apply(startup_transports)
    ->UseManualTime()
    ->Iterations(10)
    ->Unit(benchmark::kMillisecond);

namespace {

// m[k], or `fallback` when the key is not there.
template <class Map, class V = typename Map::mapped_type>
V find_or(const Map& m, const typename Map::key_type& k, V fallback = V{}) {
  auto it = m.find(k);
  return it == m.end() ? fallback : it->second;
}

// Collects runs to print the shm vs pipe_json table after the console output.
class TableReporter : public benchmark::ConsoleReporter {
 public:
  // Also writes the runs as Google Benchmark JSON to `json_path` (if not
  // empty): each load level of a --load run has a file of its own.
  explicit TableReporter(const std::string& json_path = "")
      : ConsoleReporter(isatty(STDOUT_FILENO) ? OO_ColorTabular : OO_Tabular) {
    if (json_path.empty()) return;
    json_file_.open(json_path);
    if (!json_file_) {
      std::fprintf(stderr, "cannot write %s\n", json_path.c_str());
      std::exit(1);
    }
    json_ = std::make_unique<benchmark::JSONReporter>();
    json_->SetOutputStream(&json_file_);
    json_->SetErrorStream(&std::cerr);
  }
  bool ReportContext(const Context& context) override {
    if (json_) json_->ReportContext(context);
    return ConsoleReporter::ReportContext(context);
  }
  void Finalize() override {
    if (json_) json_->Finalize();
    ConsoleReporter::Finalize();
  }

  struct Row {
    double p50 = 0, p99 = 0, mean_us = 0, items_per_s = 0;
  };
  std::map<std::string, std::map<std::string, Row>> rows;  // case -> transport -> row
  std::vector<std::string> order;
  // BM_Bulk: (op, bytes) -> mode -> p50 us; BM_Memcpy: bytes -> p50 us.
  std::map<std::pair<int64_t, int64_t>, std::map<int64_t, double>> bulk;
  std::map<int64_t, double> memcpy_p50;
  // BM_Real: (work, bytes) -> transport (0-2, 3/4 the floors) -> figures.
  struct RealRow {
    double p50 = 0, p99 = 0, handler = 0, faults = 0;
  };
  std::map<std::pair<int64_t, int64_t>, std::map<int64_t, RealRow>> real;

  void PrintRealTable() const {
    if (real.empty()) return;
    std::printf(
        "\n| work | bytes | floor (default malloc): compute p50 us, faults | floor (pool's malloc) "
        "| "
        "shm: p50 / p99 us, handler us, faults | pipe_json: p50 us, handler us, faults | zmq: p50 "
        "us, handler us, faults | shm handler / floor | shm p50 - floor |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (const auto& [key, t] : real) {
      const RealRow fd = find_or(t, kFloorDefault), ft = find_or(t, kFloorTuned),
                    shm = find_or(t, 0), pipe = find_or(t, 1), zmq = find_or(t, kZmq);
      const double floor_us = std::min(fd.p50 > 0 ? fd.p50 : 1e300, ft.p50 > 0 ? ft.p50 : 1e300);
      std::printf(
          "| %s | %lld MiB | %.0f, %.0f | %.0f, %.0f | %.0f / %.0f, %.0f, %.0f | %.0f, %.0f, %.0f "
          "| %.0f, %.0f, %.0f | %.2f | %+.0f us |\n",
          real_work_name(key.first), (long long)(key.second >> 20), fd.p50, fd.faults, ft.p50,
          ft.faults, shm.p50, shm.p99, shm.handler, shm.faults, pipe.p50, pipe.handler, pipe.faults,
          zmq.p50, zmq.handler, zmq.faults, shm.handler / floor_us, shm.p50 - floor_us);
    }
  }

  static int64_t arg(const std::string& name, const char* key) {
    auto p = name.find(key);
    return p == std::string::npos ? -1 : std::atoll(name.c_str() + p + std::strlen(key));
  }

  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    if (json_) json_->ReportRuns(runs);
    for (const Run& r : runs) {
      // Repeated benchmarks (the headline pings) count by their median,
      // reported after the repetitions: it replaces the last repetition.
      const bool median = r.run_type == Run::RT_Aggregate && r.aggregate_name == "median";
      if (r.error_occurred || (r.run_type != Run::RT_Iteration && !median)) continue;
      std::string name = median ? r.run_name.str() : r.benchmark_name();
      if (name.rfind("BM_Real/", 0) == 0) {
        auto get = [&](const char* k) {
          auto c = r.counters.find(k);
          return c == r.counters.end() ? 0.0 : c->second.value;
        };
        real[{arg(name, "work:"), arg(name, "bytes:")}][arg(name, "transport:")] = {
            get("p50_us"), get("p99_us"), get("handler_us"), get("faults")};
        continue;
      }
      if (auto c = r.counters.find("p50_us"); c != r.counters.end()) {
        if (name.rfind("BM_Bulk/", 0) == 0) {
          bulk[{arg(name, "op:"), arg(name, "bytes:")}][arg(name, "mode:")] = c->second.value;
          continue;
        }
        if (name.rfind("BM_Memcpy/", 0) == 0) {
          memcpy_p50[arg(name, "bytes:")] = c->second.value;
          continue;
        }
      }
      std::string transport = name.find("transport:0") != std::string::npos   ? "shm"
                              : name.find("transport:1") != std::string::npos ? "pipe_json"
                              : name.find("transport:2") != std::string::npos ? "zmq"
                                                                              : "-";
      std::string key = name;
      for (const char* t : {"transport:0", "transport:1", "transport:2"}) {
        if (auto p = key.find(t); p != std::string::npos) key.erase(p, std::strlen(t));
      }
      while (key.find("//") != std::string::npos) key.replace(key.find("//"), 2, "/");
      if (key.back() == '/') key.pop_back();
      if (auto p = key.find("/manual_time"); p != std::string::npos) key.erase(p);
      if (auto p = key.find("/iterations:"); p != std::string::npos) key.erase(p);
      if (auto p = key.find("/repeats:"); p != std::string::npos) key.erase(p);
      if (auto p = key.find("/min_time:"); p != std::string::npos)
        key.erase(p, key.find('/', p + 1) == std::string::npos ? std::string::npos
                                                               : key.find('/', p + 1) - p);
      Row row;
      auto c = r.counters.find("p50_us");
      if (c != r.counters.end()) row.p50 = c->second.value;
      c = r.counters.find("p99_us");
      if (c != r.counters.end()) row.p99 = c->second.value;
      row.mean_us = r.GetAdjustedRealTime() * (r.time_unit == benchmark::kMicrosecond   ? 1
                                               : r.time_unit == benchmark::kMillisecond ? 1000
                                                                                        : 0.001);
      if (auto it = r.counters.find("items_per_second"); it != r.counters.end()) {
        row.items_per_s = it->second.value;
      }
      if (!rows.count(key)) order.push_back(key);
      rows[key][transport] = row;
    }
  }

  void PrintBulkTable() const {
    if (bulk.empty()) return;
    static const char* ops[] = {"ack (handed to Python)", "echo (returned in place)", "numpy sum"};
    auto size = [](int64_t n) {
      return n >= (1 << 20) ? std::to_string(n >> 20) + " MiB" : std::to_string(n >> 10) + " KiB";
    };
    std::printf(
        "\n| payload | bytes | shm in place p50 (us) | shm copy p50 (us) | pipe_json p50 (us) | "
        "zmq p50 (us) | in place vs pipe_json | in place vs zmq |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for (const auto& [key, modes] : bulk) {
      const double in_place = find_or(modes, kInPlace), copy = find_or(modes, kCopy),
                   pipe = find_or(modes, kPipe), zmq = find_or(modes, kZmqBulk);
      std::printf("| %s | %s | %.1f | %.1f | %.1f | %.1f | %.0fx | %.1fx |\n", ops[key.first],
                  size(key.second).c_str(), in_place, copy, pipe, zmq,
                  in_place > 0 ? pipe / in_place : 0.0, in_place > 0 ? zmq / in_place : 0.0);
    }
    for (const auto& [n, p50] : memcpy_p50) {
      auto echo = bulk.find({kEcho, n});
      if (echo == bulk.end() || !echo->second.count(kInPlace) || p50 <= 0) continue;
      const double echo_us = echo->second.at(kInPlace);
      std::printf(
          "| memcpy (this machine) | %s | %.1f | | | | echo in place at %.0f%% of memcpy | |\n",
          size(n).c_str(), p50, echo_us > 0 ? 100.0 * p50 / echo_us : 0.0);
    }
  }

  void PrintTable() const {
    PrintBulkTable();
    PrintRealTable();
    std::printf(
        "\n| case | shm p50 (us) | shm p99 (us) | pipe_json p50 (us) | pipe_json p99 (us) | "
        "zmq p50 (us) | zmq p99 (us) | vs pipe_json | vs zmq |\n");
    std::printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (const auto& key : order) {
      const auto& m = rows.at(key);
      auto shm = m.find("shm"), pipe = m.find("pipe_json"), zmq = m.find("zmq");
      if (shm == m.end() || pipe == m.end() || shm->second.p50 == 0) continue;
      const Row z = zmq == m.end() ? Row{} : zmq->second;
      auto cell = [](double v) {
        return v > 0 ? std::to_string(v).substr(0, std::to_string(v).find('.') + 3)
                     : std::string("-");
      };
      std::printf("| %s | %.2f | %.2f | %.2f | %.2f | %s | %s | %.1fx | %s |\n", key.c_str(),
                  shm->second.p50, shm->second.p99, pipe->second.p50, pipe->second.p99,
                  cell(z.p50).c_str(), cell(z.p99).c_str(), pipe->second.p50 / shm->second.p50,
                  z.p50 > 0 ? (cell(z.p50 / shm->second.p50).substr(0, 5) + "x").c_str() : "-");
    }
    bool header = false;
    for (const auto& key : order) {
      const auto& m = rows.at(key);
      auto shm = m.find("shm"), pipe = m.find("pipe_json"), zmq = m.find("zmq");
      if (shm == m.end() || pipe == m.end() || shm->second.items_per_s == 0) continue;
      if (!header) {
        std::printf(
            "\n| throughput | shm calls/s | pipe_json calls/s | zmq calls/s | vs pipe_json | vs "
            "zmq |\n|---|---:|---:|---:|---:|---:|\n");
        header = true;
      }
      const double z = zmq == m.end() ? 0 : zmq->second.items_per_s;
      std::printf("| %s | %.0f | %.0f | %.0f | %.1fx | %.1fx |\n", key.c_str(),
                  shm->second.items_per_s, pipe->second.items_per_s, z,
                  shm->second.items_per_s / pipe->second.items_per_s,
                  z > 0 ? shm->second.items_per_s / z : 0.0);
    }
    if (rows.count("BM_ClientPing") && rows.count("BM_PoolPing") &&
        rows.at("BM_PoolPing").count("shm")) {
      const Row& own = rows.at("BM_PoolPing").at("shm");
      const Row& other = rows.at("BM_ClientPing").begin()->second;
      std::printf(
          "\n| pool ping over shm | p50 (us) | p99 (us) |\n|---|---:|---:|\n"
          "| from the owner process | %.2f | %.2f |\n"
          "| from another process (Client) | %.2f | %.2f |\n"
          "| other / owner | %.2fx | %.2fx |\n",
          own.p50, own.p99, other.p50, other.p99, own.p50 > 0 ? other.p50 / own.p50 : 0.0,
          own.p99 > 0 ? other.p99 / own.p99 : 0.0);
    }
    header = false;
    for (const auto& key : order) {
      const auto& m = rows.at(key);
      for (const auto& [transport, row] : m) {
        if (row.p50 != 0 || row.items_per_s != 0 || key == "BM_ClientPing") continue;
        if (!header) {
          std::printf("\n| other | mean |\n|---|---:|\n");
          header = true;
        }
        std::printf("| %s%s | %.3f us |\n", key.c_str(),
                    m.size() > 1 ? (" (" + transport + ")").c_str() : "", row.mean_us);
      }
    }
  }

  // The same cases at each load level (busy loops beside the benchmark), one
  // row per case and level: latency cases by p50/p99, throughput by calls/s.
  static void PrintLoadTable(const std::vector<int>& levels,
                             const std::vector<std::unique_ptr<TableReporter>>& runs) {
    auto cell = [](double v) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.2f", v);
      return v > 0 ? std::string(buf) : std::string("-");
    };
    auto get = [](const TableReporter& t, const std::string& key, const char* transport) {
      return find_or(find_or(t.rows, key), transport);
    };
    std::printf(
        "\n| case | busy loops | shm p50 (us) | shm p99 (us) | pipe_json p50 (us) | pipe_json p99 "
        "(us) | zmq p50 (us) | zmq p99 (us) | pipe_json / shm p50 | pipe_json / shm p99 |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (const auto& key : runs.front()->order) {
      for (size_t i = 0; i < levels.size(); ++i) {
        const Row shm = get(*runs[i], key, "shm"), pipe = get(*runs[i], key, "pipe_json"),
                  zmq = get(*runs[i], key, "zmq");
        if (shm.p50 == 0 || shm.items_per_s != 0) continue;
        std::printf("| %s | %d | %.2f | %.2f | %.2f | %.2f | %s | %s | %.1fx | %.1fx |\n",
                    key.c_str(), levels[i], shm.p50, shm.p99, pipe.p50, pipe.p99,
                    cell(zmq.p50).c_str(), cell(zmq.p99).c_str(), pipe.p50 / shm.p50,
                    shm.p99 > 0 ? pipe.p99 / shm.p99 : 0.0);
      }
    }
    bool header = false;
    for (const auto& key : runs.front()->order) {
      for (size_t i = 0; i < levels.size(); ++i) {
        const Row shm = get(*runs[i], key, "shm"), pipe = get(*runs[i], key, "pipe_json"),
                  zmq = get(*runs[i], key, "zmq");
        if (shm.items_per_s == 0) continue;
        if (!header) {
          std::printf(
              "\n| throughput | busy loops | shm calls/s | pipe_json calls/s | zmq calls/s | shm / "
              "pipe_json | shm / zmq | shm p99 (us) | pipe_json p99 (us) |\n"
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
          header = true;
        }
        std::printf("| %s | %d | %.0f | %.0f | %.0f | %.1fx | %.1fx | %.1f | %.1f |\n", key.c_str(),
                    levels[i], shm.items_per_s, pipe.items_per_s, zmq.items_per_s,
                    pipe.items_per_s > 0 ? shm.items_per_s / pipe.items_per_s : 0.0,
                    zmq.items_per_s > 0 ? shm.items_per_s / zmq.items_per_s : 0.0, shm.p99,
                    pipe.p99);
      }
    }
  }

 private:
  std::ofstream json_file_;
  std::unique_ptr<benchmark::JSONReporter> json_;
};

// "0,1,2" -> {0, 1, 2}; exits on anything else.
std::vector<int> parse_levels(const std::string& list) {
  std::vector<int> levels;
  size_t at = 0;
  while (at <= list.size()) {
    const size_t comma = std::min(list.find(',', at), list.size());
    const std::string item = list.substr(at, comma - at);
    char* end = nullptr;
    const long n = std::strtol(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || n < 0 || n > 64) {
      std::fprintf(stderr, "--load: expected a list of busy-loop counts like 0,1,2, got '%s'\n",
                   list.c_str());
      std::exit(2);
    }
    levels.push_back(int(n));
    at = comma + 1;
  }
  return levels;
}

// The cases the --load table compares (unless --benchmark_filter says otherwise).
constexpr const char* kLoadCases =
    "--benchmark_filter=BM_Ping/|BM_PingCold/|BM_SmallArgs/|BM_PoolPing/|"
    "BM_PoolThroughput/.*/threads:[14]$";

}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> args(argv, argv + argc);
  bool demo = false, filtered = false;
  std::vector<int> levels;  // --load: busy loops beside each run
  std::string filter_arg, json_out;
  for (auto it = args.begin(); it != args.end();) {
    const std::string a = *it;
    if (a == "--demo") {
      demo = true;
      it = args.erase(it);
    } else if (a == "--load" && it + 1 != args.end()) {
      levels = parse_levels(*(it + 1));
      it = args.erase(it, it + 2);
    } else if (a.rfind("--load=", 0) == 0) {
      levels = parse_levels(a.substr(7));
      it = args.erase(it);
    } else {
      filtered = filtered || a.rfind("--benchmark_filter=", 0) == 0;
      if (a.rfind("--benchmark_out=", 0) == 0) json_out = a.substr(16);
      ++it;
    }
  }
  if (demo) {
    filter_arg =
        "--benchmark_filter=BM_Ping|BM_SmallArgs|BM_Bulk|BM_Memcpy|BM_PoolPing|BM_ClientPing|"
        "BM_PoolThroughput|"
        "BM_CheckoutCheckin|BM_WorkerStartup";
    args.push_back(filter_arg.data());
  } else if (!levels.empty() && !filtered) {
    filter_arg = kLoadCases;
    args.push_back(filter_arg.data());
  }
  if (!levels.empty()) {
    // Each level writes its own JSON (the reporter tees it): Google
    // Benchmark's --benchmark_out would rewrite one file per level.
    std::erase_if(args, [](char* a) {
      return std::strncmp(a, "--benchmark_out=", 16) == 0 ||
             std::strncmp(a, "--benchmark_out_format=", 23) == 0;
    });
  }
  int n = int(args.size());
  benchmark::Initialize(&n, args.data());
  // The machine, in the JSON output's context (Google Benchmark adds CPUs,
  // MHz and caches itself).
  {
    std::ifstream cpuinfo("/proc/cpuinfo");
    for (std::string line; std::getline(cpuinfo, line);) {
      if (line.rfind("model name", 0) == 0) {
        benchmark::AddCustomContext("cpu_model", line.substr(line.find(':') + 2));
        break;
      }
    }
    std::ifstream release("/proc/sys/kernel/osrelease");
    std::string kernel;
    std::getline(release, kernel);
    benchmark::AddCustomContext("kernel", kernel);
    benchmark::AddCustomContext("compiler", "g++ " __VERSION__);
    benchmark::AddCustomContext("build_flags", SHMPOOL_BUILD_FLAGS);
    benchmark::AddCustomContext("wait_strategy",
                                "hybrid (poll while polling pays, at most 50 us; then futex)");
    benchmark::AddCustomContext("python", SHMPOOL_PYTHON);
  }
  if (levels.empty()) {
    TableReporter reporter;
    benchmark::RunSpecifiedBenchmarks(&reporter);
    reporter.PrintTable();
    benchmark::Shutdown();
    return 0;
  }
  // --load: the same cases beside 0, 1, ... busy loops, one run each, then
  // one table across the levels.
  std::vector<std::unique_ptr<TableReporter>> runs;
  for (int level : levels) {
    std::string path;
    if (!json_out.empty()) {
      const size_t dot = json_out.rfind(".json");
      path = levels.size() == 1 ? json_out
             : dot == std::string::npos
                 ? json_out + "-load" + std::to_string(level)
                 : json_out.substr(0, dot) + "-load" + std::to_string(level) + ".json";
    }
    std::printf("\n== with %d busy loop%s beside the benchmark ==\n", level, level == 1 ? "" : "s");
    std::fflush(stdout);
    runs.push_back(std::make_unique<TableReporter>(path));
    {
      shmpool::bench::BusyLoops loops(level);
      benchmark::RunSpecifiedBenchmarks(runs.back().get());
    }
    runs.back()->PrintTable();
  }
  TableReporter::PrintLoadTable(levels, runs);
  benchmark::Shutdown();
  return 0;
}
