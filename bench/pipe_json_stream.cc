#include "bench/pipe_json_stream.h"

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "bench/python_process.h"

namespace shmpool::bench {
namespace {

constexpr int kTimeoutMs = 30'000;  // as the ZeroMQ peer's receive timeout
constexpr size_t kReadBlock = 1 << 20;

Error gone(const char* what) { return make_error(Category::worker_error, "worker_gone", what); }

}  // namespace

PipeJsonStream::PipeJsonStream() {
  int in[2], out[2];  // the peer's stdin and stdout
  if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0) {
    std::fprintf(stderr, "pipe-JSON stream peer: no pipes\n");
    std::exit(1);
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in[0], 0);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  pid_ = spawn_python({SHMPOOL_BENCH_DIR "/pipe_json_stream.py"}, &fa);
  posix_spawn_file_actions_destroy(&fa);
  ::close(in[0]);
  ::close(out[1]);
  to_ = in[1];
  from_ = out[0];
  buf_.resize(kReadBlock);
  auto hello = next();  // id 0: requests count from 1
  if (!hello.ok() || *hello == nullptr) {
    std::fprintf(stderr, "pipe-JSON stream peer: %s\n",
                 hello.ok() ? "no hello" : hello.error().to_string().c_str());
    std::exit(1);
  }
}

PipeJsonStream::~PipeJsonStream() {
  ::close(to_);  // EOF: the peer exits
  reap(pid_);
  ::close(from_);
}

Status PipeJsonStream::request(std::string_view command, const nlohmann::json& args) {
  const std::string body =
      nlohmann::json{{"id", ++id_}, {"command", command}, {"args", args}}.dump();
  const uint32_t n = uint32_t(body.size());
  const std::string frame = std::string{char(n >> 24), char(n >> 16), char(n >> 8), char(n)} + body;
  for (size_t off = 0; off < frame.size();) {
    const ssize_t w = ::write(to_, frame.data() + off, frame.size() - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return gone("the stream peer closed its stdin");
    off += size_t(w);
  }
  return {};
}

Status PipeJsonStream::fill(size_t n) {
  if (pos_ + n > buf_.size()) {  // the unread bytes to the front; grow only for a larger frame
    std::memmove(buf_.data(), buf_.data() + pos_, end_ - pos_);
    end_ -= pos_;
    pos_ = 0;
    if (n > buf_.size()) buf_.resize(std::max(n, 2 * buf_.size()));
  }
  while (end_ - pos_ < n) {
    pollfd p{from_, POLLIN, 0};
    const int r = ::poll(&p, 1, kTimeoutMs);
    if (r < 0 && errno == EINTR) continue;
    if (r == 0)
      return make_error(Category::timeout_error, "operation_timeout", "the stream peer is silent");
    const ssize_t got = ::read(from_, buf_.data() + end_, buf_.size() - end_);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return gone("the stream peer closed its stdout");
    end_ += size_t(got);
  }
  return {};
}

Expected<const nlohmann::json*> PipeJsonStream::next() {
  if (Status s = fill(4); !s.ok()) return s.error();
  const auto* h = reinterpret_cast<const uint8_t*>(buf_.data() + pos_);
  const size_t n = size_t(h[0]) << 24 | size_t(h[1]) << 16 | size_t(h[2]) << 8 | h[3];
  if (Status s = fill(4 + n); !s.ok()) return s.error();
  const char* body = buf_.data() + pos_ + 4;
  frame_ = nlohmann::json::parse(body, body + n, nullptr, false);
  pos_ += 4 + n;
  if (!frame_.is_object() || frame_.value("id", uint64_t(0)) != id_)
    return make_error(Category::protocol_error, "unexpected_response",
                      "a frame that is not of this stream");
  if (frame_.value("status", "") != "ok") {
    const nlohmann::json e = frame_.value("error", nlohmann::json::object());
    return make_error(Category::handler_error, e.value("type", ""), e.value("message", ""));
  }
  if (frame_.value("end", false)) return nullptr;
  return &frame_;
}

PipeJsonStream& pipe_json_stream() {
  static PipeJsonStream peer;
  return peer;
}

}  // namespace shmpool::bench
