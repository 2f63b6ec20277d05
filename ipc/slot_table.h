// slot_table.h: lock-free checkout and checkin of worker slots through each
// slot's state word (see SlotState in segment.h for the transition table).
//
// Who may call what: clients (any process) call try_checkout/checkin; the
// owner calls set_state for its own transitions (starting, idle after a
// worker is ready, dead, retiring, empty). Every transition is a CAS that
// bumps the generation, so a stale snapshot can never win (no ABA).
//
// Memory ordering: a successful checkout CAS is acq_rel: it acquires the
// owner's release that made the slot idle (rings reset, worker ready), and
// the checkin CAS releases the client's use of the rings to the next client.
// The header's slots_changed doorbell is rung after every transition except
// a checkout (the hot path): callers waiting for a free worker, and anyone
// watching the pool's state, sleep on it.
#pragma once

#include <cstdint>

#include "ipc/segment.h"

namespace shmpool::ipc {

// A process's handle on the segment's slot table (like FrameRing on a ring):
// it owns nothing, copies freely, and every operation is one CAS on the slot's
// state word.
class SlotTable {
 public:
  explicit SlotTable(Segment& seg) : seg_(&seg) {}

  // Tries to move slot `i` from idle to busy. On success returns true and
  // sets *word to the new state word (the checkin needs it) and records
  // `owner` (pid << 32 | token). The busy word itself carries the pid, set
  // by the CAS.
  bool try_checkout(uint32_t i, uint64_t owner, uint64_t* word);

  // Moves the slot from busy (as checked out: `word`) back to idle and
  // rings slots_changed. False if the owner changed the slot meanwhile (e.g.
  // the worker died and the slot is dead): the slot is then the owner's to
  // recycle.
  bool checkin(uint32_t i, uint64_t word);

  // The holder gives the slot up into `to` (dead: its worker must be
  // replaced; retiring: recycle it) instead of checking it in. False if the
  // owner moved the slot meanwhile.
  bool release_as(uint32_t i, uint64_t word, SlotState to);

  // Owner: CAS from any state in `from_mask` (bit per SlotState) to `to`.
  // Returns the new word, or 0 if the slot was in no state of the mask.
  uint64_t set_state(uint32_t i, uint32_t from_mask, SlotState to);

  // Calls served through the pool's slots by every process, from the slots'
  // holder-written counters (no pool-wide counter is written per call).
  struct CallCounts {
    uint64_t successes = 0, errors = 0;
  };
  static CallCounts call_counts(const Segment& seg);

 private:
  Segment* seg_;
};

constexpr bool valid_slot_state(SlotState s) { return uint32_t(s) <= uint32_t(SlotState::dead); }
// The mask bit of a state; 0 for a state byte no shmpool process writes (a
// worker may scribble anything on its slot).
constexpr uint32_t state_bit(SlotState s) { return valid_slot_state(s) ? 1u << uint32_t(s) : 0; }
// set_state() from any state, an invalid one included.
inline constexpr uint32_t kAnySlotState = ~0u;

}  // namespace shmpool::ipc
