#include "ipc/session_table.h"

#include <unistd.h>

#include <cstring>

#include "ipc/shm_lock.h"
#include "ipc/sys.h"

namespace shmpool::ipc {

namespace {
constexpr uint64_t state_of(uint64_t w) { return w & 0xff; }
constexpr uint64_t next_word(uint64_t w, SessionState s) {
  return ((w >> 8) + 1) << 8 | uint64_t(s);
}
}  // namespace

bool valid_session_id(std::string_view id) {
  if (id.empty() || id.size() > kMaxSessionIdLength) return false;
  for (unsigned char c : id) {
    if (c < 0x21 || c > 0x7e) return false;
  }
  return true;
}

uint64_t SessionTable::home(std::string_view id) const {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (unsigned char c : id) h = (h ^ c) * 1099511628211ull;
  return h % capacity_;
}

bool SessionTable::id_equals(const SessionEntry& e, std::string_view id) {
  if (e.id_length.load(std::memory_order_relaxed) != id.size()) return false;
  for (size_t w = 0; w * 8 < id.size(); ++w) {
    uint64_t want = 0;
    std::memcpy(&want, id.data() + w * 8, std::min<size_t>(8, id.size() - w * 8));
    if (e.id_words[w].load(std::memory_order_relaxed) != want) return false;
  }
  return true;
}

std::string SessionTable::read_id(const SessionEntry& e) {
  uint32_t n = std::min<uint32_t>(e.id_length.load(std::memory_order_relaxed), kMaxSessionIdLength);
  std::string s(n, '\0');
  for (size_t w = 0; w * 8 < n; ++w) {
    uint64_t v = e.id_words[w].load(std::memory_order_relaxed);
    std::memcpy(s.data() + w * 8, &v, std::min<size_t>(8, n - w * 8));
  }
  return s;
}

SessionEntry* SessionTable::find_pinned(std::string_view id) const {
  if (capacity_ == 0) return nullptr;
  const uint64_t start = home(id);
  for (uint64_t i = 0; i < capacity_; ++i) {
    SessionEntry& e = entries_[(start + i) % capacity_];
    uint64_t w =
        e.state.load(std::memory_order_acquire);  // pairs with the release in insert_locked
    if (state_of(w) == uint64_t(SessionState::empty)) return nullptr;
    if (state_of(w) != uint64_t(SessionState::active) || !id_equals(e, id)) continue;
    e.pins.fetch_add(1, std::memory_order_acq_rel);  // pairs with the pins load in insert_locked
    if (e.state.load(std::memory_order_acquire) == w) return &e;  // still the same session
    e.pins.fetch_sub(1, std::memory_order_release);
    return nullptr;  // changed under us: let the locked path decide
  }
  return nullptr;
}

void SessionTable::lock() { lock_word(*lock_, lock_owner_word(token_)); }

void SessionTable::unlock() { unlock_word(*lock_); }

SessionEntry* SessionTable::insert_locked(std::string_view id, int64_t now_ns, Errc* err,
                                          bool* created) {
  const uint64_t start = home(id);
  SessionEntry* free_entry = nullptr;
  for (uint64_t i = 0; i < capacity_; ++i) {
    SessionEntry& e = entries_[(start + i) % capacity_];
    uint64_t w = e.state.load(std::memory_order_acquire);
    if (state_of(w) == uint64_t(SessionState::active)) {
      if (id_equals(e, id)) return &e;
      continue;
    }
    // A tombstone may be reused once no reader still holds it pinned.
    if (!free_entry && e.pins.load(std::memory_order_acquire) == 0) free_entry = &e;
    if (state_of(w) == uint64_t(SessionState::empty)) break;
  }
  if (!free_entry) {
    *err = Errc::ring_full;
    return nullptr;
  }
  SessionEntry& e = *free_entry;
  e.id_length.store(uint32_t(id.size()), std::memory_order_relaxed);
  for (size_t w = 0; w < kMaxSessionIdLength / 8; ++w) {
    uint64_t v = 0;
    if (w * 8 < id.size())
      std::memcpy(&v, id.data() + w * 8, std::min<size_t>(8, id.size() - w * 8));
    e.id_words[w].store(v, std::memory_order_relaxed);
  }
  e.created_ns.store(now_ns, std::memory_order_relaxed);
  e.last_activity_ns.store(now_ns, std::memory_order_relaxed);
  e.operations.store(0, std::memory_order_relaxed);
  e.errors.store(0, std::memory_order_relaxed);
  e.last_slot.store(-1, std::memory_order_relaxed);
  uint64_t w = e.state.load(std::memory_order_relaxed);
  e.state.store(next_word(w, SessionState::active),
                std::memory_order_release);  // pairs with find_pinned
  if (created) *created = true;
  return &e;
}

Errc SessionTable::touch(std::string_view id, int64_t now_ns) {
  if (!valid_session_id(id)) return Errc::bad_name;
  if (capacity_ == 0) return Errc::ring_full;
  if (SessionEntry* e = find_pinned(id)) {
    e->pins.fetch_sub(1, std::memory_order_release);
    return Errc::ok;
  }
  lock();
  Errc err = Errc::ok;
  insert_locked(id, now_ns, &err);
  unlock();
  return err;
}

Errc SessionTable::record(std::string_view id, int64_t now_ns, int32_t slot, bool failed,
                          bool* created) {
  if (created) *created = false;
  if (!valid_session_id(id)) return Errc::bad_name;
  if (capacity_ == 0) return Errc::ring_full;
  SessionEntry* e = find_pinned(id);
  if (!e) {
    lock();
    Errc err = Errc::ok;
    e = insert_locked(id, now_ns, &err, created);
    if (e) e->pins.fetch_add(1, std::memory_order_acq_rel);  // pinned before the lock is released
    unlock();
    if (!e) return err;
  }
  e->operations.fetch_add(1, std::memory_order_relaxed);
  if (failed) e->errors.fetch_add(1, std::memory_order_relaxed);
  int64_t prev = e->last_activity_ns.load(std::memory_order_relaxed);
  while (prev < now_ns &&
         !e->last_activity_ns.compare_exchange_weak(prev, now_ns, std::memory_order_relaxed)) {
  }
  if (slot >= 0) e->last_slot.store(slot, std::memory_order_relaxed);
  e->pins.fetch_sub(1, std::memory_order_release);  // pairs with the acquire in insert_locked
  return Errc::ok;
}

bool SessionTable::find(std::string_view id, SessionSnapshot* out) const {
  SessionEntry* e = find_pinned(id);
  if (!e) return false;
  out->id = std::string(id);
  out->created_ns = e->created_ns.load(std::memory_order_relaxed);
  out->last_activity_ns = e->last_activity_ns.load(std::memory_order_relaxed);
  out->operations = e->operations.load(std::memory_order_relaxed);
  out->errors = e->errors.load(std::memory_order_relaxed);
  out->last_slot = e->last_slot.load(std::memory_order_relaxed);
  e->pins.fetch_sub(1, std::memory_order_release);
  return true;
}

int32_t SessionTable::last_slot(std::string_view id) const {
  SessionEntry* e = find_pinned(id);
  if (!e) return -1;
  int32_t s = e->last_slot.load(std::memory_order_relaxed);
  e->pins.fetch_sub(1, std::memory_order_release);
  return s;
}

bool SessionTable::remove(std::string_view id) {
  if (!valid_session_id(id) || capacity_ == 0) return false;
  lock();
  bool found = false;
  const uint64_t start = home(id);
  for (uint64_t i = 0; i < capacity_; ++i) {
    SessionEntry& e = entries_[(start + i) % capacity_];
    uint64_t w = e.state.load(std::memory_order_acquire);
    if (state_of(w) == uint64_t(SessionState::empty)) break;
    if (state_of(w) == uint64_t(SessionState::active) && id_equals(e, id)) {
      e.state.store(next_word(w, SessionState::tombstone), std::memory_order_release);
      found = true;
      break;
    }
  }
  unlock();
  return found;
}

uint32_t SessionTable::expire(int64_t now_ns, int64_t ttl_ns, std::vector<std::string>* expired) {
  if (capacity_ == 0) return 0;
  lock();
  uint32_t removed = 0;
  for (uint32_t i = 0; i < capacity_; ++i) {
    SessionEntry& e = entries_[i];
    uint64_t w = e.state.load(std::memory_order_acquire);
    if (state_of(w) == uint64_t(SessionState::active) &&
        e.last_activity_ns.load(std::memory_order_relaxed) < now_ns - ttl_ns) {
      e.state.store(next_word(w, SessionState::tombstone), std::memory_order_release);
      if (expired) expired->push_back(read_id(e));
      ++removed;
    }
  }
  // Compaction: a tombstone followed by an empty entry ends no probe chain
  // that matters, so it can become empty; sweep until nothing changes.
  for (bool changed = true; changed;) {
    changed = false;
    for (uint32_t i = 0; i < capacity_; ++i) {
      SessionEntry& e = entries_[i];
      uint64_t w = e.state.load(std::memory_order_acquire);
      uint64_t next = entries_[(i + 1) % capacity_].state.load(std::memory_order_acquire);
      if (state_of(w) == uint64_t(SessionState::tombstone) &&
          state_of(next) == uint64_t(SessionState::empty) &&
          e.pins.load(std::memory_order_acquire) == 0) {
        e.state.store(next_word(w, SessionState::empty), std::memory_order_release);
        changed = true;
      }
    }
  }
  unlock();
  return removed;
}

std::vector<SessionSnapshot> SessionTable::list() const {
  std::vector<SessionSnapshot> out;
  for (uint32_t i = 0; i < capacity_; ++i) {
    SessionEntry& e = entries_[i];
    uint64_t w = e.state.load(std::memory_order_acquire);
    if (state_of(w) != uint64_t(SessionState::active)) continue;
    SessionSnapshot s;
    s.id = read_id(e);
    s.created_ns = e.created_ns.load(std::memory_order_relaxed);
    s.last_activity_ns = e.last_activity_ns.load(std::memory_order_relaxed);
    s.operations = e.operations.load(std::memory_order_relaxed);
    s.errors = e.errors.load(std::memory_order_relaxed);
    s.last_slot = e.last_slot.load(std::memory_order_relaxed);
    if (e.state.load(std::memory_order_acquire) == w) out.push_back(std::move(s));
  }
  return out;
}

uint32_t SessionTable::active_count() const {
  uint32_t n = 0;
  for (uint32_t i = 0; i < capacity_; ++i) {
    n += state_of(entries_[i].state.load(std::memory_order_acquire)) ==
         uint64_t(SessionState::active);
  }
  return n;
}

}  // namespace shmpool::ipc
