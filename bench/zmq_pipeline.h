// Pipelined pings over ZeroMQ: one DEALER socket, connected to one or more
// ZeroMQ workers, keeps several requests in flight. A worker's REP socket
// takes a DEALER's requests in arrival order and answers each in turn (a
// ROUTER that replies one request at a time), so the workers need no
// change; with several, the DEALER deals requests round-robin and takes
// replies as they come. Same envelope as the REQ caller (zmq_peer.h). One
// thread.
#pragma once

#include <flatbuffers/flatbuffers.h>

#include <cstdint>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "shmpool/error.h"

namespace shmpool::bench {

class ZmqPipeline {
 public:
  // `slots` tags for the calls in flight (at most 65536).
  ZmqPipeline(const std::vector<std::string>& endpoints, uint32_t slots);

  // Sends a ping tagged `slot` (a slot not in flight).
  Status start(uint32_t slot);
  // Waits for the next reply (30 s at most); returns its slot. Errors: no
  // reply, a reply that is not a pong, or not of a call in flight.
  Expected<uint32_t> finish_one();

 private:
  zmq::socket_t sock_;
  flatbuffers::FlatBufferBuilder fbb_{256};
  std::vector<uint64_t> in_flight_;  // slot -> its request's id; 0: free
  uint64_t seq_ = 0;
};

}  // namespace shmpool::bench
