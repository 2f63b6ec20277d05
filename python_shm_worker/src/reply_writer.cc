#include "reply_writer.h"

#include <vector>

namespace shmpool::pyworker {

ipc::Errc ReplyWriter::send_ok(uint64_t id, std::span<const uint8_t> payload,
                               const schema::ArenaRef* arena_ref, std::span<const uint8_t> body,
                               bool more) {
  const std::span<const uint8_t> result(flex_.data(), flex_.size());
  const bool plain =
      payload.empty() && !arena_ref && body.empty() && id != 0 && !result.empty() && !more;
  if (plain && !last_ok_.empty() && last_ok_.hole(1).size == result.size()) {
    // The envelope FlatBuffers would build is the last one with another id
    // and other result bytes of the same length: rewrite those.
    last_ok_.patch(0, id);
    last_ok_.patch(1, result);
    return write(payload, last_ok_.bytes());
  }
  flatbuffers::Offset<flatbuffers::Vector<uint8_t>> result_vec, body_vec;
  if (!result.empty()) result_vec = fbb_.CreateVector(result.data(), result.size());
  if (!body.empty()) {
    // A nested FlatBuffer may hold 8-byte scalars: align its start.
    fbb_.ForceVectorAlignment(body.size(), 1, 8);
    body_vec = fbb_.CreateVector(body.data(), body.size());
  }
  schema::ResponseBuilder rb(fbb_);
  rb.add_id(id);
  rb.add_status(schema::Status::Ok);
  if (!result_vec.IsNull()) rb.add_result(result_vec);
  if (!body_vec.IsNull()) rb.add_body(body_vec);
  schema::PayloadRef ref = ipc::payload_ref_for(payload.size());
  if (!payload.empty()) rb.add_payload(&ref);
  if (arena_ref) rb.add_arena_payload(arena_ref);
  if (more) rb.add_more(true);
  fbb_.Finish(rb.Finish());
  if (plain) {
    last_ok_.remember({fbb_.GetBufferPointer(), fbb_.GetSize()}, ipc::kResponseFields,
                      {schema::Response::VT_ID, schema::Response::VT_RESULT});
  } else {
    last_ok_.forget();
  }
  return write(payload);
}

void ReplyWriter::send_error(uint64_t id, const std::string& category, const std::string& type,
                             const std::string& message,
                             std::initializer_list<std::pair<std::string, std::string>> context) {
  fbb_.Clear();
  std::vector<flatbuffers::Offset<schema::KeyValue>> kvs;
  for (auto& [k, v] : context) {
    if (!v.empty()) kvs.push_back(schema::CreateKeyValueDirect(fbb_, k.c_str(), v.c_str()));
  }
  auto err = schema::CreateErrorDirect(fbb_, category.c_str(), type.c_str(), message.c_str(),
                                       kvs.empty() ? nullptr : &kvs);
  schema::ResponseBuilder rb(fbb_);
  rb.add_id(id);
  rb.add_status(schema::Status::Error);
  rb.add_error(err);
  fbb_.Finish(rb.Finish());
  write({});
}

ipc::Errc ReplyWriter::write(std::span<const uint8_t> payload, std::span<const uint8_t> env) {
  ipc::PayloadWriter pw;
  pw.size = payload.size();
  pw.copy_from = payload.data();
  if (env.empty()) env = {fbb_.GetBufferPointer(), fbb_.GetSize()};
  // Stats only; this worker is the only writer: a plain store, not a locked RMW.
  calls_->store(calls_->load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  constexpr int64_t kAlreadyPassed = 1;  // CLOCK_MONOTONIC 1 ns: do not wait
  ipc::Errc e = ipc::write_frame(responses_, env, pw, kAlreadyPassed, policy_);
  if (e == ipc::Errc::ring_full) {
    pybind11::gil_scoped_release nogil;
    e = ipc::write_frame(responses_, env, pw, 0, policy_);
  }
  if (notify_ && e == ipc::Errc::ok) notify_->ring();
  return e;
}

}  // namespace shmpool::pyworker
