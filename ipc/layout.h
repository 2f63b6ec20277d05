// layout.h: what every struct in shared memory is laid out by. The cache
// line is fixed (the Python core is built separately from the host, and both
// must agree), and every atomic type the segment uses must be lock-free: an
// atomic with a hidden lock is not shared between processes.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace shmpool::ipc {

inline constexpr std::size_t kCacheLine = 64;

static_assert(std::atomic<uint64_t>::is_always_lock_free);
static_assert(std::atomic<int64_t>::is_always_lock_free);
static_assert(std::atomic<uint32_t>::is_always_lock_free);
static_assert(std::atomic<int32_t>::is_always_lock_free);
static_assert(std::atomic<bool>::is_always_lock_free);

}  // namespace shmpool::ipc
