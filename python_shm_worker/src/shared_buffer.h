// shared_buffer.h: bytes in shared memory handed to Python, and how long
// Python may keep them.
//
// A SharedBuffer exports shared memory through the buffer protocol; Python
// owns it (memoryviews and numpy arrays keep it alive). While a call runs
// it views the request payload, the request body (the frame) or the output
// block. After the call (finish_views), a view nothing reaches any more is
// released; one that Python still reaches keeps its block alive: the
// request block pinned, the output block held by this worker, let go in the
// SharedBuffer's destructor, so a view never reads memory that was reused.
// A stale SharedBuffer exports zero bytes. A view of the frame (ctx.body)
// cannot be kept safely: the worker then exits after its reply.
#pragma once

#include <pybind11/pybind11.h>

#include <cstddef>
#include <cstdint>

#include "ipc/arena.h"

namespace shmpool::pyworker {

namespace py = pybind11;
class Context;

class SharedBuffer {
 public:
  enum class Hold { none, pinned, held };
  uint8_t* ptr = nullptr;
  std::size_t len = 0;
  bool writable = false;
  bool live = true;  // false: exports nothing
  ipc::Arena* arena = nullptr;
  uint32_t index = 0;
  uint64_t word = 0;
  Hold hold = Hold::none;

  SharedBuffer() = default;
  SharedBuffer(const SharedBuffer&) = delete;
  SharedBuffer& operator=(const SharedBuffer&) = delete;
  ~SharedBuffer() { let_go(); }
  void let_go() {
    if (hold == Hold::pinned) arena->unpin(index);
    if (hold == Hold::held) arena->free(index, word);
    hold = Hold::none;
  }
};

// A new SharedBuffer over [p, p + n) (in `arena`'s segment), owned by Python.
py::object make_shared_buffer(ipc::Arena* arena, uint8_t* p, std::size_t n, bool writable);

// Drops the Context's references to a view and its SharedBuffer and
// releases the view; *kept receives the SharedBuffer (drop it after
// deciding what its block becomes). True if Python code still reaches it
// (a numpy array or a memoryview made from the view, a global): its block
// must then outlive the call.
bool detach_view(py::object& view, py::object& owner, py::object* kept);

// After the handler: drops the Context's views (see the top). False if a
// view that cannot be kept safely outlives the call (a view of ctx.body, or
// of a request payload another worker pinned already): the worker must exit
// after its reply.
bool finish_views(Context& ctx, ipc::Arena& arena);
// The output part of finish_views, after each item of a stream: the next
// item may alloc_output() again.
void finish_output(Context& ctx);

}  // namespace shmpool::pyworker
