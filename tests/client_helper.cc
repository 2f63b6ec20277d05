// client_helper: a separate process calling a pool through shmpool::Client.
//   client_helper NAME calls SESSION N   N echo calls in SESSION, each checked;
//                                        prints "OK <n>" (exit 0) or "ERROR ..." (exit 1)
//   client_helper NAME hold SESSION      prints "CALLING", then a call that blocks
//                                        (announce_and_block) until this process is killed
//   client_helper NAME payload SESSION N fills an arena block of N bytes in place, sends
//                                        it (checksum, echo), checks the replies, prints
//                                        "HOLDING" and keeps both blocks until killed
//   client_helper NAME chaos PREFIX T N  prints "ATTACHED", then T threads, N calls each in session
//   PREFIX-<t>,
//                                        cycling echo (args), echo of a 64 KiB arena
//                                        payload, echo of a 1 KiB payload, and every 25th
//                                        a crashing call; every result checked. Prints
//                                        "SESSION <id> <calls>" per thread, then
//                                        "CHAOS calls=... ok=... wrong=... slowest_ms=...
//                                        errors=<type>:<n>,..." (exit 0)
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "shmpool/client.h"

int main(int argc, char** argv) {
  if (argc < 4) return 2;
  shmpool::ClientOptions options;
  // The chaos run stops workers past this: their calls time out.
  if (std::string(argv[2]) == "chaos") options.operation_timeout = std::chrono::milliseconds(1000);
  auto client = shmpool::Client::attach(argv[1], options);
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
  if (mode == "chaos" && argc == 6) {
    std::printf("ATTACHED\n");
    std::fflush(stdout);
    const int threads = std::atoi(argv[4]), n = std::atoi(argv[5]);
    std::mutex mu;
    std::map<std::string, long> errors;
    long calls = 0, ok = 0, wrong = 0;
    double slowest_ms = 0;
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t) {
      workers.emplace_back([&, t] {
        const std::string sid = session + "-" + std::to_string(t);
        std::vector<uint8_t> small(1024);
        for (int k = 0; k < n; ++k) {
          const auto t0 = std::chrono::steady_clock::now();
          bool right = true;
          std::string error;
          const int kind = k % 25 == 24 ? 3 : k % 3;
          if (kind == 0) {
            auto r = (*client)->execute_in_session(
                sid, "echo", shmpool::make_args([&](flexbuffers::Builder& b) { b.Int("k", k); }));
            if (!r.ok())
              error = r.error().type;
            else
              right = r->value().AsMap()["k"].AsInt64() == k;
          } else if (kind == 1) {
            auto buf = (*client)->alloc_payload(64 << 10);
            if (!buf.ok()) {
              error = "alloc:" + buf.error().type;
            } else {
              std::memset(buf->begin(), k & 0xff, buf->size());
              shmpool::ExecOptions o;
              o.payload = buf->data();
              auto r = (*client)->execute_in_session(sid, "echo", shmpool::empty_args(), o);
              if (!r.ok()) {
                error = r.error().type;
              } else {
                right = r->payload().size() == size_t(64 << 10);
                for (uint8_t x : r->payload()) right = right && x == uint8_t(k & 0xff);
              }
            }
          } else if (kind == 2) {
            std::memset(small.data(), (k + 1) & 0xff, small.size());
            shmpool::ExecOptions o;
            o.payload = small;
            auto r = (*client)->execute_in_session(sid, "echo", shmpool::empty_args(), o);
            if (!r.ok())
              error = r.error().type;
            else
              right = r->payload().size() == small.size() && r->payload()[1023] == small[1023];
          } else {
            auto r = (*client)->execute_in_session(
                sid, "exit_now",
                shmpool::make_args([](flexbuffers::Builder& b) { b.Int("code", 3); }));
            error = r.ok() ? "crash_call_succeeded" : r.error().type;
          }
          const double ms =
              std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                  .count();
          std::lock_guard lock(mu);
          if (!error.empty() && error != "worker_crashed") {
            std::fprintf(stderr, "chaos: %s after %.0f ms (thread %d, call %d, ended %lld ms)\n",
                         error.c_str(), ms, t, k,
                         (long long)(std::chrono::duration_cast<std::chrono::milliseconds>(
                                         std::chrono::steady_clock::now().time_since_epoch())
                                         .count()));
          }
          ++calls;
          slowest_ms = std::max(slowest_ms, ms);
          if (!error.empty())
            ++errors[error];
          else if (!right)
            ++wrong;
          else
            ++ok;
        }
        std::lock_guard lock(mu);
        std::printf("SESSION %s %d\n", sid.c_str(), n);
      });
    }
    for (auto& w : workers) w.join();
    std::string errs;
    for (auto& [type, count] : errors)
      errs += (errs.empty() ? "" : ",") + type + ":" + std::to_string(count);
    std::printf("CHAOS calls=%ld ok=%ld wrong=%ld slowest_ms=%.0f errors=%s\n", calls, ok, wrong,
                slowest_ms, errs.c_str());
    return 0;
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
