#include "pool/src/pipe_channel.h"

#include <poll.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "ipc/sys.h"
#include "pool/src/base64.h"

namespace shmpool::detail {

using nlohmann::json;

void json_to_flex(flexbuffers::Builder& b, const json& j);
json flex_to_json(const flexbuffers::Reference& r, int depth);

namespace {
Error gone() {
  return make_error(Category::worker_error, std::string(kWorkerGone), "worker closed its pipe");
}
Error timed_out() {
  return make_error(Category::timeout_error, std::string(kOperationTimeout),
                    "no reply before the operation timeout");
}
}  // namespace

Expected<Reply> PipeChannel::call(const CallSpec& spec) {
  json req = {{"id", spec.id}, {"command", std::string(spec.command)}};
  if (!spec.session_id.empty()) req["session_id"] = std::string(spec.session_id);
  req["args"] = spec.args.empty()
                    ? json::object()
                    : flex_to_json(flexbuffers::GetRoot(spec.args.data(), spec.args.size()), 0);
  if (!spec.payload.empty()) req["payload"] = base64_encode(spec.payload);
  buf_.assign(4, '\0');
  buf_ += req.dump();
  uint32_t n = uint32_t(buf_.size() - 4);
  buf_[0] = char(n >> 24);
  buf_[1] = char(n >> 16);
  buf_[2] = char(n >> 8);
  buf_[3] = char(n);
  size_t off = 0;
  while (off < buf_.size()) {
    pollfd p{out_, POLLOUT, 0};
    int64_t left_ms = (spec.deadline_ns - ipc::monotonic_ns()) / 1'000'000;
    if (left_ms <= 0) return timed_out();
    int r =
        ipc::retry_eintr([&] { return ::poll(&p, 1, int(std::min<int64_t>(left_ms, INT32_MAX))); });
    if (r == 0) return timed_out();
    ssize_t w =
        ipc::retry_eintr([&] { return ::write(out_, buf_.data() + off, buf_.size() - off); });
    if (w < 0) return gone();
    off += size_t(w);
  }
  return read_reply(spec.id, spec.deadline_ns);
}

Status PipeChannel::read_exact(uint8_t* dst, size_t n, int64_t deadline_ns) {
  while (n > 0) {
    pollfd p{in_, POLLIN, 0};
    int64_t left_ms = (deadline_ns - ipc::monotonic_ns() + 999'999) / 1'000'000;
    if (left_ms <= 0) return timed_out();
    int r =
        ipc::retry_eintr([&] { return ::poll(&p, 1, int(std::min<int64_t>(left_ms, INT32_MAX))); });
    if (r == 0) return timed_out();
    ssize_t got = ipc::retry_eintr([&] { return ::read(in_, dst, n); });
    if (got <= 0) return gone();
    dst += got;
    n -= size_t(got);
  }
  return {};
}

Expected<Reply> PipeChannel::read_reply(uint64_t id, int64_t deadline_ns) {
  uint8_t hdr[4];
  if (Status s = read_exact(hdr, 4, deadline_ns); !s) return s.error();
  uint32_t n = uint32_t(hdr[0]) << 24 | uint32_t(hdr[1]) << 16 | uint32_t(hdr[2]) << 8 | hdr[3];
  if (n > (1u << 30)) {
    return make_error(Category::protocol_error, "corrupt_frame", "reply length out of range");
  }
  buf_.resize(n);
  if (Status s = read_exact(reinterpret_cast<uint8_t*>(buf_.data()), n, deadline_ns); !s) {
    return s.error();
  }
  json j = json::parse(buf_, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return make_error(Category::protocol_error, "invalid_response", "reply is not a JSON object");
  }
  if (j.value("id", uint64_t(0)) != id) {
    return make_error(Category::protocol_error, "unexpected_response",
                      "reply does not match the request");
  }
  if (j.value("status", std::string()) != "ok") {
    // Reuse the shm decoding of the error by building the same FlatBuffer.
    const json& e = j.contains("error") ? j["error"] : json::object();
    flatbuffers::FlatBufferBuilder fbb;
    std::vector<flatbuffers::Offset<schema::KeyValue>> kvs;
    if (e.contains("context") && e["context"].is_object()) {
      for (auto& [k, v] : e["context"].items()) {
        kvs.push_back(schema::CreateKeyValueDirect(
            fbb, k.c_str(), v.is_string() ? v.get<std::string>().c_str() : v.dump().c_str()));
      }
    }
    auto str = [&](const char* k) {
      return e.contains(k) && e[k].is_string() ? e[k].get<std::string>() : std::string();
    };
    fbb.Finish(schema::CreateErrorDirect(fbb, str("category").c_str(), str("type").c_str(),
                                         str("message").c_str(), &kvs));
    return error_from_envelope(flatbuffers::GetRoot<schema::Error>(fbb.GetBufferPointer()));
  }
  Reply::Parts parts;
  parts.id = id;
  flexbuffers::Builder b;
  json_to_flex(b, j.contains("result") ? j["result"] : json());
  b.Finish();
  parts.storage = b.GetBuffer();
  parts.result = parts.storage;
  if (j.contains("payload") && j["payload"].is_string()) {
    parts.owned_payload = base64_decode(j["payload"].get_ref<const std::string&>());
  }
  return Reply(std::move(parts));
}

}  // namespace shmpool::detail
