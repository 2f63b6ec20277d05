// envelope.h: writing and reading shmpool frames (a FlatBuffers envelope plus
// an optional bulk payload) in a FrameRing.
//
// Frame body layout: without a payload, [envelope]; with one,
// [48 bytes unused][payload][pad to 8][envelope]. The payload comes first so
// its PayloadRef (payload_ref_for(n)) is known before the envelope is built,
// and starts on a cache line (the 16-byte frame header + 48), which numpy
// and memcpy like.
//
// Readers verify every envelope with the FlatBuffers Verifier (which also
// verifies the nested FlexBuffers of args/result) and bounds-check the
// payload against the frame. read_response() copies the envelope into
// caller-owned memory before verifying it, so a worker that rewrites shared
// memory after the check cannot change what the host reads (no TOCTOU); the
// payload is plain bytes and is read in place.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "ipc/envelope_shape.h"
#include "ipc/errc.h"
#include "ipc/frame_ring.h"
#include "shmpool/schema/envelope_generated.h"

namespace shmpool::ipc {

// Fills a payload area in place. Called once with a span of exactly the
// requested size inside the ring.
struct PayloadWriter {
  std::size_t size = 0;
  const uint8_t* copy_from = nullptr;                         // copy `size` bytes from here, or
  void (*fill)(void* ctx, std::span<uint8_t> dst) = nullptr;  // call fill(ctx, dst)
  void* ctx = nullptr;
};

// Writes one frame: payload then the finished envelope `envelope`
// (built with PayloadRef {0, payload.size}). Waits for ring space until the
// deadline. Errc::frame_too_large if it can never fit.
Errc write_frame(FrameRing& ring, std::span<const uint8_t> envelope, const PayloadWriter& payload,
                 int64_t deadline_ns, const WaitPolicy& policy);

// Body offsets at which write_frame() puts a payload of n bytes and the envelope.
constexpr uint64_t payload_offset_for(uint64_t n) {
  return n ? kCacheLine - sizeof(FrameHeader) : 0;
}
constexpr uint64_t envelope_offset_for(uint64_t n) {
  return n ? align_up(payload_offset_for(n) + n, 8) : 0;
}
// The PayloadRef an envelope must carry for a payload of n bytes.
inline schema::PayloadRef payload_ref_for(uint64_t n) {
  return schema::PayloadRef(payload_offset_for(n), n);
}

// The last small envelope a reader verified, to recognise a repeat: an
// envelope whose bytes equal it but for its id (and a request's deadline)
// has passed the same checks (the Verifier looks at a scalar's place, never
// at its value; EnvelopeShape::remember_verified keeps only an envelope for
// which that holds), so it is not verified again. Calls and replies that
// repeat (a ping, an ack, a poll with the same args) then skip the
// Verifier: ~70 ns of a 56-byte reply's ~1.2 us round trip.
struct EnvelopeMemo {
  static constexpr std::size_t kMaxBytes = 256;  // larger ones rarely repeat
  // A verified envelope with holes at its id (hole 0) and, for a request,
  // its deadline (hole 1). Empty: no memo.
  EnvelopeShape shape;
  std::vector<uint8_t> copy;  // read_request: the current request's private copy
};

struct RequestView {
  const schema::Request* request = nullptr;
  std::span<const uint8_t> payload;  // in the frame; valid until the frame is released
};

// Worker side: verifies the envelope and resolves the payload. Errc::corrupt
// on any failed check. Without a memo it verifies the envelope in place;
// with one, a small envelope is copied into memo->copy first, and the copy
// is verified (or found in the memo, which is then updated) and read: the
// client can no longer change what the worker reads after the check.
Errc read_request(const Frame& frame, RequestView* out, EnvelopeMemo* memo = nullptr);

struct ResponseView {
  const schema::Response* response = nullptr;  // points into *envelope_copy
  std::span<const uint8_t> payload;            // in the frame; valid until released
};

// Host side: copies the envelope into *envelope_copy, verifies the copy
// (or finds it in *memo, which it then updates), resolves the payload in
// the frame. Errc::corrupt on any failed check.
Errc read_response(const Frame& frame, std::vector<uint8_t>* envelope_copy, ResponseView* out,
                   EnvelopeMemo* memo = nullptr);

}  // namespace shmpool::ipc
