// A user's program: starts a pool and calls the built-in ping, echoes a
// payload in place, and (given a handler module, argv[1]) calls its "where"
// command, which reports where the workers imported python_shm_worker from.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <string>

#include "shmpool/pool.h"

int main(int argc, char** argv) {
  shmpool::PoolConfig config;
  config.name = "outside-" + std::to_string(::getpid());
  config.size = 1;
  if (argc > 1) config.handler_modules = {argv[1]};
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
  std::printf("ping: %s (python_path \"%s\")\n", reply->json().c_str(), config.python_path.c_str());
  if (argc > 1) {
    auto where = (*pool)->execute_anonymous("where");
    if (!where.ok()) {
      std::printf("where failed: %s\n", where.error().to_string().c_str());
      return 1;
    }
    std::printf("where: %s\n", where->json().c_str());
  }
  // A payload written in place in the arena, echoed back in place.
  auto buf = (*pool)->alloc_payload(1 << 20);
  if (!buf.ok()) {
    std::printf("alloc failed: %s\n", buf.error().to_string().c_str());
    return 1;
  }
  for (std::size_t i = 0; i < buf->size(); ++i) buf->begin()[i] = uint8_t(i * 7);
  shmpool::ExecOptions o;
  o.payload = buf->data();
  auto echo = (*pool)->execute_anonymous("echo", shmpool::empty_args(), o);
  if (!echo.ok() || echo->payload().size() != buf->size() ||
      !std::equal(buf->begin(), buf->end(), echo->payload().begin())) {
    std::printf("echo failed\n");
    return 1;
  }
  std::printf("%zu bytes echoed in place\n", echo->payload().size());
  return reply->value().AsMap()["pong"].AsBool() ? 0 : 1;
}
