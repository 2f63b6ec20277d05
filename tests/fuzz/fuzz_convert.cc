// libFuzzer target: args to Python in the worker's native core. Input bytes
// that pass the FlexBuffers verifier (as every request's args do, inside the
// verified envelope) are converted to Python objects (flex_to_py) and back
// (py_to_flex): no crash, no leak, a clear Python error for what it rejects.
#include <pybind11/embed.h>

#include <cstdint>
#include <vector>

#include "convert.h"
#include "flatbuffers/flexbuffers.h"

namespace py = pybind11;
using namespace shmpool::pyworker;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static py::scoped_interpreter* python = [] {
    auto* p = new py::scoped_interpreter();  // never torn down
    // Conversion makes no reference cycles; the cyclic collector only slows
    // every input down (its passes grow with the interpreter's live objects).
    py::module_::import("gc").attr("disable")();
    return p;
  }();
  (void)python;
  std::vector<uint8_t> buf(data, data + size);
  if (buf.empty() || !flexbuffers::VerifyBuffer(buf.data(), buf.size())) return 0;
  try {
    int64_t budget = int64_t(buf.size()) + 16;
    py::object value =
        flex_to_py(flexbuffers::GetRoot(buf.data(), buf.size()), buf.data() + buf.size(), &budget);
    shmpool::ipc::FlexWriter b;
    py_to_flex(b, value);
    b.Finish();
    if (!flexbuffers::VerifyBuffer(b.data(), b.size())) __builtin_trap();
  } catch (py::error_already_set&) {
    // Rejected with a Python exception (depth limit, unsupported key): fine.
  } catch (py::builtin_exception&) {
  }
  return 0;
}
