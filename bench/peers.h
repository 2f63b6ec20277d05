// The peers the cases call, each started on first use and kept until the
// benchmark exits (worker start is never timed):
// - one worker per transport: shm, pipe-JSON (a plain Python process's
//   malloc) and ZeroMQ, called from the benchmark's main thread;
// - a pool of kPoolSize workers per transport: the shm `Pool`, the
//   pipe-JSON pool (pipe_json_pool.h) and kPoolSize ZeroMQ workers with one
//   REQ socket per calling thread; any benchmark thread may call;
// - the shm pool served by another process (served_pool.h).
// Peers of their own kind, with their own calls: the gRPC servers
// (grpc_peer.h) and the pipe-JSON stream peer (pipe_json_stream.h).
// A peer that cannot start exits the benchmark with a message.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "bench/case_names.h"
#include "shmpool/client.h"
#include "shmpool/worker.h"

namespace shmpool::bench {

// The transport a case runs over: its name is the peer part of a case's name.
// kPeers: the three every worker and pool case runs over (call_worker,
// call_pool); gRPC's cases make their own calls (grpc_peer.h).
enum class Peer { shm, pipe_json, zmq, grpc };
inline constexpr Peer kPeers[] = {Peer::shm, Peer::pipe_json, Peer::zmq};
const char* peer_name(Peer p);

// The name of `family`'s case over peer p: family/peer/params...; `bytes`
// for the tables (case_names.h).
CaseName case_name(const char* family, Peer p, std::vector<std::string> params = {},
                   int64_t bytes = -1);

inline constexpr uint32_t kPoolSize = 2;

// The single worker of a transport (shm or pipe_json).
Worker& worker(Transport t);

// One call on the single worker of `peer`.
Expected<Reply> call_worker(Peer peer, std::string_view command, const Args& args = empty_args(),
                            std::span<const uint8_t> payload = {});

// One call on the pool of `peer` from benchmark thread `thread_index`.
Expected<Reply> call_pool(Peer peer, int thread_index, std::string_view command,
                          const Args& args = empty_args(), std::span<const uint8_t> payload = {});

// The endpoint of the ZeroMQ pool's worker i (< kPoolSize), started on first
// use (the pool cases' REQ sockets and the pipelined cases' DEALER connect to it).
const std::string& zmq_pool_endpoint(uint32_t i);

// The client of the pool another process serves (same size and wait strategy).
Client& served_pool_client();

}  // namespace shmpool::bench
