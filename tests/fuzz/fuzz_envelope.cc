// libFuzzer target: both sides' envelope readers on hostile frames. The input
// is a frame body: the worker's read_request and the host's read_response
// (each verifying, or finding the envelope in its memo of the last verified
// one) must reject anything malformed and bound every payload inside the frame.
#include <cstdint>
#include <cstring>
#include <vector>

#include "ipc/envelope.h"

using namespace shmpool::ipc;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 8) return 0;
  // First 8 bytes: where the envelope sits in the body (as a frame header says).
  uint32_t env_off = 0, env_len = 0;
  std::memcpy(&env_off, data, 4);
  std::memcpy(&env_len, data + 4, 4);
  std::vector<uint8_t> body(data + 8, data + size);  // exact size: ASan sees overreads
  Frame frame;
  frame.body = body.data();
  frame.body_length = uint32_t(body.size());
  frame.envelope_offset = env_off % (frame.body_length + 1);
  frame.envelope_length = env_len % (frame.body_length - frame.envelope_offset + 1);
  frame.end = 0;

  // Memos across inputs, as a reader keeps them across frames: an input must
  // not pass for a verified envelope it does not repeat. Each input is read
  // with and without one, and both readings must agree.
  static EnvelopeMemo request_memo, reply_memo;
  RequestView rv, rv2;
  const Errc plain_request = read_request(frame, &rv2);
  if (read_request(frame, &rv, &request_memo) != plain_request) __builtin_trap();
  if (plain_request == Errc::ok) {
    const auto* r = rv.request;
    volatile uint64_t sink = r->id();
    if (r->command()) sink = sink + r->command()->size();
    if (r->session_id()) sink = sink + r->session_id()->size();
    if (r->args()) sink = sink + r->args_flexbuffer_root().ToString().size();
    if (r->body()) sink = sink + r->body()->size();
    if (!rv.payload.empty() && (rv.payload.data() < body.data() ||
                                rv.payload.data() + rv.payload.size() > body.data() + body.size()))
      __builtin_trap();
  }
  std::vector<uint8_t> copy, copy2;
  ResponseView view, view2;
  const Errc plain = read_response(frame, &copy2, &view2);
  if (read_response(frame, &copy, &view, &reply_memo) != plain) __builtin_trap();
  if (plain == Errc::ok) {
    const auto* r = view.response;
    volatile uint64_t sink = r->id();
    if (r->result()) sink = sink + r->result_flexbuffer_root().ToString().size();
    if (r->error() && r->error()->context()) sink = sink + r->error()->context()->size();
    if (!view.payload.empty() &&
        (view.payload.data() < body.data() ||
         view.payload.data() + view.payload.size() > body.data() + body.size()))
      __builtin_trap();
  }
  return 0;
}
