#include "pool/src/shm_channel.h"

#include <algorithm>
#include <cstring>
#include <optional>

#include "pool/src/reply_storage.h"

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
  if (s == "cancelled") return Category::cancelled;
  *known = false;
  return Category::protocol_error;
}
}  // namespace

bool worker_must_be_replaced(const Error& e) {
  return e.type == kWorkerGone || e.type == kOperationTimeout ||
         e.category == Category::protocol_error;
}

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

ShmChannel::ShmChannel(ipc::Segment* segment, uint32_t slot, ipc::WaitPolicy policy,
                       std::shared_ptr<ArenaHandle> arena)
    : segment_(segment),
      slot_(slot),
      requests_(segment->request_ring(slot)),
      responses_(segment->response_ring(slot)),
      policy_(policy),
      reply_budget_(policy.spin_ns),
      arena_(arena && arena->arena.enabled() ? std::move(arena) : nullptr) {}

void ShmChannel::release_held() {
  if (holding_) {
    responses_.release(held_);
    holding_ = false;
  }
}

Expected<Reply> ShmChannel::await_hello(int64_t deadline_ns) {
  return await_reply(0, deadline_ns, false);
}

Expected<Reply> ShmChannel::call(const CallSpec& spec) {
  PayloadBuffer temp;  // a copied payload's block: until the reply has come
  if (Status sent = send(spec, &temp); !sent.ok()) return sent.error();
  return await_reply(spec.id, spec.deadline_ns, spec.payload_in_ring);
}

Status ShmChannel::send(const CallSpec& spec, PayloadBuffer* temp_out) {
  release_held();
  // Where the payload goes: in place if it is already in one of our arena
  // blocks, else inline when small, else copied once into a temporary block.
  std::span<const uint8_t> inline_payload = spec.payload;
  std::optional<schema::ArenaRef> arena_ref;
  PayloadBuffer& temp = *temp_out;
  if (arena_ && !spec.payload.empty()) {
    ipc::BlockRef b;
    uint64_t offset = 0;
    if (find_held(*arena_, spec.payload, &b, &offset)) {
      arena_ref = schema::ArenaRef(b.index, 0, offset, spec.payload.size());
      inline_payload = {};
    } else if (spec.payload.size() > kInlinePayloadMax) {
      auto buf = alloc_payload(arena_, spec.payload.size(), spec.deadline_ns, policy_);
      if (!buf.ok()) return buf.error();
      temp = std::move(buf.value());
      std::memcpy(temp.begin(), spec.payload.data(), spec.payload.size());
      ipc::BlockRef tb;
      find_held(*arena_, temp.data(), &tb, &offset);
      arena_ref = schema::ArenaRef(tb.index, 0, offset, temp.size());
      inline_payload = {};
    }
  }
  const std::span<const uint8_t> envelope = build_request(spec, arena_ref, inline_payload.size());

  ipc::PayloadWriter pw;
  pw.size = inline_payload.size();
  pw.copy_from = inline_payload.data();
  ipc::Errc e = ipc::write_frame(requests_, envelope, pw, spec.deadline_ns, policy_);
  switch (e) {
    case ipc::Errc::ok:
      break;
    case ipc::Errc::frame_too_large:
      return payload_too_large(spec.payload.size(), arena_ ? arena_->arena.capacity() : 0)
          .with("ring_bytes", std::to_string(requests_.capacity()));
    case ipc::Errc::ring_full:
      return make_error(Category::timeout_error, std::string(kOperationTimeout),
                        "request ring stayed full until the deadline");
    default:
      return make_error(Category::protocol_error, "corrupt_ring", "request ring failed validation");
  }
  return {};
}

std::optional<Polled> ShmChannel::poll_reply(uint64_t id) {
  ipc::Frame frame;
  const ipc::Errc e = responses_.peek(&frame);
  if (e == ipc::Errc::empty) return std::nullopt;
  if (e != ipc::Errc::ok) {
    return Polled{make_error(Category::protocol_error, "corrupt_frame",
                             "response ring failed validation")};
  }
  return read_reply(frame, id, false);
}

namespace {
std::string_view view_of(const flatbuffers::String* s) {
  return s ? s->string_view() : std::string_view();
}

// True if `shape` holds the request build_request() would build for `spec`
// (a plain one, `no_args` said of its args) but for its id and deadline.
bool builds_same(const ipc::EnvelopeShape& shape, const CallSpec& spec, bool no_args) {
  if (shape.empty()) return false;
  const auto* r = flatbuffers::GetRoot<schema::Request>(shape.bytes().data());
  const flatbuffers::Vector<uint8_t>* args = r->args();
  return view_of(r->command()) == spec.command && view_of(r->session_id()) == spec.session_id &&
         r->flags() == (spec.stream ? uint32_t(schema::RequestFlags::Stream) : 0u) &&
         r->notify() == spec.notify && r->window_items() == spec.window_items &&
         r->window_bytes() == spec.window_bytes &&
         (no_args ? args == nullptr
                  : args && args->size() == spec.args.size() &&
                        std::memcmp(args->data(), spec.args.data(), spec.args.size()) == 0);
}
}  // namespace

std::span<const uint8_t> ShmChannel::build_request(const CallSpec& spec,
                                                   const std::optional<schema::ArenaRef>& arena_ref,
                                                   std::size_t inline_payload) {
  // No args and an empty map reach the handler alike (an empty dict); the
  // worker then skips decoding them, and the envelope is smaller.
  const Args& none = empty_args();
  const bool no_args =
      spec.args.empty() ||
      (spec.args.size() == none.size() && std::equal(none.begin(), none.end(), spec.args.begin()));
  // A repeat (same command, session and args; no payload or body; both
  // holes present): the envelope differs only in two scalars.
  const bool plain = !arena_ref && inline_payload == 0 && spec.body.empty() && spec.id != 0 &&
                     spec.deadline_ns != 0;
  if (plain && builds_same(request_shape_, spec, no_args)) {
    request_shape_.patch(0, spec.id);
    request_shape_.patch(1, spec.deadline_ns);
    return request_shape_.bytes();
  }
  fbb_.Clear();
  auto session = spec.session_id.empty()
                     ? 0
                     : fbb_.CreateString(spec.session_id.data(), spec.session_id.size());
  auto command = fbb_.CreateString(spec.command.data(), spec.command.size());
  auto args = no_args ? 0 : fbb_.CreateVector(spec.args.data(), spec.args.size());
  if (!spec.body.empty()) fbb_.ForceVectorAlignment(spec.body.size(), 1, 8);  // nested FlatBuffer
  auto body = spec.body.empty() ? 0 : fbb_.CreateVector(spec.body.data(), spec.body.size());
  schema::RequestBuilder rb(fbb_);
  rb.add_id(spec.id);
  if (!session.IsNull()) rb.add_session_id(session);
  rb.add_command(command);
  if (!args.IsNull()) rb.add_args(args);
  if (!body.IsNull()) rb.add_body(body);
  schema::PayloadRef ref = ipc::payload_ref_for(inline_payload);
  if (inline_payload != 0) rb.add_payload(&ref);
  if (arena_ref) rb.add_arena_payload(&*arena_ref);
  rb.add_deadline_mono_ns(spec.deadline_ns);
  if (spec.stream) rb.add_flags(uint32_t(schema::RequestFlags::Stream));
  if (spec.notify != 0) rb.add_notify(spec.notify);
  if (spec.window_items != 0) rb.add_window_items(spec.window_items);
  if (spec.window_bytes != 0) rb.add_window_bytes(spec.window_bytes);
  fbb_.Finish(rb.Finish());
  const std::span<const uint8_t> envelope(fbb_.GetBufferPointer(), fbb_.GetSize());
  // FlatBuffers leaves a field out when it holds its default; `plain` rules
  // out 0 for both holes, so remember() finds them (it forgets if not).
  if (plain) {
    request_shape_.remember(envelope, ipc::kRequestFields,
                            {schema::Request::VT_ID, schema::Request::VT_DEADLINE_MONO_NS});
  } else {
    request_shape_.forget();
  }
  return envelope;
}

Expected<Reply> ShmChannel::await_reply(uint64_t id, int64_t deadline_ns, bool payload_in_ring) {
  ipc::SlotData& slot = segment_->slot(slot_);
  auto abandoned = [&] { return abandon_ && abandon_->load(std::memory_order_acquire); };
  auto gone = [&] {
    // pairs with the owner's release store
    return slot.worker_alive.load(std::memory_order_acquire) == 0 || abandoned();
  };
  ipc::WaitPolicy wait = policy_;
  wait.budget = &reply_budget_;
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
        if (responses_.wait_readable(deadline_ns, wait, gone) == ipc::WaitResult::timed_out) {
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
    return std::move(read_reply(frame, id, payload_in_ring).reply);
  }
}

Polled ShmChannel::read_reply(const ipc::Frame& frame, uint64_t id, bool payload_in_ring) {
  ipc::SlotData& slot = segment_->slot(slot_);
  auto fail = [&](Error e) {
    responses_.release(frame);
    return Polled{std::move(e)};
  };
  Reply::Parts parts;
  parts.storage = take_envelope_buffer();
  ipc::ResponseView view;
  if (ipc::read_response(frame, &parts.storage, &view, &reply_memo_) != ipc::Errc::ok) {
    return fail(make_error(Category::protocol_error, "invalid_response",
                           "response envelope failed verification"));
  }
  const schema::Response* r = view.response;
  if (r->id() == 0 && id != 0 && r->status() != schema::Status::Ok) {
    // The worker could not verify our request, so it could not name it:
    // its error (protocol_error/invalid_request) is this call's.
    return fail(error_from_envelope(r->error()));
  }
  if (r->id() != id) {
    return fail(make_error(Category::protocol_error, "unexpected_response",
                           "reply does not match the request")
                    .with("expected_id", std::to_string(id))
                    .with("got_id", std::to_string(r->id())));
  }
  if (r->status() != schema::Status::Ok) return fail(error_from_envelope(r->error()));
  Polled out{Reply()};
  out.more = r->more();
  parts.id = r->id();
  if (r->result()) parts.result = {r->result()->data(), r->result()->size()};
  if (r->body()) parts.body = {r->body()->data(), r->body()->size()};
  parts.payload = view.payload;
  if (const schema::ArenaRef* ar = r->arena_payload()) {
    // The worker hands us a block it holds: take it, then bounds-check.
    ipc::BlockRef b;
    const pid_t worker = slot.worker_pid.load(std::memory_order_relaxed);
    if (!arena_ || !view.payload.empty() ||
        !arena_->arena.take(ar->block(), uint32_t(worker), &b)) {
      return fail(make_error(Category::protocol_error, "invalid_response",
                             "reply payload block is not one the worker holds"));
    }
    PayloadBuffer block = make_payload_buffer(arena_, b, b.bytes.size());
    if (ar->offset() > b.bytes.size() || ar->length() > b.bytes.size() - ar->offset()) {
      return fail(make_error(Category::protocol_error, "invalid_response",
                             "reply payload lies outside its block"));
    }
    parts.payload = std::span<const uint8_t>(b.bytes.data() + ar->offset(), ar->length());
    parts.block = std::move(block);
  }
  out.item_bytes = parts.result.size() + parts.payload.size() + parts.body.size();
  if (!view.payload.empty() && payload_in_ring) {
    held_ = frame;
    holding_ = true;
    out.reply = Reply(std::move(parts));
    return out;
  }
  if (!view.payload.empty()) parts.owned_payload.assign(view.payload.begin(), view.payload.end());
  responses_.release(frame);
  out.reply = Reply(std::move(parts));
  return out;
}

}  // namespace shmpool::detail
