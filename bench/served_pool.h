// A pool served by another process (`shmpool serve`) and called through a
// Client: the cross-process path. Started on construction (the benchmark
// exits if it cannot start or attach), stopped by SIGTERM on destruction.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>

#include "shmpool/client.h"

namespace shmpool::bench {

struct ServedPool {
  explicit ServedPool(uint32_t size);
  ~ServedPool();
  ServedPool(const ServedPool&) = delete;
  ServedPool& operator=(const ServedPool&) = delete;

  pid_t pid = -1;
  std::unique_ptr<Client> client;
};

}  // namespace shmpool::bench
