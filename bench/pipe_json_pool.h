// The baseline pool: pipe-JSON workers behind a mutex-and-condvar free list,
// the way the pool shmpool replaces handed out its workers. Any thread may
// call; a caller waits until a worker is free.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string_view>
#include <vector>

#include "shmpool/worker.h"

namespace shmpool::bench {

class PipeJsonPool {
 public:
  // Starts `size` workers; exits the benchmark if one cannot start.
  explicit PipeJsonPool(uint32_t size);
  // The reply owns its payload: the worker's ring is reused once it is free again.
  Expected<Reply> call(std::string_view command, const Args& args = empty_args(),
                       std::span<const uint8_t> payload = {});

 private:
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<Worker*> free_;
  std::mutex mu_;
  std::condition_variable cv_;
};

}  // namespace shmpool::bench
