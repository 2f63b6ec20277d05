// FlexWriter writes the same bytes as flexbuffers::Builder (BUILDER_FLAG_NONE)
// for every tree of values, and refuses the keys the Builder gets wrong.
#include "ipc/flex_writer.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <random>
#include <string>
#include <vector>

namespace shmpool::ipc {
namespace {

// Writes one random value into both writers at once.
struct Twin {
  flexbuffers::Builder builder{512, flexbuffers::BUILDER_FLAG_NONE};
  FlexWriter writer{64};  // small, so buffers grow while being written
  std::mt19937_64 rng;

  // Values left for this tree: once spent, only scalars follow, so a tree's
  // size (and the test's time) is bounded whatever the seed (unbounded, the
  // nesting grew some trees to 16 MiB).
  int budget = 2000;
  int big_blobs = 2;  // 70000-byte blobs left for this tree

  explicit Twin(uint64_t seed) : rng(seed) {}

  std::string text(std::size_t max_len) {
    std::string s(rng() % (max_len + 1), ' ');
    for (char& c : s) c = char('a' + rng() % 26);
    return s;
  }

  void value(int depth) {
    const bool scalars_only = --budget <= 0;
    switch (rng() % (scalars_only ? 5 : depth >= 4 ? 7 : 9)) {
      case 0:
        builder.Null();
        writer.Null();
        break;
      case 1: {
        const bool b = rng() & 1;
        builder.Bool(b);
        writer.Bool(b);
        break;
      }
      case 2: {  // every width, both signs
        const int64_t i = int64_t(rng()) >> (rng() % 64);
        builder.Int(i);
        writer.Int(i);
        break;
      }
      case 3: {
        const uint64_t u = rng() >> (rng() % 64);
        builder.UInt(u);
        writer.UInt(u);
        break;
      }
      case 4: {  // exact as a float (32-bit) or not (64-bit)
        const double d = (rng() & 1) ? double(rng() % 1000) / 4 : double(rng()) / 3.0;
        builder.Double(d);
        writer.Double(d);
        break;
      }
      case 5: {  // long ones need 16-bit lengths and offsets
        const std::string s = text(rng() % 8 == 0 ? 400 : 20);
        builder.String(s.data(), s.size());
        writer.String(s.data(), s.size());
        break;
      }
      case 6: {  // and some 32-bit ones
        const bool big = rng() % 16 == 0 && big_blobs > 0;
        big_blobs -= big;
        const std::string s = text(big ? 70000 : 30);
        builder.Blob(s.data(), s.size());
        writer.Blob(s.data(), s.size());
        break;
      }
      case 7: {
        const std::size_t b = builder.StartVector(), w = writer.StartVector();
        const int n = rng() % 10 == 0 ? 300 : int(rng() % 6);
        for (int i = 0; i < n; ++i) value(depth + 1);
        builder.EndVector(b, false, false);
        writer.EndVector(w);
        break;
      }
      default: {
        const std::size_t b = builder.StartMap(), w = writer.StartMap();
        const int n = rng() % 10 == 0 ? 40 : int(rng() % 6);
        for (int i = 0; i < n; ++i) {
          // Distinct keys, in no particular order.
          const std::string key = text(6) + "#" + std::to_string(i);
          builder.Key(key.c_str(), key.size());
          ASSERT_TRUE(writer.Key(key.data(), key.size()));
          value(depth + 1);
        }
        builder.EndMap(b);
        ASSERT_TRUE(writer.EndMap(w));
        break;
      }
    }
  }
};

TEST(FlexWriterTest, WritesTheSameBytesAsTheBuilder) {
  const char* fixed = std::getenv("FLEX_WRITER_TEST_SEED");  // to replay a printed seed
  const uint64_t seed = fixed ? std::strtoull(fixed, nullptr, 10) : std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::printf("FlexWriterTest seed %llu\n", static_cast<unsigned long long>(seed));
  std::mt19937_64 seeds(seed);
  for (int t = 0; t < 3000; ++t) {
    Twin twin(seeds());
    twin.value(0);
    twin.builder.Finish();
    twin.writer.Finish();
    const std::vector<uint8_t>& expected = twin.builder.GetBuffer();
    const std::vector<uint8_t> got(twin.writer.data(), twin.writer.data() + twin.writer.size());
    ASSERT_EQ(got, expected) << "tree " << t;
    ASSERT_TRUE(flexbuffers::VerifyBuffer(got.data(), got.size()));
  }
}

TEST(FlexWriterTest, AReusedWriterStartsAfresh) {
  FlexWriter w;
  for (int round = 0; round < 3; ++round) {
    w.Clear();
    const std::size_t m = w.StartMap();
    ASSERT_TRUE(w.Key("pong", 4));
    w.Bool(true);
    ASSERT_TRUE(w.EndMap(m));
    w.Finish();
    auto root = flexbuffers::GetRoot(w.data(), w.size());
    ASSERT_TRUE(root.IsMap());
    EXPECT_EQ(root.AsMap().size(), 1u);
    EXPECT_TRUE(root.AsMap()["pong"].AsBool());
  }
}

TEST(FlexWriterTest, RefusesAKeyWithANul) {
  FlexWriter w;
  const std::size_t m = w.StartMap();
  const char key[] = {'a', '\0', 'b'};
  EXPECT_FALSE(w.Key(key, sizeof key));
  ASSERT_TRUE(w.Key("a", 1));  // nothing of the refused key was written
  w.Int(1);
  ASSERT_TRUE(w.EndMap(m));
  w.Finish();
  auto map = flexbuffers::GetRoot(w.data(), w.size()).AsMap();
  ASSERT_EQ(map.size(), 1u);
  EXPECT_EQ(map["a"].AsInt64(), 1);
}

TEST(FlexWriterTest, RefusesDuplicateKeys) {
  FlexWriter w;
  const std::size_t m = w.StartMap();
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(w.Key("same", 4));
    w.Int(i);
  }
  EXPECT_FALSE(w.EndMap(m));
}

}  // namespace
}  // namespace shmpool::ipc
