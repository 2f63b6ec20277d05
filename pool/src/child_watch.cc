#include "pool/src/child_watch.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "ipc/sys.h"

namespace shmpool::detail {

std::string ExitInfo::describe() const {
  if (signal != 0) {
    const char* abbrev = sigabbrev_np(signal);
    return std::string("killed by SIG") + (abbrev ? abbrev : std::to_string(signal));
  }
  return "exited with code " + std::to_string(exit_code);
}

namespace {
// epoll data: id << 2 | kind.
enum Kind : uint64_t { kPid = 0, kOut = 1, kErr = 2, kWake = 3 };
}  // namespace

struct ChildWatch::State {
  struct Child {
    int pidfd = -1, out = -1, err = -1;
    std::string out_buf, err_buf;
    ChildCallbacks cb;
  };
  int epfd = -1;
  int wakefd = -1;
  std::mutex mu;  // guards children and is held while a callback runs
  std::map<int, Child> children;
  int next_id = 1;
  bool stopping = false;
  std::thread::id thread_id;
  std::thread thread;

  void watch(int fd, int id, Kind k) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = (uint64_t(id) << 2) | k;
    epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
  }
  static void close_child(Child& c, int epfd) {
    for (int* fd : {&c.pidfd, &c.out, &c.err}) {
      if (*fd >= 0) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, *fd, nullptr);
        ::close(*fd);
        *fd = -1;
      }
    }
  }
  void drain(Child& c, int& fd, std::string& buf, bool is_stderr) {
    char tmp[4096];
    ssize_t n = ipc::retry_eintr([&] { return ::read(fd, tmp, sizeof tmp); });
    if (n <= 0) {
      if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
        if (!buf.empty() && c.cb.on_line) c.cb.on_line(buf, is_stderr);
        buf.clear();
        epoll_ctl(epfd, EPOLL_CTL_DEL, fd, nullptr);
        ::close(fd);
        fd = -1;
      }
      return;
    }
    buf.append(tmp, size_t(n));
    size_t start = 0;
    for (size_t nl; (nl = buf.find('\n', start)) != std::string::npos; start = nl + 1) {
      if (c.cb.on_line) c.cb.on_line(std::string_view(buf).substr(start, nl - start), is_stderr);
    }
    buf.erase(0, start);
    if (buf.size() > 65536) {  // a line without end: flush it in pieces
      if (c.cb.on_line) c.cb.on_line(buf, is_stderr);
      buf.clear();
    }
  }
  void run() {
    epoll_event events[16];
    for (;;) {
      int n = ipc::retry_eintr([&] { return epoll_wait(epfd, events, 16, -1); });
      std::lock_guard lock(mu);
      if (stopping) return;
      for (int i = 0; i < n; ++i) {
        uint64_t d = events[i].data.u64;
        Kind k = Kind(d & 3);
        if (k == kWake) {
          uint64_t v;
          (void)!::read(wakefd, &v, sizeof v);
          continue;
        }
        auto it = children.find(int(d >> 2));
        if (it == children.end()) continue;
        Child& c = it->second;
        if (k == kOut && c.out >= 0) drain(c, c.out, c.out_buf, false);
        if (k == kErr && c.err >= 0) drain(c, c.err, c.err_buf, true);
        if (k == kPid && c.pidfd >= 0) {
          // Drain what the child wrote before it died, then reap it.
          while (c.out >= 0) drain(c, c.out, c.out_buf, false);
          while (c.err >= 0) drain(c, c.err, c.err_buf, true);
          siginfo_t info{};
          ExitInfo exit;
          if (ipc::retry_eintr([&] { return waitid(P_PIDFD, id_t(c.pidfd), &info, WEXITED); }) ==
              0) {
            if (info.si_code == CLD_EXITED) {
              exit.exit_code = info.si_status;
            } else {
              exit.signal = info.si_status;
            }
          }
          epoll_ctl(epfd, EPOLL_CTL_DEL, c.pidfd, nullptr);
          ::close(c.pidfd);
          c.pidfd = -1;
          auto cb = std::move(c.cb.on_exit);
          if (cb) cb(exit);
        }
      }
    }
  }
};

ChildWatch::ChildWatch() : s_(std::make_unique<State>()) {
  s_->epfd = epoll_create1(EPOLL_CLOEXEC);
  s_->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  s_->watch(s_->wakefd, 0, kWake);
  s_->thread = std::thread([this] { s_->run(); });
  s_->thread_id = s_->thread.get_id();
}

ChildWatch::~ChildWatch() {
  {
    std::lock_guard lock(s_->mu);
    s_->stopping = true;
  }
  uint64_t one = 1;
  (void)!::write(s_->wakefd, &one, sizeof one);
  s_->thread.join();
  for (auto& [id, c] : s_->children) State::close_child(c, s_->epfd);
  ::close(s_->wakefd);
  ::close(s_->epfd);
}

int ChildWatch::add(int pidfd, int out_fd, int err_fd, ChildCallbacks callbacks) {
  std::unique_lock lock(s_->mu, std::defer_lock);
  if (std::this_thread::get_id() != s_->thread_id) lock.lock();
  int id = s_->next_id++;
  auto& c = s_->children[id];
  c.pidfd = pidfd;
  c.out = out_fd;
  c.err = err_fd;
  c.cb = std::move(callbacks);
  for (int fd : {out_fd, err_fd}) {
    if (fd >= 0) {
      int fl = fcntl(fd, F_GETFL);
      fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    }
  }
  if (out_fd >= 0) s_->watch(out_fd, id, kOut);
  if (err_fd >= 0) s_->watch(err_fd, id, kErr);
  s_->watch(pidfd, id, kPid);
  return id;
}

void ChildWatch::remove(int id) {
  std::unique_lock lock(s_->mu, std::defer_lock);
  if (std::this_thread::get_id() != s_->thread_id) lock.lock();
  auto it = s_->children.find(id);
  if (it == s_->children.end()) return;
  State::close_child(it->second, s_->epfd);
  s_->children.erase(it);
}

ChildWatch& child_watch() {
  static ChildWatch* watch = new ChildWatch();  // never destroyed: children may outlive statics
  return *watch;
}

}  // namespace shmpool::detail
