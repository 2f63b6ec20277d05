#include "bench/pipe_json_pool.h"

#include <cstdio>
#include <cstdlib>

namespace shmpool::bench {

PipeJsonPool::PipeJsonPool(uint32_t size) {
  for (uint32_t i = 0; i < size; ++i) {
    WorkerOptions o;
    o.transport = Transport::pipe_json;
    auto w = Worker::start(o);
    if (!w.ok()) {
      std::fprintf(stderr, "cannot start worker: %s\n", w.error().to_string().c_str());
      std::exit(1);
    }
    workers_.push_back(std::move(w.value()));
    free_.push_back(workers_.back().get());
  }
}

Expected<Reply> PipeJsonPool::call(std::string_view command, const Args& args,
                                   std::span<const uint8_t> payload) {
  Worker* w;
  {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return !free_.empty(); });
    w = free_.back();
    free_.pop_back();
  }
  auto r = w->call(command, args, payload);
  if (r.ok()) r->own_payload();  // the worker's ring is reused once it is free again
  {
    std::lock_guard lock(mu_);
    free_.push_back(w);
  }
  cv_.notify_one();
  return r;
}

}  // namespace shmpool::bench
