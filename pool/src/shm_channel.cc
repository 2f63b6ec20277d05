#include "pool/src/shm_channel.h"

namespace shmpool::detail {

namespace {
Category parse_category(std::string_view s, bool* known) {
  *known = true;
  if (s == "timeout_error") return Category::timeout_error;
  if (s == "worker_error") return Category::worker_error;
  if (s == "protocol_error") return Category::protocol_error;
  if (s == "handler_error") return Category::handler_error;
  if (s == "resource_error") return Category::resource_error;
  if (s == "config_error") return Category::config_error;
  *known = false;
  return Category::protocol_error;
}
}  // namespace

Error error_from_envelope(const schema::Error* e) {
  if (!e)
    return make_error(Category::protocol_error, "invalid_response", "error reply without an error");
  bool known = false;
  Error err;
  err.category = parse_category(e->category() ? e->category()->string_view() : "", &known);
  err.type = e->type() ? e->type()->str() : "";
  err.message = e->message() ? e->message()->str() : "";
  if (e->context()) {
    for (const auto* kv : *e->context()) {
      if (kv && kv->key()) err.context[kv->key()->str()] = kv->value() ? kv->value()->str() : "";
    }
  }
  if (!known) err.context["reported_category"] = e->category() ? e->category()->str() : "";
  return err;
}

ShmChannel::ShmChannel(ipc::Segment* segment, uint32_t slot, ipc::WaitPolicy policy)
    : segment_(segment),
      slot_(slot),
      requests_(segment->request_ring(slot)),
      responses_(segment->response_ring(slot)),
      policy_(policy) {}

void ShmChannel::release_held() {
  if (holding_) {
    responses_.release(held_);
    holding_ = false;
  }
}

Expected<Reply> ShmChannel::await_hello(int64_t deadline_ns) { return await_reply(0, deadline_ns); }

Expected<Reply> ShmChannel::call(const CallSpec& spec) {
  release_held();
  fbb_.Clear();
  auto session = spec.session_id.empty()
                     ? 0
                     : fbb_.CreateString(spec.session_id.data(), spec.session_id.size());
  auto command = fbb_.CreateString(spec.command.data(), spec.command.size());
  auto args = spec.args.empty() ? 0 : fbb_.CreateVector(spec.args.data(), spec.args.size());
  auto body = spec.body.empty() ? 0 : fbb_.CreateVector(spec.body.data(), spec.body.size());
  schema::RequestBuilder rb(fbb_);
  rb.add_id(spec.id);
  if (!session.IsNull()) rb.add_session_id(session);
  rb.add_command(command);
  if (!args.IsNull()) rb.add_args(args);
  if (!body.IsNull()) rb.add_body(body);
  schema::PayloadRef ref = ipc::payload_ref_for(spec.payload.size());
  if (!spec.payload.empty()) rb.add_payload(&ref);
  rb.add_deadline_mono_ns(spec.deadline_ns);
  fbb_.Finish(rb.Finish());

  ipc::PayloadWriter pw;
  pw.size = spec.payload.size();
  pw.copy_from = spec.payload.data();
  ipc::Errc e = ipc::write_frame(requests_, {fbb_.GetBufferPointer(), fbb_.GetSize()}, pw,
                                 spec.deadline_ns, policy_);
  switch (e) {
    case ipc::Errc::ok:
      break;
    case ipc::Errc::frame_too_large:
      return make_error(Category::resource_error, "payload_too_large",
                        "request does not fit in the request ring")
          .with("bytes", std::to_string(spec.payload.size()))
          .with("ring_bytes", std::to_string(requests_.capacity()));
    case ipc::Errc::ring_full:
      return make_error(Category::timeout_error, std::string(kOperationTimeout),
                        "request ring stayed full until the deadline");
    default:
      return make_error(Category::protocol_error, "corrupt_ring", "request ring failed validation");
  }
  return await_reply(spec.id, spec.deadline_ns);
}

Expected<Reply> ShmChannel::await_reply(uint64_t id, int64_t deadline_ns) {
  ipc::SlotData& slot = segment_->slot(slot_);
  auto abandoned = [&] { return abandon_ && abandon_->load(std::memory_order_acquire); };
  auto gone = [&] {
    // pairs with the owner's release store
    return slot.worker_alive.load(std::memory_order_acquire) == 0 || abandoned();
  };
  for (;;) {
    ipc::Frame frame;
    ipc::Errc e = responses_.peek(&frame);
    if (e == ipc::Errc::empty) {
      if (abandoned()) {
        return make_error(Category::resource_error, std::string(kPoolNotAvailable),
                          "the pool's owner process died during the call");
      }
      if (gone()) {
        // One more look: the worker may have replied just before it died.
        e = responses_.peek(&frame);
        if (e == ipc::Errc::empty) {
          return make_error(Category::worker_error, std::string(kWorkerGone),
                            "worker exited during the call");
        }
      } else {
        if (responses_.wait_readable(deadline_ns, policy_, gone) == ipc::WaitResult::timed_out) {
          return make_error(Category::timeout_error, std::string(kOperationTimeout),
                            "no reply before the operation timeout");
        }
        continue;
      }
    }
    if (e != ipc::Errc::ok) {
      return make_error(Category::protocol_error, "corrupt_frame",
                        "response ring failed validation");
    }
    Reply::Parts parts;
    ipc::ResponseView view;
    if (ipc::read_response(frame, &parts.storage, &view) != ipc::Errc::ok) {
      responses_.release(frame);
      return make_error(Category::protocol_error, "invalid_response",
                        "response envelope failed verification");
    }
    const schema::Response* r = view.response;
    if (r->id() != id) {
      responses_.release(frame);
      return make_error(Category::protocol_error, "unexpected_response",
                        "reply does not match the request")
          .with("expected_id", std::to_string(id))
          .with("got_id", std::to_string(r->id()));
    }
    if (r->status() != schema::Status::Ok) {
      Error err = error_from_envelope(r->error());
      responses_.release(frame);
      return err;
    }
    parts.id = r->id();
    if (r->result()) parts.result = {r->result()->data(), r->result()->size()};
    if (r->body()) parts.body = {r->body()->data(), r->body()->size()};
    parts.payload = view.payload;
    if (view.payload.empty()) {
      responses_.release(frame);
    } else {
      held_ = frame;
      holding_ = true;
    }
    return Reply(std::move(parts));
  }
}

}  // namespace shmpool::detail
