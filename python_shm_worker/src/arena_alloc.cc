#include "arena_alloc.h"

#include <algorithm>

#include "register.h"

namespace shmpool::pyworker {

namespace {
PyObject* g_arena_error = nullptr;

int64_t alloc_deadline(int64_t call_deadline_ns) {
  const int64_t cap = ipc::monotonic_ns() + 1'000'000'000;
  if (call_deadline_ns <= 0) return cap;
  return std::min(cap, call_deadline_ns - 5'000'000);
}
}  // namespace

PyObject* arena_error_type() { return g_arena_error; }

void raise_arena_error(const std::string& type, const std::string& text) {
  PyErr_SetString(g_arena_error, (type + ": " + text).c_str());
  throw py::error_already_set();
}

ipc::Errc alloc_block(ipc::Arena& arena, std::size_t n, int64_t call_deadline_ns,
                      const ipc::WaitPolicy& policy, ipc::BlockRef* out) {
  py::gil_scoped_release nogil;
  return arena.alloc(n, alloc_deadline(call_deadline_ns), policy, out);
}

void register_arena_error(py::module_& m) {
  g_arena_error =
      PyErr_NewException("python_shm_worker._native.ArenaError", PyExc_MemoryError, nullptr);
  m.attr("ArenaError") = py::handle(g_arena_error);
}

}  // namespace shmpool::pyworker
