// register.h: the parts of python_shm_worker._native, one file each;
// module.cc registers them and nothing else.
#pragma once

#include <pybind11/pybind11.h>

namespace shmpool::pyworker {

namespace py = pybind11;

void register_arena_error(py::module_& m);    // arena_alloc.cc: ArenaError
void register_shared_buffer(py::module_& m);  // shared_buffer.cc: SharedBuffer
void register_context(py::module_& m);        // context.cc: Context
void register_worker(py::module_& m);         // worker.cc: ShmWorker
void register_codec(py::module_& m);          // codec.cc: decode_request, encode_response

}  // namespace shmpool::pyworker
