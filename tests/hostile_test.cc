// A worker that attacks its host through its response ring (hostile_worker):
// garbage envelopes, wrong ids, out-of-range payload offsets, truncated
// frames, impossible lengths, a padding frame past the ring's end, a ring
// tail scribbled over. The host must never crash or read outside the segment
// (this also runs under ASan), must answer the caller with protocol_error,
// and must replace the worker.
#include <gtest/gtest.h>

#include <optional>
#include <string>

#include "ipc/wait.h"
#include "shmpool/call.h"
#include "shmpool/pool.h"
#include "tests/process_support.h"
#include "tests/test_support.h"

namespace shmpool {
namespace {

class HostileWorkerTest : public test::LeakCheck,
                          public ::testing::WithParamInterface<const char*> {};
class HostileWorkerSlotTest : public test::LeakCheck {};

// A pool of one hostile worker in `mode` (its events to `events`).
PoolConfig hostile_config(const std::string& mode, test::EventLog& events) {
  PoolConfig c;
  c.name = "hostile-" + mode + "-" + std::to_string(::getpid());
  c.size = 1;
  c.max_overflow = 0;
  c.python = SHMPOOL_HOSTILE_WORKER;  // started as if it were the interpreter
  c.handler_modules = {mode};         // its mode
  c.on_event = events.callback();
  return c;
}

TEST_P(HostileWorkerTest, TheCallerGetsAProtocolErrorAndTheWorkerIsReplaced) {
  test::EventLog events;
  PoolConfig c = hostile_config(GetParam(), events);
  c.operation_timeout = std::chrono::seconds(20);
  auto pool = Pool::start(c);
  ASSERT_TRUE(pool.ok()) << pool.error().to_string();
  ASSERT_TRUE(events.wait_for(PoolEvent::Kind::worker_started));
  const pid_t first = (*pool)->status().workers[0].pid;

  auto r = (*pool)->execute_in_session("victim", "ping");
  ASSERT_FALSE(r.ok()) << "a hostile reply was accepted: " << r->json();
  EXPECT_EQ(r.error().category, Category::protocol_error) << r.error().to_string();
  EXPECT_EQ(r.error().context.at("worker_pid"), std::to_string(first));
  std::printf("%s -> %s\n", GetParam(), r.error().to_string().c_str());

  // Replaced by a new (equally hostile) worker; the pool still works as a pool.
  ASSERT_TRUE(events.wait_for(PoolEvent::Kind::worker_restarted)) << "never replaced";
  EXPECT_NE((*pool)->status().workers[0].pid, first);
  auto died = events.of(PoolEvent::Kind::worker_died);
  ASSERT_EQ(died.size(), 1u);
  EXPECT_EQ(died[0].pid, first);
  const PoolStatus st = (*pool)->status();
  EXPECT_EQ(st.errors_by_category.at("protocol_error"), 1u);
  EXPECT_EQ((*pool)->session("victim")->errors, 1u);
}

INSTANTIATE_TEST_SUITE_P(Attacks, HostileWorkerTest,
                         ::testing::Values("garbage_envelope", "wrong_id", "payload_out_of_range",
                                           "truncated_envelope", "huge_body_length",
                                           "envelope_outside_body", "random_header",
                                           "pad_beyond_ring", "scribbled_tail"));

// A worker that sends stream items past the caller's window: the host keeps
// no more than the window (memory does not grow with what a worker sends),
// ends the stream with protocol_error and replaces the worker.
TEST_F(HostileWorkerSlotTest, AWorkerFloodingAStreamPastItsWindowIsReplaced) {
  test::EventLog events;
  auto pool = Pool::start(hostile_config("stream_flood", events));
  ASSERT_TRUE(pool.ok()) << pool.error().to_string();
  ASSERT_TRUE(events.wait_for(PoolEvent::Kind::worker_started));
  ExecOptions o;
  o.stream_window_items = 4;
  Stream s = (*pool)->stream("victim", "ping", empty_args(), o);
  // Nothing is taken until the stream has failed: the host must stop
  // buffering at the window by itself.
  ipc::Doorbell never;
  ipc::wait_until(
      never, [&] { return (*pool)->status().errors_by_category.at("protocol_error") > 0; },
      ipc::monotonic_ns() + 20'000'000'000, ipc::WaitPolicy{ipc::WaitStrategy::spin, 0});
  int items = 0;
  std::optional<Error> end;
  for (Expected<Reply>& item : s) {
    if (item.ok()) {
      ++items;
    } else {
      end = item.error();
    }
  }
  EXPECT_LE(items, 4);
  ASSERT_TRUE(end);
  EXPECT_EQ(end->category, Category::protocol_error) << end->to_string();
  EXPECT_EQ(end->type, "stream_window_exceeded");
  EXPECT_TRUE(events.wait_for(PoolEvent::Kind::worker_restarted)) << "never replaced";
}

TEST_F(HostileWorkerSlotTest, AWorkerScribblingOnItsSlotStateIsReplaced) {
  // The reply itself is well formed, so the call may succeed; the slot's
  // state byte is one no shmpool process writes. The owner must not lose
  // the slot: it kills the worker and starts another.
  test::EventLog events;
  auto pool = Pool::start(hostile_config("scribbled_slot_state", events));
  ASSERT_TRUE(pool.ok()) << pool.error().to_string();
  const pid_t first = (*pool)->status().workers[0].pid;
  auto r = (*pool)->execute_anonymous("ping");
  std::printf("scribbled_slot_state -> %s\n",
              r.ok() ? r->json().c_str() : r.error().to_string().c_str());
  ASSERT_TRUE(events.wait_for(PoolEvent::Kind::worker_restarted)) << "the slot was lost";
  auto died = events.of(PoolEvent::Kind::worker_died);
  ASSERT_EQ(died.size(), 1u);
  EXPECT_EQ(died[0].pid, first);
  const auto w = (*pool)->status().workers[0];
  EXPECT_NE(w.pid, first);
  EXPECT_TRUE(w.state == "idle" || w.state == "starting") << w.state;
}

}  // namespace
}  // namespace shmpool
