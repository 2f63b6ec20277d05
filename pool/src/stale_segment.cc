#include "pool/src/stale_segment.h"

#include <sys/stat.h>

namespace shmpool::detail {

OwnerLiveness segment_owner(std::string_view pool_name, int* owner_pid) {
  std::unique_ptr<ipc::Segment> seg;
  if (ipc::Segment::attach(pool_name, &seg, nullptr, ipc::Segment::Access::read_only) !=
      ipc::Errc::ok)
    return OwnerLiveness::unknown;
  if (owner_pid) *owner_pid = seg->header().owner_pid;
  return owner_liveness(seg->header());
}

OwnerLiveness owner_liveness(const ipc::SegmentHeader& h) {
  const int pid = h.owner_pid;
  const uint64_t start = h.owner_start_time;
  // A live process with the same pid but another start time is a reused pid.
  if (pid <= 0 || !ipc::process_exists(pid)) return OwnerLiveness::dead;
  const uint64_t now_start = ipc::process_start_time(pid);
  if (now_start != 0 && start != 0 && now_start != start) return OwnerLiveness::dead;
  return OwnerLiveness::alive;
}

namespace {
ino_t shm_inode(std::string_view pool_name) {
  struct stat st {};
  const std::string path = "/dev/shm/" + ipc::shm_object_name(pool_name);
  return ::stat(path.c_str(), &st) == 0 ? st.st_ino : 0;
}
}  // namespace

bool reclaim_if_stale(std::string_view pool_name) {
  const ino_t before = shm_inode(pool_name);
  if (before == 0 || segment_owner(pool_name) != OwnerLiveness::dead) return false;
  if (shm_inode(pool_name) != before) return false;  // re-created meanwhile
  return ipc::Segment::remove(pool_name) == ipc::Errc::ok;
}

Expected<std::unique_ptr<ipc::Segment>> attach_segment(std::string_view pool_name,
                                                       ipc::Segment::Access access) {
  if (!ipc::valid_pool_name(pool_name)) {
    return make_error(Category::config_error, "invalid_name",
                      "a pool name is 1-64 characters of [A-Za-z0-9_.-]")
        .with("pool_name", std::string(pool_name));
  }
  std::unique_ptr<ipc::Segment> seg;
  ipc::SysError err;
  ipc::Errc rc = ipc::Segment::attach(pool_name, &seg, &err, access);
  if (rc == ipc::Errc::ok) return seg;
  if (rc == ipc::Errc::not_found) {
    return make_error(Category::resource_error, "unknown_pool", "no pool with this name")
        .with("pool_name", std::string(pool_name));
  }
  if (rc == ipc::Errc::permission) {
    return make_error(Category::resource_error, "permission_denied",
                      "the pool's segment belongs to another user")
        .with("pool_name", std::string(pool_name));
  }
  return make_error(Category::protocol_error, "bad_segment",
                    "not a shmpool segment of this version")
      .with("pool_name", std::string(pool_name))
      .with("reason", std::string(ipc::errc_name(rc)));
}

PoolEvent timeout_event(const Error& e) {
  PoolEvent ev;
  ev.kind = PoolEvent::Kind::call_timed_out;
  ev.time_ns = ipc::monotonic_ns();
  ev.detail = e.type;
  auto get = [&](const char* key) {
    auto it = e.context.find(key);
    return it == e.context.end() ? std::string() : it->second;
  };
  ev.session_id = get("session_id");
  if (auto slot = get("slot"); !slot.empty()) ev.slot = int32_t(std::stol(slot));
  if (auto pid = get("worker_pid"); !pid.empty()) ev.pid = pid_t(std::stol(pid));
  return ev;
}

}  // namespace shmpool::detail
