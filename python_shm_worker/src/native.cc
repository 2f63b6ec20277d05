// The private native core of python_shm_worker: the shared-memory worker
// loop. It waits for a request with the GIL released, verifies the frame,
// decodes the envelope and args into Python objects in C++, calls the
// registered handler, and encodes the result into the response ring in C++.
#include <poll.h>
#include <pybind11/pybind11.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <csignal>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>

#include "convert.h"
#include "ipc/envelope.h"
#include "ipc/segment.h"
#include "ipc/sys.h"

namespace py = pybind11;
namespace ipc = shmpool::ipc;
namespace schema = shmpool::schema;

namespace shmpool::pyworker {
namespace {

// What a handler sees of its call. Its views point into the request frame,
// so every accessor raises once the call has returned.
class Context {
 public:
  bool valid = false;
  uint64_t request_id = 0;
  const flatbuffers::String* session = nullptr;
  const flatbuffers::String* command = nullptr;
  std::span<const uint8_t> payload_bytes;
  std::span<const uint8_t> body_bytes;

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
  py::memoryview payload() const {
    check();
    return py::memoryview::from_memory(static_cast<const void*>(payload_bytes.data()),
                                       py::ssize_t(payload_bytes.size()));
  }
  py::memoryview body() const {
    check();
    return py::memoryview::from_memory(static_cast<const void*>(body_bytes.data()),
                                       py::ssize_t(body_bytes.size()));
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
  }

  // Sends the hello frame (a Response with id 0 carrying `info`), then
  // serves requests until the `__shutdown__` command.
  void serve(py::dict handlers, py::dict info, py::object output_type) {
    handlers_ = handlers;
    output_type_ = output_type;
    {
      fbb_.Clear();
      flex_.Clear();
      py_to_flex(flex_, nullptr, info);
      flex_.Finish();
      send_ok(0, {});
    }
    ipc::SlotData& slot = segment_->slot(slot_index_);
    for (;;) {
      ipc::Frame frame;
      ipc::Errc e = requests_.peek(&frame);
      if (e == ipc::Errc::empty && policy_.strategy != ipc::WaitStrategy::block) {
        // Hot path: poll for a bounded time while keeping the GIL (releasing
        // and re-taking it costs more than a whole round trip). Other Python
        // threads wait at most this long; then we sleep without the GIL.
        const int64_t spin_end =
            ipc::monotonic_ns() + std::min<int64_t>(policy_.spin_ns, 1'000'000);
        for (uint32_t i = 1; !requests_.readable(); ++i) {
          ipc::cpu_relax();
          if ((i & 63) == 0 && ipc::monotonic_ns() >= spin_end) break;
        }
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
      slot.progress.fetch_add(1, std::memory_order_relaxed);  // read by the owner's health check
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
    if (ipc::read_request(frame, &rv) != ipc::Errc::ok) {
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
    py::handle pyctx = ctx_obj_;
    std::string err_type, err_msg, err_tb;
    bool ok = false;
    py::object result;
    try {
      py::object args = req->args() && req->args()->size() > 0
                            ? flex_to_py(req->args_flexbuffer_root())
                            : py::object(py::dict());
      result = handler(args, pyctx);
      ok = true;
    } catch (py::error_already_set& ex) {
      err_type = py::str(ex.type().attr("__name__"));
      err_msg = py::str(ex.value());
      try {
        py::object tb = py::module_::import("traceback")
                            .attr("format_exception")(ex.type(), ex.value(), ex.trace());
        err_tb = py::str("").attr("join")(tb).cast<std::string>();
      } catch (...) {
      }
    }
    ctx->valid = false;
    if (ok) {
      // Encode while the request frame is still held (the result may view it).
      try {
        fbb_.Clear();
        flex_.Clear();
        py::handle value = result;
        py::object payload_obj;
        if (!output_type_.is_none() && py::isinstance(result, output_type_)) {
          value = result.attr("value");
          payload_obj = result.attr("payload");
        }
        py_to_flex(flex_, nullptr, value);
        flex_.Finish();
        if (payload_obj && !payload_obj.is_none()) {
          Py_buffer view;
          if (PyObject_GetBuffer(payload_obj.ptr(), &view, PyBUF_C_CONTIGUOUS) != 0)
            throw py::error_already_set();
          std::span<const uint8_t> bytes(static_cast<const uint8_t*>(view.buf), size_t(view.len));
          ipc::Errc e = send_ok(id, bytes);
          PyBuffer_Release(&view);
          requests_.release(frame);
          if (e == ipc::Errc::frame_too_large) {
            send_error(id, "resource_error", "payload_too_large",
                       "result payload does not fit in the response ring",
                       {{"bytes", std::to_string(bytes.size())}});
          }
          return true;
        }
        requests_.release(frame);
        if (send_ok(id, {}) == ipc::Errc::frame_too_large) {
          send_error(id, "resource_error", "result_too_large",
                     "result does not fit in the response ring", {});
        }
        return true;
      } catch (py::error_already_set& ex) {
        err_type = py::str(ex.type().attr("__name__"));
        err_msg =
            std::string("cannot encode the handler's result: ") + std::string(py::str(ex.value()));
      }
    }
    requests_.release(frame);
    send_error(
        id, "handler_error", "handler_exception", err_msg,
        {{"exception_type", err_type}, {"traceback", err_tb}, {"command", std::string(cmd)}});
    return true;
  }

  // The handler registered for `cmd`, or null. The registry dict is looked up
  // on every call (handlers may be re-registered), with a cached str key.
  py::object lookup(std::string_view cmd) {
    auto it = keys_.find(cmd);
    if (it == keys_.end()) {
      if (keys_.size() > 4096) keys_.clear();  // bounded: unknown commands come from clients
      it = keys_.emplace(std::string(cmd), py::str(cmd.data(), cmd.size())).first;
    }
    PyObject* h = PyDict_GetItemWithError(handlers_.ptr(), it->second.ptr());
    if (!h) {
      PyErr_Clear();
      return py::object();
    }
    return py::reinterpret_borrow<py::object>(h);
  }

  // fbb_ is cleared and flex_ holds the finished result (or is empty).
  ipc::Errc send_ok(uint64_t id, std::span<const uint8_t> payload) {
    flatbuffers::Offset<flatbuffers::Vector<uint8_t>> result;
    if (flex_.GetSize() > 0) result = fbb_.CreateVector(flex_.GetBuffer());
    schema::ResponseBuilder rb(fbb_);
    rb.add_id(id);
    rb.add_status(schema::Status::Ok);
    if (!result.IsNull()) rb.add_result(result);
    schema::PayloadRef ref = ipc::payload_ref_for(payload.size());
    if (!payload.empty()) rb.add_payload(&ref);
    fbb_.Finish(rb.Finish());
    return write(payload);
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

  ipc::Errc write(std::span<const uint8_t> payload) {
    ipc::PayloadWriter pw;
    pw.size = payload.size();
    pw.copy_from = payload.data();
    std::span<const uint8_t> env(fbb_.GetBufferPointer(), fbb_.GetSize());
    segment_->slot(slot_index_).calls.fetch_add(1, std::memory_order_relaxed);  // stats only
    // The client drains its response ring before each call, so there is room
    // at once: try without releasing the GIL (the common case), and wait with
    // it released only if a client is slow to read.
    ipc::Errc e = ipc::write_frame(responses_, env, pw, ipc::monotonic_ns(), policy_);
    if (e != ipc::Errc::ring_full) return e;
    py::gil_scoped_release nogil;
    return ipc::write_frame(responses_, env, pw, 0, policy_);
  }

  std::unique_ptr<ipc::Segment> segment_;
  uint32_t slot_index_;
  ipc::FrameRing requests_, responses_;
  ipc::WaitPolicy policy_;
  flatbuffers::FlatBufferBuilder fbb_{1024};
  flexbuffers::Builder flex_{512};
  py::dict handlers_;
  py::object output_type_ = py::none();
  py::object ctx_obj_;
  Context* ctx_ = nullptr;  // the C++ object inside ctx_obj_
  struct KeyHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
  };
  std::unordered_map<std::string, py::str, KeyHash, std::equal_to<>> keys_;
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
      .def_property_readonly("session_id", &Context::session_id)
      .def_property_readonly("command", &Context::command_name)
      .def_property_readonly("payload", &Context::payload,
                             "Read-only memoryview of the request payload, in shared memory.")
      .def_property_readonly("body", &Context::body, "Typed nested FlatBuffer body (read-only).");
  py::class_<ShmWorker>(m, "ShmWorker")
      .def(py::init<const std::string&, uint32_t, int, const std::string&, int64_t>(),
           py::arg("pool"), py::arg("slot"), py::arg("owner_pid"), py::arg("wait_strategy"),
           py::arg("spin_ns"))
      .def("serve", &ShmWorker::serve, py::arg("handlers"), py::arg("info"),
           py::arg("output_type"));
  m.def("layout_version", [] { return shmpool::ipc::kLayoutVersion; });
}
