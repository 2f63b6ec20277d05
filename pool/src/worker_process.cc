#include "pool/src/worker_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/process/args.hpp>
#include <boost/process/child.hpp>
#include <boost/process/env.hpp>
#include <boost/process/environment.hpp>
#include <boost/process/exe.hpp>
#include <boost/process/extend.hpp>
#include <boost/process/posix.hpp>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <mutex>

#include "ipc/sys.h"
#include "shmpool/build_config.h"

namespace bp = boost::process;

namespace shmpool::detail {

std::string default_python() { return SHMPOOL_DEFAULT_PYTHON; }
namespace {
// `dir` if it holds the python_shm_worker package.
bool holds_package(const std::filesystem::path& dir) {
  std::error_code ec;
  return std::filesystem::is_regular_file(dir / "python_shm_worker" / "__init__.py", ec);
}
}  // namespace

std::string default_python_path() {
  // An installed program (the `shmpool` command, or any program installed
  // into the same prefix) uses its own prefix's package, found from where
  // the executable is now, not where it was built.
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    auto dir = (exe.parent_path() / SHMPOOL_PYTHON_PATH_FROM_BINDIR).lexically_normal();
    if (holds_package(dir)) return dir.string();
  }
  return SHMPOOL_BUILD_PYTHON_PATH;
}

std::string package_path_from_header(const char* header, const char* relative) {
  std::filesystem::path h(header);
  if (!h.is_absolute()) return {};
  auto dir = (h.parent_path() / relative).lexically_normal();
  return holds_package(dir) ? dir.string() : std::string();
}

namespace {
constexpr size_t kTailLines = 40;

struct Pipe {
  int r = -1, w = -1;
  bool open() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return false;
    r = fds[0];
    w = fds[1];
    return true;
  }
  static void close_fd(int& fd) {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
};
// Runs in the child between fork and exec (async-signal-safe calls only).
//  - Every descriptor above stderr is marked close-on-exec, so a worker holds
//    nothing of its host but the three pipes. Beyond hygiene: Boost.Process
//    makes its exec-error pipe with pipe() and only then sets FD_CLOEXEC, so
//    a fork on another thread in that window copies the write end into its
//    child; a worker that kept it would block the first spawn's read of that
//    pipe for the worker's whole life.
//  - The signal mask and ignored signals survive exec: a host that blocks
//    SIGTERM to sigwait() for it (or ignores SIGINT) would hand that to its
//    workers, and they could no longer be stopped gracefully. Dispositions
//    are reset before the mask is cleared, so no inherited handler runs here.
//  - Each worker gets its own process group: a Ctrl-C at the host's terminal
//    reaches the host, which shuts its pool down gracefully, instead of
//    killing the workers under in-flight calls. (Workers still exit when
//    their owner dies: they watch it.)
struct CleanChildState : bp::extend::handler {
  template <typename Executor>
  void on_exec_setup(Executor&) const {
    ::close_range(3, ~0u,
                  CLOSE_RANGE_CLOEXEC);  // ENOSYS before Linux 5.11: the mutex below still holds
    for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGPIPE, SIGUSR1, SIGUSR2, SIGCHLD})
      ::signal(sig, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::setpgid(0, 0);
  }
};

// Our own spawns never overlap, so none of them can copy another's
// half-made Boost pipe (see CleanChildState).
std::mutex& spawn_mutex() {
  static std::mutex mu;
  return mu;
}
}  // namespace

Expected<std::unique_ptr<WorkerProcess>> WorkerProcess::spawn(SpawnSpec spec) {
  if (::access(spec.python.c_str(), X_OK) != 0) {
    return make_error(Category::resource_error, "spawn_failed",
                      "the Python interpreter is missing or not executable")
        .with("python", spec.python)
        .with("errno", std::strerror(errno));
  }
  Pipe in, out, err;
  if (!in.open() || !out.open() || !err.open()) {
    return make_error(Category::resource_error, "spawn_failed", "cannot create pipes")
        .with("errno", std::strerror(errno));
  }
  auto env = boost::this_process::environment();
  bp::environment child_env = env;
  std::string pypath = spec.python_path.empty() ? default_python_path() : spec.python_path;
  if (auto it = child_env.find("PYTHONPATH"); it != child_env.end() && !it->to_string().empty()) {
    pypath += ":" + it->to_string();
  }
  // Python 3.11+: do not put the working directory first on sys.path, where
  // a source checkout of python_shm_worker (without its native core) would
  // shadow the built package. The working directory stays importable, last.
  child_env["PYTHONSAFEPATH"] = "1";
  std::error_code cwd_ec;
  auto cwd = std::filesystem::current_path(cwd_ec);
  if (!cwd_ec) pypath += ":" + cwd.string();
  child_env["PYTHONPATH"] = pypath;
  child_env["PYTHONUNBUFFERED"] = "1";
  for (auto& [k, v] : spec.env) {
    // The package's directory stays first on a PYTHONPATH the host adds to.
    child_env[k] = k == "PYTHONPATH" && !v.empty() ? pypath + ":" + v : v;
  }

  std::vector<std::string> args = {"-m", "python_shm_worker"};
  args.insert(args.end(), spec.args.begin(), spec.args.end());
  std::unique_ptr<WorkerProcess> wp(new WorkerProcess());
  std::error_code ec;
  std::unique_lock spawn_lock(spawn_mutex());
  bp::child child(bp::exe = spec.python, bp::args = args, child_env, bp::posix::fd.bind(0, in.r),
                  bp::posix::fd.bind(1, out.w), bp::posix::fd.bind(2, err.w), CleanChildState{},
                  ec);
  spawn_lock.unlock();
  Pipe::close_fd(in.r);
  Pipe::close_fd(out.w);
  Pipe::close_fd(err.w);
  if (ec || !child.valid()) {
    if (child.id() > 0) {
      int status;
      ipc::retry_eintr([&] { return ::waitpid(child.id(), &status, 0); });  // reap the failed fork
    }
    Pipe::close_fd(in.w);
    Pipe::close_fd(out.r);
    Pipe::close_fd(err.r);
    return make_error(Category::resource_error, "spawn_failed",
                      "cannot start the Python interpreter")
        .with("python", spec.python)
        .with("reason", ec.message());
  }
  wp->pid_ = child.id();
  child.detach();  // we reap through the pidfd (ChildWatch), not Boost
  ipc::SysError serr;
  int pidfd = ipc::pidfd_open(wp->pid_, &serr);
  if (pidfd < 0) {
    ::kill(wp->pid_, SIGKILL);
    Pipe::close_fd(in.w);
    Pipe::close_fd(out.r);
    Pipe::close_fd(err.r);
    return make_error(Category::resource_error, "spawn_failed", serr.message());
  }
  wp->pidfd_ = fcntl(pidfd, F_DUPFD_CLOEXEC, 0);
  int watched_out = out.r;
  if (spec.pipe_stdio) {
    wp->in_fd_ = in.w;
    wp->out_fd_ = out.r;
    watched_out = -1;
  } else {
    Pipe::close_fd(in.w);  // the worker sees EOF on stdin
  }
  ChildCallbacks cb;
  WorkerProcess* self = wp.get();
  const int slot = spec.slot;
  const pid_t pid = wp->pid_;
  LogCallback log = spec.log;
  cb.on_line = [self, slot, pid, log](std::string_view line, bool is_stderr) {
    if (is_stderr) {
      std::lock_guard lock(self->mu_);
      self->tail_.emplace_back(line);
      if (self->tail_.size() > kTailLines) self->tail_.pop_front();
    }
    if (log) {
      log(LogLine{slot, pid, is_stderr, line});
    } else {
      std::fprintf(stderr, "[worker %d pid %d] %.*s\n", slot, int(pid), int(line.size()),
                   line.data());
    }
  };
  auto on_exit = std::move(spec.on_exit);
  cb.on_exit = [self, on_exit](const ExitInfo& e) {
    // The owner's callback runs first: once wait_exit() returns, it is done
    // and whatever it touches (the segment) may be released.
    if (on_exit) on_exit(e);
    {
      std::lock_guard lock(self->mu_);
      self->exit_ = e;
    }
    self->cv_.notify_all();
  };
  wp->watch_id_ = child_watch().add(pidfd, watched_out, err.r, std::move(cb));
  return wp;
}

WorkerProcess::~WorkerProcess() {
  terminate(0);
  child_watch().remove(watch_id_);
  if (pidfd_ >= 0) ::close(pidfd_);
  if (in_fd_ >= 0) ::close(in_fd_);
  if (out_fd_ >= 0) ::close(out_fd_);
}

bool WorkerProcess::exited() const {
  std::lock_guard lock(mu_);
  return exit_.has_value();
}

std::optional<ExitInfo> WorkerProcess::exit_info() const {
  std::lock_guard lock(mu_);
  return exit_;
}

bool WorkerProcess::wait_exit(int64_t deadline_ns) const {
  std::unique_lock lock(mu_);
  for (;;) {
    if (exit_) return true;
    int64_t left = deadline_ns - ipc::monotonic_ns();
    if (left <= 0) return false;
    cv_.wait_for(lock, std::chrono::nanoseconds(left));
  }
}

void WorkerProcess::kill(int sig) const {
  // Through the pidfd: never reaches another process that reused the pid.
  if (pidfd_ >= 0) ::syscall(SYS_pidfd_send_signal, pidfd_, sig, nullptr, 0);
}

void WorkerProcess::terminate(int64_t grace_ns) {
  if (exited()) return;
  if (grace_ns > 0) {
    kill(SIGTERM);
    if (wait_exit(ipc::monotonic_ns() + grace_ns)) return;
  }
  kill(SIGKILL);
  // SIGKILL cannot be ignored; the bound only guards against a stuck kernel.
  wait_exit(ipc::monotonic_ns() + 10'000'000'000);
}

std::vector<std::string> WorkerProcess::stderr_tail() const {
  std::lock_guard lock(mu_);
  return {tail_.begin(), tail_.end()};
}

std::string WorkerProcess::stderr_tail_text() const {
  std::string s;
  for (auto& l : stderr_tail()) {
    if (!s.empty()) s += '\n';
    s += l;
  }
  return s;
}

}  // namespace shmpool::detail
