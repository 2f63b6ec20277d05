// frame_ring.h: a single-producer single-consumer ring of length-prefixed
// frames in shared memory. Each frame is contiguous (a frame that would wrap
// is preceded by a padding frame), so the consumer can hand a pointer into the
// ring to Python without copying.
//
// Who may call what: exactly one producer process calls reserve/commit, and
// exactly one consumer process calls peek/release, at a time. The owner of the
// segment decides who (for a slot: the client that checked it out produces
// requests, the worker produces responses).
//
// Guarantees: a committed frame is seen by the consumer whole and exactly
// once, in order. Every value the consumer reads from the ring (head, frame
// header) is bounds-checked: a hostile producer gets Errc::corrupt, never an
// out-of-bounds read. A hostile consumer can at worst make the producer see
// Errc::corrupt.
//
// Memory ordering: commit() writes the frame, then stores its header's
// `seal` with release (pairs with the acquire load of the seal in peek() and
// readable()), then stores `head` and rings `data`. release() stores `tail`
// with release (pairs with the acquire load of `tail` in reserve()), then
// rings `space`. Frame bytes are therefore visible to the consumer before it
// sees the seal, and the producer never overwrites a frame the consumer still
// reads.
//
// Why a seal: the consumer polls the header of the frame it expects next,
// not `head`. One cache line then carries the signal, the header and the
// start of a small envelope: one transfer per message instead of two (head,
// then frame). A seal names the frame's absolute position (frame_seal), so a
// header left from an earlier lap never matches. Bytes that are not a header
// (an old payload) could; so before sealing a frame, the producer overwrites
// the seal word of the slot right after it with unsealed(next) whenever that
// slot is free. If it is not free the ring is full, and the slot holds the
// header of the frame at `tail`, whose seal names a position one lap earlier.
// Invariant: the slot at `head` never carries a seal matching its position.
// reset() re-establishes it by unsealing slot 0.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <utility>

#include "ipc/errc.h"
#include "ipc/wait.h"

namespace shmpool::ipc {

// Control block, in the segment. Zeroed memory is an empty ring.
// | field | writer   | reader   | order (writer / reader) | writer dies mid-update        |
// | head  | producer | producer, status readers | release / acquire | frame not published: lost |
// | data  | producer | consumer | see Doorbell            | consumer sleeps to deadline   |
// | tail  | consumer | producer | release / acquire       | frame not released: ring full |
// | space | consumer | producer | see Doorbell            | producer sleeps to deadline   |
// | epoch | owner (reset, no peers active) | producer | relaxed (ordered by the slot state change)
// | - | head and tail are byte counters that only grow; head - tail <= capacity. The consumer
// learns of a frame from its header's seal, not from head (see above). The ring's
// capacity and data offset are not stored here: each side takes them from its own trusted
// configuration.
struct RingControl {
  alignas(kCacheLine) std::atomic<uint64_t> head{0};
  // Bumped by the owner's reset(); producers drop their cached tail when it
  // changes. On the head's line: the producer reads it without a transfer.
  std::atomic<uint32_t> epoch{0};
  // The doorbells have lines of their own: the other side polls head/tail,
  // and an RMW on a polled line would pull it back and forth once more.
  alignas(kCacheLine) Doorbell data;
  alignas(kCacheLine) std::atomic<uint64_t> tail{0};
  alignas(kCacheLine) Doorbell space;
};
static_assert(sizeof(RingControl) == 4 * kCacheLine);
static_assert(offsetof(RingControl, tail) == 2 * kCacheLine);
static_assert(std::atomic<uint64_t>::is_always_lock_free);

enum class FrameKind : uint32_t { data = 0, pad = 1 };

// Precedes every frame; frames start on a cache line. Kept small so that a
// small envelope shares the header's cache line (one transfer less per frame).
// `seal` is written and polled atomically (std::atomic_ref), last by the
// producer; the other fields are plain and read only after the seal matched.
// `producer_cpu` is a hint, never trusted for anything but how to wait: the
// CPU the producer ran on when it committed the frame (+1; 0 unknown). The
// consumer's next wait on this ring blocks at once when it runs on that CPU
// itself: the producer, which then polls for the consumer's answer on that
// CPU, cannot be running, so polling would only keep it off the core
// (wait.h, "Waiting on a busy machine"). It rides in the header the consumer
// reads anyway: no cache line more per frame.
struct FrameHeader {
  uint32_t seal;             // frame_seal(position, kind) once published
  uint32_t body_length;      // bytes after this header, before padding
  uint32_t envelope_offset;  // FlatBuffer envelope, relative to the body
  uint32_t envelope_length;
  uint32_t producer_cpu;  // sched_getcpu() + 1 at commit; 0: unknown
  uint32_t reserved;
};
static_assert(sizeof(FrameHeader) == 24);
// Headers start on a cache line, so `seal` is aligned for atomic_ref.
static_assert(kCacheLine % std::atomic_ref<uint32_t>::required_alignment == 0);

// The seal of a frame of `kind` that starts at absolute ring position `pos`
// (a multiple of kCacheLine). Never 0, so zeroed memory is an empty ring.
// Seals of the same slot one lap apart differ while capacity < 2^37 bytes
// (rings are at most 2 GiB).
constexpr uint32_t frame_seal(uint64_t pos, FrameKind kind) {
  return uint32_t((pos / kCacheLine + 1) << 1) | uint32_t(kind);
}
// What the producer writes into the slot at `pos` to make sure neither seal
// of that position is there.
constexpr uint32_t unsealed(uint64_t pos) { return frame_seal(pos, FrameKind::data) ^ 0x80000000u; }

constexpr uint64_t align_up(uint64_t n, uint64_t a) { return (n + a - 1) / a * a; }

// A frame being read: valid until release().
struct Frame {
  const uint8_t* body = nullptr;
  uint32_t body_length = 0;
  uint32_t envelope_offset = 0;
  uint32_t envelope_length = 0;
  uint64_t end = 0;  // tail value after release
};

// A reserved, unpublished frame: write up to `capacity` bytes at `body`.
struct FrameSpace {
  uint8_t* body = nullptr;
  uint32_t capacity = 0;
};

// Per-process handle. Holds the trusted geometry and producer/consumer local
// state; cheap to construct; not thread-safe (one thread per side at a time).
class FrameRing {
 public:
  FrameRing() = default;
  // capacity: multiple of kCacheLine, >= 2 lines.
  FrameRing(RingControl* control, uint8_t* data, uint64_t capacity)
      : ctl_(control), data_(data), capacity_(capacity) {}

  uint64_t capacity() const { return capacity_; }
  // Largest body a single frame can carry in this ring.
  uint64_t max_body() const { return capacity_ - sizeof(FrameHeader); }

  // Producer: reserves room for a body of `body_length` bytes, waiting for
  // space until deadline_ns. Errc::frame_too_large if it can never fit,
  // Errc::ring_full at the deadline, Errc::corrupt if tail is out of range.
  Errc reserve(uint32_t body_length, int64_t deadline_ns, const WaitPolicy& policy,
               FrameSpace* out);
  // Producer: publishes the reserved frame. body_length <= the reserved size.
  void commit(uint32_t body_length, uint32_t envelope_offset, uint32_t envelope_length);

  // Consumer: the next frame if there is one (Errc::empty otherwise).
  // Padding frames are skipped. Errc::corrupt on a malformed header.
  Errc peek(Frame* out);
  // Consumer: true if a frame may be readable (its seal is there) or peek()
  // has an error to report; cheap.
  bool readable() const {
    const uint64_t tail = ctl_->tail.load(std::memory_order_relaxed);  // the consumer's own
    if (tail % kCacheLine != 0) return true;  // scribbled over: peek() reports it
    // The frame's second line (most envelopes span two) is fetched while we
    // poll the first: the producer writes it before the seal, so it
    // arrives with (not after) the line that signals the frame.
    __builtin_prefetch(data_ + (tail + kCacheLine) % capacity_);
    return (seal_at(tail % capacity_) | 1) == frame_seal(tail, FrameKind::pad);
  }
  // Consumer: waits for a frame, or until `stop()` is true, or the deadline.
  // A hybrid wait blocks at once when the producer of the last frame peeked
  // ran on this thread's CPU (see FrameHeader::producer_cpu). `let_go`: as
  // in wait_until (what the caller lets go of before it blocks).
  template <class Stop, class LetGo = KeepAll>
  WaitResult wait_readable(int64_t deadline_ns, const WaitPolicy& policy, Stop&& stop,
                           LetGo&& let_go = {}) {
    WaitPolicy p = policy;
    p.peer_cpu = producer_cpu_;
    return wait_until(
        ctl_->data, [&] { return readable() || stop(); }, deadline_ns, p,
        std::forward<LetGo>(let_go));
  }
  // Consumer: the CPU (+1; 0 unknown) the producer of the last frame peeked
  // ran on when it committed it. A hint from the other side: only for waiting.
  uint32_t producer_cpu() const { return producer_cpu_; }
  // Consumer: frees the frame returned by the last peek().
  void release(const Frame& frame);

  // Owner only, when no producer or consumer is active (e.g. after a worker
  // died): forgets all frames and resets the counters.
  void reset();

  RingControl* control() const { return ctl_; }

 private:
  // acquire: pairs with the release store in publish().
  uint32_t seal_at(uint64_t offset) const {
    return std::atomic_ref<uint32_t>(reinterpret_cast<FrameHeader*>(data_ + offset)->seal)
        .load(std::memory_order_acquire);
  }
  // Producer: seals the frame of `total` bytes at absolute position `pos`,
  // after unsealing the slot that follows it when that slot is free (and
  // `unseal_next`: not when that slot holds the frame just sealed).
  void publish(uint64_t pos, uint64_t total, FrameKind kind, bool unseal_next);

  RingControl* ctl_ = nullptr;
  uint8_t* data_ = nullptr;
  uint64_t capacity_ = 0;
  // Producer-local: the reservation in progress.
  uint64_t reserved_head_ = 0;   // head value when reserve() succeeded
  uint64_t reserved_start_ = 0;  // offset of the data frame in data_ (after any padding)
  uint64_t pad_pos_ = 0;         // absolute position of a padding frame sealed at commit
  bool pad_pending_ = false;
  // Producer-local copy of the consumer's tail: reading `tail` costs a cache
  // line transfer, so it is re-read only when the copy says "no room". Tail
  // only grows within an epoch, so a stale copy is conservative.
  uint64_t cached_tail_ = 0;
  uint32_t cached_epoch_ = 0;
  bool cache_valid_ = false;
  // Consumer-local: FrameHeader::producer_cpu of the last frame peeked.
  uint32_t producer_cpu_ = 0;
};

}  // namespace shmpool::ipc
