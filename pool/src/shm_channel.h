// shm_channel.h: one call at a time over a slot's request/response rings.
// The caller holds the slot (Worker owns it; Pool has checked it out).
//
// The wait for a reply ends at the first of: a response frame, the deadline,
// or the owner marking the worker gone (SlotData::worker_alive = 0, then a
// ring of the response doorbell). Replies are verified (ipc::read_response)
// and matched by request id.
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ipc/envelope.h"
#include "ipc/segment.h"
#include "pool/src/arena_handle.h"
#include "shmpool/error.h"
#include "shmpool/worker.h"

namespace shmpool::detail {

struct CallSpec {
  uint64_t id = 0;
  std::string_view session_id;
  std::string_view command;
  std::span<const uint8_t> args;
  std::span<const uint8_t> payload;
  std::span<const uint8_t> body;
  int64_t deadline_ns = 0;  // CLOCK_MONOTONIC
  // A small reply payload may stay in the response ring until the next call
  // on this channel (Worker::call); otherwise the Reply owns a copy.
  bool payload_in_ring = false;
  // Async calls and streams (schema Request: flags, notify, window_*).
  bool stream = false;
  uint32_t notify = 0;  // the caller's completion bell: its waiter entry + 1 (0: none)
  uint32_t window_items = 0;
  uint64_t window_bytes = 0;
};

// A reply frame read without waiting (ShmChannel::poll_reply).
struct Polled {
  Expected<Reply> reply;
  bool more = false;        // a stream item: the request's final reply follows
  uint64_t item_bytes = 0;  // result + payload + body bytes (a stream window's measure)
};

// Error.type values ShmChannel produces that the caller must act on.
inline constexpr std::string_view kWorkerGone = "worker_crashed";
inline constexpr std::string_view kOperationTimeout = "operation_timeout";
inline constexpr std::string_view kPoolNotAvailable = "pool_not_available";

// True for errors after which the worker cannot be trusted with another
// call: it crashed, timed out, or broke the protocol.
bool worker_must_be_replaced(const Error& e);

// Payloads up to this size travel inside the frame; larger ones through the
// payload arena (zero-copy when they are already in it), when there is one.
inline constexpr std::size_t kInlinePayloadMax = 4096;

class ShmChannel {
 public:
  // `arena`: the segment's payload arena (null or empty: payloads go inline).
  ShmChannel(ipc::Segment* segment, uint32_t slot, ipc::WaitPolicy policy,
             std::shared_ptr<ArenaHandle> arena = nullptr);
  ~ShmChannel() { release_held(); }

  // Waits for the worker's hello (a Response with id 0).
  Expected<Reply> await_hello(int64_t deadline_ns);
  // Sends the request and waits for its reply. The Reply owns its payload
  // (an arena block it holds, or a copy), except with spec.payload_in_ring,
  // where a small one points into the response ring until the next call.
  Expected<Reply> call(const CallSpec& spec);
  // Writes the request without waiting for its reply (async calls; more
  // may follow before any reply is read). A payload copied into a temporary
  // arena block leaves it in *temp: keep it until the reply has come.
  Status send(const CallSpec& spec, PayloadBuffer* temp);
  // The next reply frame, which must answer `id`, if one is there; never
  // waits. Errors as call()'s, but for the waiting ones (the caller watches
  // worker_alive and its deadlines).
  std::optional<Polled> poll_reply(uint64_t id);
  // True if a reply frame may be there (cheap; the consumer's view).
  bool reply_readable() const { return responses_.readable(); }
  // The CPU (+1; 0 unknown) the worker ran on when it wrote the last reply
  // read: a hint for how to wait (wait.h, beside_peer). The reader's own state.
  uint32_t worker_cpu() const { return responses_.producer_cpu(); }
  // Gives back a reply frame still held for an in-ring payload.
  void release_held();
  // The id for the next request on this channel: ids only need to tell this
  // channel's replies apart. The slot's holder calls it (one at a time), so
  // callers on other slots share no counter.
  uint64_t next_request_id() { return next_request_id_++; }
  // A client's "the owner died" flag: once set (and the response doorbell
  // rung), a waiting call ends with resource_error/pool_not_available.
  void set_abandon_flag(const std::atomic<bool>* flag) { abandon_ = flag; }

 private:
  Expected<Reply> await_reply(uint64_t id, int64_t deadline_ns, bool payload_in_ring);
  // The reply in `frame` (peeked), checked against `id`; releases the frame
  // unless a small payload stays in it (payload_in_ring).
  Polled read_reply(const ipc::Frame& frame, uint64_t id, bool payload_in_ring);
  // The request envelope for `spec`: built in fbb_, or, when only the id
  // and the deadline differ from the last one, request_shape_ with those
  // rewritten. Valid until the next call.
  std::span<const uint8_t> build_request(const CallSpec& spec,
                                         const std::optional<schema::ArenaRef>& arena_ref,
                                         std::size_t inline_payload);
  ipc::Segment* segment_;
  uint32_t slot_;
  ipc::FrameRing requests_, responses_;
  ipc::WaitPolicy policy_;
  ipc::SpinBudget reply_budget_;  // whether polling for replies pays (spin_budget.h)
  std::shared_ptr<ArenaHandle> arena_;
  flatbuffers::FlatBufferBuilder fbb_{1024};
  // The last request without payload or body, with holes at its id (0) and
  // deadline (1); empty after any other.
  ipc::EnvelopeShape request_shape_;
  ipc::EnvelopeMemo reply_memo_;  // the last reply verified (a repeat is not verified again)
  uint64_t next_request_id_ = 1;
  ipc::Frame held_{};
  bool holding_ = false;
  const std::atomic<bool>* abandon_ = nullptr;
};

// Builds the Error carried in a response envelope.
Error error_from_envelope(const schema::Error* e);

}  // namespace shmpool::detail
