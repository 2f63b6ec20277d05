#include "bench/zmq_peer.h"

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "shmpool/schema/envelope_generated.h"

namespace shmpool::bench {
namespace {

zmq::context_t& zmq_context() {
  static zmq::context_t ctx;
  return ctx;
}

}  // namespace

ZmqCaller::ZmqCaller(const std::string& endpoint)
    : endpoint_(endpoint), sock_(zmq_context(), zmq::socket_type::req) {
  sock_.set(zmq::sockopt::linger, 0);
  sock_.set(zmq::sockopt::rcvtimeo, 30'000);  // the first reply waits for the bind
  sock_.connect(endpoint);
}

Expected<Reply> ZmqCaller::call(std::string_view command, const Args& args,
                                std::span<const uint8_t> payload) {
  fbb_.Clear();
  auto cmd = fbb_.CreateString(command.data(), command.size());
  auto a = args.empty() ? 0 : fbb_.CreateVector(args.data(), args.size());
  schema::RequestBuilder rb(fbb_);
  rb.add_id(++next_id_);
  rb.add_command(cmd);
  if (!a.IsNull()) rb.add_args(a);
  fbb_.Finish(rb.Finish());
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
  Reply::Parts parts;
  parts.storage.assign(renv.data<uint8_t>(), renv.data<uint8_t>() + renv.size());
  parts.storage.push_back(0);  // a NUL after the end, as the shm host keeps
  flatbuffers::Verifier verifier(parts.storage.data(), renv.size());
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
  parts.payload = {last_payload_.data<uint8_t>(), last_payload_.size()};
  return Reply(std::move(parts));
}

ZmqWorkerProcess::ZmqWorkerProcess(int index) {
  endpoint_ = "ipc:///tmp/shmpool-bench-" + std::to_string(::getpid()) + "-" +
              std::to_string(index) + ".sock";
  std::vector<std::string> args = {SHMPOOL_PYTHON,
                                   "-m",
                                   "python_shm_worker",
                                   "--transport",
                                   "zmq-ipc",
                                   "--endpoint",
                                   endpoint_,
                                   "--handlers",
                                   SHMPOOL_BENCH_DIR "/real_handlers.py",
                                   "--owner-pid",
                                   std::to_string(::getpid())};  // it exits with us, however we end
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e)
    if (std::strncmp(*e, "PYTHONPATH=", 11) != 0) env_strings.emplace_back(*e);
  env_strings.push_back(std::string("PYTHONPATH=") + SHMPOOL_PYTHON_DIR);
  env_strings.push_back("PYTHONSAFEPATH=1");  // not a source checkout in the working directory
  std::vector<char*> envp;
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  if (posix_spawn(&pid_, argv[0], nullptr, nullptr, argv.data(), envp.data()) != 0) {
    std::fprintf(stderr, "cannot start the ZeroMQ peer\n");
    std::exit(1);
  }
  ZmqCaller probe(endpoint_);
  auto hello = probe.call("ping", empty_args(), {});
  if (!hello.ok()) {
    std::fprintf(stderr, "ZeroMQ peer: %s\n", hello.error().to_string().c_str());
    std::exit(1);
  }
}

ZmqWorkerProcess::~ZmqWorkerProcess() {
  (void)ZmqCaller(endpoint_).call("__shutdown__", empty_args(), {});
  int status = 0;
  waitpid(pid_, &status, 0);
  ::unlink(endpoint_.c_str() + 6);  // "ipc://" prefix
}

}  // namespace shmpool::bench
