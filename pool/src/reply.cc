#include "shmpool/reply.h"

#include "pool/src/reply_storage.h"

namespace shmpool {

namespace detail {
namespace {
// Envelope buffers of the Replies that died on this thread, for the next
// replies to copy their envelopes into: a small call then allocates nothing.
constexpr std::size_t kSpareBuffers = 4, kSpareBytes = 4096;
// Trivially destructible, so readable while the thread's other
// thread_locals are destroyed: 2 once the spares are gone.
thread_local int t_spares_state = 0;
struct Spares {
  std::vector<std::vector<uint8_t>> buffers;
  Spares() { t_spares_state = 1; }
  ~Spares() { t_spares_state = 2; }
};
Spares* spares() {
  if (t_spares_state == 2) return nullptr;
  thread_local Spares s;
  return &s;
}
}  // namespace

std::vector<uint8_t> take_envelope_buffer() {
  Spares* sp = spares();
  if (!sp || sp->buffers.empty()) return {};
  std::vector<uint8_t> v = std::move(sp->buffers.back());
  sp->buffers.pop_back();
  return v;
}
}  // namespace detail

Reply::~Reply() {
  if (storage_.capacity() == 0 || storage_.capacity() > detail::kSpareBytes) return;
  detail::Spares* sp = detail::spares();
  if (!sp || sp->buffers.size() >= detail::kSpareBuffers) return;
  storage_.clear();
  sp->buffers.push_back(std::move(storage_));
}

Reply::Reply(Parts p)
    : id_(p.id),
      storage_(std::move(p.storage)),
      result_(p.result),
      body_(p.body),
      payload_(p.payload),
      owned_payload_(std::move(p.owned_payload)),
      block_(std::move(p.block)) {
  if (!owned_payload_.empty()) payload_ = owned_payload_;
}

flexbuffers::Reference Reply::value() const {
  if (result_.empty()) return flexbuffers::Reference();  // Null
  return flexbuffers::GetRoot(result_.data(), result_.size());
}

void Reply::own_payload() {
  if (!payload_.empty() && owned_payload_.empty() && !block_) {
    owned_payload_.assign(payload_.begin(), payload_.end());
    payload_ = owned_payload_;
  }
}

}  // namespace shmpool
