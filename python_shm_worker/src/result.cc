#include "result.h"

#include <cstring>
#include <string>

#include "arena_alloc.h"
#include "convert.h"
#include "shared_buffer.h"

namespace shmpool::pyworker {

void ResultEncoder::encode(py::object result, Context& ctx, ipc::FlexWriter& flex,
                           ReplyPayload* out) {
  py::object value = result, payload_obj;
  // (A plain dict, the common result, skips the isinstance call.)
  if (!PyDict_CheckExact(result.ptr()) && !output_type_.is_none() &&
      py::isinstance(result, output_type_)) {
    value = result.attr("value");
    payload_obj = result.attr("payload");
    if (payload_obj.is_none()) payload_obj = py::object();
    py::object body = result.attr("body");
    if (!body.is_none()) {
      Py_buffer bv;
      if (PyObject_GetBuffer(body.ptr(), &bv, PyBUF_C_CONTIGUOUS) != 0)
        throw py::error_already_set();
      const auto* p = static_cast<const uint8_t*>(bv.buf);
      out->body.assign(p, p + bv.len);
      PyBuffer_Release(&bv);
    }
  } else if (!result.is_none() && PyObject_CheckBuffer(result.ptr())) {
    value = py::none();
    payload_obj = result;
  }
  py_to_flex(flex, value);
  flex.Finish();
  value = py::object();
  if (!payload_obj && PyDict_CheckExact(result.ptr()) && !ctx.payload_view && !ctx.body_view &&
      !ctx.output_view && !ctx.payload_owner && !ctx.body_owner && !ctx.output_owner) {
    // The common reply, with no view the dict could hold (finish_views
    // counts their references): freeing it can wait until it has been sent.
    kept_ = std::move(result);
    return;
  }
  result = py::object();
  if (!payload_obj && ctx.output_view) payload_obj = ctx.output_view;
  if (!payload_obj) return;
  Py_buffer view;
  if (PyObject_GetBuffer(payload_obj.ptr(), &view, PyBUF_C_CONTIGUOUS) != 0)
    throw py::error_already_set();
  std::span<const uint8_t> bytes(static_cast<const uint8_t*>(view.buf), size_t(view.len));
  SharedBuffer* ob = ctx.output_owner && py::isinstance<SharedBuffer>(ctx.output_owner)
                         ? ctx.output_owner.cast<SharedBuffer*>()
                         : nullptr;
  const bool in_output = ob && !bytes.empty() && bytes.data() >= ob->ptr &&
                         bytes.data() + bytes.size() <= ob->ptr + ob->len;
  if (in_output) {
    const uint64_t offset = uint64_t(bytes.data() - ob->ptr);
    PyBuffer_Release(&view);
    payload_obj = py::object();
    py::object kept;
    if (!detach_view(ctx.output_view, ctx.output_owner, &kept)) {
      // Nothing in Python can reach the block any more: hand it over.
      out->in_arena = true;
      out->ref = schema::ArenaRef(ob->index, 0, offset, bytes.size());
      out->word = ob->word;
      ob->hold = SharedBuffer::Hold::none;
      ob->live = false;
      return;
    }
    // A view of it outlives the call: it stays ours; the caller gets a copy.
    copy_out(std::span<const uint8_t>(ob->ptr + offset, bytes.size()), ctx.deadline_ns, out);
    return;
  }
  try {
    copy_out(bytes, ctx.deadline_ns, out);
  } catch (...) {
    PyBuffer_Release(&view);
    throw;
  }
  PyBuffer_Release(&view);
}

void ResultEncoder::copy_out(std::span<const uint8_t> bytes, int64_t deadline_ns,
                             ReplyPayload* out) {
  if (bytes.size() > kInlinePayloadMax && arena_->enabled()) {
    ipc::BlockRef b;
    if (alloc_block(*arena_, bytes.size(), deadline_ns, policy_, &b) == ipc::Errc::ok) {
      std::memcpy(b.bytes.data(), bytes.data(), bytes.size());
      out->in_arena = true;
      out->ref = schema::ArenaRef(b.index, 0, 0, bytes.size());
      out->word = b.word;
      return;
    }
    if (bytes.size() > inline_fallback_max_) {
      raise_arena_error("arena_exhausted", "no arena block of " + std::to_string(bytes.size()) +
                                               " bytes for the result payload");
    }
  }
  scratch_.assign(bytes.begin(), bytes.end());
  out->inline_bytes = scratch_;
}

}  // namespace shmpool::pyworker
