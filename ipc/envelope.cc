#include "ipc/envelope.h"

#include <cstring>

namespace shmpool::ipc {

Errc write_frame(FrameRing& ring, std::span<const uint8_t> envelope, const PayloadWriter& payload,
                 int64_t deadline_ns, const WaitPolicy& policy) {
  const uint64_t env_off = envelope_offset_for(payload.size);
  const uint64_t body = env_off + envelope.size();
  if (body > ring.max_body()) return Errc::frame_too_large;
  FrameSpace space;
  if (Errc e = ring.reserve(uint32_t(body), deadline_ns, policy, &space); e != Errc::ok) return e;
  if (payload.size != 0) {
    uint8_t* dst = space.body + payload_offset_for(payload.size);
    if (payload.fill) {
      payload.fill(payload.ctx, std::span<uint8_t>(dst, payload.size));
    } else if (payload.copy_from) {
      std::memcpy(dst, payload.copy_from, payload.size);
    }
  }
  std::memcpy(space.body + env_off, envelope.data(), envelope.size());
  ring.commit(uint32_t(body), uint32_t(env_off), uint32_t(envelope.size()));
  return Errc::ok;
}

namespace {
// The payload must lie inside the body and before the envelope.
bool resolve_payload(const Frame& frame, const schema::PayloadRef* ref,
                     std::span<const uint8_t>* out) {
  if (ref == nullptr || ref->length() == 0) {
    *out = {};
    return true;
  }
  const uint64_t off = ref->offset(), len = ref->length();
  if (off > frame.envelope_offset || len > frame.envelope_offset - off) return false;
  *out = std::span<const uint8_t>(frame.body + off, len);
  return true;
}

// Keeps a verified envelope in the memo (holes at `holes`), if small.
void remember(EnvelopeMemo* memo, std::span<const uint8_t> env, std::span<const FieldSpec> fields,
              std::initializer_list<flatbuffers::voffset_t> holes) {
  if (env.size() > EnvelopeMemo::kMaxBytes || !memo->shape.remember_verified(env, fields, holes))
    memo->shape.forget();
}
}  // namespace

Errc read_request(const Frame& frame, RequestView* out, EnvelopeMemo* memo) {
  const uint8_t* env = frame.body + frame.envelope_offset;
  if (frame.envelope_offset % 8 != 0 || frame.envelope_length == 0) return Errc::corrupt;
  if (memo && frame.envelope_length <= EnvelopeMemo::kMaxBytes) {
    memo->copy.assign(env, env + frame.envelope_length);
    env = memo->copy.data();
    const std::span<const uint8_t> bytes(memo->copy);
    if (!memo->shape.matches(bytes)) {
      flatbuffers::Verifier verifier(env, frame.envelope_length);
      if (!verifier.VerifyBuffer<schema::Request>(nullptr)) return Errc::corrupt;
      remember(memo, bytes, kRequestFields,
               {schema::Request::VT_ID, schema::Request::VT_DEADLINE_MONO_NS});
    }
  } else {
    flatbuffers::Verifier verifier(env, frame.envelope_length);
    if (!verifier.VerifyBuffer<schema::Request>(nullptr)) return Errc::corrupt;
  }
  auto* req = flatbuffers::GetRoot<schema::Request>(env);
  if (!resolve_payload(frame, req->payload(), &out->payload)) return Errc::corrupt;
  out->request = req;
  return Errc::ok;
}

Errc read_response(const Frame& frame, std::vector<uint8_t>* envelope_copy, ResponseView* out,
                   EnvelopeMemo* memo) {
  if (frame.envelope_length == 0) return Errc::corrupt;
  // Copy first (the worker may still write the shared bytes), then verify the copy.
  // One NUL past the end: FlatBuffers 2.0.8's FlexBuffers verifier accepts a
  // key without its terminator, and key reads (strlen, strcmp) then stop here.
  envelope_copy->resize(size_t(frame.envelope_length) + 1);
  std::memcpy(envelope_copy->data(), frame.body + frame.envelope_offset, frame.envelope_length);
  (*envelope_copy)[frame.envelope_length] = 0;
  const std::span<const uint8_t> env(envelope_copy->data(), frame.envelope_length);
  if (!memo || !memo->shape.matches(env)) {
    flatbuffers::Verifier verifier(env.data(), env.size());
    if (!verifier.VerifyBuffer<schema::Response>(nullptr)) return Errc::corrupt;
    if (memo) remember(memo, env, kResponseFields, {schema::Response::VT_ID});
  }
  auto* resp = flatbuffers::GetRoot<schema::Response>(env.data());
  if (!resolve_payload(frame, resp->payload(), &out->payload)) return Errc::corrupt;
  out->response = resp;
  return Errc::ok;
}

}  // namespace shmpool::ipc
