#include "ipc/slot_table.h"

namespace shmpool::ipc {

bool SlotTable::try_checkout(uint32_t i, uint64_t owner, uint64_t* word) {
  Segment& seg = *seg_;
  SlotData& s = seg.slot(i);
  uint64_t w = s.state.load(std::memory_order_acquire);  // pairs with set_state/checkin releases
  if (slot_state(w) != SlotState::idle) return false;
  const uint64_t busy =
      make_slot_word(slot_generation(w) + 1, SlotState::busy, uint32_t(owner >> 32));
  if (!s.state.compare_exchange_strong(w, busy, std::memory_order_acq_rel,
                                       std::memory_order_relaxed)) {
    return false;
  }
  s.owner.store(owner,
                std::memory_order_relaxed);  // published by our later checkin / read by the owner
  bump(s.checkouts);                         // we hold the slot now
  *word = busy;
  return true;
}

SlotTable::CallCounts SlotTable::call_counts(const Segment& seg) {
  CallCounts c;
  for (uint32_t i = 0; i < seg.slot_count(); ++i) {
    c.successes += seg.slot(i).successes.load(std::memory_order_relaxed);
    c.errors += seg.slot(i).errors.load(std::memory_order_relaxed);
  }
  return c;
}

bool SlotTable::checkin(uint32_t i, uint64_t word) {
  Segment& seg = *seg_;
  SlotData& s = seg.slot(i);
  uint64_t expected = word;
  const uint64_t idle = make_slot_word(slot_generation(word) + 1, SlotState::idle);
  s.owner.store(0, std::memory_order_relaxed);
  // release: the next client that checks the slot out sees our ring updates.
  bool ok = s.state.compare_exchange_strong(expected, idle, std::memory_order_acq_rel,
                                            std::memory_order_relaxed);
  seg.header().slots_changed.ring();  // a waiter re-scans even if the slot died
  return ok;
}

bool SlotTable::release_as(uint32_t i, uint64_t word, SlotState to) {
  Segment& seg = *seg_;
  uint64_t expected = word;
  // acq_rel: like checkin, publishes our use of the rings to the owner.
  bool ok = seg.slot(i).state.compare_exchange_strong(
      expected, make_slot_word(slot_generation(word) + 1, to), std::memory_order_acq_rel,
      std::memory_order_relaxed);
  seg.header().slots_changed.ring();
  return ok;
}

uint64_t SlotTable::set_state(uint32_t i, uint32_t from_mask, SlotState to) {
  Segment& seg = *seg_;
  SlotData& s = seg.slot(i);
  uint64_t w = s.state.load(std::memory_order_acquire);
  for (;;) {
    if (from_mask != kAnySlotState && (from_mask & state_bit(slot_state(w))) == 0) return 0;
    const uint64_t next = make_slot_word(slot_generation(w) + 1, to);
    if (s.state.compare_exchange_weak(w, next, std::memory_order_acq_rel,
                                      std::memory_order_acquire)) {
      seg.header().slots_changed.ring();  // owner transitions are rare: wake every watcher
      return next;
    }
  }
}

}  // namespace shmpool::ipc
