// stale_segment.h: detecting and reclaiming a segment whose owner died.
#pragma once

#include <string_view>

#include "ipc/segment.h"

namespace shmpool::detail {

enum class OwnerLiveness { alive, dead, unknown };

// Reads the owner (pid + start time) recorded in a segment's header.
// `unknown` if the segment cannot be read as a shmpool segment.
OwnerLiveness segment_owner(std::string_view pool_name, int* owner_pid = nullptr);

// Removes the segment if its owner is dead. True if it removed it.
bool reclaim_if_stale(std::string_view pool_name);

}  // namespace shmpool::detail
