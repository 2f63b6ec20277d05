// The main of every test binary, with a per-test watchdog: a test that runs
// past its limit fails loudly with its name, every thread's stack (through
// gdb when the machine has it) and the process tree, well before ctest's own
// timeout kills it silently.
#include <gtest/gtest.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

namespace {

constexpr auto kPerTestLimit = std::chrono::seconds(90);  // ctest's TIMEOUT is 120 s

// What the watchdog thread waits on. gtest deletes its listeners at exit;
// this is never destroyed (destroying a condition variable with a waiter blocks).
struct WatchdogState {
  void run() {
    std::unique_lock lock(mu_);
    for (;;) {
      if (!deadline_) {
        cv_.wait(lock);
        continue;
      }
      auto deadline = *deadline_;
      if (cv_.wait_until(lock, deadline) == std::cv_status::timeout && deadline_ == deadline) break;
    }
    std::fprintf(stderr, "\ntest watchdog: %s ran past %lld s; thread stacks and processes:\n",
                 name_.c_str(), static_cast<long long>(kPerTestLimit.count()));
    std::fflush(stderr);
    const std::string pid = std::to_string(::getpid());
    const std::string cmd = "command -v gdb >/dev/null && gdb -batch -nx -p " + pid +
                            " -ex 'thread apply all bt 25' 2>&1 | grep -v '^\\[New LWP' >&2;"
                            " ps -o pid,ppid,stat,etime,args --forest -g $(ps -o sid= -p " +
                            pid + ") >&2";
    (void)!std::system(cmd.c_str());
    _exit(99);
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::optional<std::chrono::steady_clock::time_point> deadline_;
  std::string name_;
};

WatchdogState* const g_watchdog = new WatchdogState;  // never freed, see above

class Watchdog : public ::testing::EmptyTestEventListener {
 public:
  Watchdog() {
    std::thread([s = state_] { s->run(); }).detach();
  }

  void OnTestStart(const ::testing::TestInfo& info) override {
    std::lock_guard lock(state_->mu_);
    state_->name_ = std::string(info.test_suite_name()) + "." + info.name();
    state_->deadline_ = std::chrono::steady_clock::now() + kPerTestLimit;
    state_->cv_.notify_one();
  }
  void OnTestEnd(const ::testing::TestInfo&) override {
    std::lock_guard lock(state_->mu_);
    state_->deadline_.reset();
  }

 private:
  WatchdogState* state_ = g_watchdog;
};

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  ::prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY);  // let the watchdog's gdb attach under Yama
  ::testing::UnitTest::GetInstance()->listeners().Append(new Watchdog);
  return RUN_ALL_TESTS();
}
