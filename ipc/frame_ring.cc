#include "ipc/frame_ring.h"

#include <algorithm>
#include <cstring>

namespace shmpool::ipc {

namespace {
constexpr uint64_t kHeader = sizeof(FrameHeader);
constexpr uint64_t kRewindBytes = 16 * 1024;

// The fields of a padding frame of `total` bytes at `at`, all but its seal.
void write_pad(uint8_t* at, uint64_t total) {
  auto* h = reinterpret_cast<FrameHeader*>(at);
  h->body_length = uint32_t(total - kHeader);
  h->envelope_offset = 0;
  h->envelope_length = 0;
}

// Free bytes given the counters, or UINT64_MAX when they are inconsistent
// (a hostile or crashed peer wrote them).
uint64_t free_bytes(uint64_t head, uint64_t tail, uint64_t capacity) {
  if (tail > head) return UINT64_MAX;
  uint64_t used = head - tail;
  if (used > capacity || used % kCacheLine != 0) return UINT64_MAX;
  return capacity - used;
}
}  // namespace

Errc FrameRing::reserve(uint32_t body_length, int64_t deadline_ns, const WaitPolicy& policy,
                        FrameSpace* out) {
  const uint64_t total = align_up(kHeader + uint64_t(body_length), kCacheLine);
  if (total > capacity_) return Errc::frame_too_large;
  // The producer owns head; relaxed is enough to read back its own store.
  uint64_t head = ctl_->head.load(std::memory_order_relaxed);
  if (head % kCacheLine != 0) return Errc::corrupt;
  const uint32_t epoch = ctl_->epoch.load(std::memory_order_relaxed);
  if (epoch != cached_epoch_) {
    cache_valid_ = false;
    cached_epoch_ = epoch;
  }
  for (;;) {
    const uint64_t pos = head % capacity_;
    const uint64_t contiguous = capacity_ - pos;
    // Free bytes from the cached tail; re-read the shared tail (one cache line
    // transfer) only when the cached value does not show enough room.
    auto need_for = [&](uint64_t free) {
      // Start the frame at offset 0 (behind a padding frame published with
      // it) when it would not fit before the end, or when the ring is empty
      // and the frame is large: back-to-back large frames then reuse the
      // same cache-hot bytes. Small frames just move on.
      const bool rewind =
          pos != 0 && (contiguous < total || (free == capacity_ && total >= kRewindBytes &&
                                              contiguous + total <= capacity_));
      return std::pair<bool, uint64_t>(rewind, rewind ? contiguous + total : total);
    };
    uint64_t free = cache_valid_ ? free_bytes(head, cached_tail_, capacity_) : UINT64_MAX;
    if (free == UINT64_MAX || free < need_for(free).second ||
        (free < capacity_ && total >= kRewindBytes)) {
      // acquire: pairs with the release store of tail in release().
      cached_tail_ = ctl_->tail.load(std::memory_order_acquire);
      cache_valid_ = true;
      free = free_bytes(head, cached_tail_, capacity_);
      if (free == UINT64_MAX) {
        cache_valid_ = false;
        return Errc::corrupt;
      }
    }
    const auto [rewind, need] = need_for(free);
    if (free >= need) {
      // A padding frame is sealed at commit, after the frame it skips to.
      if (rewind) write_pad(data_ + pos, contiguous);
      pad_pending_ = rewind;
      pad_pos_ = head;
      reserved_head_ = head + (rewind ? contiguous : 0);
      reserved_start_ = rewind ? 0 : pos;
      out->body = data_ + reserved_start_ + kHeader;
      out->capacity = uint32_t(total - kHeader);
      return Errc::ok;
    }
    if (rewind && free >= contiguous && contiguous < total && contiguous + total > capacity_) {
      // The frame and the padding can never be free at once: publish the
      // padding alone so the consumer moves to offset 0 as soon as it can.
      write_pad(data_ + pos, contiguous);
      publish(head, contiguous, FrameKind::pad, true);
      head += contiguous;
      ctl_->head.store(head, std::memory_order_release);  // for status readers
      ctl_->data.ring();
      continue;
    }
    const uint64_t needed = need;  // (clang 14 cannot capture a structured binding)
    auto has_room = [&] {
      uint64_t t = ctl_->tail.load(std::memory_order_acquire);  // pairs with release()
      uint64_t f = free_bytes(head, t, capacity_);
      return f == UINT64_MAX || f >= needed;
    };
    thread_local SpinBudget budget;  // this thread's waits for room in a ring
    if (wait_until(ctl_->space, has_room, deadline_ns, with_budget(policy, budget)) ==
        WaitResult::timed_out) {
      return Errc::ring_full;
    }
    cache_valid_ = false;  // re-read the tail that has_room saw move
  }
}

void FrameRing::publish(uint64_t pos, uint64_t total, FrameKind kind, bool unseal_next) {
  const uint64_t next = pos + total;
  // The slot after this frame is free unless the ring is now full; then it
  // holds the header at tail, sealed for a position one lap earlier. reserve()
  // left cached_tail_ valid and <= the real tail.
  if (unseal_next && next - cached_tail_ < capacity_) {
    std::atomic_ref<uint32_t>(reinterpret_cast<FrameHeader*>(data_ + next % capacity_)->seal)
        .store(unsealed(next), std::memory_order_relaxed);  // ordered by the release below
  }
  std::atomic_ref<uint32_t>(reinterpret_cast<FrameHeader*>(data_ + pos % capacity_)->seal)
      .store(frame_seal(pos, kind), std::memory_order_release);  // pairs with seal_at()
}

void FrameRing::commit(uint32_t body_length, uint32_t envelope_offset, uint32_t envelope_length) {
  auto* h = reinterpret_cast<FrameHeader*>(data_ + reserved_start_);
  h->body_length = body_length;
  h->envelope_offset = envelope_offset;
  h->envelope_length = envelope_length;
  h->producer_cpu = current_cpu();
  const uint64_t total = align_up(kHeader + uint64_t(body_length), kCacheLine);
  publish(reserved_head_, total, FrameKind::data, true);
  // The padding before a rewound frame last: the consumer, polling the
  // padding's slot, then finds the frame it skips to already sealed.
  if (pad_pending_) publish(pad_pos_, reserved_head_ - pad_pos_, FrameKind::pad, false);
  pad_pending_ = false;
  ctl_->head.store(reserved_head_ + total, std::memory_order_release);  // for status readers
  ctl_->data.ring();
}

Errc FrameRing::peek(Frame* out) {
  // The consumer owns tail.
  uint64_t tail = ctl_->tail.load(std::memory_order_relaxed);
  if (tail % kCacheLine != 0) return Errc::corrupt;
  for (;;) {
    const uint64_t pos = tail % capacity_;
    const uint32_t seal = seal_at(pos);  // acquire: the frame's bytes are visible
    if ((seal | 1) != frame_seal(tail, FrameKind::pad)) return Errc::empty;
    FrameHeader h;  // copied out: the producer may scribble on shared memory
    std::memcpy(&h, data_ + pos, sizeof h);
    const uint64_t total = align_up(kHeader + uint64_t(h.body_length), kCacheLine);
    if (total > capacity_ - pos) return Errc::corrupt;
    if (seal == frame_seal(tail, FrameKind::pad)) {
      tail += total;
      ctl_->tail.store(tail, std::memory_order_release);  // pairs with reserve()
      ctl_->space.ring();
      continue;
    }
    if (uint64_t(h.envelope_offset) + h.envelope_length > h.body_length) return Errc::corrupt;
    // The envelope's other cache lines are read next (verification jumps
    // around in it): start fetching them all now rather than one by one.
    const uint8_t* env = data_ + pos + kHeader + h.envelope_offset;
    const uint64_t env_lines = std::min<uint64_t>(h.envelope_length, 16 * kCacheLine);
    for (uint64_t off = kCacheLine - (pos + kHeader + h.envelope_offset) % kCacheLine;
         off < env_lines; off += kCacheLine) {
      __builtin_prefetch(env + off);
    }
    out->body = data_ + pos + kHeader;
    out->body_length = h.body_length;
    out->envelope_offset = h.envelope_offset;
    out->envelope_length = h.envelope_length;
    out->end = tail + total;
    producer_cpu_ = h.producer_cpu;
    return Errc::ok;
  }
}

void FrameRing::release(const Frame& frame) {
  ctl_->tail.store(frame.end, std::memory_order_release);  // pairs with the acquire in reserve()
  ctl_->space.ring();
}

void FrameRing::reset() {
  ctl_->epoch.fetch_add(1, std::memory_order_relaxed);
  cache_valid_ = false;
  ctl_->head.store(0, std::memory_order_relaxed);
  // Stale frames of the last epoch start at 0 too: unseal the first slot.
  std::atomic_ref<uint32_t>(reinterpret_cast<FrameHeader*>(data_)->seal)
      .store(unsealed(0), std::memory_order_relaxed);
  ctl_->tail.store(0, std::memory_order_release);  // published by the slot state change
}

}  // namespace shmpool::ipc
