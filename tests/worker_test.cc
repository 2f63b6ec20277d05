// A real Python worker over both transports: built-in commands, args of
// every type, payloads, handler errors, crashes and timeouts.
#include "shmpool/worker.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <thread>

#include "ipc/sys.h"
#include "tests/process_support.h"
#include "tests/test_support.h"

namespace shmpool {
namespace {

WorkerOptions options(Transport t) {
  WorkerOptions o;
  o.transport = t;
  o.handler_modules = {SHMPOOL_TEST_HANDLERS};
  o.startup_timeout = std::chrono::seconds(30);
  return o;
}

class WorkerTest : public test::LeakCheck, public ::testing::WithParamInterface<Transport> {
 protected:
  std::unique_ptr<Worker> start(WorkerOptions o) {
    auto w = Worker::start(std::move(o));
    EXPECT_TRUE(w.ok()) << (w.ok() ? "" : w.error().to_string());
    return w.ok() ? std::move(w.value()) : nullptr;
  }
  std::unique_ptr<Worker> start() { return start(options(GetParam())); }
};

TEST_P(WorkerTest, BuiltInCommands) {
  auto w = start();
  ASSERT_TRUE(w);
  auto ping = w->call("ping");
  ASSERT_TRUE(ping.ok()) << ping.error().to_string();
  EXPECT_TRUE(ping->value().AsMap()["pong"].AsBool());

  auto info = w->call("info");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->value().AsMap()["pid"].AsInt64(), w->pid());
  EXPECT_EQ(w->info().value().AsMap()["pid"].AsInt64(), w->pid());
  EXPECT_NE(info->json().find("\"types\""), std::string::npos) << info->json();
  EXPECT_NE(info->json().find("\"python\":\"3."), std::string::npos) << info->json();

  auto echo = w->call("echo", make_args([](flexbuffers::Builder& b) { b.String("s", "hi"); }));
  ASSERT_TRUE(echo.ok());
  EXPECT_EQ(echo->json(), R"({"s":"hi"})");
  // An empty map (left out of the request) and no args at all: an empty dict.
  for (const Args& none : {empty_args(), Args{}}) {
    auto empty = w->call("echo", none);
    ASSERT_TRUE(empty.ok()) << empty.error().to_string();
    EXPECT_EQ(empty->json(), "{}");
  }

  std::vector<uint8_t> data = {1, 2, 3, 250};
  auto ack = w->call("ack", empty_args(), data);
  ASSERT_TRUE(ack.ok());
  EXPECT_EQ(ack->value().AsMap()["bytes"].AsInt64(), 4);
}

TEST_P(WorkerTest, ArgsOfEveryTypeRoundTrip) {
  auto w = start();
  ASSERT_TRUE(w);
  const std::string unicode = "h\xc3\xa9llo \xe2\x9c\x93";
  const std::vector<uint8_t> blob = {0, 1, 2, 255, 0};
  Args args = make_args([&](flexbuffers::Builder& b) {
    b.Null("none");
    b.Bool("t", true);
    b.Bool("f", false);
    b.Int("neg", -1234567890123);
    b.Int("zero", 0);
    b.UInt("big", 18446744073709551615ull);
    b.Double("pi", 3.25);
    b.String("str", unicode);
    b.Key("bytes");
    b.Blob(blob.data(), blob.size());
    b.Vector("list", [&] {
      b.Int(1);
      b.String("two");
      b.Double(3.5);
    });
    b.Map("nested", [&] { b.Map("deeper", [&] { b.Int("x", 9); }); });
  });
  auto r = w->call("types", args);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  auto m = r->value().AsMap();
  EXPECT_TRUE(m["none"].IsNull());
  EXPECT_TRUE(m["t"].AsBool());
  EXPECT_FALSE(m["f"].AsBool());
  EXPECT_TRUE(m["f"].IsBool());
  EXPECT_EQ(m["neg"].AsInt64(), -1234567890123);
  EXPECT_EQ(m["zero"].AsInt64(), 0);
  EXPECT_EQ(m["big"].AsUInt64(), 18446744073709551615ull);
  EXPECT_DOUBLE_EQ(m["pi"].AsDouble(), 3.25);
  EXPECT_EQ(m["str"].AsString().str(), unicode);
  ASSERT_TRUE(m["bytes"].IsBlob());
  auto got = m["bytes"].AsBlob();
  EXPECT_EQ(std::vector<uint8_t>(got.data(), got.data() + got.size()), blob);
  auto list = m["list"].AsVector();
  ASSERT_EQ(list.size(), 3u);
  EXPECT_EQ(list[0].AsInt64(), 1);
  EXPECT_EQ(list[1].AsString().str(), "two");
  EXPECT_DOUBLE_EQ(list[2].AsDouble(), 3.5);
  EXPECT_EQ(m["nested"].AsMap()["deeper"].AsMap()["x"].AsInt64(), 9);
}

TEST_P(WorkerTest, ContextCarriesSessionAndRequestIds) {
  auto w = start();
  ASSERT_TRUE(w);
  CallOptions co;
  co.session_id = "session-42";
  auto r = w->call("session", empty_args(), {}, co);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->value().AsMap()["session_id"].AsString().str(), "session-42");
  EXPECT_EQ(r->value().AsMap()["command"].AsString().str(), "session");
  auto anon = w->call("session");
  ASSERT_TRUE(anon.ok());
  EXPECT_TRUE(anon->value().AsMap()["session_id"].IsNull());
  EXPECT_GT(anon->value().AsMap()["request_id"].AsUInt64(),
            r->value().AsMap()["request_id"].AsUInt64());
}

// Over shm a call that repeats the last one (same command, session and
// args) reuses its request envelope with the id and deadline rewritten: each
// call must still carry its own.
TEST_P(WorkerTest, RepeatedCallsCarryTheirOwnIdAndDeadline) {
  auto w = start();
  ASSERT_TRUE(w);
  uint64_t last_id = 0;
  const int64_t timeouts_ms[] = {10'000, 20'000, 20'000, 5'000, 5'000, 7'000};
  for (int i = 0; i < 6; ++i) {
    const int64_t timeout_ms = timeouts_ms[i];
    CallOptions co;
    co.timeout = std::chrono::milliseconds(timeout_ms);
    const int64_t before = ipc::monotonic_ns();
    auto r = w->call("deadline", empty_args(), {}, co);
    const int64_t after = ipc::monotonic_ns();
    ASSERT_TRUE(r.ok()) << r.error().to_string();
    auto m = r->value().AsMap();
    EXPECT_GT(m["request_id"].AsUInt64(), last_id);
    last_id = m["request_id"].AsUInt64();
    if (GetParam() == Transport::shm) {
      const int64_t deadline = m["deadline_ns"].AsInt64();
      EXPECT_GE(deadline, before + timeout_ms * 1'000'000) << "timeout " << timeout_ms;
      EXPECT_LE(deadline, after + timeout_ms * 1'000'000) << "timeout " << timeout_ms;
    }
    // Another command in between after the 3rd: the next call is built anew.
    if (i == 2) {
      ASSERT_TRUE(w->call("ping").ok());
    }
  }
}

// Over shm a reply whose result has the last one's length reuses the last
// reply envelope with the id and result bytes rewritten: each must still
// carry its own.
TEST_P(WorkerTest, RepliesOfTheSameLengthCarryTheirOwnContent) {
  auto w = start();
  ASSERT_TRUE(w);
  for (int64_t x : {1, 2, 3, 300, 301, 4, 5}) {  // 300, 301: longer results in between
    auto r = w->call("types", make_args([&](flexbuffers::Builder& b) { b.Int("x", x); }));
    ASSERT_TRUE(r.ok()) << r.error().to_string();
    EXPECT_EQ(r->value().AsMap()["x"].AsInt64(), x);
  }
}

TEST_P(WorkerTest, PayloadsOfManySizesRoundTrip) {
  auto w = start();
  ASSERT_TRUE(w);
  for (size_t n : {size_t(0), size_t(1), size_t(7), size_t(4095), size_t(65536), size_t(1) << 20}) {
    std::vector<uint8_t> p(n);
    for (size_t i = 0; i < n; ++i) p[i] = uint8_t(i * 31 + 7);
    auto r = w->call("echo", empty_args(), p);
    ASSERT_TRUE(r.ok()) << n << ": " << r.error().to_string();
    ASSERT_EQ(r->payload().size(), n);
    EXPECT_TRUE(std::equal(p.begin(), p.end(), r->payload().begin())) << n;
  }
  auto made = w->call("make_payload", make_args([](flexbuffers::Builder& b) { b.Int("n", 1000); }));
  ASSERT_TRUE(made.ok());
  ASSERT_EQ(made->payload().size(), 1000u);
  for (size_t i = 0; i < 1000; ++i) ASSERT_EQ(made->payload()[i], uint8_t((i * 7) & 0xff));
}

TEST_P(WorkerTest, NumpyReadsThePayloadWithoutCopying) {
  auto w = start();
  ASSERT_TRUE(w);
  std::vector<double> values(1000);
  double expected = 0;
  for (size_t i = 0; i < values.size(); ++i) expected += (values[i] = double(i) * 0.5);
  std::span<const uint8_t> bytes(reinterpret_cast<const uint8_t*>(values.data()),
                                 values.size() * 8);
  auto r = w->call("numpy_sum",
                   make_args([](flexbuffers::Builder& b) { b.String("dtype", "float64"); }), bytes);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_DOUBLE_EQ(r->value().AsMap()["sum"].AsDouble(), expected);
  EXPECT_EQ(r->value().AsMap()["n"].AsInt64(), 1000);
  EXPECT_FALSE(r->value().AsMap()["writeable"].AsBool())
      << "the view into the request is read-only";
}

TEST_P(WorkerTest, HandlerExceptionBecomesHandlerErrorWithTraceback) {
  auto w = start();
  ASSERT_TRUE(w);
  auto r = w->call("fail",
                   make_args([](flexbuffers::Builder& b) { b.String("message", "bad input 17"); }));
  ASSERT_FALSE(r.ok());
  const Error& e = r.error();
  EXPECT_EQ(e.category, Category::handler_error);
  EXPECT_EQ(e.type, "handler_exception");
  EXPECT_EQ(e.message, "bad input 17");
  EXPECT_EQ(e.context.at("exception_type"), "ValueError");
  EXPECT_NE(e.context.at("traceback").find("Traceback"), std::string::npos);
  EXPECT_NE(e.context.at("traceback").find("test_handlers.py"), std::string::npos);
  EXPECT_EQ(e.context.at("command"), "fail");
  // The worker survives a handler error.
  EXPECT_TRUE(w->call("ping").ok());
}

TEST_P(WorkerTest, AResultKeyWithANulIsAClearError) {
  if (GetParam() != Transport::shm) GTEST_SKIP() << "JSON carries such keys";
  auto w = start();
  ASSERT_TRUE(w);
  auto r = w->call("nul_key");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().category, Category::handler_error);
  EXPECT_NE(r.error().message.find("NUL"), std::string::npos) << r.error().to_string();
  EXPECT_TRUE(w->call("ping").ok());
}

TEST_P(WorkerTest, AResultOfAnUnsupportedTypeIsAClearError) {
  auto w = start();
  ASSERT_TRUE(w);
  auto r = w->call("unsendable");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().category, Category::handler_error) << r.error().to_string();
  EXPECT_NE(r.error().message.find("set"), std::string::npos) << r.error().to_string();
  EXPECT_TRUE(w->call("ping").ok());  // the worker survives
}

TEST_P(WorkerTest, ArgsNestedTooDeeplyAreAClearError) {
  if (GetParam() != Transport::shm) GTEST_SKIP() << "the limit is the FlatBuffers verifier's";
  auto w = start();
  ASSERT_TRUE(w);
  std::function<void(flexbuffers::Builder&, int)> nest = [&](flexbuffers::Builder& b, int depth) {
    if (depth == 0) {
      b.Int(1);
      return;
    }
    size_t v = b.StartVector();
    nest(b, depth - 1);
    b.EndVector(v, false, false);
  };
  Args args = make_args([&](flexbuffers::Builder& b) {
    b.Key("deep");
    nest(b, 100);
  });
  // The worker's verifier refuses the request, and says so: not a reply
  // "for another call".
  auto r = w->call("types", args);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().category, Category::protocol_error) << r.error().to_string();
  EXPECT_EQ(r.error().type, "invalid_request") << r.error().to_string();
}

TEST_P(WorkerTest, UnknownCommandIsAClearError) {
  auto w = start();
  ASSERT_TRUE(w);
  auto r = w->call("no_such_command");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().category, Category::handler_error);
  EXPECT_EQ(r.error().type, "unknown_command");
  EXPECT_NE(r.error().message.find("no_such_command"), std::string::npos);
  EXPECT_TRUE(w->call("ping").ok());
}

TEST_P(WorkerTest, PrintInHandlersDoesNotBreakTheChannel) {
  std::mutex mu;
  std::vector<std::string> lines;
  WorkerOptions o = options(GetParam());
  o.log = [&](const LogLine& l) {
    std::lock_guard lock(mu);
    lines.emplace_back(l.text);
  };
  auto w = start(o);
  ASSERT_TRUE(w);
  for (int i = 0; i < 20; ++i) {
    auto r = w->call("noisy", make_args([&](flexbuffers::Builder& b) { b.Int("tag", i); }));
    ASSERT_TRUE(r.ok()) << r.error().to_string();
    EXPECT_TRUE(r->value().AsMap()["ok"].AsBool());
  }
  ASSERT_TRUE(w->stop().ok());  // flushes and reaps: every line has arrived
  std::lock_guard lock(mu);
  int stdout_lines = 0;
  for (auto& l : lines) stdout_lines += l.rfind("noise on", 0) == 0;
  EXPECT_EQ(stdout_lines, 40);
}

TEST_P(WorkerTest, WorkerKilledMidCallGivesWorkerErrorNotAHang) {
  std::mutex mu;
  std::condition_variable cv;
  bool blocking = false;
  WorkerOptions o = options(GetParam());
  o.log = [&](const LogLine& l) {
    if (l.text.rfind("BLOCKING", 0) == 0) {
      std::lock_guard lock(mu);
      blocking = true;
      cv.notify_all();
    }
  };
  auto w = start(o);
  ASSERT_TRUE(w);
  const pid_t pid = w->pid();
  std::thread killer([&] {
    std::unique_lock lock(mu);
    // Wait for the event (the handler announced it is running), with a deadline.
    if (cv.wait_for(lock, std::chrono::seconds(30), [&] { return blocking; })) ::kill(pid, SIGKILL);
  });
  CallOptions co;
  co.timeout = std::chrono::seconds(60);
  auto r = w->call("announce_and_block", empty_args(), {}, co);
  killer.join();
  ASSERT_TRUE(blocking);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().category, Category::worker_error);
  EXPECT_EQ(r.error().type, "worker_crashed");
  EXPECT_EQ(r.error().context.at("worker_pid"), std::to_string(pid));
  EXPECT_EQ(r.error().context.at("exit_signal"), std::to_string(SIGKILL));
  auto next = w->call("ping");
  ASSERT_FALSE(next.ok());
  EXPECT_EQ(next.error().type, "worker_unavailable");
}

TEST_P(WorkerTest, WorkerExitingDuringACallReportsItsExitCode) {
  auto w = start();
  ASSERT_TRUE(w);
  auto r = w->call("exit_now", make_args([](flexbuffers::Builder& b) { b.Int("code", 7); }));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().type, "worker_crashed");
  EXPECT_EQ(r.error().context.at("exit_code"), "7");
}

TEST_P(WorkerTest, OperationTimeoutKillsTheWorker) {
  auto w = start();
  ASSERT_TRUE(w);
  CallOptions co;
  co.timeout = std::chrono::milliseconds(300);
  auto r = w->call("announce_and_block", empty_args(), {}, co);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().category, Category::timeout_error);
  EXPECT_EQ(r.error().type, "operation_timeout");
  EXPECT_EQ(r.error().context.at("timeout_ms"), "300");
  EXPECT_EQ(r.error().context.at("exit_signal"), std::to_string(SIGKILL));
}

TEST_P(WorkerTest, ImportErrorInHandlersFailsStartupWithTheStderrTail) {
  WorkerOptions o = options(GetParam());
  o.handler_modules = {SHMPOOL_BAD_HANDLERS};
  auto w = Worker::start(o);
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.error().category, Category::worker_error);
  EXPECT_EQ(w.error().type, "startup_failed");
  EXPECT_NE(w.error().context.at("stderr_tail").find("ModuleNotFoundError"), std::string::npos)
      << w.error().to_string();
}

TEST_P(WorkerTest, MissingInterpreterIsAResourceError) {
  WorkerOptions o = options(GetParam());
  o.python = "/nonexistent/python3";
  auto w = Worker::start(o);
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.error().category, Category::resource_error);
  EXPECT_EQ(w.error().type, "spawn_failed");
  EXPECT_EQ(w.error().context.at("python"), "/nonexistent/python3");
}

INSTANTIATE_TEST_SUITE_P(Transports, WorkerTest,
                         ::testing::Values(Transport::shm, Transport::pipe_json),
                         [](const auto& info) { return std::string(transport_name(info.param)); });

class ShmWorkerTest : public test::LeakCheck {};

TEST_F(ShmWorkerTest, PayloadLargerThanTheArenaIsRejectedAtOnce) {
  WorkerOptions o = options(Transport::shm);
  o.request_ring_bytes = 64 * 1024;
  o.payload_arena_bytes = 64 * 1024;
  auto w = Worker::start(o);
  ASSERT_TRUE(w.ok());
  std::vector<uint8_t> big(128 * 1024);
  auto r = (*w)->call("ack", empty_args(), big);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().category, Category::resource_error);
  EXPECT_EQ(r.error().type, "payload_too_large");
  EXPECT_EQ(r.error().context.at("arena_bytes"), "65536");
  EXPECT_TRUE((*w)->call("ping").ok()) << "the worker is still usable";
}

TEST_F(ShmWorkerTest, WithoutAnArenaPayloadsTravelInTheRing) {
  WorkerOptions o = options(Transport::shm);
  o.request_ring_bytes = 64 * 1024;
  o.payload_arena_bytes = 0;
  auto w = Worker::start(o);
  ASSERT_TRUE(w.ok());
  std::vector<uint8_t> fits(40 * 1024, 3);
  auto ok = (*w)->call("checksum", empty_args(), fits);
  ASSERT_TRUE(ok.ok()) << ok.error().to_string();
  EXPECT_EQ(ok->value().AsMap()["sum"].AsUInt64(), 3u * 40 * 1024);
  std::vector<uint8_t> big(128 * 1024);
  auto r = (*w)->call("ack", empty_args(), big);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().type, "payload_too_large");
  EXPECT_TRUE((*w)->call("ping").ok());
}

TEST_F(ShmWorkerTest, ResultTooLargeForTheResponseRingIsAnError) {
  WorkerOptions o = options(Transport::shm);
  o.response_ring_bytes = 64 * 1024;
  auto w = Worker::start(o);
  ASSERT_TRUE(w.ok());
  auto r = (*w)->call("big_result", make_args([](flexbuffers::Builder& b) { b.Int("n", 200000); }));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().category, Category::resource_error);
  EXPECT_TRUE((*w)->call("ping").ok());
}

TEST_F(ShmWorkerTest, AContextKeptPastItsCallRaises) {
  auto w = Worker::start(options(Transport::shm));
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->call("keep_ctx").ok());
  auto r = (*w)->call("use_kept_ctx");
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->value().AsMap()["raised"].AsBool());
}

TEST_F(ShmWorkerTest, InvalidNameAndRingSizeAreConfigErrors) {
  WorkerOptions o = options(Transport::shm);
  o.name = "bad/name";
  auto w = Worker::start(o);
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.error().category, Category::config_error);
  EXPECT_EQ(w.error().type, "invalid_name");
  o = options(Transport::shm);
  o.request_ring_bytes = 1000;
  w = Worker::start(o);
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.error().type, "invalid_ring_size");
}

TEST_F(ShmWorkerTest, SourceCheckoutInTheWorkingDirectoryDoesNotShadowTheBuiltPackage) {
  // From the project root, `python -m python_shm_worker` used to import the
  // source package (no native core) instead of the built one.
  char old_cwd[4096];
  ASSERT_NE(getcwd(old_cwd, sizeof old_cwd), nullptr);
  ASSERT_EQ(chdir(SHMPOOL_SOURCE_DIR), 0);
  auto w = Worker::start(options(Transport::shm));
  ASSERT_EQ(chdir(old_cwd), 0);
  ASSERT_TRUE(w.ok()) << w.error().to_string();
  EXPECT_TRUE((*w)->call("ping").ok());
}

std::string fd_target(const std::string& link) {
  char buf[256];
  ssize_t n = ::readlink(link.c_str(), buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, size_t(n)) : std::string();
}

TEST_F(ShmWorkerTest, HostDescriptorsWithoutCloseOnExecDoNotReachTheWorker) {
  // A host's inherited sockets or pipes must not leak into Python workers,
  // and neither may Boost.Process's own exec-error pipe of a concurrent
  // spawn (which once kept a pool's start() blocked for a worker's life).
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);  // deliberately without O_CLOEXEC
  const std::string mine = fd_target("/proc/self/fd/" + std::to_string(fds[1]));
  ASSERT_EQ(mine.rfind("pipe:", 0), 0u) << mine;
  auto w = Worker::start(options(Transport::shm));
  ASSERT_TRUE(w.ok()) << w.error().to_string();
  const std::string dir = "/proc/" + std::to_string((*w)->pid()) + "/fd";
  size_t seen = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    ++seen;
    EXPECT_NE(fd_target(entry.path().string()), mine) << entry.path();
  }
  EXPECT_GE(seen, 3u) << "the worker's stdio was listed";
  ::close(fds[0]);
  ::close(fds[1]);
}

// The hexadecimal signal set of a "SigBlk:"/"SigIgn:" line in /proc/PID/status.
uint64_t proc_signal_set(pid_t pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(field + ":", 0) == 0)
      return std::stoull(line.substr(field.size() + 1), nullptr, 16);
  }
  ADD_FAILURE() << field << " not found for " << pid;
  return ~0ull;
}

TEST_F(ShmWorkerTest, WorkersStartWithNoBlockedOrIgnoredStopSignals) {
  // A host that blocks SIGTERM to sigwait() for it, or ignores SIGINT, must
  // not pass that on: its workers would no longer stop when asked.
  sigset_t block, old;
  sigemptyset(&block);
  sigaddset(&block, SIGTERM);
  ASSERT_EQ(pthread_sigmask(SIG_BLOCK, &block, &old), 0);
  auto* old_int = ::signal(SIGINT, SIG_IGN);
  auto w = Worker::start(options(Transport::shm));
  ::signal(SIGINT, old_int);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  ASSERT_TRUE(w.ok()) << w.error().to_string();
  const uint64_t bit_term = 1ull << (SIGTERM - 1), bit_int = 1ull << (SIGINT - 1);
  EXPECT_EQ(proc_signal_set((*w)->pid(), "SigBlk") & bit_term, 0u);
  // Python installs its own SIGINT handler (KeyboardInterrupt): caught, not ignored.
  EXPECT_EQ(proc_signal_set((*w)->pid(), "SigIgn") & (bit_term | bit_int), 0u);
}

TEST_F(ShmWorkerTest, StopRemovesTheSegmentAndReapsTheWorker) {
  auto w = Worker::start(options(Transport::shm));
  ASSERT_TRUE(w.ok());
  const std::string shm = "shmpool." + (*w)->name();
  EXPECT_TRUE(test::shm_entries().count(shm));
  ASSERT_TRUE((*w)->stop().ok());
  EXPECT_FALSE(test::shm_entries().count(shm));
  EXPECT_TRUE(test::child_pids().empty());
  EXPECT_TRUE((*w)->stop().ok()) << "stop is idempotent";
}

}  // namespace
}  // namespace shmpool
