#include "worker.h"

#include <poll.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <thread>

#include "arena_alloc.h"
#include "convert.h"
#include "ipc/sys.h"
#include "register.h"
#include "shared_buffer.h"

namespace shmpool::pyworker {

namespace {
// The longest idle wait between two looks at Python's signal handlers.
constexpr int64_t kSignalSliceNs = 100'000'000;
// The idle wait polls (with the GIL) at most this long.
constexpr int64_t kMaxIdlePollNs = 1'000'000;

// Exits the process as soon as the owner (our parent) exits, whatever the
// Python code is doing: a crashed host leaves no orphaned workers.
void start_owner_watch(pid_t owner) {
  ipc::SysError err;
  int fd = ipc::pidfd_open(owner, &err);
  if (fd < 0 || ::getppid() != owner) _exit(3);
  std::thread([fd] {
    pollfd p{fd, POLLIN, 0};
    while (ipc::retry_eintr([&] { return ::poll(&p, 1, -1); }) <= 0) {
    }
    _exit(4);
  }).detach();
}

ipc::WaitPolicy parse_policy(const std::string& s, int64_t spin_ns) {
  ipc::WaitPolicy p;
  if (s == "spin") {
    p.strategy = ipc::WaitStrategy::spin;
  } else if (s == "block") {
    p.strategy = ipc::WaitStrategy::block;
  } else if (s == "hybrid") {
    p.strategy = ipc::WaitStrategy::hybrid;
  } else {
    throw py::value_error("wait strategy must be spin, hybrid or block");
  }
  p.spin_ns = spin_ns;
  return p;
}

std::unique_ptr<ipc::Segment> attach(const std::string& pool, uint32_t slot) {
  std::unique_ptr<ipc::Segment> segment;
  ipc::SysError err;
  ipc::Errc e = ipc::Segment::attach(pool, &segment, &err);
  if (e != ipc::Errc::ok) {
    throw std::runtime_error("cannot attach to pool segment '" + pool +
                             "': " + std::string(ipc::errc_name(e)) +
                             (err.ok() ? "" : " (" + err.message() + ")"));
  }
  if (slot >= segment->slot_count()) throw py::value_error("slot index out of range");
  return segment;
}

// pybind11's C++-side exceptions (py::type_error, ...) as the Python
// exception they stand for.
py::error_already_set as_python_error(const py::builtin_exception& e) {
  e.set_error();
  return py::error_already_set();
}

// What a Python exception from a handler (or from encoding its result) is
// answered with: resource_error/<type> for an ArenaError ("<type>:
// <message>", Context::alloc_output), else handler_error/handler_exception
// with its traceback.
Failure describe(py::error_already_set& ex) {
  Failure f;
  f.exception_type = py::str(ex.type().attr("__name__"));
  f.message = py::str(ex.value());
  if (ex.matches(arena_error_type())) {
    f.category = "resource_error";
    auto colon = f.message.find(": ");
    f.type = f.message.substr(0, colon);
    if (colon != std::string::npos) f.message = f.message.substr(colon + 2);
    return f;
  }
  try {
    py::object lines = py::module_::import("traceback")
                           .attr("format_exception")(ex.type(), ex.value(), ex.trace());
    f.traceback = py::str("").attr("join")(lines).cast<std::string>();
  } catch (...) {
  }
  return f;
}
Failure describe(const py::builtin_exception& e) {
  py::error_already_set ex = as_python_error(e);
  return describe(ex);
}
}  // namespace

ShmWorker::ShmWorker(const std::string& pool, uint32_t slot, int owner_pid,
                     const std::string& strategy, int64_t spin_ns)
    : segment_(attach(pool, slot)),
      slot_index_(slot),
      slot_(&segment_->slot(slot)),
      arena_(segment_->arena()),
      requests_(segment_->request_ring(slot)),
      policy_(parse_policy(strategy, spin_ns)),
      idle_budget_(std::min(spin_ns, kMaxIdlePollNs)),
      replies_(segment_->response_ring(slot), &segment_->slot(slot).calls, policy_),
      results_(&arena_, policy_, replies_.ring_capacity() / 2) {
  idle_policy_ = policy_;
  idle_policy_.spin_ns = std::min(spin_ns, kMaxIdlePollNs);
  idle_policy_.budget = &idle_budget_;
  if (owner_pid > 0) start_owner_watch(owner_pid);
}

void ShmWorker::serve(py::dict handlers, py::dict info, py::object output_type) {
  handlers_ = handlers;
  results_.set_output_type(output_type);
  ipc::FlexWriter& hello = replies_.start();
  py_to_flex(hello, info);
  hello.Finish();
  replies_.send_ok(0);
  ipc::SlotData& slot = segment_->slot(slot_index_);
  for (;;) {
    ipc::Frame frame;
    const ipc::Errc e = next_frame(&frame);
    if (e == ipc::Errc::empty) {  // a slice of waiting ended: let Python's signal handlers run
      if (PyErr_CheckSignals() != 0) throw py::error_already_set();
      continue;
    }
    // Read by the owner's health check. This worker is its only writer: a
    // plain store, not a locked RMW on the hot path.
    slot.progress.store(slot.progress.load(std::memory_order_relaxed) + 1,
                        std::memory_order_relaxed);
    if (e != ipc::Errc::ok) {
      // A corrupt request ring cannot be resynchronised: report and stop.
      replies_.send_error(0, "protocol_error", "corrupt_frame", "request ring failed validation");
      return;
    }
    if (!dispatch(frame)) return;
  }
}

ipc::Errc ShmWorker::next_frame(ipc::Frame* frame) {
  const ipc::Errc e = requests_.peek(frame);
  if (e != ipc::Errc::empty) return e;
  requests_.wait_readable(
      ipc::monotonic_ns() + kSignalSliceNs, idle_policy_, [] { return false; },
      [] { return py::gil_scoped_release(); });
  return requests_.peek(frame);
}

bool ShmWorker::dispatch(const ipc::Frame& frame) {
  ipc::RequestView rv;
  if (ipc::read_request(frame, &rv, &request_memo_) != ipc::Errc::ok) {
    requests_.release(frame);
    replies_.send_error(0, "protocol_error", "invalid_request",
                        "request envelope failed verification");
    return true;
  }
  const schema::Request* req = rv.request;
  const uint64_t id = req->id();
  std::string_view cmd = req->command() ? req->command()->string_view() : std::string_view();
  // An async caller's completion bell (bounds-checked: the index comes from a client).
  const uint32_t notify = req->notify();
  replies_.set_notify(notify > 0 && notify <= ipc::kWaiterProcesses
                          ? &segment_->header().queue.waiters.by_process[notify - 1].completions
                          : nullptr);
  if (cancelled(id)) {
    requests_.release(frame);
    replies_.send_error(id, "cancelled", "cancelled",
                        "the call was cancelled before its handler started",
                        {{"command", std::string(cmd)}});
    return true;
  }
  if (cmd == "__shutdown__") {
    requests_.release(frame);
    replies_.start();
    replies_.send_ok(id);
    return false;
  }
  py::object handler = lookup(cmd);
  if (!handler) {
    requests_.release(frame);
    replies_.send_error(id, "handler_error", "unknown_command",
                        "no handler registered for command '" + std::string(cmd) + "'",
                        {{"command", std::string(cmd)}});
    return true;
  }
  Context* ctx = fresh_context();
  ctx->start(req, rv.payload, &arena_, policy_);
  ctx->cancel_word = &slot_->cancel[id % ipc::kMaxInFlight];
  if (ctx->streaming) {
    ctx->send_fn = &ShmWorker::send_from_context;
    ctx->send_arg = this;
    window_ = StreamWindow{};
    window_.base_items = slot_->items_taken.load(std::memory_order_acquire);
    window_.base_bytes = slot_->bytes_taken.load(std::memory_order_acquire);
    if (req->window_items() != 0) window_.max_items = req->window_items();
    if (req->window_bytes() != 0) window_.max_bytes = req->window_bytes();
  }
  if (const schema::ArenaRef* ar = req->arena_payload()) {
    std::span<uint8_t> bytes;
    if (arena_.resolve(ar->block(), ar->offset(), ar->length(), &bytes, &ctx->payload_word) !=
        ipc::Errc::ok) {
      ctx->valid = false;
      requests_.release(frame);
      replies_.send_error(id, "protocol_error", "invalid_request",
                          "request payload reference failed validation");
      return true;
    }
    ctx->payload_bytes = bytes;
    ctx->payload_in_arena = true;
    ctx->payload_block = ar->block();
  }
  std::optional<Failure> failed;
  py::object result;
  try {
    int64_t budget = req->args() ? int64_t(req->args()->size()) + 16 : 0;
    py::object args = req->args() && req->args()->size() > 0
                          ? flex_to_py(req->args_flexbuffer_root(),
                                       req->args()->data() + req->args()->size(), &budget)
                          : empty_args();
    // Vectorcall: no argument tuple (pybind11's operator() builds one).
    PyObject* argv[2] = {args.ptr(), ctx_obj_.ptr()};
    PyObject* r = PyObject_Vectorcall(handler.ptr(), argv, 2, nullptr);
    if (!r) throw py::error_already_set();
    result = py::reinterpret_steal<py::object>(r);
    if (ctx->streaming) {
      stream(id, std::move(result));
      ctx->valid = false;
      if (!finish_views(*ctx, arena_)) unsafe_ = true;
      requests_.release(frame);
      exit_if_unsafe();
      return true;
    }
    if (PyGen_Check(result.ptr())) {
      result.attr("close")();
      failed = Failure{"handler_error", "stream_not_requested",
                       "the handler returned a generator: call it with stream()", "", ""};
    }
  } catch (py::error_already_set& ex) {
    failed = describe(ex);
  } catch (py::builtin_exception& e) {  // from flex_to_py: args too deep, too many values
    failed = describe(e);
  }
  ctx->valid = false;
  ctx->send_fn = nullptr;
  if (!failed) {
    failed = reply_ok(id, std::move(result), frame);
    if (!failed) {
      exit_if_unsafe();
      return true;
    }
  }
  result = py::object();
  results_.drop_kept();
  if (!finish_views(*ctx, arena_)) unsafe_ = true;
  requests_.release(frame);
  replies_.send_error(id, failed->category, failed->type, failed->message,
                      {{"exception_type", failed->exception_type},
                       {"traceback", failed->traceback},
                       {"command", std::string(cmd)}});
  exit_if_unsafe();
  return true;
}

std::optional<Failure> ShmWorker::reply_ok(uint64_t id, py::object result,
                                           const ipc::Frame& frame) {
  try {
    ReplyPayload out;
    results_.encode(std::move(result), *ctx_, replies_.start(), &out);
    if (!finish_views(*ctx_, arena_)) unsafe_ = true;
    // Reply first, then release the request: the caller does not wait for
    // the release (the request ring has room for its next call).
    const ipc::Errc e =
        replies_.send_ok(id, out.inline_bytes, out.in_arena ? &out.ref : nullptr, out.body);
    requests_.release(frame);
    results_.drop_kept();
    if (e == ipc::Errc::frame_too_large) {
      if (out.in_arena) arena_.free(out.ref.block(), out.word);
      replies_.send_error(id, "resource_error", "result_too_large",
                          "result does not fit in the response ring",
                          {{"bytes", std::to_string(out.inline_bytes.size())}});
    }
    return std::nullopt;
  } catch (py::error_already_set& ex) {
    Failure f = describe(ex);
    if (f.category == "handler_error")
      f.message = "cannot encode the handler's result: " + f.message;
    return f;
  } catch (py::builtin_exception& e) {  // from py_to_flex: a type or key it cannot send
    Failure f = describe(e);
    f.message = "cannot encode the handler's result: " + f.message;
    return f;
  }
}

void ShmWorker::stream(uint64_t id, py::object result) {
  if (!PyIter_Check(result.ptr())) {
    if (!result.is_none() && wait_for_window(id)) send_item(id, std::move(result));
  } else {
    for (;;) {
      if (!wait_for_window(id)) {
        // GeneratorExit at the yield it waits in: its `finally` runs now.
        if (py::hasattr(result, "close")) result.attr("close")();
        break;
      }
      PyObject* item = PyIter_Next(result.ptr());
      if (!item) {
        if (PyErr_Occurred()) throw py::error_already_set();
        break;
      }
      send_item(id, py::reinterpret_steal<py::object>(item));
    }
  }
  result = py::object();
  if (cancelled(id)) {
    replies_.send_error(id, "cancelled", "cancelled", "the stream was cancelled");
  } else {
    replies_.start();
    replies_.send_ok(id);  // the end
  }
}

void ShmWorker::send_item(uint64_t id, py::object item) {
  ReplyPayload out;
  ipc::FlexWriter& flex = replies_.start();
  results_.encode(std::move(item), *ctx_, flex, &out);
  finish_output(*ctx_);  // the next item may alloc_output() again
  // What the caller counts when it takes the item (stream window).
  const uint64_t bytes = flex.size() + out.inline_bytes.size() +
                         (out.in_arena ? out.ref.length() : 0) + out.body.size();
  const ipc::Errc e = replies_.send_ok(id, out.inline_bytes, out.in_arena ? &out.ref : nullptr,
                                       out.body, /*more=*/true);
  results_.drop_kept();
  if (e != ipc::Errc::ok) {
    if (out.in_arena) arena_.free(out.ref.block(), out.word);
    throw py::value_error("a stream item of " + std::to_string(bytes) +
                          " bytes does not fit in the response ring");
  }
  ++window_.sent_items;
  window_.sent_bytes += bytes;
}

bool ShmWorker::send_from_context(void* self, py::object item) {
  auto* w = static_cast<ShmWorker*>(self);
  const uint64_t id = w->ctx_->request_id;
  if (!w->wait_for_window(id)) return false;  // cancelled: the item is dropped
  w->send_item(id, std::move(item));
  return true;
}

bool ShmWorker::wait_for_window(uint64_t id) {
  auto open = [&] {
    const uint64_t taken_items =
        slot_->items_taken.load(std::memory_order_acquire) - window_.base_items;
    const uint64_t taken_bytes =
        slot_->bytes_taken.load(std::memory_order_acquire) - window_.base_bytes;
    const uint64_t unread = window_.sent_items - taken_items;
    // One item always fits, however large.
    return unread == 0 ||
           (unread < window_.max_items && window_.sent_bytes - taken_bytes < window_.max_bytes);
  };
  for (;;) {
    if (cancelled(id)) return false;
    if (open()) return true;
    ipc::wait_until(
        slot_->credit, [&] { return open() || cancelled(id); },
        ipc::monotonic_ns() + kSignalSliceNs, idle_policy_,
        [] { return py::gil_scoped_release(); });
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
  }
}

Context* ShmWorker::fresh_context() {
  // Python owns the Context. It is reused while nobody else holds it; a
  // handler that kept one gets a fresh one next time, and the kept one
  // raises on use (dispatch invalidates it after the call).
  if (!ctx_obj_ || Py_REFCNT(ctx_obj_.ptr()) != 1) {
    ctx_obj_ = py::cast(Context{});
    ctx_ = ctx_obj_.cast<Context*>();
  }
  return ctx_;
}

void ShmWorker::exit_if_unsafe() {
  if (!unsafe_) return;
  static const char msg[] =
      "python_shm_worker: a view of ctx.body (or of a request payload another worker pinned) "
      "outlived its call; exiting so it cannot read reused memory\n";
  [[maybe_unused]] auto n = ::write(2, msg, sizeof msg - 1);
  _exit(75);
}

// A call without args gets an empty dict: the one of the last such call
// when nobody kept it and it is still empty, else a new one.
py::object ShmWorker::empty_args() {
  if (!empty_args_ || Py_REFCNT(empty_args_.ptr()) != 1 || PyDict_GET_SIZE(empty_args_.ptr()) != 0)
    empty_args_ = py::dict();
  return empty_args_;
}

// The registry dict is looked up on every call (handlers may be
// re-registered), with a cached str key. The last command's key is kept
// aside: calls often repeat a command.
py::object ShmWorker::lookup(std::string_view cmd) {
  if (!last_key_ || cmd != last_cmd_) {
    auto it = keys_.find(cmd);
    if (it == keys_.end()) {
      if (keys_.size() > 4096) keys_.clear();  // bounded: unknown commands come from clients
      it = keys_.emplace(std::string(cmd), py::str(cmd.data(), cmd.size())).first;
    }
    last_cmd_ = it->first;  // node-based map: stable until keys_.clear()
    last_key_ = it->second.ptr();
  }
  PyObject* h = PyDict_GetItemWithError(handlers_.ptr(), last_key_);
  if (!h) {
    PyErr_Clear();
    return py::object();
  }
  return py::reinterpret_borrow<py::object>(h);
}

void register_worker(py::module_& m) {
  py::class_<ShmWorker>(m, "ShmWorker")
      .def(py::init<const std::string&, uint32_t, int, const std::string&, int64_t>(),
           py::arg("pool"), py::arg("slot"), py::arg("owner_pid"), py::arg("wait_strategy"),
           py::arg("spin_ns"))
      .def("serve", &ShmWorker::serve, py::arg("handlers"), py::arg("info"),
           py::arg("output_type"));
}

}  // namespace shmpool::pyworker
