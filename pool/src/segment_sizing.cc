#include "pool/src/segment_sizing.h"

#include <sys/statvfs.h>

#include <algorithm>
#include <cstdio>

#include "ipc/arena.h"

namespace shmpool::detail {

namespace {
uint64_t total_of(const ipc::Geometry& g) {
  ipc::Layout l{};
  return ipc::compute_layout(g, &l) == ipc::Errc::ok ? l.total : UINT64_MAX;
}
uint64_t pages_down(uint64_t n) { return n / ipc::kArenaPage * ipc::kArenaPage; }
uint64_t pages_up(uint64_t n) {
  return (n + ipc::kArenaPage - 1) / ipc::kArenaPage * ipc::kArenaPage;
}
}  // namespace

std::string format_bytes(uint64_t n) {
  if (n >= (1u << 20) && n % (1u << 20) == 0) return std::to_string(n >> 20) + " MiB";
  char buf[32];
  if (n >= (1u << 20)) {
    std::snprintf(buf, sizeof buf, "%.1f MiB", double(n) / double(1u << 20));
    return buf;
  }
  if (n >= (1u << 10) && n % (1u << 10) == 0) return std::to_string(n >> 10) + " KiB";
  return std::to_string(n) + " bytes";
}

uint64_t shm_free_bytes() {
  struct statvfs st {};
  if (::statvfs("/dev/shm", &st) != 0) return 0;
  return uint64_t(st.f_bavail) * st.f_frsize;
}

Expected<FittedGeometry> fit_segment(const SizeRequest& r, uint64_t shm_free) {
  FittedGeometry out;
  ipc::Geometry& g = out.geometry;
  g.slot_count = r.slot_count;
  g.session_capacity = r.session_capacity;
  g.request_ring_bytes = r.request_ring_bytes.value_or(kDefaultRingBytes);
  g.response_ring_bytes = r.response_ring_bytes.value_or(kDefaultRingBytes);
  g.arena_bytes = pages_up(r.arena_bytes.value_or(kDefaultArenaBytes));
  out.segment_bytes = total_of(g);
  const bool auto_arena = !r.arena_bytes, auto_request = !r.request_ring_bytes,
             auto_response = !r.response_ring_bytes;
  if (shm_free == 0 || out.segment_bytes <= shm_free ||
      !(auto_arena || auto_request || auto_response)) {
    return out;  // fits, unknown, or all set by the caller: exactly as asked
  }
  const uint64_t budget = shm_free / 2;
  // The automatic arena: as much of what the rest leaves of the budget as
  // the default, at least the minimum (the arena's block table grows with
  // it, hence the second step).
  auto fit_arena = [&] {
    if (!auto_arena) return;
    ipc::Geometry without = g;
    without.arena_bytes = 0;
    const uint64_t rest = total_of(without);
    g.arena_bytes = std::max(
        kMinAutoArenaBytes,
        std::min(pages_up(kDefaultArenaBytes), rest < budget ? pages_down(budget - rest) : 0));
    for (uint64_t t = total_of(g); t > budget && g.arena_bytes > kMinAutoArenaBytes;
         t = total_of(g)) {
      g.arena_bytes = std::max(kMinAutoArenaBytes, g.arena_bytes - pages_up(t - budget));
    }
  };
  fit_arena();
  while (total_of(g) > budget && ((auto_request && g.request_ring_bytes > kMinAutoRingBytes) ||
                                  (auto_response && g.response_ring_bytes > kMinAutoRingBytes))) {
    if (auto_request && g.request_ring_bytes > kMinAutoRingBytes) g.request_ring_bytes /= 2;
    if (auto_response && g.response_ring_bytes > kMinAutoRingBytes) g.response_ring_bytes /= 2;
    fit_arena();
  }
  out.segment_bytes = total_of(g);
  if (out.segment_bytes > budget) {
    return make_error(Category::resource_error, "shm_exhausted",
                      "/dev/shm is too small for this pool even at the smallest automatic sizes "
                      "(rings " +
                          format_bytes(kMinAutoRingBytes) + ", payload arena " +
                          format_bytes(kMinAutoArenaBytes) +
                          "; a pool keeps half of the free space for others)")
        .with("needed_bytes", std::to_string(out.segment_bytes))
        .with("available_bytes", std::to_string(shm_free))
        .with("minimum_shm_bytes", std::to_string(2 * out.segment_bytes));
  }
  out.shrunk = true;
  out.note = "/dev/shm has " + format_bytes(shm_free) + " free, too little for the default " +
             format_bytes(total_of([&] {
               ipc::Geometry d = g;
               d.request_ring_bytes = r.request_ring_bytes.value_or(kDefaultRingBytes);
               d.response_ring_bytes = r.response_ring_bytes.value_or(kDefaultRingBytes);
               d.arena_bytes = pages_up(r.arena_bytes.value_or(kDefaultArenaBytes));
               return d;
             }())) +
             " segment: using payload arena " + format_bytes(g.arena_bytes) + ", rings " +
             format_bytes(g.request_ring_bytes) + " / " + format_bytes(g.response_ring_bytes) +
             " per worker (" + format_bytes(out.segment_bytes) +
             ", half the free space at most); set the sizes to choose them";
  return out;
}

}  // namespace shmpool::detail
