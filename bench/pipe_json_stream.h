// The pipe-JSON peer of the stream cases: bench/pipe_json_stream.py on a
// pipe pair, in the pipe + JSON baseline's frames (a 4-byte big-endian
// length and UTF-8 JSON, bytes as base64), one request answered by a frame
// per item and an end frame. Started on first use (pipe_json_stream(),
// ready once its hello arrived; exits the benchmark if it cannot start),
// stopped when the benchmark exits (its stdin closed, reaped). One thread at
// a time; one stream at a time, read to its end before the next request.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "shmpool/error.h"

namespace shmpool::bench {

class PipeJsonStream {
 public:
  PipeJsonStream();
  ~PipeJsonStream();
  PipeJsonStream(const PipeJsonStream&) = delete;
  PipeJsonStream& operator=(const PipeJsonStream&) = delete;

  // Asks for the stream `command` ("items", "chunks") with `args`.
  Status request(std::string_view command, const nlohmann::json& args);
  // The stream's next item frame ({"id", "status", "result"[, "payload"]}),
  // valid until the next call; nullptr after the end frame. Errors: the
  // peer's error frame, a frame of another request, the peer gone or silent
  // for 30 s.
  Expected<const nlohmann::json*> next();

 private:
  // Makes `n` unread bytes readable from pos_ (reading as much as fits).
  Status fill(size_t n);

  pid_t pid_ = 0;
  int to_ = -1, from_ = -1;
  uint64_t id_ = 0;  // the current request's (the hello's: 0)
  std::vector<char> buf_;
  size_t pos_ = 0, end_ = 0;  // unread: [pos_, end_)
  nlohmann::json frame_;
};

PipeJsonStream& pipe_json_stream();

}  // namespace shmpool::bench
