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

// True if `env` equals the memo's envelope except for its skipped scalars.
bool repeats(const EnvelopeMemo& memo, std::span<const uint8_t> env) {
  const std::size_t n = memo.bytes.size();
  if (n == 0 || env.size() != n) return false;
  std::size_t from = 0;
  for (std::size_t at : memo.skip) {  // ascending, 0 = none
    if (at == 0) continue;
    if (std::memcmp(env.data() + from, memo.bytes.data() + from, at - from) != 0) return false;
    from = at + 8;
  }
  return std::memcmp(env.data() + from, memo.bytes.data() + from, n - from) == 0;
}

// What a root table's field is, for stands_alone().
enum class Field : uint8_t { scalar, string, bytes, table };
struct FieldKind {
  Field kind;
  uint8_t size;  // bytes in the table (a scalar's or struct's size; 4 for an offset)
};
constexpr FieldKind kRequestFields[] = {{Field::scalar, 8}, {Field::string, 4},  {Field::string, 4},
                                        {Field::bytes, 4},  {Field::scalar, 16}, {Field::bytes, 4},
                                        {Field::scalar, 8}, {Field::scalar, 24}};
constexpr FieldKind kResponseFields[] = {{Field::scalar, 8},  {Field::scalar, 1}, {Field::bytes, 4},
                                         {Field::scalar, 16}, {Field::bytes, 4},  {Field::table, 4},
                                         {Field::scalar, 24}};

// True if the Verifier's verdict on `env` (verified) cannot depend on the
// bytes of its 8-byte scalar fields `a` and `b` (at `skip`): no other byte it reads (root
// offset, the table's vtable and soffset, the other fields, the strings and
// vectors they point to) lies among them. FlatBufferBuilder never overlaps
// them; a crafted envelope can, and is then not remembered. An envelope
// with a sub-table (an error) is not either: its vtable may lie anywhere.
bool stands_alone(std::span<const uint8_t> env, std::span<const FieldKind> fields,
                  flatbuffers::voffset_t a, flatbuffers::voffset_t b,
                  const std::size_t (&skip)[2]) {
  struct Range {
    std::size_t from, to;
  };
  Range used[2 + 2 * std::size(kRequestFields) + 1];
  std::size_t n = 0;
  const uint8_t* base = env.data();
  const std::size_t table = flatbuffers::ReadScalar<flatbuffers::uoffset_t>(base);
  const std::size_t vtable =
      std::size_t(int64_t(table) - flatbuffers::ReadScalar<flatbuffers::soffset_t>(base + table));
  const std::size_t vsize = flatbuffers::ReadScalar<flatbuffers::voffset_t>(base + vtable);
  used[n++] = {0, 4};
  used[n++] = {table, table + 4};
  used[n++] = {vtable, vtable + vsize};
  for (std::size_t i = 0; i < fields.size(); ++i) {
    const std::size_t entry = 4 + 2 * i;  // the field's voffset in the vtable
    if (entry + 2 > vsize) break;
    const std::size_t off = flatbuffers::ReadScalar<flatbuffers::voffset_t>(base + vtable + entry);
    if (off == 0) continue;  // absent
    const std::size_t at = table + off;
    if (entry == a || entry == b) continue;  // the skipped fields themselves
    used[n++] = {at, at + fields[i].size};
    if (fields[i].kind == Field::table) return false;
    if (fields[i].kind == Field::scalar) continue;
    const std::size_t target = at + flatbuffers::ReadScalar<flatbuffers::uoffset_t>(base + at);
    const std::size_t len = flatbuffers::ReadScalar<flatbuffers::uoffset_t>(base + target);
    used[n++] = {target, target + 4 + len + (fields[i].kind == Field::string ? 1 : 0)};
  }
  for (std::size_t k = 0; k < 2; ++k) {
    if (skip[k] == 0) continue;
    const Range s{skip[k], skip[k] + 8};
    if (k == 1 && skip[0] != 0 && skip[0] + 8 > skip[1]) return false;  // they overlap
    for (std::size_t u = 0; u < n; ++u) {
      if (s.from < used[u].to && used[u].from < s.to) return false;
    }
  }
  return true;
}

// Remembers a verified envelope (whose root table has `fields`) and where
// its 8-byte scalar fields `a` and `b` are, if its verdict cannot depend on them.
void remember(EnvelopeMemo* memo, std::span<const uint8_t> env, std::span<const FieldKind> fields,
              flatbuffers::voffset_t a, flatbuffers::voffset_t b) {
  memo->bytes.clear();
  if (env.size() > EnvelopeMemo::kMaxBytes) return;
  const auto* table = flatbuffers::GetRoot<flatbuffers::Table>(env.data());
  std::size_t at[2] = {0, 0};
  for (int k = 0; k < 2; ++k) {
    const flatbuffers::voffset_t field = k == 0 ? a : b;
    if (const uint8_t* p = field ? table->GetAddressOf(field) : nullptr)
      at[k] = std::size_t(p - env.data());
  }
  if (at[0] > at[1]) std::swap(at[0], at[1]);
  if (!stands_alone(env, fields, a, b, at)) return;
  memo->skip[0] = at[0];
  memo->skip[1] = at[1];
  memo->bytes.assign(env.begin(), env.end());
}
}  // namespace

Errc read_request(const Frame& frame, RequestView* out, EnvelopeMemo* memo) {
  const uint8_t* env = frame.body + frame.envelope_offset;
  if (frame.envelope_offset % 8 != 0 || frame.envelope_length == 0) return Errc::corrupt;
  if (memo && frame.envelope_length <= EnvelopeMemo::kMaxBytes) {
    memo->copy.assign(env, env + frame.envelope_length);
    env = memo->copy.data();
    const std::span<const uint8_t> bytes(memo->copy);
    if (!repeats(*memo, bytes)) {
      flatbuffers::Verifier verifier(env, frame.envelope_length);
      if (!verifier.VerifyBuffer<schema::Request>(nullptr)) return Errc::corrupt;
      remember(memo, bytes, kRequestFields, schema::Request::VT_ID,
               schema::Request::VT_DEADLINE_MONO_NS);
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
  if (!memo || !repeats(*memo, env)) {
    flatbuffers::Verifier verifier(env.data(), env.size());
    if (!verifier.VerifyBuffer<schema::Response>(nullptr)) return Errc::corrupt;
    if (memo) remember(memo, env, kResponseFields, schema::Response::VT_ID, 0);
  }
  auto* resp = flatbuffers::GetRoot<schema::Response>(env.data());
  if (!resolve_payload(frame, resp->payload(), &out->payload)) return Errc::corrupt;
  out->response = resp;
  return Errc::ok;
}

}  // namespace shmpool::ipc
