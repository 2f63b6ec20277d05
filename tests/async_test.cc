// Async calls, streams and cancellation (shmpool/call.h) on a real pool.
// Each waits on the event it needs (a reply, a worker's output line, the
// completion fd, slots_changed), never on the clock.
#include <gtest/gtest.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <future>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "shmpool/call.h"
#include "shmpool/pool.h"
#include "tests/pool_support.h"

namespace shmpool {
namespace {

using test::config;
using test::PoolTest;
using test::start;
using AsyncTest = PoolTest;

Args n_args(int64_t n, std::string tag = "", int64_t fail_at = -1) {
  return make_args([&](flexbuffers::Builder& b) {
    b.Int("n", n);
    if (!tag.empty()) b.String("tag", tag);
    if (fail_at >= 0) b.Int("fail_at", fail_at);
  });
}

int64_t item_i(const Reply& r) { return r.value().AsMap()["i"].AsInt64(); }

// Lines of `log` that start with `prefix`.
size_t count_lines(test::LogWatch& log, const std::string& prefix) {
  std::lock_guard lock(log.mu);
  return size_t(std::count_if(log.lines.begin(), log.lines.end(),
                              [&](const std::string& l) { return l.rfind(prefix, 0) == 0; }));
}

// Every item's "i" and the stream's error, if it failed.
std::pair<std::vector<int64_t>, std::optional<Error>> drain(Stream& s) {
  std::vector<int64_t> items;
  std::optional<Error> error;
  for (Expected<Reply>& item : s) {
    if (item.ok()) {
      items.push_back(item_i(*item));
    } else {
      error = item.error();
    }
  }
  return {items, error};
}

uint64_t restarts(const Pool& pool) {
  uint64_t n = 0;
  for (auto& w : pool.status().workers) n += w.restarts;
  return n;
}

TEST_F(AsyncTest, ManyCallsFromOneThreadRunOnEveryWorkerWithExactSessionCounts) {
  auto pool = start(config("async-many", 2));
  ASSERT_TRUE(pool);
  std::vector<Call> calls;
  std::map<std::string, int> per_session;
  for (int k = 0; k < 400; ++k) {
    const std::string session = "s" + std::to_string(k % 5);
    ++per_session[session];
    calls.push_back(pool->call_async(
        session, "echo", make_args([&](flexbuffers::Builder& b) { b.Int("k", k); })));
  }
  std::set<int64_t> pids;
  for (int k = 0; k < 400; ++k) {
    Expected<Reply>& r = calls[k].wait();
    ASSERT_TRUE(r.ok()) << r.error().to_string();
    EXPECT_EQ(r->value().AsMap()["k"].AsInt64(), k);
    EXPECT_TRUE(calls[k].ready());
  }
  for (auto& [id, n] : per_session) {
    auto info = pool->session(id);
    ASSERT_TRUE(info);
    EXPECT_EQ(info->operations, uint64_t(n)) << id;
    EXPECT_EQ(info->errors, 0u);
  }
  for (auto& w : pool->status().workers) EXPECT_GT(w.successes, 0u) << "slot " << w.slot;
}

TEST_F(AsyncTest, CallsPipelinedOnOneWorkerAreAnsweredInOrder) {
  auto pool = start(config("async-order", 1));
  ASSERT_TRUE(pool);
  std::vector<Call> calls;
  for (int k = 0; k < 64; ++k) calls.push_back(pool->call_async({}, "next_seq"));
  int64_t first = -1;
  for (int k = 0; k < 64; ++k) {
    Expected<Reply>& r = calls[k].wait();
    ASSERT_TRUE(r.ok()) << r.error().to_string();
    const int64_t seq = r->value().AsMap()["seq"].AsInt64();
    if (k == 0) first = seq;
    EXPECT_EQ(seq, first + k);
  }
}

TEST_F(AsyncTest, CallbacksRunOnceEachAndTheCompletionFdSignals) {
  auto pool = start(config("async-fd", 2));
  ASSERT_TRUE(pool);
  const int fd = pool->completion_fd();
  ASSERT_GE(fd, 0);
  std::atomic<int> ok{0}, failed{0};
  std::vector<Call> calls;
  for (int k = 0; k < 50; ++k) {
    calls.push_back(pool->call_async({}, k % 10 == 0 ? "fail" : "ping", empty_args(), {},
                                      [&](const Expected<Reply>& r) {
                                        (r.ok() ? ok : failed).fetch_add(1);
                                      }));
  }
  // An event loop's view: sleep on the fd, then look at the calls.
  auto all_ready = [&] {
    return std::all_of(calls.begin(), calls.end(), [](const Call& c) { return c.ready(); });
  };
  while (!all_ready()) {
    pollfd p{fd, POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, 20'000), 1) << "the completion fd never became readable";
    uint64_t n = 0;
    ASSERT_EQ(::read(fd, &n, sizeof n), ssize_t(sizeof n));
    EXPECT_GT(n, 0u);
  }
  // A callback runs before its Call is ready.
  EXPECT_EQ(ok.load(), 45);
  EXPECT_EQ(failed.load(), 5);
  EXPECT_EQ(calls[0].wait().error().type, "handler_exception");
}

TEST_F(AsyncTest, SubmitIsAnAsyncCallWithAFuture) {
  auto pool = start(config("async-submit", 2));
  ASSERT_TRUE(pool);
  std::vector<std::future<Expected<Reply>>> fs;
  for (int k = 0; k < 20; ++k) fs.push_back(pool->submit("s", "ping"));
  for (auto& f : fs) EXPECT_TRUE(f.get().ok());
  EXPECT_EQ(pool->session("s")->operations, 20u);
  auto bad = pool->submit("has space", "ping").get();
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().type, "invalid_session_id");
}

TEST_F(AsyncTest, AStreamYieldsEveryItemInOrderThenEnds) {
  auto pool = start(config("stream-order", 1));
  ASSERT_TRUE(pool);
  Stream s = pool->stream("s", "count_stream", n_args(500));
  int64_t k = 0;
  for (Expected<Reply>& item : s) {
    ASSERT_TRUE(item.ok()) << item.error().to_string();
    EXPECT_EQ(item_i(*item), k++);
  }
  EXPECT_EQ(k, 500);
  EXPECT_TRUE(s.done());
  auto again = s.next();
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->has_value());
  EXPECT_EQ(pool->session("s")->operations, 1u);
}

TEST_F(AsyncTest, CtxSendStreamsItemsAndAReturnedValueIsTheLast) {
  auto pool = start(config("stream-send", 1));
  ASSERT_TRUE(pool);
  Stream s = pool->stream({}, "send_stream", n_args(3));
  std::vector<std::string> got;
  for (Expected<Reply>& item : s) {
    ASSERT_TRUE(item.ok()) << item.error().to_string();
    got.push_back(item->value().AsMap()["i"].ToString());
  }
  EXPECT_EQ(got, (std::vector<std::string>{"0", "1", "2", "last"}));
  // Outside a stream, ctx.send raises in the handler.
  auto r = pool->execute_anonymous("send_stream", n_args(1));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().category, Category::handler_error);
  auto g = pool->execute_anonymous("generator_plain");
  ASSERT_FALSE(g.ok());
  EXPECT_EQ(g.error().type, "stream_not_requested");
}

TEST_F(AsyncTest, AHandlerExceptionMidStreamArrivesAfterTheItemsSent) {
  auto pool = start(config("stream-fail", 1));
  ASSERT_TRUE(pool);
  Stream s = pool->stream({}, "count_stream", n_args(10, "", 5));
  auto [items, error] = drain(s);
  EXPECT_EQ(items, (std::vector<int64_t>{0, 1, 2, 3, 4}));
  ASSERT_TRUE(error);
  EXPECT_EQ(error->category, Category::handler_error);
  EXPECT_NE(error->context["traceback"].find("failed at item 5"), std::string::npos);
  EXPECT_TRUE(pool->execute_anonymous("ping").ok());
}

TEST_F(AsyncTest, ASlowConsumerHoldsTheGeneratorWithinItsWindow) {
  test::LogWatch log;
  auto pool = test::start_one_worker("stream-slow", log);
  ASSERT_TRUE(pool);
  ExecOptions o;
  o.stream_window_items = 4;
  Stream s = pool->stream({}, "count_stream", n_args(40, "w"), o);
  for (int j = 0; j < 36; ++j) {
    // The generator has run as far as the window lets it: items j..j+3
    // sent, and not one more before we take item j.
    ASSERT_TRUE(log.wait_for_line("YIELDING w " + std::to_string(j + 3)));
    EXPECT_EQ(count_lines(log, "YIELDING w " + std::to_string(j + 4)), 0u) << "at item " << j;
    auto item = s.next();
    ASSERT_TRUE(item.ok() && item->has_value());
    EXPECT_EQ(item_i(**item), j);
  }
  for (int j = 36; j < 40; ++j) EXPECT_EQ(item_i(*s.next().value()), j);
  EXPECT_FALSE(s.next()->has_value());
}

TEST_F(AsyncTest, ItemBytesInFlightStayUnderTheWindowAndComeThroughTheArena) {
  test::LogWatch log;
  auto c = config("stream-bytes", 1);
  c.log = log.callback();
  c.payload_arena_bytes = 32 << 20;
  auto pool = start(std::move(c));
  ASSERT_TRUE(pool);
  constexpr int kChunks = 12;
  constexpr int64_t kChunk = 1 << 20;
  ExecOptions o;
  o.stream_window_items = 100;
  o.stream_window_bytes = 3 * kChunk;
  Stream s = pool->stream({}, "chunk_stream", make_args([&](flexbuffers::Builder& b) {
                            b.Int("n", kChunks);
                            b.Int("size", kChunk);
                          }),
                          o);
  for (int j = 0; j < kChunks; ++j) {
    ASSERT_TRUE(log.wait_for_line("YIELDING", size_t(std::min(j + 3, kChunks))));
    // Sent and not taken: under 3 MiB plus the one that crossed it; taken: none held.
    EXPECT_LE(pool->status().arena_bytes_in_use, uint64_t(4 * kChunk)) << "at chunk " << j;
    auto item = s.next();
    ASSERT_TRUE(item.ok() && item->has_value()) << "chunk " << j;
    const Reply& r = **item;
    ASSERT_EQ(r.payload().size(), size_t(kChunk));
    EXPECT_EQ(r.payload()[0], j % 251);
    EXPECT_EQ(r.payload()[kChunk - 1], j % 251);
  }
  EXPECT_FALSE(s.next()->has_value());
  EXPECT_EQ(pool->status().arena_blocks_in_use, 0u);
}

TEST_F(AsyncTest, AnAbandonedStreamClosesItsGeneratorAndFreesItsWorkerAndBlocks) {
  test::LogWatch log;
  auto pool = test::start_one_worker("stream-drop", log);
  ASSERT_TRUE(pool);
  {
    ExecOptions o;
    o.stream_window_items = 4;
    Stream s = pool->stream({}, "count_stream", n_args(100000, "d"), o);
    for (int j = 0; j < 2; ++j) ASSERT_EQ(item_i(*s.next().value()), j);
  }  // dropped half-way: cancelled
  ASSERT_TRUE(log.wait_for_line("FINALLY d")) << "the generator's finally did not run";
  auto r = pool->execute_anonymous("ping");
  EXPECT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(restarts(*pool), 0u) << "a generator closed at its yield needs no new worker";
  {
    // Abandoned with arena items sent and not taken: their blocks come back.
    Stream s = pool->stream({}, "chunk_stream", make_args([&](flexbuffers::Builder& b) {
                              b.Int("n", 1000);
                              b.Int("size", 64 << 10);
                            }));
    ASSERT_TRUE(s.next()->has_value());
  }
  EXPECT_TRUE(pool->execute_anonymous("ping").ok());
  EXPECT_TRUE(test::eventually(*pool, [&] { return pool->status().arena_blocks_in_use == 0; }));
}

TEST_F(AsyncTest, ACallCancelledBeforeItsWorkerStartsItNeverRuns) {
  test::LogWatch log;
  auto pool = test::start_one_worker("cancel-queued", log);
  ASSERT_TRUE(pool);
  test::Gate gate("cancel-queued");
  Call first = pool->call_async({}, "wait_at_gate", gate.args());
  ASSERT_TRUE(log.wait_for_line("AT_GATE"));
  Call second = pool->call_async({}, "until_cancelled");  // behind it in the worker's ring
  EXPECT_TRUE(second.cancel());
  EXPECT_TRUE(second.cancel()) << "cancelling twice is cancelling once";
  ASSERT_TRUE(gate.open(1));
  EXPECT_TRUE(first.wait().ok());
  Expected<Reply>& r = second.wait();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().category, Category::cancelled);
  EXPECT_EQ(r.error().type, "cancelled");
  EXPECT_EQ(count_lines(log, "RUNNING"), 0u) << "the cancelled handler ran";
  EXPECT_TRUE(pool->execute_anonymous("ping").ok());
  EXPECT_EQ(restarts(*pool), 0u);
}

// A synchronous caller queued for the only worker keeps its turn against
// async calls made after it; an async call still queued is cancelled at once.
TEST_F(AsyncTest, AQueuedSynchronousCallerKeepsItsTurnAndQueuedAsyncCallsCancelAtOnce) {
  test::LogWatch log;
  auto pool = test::start_one_worker("async-fair", log);
  ASSERT_TRUE(pool);
  test::Gate gate("async-fair");
  Call blocker = pool->call_async({}, "wait_at_gate", gate.args());
  ASSERT_TRUE(log.wait_for_line("AT_GATE"));
  std::promise<int64_t> sync_seq;
  std::thread sync([&] {
    auto r = pool->execute_anonymous("next_seq");
    sync_seq.set_value(r.ok() ? r->value().AsMap()["seq"].AsInt64() : -1);
  });
  // The checkout queue rings nothing when a caller joins it: poll for it.
  ipc::Doorbell never;
  ASSERT_EQ(ipc::wait_until(
                never, [&] { return pool->status().queue_length == 1; },
                ipc::monotonic_ns() + 20'000'000'000, ipc::WaitPolicy{ipc::WaitStrategy::spin, 0}),
            ipc::WaitResult::ready);
  Call after = pool->call_async({}, "next_seq");
  Call dropped = pool->call_async({}, "next_seq");
  EXPECT_FALSE(after.ready());
  EXPECT_TRUE(dropped.cancel());
  EXPECT_TRUE(dropped.ready()) << "a call not sent yet ends at once";
  EXPECT_EQ(dropped.wait().error().type, "cancelled");
  ASSERT_TRUE(gate.open(1));
  EXPECT_TRUE(blocker.wait().ok());
  Expected<Reply>& r = after.wait();
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  sync.join();
  EXPECT_EQ(sync_seq.get_future().get(), 0) << "the queued synchronous caller went first";
  EXPECT_EQ(r->value().AsMap()["seq"].AsInt64(), 1);
}

TEST_F(AsyncTest, ACooperativeHandlerSeesCtxCancelledAndItsWorkerStays) {
  test::LogWatch log;
  auto pool = test::start_one_worker("cancel-coop", log);
  ASSERT_TRUE(pool);
  ExecOptions o;
  o.cancel_grace = std::chrono::seconds(60);  // it must stop by itself
  Call call = pool->call_async("s", "until_cancelled", empty_args(), o);
  ASSERT_TRUE(log.wait_for_line("RUNNING"));
  EXPECT_TRUE(call.cancel());
  Expected<Reply>& r = call.wait();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().category, Category::cancelled);
  EXPECT_TRUE(log.wait_for_line("STOPPED"));
  EXPECT_TRUE(pool->execute_anonymous("ping").ok());
  EXPECT_EQ(restarts(*pool), 0u);
  EXPECT_EQ(pool->session("s")->errors, 1u);
  EXPECT_FALSE(call.cancel()) << "an ended call cannot be cancelled";
}

TEST_F(AsyncTest, AHandlerIgnoringCancellationIsKilledAfterTheGraceAndReplaced) {
  test::LogWatch log;
  auto c = config("cancel-kill", 1);
  c.log = log.callback();
  c.cancel_grace = std::chrono::milliseconds(50);
  auto pool = start(std::move(c));
  ASSERT_TRUE(pool);
  Call call = pool->call_async({}, "ignore_cancel");
  ASSERT_TRUE(log.wait_for_line("RUNNING"));
  EXPECT_TRUE(call.cancel());
  Expected<Reply>& r = call.wait();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().category, Category::cancelled);
  auto next = pool->execute_anonymous("ping");  // waits for the replacement
  EXPECT_TRUE(next.ok()) << next.error().to_string();
  EXPECT_EQ(restarts(*pool), 1u);
}

TEST_F(AsyncTest, CancellingAnEndedCallHasNoEffect) {
  auto pool = start(config("cancel-late", 1));
  ASSERT_TRUE(pool);
  Call call = pool->call_async({}, "ping");
  ASSERT_TRUE(call.wait().ok());
  EXPECT_FALSE(call.cancel());
  EXPECT_TRUE(call.wait().ok());
}

TEST_F(AsyncTest, AWorkerCrashMidStreamEndsItAfterTheItemsSent) {
  auto pool = start(config("stream-crash", 1));
  ASSERT_TRUE(pool);
  Stream s = pool->stream({}, "crash_stream", n_args(3));
  auto [items, error] = drain(s);
  EXPECT_EQ(items, (std::vector<int64_t>{0, 1, 2}));
  ASSERT_TRUE(error);
  EXPECT_EQ(error->category, Category::worker_error);
  EXPECT_EQ(error->type, "worker_crashed");
  auto next = pool->execute_anonymous("ping");
  EXPECT_TRUE(next.ok()) << next.error().to_string();
}

TEST_F(AsyncTest, CallsBehindACrashedCallRunOnAnotherWorker) {
  auto pool = start(config("async-requeue", 1));
  ASSERT_TRUE(pool);
  Call crash = pool->call_async({}, "exit_now");
  std::vector<Call> behind;
  for (int k = 0; k < 10; ++k) behind.push_back(pool->call_async({}, "ping"));
  EXPECT_EQ(crash.wait().error().type, "worker_crashed");
  for (auto& c : behind) {
    Expected<Reply>& r = c.wait();
    EXPECT_TRUE(r.ok()) << r.error().to_string();
  }
}

TEST_F(AsyncTest, ShutdownEndsCallsAndStreamsInFlight) {
  test::LogWatch log;
  auto pool = test::start_one_worker("async-shutdown", log);
  ASSERT_TRUE(pool);
  Call blocked = pool->call_async({}, "ignore_cancel");
  ASSERT_TRUE(log.wait_for_line("RUNNING"));
  std::vector<Call> behind;
  for (int k = 0; k < 5; ++k) behind.push_back(pool->call_async({}, "ping"));
  Stream s = pool->stream({}, "count_stream", n_args(10));
  ASSERT_TRUE(pool->shutdown(std::chrono::milliseconds(10)).ok());
  EXPECT_FALSE(blocked.wait().ok());
  for (auto& b : behind) EXPECT_FALSE(b.wait().ok());
  auto end = s.next();
  EXPECT_FALSE(end.ok());
  auto late = pool->call_async({}, "ping").wait();
  ASSERT_FALSE(late.ok());
  EXPECT_EQ(late.error().type, "pool_shutting_down");
}

}  // namespace
}  // namespace shmpool
