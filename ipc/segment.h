// segment.h: the shared segment of one pool: the per-process handle
// `Segment` that maps it, and the layout it computes. The shared structs
// live apart: segment_header.h (SegmentHeader, Geometry), slot_data.h
// (SlotData, the slot state table), layout.h (cache line, lock-free atomics). The owner creates the
// segment (pre-allocated, mode 0600); workers and clients attach to it by name.
//
// Layout (offsets computed by compute_layout() from the Geometry stored in
// the header; every attacher recomputes them and checks the file size):
//   [SegmentHeader][SlotData x slot_count][session table][per slot: request
//   ring data, response ring data][payload arena (arena.h)]
// All offsets are relative to the segment base; nothing in the segment is a
// pointer.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "ipc/arena.h"
#include "ipc/errc.h"
#include "ipc/frame_ring.h"
#include "ipc/segment_header.h"
#include "ipc/slot_data.h"
#include "ipc/sys.h"

namespace shmpool::ipc {

struct Layout {
  uint64_t slots_offset;
  uint64_t sessions_offset;
  uint64_t rings_offset;
  uint64_t slot_stride;  // ring bytes per slot
  uint64_t arena_blocks_offset;
  uint64_t arena_data_offset;
  uint64_t total;
};
// Errc::bad_layout if the geometry is out of range.
Errc compute_layout(const Geometry& g, Layout* out);

// Validates a pool name: 1..64 bytes of [A-Za-z0-9_.-], not starting with '.'.
bool valid_pool_name(std::string_view name);
std::string shm_object_name(std::string_view pool_name);  // "shmpool.<name>"

// A mapped segment. Move-only. Removing the name is explicit (remove()), so a
// crashed owner's segment stays for reclaim by the next owner or `shmpool gc`.
class Segment {
 public:
  // Creates and pre-allocates a new segment (mode 0600). Errc::exists if the
  // name is taken, Errc::no_space if /dev/shm cannot hold it (the partial
  // object is removed), Errc::bad_name / bad_layout on bad input.
  static Errc create(std::string_view pool_name, const Geometry& g, std::unique_ptr<Segment>* out,
                     SysError* err = nullptr);
  enum class Access { read_write, read_only };
  // Maps an existing segment and verifies magic, version and layout. A
  // read-only mapping may only be read (loads of the atomics included):
  // observers such as `shmpool status` use it so they cannot disturb a pool.
  static Errc attach(std::string_view pool_name, std::unique_ptr<Segment>* out,
                     SysError* err = nullptr, Access access = Access::read_write);
  // Removes the name; existing mappings stay valid. Errc::not_found if absent.
  static Errc remove(std::string_view pool_name);

  ~Segment();
  Segment(const Segment&) = delete;
  Segment& operator=(const Segment&) = delete;

  SegmentHeader& header() const { return *reinterpret_cast<SegmentHeader*>(base_); }
  const Geometry& geometry() const { return geometry_; }
  uint32_t slot_count() const { return geometry_.slot_count; }
  SlotData& slot(uint32_t i) const;  // i < slot_count(), checked
  uint8_t* sessions() const { return base_ + layout_.sessions_offset; }
  FrameRing request_ring(uint32_t i) const;
  FrameRing response_ring(uint32_t i) const;
  Arena arena() const;
  // The arena's in-transit check (Arena::InTransitFn) for this segment.
  static bool reply_in_flight(const void* segment, uint32_t pid);
  uint8_t* base() const { return base_; }
  uint64_t size() const { return layout_.total; }
  const std::string& pool_name() const { return name_; }

 private:
  struct Mapping;
  Segment() = default;
  std::unique_ptr<Mapping> mapping_;
  uint8_t* base_ = nullptr;
  Geometry geometry_{};
  Layout layout_{};
  std::string name_;
};

}  // namespace shmpool::ipc
