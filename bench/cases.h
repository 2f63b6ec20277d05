// The benchmark cases, registered by main in this order (the run order and
// the tables' row order):
// - worker cases (worker_cases.cc): one worker per transport, called from
//   one thread: ping, small args, payloads to Python and echoed, hot and
//   cold; bulk payloads three ways (BM_Bulk) beside the machine's memcpy;
// - the gRPC peer's ping, small args and payload echo (grpc_cases.cc), rows
//   of the worker cases' table;
// - real workloads (real_cases.cc): rfft, sha256, zlib beside the compute
//   floor of a plain Python loop;
// - pool cases (pool_cases.cc): pools of kPoolSize workers under 1/4/16
//   caller threads, the served pool from another process, a bare checkout;
// - worker start-up (worker_cases.cc);
// - async calls, streams and cancellation over shm (async_cases.cc);
// - the same streams over gRPC and pipe-JSON (stream_cases.cc);
// - pipelined pings from one thread (pipelined_cases.cc): 64 in flight
//   over ZeroMQ and gRPC's asynchronous APIs, to 1 and 2 worker processes.
#pragma once

#include <cstdint>

namespace shmpool::bench {

void register_worker_cases();
void register_grpc_cases();
void register_real_cases();
void register_pool_cases();
void register_startup_cases();
void register_async_cases();
void register_stream_cases();
void register_pipelined_cases();

// The payload sizes of BM_PayloadToPython and BM_PayloadEcho.
inline constexpr int64_t kPayloadSizes[] = {64, 4096, 65536, 1 << 20};

// BM_Bulk: three ways to hand a payload over (the peer part of the name)...
enum BulkMode { kInPlace = 0, kCopy = 1, kPipe = 2, kZmqBulk = 3 };
// ...and three things Python does with it (the next part).
enum BulkOp { kAck = 0, kEcho = 1, kNumpySum = 2 };

// BM_Real: the workloads, and the peers beyond the three transports (whose
// indices are Peer's): the compute floor with glibc's malloc defaults and
// with the pool's settings.
enum RealWork { kRfft = 0, kSha256 = 1, kZlib = 2 };
inline constexpr int kFloorDefault = 3, kFloorTuned = 4;
const char* real_work_name(int64_t work);

}  // namespace shmpool::bench
