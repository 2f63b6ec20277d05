// A Boost.Asio host: one io_context thread, no thread per call. The pool's
// completion fd (an eventfd) is watched by a posix::stream_descriptor; when
// it fires, the host reads it and looks at its calls. 20 calls run at once,
// a stream is read item by item from the loop, and a slow call is
// cancelled by a timer. Run: asio_event_loop <path to handlers.py>
#include <unistd.h>

#include <boost/asio.hpp>
#include <chrono>
#include <cstdio>
#include <vector>

#include "shmpool/pool.h"

namespace asio = boost::asio;

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s HANDLERS.py\n", argv[0]);
    return 2;
  }
  shmpool::PoolConfig config;
  config.name = "example-asio-" + std::to_string(::getpid());
  config.size = 2;
  config.handler_modules = {argv[1]};
  auto started = shmpool::Pool::start(config);
  if (!started.ok()) {
    std::fprintf(stderr, "%s\n", started.error().to_string().c_str());
    return 1;
  }
  shmpool::Pool& pool = **started;

  asio::io_context io;
  // The pool owns the fd: release() it before the descriptor closes.
  asio::posix::stream_descriptor completions(io, pool.completion_fd());

  std::vector<shmpool::Call> squares;
  for (int x = 0; x < 20; ++x) {
    squares.push_back(pool.call_async(
        "client-1", "square", shmpool::make_args([&](flexbuffers::Builder& b) { b.Int("x", x); })));
  }
  shmpool::Stream tokens = pool.stream(
      {}, "tokens",
      shmpool::make_args([](flexbuffers::Builder& b) { b.String("text", "one two three four"); }));
  shmpool::Call slow = pool.call_async({}, "slow");
  asio::steady_timer cancel_timer(io, std::chrono::milliseconds(50));
  cancel_timer.async_wait([&](boost::system::error_code) { slow.cancel(); });

  int64_t sum = 0;
  size_t squares_done = 0, token_count = 0;
  bool tokens_done = false, failed = false;
  // On every signal: read the fd, then whatever is ready.
  std::function<void()> watch = [&] {
    completions.async_wait(asio::posix::stream_descriptor::wait_read, [&](boost::system::error_code ec) {
      if (ec) return;
      uint64_t n = 0;
      (void)!::read(completions.native_handle(), &n, sizeof n);
      for (auto& c : squares) {
        if (!c.valid() || !c.ready()) continue;
        auto& r = c.wait();  // ready: no wait
        if (r.ok()) {
          sum += r->value().AsMap()["square"].AsInt64();
        } else {
          failed = true;
        }
        c = shmpool::Call();
        ++squares_done;
      }
      // Take the items already there without blocking the loop.
      while (!tokens_done) {
        auto item = tokens.next(std::chrono::milliseconds(0));
        if (!item.ok() && item.error().type == "next_timeout") break;
        if (!item.ok()) {
          failed = true;
          tokens_done = true;
        } else if (!item.value()) {
          tokens_done = true;
        } else {
          std::printf("token: %s\n", item.value()->value().AsMap()["token"].AsString().c_str());
          ++token_count;
        }
      }
      if (squares_done < squares.size() || !tokens_done || !slow.ready()) watch();
    });
  };
  watch();
  io.run();
  completions.release();

  auto& s = slow.wait();
  std::printf("sum of squares 0..19: %lld (expected 2470); tokens: %zu; slow call: %s\n",
              static_cast<long long>(sum), token_count,
              s.ok() ? "finished" : s.error().to_string().c_str());
  const bool ok = !failed && sum == 2470 && token_count == 4 && !s.ok() &&
                  s.error().category == shmpool::Category::cancelled;
  return ok ? 0 : 1;
}
