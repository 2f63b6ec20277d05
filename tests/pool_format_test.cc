// What `shmpool status`, `sessions`, `list` and `gc` print, byte for byte,
// for fixed inputs (a snapshot with two slots, a pool name that needs
// escaping, sessions aged against a fixed clock). tests/cli_test.cc checks
// the same outputs against a live pool.
#include "tools/pool_format.h"

#include <gtest/gtest.h>

#include "tools/exposition.h"

namespace shmpool::tools {
namespace {
std::vector<PoolListing> listings() {
  std::vector<PoolListing> v(3);
  v[0].name = "models";
  v[0].owner_pid = 4242;
  v[0].owner_alive = true;
  v[0].segment_bytes = 75497472;
  v[1].name = "a-rather-long-pool-name-of-forty-five-chars-x";
  v[1].owner_pid = 17;
  v[1].owner_alive = false;
  v[1].segment_bytes = 1048576;
  v[2].name = "broken";
  v[2].owner_pid = 0;
  v[2].problem = "bad magic";
  return v;
}
PoolSnapshot snapshot() {
  PoolSnapshot p;
  p.name = "demo\"x\\y";
  p.owner_pid = 15676;
  p.owner_alive = true;
  p.state = "ready";
  p.segment_bytes = 85983232;
  p.slot_count = 2;
  p.session_capacity = 4096;
  p.request_ring_bytes = 4194304;
  p.response_ring_bytes = 4194304;
  p.arena_bytes = 67108864;
  p.arena_bytes_in_use = 8192;
  p.arena_blocks_in_use = 2;
  p.arena_pinned_blocks = 1;
  p.uptime_s = 9000;
  p.calls = 12345;
  p.checkout_timeouts = 3;
  p.session_table_full = 1;
  p.errors_by_category = {{"handler_error", 2}, {"timeout_error", 0}};
  p.waiting = 1;
  p.active_sessions = 7;
  p.slots_by_state = {{"busy", 1}, {"empty", 0}, {"idle", 1}};
  SlotSnapshot s0;
  s0.slot = 0;
  s0.state = "idle";
  s0.pid = 100;
  s0.generation = 4;
  s0.checkouts = 10;
  s0.calls = 9;
  s0.successes = 8;
  s0.errors = 1;
  s0.restarts = 0;
  s0.idle_s = 1.5;
  s0.worker_age_s = 600;
  SlotSnapshot s1;
  s1.slot = 1;
  s1.state = "busy";
  s1.pid = 101;
  s1.generation = 7;
  s1.checkouts = 20;
  s1.calls = 19;
  s1.successes = 19;
  s1.errors = 0;
  s1.restarts = 2;
  s1.idle_s = -1;
  s1.worker_age_s = 0.25;
  p.slots = {s0, s1};
  return p;
}
constexpr int64_t kNow = 1'000'000'000'000;
std::vector<SessionInfo> session_list() {
  SessionInfo a;
  a.id = "user-42";
  a.created_ns = kNow - 90'000'000'000;
  a.last_activity_ns = kNow - 1'500'000'000;
  a.operations = 5;
  a.errors = 1;
  a.last_slot = 1;
  SessionInfo b;
  b.id = "tab\tand\"quote";
  b.created_ns = kNow - 8'000'000'000'000;
  b.last_activity_ns = kNow - 200'000'000'000;
  b.operations = 0;
  b.errors = 0;
  b.last_slot = -1;
  return {a, b};
}

TEST(PoolFormat, SecondsText) {
  EXPECT_EQ(seconds_text(-1), "-");
  EXPECT_EQ(seconds_text(0.25), "0.2s");
  EXPECT_EQ(seconds_text(119.9), "119.9s");
  EXPECT_EQ(seconds_text(120), "2.0m");
  EXPECT_EQ(seconds_text(7199), "120.0m");
  EXPECT_EQ(seconds_text(7200), "2.0h");
}

TEST(PoolFormat, ExpositionWritesFamiliesAndEscapesLabelValues) {
  Exposition e;
  e.family("m_total", "counter", "Things.");
  e.sample("m_total", {}, 3);
  e.sample("m_total", {{"a", "x\\y"}, {"b", "say \"hi\"\nbye"}}, 0.1);
  EXPECT_EQ(e.str(),
            "# HELP m_total Things.\n# TYPE m_total counter\nm_total 3\n"
            "m_total{a=\"x\\\\y\",b=\"say \\\"hi\\\"\\nbye\"} 0.10000000000000001\n");
}

TEST(PoolFormat, StatusTableIsFixedWidth) {
  EXPECT_EQ(status_output(snapshot(), OutputFormat::table),
            R"out(pool demo"x\y  owner 15676 (alive)  state ready  up 2.5h
calls 12345  waiting 1  sessions 7/4096  checkout timeouts 3
payload arena 8192/67108864 bytes in use, 2 blocks (1 pinned)
rings 4194304 request / 4194304 response bytes per worker
errors  handler_error 2  timeout_error 0

slot  state          pid  checkouts      calls   errors restarts     idle      age
   0  idle           100         10          9        1        0     1.5s    10.0m
   1  busy           101         20         19        0        2        -     0.2s
)out");
}

TEST(PoolFormat, StatusJsonHasEveryCounter) {
  EXPECT_EQ(status_output(snapshot(), OutputFormat::json),
            R"out({
  "active_sessions": 7,
  "arena_blocks_in_use": 2,
  "arena_bytes": 67108864,
  "arena_bytes_in_use": 8192,
  "arena_pinned_blocks": 1,
  "calls": 12345,
  "checkout_timeouts": 3,
  "errors_by_category": {
    "handler_error": 2,
    "timeout_error": 0
  },
  "name": "demo\"x\\y",
  "owner_alive": true,
  "owner_pid": 15676,
  "request_ring_bytes": 4194304,
  "response_ring_bytes": 4194304,
  "segment_bytes": 85983232,
  "session_capacity": 4096,
  "session_table_full": 1,
  "slot_count": 2,
  "slots": [
    {
      "calls": 9,
      "checkouts": 10,
      "errors": 1,
      "generation": 4,
      "idle_s": 1.5,
      "pid": 100,
      "restarts": 0,
      "slot": 0,
      "state": "idle",
      "successes": 8,
      "worker_age_s": 600.0
    },
    {
      "calls": 19,
      "checkouts": 20,
      "errors": 0,
      "generation": 7,
      "idle_s": -1.0,
      "pid": 101,
      "restarts": 2,
      "slot": 1,
      "state": "busy",
      "successes": 19,
      "worker_age_s": 0.25
    }
  ],
  "slots_by_state": {
    "busy": 1,
    "empty": 0,
    "idle": 1
  },
  "state": "ready",
  "uptime_s": 9000.0,
  "waiting": 1
}
)out");
}

TEST(PoolFormat, StatusPrometheusEscapesLabels) {
  EXPECT_EQ(status_output(snapshot(), OutputFormat::prometheus),
            R"out(# HELP shmpool_up 1 when the pool's owner process is alive.
# TYPE shmpool_up gauge
shmpool_up{pool="demo\"x\\y"} 1
# HELP shmpool_uptime_seconds Seconds since the pool's segment was created.
# TYPE shmpool_uptime_seconds gauge
shmpool_uptime_seconds{pool="demo\"x\\y"} 9000
# HELP shmpool_slots Worker slots by state.
# TYPE shmpool_slots gauge
shmpool_slots{pool="demo\"x\\y",state="busy"} 1
shmpool_slots{pool="demo\"x\\y",state="empty"} 0
shmpool_slots{pool="demo\"x\\y",state="idle"} 1
# HELP shmpool_waiting_callers Callers waiting for a free worker.
# TYPE shmpool_waiting_callers gauge
shmpool_waiting_callers{pool="demo\"x\\y"} 1
# HELP shmpool_active_sessions Sessions in the session table.
# TYPE shmpool_active_sessions gauge
shmpool_active_sessions{pool="demo\"x\\y"} 7
# HELP shmpool_calls_total Calls made through the pool.
# TYPE shmpool_calls_total counter
shmpool_calls_total{pool="demo\"x\\y"} 12345
# HELP shmpool_errors_total Failed calls by error category.
# TYPE shmpool_errors_total counter
shmpool_errors_total{pool="demo\"x\\y",category="handler_error"} 2
shmpool_errors_total{pool="demo\"x\\y",category="timeout_error"} 0
# HELP shmpool_checkout_timeouts_total Calls that found no worker in time.
# TYPE shmpool_checkout_timeouts_total counter
shmpool_checkout_timeouts_total{pool="demo\"x\\y"} 3
# HELP shmpool_session_table_full_total Session records refused because the table was full.
# TYPE shmpool_session_table_full_total counter
shmpool_session_table_full_total{pool="demo\"x\\y"} 1
# HELP shmpool_arena_bytes Size of the payload arena.
# TYPE shmpool_arena_bytes gauge
shmpool_arena_bytes{pool="demo\"x\\y"} 67108864
# HELP shmpool_arena_bytes_in_use Payload arena bytes held by live blocks.
# TYPE shmpool_arena_bytes_in_use gauge
shmpool_arena_bytes_in_use{pool="demo\"x\\y"} 8192
# HELP shmpool_arena_blocks_in_use Live payload arena blocks.
# TYPE shmpool_arena_blocks_in_use gauge
shmpool_arena_blocks_in_use{pool="demo\"x\\y"} 2
# HELP shmpool_worker_calls_total Calls served by each worker slot.
# TYPE shmpool_worker_calls_total counter
shmpool_worker_calls_total{pool="demo\"x\\y",slot="0"} 9
shmpool_worker_calls_total{pool="demo\"x\\y",slot="1"} 19
# HELP shmpool_worker_errors_total Failed calls on each worker slot.
# TYPE shmpool_worker_errors_total counter
shmpool_worker_errors_total{pool="demo\"x\\y",slot="0"} 1
shmpool_worker_errors_total{pool="demo\"x\\y",slot="1"} 0
# HELP shmpool_worker_restarts_total Worker processes restarted in each slot.
# TYPE shmpool_worker_restarts_total counter
shmpool_worker_restarts_total{pool="demo\"x\\y",slot="0"} 0
shmpool_worker_restarts_total{pool="demo\"x\\y",slot="1"} 2
)out");
}

TEST(PoolFormat, SessionsTableAgesAgainstTheGivenClock) {
  EXPECT_EQ(
      sessions_output(snapshot().name, session_list(), kNow, OutputFormat::table),
      R"out(session                                  operations   errors last_slot      age     idle
user-42                                           5        1         1    90.0s     1.5s
tab	and"quote                                     0        0        -1     2.2h     3.3m
2 session(s)
)out");
}

TEST(PoolFormat, SessionsJson) {
  EXPECT_EQ(sessions_output(snapshot().name, session_list(), kNow, OutputFormat::json),
            R"out({
  "pool": "demo\"x\\y",
  "sessions": [
    {
      "age_s": 90.0,
      "errors": 1,
      "id": "user-42",
      "idle_s": 1.5,
      "last_slot": 1,
      "operations": 5
    },
    {
      "age_s": 8000.0,
      "errors": 0,
      "id": "tab\tand\"quote",
      "idle_s": 200.0,
      "last_slot": -1,
      "operations": 0
    }
  ]
}
)out");
}

TEST(PoolFormat, SessionsPrometheus) {
  EXPECT_EQ(sessions_output(snapshot().name, session_list(), kNow, OutputFormat::prometheus),
            R"out(# HELP shmpool_sessions Sessions in the session table.
# TYPE shmpool_sessions gauge
shmpool_sessions{pool="demo\"x\\y"} 2
# HELP shmpool_session_operations_total Calls made in each session.
# TYPE shmpool_session_operations_total counter
shmpool_session_operations_total{pool="demo\"x\\y",session="user-42"} 5
shmpool_session_operations_total{pool="demo\"x\\y",session="tab	and\"quote"} 0
# HELP shmpool_session_errors_total Failed calls in each session.
# TYPE shmpool_session_errors_total counter
shmpool_session_errors_total{pool="demo\"x\\y",session="user-42"} 1
shmpool_session_errors_total{pool="demo\"x\\y",session="tab	and\"quote"} 0
)out");
}

TEST(PoolFormat, PoolsTableSaysDeadAndUnreadable) {
  EXPECT_EQ(pools_output(listings(), OutputFormat::table),
            R"out(pool                                        owner alive         bytes
models                                       4242 yes        75497472 
a-rather-long-pool-name-of-forty-five-chars-x       17 DEAD        1048576 
broken                                          0 ?                 0 bad magic
)out");
}

TEST(PoolFormat, PoolsJson) {
  EXPECT_EQ(pools_output(listings(), OutputFormat::json),
            R"out([
  {
    "name": "models",
    "owner_alive": true,
    "owner_pid": 4242,
    "problem": "",
    "segment_bytes": 75497472
  },
  {
    "name": "a-rather-long-pool-name-of-forty-five-chars-x",
    "owner_alive": false,
    "owner_pid": 17,
    "problem": "",
    "segment_bytes": 1048576
  },
  {
    "name": "broken",
    "owner_alive": false,
    "owner_pid": 0,
    "problem": "bad magic",
    "segment_bytes": 0
  }
]
)out");
}

TEST(PoolFormat, GcSaysWhatItRemovedOrWould) {
  const auto pools = listings();
  EXPECT_EQ(
      gc_output({pools[1]}, /*dry_run=*/true),
      R"out(would remove a-rather-long-pool-name-of-forty-five-chars-x (owner 17 dead, 1048576 bytes)
1 segment(s) stale
)out");
  EXPECT_EQ(
      gc_output({pools[1], pools[0]}, /*dry_run=*/false),
      R"out(removed a-rather-long-pool-name-of-forty-five-chars-x (owner 17 dead, 1048576 bytes)
removed models (owner 4242 dead, 75497472 bytes)
2 segment(s) removed
)out");
  EXPECT_EQ(gc_output({}, /*dry_run=*/false), R"out(0 segment(s) removed
)out");
}

}  // namespace
}  // namespace shmpool::tools
