// pipe_channel.h: the pipe + JSON baseline transport, host side. Frames are
// a 4-byte big-endian length and UTF-8 JSON; payloads and bytes are base64.
// It exists so benchmarks compare shm against the design it replaces in one
// run, with the same handlers and the same Reply/Error types.
#pragma once

#include <string>
#include <vector>

#include "pool/src/shm_channel.h"

namespace shmpool::detail {

class PipeChannel {
 public:
  PipeChannel(int to_worker, int from_worker) : out_(to_worker), in_(from_worker) {}
  Expected<Reply> await_hello(int64_t deadline_ns) { return read_reply(0, deadline_ns); }
  Expected<Reply> call(const CallSpec& spec);

 private:
  Expected<Reply> read_reply(uint64_t id, int64_t deadline_ns);
  // Errors: timeout_error/operation_timeout, worker_error/worker_crashed (EOF).
  Status read_exact(uint8_t* dst, size_t n, int64_t deadline_ns);
  int out_, in_;
  std::string buf_;
};

}  // namespace shmpool::detail
