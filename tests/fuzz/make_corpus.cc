// Writes the seed corpus of the fuzz targets (committed under
// tests/fuzz/corpus; rerun after an envelope change):
//   make_corpus OUT_DIR   -> OUT_DIR/{ring,envelope,convert}/seed-N
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "ipc/envelope.h"
#include "ipc/frame_ring.h"

using namespace shmpool;
namespace fs = std::filesystem;

namespace {

void write_file(const fs::path& dir, int n, const std::vector<uint8_t>& bytes) {
  fs::create_directories(dir);
  std::ofstream(dir / ("seed-" + std::to_string(n)), std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
}

std::vector<uint8_t> flex_args(int variant) {
  flexbuffers::Builder b;
  b.Map([&] {
    b.Int("i", -42);
    b.UInt("u", 18446744073709551615ull);
    b.Double("d", 0.5);
    b.Bool("t", true);
    b.Null("none");
    b.String("s", variant ? "h\xc3\xa9llo" : "hello");
    const uint8_t blob[] = {0, 1, 2, 255};
    b.Key("blob");
    b.Blob(blob, sizeof blob);
    b.Vector("list", [&] {
      b.Int(1);
      b.String("two");
      b.Vector([&] { b.Double(3.0); });
      b.Map([&] { b.Int("deep", variant); });
    });
    b.TypedVector("typed", [&] {
      b.Int(1);
      b.Int(2);
    });
  });
  b.Finish();
  return b.GetBuffer();
}

struct Envelope {
  flatbuffers::DetachedBuffer buf;
  size_t payload = 0;  // inline payload bytes the frame carries before it
};

std::vector<Envelope> envelopes() {
  std::vector<Envelope> out;
  for (int v = 0; v < 2; ++v) {
    flatbuffers::FlatBufferBuilder fbb;
    auto args = flex_args(v);
    const size_t payload = v ? 100 : 0;
    schema::PayloadRef ref = ipc::payload_ref_for(payload);
    auto req = schema::CreateRequestDirect(fbb, 7 + v, v ? "session-1" : nullptr, "echo", &args,
                                           payload ? &ref : nullptr, nullptr, 123456789);
    fbb.Finish(req);
    out.push_back({fbb.Release(), payload});
  }
  {  // request with an arena payload reference and a body
    flatbuffers::FlatBufferBuilder fbb;
    std::vector<uint8_t> body = {4, 0, 0, 0, 1, 2, 3, 4};
    auto b = fbb.CreateVector(body);
    auto cmd = fbb.CreateString("image_stats");
    schema::RequestBuilder rb(fbb);
    rb.add_id(99);
    rb.add_command(cmd);
    rb.add_body(b);
    schema::ArenaRef ref(3, 0, 128, 4096);
    rb.add_arena_payload(&ref);
    fbb.Finish(rb.Finish());
    out.push_back({fbb.Release(), 0});
  }
  {  // ok response with a result
    flatbuffers::FlatBufferBuilder fbb;
    auto result = flex_args(1);
    fbb.Finish(schema::CreateResponseDirect(fbb, 7, schema::Status::Ok, &result));
    out.push_back({fbb.Release(), 0});
  }
  {  // error response with context
    flatbuffers::FlatBufferBuilder fbb;
    std::vector<flatbuffers::Offset<schema::KeyValue>> kvs = {
        schema::CreateKeyValueDirect(fbb, "exception_type", "ValueError"),
        schema::CreateKeyValueDirect(fbb, "traceback", "Traceback...")};
    auto err = schema::CreateErrorDirect(fbb, "handler_error", "handler_exception", "boom", &kvs);
    schema::ResponseBuilder rb(fbb);
    rb.add_id(8);
    rb.add_status(schema::Status::Error);
    rb.add_error(err);
    fbb.Finish(rb.Finish());
    out.push_back({fbb.Release(), 0});
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT_DIR\n", argv[0]);
    return 2;
  }
  const fs::path out = argv[1];
  auto envs = envelopes();
  // envelope: [envelope offset][envelope length][frame body], as the ring gives them.
  int n = 0;
  for (auto& env : envs) {
    alignas(64) static uint8_t data[1 << 16];
    ipc::RingControl ctl;
    ipc::FrameRing ring(&ctl, data, sizeof data);
    std::vector<uint8_t> bytes(env.payload, 0xab);
    ipc::PayloadWriter pw;
    pw.size = env.payload;
    pw.copy_from = bytes.data();
    if (ipc::write_frame(ring, {env.buf.data(), env.buf.size()}, pw, 0, {}) != ipc::Errc::ok)
      return 1;
    ipc::Frame f;
    if (ring.peek(&f) != ipc::Errc::ok) return 1;
    std::vector<uint8_t> seed(8);
    std::memcpy(seed.data(), &f.envelope_offset, 4);
    std::memcpy(seed.data() + 4, &f.envelope_length, 4);
    seed.insert(seed.end(), f.body, f.body + f.body_length);
    write_file(out / "envelope", n++, seed);
  }
  // ring: 4 KiB of ring data holding frames (some wrapped), then head and tail.
  n = 0;
  for (int skip = 0; skip < 3; ++skip) {
    alignas(64) static uint8_t data[4096];
    std::memset(data, 0, sizeof data);
    ipc::RingControl ctl;
    ipc::FrameRing ring(&ctl, data, sizeof data);
    // Advance the ring so later frames wrap around its end.
    for (int k = 0; k < skip * 5; ++k) {
      ipc::PayloadWriter none;
      const auto& e = envs[k % envs.size()].buf;
      if (ipc::write_frame(ring, {e.data(), e.size()}, none, 0, {}) != ipc::Errc::ok) break;
      ipc::Frame f;
      if (ring.peek(&f) == ipc::Errc::ok) ring.release(f);
    }
    for (auto& env : envs) {
      ipc::PayloadWriter none;
      if (ipc::write_frame(ring, {env.buf.data(), env.buf.size()}, none, 0, {}) != ipc::Errc::ok)
        break;
    }
    // Seals in fuzz_ring's input encoding: 2 | kind on each frame's header,
    // 0 on the slot after the last one.
    const uint64_t head = ctl.head.load(), tail = ctl.tail.load();
    for (uint64_t at = tail; at < head;) {
      auto* h = reinterpret_cast<ipc::FrameHeader*>(data + at % sizeof data);
      const bool pad = h->seal == ipc::frame_seal(at, ipc::FrameKind::pad);
      h->seal = 2 | uint32_t(pad);
      at += ipc::align_up(sizeof(ipc::FrameHeader) + h->body_length, ipc::kCacheLine);
    }
    if (head - tail < sizeof data)
      reinterpret_cast<ipc::FrameHeader*>(data + head % sizeof data)->seal = 0;
    std::vector<uint8_t> seed(data, data + sizeof data);
    seed.resize(sizeof data + 16);
    std::memcpy(seed.data() + sizeof data, &head, 8);
    std::memcpy(seed.data() + sizeof data + 8, &tail, 8);
    write_file(out / "ring", n++, seed);
  }
  // convert: FlexBuffers as requests carry them.
  n = 0;
  for (int v = 0; v < 2; ++v) write_file(out / "convert", n++, flex_args(v));
  for (auto scalar : {0, 1}) {
    flexbuffers::Builder b;
    if (scalar)
      b.Double(3.25);
    else
      b.String("just a string");
    b.Finish();
    write_file(out / "convert", n++, b.GetBuffer());
  }
  std::printf("corpus written to %s\n", out.c_str());
  return 0;
}
