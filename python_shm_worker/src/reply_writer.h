// reply_writer.h: the worker's side of its response ring. Builds Ok and
// Error reply envelopes and writes them with their payloads. A plain Ok
// reply (an id and a result, nothing else) whose result has the length of
// the last one's is that envelope with its id and result bytes rewritten
// (an EnvelopeShape with those holes), not a new FlatBuffer.
//
// Called with the GIL held. A write first tries without waiting (the caller
// drains its response ring before each call, so there is room at once) and
// waits for room with the GIL released only if a caller is slow to read.
#pragma once

#include <pybind11/pybind11.h>

#include <atomic>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <utility>

#include "ipc/envelope.h"
#include "ipc/envelope_shape.h"
#include "ipc/flex_writer.h"
#include "ipc/frame_ring.h"

namespace shmpool::pyworker {

class ReplyWriter {
 public:
  // `calls`: the slot's reply counter (stats); this worker is its only writer.
  ReplyWriter(ipc::FrameRing responses, std::atomic<uint64_t>* calls, ipc::WaitPolicy policy)
      : responses_(responses), calls_(calls), policy_(policy) {}

  // The next Ok reply's result, cleared: encode into it and Finish() it, or
  // leave it empty (no result).
  ipc::FlexWriter& start() {
    fbb_.Clear();
    flex_.Clear();
    return flex_;
  }
  // Sends an Ok reply with the result start() gave, and a payload: inline
  // bytes (copied into the frame), or an arena block the caller takes.
  // `more`: a stream item (the request's final reply follows later).
  // Errc::frame_too_large if it can never fit in the ring.
  ipc::Errc send_ok(uint64_t id, std::span<const uint8_t> payload = {},
                    const schema::ArenaRef* arena_ref = nullptr,
                    std::span<const uint8_t> body = {}, bool more = false);
  // Sends an Error reply; context entries with an empty value are left out.
  void send_error(uint64_t id, const std::string& category, const std::string& type,
                  const std::string& message,
                  std::initializer_list<std::pair<std::string, std::string>> context = {});

  uint64_t ring_capacity() const { return responses_.capacity(); }
  // The bell rung after each frame written for the current request (its
  // caller's completion bell, for an async call), or null.
  void set_notify(ipc::Doorbell* bell) { notify_ = bell; }

 private:
  // Writes the envelope (default: the one in fbb_) and the payload.
  ipc::Errc write(std::span<const uint8_t> payload, std::span<const uint8_t> env = {});

  ipc::FrameRing responses_;
  std::atomic<uint64_t>* calls_;
  ipc::WaitPolicy policy_;
  flatbuffers::FlatBufferBuilder fbb_{1024};
  ipc::FlexWriter flex_{512};
  // The last plain Ok reply, with holes at its id (0) and its result's
  // bytes (1); empty after any other Ok reply.
  ipc::EnvelopeShape last_ok_;
  ipc::Doorbell* notify_ = nullptr;
};

}  // namespace shmpool::pyworker
