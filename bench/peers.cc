#include "bench/peers.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "bench/pipe_json_pool.h"
#include "bench/served_pool.h"
#include "bench/zmq_peer.h"
#include "shmpool/pool.h"

namespace shmpool::bench {
namespace {

// The single-worker ZeroMQ peer (BM_Ping etc.), called from the main thread.
ZmqCaller& zmq_peer() {
  static ZmqWorkerProcess worker(0);
  static ZmqCaller caller(worker.endpoint());
  return caller;
}

Pool& shm_pool() {
  static std::unique_ptr<Pool> pool = [] {
    PoolConfig c;
    c.name = "bench-" + std::to_string(::getpid());
    c.size = kPoolSize;
    c.max_overflow = 0;
    auto p = Pool::start(c);
    if (!p.ok()) {
      std::fprintf(stderr, "cannot start pool: %s\n", p.error().to_string().c_str());
      std::exit(1);
    }
    return std::move(p.value());
  }();
  return *pool;
}

PipeJsonPool& pipe_pool() {
  static PipeJsonPool pool(kPoolSize);
  return pool;
}

// The ZeroMQ pool: kPoolSize worker processes; each calling thread has its
// own REQ socket, to worker (thread index mod kPoolSize).
ZmqCaller& zmq_pool_caller(int thread_index) {
  thread_local std::unique_ptr<ZmqCaller> caller;
  const std::string& endpoint = zmq_pool_endpoint(uint32_t(thread_index) % kPoolSize);
  if (!caller || caller->endpoint() != endpoint) caller = std::make_unique<ZmqCaller>(endpoint);
  return *caller;
}

}  // namespace

const std::string& zmq_pool_endpoint(uint32_t i) {
  static std::vector<std::unique_ptr<ZmqWorkerProcess>> workers = [] {
    std::vector<std::unique_ptr<ZmqWorkerProcess>> w;
    for (uint32_t k = 0; k < kPoolSize; ++k) w.push_back(std::make_unique<ZmqWorkerProcess>(1 + k));
    return w;
  }();
  return workers.at(i)->endpoint();
}

const char* peer_name(Peer p) {
  switch (p) {
    case Peer::shm:
      return "shm";
    case Peer::pipe_json:
      return "pipe_json";
    case Peer::zmq:
      return "zmq";
    case Peer::grpc:
      return "grpc";
  }
  return "?";
}

CaseName case_name(const char* family, Peer p, std::vector<std::string> params, int64_t bytes) {
  return {family, peer_name(p), std::move(params), int(p), -1, bytes};
}

Worker& worker(Transport t) {
  static std::map<Transport, std::unique_ptr<Worker>> workers;
  auto& w = workers[t];
  if (!w) {
    WorkerOptions o;
    o.transport = t;
    o.request_ring_bytes = 8u << 20;
    o.response_ring_bytes = 8u << 20;
    o.payload_arena_bytes = 256u << 20;  // 64 MiB in place + echo output + a copy
    o.handler_modules = {SHMPOOL_BENCH_DIR "/real_handlers.py"};  // BM_Real
    // The pipe-JSON peer stands for a plain Python process: glibc's malloc
    // defaults (shm workers get the pool's, see BM_Real).
    if (t == Transport::pipe_json) o.worker_malloc_threshold = 0;
    auto started = Worker::start(o);
    if (!started.ok()) {
      std::fprintf(stderr, "cannot start worker: %s\n", started.error().to_string().c_str());
      std::exit(1);
    }
    w = std::move(started.value());
  }
  return *w;
}

Expected<Reply> call_worker(Peer peer, std::string_view command, const Args& args,
                            std::span<const uint8_t> payload) {
  if (peer == Peer::zmq) return zmq_peer().call(command, args, payload);
  return worker(peer == Peer::shm ? Transport::shm : Transport::pipe_json)
      .call(command, args, payload);
}

Expected<Reply> call_pool(Peer peer, int thread_index, std::string_view command, const Args& args,
                          std::span<const uint8_t> payload) {
  if (peer == Peer::zmq) return zmq_pool_caller(thread_index).call(command, args, payload);
  if (peer == Peer::pipe_json) return pipe_pool().call(command, args, payload);
  ExecOptions o;
  o.payload = payload;
  return shm_pool().execute_anonymous(command, args, o);
}

Client& served_pool_client() {
  static ServedPool pool(kPoolSize);
  return *pool.client;
}

}  // namespace shmpool::bench
