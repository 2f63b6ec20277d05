// arena_alloc.h: how the worker takes payload-arena blocks for Python: with
// the GIL released, waiting at most until shortly before the call's
// deadline, and python_shm_worker._native.ArenaError (a MemoryError) when it
// cannot. Its message is "<error type>: <text>", and the worker answers
// resource_error/<error type>.
#pragma once

#include <pybind11/pybind11.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "ipc/arena.h"

namespace shmpool::pyworker {

namespace py = pybind11;

// Payloads up to this size travel inside the ring frame (and are copied into
// a bytes object for Python); larger ones go through the payload arena.
inline constexpr std::size_t kInlinePayloadMax = 4096;

// The ArenaError type (null until register_arena_error).
PyObject* arena_error_type();
[[noreturn]] void raise_arena_error(const std::string& type, const std::string& text);

// Allocates an n-byte block with the GIL released, waiting for space at
// most 1 s and until 5 ms before the call's deadline (so the caller gets
// arena_exhausted, not a timeout). Called with the GIL held.
ipc::Errc alloc_block(ipc::Arena& arena, std::size_t n, int64_t call_deadline_ns,
                      const ipc::WaitPolicy& policy, ipc::BlockRef* out);

}  // namespace shmpool::pyworker
