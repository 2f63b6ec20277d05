// libFuzzer target: the frame ring's consumer on hostile shared memory.
// The input is the ring's data (4 KiB) followed by head and tail words: a
// peer can write anything there. peek/release must never read or write
// outside the ring, and must end (every peek either fails or advances).
//
// A seal is a function of the position (frame_seal), which a fuzzer would
// rarely guess: in the input, a line's first word only says "sealed" (bit 1)
// and the kind (bit 0), and the target writes the seal the consumer expects
// at that line. Every other byte reaches the consumer as it is.
#include <cstdint>
#include <cstring>
#include <vector>

#include "ipc/frame_ring.h"

using namespace shmpool::ipc;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  constexpr uint64_t kCapacity = 4096;
  alignas(64) static uint8_t ring_data[kCapacity];
  static RingControl control;
  std::memset(ring_data, 0, sizeof ring_data);
  std::memcpy(ring_data, data, size < kCapacity ? size : kCapacity);
  uint64_t head = 0, tail = 0;
  if (size >= kCapacity + 16) {
    std::memcpy(&head, data + kCapacity, 8);
    std::memcpy(&tail, data + kCapacity + 8, 8);
  } else {
    head = size < kCapacity ? size : kCapacity;  // frames written from 0
  }
  control.head.store(head);
  control.tail.store(tail);
  const uint64_t lap = tail - tail % kCapacity;
  for (uint64_t off = 0; off < kCapacity; off += 64) {
    uint32_t word;
    std::memcpy(&word, ring_data + off, 4);
    if ((word & 2) == 0) continue;
    const uint64_t pos = lap + off + (off < tail % kCapacity ? kCapacity : 0);
    const uint32_t seal = frame_seal(pos, FrameKind(word & 1));
    std::memcpy(ring_data + off, &seal, 4);
  }
  FrameRing ring(&control, ring_data, kCapacity);
  for (int i = 0; i < 64; ++i) {  // a ring holds at most 4096/16 frames; bounded anyway
    Frame f;
    if (ring.peek(&f) != Errc::ok) break;
    // The frame lies inside the ring's data.
    if (f.body < ring_data || f.body + f.body_length > ring_data + kCapacity) __builtin_trap();
    if (uint64_t(f.envelope_offset) + f.envelope_length > f.body_length) __builtin_trap();
    volatile uint8_t sink = 0;
    for (uint32_t k = 0; k < f.body_length; k += 61) sink = sink ^ f.body[k];
    ring.release(f);
  }
  return 0;
}
