#include "bench/zmq_pipeline.h"

#include "bench/calls.h"
#include "bench/zmq_peer.h"

namespace shmpool::bench {
namespace {

constexpr int kSlotBits = 16;  // a request's id: (sequence << kSlotBits) | slot

Error bad(const char* what) { return make_error(Category::protocol_error, "bad_reply", what); }

}  // namespace

ZmqPipeline::ZmqPipeline(const std::vector<std::string>& endpoints, uint32_t slots)
    : sock_(zmq_context(), zmq::socket_type::dealer), in_flight_(slots, 0) {
  sock_.set(zmq::sockopt::linger, 0);
  sock_.set(zmq::sockopt::rcvtimeo, 30'000);
  for (const auto& e : endpoints) sock_.connect(e);
}

Status ZmqPipeline::start(uint32_t slot) {
  const uint64_t id = (++seq_ << kSlotBits) | slot;
  encode_request(fbb_, id, "ping", empty_args());
  // A DEALER speaks to REP with an empty delimiter before the message.
  if (!sock_.send(zmq::message_t(), zmq::send_flags::sndmore) ||
      !sock_.send(zmq::message_t(fbb_.GetBufferPointer(), fbb_.GetSize()), zmq::send_flags::none))
    return make_error(Category::worker_error, "send_failed", "the DEALER would block");
  in_flight_.at(slot) = id;
  return {};
}

Expected<uint32_t> ZmqPipeline::finish_one() {
  zmq::message_t delimiter, envelope;
  if (!sock_.recv(delimiter) || !delimiter.more() || !sock_.recv(envelope))
    return make_error(Category::timeout_error, "operation_timeout",
                      "no reply from the ZeroMQ peer");
  if (envelope.more()) return bad("a ping's reply with a payload");
  auto reply = decode_reply(envelope, {});
  if (!reply.ok()) return reply.error();
  if (const char* wrong = pong(*reply)) return bad(wrong);
  const uint64_t id = reply->id();
  const uint32_t slot = uint32_t(id & ((1u << kSlotBits) - 1));
  if (slot >= in_flight_.size() || in_flight_[slot] != id)
    return bad("a reply to no call in flight");
  in_flight_[slot] = 0;
  return slot;
}

}  // namespace shmpool::bench
