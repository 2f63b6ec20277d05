// result.h: what a handler returned, made into a reply: its value encoded
// into the reply's FlexBuffer, its payload placed. A handler returns a value,
// `Output(value, payload, body)`, or a bytes-like object (the payload, value
// None). A payload in the block ctx.alloc_output gave is sent in place when
// nothing in Python still reaches that block; any other payload is copied
// once: inline when small (or without an arena), else into a new arena block.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <span>
#include <vector>

#include "context.h"
#include "ipc/arena.h"
#include "ipc/flex_writer.h"

namespace shmpool::pyworker {

namespace py = pybind11;

// Where the reply's payload is: inline bytes (copied into the frame) or an
// arena block this worker holds and the caller takes.
struct ReplyPayload {
  std::vector<uint8_t> body;  // Output.body, copied into the envelope
  std::span<const uint8_t> inline_bytes;
  bool in_arena = false;
  schema::ArenaRef ref;
  uint64_t word = 0;
};

class ResultEncoder {
 public:
  // `inline_max_without_arena`: the largest payload that may go inline when
  // the arena has no room (half the response ring).
  ResultEncoder(ipc::Arena* arena, ipc::WaitPolicy policy, uint64_t inline_max_without_arena)
      : arena_(arena), policy_(policy), inline_fallback_max_(inline_max_without_arena) {}

  // python_shm_worker.Output (None: there is none).
  void set_output_type(py::object t) { output_type_ = std::move(t); }

  // Encodes `result` into `flex` (finished) and places its payload in *out
  // (inline bytes stay valid until the next encode()). Throws
  // py::error_already_set, or pybind11's builtin exceptions from
  // py_to_flex, for a result it cannot send. A plain result dict may be
  // kept until after the reply (freeing it then costs the caller nothing):
  // drop_kept() frees it.
  void encode(py::object result, Context& ctx, ipc::FlexWriter& flex, ReplyPayload* out);
  void drop_kept() { kept_ = py::object(); }

 private:
  void copy_out(std::span<const uint8_t> bytes, int64_t deadline_ns, ReplyPayload* out);

  ipc::Arena* arena_;
  ipc::WaitPolicy policy_;
  uint64_t inline_fallback_max_;
  py::object output_type_ = py::none();
  py::object kept_;
  std::vector<uint8_t> scratch_;  // an inline payload's copy
};

}  // namespace shmpool::pyworker
