#include "pool/src/caller.h"

#include "pool/src/stale_segment.h"

namespace shmpool::detail {

int64_t Caller::session_now() const { return clock ? clock() : ipc::monotonic_ns(); }

Error Caller::with_context(Error e, std::string_view session_id, int slot, pid_t pid) const {
  e.with("pool_name", pool_name);
  if (!session_id.empty()) e.with("session_id", std::string(session_id));
  if (slot >= 0) e.with("slot", std::to_string(slot));
  if (pid > 0) e.with("worker_pid", std::to_string(pid));
  return e;
}

Error Caller::count(Error e) {
  seg->header().errors_by_category[int(e.category)].fetch_add(1, std::memory_order_relaxed);
  if (on_event && e.category == Category::timeout_error) emit(timeout_event(e));
  return e;
}

void Caller::record_session(std::string_view id, int32_t slot, bool failed) {
  if (id.empty()) return;
  bool created = false;
  if (sessions.record(id, session_now(), slot, failed, &created) == ipc::Errc::ring_full) {
    seg->header().session_table_full.fetch_add(1, std::memory_order_relaxed);
  }
  if (created) {
    emit({PoolEvent::Kind::session_created, ipc::monotonic_ns(), slot, 0, std::string(id), {}});
  }
}

void Caller::emit(PoolEvent e) const {
  if (!on_event) return;
  try {
    on_event(e);
  } catch (...) {  // the host's callback must not break the pool
  }
}

Status Caller::end_session(std::string_view id) {
  if (!sessions.remove(id)) {
    return with_context(make_error(Category::config_error, "unknown_session", "no such session"),
                        id);
  }
  emit({PoolEvent::Kind::session_ended, ipc::monotonic_ns(), -1, 0, std::string(id), {}});
  return {};
}

std::optional<SessionInfo> Caller::session(std::string_view id) const {
  ipc::SessionSnapshot snap;
  if (!ipc::valid_session_id(id) || !sessions.find(id, &snap)) return std::nullopt;
  return session_info(snap);
}

std::vector<SessionInfo> Caller::list_sessions() const {
  std::vector<SessionInfo> out;
  for (auto& s : sessions.list()) out.push_back(session_info(s));
  return out;
}

}  // namespace shmpool::detail
