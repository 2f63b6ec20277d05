// hostile_worker: a test-only stand-in for the Python worker that attacks
// its host through its response ring. The pool starts it as its "python"
// (PoolConfig::python); it takes the worker's command line and reads its
// mode from --handlers. It says hello properly, waits for the first request,
// answers it with the attack, then blocks until it is killed.
//
// Modes: garbage_envelope, wrong_id, payload_out_of_range, truncated_envelope,
// huge_body_length, envelope_outside_body, random_header, head_beyond_ring,
// scribbled_tail, scribbled_slot_state, stream_flood (stream items past the
// caller's window).
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "flatbuffers/flexbuffers.h"
#include "ipc/envelope.h"
#include "ipc/frame_ring.h"
#include "ipc/segment.h"
#include "ipc/sys.h"
#include "ipc/wait.h"

namespace {

using namespace shmpool;

std::string arg_after(int argc, char** argv, const char* flag) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], flag) == 0) return argv[i + 1];
  return {};
}

// A finished Response envelope.
std::vector<uint8_t> response(uint64_t id, bool with_result, schema::PayloadRef* ref = nullptr,
                              bool more = false) {
  flatbuffers::FlatBufferBuilder fbb;
  flatbuffers::Offset<flatbuffers::Vector<uint8_t>> result;
  if (with_result) {
    flexbuffers::Builder flex;
    flex.Map([&] {
      flex.Int("pid", ::getpid());
      flex.String("python", "hostile");
    });
    flex.Finish();
    result = fbb.CreateVector(flex.GetBuffer());
  }
  schema::ResponseBuilder rb(fbb);
  rb.add_id(id);
  rb.add_status(schema::Status::Ok);
  if (!result.IsNull()) rb.add_result(result);
  if (ref) rb.add_payload(ref);
  if (more) rb.add_more(true);
  fbb.Finish(rb.Finish());
  return {fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize()};
}

const ipc::WaitPolicy kBlock{ipc::WaitStrategy::block, 0};

void send(ipc::FrameRing& ring, const std::vector<uint8_t>& env) {
  ipc::write_frame(ring, env, ipc::PayloadWriter{}, ipc::monotonic_ns() + 1'000'000'000, kBlock);
}

// Reserves a frame of `body` bytes, lets `scribble` write over its header and
// body, and publishes it as it is.
template <class Scribble>
void send_raw(ipc::FrameRing& ring, uint32_t body, Scribble&& scribble) {
  ipc::RingControl* ctl = ring.control();
  const uint64_t head = ctl->head.load(std::memory_order_acquire);
  ipc::FrameSpace space;
  if (ring.reserve(body, ipc::monotonic_ns() + 1'000'000'000, kBlock, &space) != ipc::Errc::ok)
    return;
  // (A few small frames at the start of the ring: never rewound, so the
  // frame starts at `head`.)
  auto* header = reinterpret_cast<ipc::FrameHeader*>(space.body - sizeof(ipc::FrameHeader));
  ipc::FrameKind kind = ipc::FrameKind::data;
  header->body_length = body;
  header->envelope_offset = 0;
  header->envelope_length = body;
  scribble(header, space.body, &kind);
  std::atomic_ref<uint32_t>(header->seal)
      .store(ipc::frame_seal(head, kind), std::memory_order_release);
  ctl->head.store(head + ipc::align_up(sizeof(ipc::FrameHeader) + body, ipc::kCacheLine),
                  std::memory_order_release);
  ctl->data.ring();
}

}  // namespace

int main(int argc, char** argv) {
  const std::string pool = arg_after(argc, argv, "--pool");
  const std::string mode = arg_after(argc, argv, "--handlers");
  const int slot = std::atoi(arg_after(argc, argv, "--slot").c_str());
  std::unique_ptr<ipc::Segment> seg;
  if (ipc::Segment::attach(pool, &seg) != ipc::Errc::ok) {
    std::fprintf(stderr, "hostile_worker: cannot attach %s\n", pool.c_str());
    return 3;
  }
  ipc::FrameRing requests = seg->request_ring(uint32_t(slot));
  ipc::FrameRing responses = seg->response_ring(uint32_t(slot));
  send(responses, response(0, true));  // a proper hello: the pool takes us for a worker

  ipc::Frame frame;
  while (requests.peek(&frame) != ipc::Errc::ok) {
    requests.wait_readable(ipc::monotonic_ns() + 3'600'000'000'000, kBlock, [] { return false; });
  }
  ipc::RequestView req;
  const uint64_t id = ipc::read_request(frame, &req) == ipc::Errc::ok ? req.request->id() : 1;
  requests.release(frame);

  std::mt19937_64 rng(uint64_t(::getpid()));
  auto random_bytes = [&](uint8_t* p, size_t n) {
    for (size_t i = 0; i < n; ++i) p[i] = uint8_t(rng());
  };
  if (mode == "garbage_envelope") {
    std::vector<uint8_t> junk(96);
    random_bytes(junk.data(), junk.size());
    send(responses, junk);
  } else if (mode == "wrong_id") {
    send(responses, response(id + 1000, true));
  } else if (mode == "payload_out_of_range") {
    schema::PayloadRef ref(uint64_t(1) << 40, uint64_t(1) << 20);
    send(responses, response(id, true, &ref));
  } else if (mode == "truncated_envelope") {
    std::vector<uint8_t> env = response(id, true);
    send_raw(responses, uint32_t(env.size()), [&](ipc::FrameHeader* h, uint8_t* body, auto*) {
      std::memcpy(body, env.data(), env.size());
      h->envelope_length = uint32_t(env.size() / 2);
    });
  } else if (mode == "huge_body_length") {
    send_raw(responses, 64,
             [](ipc::FrameHeader* h, uint8_t*, auto*) { h->body_length = 0xfffffff0u; });
  } else if (mode == "envelope_outside_body") {
    send_raw(responses, 64, [](ipc::FrameHeader* h, uint8_t*, auto*) {
      h->envelope_offset = 60;
      h->envelope_length = 1u << 30;
    });
  } else if (mode == "random_header") {
    send_raw(responses, 64, [&](ipc::FrameHeader* h, uint8_t* body, auto*) {
      random_bytes(reinterpret_cast<uint8_t*>(h), sizeof *h);  // the seal is set after
      random_bytes(body, 64);
    });
  } else if (mode == "pad_beyond_ring") {
    // A padding frame that would skip past the end of the ring.
    send_raw(responses, 64, [](ipc::FrameHeader* h, uint8_t*, ipc::FrameKind* kind) {
      *kind = ipc::FrameKind::pad;
      h->body_length = 0x7ffffff0u;
    });
  } else if (mode == "scribbled_slot_state") {
    // Not a state any shmpool process writes; then a proper reply.
    seg->slot(uint32_t(slot)).state.store(0xdead0000000000ffull, std::memory_order_release);
    send(responses, response(id, true));
  } else if (mode == "scribbled_tail") {
    ipc::RingControl* ctl = responses.control();
    ctl->tail.store(ctl->tail.load() + 13, std::memory_order_release);
    send(responses, response(id, true));
  } else if (mode == "stream_flood") {
    // Items for as long as the ring takes them, whatever the window says.
    for (int k = 0; k < 1000; ++k) send(responses, response(id, true, nullptr, true));
  } else {
    std::fprintf(stderr, "hostile_worker: unknown mode %s\n", mode.c_str());
    return 2;
  }
  for (;;) ::pause();  // until the host kills us
}
