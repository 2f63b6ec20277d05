#include "pool/src/stale_segment.h"

namespace shmpool::detail {

OwnerLiveness segment_owner(std::string_view pool_name, int* owner_pid) {
  std::unique_ptr<ipc::Segment> seg;
  if (ipc::Segment::attach(pool_name, &seg) != ipc::Errc::ok) return OwnerLiveness::unknown;
  const ipc::SegmentHeader& h = seg->header();
  const int pid = h.owner_pid;
  const uint64_t start = h.owner_start_time;
  if (owner_pid) *owner_pid = pid;
  // A live process with the same pid but another start time is a reused pid.
  if (!ipc::process_exists(pid)) return OwnerLiveness::dead;
  const uint64_t now_start = ipc::process_start_time(pid);
  if (now_start != 0 && start != 0 && now_start != start) return OwnerLiveness::dead;
  return OwnerLiveness::alive;
}

bool reclaim_if_stale(std::string_view pool_name) {
  if (segment_owner(pool_name) != OwnerLiveness::dead) return false;
  return ipc::Segment::remove(pool_name) == ipc::Errc::ok;
}

}  // namespace shmpool::detail
