// Pools seen from outside their owner, through a read-only mapping.
#include "shmpool/inspect.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>

#include "ipc/segment.h"
#include "ipc/session_table.h"
#include "ipc/slot_table.h"
#include "pool/src/stale_segment.h"

namespace shmpool {

namespace {

Expected<std::unique_ptr<ipc::Segment>> attach_read_only(std::string_view pool_name) {
  return detail::attach_segment(pool_name, ipc::Segment::Access::read_only);
}

const char* pool_state_name(uint32_t s) {
  switch (ipc::PoolState(s)) {
    case ipc::PoolState::initializing:
      return "initializing";
    case ipc::PoolState::ready:
      return "ready";
    case ipc::PoolState::closing:
      return "closing";
  }
  return "unknown";
}

ipc::SessionTable session_table(const ipc::Segment& seg) {
  // Only list() and active_count() are used: they load, never store.
  return ipc::SessionTable(seg.sessions(), seg.geometry().session_capacity,
                           &seg.header().session_lock, 0);
}

}  // namespace

Expected<PoolSnapshot> inspect_pool(std::string_view pool_name) {
  auto seg = attach_read_only(pool_name);
  if (!seg.ok()) return seg.error();
  return detail::snapshot_of(**seg);
}

namespace detail {

PoolSnapshot snapshot_of(const ipc::Segment& s) {
  const ipc::SegmentHeader& h = s.header();
  const int64_t now = ipc::monotonic_ns();
  auto seconds_since = [now](int64_t t) { return t > 0 && t <= now ? double(now - t) / 1e9 : -1; };
  PoolSnapshot p;
  p.name = s.pool_name();
  p.owner_pid = h.owner_pid;
  p.owner_alive = detail::owner_liveness(h) == detail::OwnerLiveness::alive;
  p.state = pool_state_name(h.pool_state.load(std::memory_order_acquire));
  p.segment_bytes = s.size();
  p.slot_count = s.geometry().slot_count;
  p.session_capacity = s.geometry().session_capacity;
  p.request_ring_bytes = s.geometry().request_ring_bytes;
  p.response_ring_bytes = s.geometry().response_ring_bytes;
  p.arena_bytes = s.geometry().arena_bytes;
  const ipc::Arena::Usage u = s.arena().usage();
  p.arena_bytes_in_use = u.bytes;
  p.arena_blocks_in_use = u.blocks;
  p.arena_pinned_blocks = u.pinned;
  p.uptime_s = std::max(0.0, seconds_since(h.created_ns));
  const ipc::SlotTable::CallCounts calls = ipc::SlotTable::call_counts(s);
  p.calls = calls.successes + calls.errors;
  p.successes = calls.successes;
  p.checkout_timeouts = h.checkout_timeouts.load(std::memory_order_relaxed);
  p.session_table_full = h.session_table_full.load(std::memory_order_relaxed);
  for (int c = 0; c <= int(Category::cancelled); ++c) {
    p.errors_by_category[std::string(category_name(Category(c)))] =
        h.errors_by_category[c].load(std::memory_order_relaxed);
  }
  p.waiting = ipc::waiting_callers(h.queue);
  p.active_sessions = session_table(s).active_count();
  for (int st = 0; st <= int(ipc::SlotState::dead); ++st)
    p.slots_by_state[ipc::slot_state_name(ipc::SlotState(st))] = 0;
  for (uint32_t i = 0; i < s.slot_count(); ++i) {
    const ipc::SlotData& sd = s.slot(i);
    const uint64_t word = sd.state.load(std::memory_order_acquire);
    SlotSnapshot slot;
    slot.slot = i;
    const auto state = ipc::slot_state(word);
    slot.state = ipc::slot_state_name(state);
    slot.generation = ipc::slot_generation(word);
    slot.pid = state == ipc::SlotState::empty ? 0 : sd.worker_pid.load(std::memory_order_relaxed);
    slot.checkouts = sd.checkouts.load(std::memory_order_relaxed);
    slot.calls = sd.calls.load(std::memory_order_relaxed);
    slot.successes = sd.successes.load(std::memory_order_relaxed);
    slot.errors = sd.errors.load(std::memory_order_relaxed);
    slot.restarts = sd.restarts.load(std::memory_order_relaxed);
    slot.last_activity_ns = int64_t(sd.last_activity_ns.load(std::memory_order_relaxed));
    slot.idle_s = seconds_since(slot.last_activity_ns);
    if (slot.pid != 0)
      slot.worker_age_s = seconds_since(sd.started_ns.load(std::memory_order_relaxed));
    ++p.slots_by_state[slot.state];  // "unknown" for a corrupt state byte
    p.slots.push_back(std::move(slot));
  }
  return p;
}

}  // namespace detail

Expected<std::vector<SessionInfo>> inspect_sessions(std::string_view pool_name) {
  auto seg = attach_read_only(pool_name);
  if (!seg.ok()) return seg.error();
  std::vector<SessionInfo> out;
  for (auto& s : session_table(**seg).list()) out.push_back(detail::session_info(s));
  return out;
}

std::vector<PoolListing> list_pools() {
  std::vector<PoolListing> out;
  DIR* d = ::opendir("/dev/shm");
  if (!d) return out;
  while (dirent* e = ::readdir(d)) {
    std::string_view file = e->d_name;
    if (!file.starts_with(ipc::kShmPrefix)) continue;
    PoolListing l;
    l.name = std::string(file.substr(ipc::kShmPrefix.size()));
    struct stat st {};
    if (::stat(("/dev/shm/" + std::string(file)).c_str(), &st) == 0)
      l.segment_bytes = uint64_t(st.st_size);
    auto seg = attach_read_only(l.name);
    if (seg.ok()) {
      l.owner_pid = (*seg)->header().owner_pid;
      l.owner_alive = detail::owner_liveness((*seg)->header()) == detail::OwnerLiveness::alive;
    } else {
      l.problem = seg.error().to_string();
    }
    out.push_back(std::move(l));
  }
  ::closedir(d);
  std::sort(out.begin(), out.end(),
            [](const PoolListing& a, const PoolListing& b) { return a.name < b.name; });
  return out;
}

std::vector<PoolListing> remove_stale_pools(const std::vector<std::string>& only) {
  std::vector<PoolListing> removed;
  for (auto& l : list_pools()) {
    if (!l.problem.empty() || l.owner_alive) continue;
    if (!only.empty() && std::find(only.begin(), only.end(), l.name) == only.end()) continue;
    // Checked again right before removing: the name may have been reclaimed
    // by a new owner since it was listed.
    if (detail::reclaim_if_stale(l.name)) removed.push_back(std::move(l));
  }
  return removed;
}

}  // namespace shmpool
