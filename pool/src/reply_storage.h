// reply_storage.h: where a Reply's private envelope copy comes from. A dead
// Reply gives its buffer back to its thread (reply.cc), so a small call on
// that thread allocates nothing.
#pragma once

#include <cstdint>
#include <vector>

namespace shmpool::detail {

// An empty buffer, with the capacity of one a dead Reply gave back on this
// thread when there is one.
std::vector<uint8_t> take_envelope_buffer();

}  // namespace shmpool::detail
