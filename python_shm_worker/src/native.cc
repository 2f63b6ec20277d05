// The private native core of python_shm_worker: the shared-memory worker
// loop. It waits for a request with the GIL released, verifies the frame,
// decodes the envelope and args into Python objects in C++, calls the
// registered handler, and encodes the result into the response ring in C++.
#include <poll.h>
#include <pybind11/pybind11.h>
#include <sched.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "convert.h"
#include "ipc/envelope.h"
#include "ipc/segment.h"
#include "ipc/sys.h"

namespace py = pybind11;
namespace ipc = shmpool::ipc;
namespace schema = shmpool::schema;

namespace shmpool::pyworker {
namespace {

// Payloads up to this size travel inside the ring frame (and are copied into
// a bytes object for Python); larger ones go through the payload arena.
inline constexpr std::size_t kInlinePayloadMax = 4096;

// python_shm_worker._native.ArenaError (a MemoryError): raised when the
// arena cannot hold a block; its message is "<error type>: <text>", and the
// worker answers resource_error/<error type>.
PyObject* g_arena_error = nullptr;

[[noreturn]] void raise_arena_error(const std::string& type, const std::string& text) {
  PyErr_SetString(g_arena_error, (type + ": " + text).c_str());
  throw py::error_already_set();
}

// How long the worker waits for arena space: at most 1 s, and ending before
// the call's deadline so the caller gets arena_exhausted, not a timeout.
int64_t alloc_deadline(int64_t call_deadline_ns) {
  const int64_t cap = ipc::monotonic_ns() + 1'000'000'000;
  if (call_deadline_ns <= 0) return cap;
  return std::min(cap, call_deadline_ns - 5'000'000);
}

// Bytes in shared memory handed to Python through the buffer protocol.
// Python owns it (memoryviews and numpy arrays keep it alive). While the
// call runs it views an arena block; after the call, a SharedBuffer that is
// still referenced keeps its block alive (pinned, or still held by this
// worker) and lets it go in its destructor, so a view never reads memory
// that was reused. A stale one exports zero bytes.
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

// What a handler sees of its call. Every accessor raises once the call has
// returned.
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
  // Created on first use, dropped after the call (see ShmWorker::finish_views).
  py::object payload_view, payload_owner;  // memoryview, and the SharedBuffer behind it
  py::object output_view, output_owner;
  py::object body_view, body_owner;

  void check() const {
    if (!valid) throw py::value_error("this Context belongs to a call that has ended");
  }
  py::object session_id() const {
    check();
    if (!session || session->size() == 0) return py::none();
    return py::str(session->c_str(), session->size());
  }
  py::str command_name() const {
    check();
    return command ? py::str(command->c_str(), command->size()) : py::str("");
  }
  py::object payload() {
    check();
    if (!payload_view) {
      if (payload_in_arena) {
        payload_owner =
            make_buffer(const_cast<uint8_t*>(payload_bytes.data()), payload_bytes.size(), false);
        payload_view = py::memoryview(payload_owner);
      } else {
        // Small and inline in the ring: a private copy, safe to keep.
        py::bytes copy(reinterpret_cast<const char*>(payload_bytes.data()), payload_bytes.size());
        payload_view = py::memoryview(copy);
      }
    }
    return payload_view;
  }
  py::object alloc_output(std::size_t n) {
    check();
    if (output_view) throw py::value_error("alloc_output() may be called once per call");
    if (arena && arena->enabled() && n > kInlinePayloadMax) {
      ipc::BlockRef b;
      ipc::Errc e;
      {
        py::gil_scoped_release nogil;
        e = arena->alloc(n, alloc_deadline(deadline_ns), policy, &b);
      }
      if (e == ipc::Errc::frame_too_large) {
        raise_arena_error("payload_too_large", "output of " + std::to_string(n) +
                                                   " bytes is larger than the payload arena (" +
                                                   std::to_string(arena->capacity()) + " bytes)");
      }
      if (e != ipc::Errc::ok) {
        raise_arena_error("arena_exhausted", "no free arena block of " + std::to_string(n) +
                                                 " bytes before the call's deadline");
      }
      output_owner = make_buffer(b.bytes.data(), n, true);
      auto* sb = output_owner.cast<SharedBuffer*>();
      sb->index = b.index;
      sb->word = b.word;
      sb->hold = SharedBuffer::Hold::held;
    } else {
      // Small, or no arena: a private buffer, copied into the response frame.
      output_owner = py::reinterpret_steal<py::object>(PyByteArray_FromStringAndSize(nullptr, 0));
      if (PyByteArray_Resize(output_owner.ptr(), py::ssize_t(n)) != 0)
        throw py::error_already_set();
    }
    output_view = py::memoryview(output_owner);
    return output_view;
  }
  // A view of the request frame: released after the call (a kept
  // memoryview raises); a numpy array kept past the call cannot be made
  // safe, so the worker then exits after its reply (see finish_views).
  py::object body() {
    check();
    if (!body_view) {
      body_owner = make_buffer(const_cast<uint8_t*>(body_bytes.data()), body_bytes.size(), false);
      body_view = py::memoryview(body_owner);
    }
    return body_view;
  }

 private:
  py::object make_buffer(uint8_t* p, std::size_t n, bool writable) {
    py::object o = py::cast(new SharedBuffer(), py::return_value_policy::take_ownership);
    auto* sb = o.cast<SharedBuffer*>();
    sb->ptr = p;
    sb->len = n;
    sb->writable = writable;
    sb->arena = arena;
    return o;
  }
};

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

ipc::WaitStrategy parse_strategy(const std::string& s) {
  if (s == "spin") return ipc::WaitStrategy::spin;
  if (s == "block") return ipc::WaitStrategy::block;
  if (s == "hybrid") return ipc::WaitStrategy::hybrid;
  throw py::value_error("wait strategy must be spin, hybrid or block");
}

class ShmWorker {
 public:
  ShmWorker(const std::string& pool, uint32_t slot, int owner_pid, const std::string& strategy,
            int64_t spin_ns)
      : slot_index_(slot) {
    policy_.strategy = parse_strategy(strategy);
    policy_.spin_ns = spin_ns;
    idle_budget_ = ipc::SpinBudget(std::min<int64_t>(spin_ns, 1'000'000));
    ipc::SysError err;
    ipc::Errc e = ipc::Segment::attach(pool, &segment_, &err);
    if (e != ipc::Errc::ok) {
      throw std::runtime_error("cannot attach to pool segment '" + pool +
                               "': " + std::string(ipc::errc_name(e)) +
                               (err.ok() ? "" : " (" + err.message() + ")"));
    }
    if (slot >= segment_->slot_count()) throw py::value_error("slot index out of range");
    if (owner_pid > 0) start_owner_watch(owner_pid);
    requests_ = segment_->request_ring(slot);
    responses_ = segment_->response_ring(slot);
    arena_ = segment_->arena();
  }

  // Sends the hello frame (a Response with id 0 carrying `info`), then
  // serves requests until the `__shutdown__` command.
  void serve(py::dict handlers, py::dict info, py::object output_type) {
    handlers_ = handlers;
    output_type_ = output_type;
    {
      fbb_.Clear();
      flex_.Clear();
      py_to_flex(flex_, info);
      flex_.Finish();
      send_ok(0, {});
    }
    ipc::SlotData& slot = segment_->slot(slot_index_);
    for (;;) {
      ipc::Frame frame;
      ipc::Errc e = requests_.peek(&frame);
      // The caller that sent the last request waits for our reply on the CPU
      // it sent from: if that is ours, it is not running and polling is futile.
      ipc::WaitPolicy poll = policy_;
      poll.budget = &idle_budget_;
      poll.peer_cpu = requests_.producer_cpu();
      if (e == ipc::Errc::empty && policy_.strategy != ipc::WaitStrategy::block &&
          !ipc::beside_peer(poll)) {
        // Hot path: poll while polling pays (the idle budget learns it, at
        // most spin_ns and 1 ms), keeping the GIL (releasing and re-taking
        // it costs more than a whole round trip). Other Python threads wait
        // at most this long; then we sleep without the GIL.
        const int64_t spin_end =
            policy_.strategy == ipc::WaitStrategy::spin
                ? ipc::monotonic_ns() + std::min<int64_t>(policy_.spin_ns, 1'000'000)
                : ipc::spin_end_for(poll);
        const ipc::SpinResult r =
            ipc::spin_until([&] { return requests_.readable(); }, spin_end, 0);
        if (policy_.strategy == ipc::WaitStrategy::hybrid) ipc::finish_spin(poll, r);
        e = requests_.peek(&frame);
      }
      if (e == ipc::Errc::empty) {
        py::gil_scoped_release nogil;
        // hybrid has already polled: sleep now. spin keeps polling (without the GIL).
        ipc::WaitPolicy sleep_policy = policy_;
        if (sleep_policy.strategy == ipc::WaitStrategy::hybrid)
          sleep_policy.strategy = ipc::WaitStrategy::block;
        for (;;) {
          e = requests_.peek(&frame);
          if (e != ipc::Errc::empty) break;
          // Slices of 100 ms so Python signal handlers (SIGINT) still run.
          requests_.wait_readable(ipc::monotonic_ns() + 100'000'000, sleep_policy,
                                  [] { return false; });
          if (!requests_.readable()) break;
        }
      }
      if (e == ipc::Errc::empty) {
        if (PyErr_CheckSignals() != 0) throw py::error_already_set();
        continue;
      }
      // Read by the owner's health check. This worker is its only writer: a
      // plain store, not a locked RMW on the hot path.
      slot.progress.store(slot.progress.load(std::memory_order_relaxed) + 1,
                          std::memory_order_relaxed);
      if (e != ipc::Errc::ok) {
        // A corrupt request ring cannot be resynchronised: report and stop.
        send_error(0, "protocol_error", "corrupt_frame", "request ring failed validation", {});
        return;
      }
      if (!dispatch(frame)) return;
    }
  }

 private:
  // Returns false after __shutdown__.
  bool dispatch(const ipc::Frame& frame) {
    ipc::RequestView rv;
    if (ipc::read_request(frame, &rv, &request_memo_) != ipc::Errc::ok) {
      requests_.release(frame);
      send_error(0, "protocol_error", "invalid_request", "request envelope failed verification",
                 {});
      return true;
    }
    const schema::Request* req = rv.request;
    const uint64_t id = req->id();
    std::string_view cmd = req->command() ? req->command()->string_view() : std::string_view();
    if (cmd == "__shutdown__") {
      requests_.release(frame);
      fbb_.Clear();
      flex_.Clear();
      send_ok(id, {});
      return false;
    }
    py::object handler = lookup(cmd);
    if (!handler) {
      PyErr_Clear();
      requests_.release(frame);
      send_error(id, "handler_error", "unknown_command",
                 "no handler registered for command '" + std::string(cmd) + "'",
                 {{"command", std::string(cmd)}});
      return true;
    }
    // Python owns the Context. It is reused while nobody else holds it; a
    // handler that kept one gets a fresh one next time, and the kept one
    // raises on use (it is invalidated below).
    if (!ctx_obj_ || Py_REFCNT(ctx_obj_.ptr()) != 1) {
      ctx_obj_ = py::cast(Context{});
      ctx_ = ctx_obj_.cast<Context*>();
    }
    Context* ctx = ctx_;
    ctx->valid = true;
    ctx->request_id = id;
    ctx->session = req->session_id();
    ctx->command = req->command();
    ctx->payload_bytes = rv.payload;
    ctx->body_bytes = req->body()
                          ? std::span<const uint8_t>(req->body()->data(), req->body()->size())
                          : std::span<const uint8_t>();
    ctx->payload_in_arena = false;
    ctx->arena = &arena_;
    ctx->deadline_ns = req->deadline_mono_ns();
    ctx->policy = policy_;
    if (const schema::ArenaRef* ar = req->arena_payload()) {
      std::span<uint8_t> bytes;
      if (arena_.resolve(ar->block(), ar->offset(), ar->length(), &bytes, &ctx->payload_word) !=
          ipc::Errc::ok) {
        ctx->valid = false;
        requests_.release(frame);
        send_error(id, "protocol_error", "invalid_request",
                   "request payload reference failed validation", {});
        return true;
      }
      ctx->payload_bytes = bytes;
      ctx->payload_in_arena = true;
      ctx->payload_block = ar->block();
    }
    py::handle pyctx = ctx_obj_;
    std::string err_category, err_kind, err_type, err_msg, err_tb;  // set by describe()
    bool ok = false;
    py::object result;
    try {
      int64_t budget = req->args() ? int64_t(req->args()->size()) + 16 : 0;
      py::object args = req->args() && req->args()->size() > 0
                            ? flex_to_py(req->args_flexbuffer_root(),
                                         req->args()->data() + req->args()->size(), &budget)
                            : empty_args();
      // Vectorcall: no argument tuple (pybind11's operator() builds one).
      PyObject* argv[2] = {args.ptr(), pyctx.ptr()};
      PyObject* r = PyObject_Vectorcall(handler.ptr(), argv, 2, nullptr);
      if (!r) throw py::error_already_set();
      result = py::reinterpret_steal<py::object>(r);
      ok = true;
    } catch (py::error_already_set& ex) {
      describe(ex, &err_category, &err_kind, &err_type, &err_msg, &err_tb);
    } catch (py::builtin_exception& e) {  // from flex_to_py: args too deep, too many values
      py::error_already_set ex = as_python_error(e);
      describe(ex, &err_category, &err_kind, &err_type, &err_msg, &err_tb);
    }
    ctx->valid = false;
    if (ok) {
      try {
        fbb_.Clear();
        flex_.Clear();
        OutPayload out;
        encode_result(std::move(result), &out);
        finish_views();
        // Reply first, then release the request: the caller does not wait
        // for the release (the request ring has room for its next call).
        ipc::Errc e = send_ok(id, out.inline_bytes, out.in_arena ? &out.ref : nullptr, out.body);
        requests_.release(frame);
        drop_after_reply_ = py::object();
        if (e == ipc::Errc::frame_too_large) {
          if (out.in_arena) arena_.free(out.ref.block(), out.word);
          send_error(id, "resource_error", "result_too_large",
                     "result does not fit in the response ring",
                     {{"bytes", std::to_string(out.inline_bytes.size())}});
        }
        exit_if_unsafe();
        return true;
      } catch (py::error_already_set& ex) {
        describe(ex, &err_category, &err_kind, &err_type, &err_msg, &err_tb);
        if (err_category == "handler_error")
          err_msg = "cannot encode the handler's result: " + err_msg;
      } catch (py::builtin_exception& e) {  // from py_to_flex: a type or key it cannot send
        py::error_already_set ex = as_python_error(e);
        describe(ex, &err_category, &err_kind, &err_type, &err_msg, &err_tb);
        err_msg = "cannot encode the handler's result: " + err_msg;
      }
    }
    result = py::object();
    drop_after_reply_ = py::object();
    finish_views();
    requests_.release(frame);
    send_error(
        id, err_category, err_kind, err_msg,
        {{"exception_type", err_type}, {"traceback", err_tb}, {"command", std::string(cmd)}});
    exit_if_unsafe();
    return true;
  }

  // pybind11's C++-side exceptions (py::type_error, ...) as the Python
  // exception they stand for.
  static py::error_already_set as_python_error(const py::builtin_exception& e) {
    e.set_error();
    return py::error_already_set();
  }

  void describe(py::error_already_set& ex, std::string* category, std::string* kind,
                std::string* type, std::string* msg, std::string* tb) {
    *category = "handler_error";
    *kind = "handler_exception";
    *type = py::str(ex.type().attr("__name__"));
    *msg = py::str(ex.value());
    if (ex.matches(g_arena_error)) {
      // "<type>: <message>" from Context::alloc_output
      *category = "resource_error";
      auto colon = msg->find(": ");
      *kind = msg->substr(0, colon);
      if (colon != std::string::npos) *msg = msg->substr(colon + 2);
      return;
    }
    try {
      py::object lines = py::module_::import("traceback")
                             .attr("format_exception")(ex.type(), ex.value(), ex.trace());
      *tb = py::str("").attr("join")(lines).cast<std::string>();
    } catch (...) {
    }
  }

  // Where the reply's payload is: inline bytes (copied into the frame) or an
  // arena block this worker holds and the caller takes.
  struct OutPayload {
    std::vector<uint8_t> body;  // Output.body, copied into the envelope
    std::span<const uint8_t> inline_bytes;
    bool in_arena = false;
    schema::ArenaRef ref;
    uint64_t word = 0;
  };

  // Encodes the handler's value into flex_ and places its payload:
  // `Output(value, payload)`, a bytes-like result (the payload, value None),
  // or the block from ctx.alloc_output. A payload already in the output
  // block is sent in place; any other is copied once.
  void encode_result(py::object result, OutPayload* out) {
    Context* ctx = ctx_;
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
    py_to_flex(flex_, value);
    flex_.Finish();
    value = py::object();
    if (!payload_obj && PyDict_CheckExact(result.ptr()) && !ctx->payload_view && !ctx->body_view &&
        !ctx->output_view && !ctx->payload_owner && !ctx->body_owner && !ctx->output_owner) {
      // The common reply, with no view the dict could hold (finish_views
      // counts their references): freeing it can wait until it has been sent.
      drop_after_reply_ = std::move(result);
      return;
    }
    result = py::object();
    if (!payload_obj && ctx->output_view) payload_obj = ctx->output_view;
    if (!payload_obj) return;
    Py_buffer view;
    if (PyObject_GetBuffer(payload_obj.ptr(), &view, PyBUF_C_CONTIGUOUS) != 0)
      throw py::error_already_set();
    std::span<const uint8_t> bytes(static_cast<const uint8_t*>(view.buf), size_t(view.len));
    SharedBuffer* ob = ctx->output_owner && py::isinstance<SharedBuffer>(ctx->output_owner)
                           ? ctx->output_owner.cast<SharedBuffer*>()
                           : nullptr;
    const bool in_output = ob && !bytes.empty() && bytes.data() >= ob->ptr &&
                           bytes.data() + bytes.size() <= ob->ptr + ob->len;
    if (in_output) {
      const uint64_t offset = uint64_t(bytes.data() - ob->ptr);
      PyBuffer_Release(&view);
      payload_obj = py::object();
      py::object kept;
      if (!detach_view(ctx->output_view, ctx->output_owner, &kept)) {
        // Nothing in Python can reach the block any more: hand it over.
        out->in_arena = true;
        out->ref = schema::ArenaRef(ob->index, 0, offset, bytes.size());
        out->word = ob->word;
        ob->hold = SharedBuffer::Hold::none;
        ob->live = false;
        return;
      }
      // A view of it outlives the call: it stays ours; the caller gets a copy.
      copy_out(std::span<const uint8_t>(ob->ptr + offset, bytes.size()), out);
      return;
    }
    try {
      copy_out(bytes, out);
    } catch (...) {
      PyBuffer_Release(&view);
      throw;
    }
    PyBuffer_Release(&view);
  }

  // Copies a payload for the reply: inline when small (or without an arena),
  // else into a new arena block.
  void copy_out(std::span<const uint8_t> bytes, OutPayload* out) {
    if (bytes.size() > kInlinePayloadMax && arena_.enabled()) {
      ipc::BlockRef b;
      ipc::Errc e;
      {
        py::gil_scoped_release nogil;
        e = arena_.alloc(bytes.size(), alloc_deadline(ctx_->deadline_ns), policy_, &b);
      }
      if (e == ipc::Errc::ok) {
        std::memcpy(b.bytes.data(), bytes.data(), bytes.size());
        out->in_arena = true;
        out->ref = schema::ArenaRef(b.index, 0, 0, bytes.size());
        out->word = b.word;
        return;
      }
      if (bytes.size() > responses_.capacity() / 2) {
        raise_arena_error("arena_exhausted", "no arena block of " + std::to_string(bytes.size()) +
                                                 " bytes for the result payload");
      }
    }
    scratch_.assign(bytes.begin(), bytes.end());
    out->inline_bytes = scratch_;
  }

  // Drops the Context's references to a view and its SharedBuffer and
  // releases the view; *kept receives the SharedBuffer (drop it after
  // deciding what its block becomes). True if Python code still reaches it
  // (a numpy array or a memoryview made from the view, a global): its block
  // must then outlive the call.
  static bool detach_view(py::object& view, py::object& owner, py::object* kept) {
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

  // After the handler: drops the Context's views. A view nothing else
  // reaches is released; one that is still reachable keeps its block alive:
  // the request block pinned, the output block held by this worker, until
  // the last view dies.
  void finish_views() {
    Context* ctx = ctx_;
    if (ctx->payload_owner) {
      auto* sb = ctx->payload_owner.cast<SharedBuffer*>();
      py::object kept;
      if (!detach_view(ctx->payload_view, ctx->payload_owner, &kept)) {
        sb->live = false;
      } else if (arena_.pin(ctx->payload_block, ctx->payload_word)) {
        sb->index = ctx->payload_block;
        sb->hold = SharedBuffer::Hold::pinned;
      } else {
        // Pinned by another worker already: we cannot keep it safely.
        unsafe_ = true;
      }
    }
    ctx->payload_view = py::object();
    if (ctx->body_owner) {
      auto* sb = ctx->body_owner.cast<SharedBuffer*>();
      py::object kept;
      if (detach_view(ctx->body_view, ctx->body_owner, &kept)) unsafe_ = true;
      sb->live = false;
    }
    ctx->body_view = ctx->body_owner = py::object();
    if (ctx->output_owner && py::isinstance<SharedBuffer>(ctx->output_owner)) {
      auto* sb = ctx->output_owner.cast<SharedBuffer*>();
      py::object kept;
      if (!detach_view(ctx->output_view, ctx->output_owner, &kept)) {
        sb->live = false;
        sb->let_go();
      }
    }
    ctx->output_view = ctx->output_owner = py::object();
  }

  void exit_if_unsafe() {
    if (!unsafe_) return;
    static const char msg[] =
        "python_shm_worker: a view of ctx.body (or of a request payload another worker pinned) "
        "outlived its call; exiting so it cannot read reused memory\n";
    [[maybe_unused]] auto n = ::write(2, msg, sizeof msg - 1);
    _exit(75);
  }

  // A call without args gets an empty dict: the one of the last such call
  // when nobody kept it and it is still empty, else a new one.
  py::object empty_args() {
    if (!empty_args_ || Py_REFCNT(empty_args_.ptr()) != 1 ||
        PyDict_GET_SIZE(empty_args_.ptr()) != 0)
      empty_args_ = py::dict();
    return empty_args_;
  }

  // The handler registered for `cmd`, or null. The registry dict is looked up
  // on every call (handlers may be re-registered), with a cached str key.
  // The last command's key is kept aside: calls often repeat a command.
  py::object lookup(std::string_view cmd) {
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

  // fbb_ is cleared and flex_ holds the finished result (or is empty).
  ipc::Errc send_ok(uint64_t id, std::span<const uint8_t> payload,
                    const schema::ArenaRef* arena_ref = nullptr,
                    std::span<const uint8_t> body = {}) {
    const bool plain = payload.empty() && !arena_ref && body.empty() && id != 0 && flex_.size() > 0;
    if (plain && last_.repeat_ok && last_.result_size == flex_.size()) {
      // The envelope FlatBuffers would build is the last one with another
      // id and other result bytes of the same length: rewrite those.
      flatbuffers::WriteScalar(last_.envelope.data() + last_.id_at, id);
      std::memcpy(last_.envelope.data() + last_.result_at, flex_.data(), flex_.size());
      return write(payload, last_.envelope);
    }
    flatbuffers::Offset<flatbuffers::Vector<uint8_t>> result, body_vec;
    if (flex_.size() > 0) result = fbb_.CreateVector(flex_.data(), flex_.size());
    if (!body.empty()) {
      // A nested FlatBuffer may hold 8-byte scalars: align its start.
      fbb_.ForceVectorAlignment(body.size(), 1, 8);
      body_vec = fbb_.CreateVector(body.data(), body.size());
    }
    schema::ResponseBuilder rb(fbb_);
    rb.add_id(id);
    rb.add_status(schema::Status::Ok);
    if (!result.IsNull()) rb.add_result(result);
    if (!body_vec.IsNull()) rb.add_body(body_vec);
    schema::PayloadRef ref = ipc::payload_ref_for(payload.size());
    if (!payload.empty()) rb.add_payload(&ref);
    if (arena_ref) rb.add_arena_payload(arena_ref);
    fbb_.Finish(rb.Finish());
    last_.repeat_ok = false;
    if (plain) remember_reply();
    return write(payload);
  }

  // Keeps the Ok reply just built in fbb_ (id and result only) for repeats.
  void remember_reply() {
    const uint8_t* buf = fbb_.GetBufferPointer();
    const auto* table = flatbuffers::GetRoot<flatbuffers::Table>(buf);
    const uint8_t* id = table->GetAddressOf(schema::Response::VT_ID);
    const auto* result = flatbuffers::GetRoot<schema::Response>(buf)->result();
    if (!id || !result) return;
    last_.envelope.assign(buf, buf + fbb_.GetSize());
    last_.id_at = std::size_t(id - buf);
    last_.result_at = std::size_t(result->data() - buf);
    last_.result_size = result->size();
    last_.repeat_ok = true;
  }

  void send_error(uint64_t id, const std::string& category, const std::string& type,
                  const std::string& message,
                  std::initializer_list<std::pair<std::string, std::string>> context) {
    fbb_.Clear();
    std::vector<flatbuffers::Offset<schema::KeyValue>> kvs;
    for (auto& [k, v] : context) {
      if (!v.empty()) kvs.push_back(schema::CreateKeyValueDirect(fbb_, k.c_str(), v.c_str()));
    }
    auto err = schema::CreateErrorDirect(fbb_, category.c_str(), type.c_str(), message.c_str(),
                                         kvs.empty() ? nullptr : &kvs);
    schema::ResponseBuilder rb(fbb_);
    rb.add_id(id);
    rb.add_status(schema::Status::Error);
    rb.add_error(err);
    fbb_.Finish(rb.Finish());
    write({});
  }

  // Writes the envelope (default: the one in fbb_) and the payload.
  ipc::Errc write(std::span<const uint8_t> payload, std::span<const uint8_t> env = {}) {
    ipc::PayloadWriter pw;
    pw.size = payload.size();
    pw.copy_from = payload.data();
    if (env.empty()) env = {fbb_.GetBufferPointer(), fbb_.GetSize()};
    auto& calls = segment_->slot(slot_index_).calls;  // stats only; this worker is the only writer
    calls.store(calls.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    // The client drains its response ring before each call, so there is room
    // at once: try without releasing the GIL (the common case), and wait with
    // it released only if a client is slow to read.
    constexpr int64_t kAlreadyPassed = 1;  // CLOCK_MONOTONIC 1 ns: do not wait
    ipc::Errc e = ipc::write_frame(responses_, env, pw, kAlreadyPassed, policy_);
    if (e != ipc::Errc::ring_full) return e;
    py::gil_scoped_release nogil;
    return ipc::write_frame(responses_, env, pw, 0, policy_);
  }

  std::unique_ptr<ipc::Segment> segment_;
  ipc::Arena arena_;
  std::vector<uint8_t> scratch_;
  bool unsafe_ = false;
  uint32_t slot_index_;
  ipc::FrameRing requests_, responses_;
  ipc::WaitPolicy policy_;
  ipc::SpinBudget idle_budget_;  // how long the idle loop polls (spin_budget.h)
  flatbuffers::FlatBufferBuilder fbb_{1024};
  // The last Ok reply with only an id and a result (repeat_ok), and where
  // those are in it: a reply with a result of the same length is the same
  // FlatBuffer but for those bytes.
  struct LastReply {
    bool repeat_ok = false;
    std::vector<uint8_t> envelope;
    std::size_t id_at = 0, result_at = 0, result_size = 0;
  } last_;
  ipc::FlexWriter flex_{512};
  py::object empty_args_;
  py::object drop_after_reply_;  // a result dict, freed once its reply is out
  // The last request verified, and the current one's private copy (read_request).
  ipc::EnvelopeMemo request_memo_;
  py::dict handlers_;
  py::object output_type_ = py::none();
  py::object ctx_obj_;
  Context* ctx_ = nullptr;  // the C++ object inside ctx_obj_
  struct KeyHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
  };
  std::unordered_map<std::string, py::str, KeyHash, std::equal_to<>> keys_;
  std::string_view last_cmd_;  // a key of keys_ (or empty), and its str:
  PyObject* last_key_ = nullptr;
};

}  // namespace
}  // namespace shmpool::pyworker

PYBIND11_MODULE(_native, m) {
  using namespace shmpool::pyworker;
  m.doc() = "Private native core of python_shm_worker. Not a public API.";
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
           "Writable memoryview of n bytes in shared memory for the reply's payload.");
  g_arena_error =
      PyErr_NewException("python_shm_worker._native.ArenaError", PyExc_MemoryError, nullptr);
  m.attr("ArenaError") = py::handle(g_arena_error);
  py::class_<SharedBuffer>(m, "SharedBuffer", py::buffer_protocol(),
                           "Bytes in shared memory (see Context.payload).")
      .def_buffer([](SharedBuffer& b) -> py::buffer_info {
        // A stale buffer exports nothing (never reused memory); pybind11
        // cannot raise from here.
        static uint8_t none = 0;
        if (!b.live) return py::buffer_info(&none, 1, "B", 1, {0}, {1}, true);
        return py::buffer_info(b.ptr, 1, "B", 1, {py::ssize_t(b.len)}, {1}, !b.writable);
      });
  py::class_<ShmWorker>(m, "ShmWorker")
      .def(py::init<const std::string&, uint32_t, int, const std::string&, int64_t>(),
           py::arg("pool"), py::arg("slot"), py::arg("owner_pid"), py::arg("wait_strategy"),
           py::arg("spin_ns"))
      .def("serve", &ShmWorker::serve, py::arg("handlers"), py::arg("info"),
           py::arg("output_type"));
  m.def("layout_version", [] { return shmpool::ipc::kLayoutVersion; });
  // The envelope for message transports (the ZeroMQ benchmark peer): the same
  // FlatBuffers Request/Response as over shared memory, decoded and encoded
  // here in C++.
  m.def(
      "decode_request",
      [](py::buffer buf) {
        py::buffer_info info = buf.request();
        const auto* p = static_cast<const uint8_t*>(info.ptr);
        const auto n = size_t(info.size * info.itemsize);
        flatbuffers::Verifier verifier(p, n);
        if (!verifier.VerifyBuffer<schema::Request>(nullptr))
          throw py::value_error("request envelope failed verification");
        const auto* r = flatbuffers::GetRoot<schema::Request>(p);
        py::object session = r->session_id() && r->session_id()->size()
                                 ? py::object(py::str(r->session_id()->str()))
                                 : py::object(py::none());
        int64_t budget = r->args() ? int64_t(r->args()->size()) + 16 : 0;
        py::object args = r->args() && r->args()->size()
                              ? flex_to_py(r->args_flexbuffer_root(),
                                           r->args()->data() + r->args()->size(), &budget)
                              : py::object(py::dict());
        py::bytes body = r->body() ? py::bytes(reinterpret_cast<const char*>(r->body()->data()),
                                               r->body()->size())
                                   : py::bytes();
        return py::make_tuple(r->id(), session, r->command() ? r->command()->str() : "", args,
                              body);
      },
      py::arg("envelope"), "(id, session_id, command, args, body) of a verified Request.");
  m.def(
      "encode_response",
      [](uint64_t id, py::handle value, py::object error) {
        flatbuffers::FlatBufferBuilder fbb(256);
        schema::ResponseBuilder* rb = nullptr;
        if (!error.is_none()) {
          auto e = error.cast<py::tuple>();  // (category, type, message, {context})
          std::vector<flatbuffers::Offset<schema::KeyValue>> kvs;
          for (auto kv : e[3].cast<py::dict>()) {
            kvs.push_back(
                schema::CreateKeyValueDirect(fbb, py::str(kv.first).cast<std::string>().c_str(),
                                             py::str(kv.second).cast<std::string>().c_str()));
          }
          auto err = schema::CreateErrorDirect(fbb, e[0].cast<std::string>().c_str(),
                                               e[1].cast<std::string>().c_str(),
                                               e[2].cast<std::string>().c_str(), &kvs);
          schema::ResponseBuilder b(fbb);
          b.add_id(id);
          b.add_status(schema::Status::Error);
          b.add_error(err);
          fbb.Finish(b.Finish());
        } else {
          ipc::FlexWriter flex(256);
          py_to_flex(flex, value);
          flex.Finish();
          auto result = fbb.CreateVector(flex.data(), flex.size());
          schema::ResponseBuilder b(fbb);
          b.add_id(id);
          b.add_status(schema::Status::Ok);
          b.add_result(result);
          fbb.Finish(b.Finish());
        }
        (void)rb;
        return py::bytes(reinterpret_cast<const char*>(fbb.GetBufferPointer()), fbb.GetSize());
      },
      py::arg("id"), py::arg("value"), py::arg("error") = py::none(),
      "A Response envelope: Ok with `value`, or Error from (category, type, message, context).");
}
