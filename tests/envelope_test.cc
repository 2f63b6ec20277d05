// Envelope framing: round trips, and every bounds violation is caught.
#include "ipc/envelope.h"

#include <gtest/gtest.h>

#include <random>

namespace shmpool::ipc {
namespace {

struct Ring {
  RingControl control;
  alignas(64) uint8_t data[1 << 16] = {};  // ring data is cache-line aligned in a segment
  FrameRing ring() { return FrameRing(&control, data, sizeof data); }
};

std::vector<uint8_t> request_envelope(uint64_t id, size_t payload) {
  flatbuffers::FlatBufferBuilder fbb;
  flexbuffers::Builder flex;
  flex.Map([&] { flex.Int("x", 1); });
  flex.Finish();
  schema::PayloadRef ref = payload_ref_for(payload);
  auto req = schema::CreateRequestDirect(fbb, id, "sid", "cmd", &flex.GetBuffer(),
                                         payload ? &ref : nullptr);
  fbb.Finish(req);
  return {fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize()};
}

// Writes a request frame carrying `envelope` and `payload`, then peeks it.
Frame write_and_peek(Ring& r, const std::vector<uint8_t>& envelope,
                     const std::vector<uint8_t>& payload) {
  FrameRing p = r.ring(), c = r.ring();
  PayloadWriter pw;
  pw.size = payload.size();
  pw.copy_from = payload.data();
  EXPECT_EQ(write_frame(p, envelope, pw, monotonic_ns() + 1'000'000'000, {}), Errc::ok);
  Frame f;
  EXPECT_EQ(c.peek(&f), Errc::ok);
  return f;
}

TEST(Envelope, RequestRoundTripWithPayload) {
  Ring r;
  std::vector<uint8_t> payload(1000);
  for (size_t i = 0; i < payload.size(); ++i) payload[i] = uint8_t(i * 3);
  Frame f = write_and_peek(r, request_envelope(7, payload.size()), payload);
  ASSERT_NE(f.body, nullptr);
  RequestView v;
  ASSERT_EQ(read_request(f, &v), Errc::ok);
  EXPECT_EQ(v.request->id(), 7u);
  EXPECT_EQ(v.request->command()->str(), "cmd");
  EXPECT_EQ(v.request->args_flexbuffer_root().AsMap()["x"].AsInt64(), 1);
  ASSERT_EQ(v.payload.size(), payload.size());
  EXPECT_TRUE(std::equal(payload.begin(), payload.end(), v.payload.begin()));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(v.payload.data()) % 64, 0u)
      << "payload is cache-line aligned";
}

TEST(Envelope, PayloadRefOutsideTheFrameIsCorrupt) {
  Ring r;
  // The envelope claims 4096 payload bytes but the frame carries 16.
  Frame f = write_and_peek(r, request_envelope(1, 4096), std::vector<uint8_t>(16));
  ASSERT_NE(f.body, nullptr);
  RequestView v;
  EXPECT_EQ(read_request(f, &v), Errc::corrupt);
}

TEST(Envelope, RandomBytesAreRejected) {
  std::mt19937 rng(20261126);  // fixed: the outcome is deterministic
  int rejected = 0;
  for (int i = 0; i < 2000; ++i) {
    std::vector<uint8_t> junk(8 + rng() % 512);
    for (auto& b : junk) b = uint8_t(rng());
    alignas(64) uint8_t body[1024];
    std::memcpy(body, junk.data(), junk.size());
    Frame f;
    f.body = body;
    f.body_length = uint32_t(junk.size());
    f.envelope_offset = 0;
    f.envelope_length = uint32_t(junk.size());
    RequestView rv;
    std::vector<uint8_t> copy;
    ResponseView sv;
    // Under ASan this also proves the verifier reads only inside the frame.
    bool req_ok = read_request(f, &rv) == Errc::ok;
    bool resp_ok = read_response(f, &copy, &sv) == Errc::ok;
    if (!req_ok && !resp_ok) ++rejected;
  }
  EXPECT_GE(rejected, 1990);
}

TEST(Envelope, TruncatedEnvelopeIsCorrupt) {
  auto env = request_envelope(3, 0);
  alignas(64) uint8_t body[512];
  std::memcpy(body, env.data(), env.size());
  for (size_t cut = 0; cut < env.size(); cut += 4) {
    Frame f;
    f.body = body;
    f.body_length = uint32_t(cut);
    f.envelope_offset = 0;
    f.envelope_length = uint32_t(cut);
    RequestView v;
    EXPECT_EQ(read_request(f, &v), Errc::corrupt) << "cut at " << cut;
  }
}

std::vector<uint8_t> pong_envelope(uint64_t id) {
  flatbuffers::FlatBufferBuilder fbb;
  flexbuffers::Builder flex;
  flex.Map([&] { flex.Bool("pong", true); });
  flex.Finish();
  fbb.Finish(schema::CreateResponseDirect(fbb, id, schema::Status::Ok, &flex.GetBuffer()));
  return {fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize()};
}

// A frame whose body is `env` (copied into `storage`, 8-aligned).
Frame frame_of(const std::vector<uint8_t>& env, std::vector<uint64_t>* storage) {
  storage->assign(env.size() / 8 + 1, 0);
  std::memcpy(storage->data(), env.data(), env.size());
  Frame f;
  f.body = reinterpret_cast<const uint8_t*>(storage->data());
  f.body_length = uint32_t(env.size());
  f.envelope_length = uint32_t(env.size());
  return f;
}

// The scalars a memo lets differ (its shape's holes), as a mask over the envelope.
std::vector<bool> skipped(const EnvelopeMemo& memo, size_t n) {
  std::vector<bool> m(n);
  for (size_t h = 0; h < EnvelopeShape::kMaxHoles; ++h) {
    const EnvelopeShape::Hole& hole = memo.shape.hole(h);
    for (size_t k = 0; k < hole.size; ++k) m[hole.at + k] = true;
  }
  return m;
}

TEST(Envelope, ARepeatedReplyIsReadWithItsOwnId) {
  EnvelopeMemo memo;
  std::vector<uint64_t> storage;
  for (uint64_t id : {5u, 6u, 7u}) {
    std::vector<uint8_t> copy;
    ResponseView v;
    ASSERT_EQ(read_response(frame_of(pong_envelope(id), &storage), &copy, &v, &memo), Errc::ok);
    EXPECT_EQ(v.response->id(), id);
    EXPECT_TRUE(v.response->result_flexbuffer_root().AsMap()["pong"].AsBool());
    EXPECT_FALSE(memo.shape.empty()) << "a small reply is remembered";
  }
}

TEST(Envelope, ARepeatedRequestIsReadWithItsOwnIdAndDeadline) {
  EnvelopeMemo memo;
  std::vector<uint64_t> storage;
  for (int64_t k : {1, 2, 3}) {
    flatbuffers::FlatBufferBuilder fbb;
    auto cmd = fbb.CreateString("ping");
    schema::RequestBuilder rb(fbb);
    rb.add_id(uint64_t(k));
    rb.add_command(cmd);
    rb.add_deadline_mono_ns(1000 * k);
    fbb.Finish(rb.Finish());
    const std::vector<uint8_t> env(fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize());
    RequestView v;
    const Frame f = frame_of(env, &storage);
    ASSERT_EQ(read_request(f, &v, &memo), Errc::ok);
    EXPECT_EQ(v.request->id(), uint64_t(k));
    EXPECT_EQ(v.request->deadline_mono_ns(), 1000 * k);
    EXPECT_EQ(v.request->command()->str(), "ping");
    const auto* at = reinterpret_cast<const uint8_t*>(v.request);
    EXPECT_TRUE(at < f.body || at >= f.body + f.body_length) << "read from the private copy";
    EXPECT_EQ(memo.shape.hole(0).size, 8u) << "the id";
    EXPECT_EQ(memo.shape.hole(1).size, 8u) << "the deadline";
  }
}

// A crafted envelope whose skipped scalars share bytes with other fields
// verifies, but a memo of it could accept what the Verifier would not: it
// is not remembered.
TEST(Envelope, AnEnvelopeWhoseIdOverlapsAnotherFieldIsNotRemembered) {
  flatbuffers::FlatBufferBuilder fbb;
  auto cmd = fbb.CreateString("ping");
  schema::RequestBuilder rb(fbb);
  rb.add_id(1);
  rb.add_command(cmd);
  rb.add_deadline_mono_ns(2);
  fbb.Finish(rb.Finish());
  std::vector<uint8_t> env(fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize());
  // Point the deadline's vtable entry at the id's bytes.
  const auto table = flatbuffers::ReadScalar<flatbuffers::uoffset_t>(env.data());
  const auto vtable = table - flatbuffers::ReadScalar<flatbuffers::soffset_t>(env.data() + table);
  const auto id_off =
      flatbuffers::ReadScalar<flatbuffers::voffset_t>(env.data() + vtable + schema::Request::VT_ID);
  flatbuffers::WriteScalar<flatbuffers::voffset_t>(
      env.data() + vtable + schema::Request::VT_DEADLINE_MONO_NS, id_off);
  std::vector<uint64_t> storage;
  EnvelopeMemo memo;
  RequestView v;
  ASSERT_EQ(read_request(frame_of(env, &storage), &v, &memo), Errc::ok);
  EXPECT_EQ(v.request->deadline_mono_ns(), 1) << "the deadline reads the id's bytes";
  EXPECT_TRUE(memo.shape.empty());
}

// A memo must never accept what the Verifier rejects: every byte of a
// remembered envelope (the scalars it lets differ aside) changed to several
// values reads the same with the memo as without it.
template <class Read>
void memo_agrees_with_the_verifier(const std::vector<uint8_t>& good, Read read) {
  std::vector<uint64_t> storage;
  int rejected = 0;
  for (size_t at = 0; at < good.size(); ++at) {
    for (uint8_t value : {uint8_t(0), uint8_t(1), uint8_t(0x7f), uint8_t(0xff)}) {
      EnvelopeMemo memo;
      ASSERT_EQ(read(frame_of(good, &storage), &memo), Errc::ok);
      ASSERT_FALSE(memo.shape.empty());
      if (skipped(memo, good.size())[at] || good[at] == value) continue;
      std::vector<uint8_t> bad = good;
      bad[at] = value;
      const Frame f = frame_of(bad, &storage);
      const Errc without = read(f, nullptr);
      EXPECT_EQ(read(f, &memo), without) << "byte " << at << " = " << +value;
      rejected += without == Errc::corrupt;
    }
  }
  EXPECT_GT(rejected, 0) << "some changes must break the envelope";
}

TEST(Envelope, TheReplyMemoAgreesWithTheVerifier) {
  memo_agrees_with_the_verifier(pong_envelope(5), [](const Frame& f, EnvelopeMemo* memo) {
    std::vector<uint8_t> copy;
    ResponseView v;
    return read_response(f, &copy, &v, memo);
  });
}

TEST(Envelope, TheRequestMemoAgreesWithTheVerifier) {
  memo_agrees_with_the_verifier(request_envelope(9, 0), [](const Frame& f, EnvelopeMemo* memo) {
    RequestView v;
    return read_request(f, &v, memo);
  });
}

}  // namespace
}  // namespace shmpool::ipc
