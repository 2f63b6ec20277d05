// python_shm_worker._native, the private native core of python_shm_worker:
// the shared-memory worker loop. It waits for a request with the GIL
// released, verifies the frame, decodes the envelope and args into Python
// objects in C++, calls the registered handler, and encodes the result into
// the response ring in C++. This file only registers; each part has its
// own file (register.h).
#include "ipc/segment.h"
#include "register.h"

PYBIND11_MODULE(_native, m) {
  using namespace shmpool::pyworker;
  m.doc() = "Private native core of python_shm_worker. Not a public API.";
  register_context(m);
  register_arena_error(m);
  register_shared_buffer(m);
  register_worker(m);
  m.def("layout_version", [] { return shmpool::ipc::kLayoutVersion; });
  register_codec(m);
}
