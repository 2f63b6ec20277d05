// process_support.h: included by every multi-process test binary.
// WarmUp starts one worker before any test, so process-wide state (the
// child-watch thread and its descriptors) exists before the leak probe first
// counts. Fifo and Gate hold handlers until the test lets them go. LogWatch
// collects worker output lines and waits for one.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <string>
#include <vector>

#include "shmpool/pool.h"
#include "shmpool/value.h"
#include "shmpool/worker.h"

namespace shmpool::test {

class WarmUp : public ::testing::Environment {
 public:
  void SetUp() override {
    WorkerOptions o;
    o.handler_modules = {SHMPOOL_TEST_HANDLERS};
    o.startup_timeout = std::chrono::seconds(30);
    auto w = Worker::start(o);
    if (!w.ok()) {
      // Fatal, not a skip: every test needs a working worker.
      std::fprintf(stderr, "cannot start a worker: %s\n", w.error().to_string().c_str());
      std::exit(1);
    }
  }
};
inline const auto* const kWarmUp = ::testing::AddGlobalTestEnvironment(new WarmUp);

// A FIFO in the temp directory for the `wait_for_fifo` handler, which blocks
// until release() writes a line into it. Removed when destroyed.
struct Fifo {
  std::string path;
  explicit Fifo(const std::string& tag)
      : path((std::filesystem::temp_directory_path() /
              ("shmpool-" + tag + "-" + std::to_string(::getpid()) + ".fifo"))
                 .string()) {
    ::unlink(path.c_str());
    EXPECT_EQ(::mkfifo(path.c_str(), 0600), 0) << path;
  }
  ~Fifo() { ::unlink(path.c_str()); }
  Args args() const {
    return make_args([&](flexbuffers::Builder& b) { b.String("fifo", path); });
  }
  // Opening for writing meets the handler's open for reading.
  bool release() const {
    std::FILE* f = std::fopen(path.c_str(), "w");
    if (!f) return false;
    std::fputs("go\n", f);
    return std::fclose(f) == 0;
  }
};

// A gate for the `wait_at_gate` handler: each call prints "AT_GATE <pid>"
// and then blocks until it takes one byte from this FIFO, so a test that has
// seen N such lines knows N calls are inside a handler at the same time, and
// open(N) lets them finish. The gate holds the FIFO open for reading and
// writing (the handlers' opens never block; a byte written before a handler
// opens waits in the pipe); closing it ends every wait (EOF).
struct Gate {
  std::string path;
  int fd = -1;
  explicit Gate(const std::string& tag)
      : path((std::filesystem::temp_directory_path() /
              ("shmpool-" + tag + "-" + std::to_string(::getpid()) + ".gate"))
                 .string()) {
    ::unlink(path.c_str());
    EXPECT_EQ(::mkfifo(path.c_str(), 0600), 0) << path;
    fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    EXPECT_GE(fd, 0) << path;
  }
  ~Gate() {
    ::unlink(path.c_str());  // first: a handler yet to open fails instead of waiting
    if (fd >= 0) ::close(fd);
  }
  Gate(const Gate&) = delete;
  Gate& operator=(const Gate&) = delete;
  Args args() const {
    return make_args([&](flexbuffers::Builder& b) { b.String("gate", path); });
  }
  // Lets `n` waiting (or yet to arrive) calls through.
  bool open(size_t n) const {
    const std::string bytes(n, 'g');
    return fd >= 0 && ::write(fd, bytes.data(), n) == ssize_t(n);
  }
};

// Collects worker log lines; wait_for_line() blocks until one starts with a prefix.
struct LogWatch {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::string> lines;
  LogCallback callback() {
    return [this](const LogLine& l) {
      std::lock_guard lock(mu);
      lines.emplace_back(l.text);
      cv.notify_all();
    };
  }
  bool wait_for_line(const std::string& prefix, size_t count = 1) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(30), [&] {
      size_t n = 0;
      for (auto& l : lines) n += l.rfind(prefix, 0) == 0;
      return n >= count;
    });
  }
};

// Collects PoolEvents; wait_for() blocks (30 s at most) until enough of a kind arrived.
struct EventLog {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<PoolEvent> events;
  EventCallback callback() {
    return [this](const PoolEvent& e) {
      std::lock_guard lock(mu);
      events.push_back(e);
      cv.notify_all();
    };
  }
  std::vector<PoolEvent> of(PoolEvent::Kind kind) {
    std::lock_guard lock(mu);
    std::vector<PoolEvent> out;
    for (auto& e : events)
      if (e.kind == kind) out.push_back(e);
    return out;
  }
  bool wait_for(PoolEvent::Kind kind, size_t count = 1) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(30), [&] {
      size_t n = 0;
      for (auto& e : events) n += e.kind == kind;
      return n >= count;
    });
  }
};

}  // namespace shmpool::test
