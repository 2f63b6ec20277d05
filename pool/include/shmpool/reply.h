// reply.h: what a successful call returns (shmpool::Reply), from a Worker,
// a Pool or a Client alike.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "shmpool/payload.h"
#include "shmpool/value.h"

namespace shmpool {

// A successful reply. Move-only. value() and body() are backed by a private
// copy of the verified envelope and live as long as the Reply. payload():
// above 4 KiB it is an arena block in shared memory, read in place and held
// by the Reply until it is destroyed (see payload.h); a small one from
// Worker::call over shm points into the worker's response ring and is valid
// until the next call on that Worker; from a Pool, a Client or over
// pipe_json a small one is owned by the Reply.
class Reply {
 public:
  Reply() = default;
  Reply(Reply&&) = default;
  Reply& operator=(Reply&&) = default;
  ~Reply();
  Reply(const Reply&) = delete;
  Reply& operator=(const Reply&) = delete;

  uint64_t id() const { return id_; }
  flexbuffers::Reference value() const;  // Null when the handler returned None
  std::string json() const { return to_json(value()); }
  std::span<const uint8_t> payload() const { return payload_; }
  std::span<const uint8_t> body() const { return body_; }

  // Internal construction (used by the transports).
  struct Parts;
  explicit Reply(Parts parts);
  void own_payload();  // copy an in-place payload into the Reply

 private:
  uint64_t id_ = 0;
  std::vector<uint8_t> storage_;
  std::span<const uint8_t> result_;
  std::span<const uint8_t> body_;
  std::span<const uint8_t> payload_;
  std::vector<uint8_t> owned_payload_;
  PayloadBuffer block_;  // an arena payload, held until the Reply dies
};

struct Reply::Parts {
  uint64_t id = 0;
  std::vector<uint8_t> storage;
  std::span<const uint8_t> result, body, payload;
  std::vector<uint8_t> owned_payload;
  PayloadBuffer block;
};

}  // namespace shmpool
