// worker.h: the worker loop (python_shm_worker._native.ShmWorker). Attached
// to one slot of a pool's segment, it sends its hello, then serves requests
// until `__shutdown__`: next_frame() waits for a request, dispatch()
// verifies it, calls the registered handler with the args and a Context,
// and replies (ReplyWriter) with what it returned (ResultEncoder) or with
// what went wrong.
//
// Waiting (next_frame): polls while polling pays, keeping the GIL
// (releasing and re-taking it costs more than a whole round trip), then
// sleeps on the futex without it (ipc::wait_until with a let_go that
// releases the GIL). The idle budget learns how long polling pays, at most
// spin_ns and 1 ms, and a hybrid wait does not poll when the caller that sent
// the last request last ran on our CPU (ipc::beside_peer): other Python
// threads wait at most that long for the GIL. Sleeps last at most 100 ms so
// that Python signal handlers (SIGINT) still run.
#pragma once

#include <pybind11/pybind11.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "context.h"
#include "ipc/arena.h"
#include "ipc/envelope.h"
#include "ipc/segment.h"
#include "ipc/spin_budget.h"
#include "reply_writer.h"
#include "result.h"

namespace shmpool::pyworker {

namespace py = pybind11;

// Why a handler's call produced no Ok reply: the Error it is answered with
// (category, type, message) and, for a Python exception, its type and
// traceback.
struct Failure {
  std::string category = "handler_error";
  std::string type = "handler_exception";
  std::string message;
  std::string exception_type;
  std::string traceback;
};

class ShmWorker {
 public:
  ShmWorker(const std::string& pool, uint32_t slot, int owner_pid, const std::string& strategy,
            int64_t spin_ns);
  ShmWorker(const ShmWorker&) = delete;  // results_ points at arena_
  ShmWorker& operator=(const ShmWorker&) = delete;

  // Sends the hello frame (a Response with id 0 carrying `info`), then
  // serves requests until the `__shutdown__` command.
  void serve(py::dict handlers, py::dict info, py::object output_type);

 private:
  // The next request frame, waiting at most one slice for it (Errc::empty
  // if none came).
  ipc::Errc next_frame(ipc::Frame* frame);
  // Answers one request and releases its frame. False after __shutdown__.
  bool dispatch(const ipc::Frame& frame);
  // Replies with the handler's result; a Failure if it cannot be sent.
  std::optional<Failure> reply_ok(uint64_t id, py::object result, const ipc::Frame& frame);
  // A stream call's items (the caller asked for a stream): the items the
  // handler's iterator yields, or its one non-None result; then the end
  // (an Ok reply without `more`). Each waits for room in the caller's window
  // first; a cancelled stream closes the iterator (GeneratorExit at its
  // yield, so its `finally` runs) and ends with cancelled. Throws what the
  // handler raises; the caller then answers with the error after the items.
  void stream(uint64_t id, py::object result);
  // One item, with `more` set (ctx.send() and stream()).
  void send_item(uint64_t id, py::object item);
  // Waits until the caller's window has room: false once the call is cancelled.
  bool wait_for_window(uint64_t id);
  bool cancelled(uint64_t id) const {
    return slot_->cancel[id % ipc::kMaxInFlight].load(std::memory_order_acquire) == id;
  }
  static bool send_from_context(void* self, py::object item);
  // The Context for the next call: the last one while nobody else holds it.
  Context* fresh_context();
  // The handler registered for `cmd`, or null.
  py::object lookup(std::string_view cmd);
  py::object empty_args();
  void exit_if_unsafe();

  std::unique_ptr<ipc::Segment> segment_;
  uint32_t slot_index_;
  ipc::SlotData* slot_;
  ipc::Arena arena_;
  ipc::FrameRing requests_;
  ipc::WaitPolicy policy_;
  ipc::SpinBudget idle_budget_;  // how long the idle wait polls (spin_budget.h)
  ipc::WaitPolicy idle_policy_;  // policy_ for the idle wait, with idle_budget_
  ReplyWriter replies_;
  ResultEncoder results_;
  // The stream being served: what was sent and the caller's take counters
  // when it began (SlotData::items_taken, bytes_taken only grow).
  struct StreamWindow {
    uint64_t sent_items = 0, sent_bytes = 0, base_items = 0, base_bytes = 0;
    uint64_t max_items = 16, max_bytes = 16u << 20;
  } window_;
  bool unsafe_ = false;  // a view outlived its call unsafely: exit after the reply
  // The last request verified, and the current one's private copy (read_request).
  ipc::EnvelopeMemo request_memo_;
  py::dict handlers_;
  py::object empty_args_;
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

}  // namespace shmpool::pyworker
