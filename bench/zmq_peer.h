// The ZeroMQ peer: the same Python handlers behind a ZeroMQ REP socket over
// ipc://, with the same FlatBuffers envelope (encoded and decoded by the
// worker's native core): `python3 -m python_shm_worker --transport zmq-ipc`.
// Payloads go as a second message part, zero-copy on our side.
#pragma once

#include <flatbuffers/flatbuffers.h>
#include <sys/types.h>

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <zmq.hpp>

#include "shmpool/worker.h"

namespace shmpool::bench {

// The benchmark's one ZeroMQ context.
zmq::context_t& zmq_context();

// The envelope of request `id` (the FlatBuffers Request the worker's native
// core decodes), built in `fbb`.
void encode_request(flatbuffers::FlatBufferBuilder& fbb, uint64_t id, std::string_view command,
                    const Args& args);

// A reply envelope, verified and decoded (a handler's error is an Error);
// the Reply's payload is `payload` (the reply's second part, or empty).
Expected<Reply> decode_reply(const zmq::message_t& envelope, std::span<const uint8_t> payload);

// One REQ socket to a ZeroMQ worker; one thread at a time.
class ZmqCaller {
 public:
  explicit ZmqCaller(const std::string& endpoint);
  const std::string& endpoint() const { return endpoint_; }
  // The reply's payload points into the last received message: valid until
  // the next call.
  Expected<Reply> call(std::string_view command, const Args& args,
                       std::span<const uint8_t> payload);

 private:
  std::string endpoint_;
  zmq::socket_t sock_;
  flatbuffers::FlatBufferBuilder fbb_{1024};
  zmq::message_t last_payload_;
  uint64_t next_id_ = 0;
};

// A ZeroMQ worker process, bound at its own ipc:// endpoint; ready once it
// answered a ping (exits the benchmark if it does not). Its REP socket
// queues the requests of several callers fairly, so a few of them make a
// pool.
class ZmqWorkerProcess {
 public:
  explicit ZmqWorkerProcess(int index);
  ~ZmqWorkerProcess();
  ZmqWorkerProcess(const ZmqWorkerProcess&) = delete;
  ZmqWorkerProcess& operator=(const ZmqWorkerProcess&) = delete;
  const std::string& endpoint() const { return endpoint_; }

 private:
  std::string endpoint_;
  pid_t pid_ = 0;
};

}  // namespace shmpool::bench
