// session_table.h: the cross-process session table in the segment: a
// fixed-capacity open-addressing hash table keyed by session id.
//
// Who may call what: any process attached to the segment, from any thread.
// Counting (record) on an existing session is lock-free; creating, removing
// and expiring entries take the table's lock (a word in the segment holding
// the holder's pid and token; a holder that died is detected with kill(pid,0)
// and its lock taken over), so inserts never race into duplicates.
//
// Guarantees: record() returns only after the entry's counters include the
// call (exact counts); a full table makes record() return Errc::ring_full
// (the caller counts it) and never blocks the call.
//
// Memory ordering: an inserter writes id and counters, then stores the state
// word active with release; readers load it with acquire before comparing
// ids and re-load it after (seqlock-style) to reject an entry reused
// meanwhile. A reader pins an entry (pins +1, acq_rel) while it updates
// counters; the locked reuse path skips pinned entries, so a count never
// lands on another session.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "ipc/errc.h"
#include "ipc/wait.h"

namespace shmpool::ipc {

inline constexpr std::size_t kMaxSessionIdLength = 64;

// Entry states (low 8 bits of state; the generation above bumps on every
// change). Zeroed memory = empty.
//   empty/tombstone -> active  (locked insert)
//   active -> tombstone        (locked remove / expire)
//   tombstone -> empty         (locked compaction, when the next entry is empty)
enum class SessionState : uint8_t { empty = 0, active = 1, tombstone = 2 };

// One entry, three cache lines (state + id, then counters). Field table (writer / reader / order):
// | state        | lock holder      | all          | release / acquire             |
// | pins         | readers (inc/dec)| lock holder  | acq_rel RMW / acquire         |
// | id, id_len   | lock holder, before state=active | readers | relaxed (validated by state) |
// | created_ns   | lock holder      | all          | relaxed                        |
// | last_activity, operations, errors, last_slot | any pinned reader | all | relaxed RMW / relaxed
// | A writer that dies holding the lock leaves at worst an entry half written but not active
// (readers ignore it); the next locker reclaims the lock.
struct SessionEntry {
  alignas(kCacheLine) std::atomic<uint64_t> state{0};
  std::atomic<uint32_t> pins{0};
  std::atomic<uint32_t> id_length{0};
  std::atomic<uint64_t> id_words[kMaxSessionIdLength / 8];
  alignas(kCacheLine) std::atomic<int64_t> created_ns{0};
  std::atomic<int64_t> last_activity_ns{0};
  std::atomic<uint64_t> operations{0};
  std::atomic<uint64_t> errors{0};
  std::atomic<int32_t> last_slot{-1};
};
inline constexpr std::size_t kSessionEntryBytes = 3 * kCacheLine;
static_assert(sizeof(SessionEntry) == kSessionEntryBytes);

// A copy of an entry's fields.
struct SessionSnapshot {
  std::string id;
  int64_t created_ns = 0;
  int64_t last_activity_ns = 0;
  uint64_t operations = 0;
  uint64_t errors = 0;
  int32_t last_slot = -1;
};

// Per-process handle over the table's memory.
class SessionTable {
 public:
  SessionTable() = default;
  // entries: `capacity` SessionEntry structs; lock: the table lock word.
  SessionTable(uint8_t* entries, uint32_t capacity, std::atomic<uint64_t>* lock, uint32_t token)
      : entries_(reinterpret_cast<SessionEntry*>(entries)),
        capacity_(capacity),
        lock_(lock),
        token_(token) {}

  uint32_t capacity() const { return capacity_; }

  // Counts one call on `id` (creating the entry at `now_ns` if needed):
  // operations+1, errors+(failed), last activity = now, last slot = slot.
  // Errc::ring_full if the table is full; Errc::bad_name for an invalid id.
  // *created (if given) says whether this call created the entry.
  Errc record(std::string_view id, int64_t now_ns, int32_t slot, bool failed,
              bool* created = nullptr);
  // Creates the entry if missing (no call counted).
  Errc touch(std::string_view id, int64_t now_ns);
  bool find(std::string_view id, SessionSnapshot* out) const;
  // The slot that served `id` last, or -1.
  int32_t last_slot(std::string_view id) const;
  bool remove(std::string_view id);
  // Removes sessions idle since before now - ttl. Returns how many, and
  // their ids in *expired if given.
  uint32_t expire(int64_t now_ns, int64_t ttl_ns, std::vector<std::string>* expired = nullptr);
  std::vector<SessionSnapshot> list() const;
  uint32_t active_count() const;

 private:
  struct Pinned;
  uint64_t home(std::string_view id) const;
  // Lock-free lookup: the active entry holding `id`, pinned; or null.
  SessionEntry* find_pinned(std::string_view id) const;
  SessionEntry* insert_locked(std::string_view id, int64_t now_ns, Errc* err,
                              bool* created = nullptr);
  void lock();
  void unlock();
  static bool id_equals(const SessionEntry& e, std::string_view id);
  static std::string read_id(const SessionEntry& e);

  SessionEntry* entries_ = nullptr;
  uint32_t capacity_ = 0;
  std::atomic<uint64_t>* lock_ = nullptr;
  uint32_t token_ = 0;
};

// Valid session ids: 1..64 bytes, printable ASCII (0x21-0x7e).
bool valid_session_id(std::string_view id);

}  // namespace shmpool::ipc
