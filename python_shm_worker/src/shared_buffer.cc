#include "shared_buffer.h"

#include "context.h"
#include "register.h"

namespace shmpool::pyworker {

py::object make_shared_buffer(ipc::Arena* arena, uint8_t* p, std::size_t n, bool writable) {
  py::object o = py::cast(new SharedBuffer(), py::return_value_policy::take_ownership);
  auto* sb = o.cast<SharedBuffer*>();
  sb->ptr = p;
  sb->len = n;
  sb->writable = writable;
  sb->arena = arena;
  return o;
}

bool detach_view(py::object& view, py::object& owner, py::object* kept) {
  py::object& o = *kept;
  o = std::move(owner);
  owner = py::object();
  if (view) {
    try {
      view.attr("release")();
    } catch (py::error_already_set&) {
      // Buffers exported from the view itself: it stays, so does the block.
    }
    view = py::object();
  }
  return o && Py_REFCNT(o.ptr()) > 1;
}

bool finish_views(Context& ctx, ipc::Arena& arena) {
  bool safe = true;
  if (ctx.payload_owner) {
    auto* sb = ctx.payload_owner.cast<SharedBuffer*>();
    py::object kept;
    if (!detach_view(ctx.payload_view, ctx.payload_owner, &kept)) {
      sb->live = false;
    } else if (arena.pin(ctx.payload_block, ctx.payload_word)) {
      sb->index = ctx.payload_block;
      sb->hold = SharedBuffer::Hold::pinned;
    } else {
      // Pinned by another worker already: we cannot keep it safely.
      safe = false;
    }
  }
  ctx.payload_view = py::object();
  if (ctx.body_owner) {
    auto* sb = ctx.body_owner.cast<SharedBuffer*>();
    py::object kept;
    if (detach_view(ctx.body_view, ctx.body_owner, &kept)) safe = false;
    sb->live = false;
  }
  ctx.body_view = ctx.body_owner = py::object();
  finish_output(ctx);
  return safe;
}

void finish_output(Context& ctx) {
  if (ctx.output_owner && py::isinstance<SharedBuffer>(ctx.output_owner)) {
    auto* sb = ctx.output_owner.cast<SharedBuffer*>();
    py::object kept;
    if (!detach_view(ctx.output_view, ctx.output_owner, &kept)) {
      sb->live = false;
      sb->let_go();
    }
  }
  ctx.output_view = ctx.output_owner = py::object();
}

void register_shared_buffer(py::module_& m) {
  py::class_<SharedBuffer>(m, "SharedBuffer", py::buffer_protocol(),
                           "Bytes in shared memory (see Context.payload).")
      .def_buffer([](SharedBuffer& b) -> py::buffer_info {
        // A stale buffer exports nothing (never reused memory); pybind11
        // cannot raise from here.
        static uint8_t none = 0;
        if (!b.live) return py::buffer_info(&none, 1, "B", 1, {0}, {1}, true);
        return py::buffer_info(b.ptr, 1, "B", 1, {py::ssize_t(b.len)}, {1}, !b.writable);
      });
}

}  // namespace shmpool::pyworker
