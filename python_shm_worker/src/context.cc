#include "context.h"

#include <string>

#include "arena_alloc.h"
#include "register.h"
#include "shared_buffer.h"

namespace shmpool::pyworker {

py::object Context::session_id() const {
  check();
  if (!session || session->size() == 0) return py::none();
  return py::str(session->c_str(), session->size());
}

py::str Context::command_name() const {
  check();
  return command ? py::str(command->c_str(), command->size()) : py::str("");
}

py::object Context::payload() {
  check();
  if (!payload_view) {
    if (payload_in_arena) {
      payload_owner = make_shared_buffer(arena, const_cast<uint8_t*>(payload_bytes.data()),
                                         payload_bytes.size(), false);
      payload_view = py::memoryview(payload_owner);
    } else {
      // Small and inline in the ring: a private copy, safe to keep.
      py::bytes copy(reinterpret_cast<const char*>(payload_bytes.data()), payload_bytes.size());
      payload_view = py::memoryview(copy);
    }
  }
  return payload_view;
}

py::object Context::alloc_output(std::size_t n) {
  check();
  if (output_view) throw py::value_error("alloc_output() may be called once per call");
  if (arena && arena->enabled() && n > kInlinePayloadMax) {
    ipc::BlockRef b;
    const ipc::Errc e = alloc_block(*arena, n, deadline_ns, policy, &b);
    if (e == ipc::Errc::frame_too_large) {
      raise_arena_error("payload_too_large", "output of " + std::to_string(n) +
                                                 " bytes is larger than the payload arena (" +
                                                 std::to_string(arena->capacity()) + " bytes)");
    }
    if (e != ipc::Errc::ok) {
      raise_arena_error("arena_exhausted", "no free arena block of " + std::to_string(n) +
                                               " bytes before the call's deadline");
    }
    output_owner = make_shared_buffer(arena, b.bytes.data(), n, true);
    auto* sb = output_owner.cast<SharedBuffer*>();
    sb->index = b.index;
    sb->word = b.word;
    sb->hold = SharedBuffer::Hold::held;
  } else {
    // Small, or no arena: a private buffer, copied into the response frame.
    output_owner = py::reinterpret_steal<py::object>(PyByteArray_FromStringAndSize(nullptr, 0));
    if (PyByteArray_Resize(output_owner.ptr(), py::ssize_t(n)) != 0) throw py::error_already_set();
  }
  output_view = py::memoryview(output_owner);
  return output_view;
}

py::object Context::body() {
  check();
  if (!body_view) {
    body_owner = make_shared_buffer(arena, const_cast<uint8_t*>(body_bytes.data()),
                                    body_bytes.size(), false);
    body_view = py::memoryview(body_owner);
  }
  return body_view;
}

bool Context::send(py::object item) {
  check();
  if (!streaming || !send_fn) {
    throw py::value_error(
        "ctx.send() streams items: the caller must call this command with stream()");
  }
  return send_fn(send_arg, std::move(item));
}

void register_context(py::module_& m) {
  py::class_<Context>(m, "Context", "What a handler sees of its call (valid during the call only).")
      .def_property_readonly("request_id",
                             [](const Context& c) {
                               c.check();
                               return c.request_id;
                             })
      .def_property_readonly(
          "deadline_ns",
          [](const Context& c) {
            c.check();
            return c.deadline_ns;
          },
          "The call's deadline in time.monotonic_ns() nanoseconds; 0 if it has none.")
      .def_property_readonly("session_id", &Context::session_id)
      .def_property_readonly("command", &Context::command_name)
      .def_property_readonly("payload", &Context::payload,
                             "Read-only memoryview of the request payload, in shared memory.")
      .def_property_readonly("body", &Context::body, "Typed nested FlatBuffer body (read-only).")
      .def("alloc_output", &Context::alloc_output, py::arg("n"),
           "Writable memoryview of n bytes in shared memory for the reply's payload "
           "(in a stream: for the next item's).")
      .def_property_readonly(
          "cancelled",
          [](const Context& c) {
            c.check();
            return c.cancelled();
          },
          "True once the caller has cancelled this call: return (or stop yielding) soon.")
      .def_property_readonly(
          "streaming",
          [](const Context& c) {
            c.check();
            return c.streaming;
          },
          "True when the caller takes a stream of items (ctx.send may be used).")
      .def("send", &Context::send, py::arg("item"),
           "Sends item (a value, bytes, numpy array or Output) as the next item of a stream "
           "call; blocks while the caller's window of unread items is full.");
}

}  // namespace shmpool::pyworker
