// context.h: what a handler sees of its call (python_shm_worker.Context).
// The worker fills it in before each call (start) and invalidates it after
// (valid = false): every accessor raises once the call has returned. Its
// views of shared memory are made on first use and dropped after the call
// (finish_views, shared_buffer.h). Python owns it; the worker reuses it
// while nobody else holds it.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <span>

#include "ipc/arena.h"
#include "ipc/wait.h"
#include "shmpool/schema/envelope_generated.h"

namespace shmpool::pyworker {

namespace py = pybind11;

class Context {
 public:
  bool valid = false;
  uint64_t request_id = 0;
  const flatbuffers::String* session = nullptr;
  const flatbuffers::String* command = nullptr;
  std::span<const uint8_t> payload_bytes;
  std::span<const uint8_t> body_bytes;
  // The request payload in the arena (payload_block set), else inline.
  bool payload_in_arena = false;
  uint32_t payload_block = 0;
  uint64_t payload_word = 0;
  ipc::Arena* arena = nullptr;
  int64_t deadline_ns = 0;
  ipc::WaitPolicy policy;
  // Created on first use, dropped after the call (finish_views).
  py::object payload_view, payload_owner;  // memoryview, and the SharedBuffer behind it
  py::object output_view, output_owner;
  py::object body_view, body_owner;
  // This request's cancel word (SlotData::cancel): it holds request_id once
  // the caller has cancelled the call.
  const std::atomic<uint64_t>* cancel_word = nullptr;
  // A stream call: ctx.send(item) sends an item through `send_fn`.
  bool streaming = false;
  bool (*send_fn)(void* worker, py::object item) = nullptr;
  void* send_arg = nullptr;

  // Makes it the context of `req` (verified), whose payload is `payload`
  // (inline in the frame; the caller sets the arena fields for one in the
  // arena).
  void start(const schema::Request* req, std::span<const uint8_t> payload, ipc::Arena* a,
             const ipc::WaitPolicy& p) {
    valid = true;
    request_id = req->id();
    session = req->session_id();
    command = req->command();
    payload_bytes = payload;
    body_bytes = req->body() ? std::span<const uint8_t>(req->body()->data(), req->body()->size())
                             : std::span<const uint8_t>();
    payload_in_arena = false;
    arena = a;
    deadline_ns = req->deadline_mono_ns();
    policy = p;
    streaming = (req->flags() & uint32_t(schema::RequestFlags::Stream)) != 0;
  }

  bool cancelled() const {
    return cancel_word && cancel_word->load(std::memory_order_acquire) == request_id;
  }
  void check() const {
    if (!valid) throw py::value_error("this Context belongs to a call that has ended");
  }
  py::object session_id() const;
  py::str command_name() const;
  // Read-only memoryview of the request payload: in the arena, or a private
  // copy of one inline in the frame (small, safe to keep).
  py::object payload();
  // Writable memoryview of n bytes for the reply's payload: an arena block
  // when large (raises ArenaError when there is none), else a bytearray.
  py::object alloc_output(std::size_t n);
  // A view of the request frame: released after the call (a kept
  // memoryview raises); a numpy array kept past the call cannot be made
  // safe, so the worker then exits after its reply (see finish_views).
  py::object body();
  // Sends `item` as the next item of a stream call (raises in another
  // call); false, the item dropped, once the call is cancelled.
  bool send(py::object item);
};

}  // namespace shmpool::pyworker
