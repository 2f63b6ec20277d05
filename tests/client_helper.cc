// client_helper: a separate process calling a pool through shmpool::Client.
//   client_helper NAME calls SESSION N   N echo calls in SESSION, each checked;
//                                        prints "OK <n>" (exit 0) or "ERROR ..." (exit 1)
//   client_helper NAME hold SESSION      prints "CALLING", then a call that blocks
//                                        (announce_and_block) until this process is killed
//   client_helper NAME payload SESSION N fills an arena block of N bytes in place, sends
//                                        it (checksum, echo), checks the replies, prints
//                                        "HOLDING" and keeps both blocks until killed
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "shmpool/client.h"

int main(int argc, char** argv) {
  if (argc < 4) return 2;
  auto client = shmpool::Client::attach(argv[1]);
  if (!client.ok()) {
    std::printf("ERROR %s\n", client.error().to_string().c_str());
    return 1;
  }
  const std::string mode = argv[2], session = argv[3];
  if (mode == "calls" && argc == 5) {
    const int n = std::atoi(argv[4]);
    for (int k = 0; k < n; ++k) {
      auto r = (*client)->execute_in_session(session, "echo",
                                             shmpool::make_args([&](flexbuffers::Builder& b) {
                                               b.Int("k", k);
                                               b.String("who", session);
                                             }));
      if (!r.ok()) {
        std::printf("ERROR call %d: %s\n", k, r.error().to_string().c_str());
        return 1;
      }
      auto m = r->value().AsMap();
      if (m["k"].AsInt64() != k || m["who"].AsString().str() != session) {
        std::printf("ERROR call %d: wrong reply %s\n", k, r->json().c_str());
        return 1;
      }
    }
    std::printf("OK %d\n", n);
    return 0;
  }
  if (mode == "payload" && argc == 5) {
    const size_t n = size_t(std::atoll(argv[4]));
    auto buf = (*client)->alloc_payload(n);
    if (!buf.ok()) {
      std::printf("ERROR alloc: %s\n", buf.error().to_string().c_str());
      return 1;
    }
    std::memset(buf->begin(), 3, n);
    shmpool::ExecOptions o;
    o.payload = buf->data();
    auto sum = (*client)->execute_in_session(session, "checksum", shmpool::empty_args(), o);
    auto echo = (*client)->execute_in_session(session, "echo", shmpool::empty_args(), o);
    if (!sum.ok() || !echo.ok()) {
      std::printf("ERROR %s\n", (sum.ok() ? echo : sum).error().to_string().c_str());
      return 1;
    }
    if (sum->value().AsMap()["sum"].AsUInt64() != 3 * n || echo->payload().size() != n ||
        echo->payload()[n - 1] != 3) {
      std::printf("ERROR wrong replies\n");
      return 1;
    }
    std::printf("HOLDING\n");
    std::fflush(stdout);
    for (;;) ::pause();
  }
  if (mode == "hold") {
    std::printf("CALLING\n");
    std::fflush(stdout);
    auto r = (*client)->execute_in_session(session, "announce_and_block");
    std::printf("ERROR the blocking call returned: %s\n",
                r.ok() ? r->json().c_str() : r.error().to_string().c_str());
    return 1;
  }
  return 2;
}
