// EnvelopeShape: an envelope remembered with holes at some fields. Matches
// ignore the holes' bytes and nothing else; patches rewrite them into the
// envelope FlatBufferBuilder would build; the field tables are the schema's.
#include "ipc/envelope_shape.h"

#include <gtest/gtest.h>

#include <vector>

namespace shmpool::ipc {
namespace {

using Bytes = std::vector<uint8_t>;

Bytes request(uint64_t id, int64_t deadline, const char* command = "ping") {
  flatbuffers::FlatBufferBuilder fbb;
  auto cmd = fbb.CreateString(command);
  schema::RequestBuilder rb(fbb);
  rb.add_id(id);
  rb.add_command(cmd);
  rb.add_deadline_mono_ns(deadline);
  fbb.Finish(rb.Finish());
  return {fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize()};
}

Bytes reply(uint64_t id, const Bytes& result) {
  flatbuffers::FlatBufferBuilder fbb;
  auto r = fbb.CreateVector(result);
  schema::ResponseBuilder rb(fbb);
  rb.add_id(id);
  rb.add_status(schema::Status::Ok);
  rb.add_result(r);
  fbb.Finish(rb.Finish());
  return {fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize()};
}

constexpr auto kId = schema::Request::VT_ID;
constexpr auto kDeadline = schema::Request::VT_DEADLINE_MONO_NS;

bool in_holes(const EnvelopeShape& s, size_t at) {
  for (size_t k = 0; k < EnvelopeShape::kMaxHoles; ++k) {
    const EnvelopeShape::Hole h = s.hole(k);
    if (at >= h.at && at < size_t(h.at) + h.size) return true;
  }
  return false;
}

TEST(EnvelopeShape, AnEmptyShapeMatchesNothing) {
  EnvelopeShape s;
  EXPECT_TRUE(s.empty());
  EXPECT_FALSE(s.matches(request(1, 2)));
  EXPECT_FALSE(s.matches({}));
}

TEST(EnvelopeShape, RemembersAndMatchesTheSameEnvelope) {
  EnvelopeShape s;
  const Bytes env = request(1, 100);
  ASSERT_TRUE(s.remember(env, kRequestFields, {kId, kDeadline}));
  EXPECT_FALSE(s.empty());
  EXPECT_TRUE(std::equal(env.begin(), env.end(), s.bytes().begin(), s.bytes().end()));
  EXPECT_TRUE(s.matches(env));
  EXPECT_EQ(s.hole(0).size, 8u);
  EXPECT_EQ(s.hole(1).size, 8u);
  EXPECT_EQ(s.hole(2).size, 0u) << "no third hole";
}

TEST(EnvelopeShape, TheHolesMayDiffer) {
  EnvelopeShape s;
  ASSERT_TRUE(s.remember(request(1, 100), kRequestFields, {kId, kDeadline}));
  EXPECT_TRUE(s.matches(request(2, 100)));
  EXPECT_TRUE(s.matches(request(~0ull, -5)));
  Bytes env = request(1, 100);
  for (size_t k = 0; k < 8; ++k) env[s.hole(0).at + k] ^= 0xff;
  EXPECT_TRUE(s.matches(env)) << "any bytes in a hole";
}

TEST(EnvelopeShape, AChangedByteOutsideTheHolesIsAMismatch) {
  EnvelopeShape s;
  const Bytes env = request(1, 100);
  ASSERT_TRUE(s.remember(env, kRequestFields, {kId, kDeadline}));
  size_t outside = 0;
  for (size_t at = 0; at < env.size(); ++at) {
    Bytes changed = env;
    changed[at] ^= 0x01;
    EXPECT_EQ(s.matches(changed), in_holes(s, at)) << "byte " << at;
    outside += !in_holes(s, at);
  }
  EXPECT_EQ(outside, env.size() - 16);
  EXPECT_FALSE(s.matches(request(1, 100, "pong")));
  Bytes longer = env;
  longer.push_back(0);
  EXPECT_FALSE(s.matches(longer)) << "another size";
}

TEST(EnvelopeShape, PatchingGivesTheEnvelopeTheBuilderWouldBuild) {
  EnvelopeShape s;
  ASSERT_TRUE(s.remember(request(1, 100), kRequestFields, {kId, kDeadline}));
  s.patch(0, uint64_t(77));
  s.patch(1, int64_t(7700));
  const Bytes want = request(77, 7700);
  EXPECT_TRUE(std::equal(want.begin(), want.end(), s.bytes().begin(), s.bytes().end()));
  EXPECT_TRUE(s.matches(want));
}

TEST(EnvelopeShape, AVectorHoleIsItsElements) {
  const auto kRid = schema::Response::VT_ID, kResult = schema::Response::VT_RESULT;
  EnvelopeShape s;
  ASSERT_TRUE(s.remember(reply(1, {1, 2, 3, 4, 5}), kResponseFields, {kRid, kResult}));
  EXPECT_EQ(s.hole(1).size, 5u);
  EXPECT_TRUE(s.matches(reply(9, {5, 4, 3, 2, 1})));
  EXPECT_FALSE(s.matches(reply(9, {1, 2, 3, 4, 5, 6}))) << "its length is not a hole";
  const Bytes result = {9, 8, 7, 6, 5};
  s.patch(0, uint64_t(3));
  s.patch(1, std::span<const uint8_t>(result));
  const Bytes want = reply(3, result);
  EXPECT_TRUE(std::equal(want.begin(), want.end(), s.bytes().begin(), s.bytes().end()));
}

TEST(EnvelopeShape, ASenderNeedsEveryHoleField) {
  flatbuffers::FlatBufferBuilder fbb;
  auto cmd = fbb.CreateString("ping");
  schema::RequestBuilder rb(fbb);
  rb.add_id(1);
  rb.add_command(cmd);  // no deadline: nothing to patch there
  fbb.Finish(rb.Finish());
  const std::span<const uint8_t> env(fbb.GetBufferPointer(), fbb.GetSize());
  EnvelopeShape s;
  EXPECT_FALSE(s.remember(env, kRequestFields, {kId, kDeadline}));
  EXPECT_TRUE(s.empty());
  // A reader's memo may do without it: one hole then.
  EXPECT_TRUE(s.remember_verified(env, kRequestFields, {kId, kDeadline}));
  EXPECT_EQ(s.hole(0).size, 8u);
  EXPECT_EQ(s.hole(1).size, 0u);
  EXPECT_TRUE(s.matches(env));
}

TEST(EnvelopeShape, AReaderHasScalarHolesOnly) {
  EnvelopeShape s;
  EXPECT_FALSE(s.remember_verified(request(1, 2), kRequestFields, {schema::Request::VT_COMMAND}))
      << "the Verifier reads a string's bytes";
  EXPECT_TRUE(s.empty());
  EXPECT_FALSE(s.remember(request(1, 2), kRequestFields, {flatbuffers::voffset_t(40)}))
      << "not a field of Request";
}

TEST(EnvelopeShape, RememberingAgainForgetsTheLastOne) {
  EnvelopeShape s;
  ASSERT_TRUE(s.remember(request(1, 2), kRequestFields, {kId, kDeadline}));
  ASSERT_TRUE(s.remember(request(1, 2, "other"), kRequestFields, {kId}));
  EXPECT_FALSE(s.matches(request(1, 2)));
  EXPECT_FALSE(s.matches(request(1, 3, "other"))) << "the deadline is no hole now";
  EXPECT_TRUE(s.matches(request(5, 2, "other")));
  s.forget();
  EXPECT_FALSE(s.matches(request(5, 2, "other")));
}

// The tables are checked against the generated code: one that misses a
// field (as after a field is appended to envelope.fbs) or says the wrong
// kind does not pass.
TEST(EnvelopeShape, TheFieldTablesAreCheckedAgainstTheSchema) {
  using envelope_fields::lists_every_field;
  static_assert(lists_every_field<schema::Request>(kRequestFields));
  static_assert(!lists_every_field<schema::Request>(std::span(kRequestFields).first(7)));
  static_assert(!lists_every_field<schema::Request>(kResponseFields));
  constexpr FieldSpec wrong_kind[] = {
      {schema::Response::VT_ID, FieldKind::scalar, 8},
      {schema::Response::VT_STATUS, FieldKind::scalar, 1},
      {schema::Response::VT_RESULT, FieldKind::string, 4},  // a [ubyte], not a string
      {schema::Response::VT_PAYLOAD, FieldKind::scalar, 16},
      {schema::Response::VT_BODY, FieldKind::bytes, 4},
      {schema::Response::VT_ERROR, FieldKind::table, 4},
      {schema::Response::VT_ARENA_PAYLOAD, FieldKind::scalar, 24},
  };
  static_assert(!lists_every_field<schema::Response>(wrong_kind));
  SUCCEED();
}

}  // namespace
}  // namespace shmpool::ipc
