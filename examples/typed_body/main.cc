// A command with its own FlatBuffers schema (image.fbs): the host sends an
// ImageHeader as the request's typed body and the pixels as a payload in the
// arena; the handler answers with an ImageStats body, which the host
// verifies and reads in place. Run: typed_body <handlers.py> <generated dir>
#include <unistd.h>

#include <cmath>
#include <cstdio>

#include "image_generated.h"
#include "shmpool/pool.h"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s HANDLERS.py GENERATED_PYTHON_DIR\n", argv[0]);
    return 2;
  }
  shmpool::PoolConfig config;
  config.name = "example-typed-" + std::to_string(::getpid());
  config.size = 1;
  config.handler_modules = {argv[1]};
  config.env["PYTHONPATH"] = argv[2];  // where flatc put the Python classes of image.fbs
  auto pool = shmpool::Pool::start(config);
  if (!pool.ok()) {
    std::fprintf(stderr, "%s\n", pool.error().to_string().c_str());
    return 1;
  }
  constexpr uint32_t width = 640, height = 480;
  auto pixels = (*pool)->alloc_payload(width * height);
  if (!pixels.ok()) {
    std::fprintf(stderr, "%s\n", pixels.error().to_string().c_str());
    return 1;
  }
  for (uint32_t y = 0; y < height; ++y)
    for (uint32_t x = 0; x < width; ++x) pixels->begin()[y * width + x] = uint8_t((x + y) % 200);

  flatbuffers::FlatBufferBuilder fbb;
  fbb.Finish(example::CreateImageHeaderDirect(fbb, width, height, "gradient"));
  shmpool::ExecOptions options;
  options.body = {fbb.GetBufferPointer(), fbb.GetSize()};
  options.payload = pixels->data();
  auto reply = (*pool)->execute_anonymous("image_stats", shmpool::empty_args(), options);
  if (!reply.ok()) {
    std::fprintf(stderr, "%s\n", reply.error().to_string().c_str());
    return 1;
  }
  // The body came from another process: verify it, then read it in place.
  flatbuffers::Verifier verifier(reply->body().data(), reply->body().size());
  if (!verifier.VerifyBuffer<example::ImageStats>(nullptr)) {
    std::fprintf(stderr, "reply body failed verification\n");
    return 1;
  }
  const auto* stats = flatbuffers::GetRoot<example::ImageStats>(reply->body().data());
  double sum = 0;
  for (uint8_t p : pixels->data()) sum += p;
  const double mean = sum / double(width * height);
  std::printf("%s: %llu pixels, mean %.3f (expected %.3f), min %u, max %u\n",
              stats->label()->c_str(), (unsigned long long)stats->pixels(), stats->mean(), mean,
              unsigned(stats->min()), unsigned(stats->max()));
  return stats->pixels() == width * height && std::fabs(stats->mean() - mean) < 1e-9 &&
                 stats->min() == 0 && stats->max() == 199
             ? 0
             : 1;
}
