// The chaos run (issue "faults from outside"), short enough for every
// `./run.sh test`: an owner with 3 workers and 2 overflow, three client
// processes with 2 threads each (echo calls, 64 KiB arena echoes, 1 KiB
// echoes, crashing calls), and from outside, as the outside chaos run did: a
// random worker SIGKILLed every 0.2 s, one SIGSTOPped for 1.5 s every 2.5 s
// (past the clients' 1 s operation timeout), one whole client SIGKILLed
// after the second kill (and left unreaped: a zombie holds nothing). Then every count is checked:
// no wrong, lost or hung call, only the errors the faults explain, exact session counts for the
// clients that lived, nothing leaked (slots, arena blocks, waiting count),
// no orphan worker. The counts are printed (CHAOS ...).
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "shmpool/inspect.h"
#include "shmpool/pool.h"
#include "tests/pool_support.h"
#include "tests/test_support.h"

namespace shmpool {
namespace {

struct ClientReport {
  long calls = 0, ok = 0, wrong = 0;
  double slowest_ms = 0;
  std::map<std::string, long> errors;
  std::map<std::string, long> sessions;  // id -> calls made in it
  bool complete = false;                 // its CHAOS line arrived
};

ClientReport read_report(test::Child& c) {
  ClientReport r;
  for (std::string line = c.read_line(); !line.empty(); line = c.read_line()) {
    std::istringstream in(line);
    std::string word;
    in >> word;
    if (word == "SESSION") {
      std::string id;
      long n = 0;
      in >> id >> n;
      r.sessions[id] = n;
    } else if (word == "CHAOS") {
      r.complete = true;
      std::string field;
      while (in >> field) {
        const auto eq = field.find('=');
        const std::string key = field.substr(0, eq), value = field.substr(eq + 1);
        if (key == "calls") r.calls = std::stol(value);
        if (key == "ok") r.ok = std::stol(value);
        if (key == "wrong") r.wrong = std::stol(value);
        if (key == "slowest_ms") r.slowest_ms = std::stod(value);
        if (key == "errors") {
          std::istringstream list(value);
          std::string item;
          while (std::getline(list, item, ',')) {
            const auto colon = item.rfind(':');
            r.errors[item.substr(0, colon)] += std::stol(item.substr(colon + 1));
          }
        }
      }
    }
  }
  return r;
}

bool exited_zero(int status) { return WIFEXITED(status) && WEXITSTATUS(status) == 0; }

class ChaosTest : public test::LeakCheck {};

TEST_F(ChaosTest, WorkersAndAClientKilledAndStoppedUnderLoad) {
  PoolConfig c = test::config("chaos", 3, 2);
  c.operation_timeout = std::chrono::milliseconds(1000);
  c.checkout_timeout = std::chrono::milliseconds(10'000);
  c.overflow_idle_timeout = std::chrono::milliseconds(200);
  c.log = [](const LogLine&) {};  // the crashing calls' tracebacks
  std::mutex events_mu;
  std::vector<std::string> events;  // printed if the run fails
  const int64_t t0 = ipc::monotonic_ns();
  c.on_event = [&](const PoolEvent& e) {
    std::lock_guard lock(events_mu);
    events.push_back(std::to_string((e.time_ns - t0) / 1'000'000) +
                     " ms: " + std::to_string(int(e.kind)) + " slot " + std::to_string(e.slot) +
                     " pid " + std::to_string(e.pid) + " " + e.detail);
  };
  auto pool = test::start(c);
  ASSERT_TRUE(pool);
  constexpr int kThreads = 2, kCalls = 1000;
  auto client = [&](const char* tag, int calls) {
    test::Child child = test::spawn_child({SHMPOOL_CLIENT_HELPER, pool->name(), "chaos", tag,
                                           std::to_string(kThreads), std::to_string(calls)});
    EXPECT_EQ(child.read_line(), "ATTACHED");
    return child;
  };
  // The doomed client calls until it is killed.
  test::Child a = client("a", kCalls), b = client("b", kCalls), doomed = client("doomed", 1 << 30);
  const int64_t deadline = ipc::monotonic_ns() + 90'000'000'000;
  std::mt19937 rng(12345);
  std::set<pid_t> seen;  // every worker pid the run saw
  long kills = 0, stops = 0, clients_killed = 0;
  pid_t stopped = 0;
  int64_t stopped_at = 0, next_kill = 0, next_stop = 0;
  // Faults until both surviving clients are done (their stdout reaches EOF
  // when they exit), looking every 100 ms.
  pollfd done[2] = {{::fileno(a.out), POLLIN, 0}, {::fileno(b.out), POLLIN, 0}};
  ClientReport ra, rb;
  bool a_done = false, b_done = false;
  while (!(a_done && b_done) && ipc::monotonic_ns() < deadline) {
    ipc::retry_eintr([&] { return ::poll(done, 2, 100); });
    if (!a_done && done[0].revents) {
      ra = read_report(a);  // reads to EOF
      a_done = true;
      done[0].fd = -1;
    }
    if (!b_done && done[1].revents) {
      rb = read_report(b);
      b_done = true;
      done[1].fd = -1;
    }
    std::vector<pid_t> live;
    for (const auto& w : pool->status().workers) {
      if (w.pid > 0 && (w.state == "idle" || w.state == "busy")) live.push_back(w.pid);
      if (w.pid > 0) seen.insert(w.pid);
    }
    const int64_t now = ipc::monotonic_ns();
    if (stopped != 0 && now - stopped_at > 1'500'000'000) {
      ::kill(stopped, SIGCONT);
      stopped = 0;
    }
    if (live.empty()) continue;
    const pid_t victim = live[rng() % live.size()];
    if (stopped == 0 && now >= next_stop) {
      if (::kill(victim, SIGSTOP) == 0) {
        stopped = victim;
        stopped_at = now;
        next_stop = now + 2'500'000'000;
        ++stops;
      }
    } else if (victim != stopped && now >= next_kill && ::kill(victim, SIGKILL) == 0) {
      next_kill = now + 200'000'000;
      ++kills;
    }
    if (clients_killed == 0 && kills >= 2) {
      ASSERT_EQ(::kill(doomed.pid, SIGKILL), 0);
      ++clients_killed;
    }
  }
  if (stopped != 0) ::kill(stopped, SIGCONT);
  ASSERT_TRUE(a_done && b_done) << "a client hung: calls did not all return";
  EXPECT_TRUE(exited_zero(a.wait()));
  EXPECT_TRUE(exited_zero(b.wait()));
  doomed.wait();

  // Every call of the surviving clients returned once, right, or with an
  // error the faults explain; none past its checkout + operation timeouts
  // (+ 2 s for a loaded machine).
  long calls = 0, ok = 0, wrong = 0, lost = 0, hung = 0;
  std::map<std::string, long> errors;
  for (const ClientReport* r : {&ra, &rb}) {
    ASSERT_TRUE(r->complete);
    calls += r->calls;
    ok += r->ok;
    wrong += r->wrong;
    lost += kThreads * kCalls - r->calls;
    hung += r->slowest_ms > 13'000;
    for (auto& [type, n] : r->errors) errors[type] += n;
  }
  long explained = 0;
  for (const char* type : {"worker_crashed", "operation_timeout"}) explained += errors[type];
  // (A call that was waiting for a worker the whole time would be a
  // checkout_timeout: not explained by any fault here.)
  // Exact session counts for the clients that lived.
  long session_mismatches = 0;
  for (const ClientReport* r : {&ra, &rb}) {
    for (auto& [id, n] : r->sessions) {
      auto info = pool->session(id);
      if (!info || long(info->operations) != n) ++session_mismatches;
    }
  }
  // Nothing leaked once the faults stop: every slot serves or is empty, no
  // caller counted as waiting, no arena block held (the killed client's
  // blocks are reclaimed by the owner).
  const bool settled = test::eventually(*pool, [&] {
    const PoolStatus s = pool->status();
    return s.busy == 0 && s.dead == 0 && s.starting == 0 && s.queue_length == 0 &&
           s.arena_blocks_in_use == 0;
  });
  const PoolStatus s = pool->status();
  const long leaked = long(s.busy + s.dead + s.queue_length + s.arena_blocks_in_use);
  std::set<pid_t> current;
  for (const auto& w : s.workers)
    if (w.pid > 0) current.insert(w.pid);
  ASSERT_TRUE(pool->shutdown().ok());
  // No orphan: every worker the run saw is gone after the shutdown.
  long orphans = 0;
  for (pid_t pid : seen) orphans += ::kill(pid, 0) == 0;
  std::string error_list;
  for (auto& [type, n] : errors) error_list += " " + type + ":" + std::to_string(n);
  std::printf(
      "CHAOS calls=%ld ok=%ld wrong=%ld lost=%ld hung=%ld errors=[%s ] kills=%ld stops=%ld "
      "clients_killed=%ld leaked=%ld orphans=%ld session_mismatches=%ld\n",
      calls, ok, wrong, lost, hung, error_list.c_str(), kills, stops, clients_killed, leaked,
      orphans, session_mismatches);
  EXPECT_EQ(calls, 2L * kThreads * kCalls);
  EXPECT_EQ(wrong, 0);
  EXPECT_EQ(lost, 0);
  EXPECT_EQ(hung, 0);
  EXPECT_EQ(ok + explained, calls) << "errors the faults do not explain:" << error_list;
  EXPECT_EQ(errors["protocol_error"] + errors["invalid_response"], 0);
  EXPECT_GT(kills, 0);
  EXPECT_EQ(session_mismatches, 0);
  EXPECT_TRUE(settled) << "busy " << s.busy << ", dead " << s.dead << ", waiting " << s.queue_length
                       << ", arena blocks " << s.arena_blocks_in_use;
  EXPECT_EQ(orphans, 0);
  if (HasFailure()) {
    std::lock_guard lock(events_mu);
    for (auto& e : events) std::printf("event %s\n", e.c_str());
  }
}

}  // namespace
}  // namespace shmpool
