// Starts a pool from an installed shmpool and calls the built-in ping.
#include <unistd.h>

#include <cstdio>
#include <string>

#include "shmpool/pool.h"

int main() {
  shmpool::PoolConfig config;
  config.name = "outside-" + std::to_string(::getpid());
  config.size = 1;
  auto pool = shmpool::Pool::start(config);
  if (!pool.ok()) {
    std::printf("start failed: %s\n", pool.error().to_string().c_str());
    return 1;
  }
  auto reply = (*pool)->execute_in_session("outside", "ping");
  if (!reply.ok()) {
    std::printf("call failed: %s\n", reply.error().to_string().c_str());
    return 1;
  }
  std::printf("reply %s from the installed package at %s\n", reply->json().c_str(),
              config.python_path.c_str());
  return reply->value().AsMap()["pong"].AsBool() ? 0 : 1;
}
