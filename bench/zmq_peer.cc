#include "bench/zmq_peer.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "bench/python_process.h"
#include "shmpool/schema/envelope_generated.h"

namespace shmpool::bench {

zmq::context_t& zmq_context() {
  static zmq::context_t ctx;
  return ctx;
}

void encode_request(flatbuffers::FlatBufferBuilder& fbb, uint64_t id, std::string_view command,
                    const Args& args) {
  fbb.Clear();
  auto cmd = fbb.CreateString(command.data(), command.size());
  auto a = args.empty() ? 0 : fbb.CreateVector(args.data(), args.size());
  schema::RequestBuilder rb(fbb);
  rb.add_id(id);
  rb.add_command(cmd);
  if (!a.IsNull()) rb.add_args(a);
  fbb.Finish(rb.Finish());
}

Expected<Reply> decode_reply(const zmq::message_t& envelope, std::span<const uint8_t> payload) {
  Reply::Parts parts;
  parts.storage.assign(envelope.data<uint8_t>(), envelope.data<uint8_t>() + envelope.size());
  parts.storage.push_back(0);  // a NUL after the end, as the shm host keeps
  flatbuffers::Verifier verifier(parts.storage.data(), envelope.size());
  if (!verifier.VerifyBuffer<schema::Response>(nullptr)) {
    return make_error(Category::protocol_error, "invalid_response",
                      "reply envelope failed verification");
  }
  const auto* r = flatbuffers::GetRoot<schema::Response>(parts.storage.data());
  if (r->status() != schema::Status::Ok) {
    return make_error(Category::handler_error,
                      r->error() && r->error()->type() ? r->error()->type()->str() : "",
                      r->error() && r->error()->message() ? r->error()->message()->str() : "");
  }
  parts.id = r->id();
  if (r->result()) parts.result = {r->result()->data(), r->result()->size()};
  parts.payload = payload;
  return Reply(std::move(parts));
}

ZmqCaller::ZmqCaller(const std::string& endpoint)
    : endpoint_(endpoint), sock_(zmq_context(), zmq::socket_type::req) {
  sock_.set(zmq::sockopt::linger, 0);
  sock_.set(zmq::sockopt::rcvtimeo, 30'000);  // the first reply waits for the bind
  sock_.connect(endpoint);
}

Expected<Reply> ZmqCaller::call(std::string_view command, const Args& args,
                                std::span<const uint8_t> payload) {
  encode_request(fbb_, ++next_id_, command, args);
  zmq::message_t env(fbb_.GetBufferPointer(), fbb_.GetSize());
  if (payload.empty()) {
    sock_.send(env, zmq::send_flags::none);
  } else {
    sock_.send(env, zmq::send_flags::sndmore);
    // Zero-copy: the span outlives the call, and REQ/REP is lockstep.
    zmq::message_t part(const_cast<uint8_t*>(payload.data()), payload.size(), nullptr, nullptr);
    sock_.send(part, zmq::send_flags::none);
  }
  zmq::message_t renv;
  if (!sock_.recv(renv)) {
    return make_error(Category::timeout_error, "operation_timeout",
                      "no reply from the ZeroMQ peer");
  }
  last_payload_.rebuild(0);
  if (renv.more() && !sock_.recv(last_payload_)) {
    return make_error(Category::protocol_error, "truncated", "no payload part");
  }
  return decode_reply(renv, {last_payload_.data<uint8_t>(), last_payload_.size()});
}

ZmqWorkerProcess::ZmqWorkerProcess(int index) {
  endpoint_ = "ipc:///tmp/shmpool-bench-" + std::to_string(::getpid()) + "-" +
              std::to_string(index) + ".sock";
  pid_ = spawn_python({"-m", "python_shm_worker", "--transport", "zmq-ipc", "--endpoint", endpoint_,
                       "--handlers", SHMPOOL_BENCH_DIR "/real_handlers.py"});
  ZmqCaller probe(endpoint_);
  auto hello = probe.call("ping", empty_args(), {});
  if (!hello.ok()) {
    std::fprintf(stderr, "ZeroMQ peer: %s\n", hello.error().to_string().c_str());
    std::exit(1);
  }
}

ZmqWorkerProcess::~ZmqWorkerProcess() {
  (void)ZmqCaller(endpoint_).call("__shutdown__", empty_args(), {});
  reap(pid_);
  ::unlink(endpoint_.c_str() + 6);  // "ipc://" prefix
}

}  // namespace shmpool::bench
