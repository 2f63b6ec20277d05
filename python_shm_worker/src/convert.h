// convert.h: FlexBuffers <-> Python objects, in C++ (the hot path of the
// worker; pure-Python FlexBuffers costs 27-75 us per message).
#pragma once

#include <pybind11/pybind11.h>

#include <string>

#include "flatbuffers/flexbuffers.h"
#include "ipc/flex_writer.h"

namespace shmpool::pyworker {

namespace py = pybind11;

inline constexpr int kMaxDepth = 64;

// Converts a verified FlexBuffer value whose buffer ends at `end`. Throws
// py::value_error past kMaxDepth, past `budget` values in all (FlexBuffers
// may share a value from many places, so a small buffer can stand for an
// exponentially large tree; callers pass the buffer's size), and for a key
// with no terminating NUL before `end` (FlatBuffers 2.0.8's verifier does
// not check that).
py::object flex_to_py(const flexbuffers::Reference& ref, const uint8_t* end, int64_t* budget,
                      int depth = 0);

// Appends `obj` to `b`. Supported: None, bool, int (64-bit signed or
// unsigned), float, str, bytes-like, dict with str keys (no NUL in them),
// list, tuple, and objects with __index__ / __float__ (numpy scalars).
// Throws py::type_error naming an unsupported type, py::value_error for a
// key with a NUL.
void py_to_flex(ipc::FlexWriter& b, py::handle obj, int depth = 0);

}  // namespace shmpool::pyworker
