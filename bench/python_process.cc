#include "bench/python_process.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace shmpool::bench {

pid_t spawn_python(std::vector<std::string> args, const posix_spawn_file_actions_t* actions) {
  args.insert(args.begin(), SHMPOOL_PYTHON);
  args.push_back("--owner-pid");
  args.push_back(std::to_string(::getpid()));  // it exits with us, however we end
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e)
    if (std::strncmp(*e, "PYTHONPATH=", 11) != 0) env_strings.emplace_back(*e);
  env_strings.push_back(std::string("PYTHONPATH=") + SHMPOOL_PYTHON_DIR);
  env_strings.push_back("PYTHONSAFEPATH=1");  // not a source checkout in the working directory
  std::vector<char*> envp;
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  pid_t pid = 0;
  if (posix_spawn(&pid, argv[0], actions, nullptr, argv.data(), envp.data()) != 0) {
    std::fprintf(stderr, "cannot start %s %s %s\n", args[0].c_str(), args[1].c_str(),
                 args.size() > 2 ? args[2].c_str() : "");
    std::exit(1);
  }
  return pid;
}

void reap(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
}

}  // namespace shmpool::bench
