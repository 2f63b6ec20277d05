#include "ipc/segment.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/interprocess/mapped_region.hpp>
#include <boost/interprocess/shared_memory_object.hpp>
#include <cstring>
#include <new>

#include "ipc/session_table.h"

namespace bip = boost::interprocess;

namespace shmpool::ipc {

struct Segment::Mapping {
  bip::shared_memory_object shm;
  bip::mapped_region region;
};

namespace {
constexpr uint64_t kMinRing = 4096;
constexpr uint64_t kMaxRing = uint64_t(1) << 31;  // frame lengths are 32-bit
constexpr uint32_t kMaxSlots = 1024;
constexpr uint32_t kMaxSessions = 1u << 20;

Errc map_errno(int e) {
  switch (e) {
    case EEXIST:
      return Errc::exists;
    case ENOENT:
      return Errc::not_found;
    case ENOSPC:
    case ENOMEM:
    case EFBIG:
      return Errc::no_space;
    case EACCES:
    case EPERM:
      return Errc::permission;
    default:
      return Errc::system;
  }
}

bool ring_size_ok(uint64_t n) { return n >= kMinRing && n <= kMaxRing && n % kCacheLine == 0; }
}  // namespace

Errc compute_layout(const Geometry& g, Layout* out) {
  if (g.slot_count == 0 || g.slot_count > kMaxSlots) return Errc::bad_layout;
  if (!ring_size_ok(g.request_ring_bytes) || !ring_size_ok(g.response_ring_bytes)) {
    return Errc::bad_layout;
  }
  if (g.session_capacity > kMaxSessions) return Errc::bad_layout;
  if (g.arena_bytes % kArenaPage != 0 || g.arena_bytes / kArenaPage > kMaxArenaPages) {
    return Errc::bad_layout;
  }
  Layout l{};
  l.slots_offset = sizeof(SegmentHeader);
  l.sessions_offset = align_up(l.slots_offset + uint64_t(g.slot_count) * sizeof(SlotData), 4096);
  l.rings_offset =
      align_up(l.sessions_offset + uint64_t(g.session_capacity) * kSessionEntryBytes, 4096);
  l.slot_stride = g.request_ring_bytes + g.response_ring_bytes;
  const uint64_t pages = g.arena_bytes / kArenaPage;
  l.arena_blocks_offset = align_up(l.rings_offset + l.slot_stride * g.slot_count, kCacheLine);
  l.arena_data_offset = align_up(l.arena_blocks_offset + pages * sizeof(ArenaBlock), 4096);
  l.total = align_up(l.arena_data_offset + g.arena_bytes, 4096);
  *out = l;
  return Errc::ok;
}

bool valid_pool_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxNameLength || name[0] == '.') return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.';
    if (!ok) return false;
  }
  return true;
}

std::string shm_object_name(std::string_view pool_name) {
  return std::string(kShmPrefix) + std::string(pool_name);
}

Errc Segment::create(std::string_view pool_name, const Geometry& g, std::unique_ptr<Segment>* out,
                     SysError* err) {
  if (!valid_pool_name(pool_name)) return Errc::bad_name;
  Layout layout;
  if (Errc e = compute_layout(g, &layout); e != Errc::ok) return e;
  const std::string obj = shm_object_name(pool_name);
  std::unique_ptr<Segment> seg(new Segment());
  seg->mapping_ = std::make_unique<Mapping>();
  try {
    bip::permissions perm(0600);
    seg->mapping_->shm =
        bip::shared_memory_object(bip::create_only, obj.c_str(), bip::read_write, perm);
  } catch (const bip::interprocess_exception& ex) {
    int e = ex.get_native_error();
    if (err) *err = SysError{e, "shm_open"};
    return map_errno(e);
  }
  int fd = seg->mapping_->shm.get_mapping_handle().handle;
  // Pre-allocate every page now: a full /dev/shm fails here with ENOSPC
  // instead of killing a process with SIGBUS on first touch later.
  int rc = ::posix_fallocate(fd, 0, off_t(layout.total));
  if (rc != 0) {
    if (err) *err = SysError{rc, "posix_fallocate"};
    bip::shared_memory_object::remove(obj.c_str());
    return map_errno(rc);
  }
  try {
    seg->mapping_->region =
        bip::mapped_region(seg->mapping_->shm, bip::read_write, 0, layout.total);
  } catch (const bip::interprocess_exception& ex) {
    if (err) *err = SysError{ex.get_native_error(), "mmap"};
    bip::shared_memory_object::remove(obj.c_str());
    return Errc::system;
  }
  seg->base_ = static_cast<uint8_t*>(seg->mapping_->region.get_address());
  seg->geometry_ = g;
  seg->layout_ = layout;
  seg->name_ = std::string(pool_name);
  // Fresh tmpfs pages are zero: every struct's zero state is valid. Construct
  // the header and slots in place to start their lifetimes.
  auto* h = new (seg->base_) SegmentHeader{};
  h->magic = kSegmentMagic;
  h->layout_version = kLayoutVersion;
  h->header_size = sizeof(SegmentHeader);
  h->segment_size = layout.total;
  h->owner_pid = ::getpid();
  h->owner_start_time = process_start_time(::getpid());
  h->created_ns = monotonic_ns();
  h->geometry = g;
  h->slots_offset = layout.slots_offset;
  h->rings_offset = layout.rings_offset;
  h->sessions_offset = layout.sessions_offset;
  std::memcpy(h->pool_name, pool_name.data(), pool_name.size());
  for (uint32_t i = 0; i < g.slot_count; ++i) {
    new (seg->base_ + layout.slots_offset + i * sizeof(SlotData)) SlotData{};
  }
  *out = std::move(seg);
  return Errc::ok;
}

Errc Segment::attach(std::string_view pool_name, std::unique_ptr<Segment>* out, SysError* err,
                     Access access) {
  const bip::mode_t mode = access == Access::read_only ? bip::read_only : bip::read_write;
  if (!valid_pool_name(pool_name)) return Errc::bad_name;
  const std::string obj = shm_object_name(pool_name);
  std::unique_ptr<Segment> seg(new Segment());
  seg->mapping_ = std::make_unique<Mapping>();
  try {
    seg->mapping_->shm = bip::shared_memory_object(bip::open_only, obj.c_str(), mode);
  } catch (const bip::interprocess_exception& ex) {
    int e = ex.get_native_error();
    if (err) *err = SysError{e, "shm_open"};
    return map_errno(e);
  }
  bip::offset_t file_size = 0;
  if (!seg->mapping_->shm.get_size(file_size) || uint64_t(file_size) < sizeof(SegmentHeader)) {
    return Errc::bad_magic;
  }
  try {
    seg->mapping_->region = bip::mapped_region(seg->mapping_->shm, mode, 0, size_t(file_size));
  } catch (const bip::interprocess_exception& ex) {
    if (err) *err = SysError{ex.get_native_error(), "mmap"};
    return Errc::system;
  }
  seg->base_ = static_cast<uint8_t*>(seg->mapping_->region.get_address());
  // Copy the header out before checking it: it is untrusted shared memory.
  SegmentHeader h;
  std::memcpy(static_cast<void*>(&h), seg->base_, offsetof(SegmentHeader, pool_state));
  std::memcpy(&h.sessions_offset, seg->base_ + offsetof(SegmentHeader, sessions_offset),
              sizeof h.sessions_offset);
  if (h.magic != kSegmentMagic) return Errc::bad_magic;
  if (h.layout_version != kLayoutVersion || h.header_size != sizeof(SegmentHeader)) {
    return Errc::bad_version;
  }
  Layout layout;
  if (compute_layout(h.geometry, &layout) != Errc::ok || layout.total != h.segment_size ||
      layout.total != uint64_t(file_size) || h.slots_offset != layout.slots_offset ||
      h.rings_offset != layout.rings_offset || h.sessions_offset != layout.sessions_offset) {
    return Errc::bad_layout;
  }
  seg->geometry_ = h.geometry;
  seg->layout_ = layout;
  seg->name_ = std::string(pool_name);
  *out = std::move(seg);
  return Errc::ok;
}

Errc Segment::remove(std::string_view pool_name) {
  if (!valid_pool_name(pool_name)) return Errc::bad_name;
  return bip::shared_memory_object::remove(shm_object_name(pool_name).c_str()) ? Errc::ok
                                                                               : Errc::not_found;
}

Segment::~Segment() = default;

SlotData& Segment::slot(uint32_t i) const {
  if (i >= geometry_.slot_count) std::abort();  // programming error, not shm input
  return *std::launder(
      reinterpret_cast<SlotData*>(base_ + layout_.slots_offset + i * sizeof(SlotData)));
}

FrameRing Segment::request_ring(uint32_t i) const {
  uint8_t* data = base_ + layout_.rings_offset + i * layout_.slot_stride;
  return FrameRing(&slot(i).request, data, geometry_.request_ring_bytes);
}

FrameRing Segment::response_ring(uint32_t i) const {
  uint8_t* data =
      base_ + layout_.rings_offset + i * layout_.slot_stride + geometry_.request_ring_bytes;
  return FrameRing(&slot(i).response, data, geometry_.response_ring_bytes);
}

// A dead worker's blocks stay while its slot is busy: the slot's holder may
// still take the block of a reply the worker sealed before it died. Once
// the holder lets the slot go (dead, after its call), they are freed.
bool Segment::reply_in_flight(const void* ctx, uint32_t pid) {
  const Segment& seg = *static_cast<const Segment*>(ctx);
  for (uint32_t i = 0; i < seg.slot_count(); ++i) {
    const SlotData& s = seg.slot(i);
    if (slot_state(s.state.load(std::memory_order_acquire)) == SlotState::busy &&
        uint32_t(s.worker_pid.load(std::memory_order_relaxed)) == pid) {
      return true;
    }
  }
  return false;
}

Arena Segment::arena() const {
  const uint64_t pages = geometry_.arena_bytes / kArenaPage;
  return Arena(&header().arena,
               std::launder(reinterpret_cast<ArenaBlock*>(base_ + layout_.arena_blocks_offset)),
               base_ + layout_.arena_data_offset, uint32_t(pages), &Segment::reply_in_flight, this);
}

}  // namespace shmpool::ipc
