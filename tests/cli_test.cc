// The `shmpool` command against real pools: status/sessions as a table, JSON
// and Prometheus text; serve until SIGTERM; list and gc after an owner dies;
// clear errors and exit codes.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "ipc/sys.h"
#include "shmpool/pool.h"
#include "tests/process_support.h"
#include "tests/test_support.h"

namespace shmpool {
namespace {

using nlohmann::json;

struct CliRun {
  int exit_code = -1;
  std::string out;  // stdout and stderr
};

std::string quote(const std::string& s) { return "'" + s + "'"; }

CliRun cli(const std::string& args) {
  CliRun r;
  const std::string cmd = quote(SHMPOOL_CLI) + " " + args + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  int status = ::pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

json cli_json(const std::string& args) {
  CliRun r = cli(args);
  EXPECT_EQ(r.exit_code, 0) << r.out;
  json j = json::parse(r.out, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << r.out;
  return j;
}

std::string unique_name(const char* tag) {
  static int n = 0;
  return std::string("cli-") + tag + "-" + std::to_string(::getpid()) + "-" + std::to_string(++n);
}

PoolConfig config(const std::string& name) {
  PoolConfig c;
  c.name = name;
  c.size = 2;
  c.max_overflow = 1;
  c.handler_modules = {SHMPOOL_TEST_HANDLERS};
  return c;
}

class CliTest : public test::LeakCheck {};

TEST_F(CliTest, StatusJsonDescribesALivePool) {
  auto pool = Pool::start(config(unique_name("status")));
  ASSERT_TRUE(pool.ok()) << pool.error().to_string();
  for (int i = 0; i < 3; ++i) ASSERT_TRUE((*pool)->execute_in_session("s1", "ping").ok());
  ASSERT_TRUE((*pool)->execute_anonymous("ping").ok());
  auto bad = (*pool)->execute_anonymous("no_such_command");
  ASSERT_FALSE(bad.ok());

  json j = cli_json("status " + (*pool)->name() + " --json");
  EXPECT_EQ(j["name"], (*pool)->name());
  EXPECT_EQ(j["owner_pid"], ::getpid());
  EXPECT_EQ(j["owner_alive"], true);
  EXPECT_EQ(j["state"], "ready");
  EXPECT_EQ(j["slot_count"], 3);  // 2 + 1 overflow slot
  EXPECT_EQ(j["slots_by_state"]["idle"], 2);
  EXPECT_EQ(j["slots_by_state"]["empty"], 1);
  EXPECT_EQ(j["calls"], 5);
  EXPECT_EQ(j["errors_by_category"]["handler_error"], 1);
  EXPECT_EQ(j["active_sessions"], 1);
  ASSERT_EQ(j["slots"].size(), 3u);
  std::set<int64_t> pids;
  for (const auto& w : (*pool)->status().workers)
    if (w.pid) pids.insert(w.pid);
  std::set<int64_t> shown;
  uint64_t calls = 0;
  for (const auto& s : j["slots"]) {
    if (s["pid"] != 0) shown.insert(s["pid"].get<int64_t>());
    calls += s["calls"].get<uint64_t>();
  }
  EXPECT_EQ(shown, pids);
  EXPECT_GE(calls, 5u) << "worker slots count the calls (plus start-up pings)";

  CliRun table = cli("status " + (*pool)->name());
  EXPECT_EQ(table.exit_code, 0);
  EXPECT_NE(table.out.find("(alive)"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("idle"), std::string::npos) << table.out;
}

TEST_F(CliTest, SessionsJsonMatchesThePool) {
  auto pool = Pool::start(config(unique_name("sessions")));
  ASSERT_TRUE(pool.ok()) << pool.error().to_string();
  for (int i = 0; i < 3; ++i) ASSERT_TRUE((*pool)->execute_in_session("alpha", "ping").ok());
  ASSERT_TRUE((*pool)->execute_in_session("beta", "ping").ok());
  json j = cli_json("sessions " + (*pool)->name() + " --json");
  ASSERT_EQ(j["sessions"].size(), 2u) << j.dump();
  std::map<std::string, uint64_t> ops;
  for (const auto& s : j["sessions"]) ops[s["id"]] = s["operations"];
  EXPECT_EQ(ops["alpha"], 3u);
  EXPECT_EQ(ops["beta"], 1u);
  CliRun table = cli("sessions " + (*pool)->name());
  EXPECT_NE(table.out.find("alpha"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("2 session(s)"), std::string::npos) << table.out;
}

// Checks text against the Prometheus text exposition format 0.0.4: every
// sample belongs to a family announced by HELP then TYPE, names and labels
// are well formed, values are numbers. Returns the samples by "name{labels}".
std::map<std::string, double> parse_prometheus(const std::string& text) {
  static const std::regex help(R"(^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) .+$)");
  static const std::regex type(R"(^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge)$)");
  static const std::regex sample(
      R"re(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*")*\})? (-?[0-9.]+(?:e[-+]?[0-9]+)?)$)re");
  std::map<std::string, double> out;
  std::string helped, typed, type_kind;
  std::set<std::string> families;
  std::istringstream in(text);
  std::smatch m;
  for (std::string line; std::getline(in, line);) {
    if (std::regex_match(line, m, help)) {
      EXPECT_TRUE(families.insert(m[1]).second) << "family announced twice: " << line;
      helped = m[1];
    } else if (std::regex_match(line, m, type)) {
      EXPECT_EQ(m[1], helped) << "TYPE without its HELP: " << line;
      typed = m[1];
      type_kind = m[2];
    } else if (std::regex_match(line, m, sample)) {
      EXPECT_EQ(m[1], typed) << "sample outside its family: " << line;
      if (type_kind == "counter") {
        EXPECT_TRUE(std::string(m[1]).ends_with("_total")) << line;
      }
      out[std::string(m[1]) + std::string(m[2])] = std::stod(m[3]);
    } else {
      ADD_FAILURE() << "not Prometheus text format: '" << line << "'";
    }
  }
  return out;
}

TEST_F(CliTest, PrometheusOutputFollowsTheTextFormat) {
  auto pool = Pool::start(config(unique_name("prom")));
  ASSERT_TRUE(pool.ok()) << pool.error().to_string();
  for (int i = 0; i < 4; ++i) ASSERT_TRUE((*pool)->execute_in_session("s\"q", "ping").ok());
  const std::string name = (*pool)->name();
  CliRun r = cli("status " + name + " --prometheus");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  auto m = parse_prometheus(r.out);
  const std::string pool_label = "{pool=\"" + name + "\"}";
  EXPECT_EQ(m["shmpool_up" + pool_label], 1);
  EXPECT_EQ(m["shmpool_calls_total" + pool_label], 4);
  EXPECT_EQ(m["shmpool_slots{pool=\"" + name + "\",state=\"idle\"}"], 2);
  EXPECT_EQ(m["shmpool_active_sessions" + pool_label], 1);

  CliRun s = cli("sessions " + name + " --prometheus");
  ASSERT_EQ(s.exit_code, 0) << s.out;
  auto sm = parse_prometheus(s.out);
  // The session id's quote is escaped in the label value.
  EXPECT_EQ(sm["shmpool_session_operations_total{pool=\"" + name + "\",session=\"s\\\"q\"}"], 4)
      << s.out;
  EXPECT_EQ(cli("status " + name + " --json --prometheus").exit_code, 2);
}

TEST_F(CliTest, ErrorsAreClearAndExitNonZero) {
  CliRun unknown = cli("status no-such-pool-" + std::to_string(::getpid()));
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_NE(unknown.out.find("resource_error/unknown_pool"), std::string::npos) << unknown.out;
  CliRun bad_name = cli("sessions 'bad name'");
  EXPECT_EQ(bad_name.exit_code, 1);
  EXPECT_NE(bad_name.out.find("config_error/invalid_name"), std::string::npos) << bad_name.out;
  CliRun missing = cli("status");
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.out.find("NAME is required"), std::string::npos) << missing.out;
  CliRun nothing = cli("");
  EXPECT_EQ(nothing.exit_code, 2);
  CliRun no_file = cli("bench compare /nonexistent/a.json /nonexistent/b.json");
  EXPECT_EQ(no_file.exit_code, 2);
  EXPECT_NE(no_file.out.find("/nonexistent/a.json"), std::string::npos) << no_file.out;
  for (const char* sub : {"serve", "list", "status", "sessions", "call", "gc", "bench compare"}) {
    CliRun help = cli(std::string(sub) + " --help");
    EXPECT_EQ(help.exit_code, 0) << sub;
    EXPECT_NE(help.out.find("Usage:"), std::string::npos) << sub << ": " << help.out;
  }
}

TEST_F(CliTest, CallRunsACommandFromAnotherProcess) {
  auto pool = Pool::start(config(unique_name("call")));
  ASSERT_TRUE(pool.ok()) << pool.error().to_string();
  const std::string name = (*pool)->name();
  CliRun echo = cli("call " + name + " echo --session s1 --args '{\"x\": [1, 2.5, \"three\"]}'");
  ASSERT_EQ(echo.exit_code, 0) << echo.out;
  json j = json::parse(echo.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << echo.out;
  EXPECT_EQ(j["x"][2], "three");
  EXPECT_EQ((*pool)->session("s1")->operations, 1u);

  const std::string in = ::testing::TempDir() + name + ".in", out = in + ".out";
  {
    std::ofstream f(in, std::ios::binary);
    f << "payload bytes";
  }
  CliRun ack = cli("call " + name + " ack --payload " + in);
  EXPECT_EQ(ack.exit_code, 0) << ack.out;
  EXPECT_NE(ack.out.find("\"bytes\":13"), std::string::npos) << ack.out;
  CliRun made = cli("call " + name + " make_payload --args '{\"n\": 1000}' --payload-out " + out);
  EXPECT_EQ(made.exit_code, 0) << made.out;
  std::ifstream got(out, std::ios::binary | std::ios::ate);
  EXPECT_EQ(int64_t(got.tellg()), 1000) << made.out;
  std::remove(in.c_str());
  std::remove(out.c_str());

  CliRun bad_json = cli("call " + name + " echo --args '{not json'");
  EXPECT_EQ(bad_json.exit_code, 2);
  EXPECT_NE(bad_json.out.find("not valid JSON"), std::string::npos) << bad_json.out;
  CliRun handler_err = cli("call " + name + " no_such_command");
  EXPECT_EQ(handler_err.exit_code, 1);
  EXPECT_NE(handler_err.out.find("handler_error/unknown_command"), std::string::npos)
      << handler_err.out;
  CliRun no_pool = cli("call no-such-pool-" + std::to_string(::getpid()) + " ping");
  EXPECT_EQ(no_pool.exit_code, 1);
  EXPECT_NE(no_pool.out.find("resource_error/unknown_pool"), std::string::npos) << no_pool.out;
}

TEST_F(CliTest, CallStreamPrintsItemsAsJsonLinesAndCtrlCCancelsIt) {
  auto pool = Pool::start(config(unique_name("stream")));
  ASSERT_TRUE(pool.ok()) << pool.error().to_string();
  const std::string name = (*pool)->name();
  CliRun three = cli("call " + name + " count_stream --stream --args '{\"n\": 3}' 2>/dev/null");
  ASSERT_EQ(three.exit_code, 0) << three.out;
  EXPECT_EQ(three.out, "{\"i\":0}\n{\"i\":1}\n{\"i\":2}\n");
  CliRun failing =
      cli("call " + name + " count_stream --stream --args '{\"n\": 9, \"fail_at\": 2}'");
  EXPECT_EQ(failing.exit_code, 1);
  EXPECT_NE(failing.out.find("{\"i\":1}\n"), std::string::npos) << failing.out;
  EXPECT_NE(failing.out.find("handler_error/handler_exception"), std::string::npos) << failing.out;
  // A stream that would not end: the first item, then Ctrl-C.
  test::Child c = test::spawn_child({SHMPOOL_CLI, "call", name, "count_stream", "--stream",
                                     "--args", "{\"n\": 1000000000}"});
  EXPECT_EQ(c.read_line(), "{\"i\":0}");
  ASSERT_EQ(::kill(c.pid, SIGINT), 0);
  while (!c.read_line().empty()) {
  }  // what it printed before it saw the signal
  const int status = c.wait();
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 130);
  EXPECT_TRUE((*pool)->execute_anonymous("ping").ok()) << "the worker is back in service";
}

// `shmpool serve ARGS` as a child; its first line comes once the pool is ready.
test::Child serve(std::vector<std::string> args) {
  args.insert(args.begin(), {SHMPOOL_CLI, "serve"});
  return test::spawn_child(std::move(args));
}

// Waits (bounded) for a process that is not our child to exit.
bool wait_gone(pid_t pid, int64_t timeout_ns) {
  ipc::SysError err;
  int fd = ipc::pidfd_open(pid, &err);
  if (fd < 0) return true;  // already gone
  return test::wait_exit(fd, ipc::monotonic_ns() + timeout_ns);
}

TEST_F(CliTest, ServeRunsAPoolFromAConfigFileUntilSigterm) {
  const std::string name = unique_name("serve");
  const std::string config_file = ::testing::TempDir() + name + ".toml";
  {
    std::ofstream f(config_file);
    f << "[serve]\nname = \"" << name << "\"\nsize = 2\nhandlers = [\"" << SHMPOOL_TEST_HANDLERS
      << "\"]\n";
  }
  test::Child s = serve({"--config", config_file});
  const std::string first_line = s.read_line();
  std::remove(config_file.c_str());
  ASSERT_GT(s.pid, 0);
  ASSERT_NE(first_line.find("serving pool " + name), std::string::npos) << first_line;
  json j = cli_json("status " + name + " --json");
  EXPECT_EQ(j["owner_pid"], s.pid);
  EXPECT_EQ(j["owner_alive"], true);
  EXPECT_EQ(j["slots_by_state"]["idle"], 2);
  ASSERT_EQ(::kill(s.pid, SIGTERM), 0);
  const int status = s.wait();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_NE(::access(("/dev/shm/shmpool." + name).c_str(), F_OK), 0) << "segment removed";
  for (const auto& w : j["slots"]) {
    if (w["pid"] != 0) {
      EXPECT_TRUE(wait_gone(w["pid"].get<pid_t>(), 0)) << "worker reaped";
    }
  }
}

// The benchmark read serve's ready line and closed the pipe; serve then died
// of SIGPIPE writing "shutting down" and left its segment in /dev/shm.
TEST_F(CliTest, ServeWithItsStdoutClosedStillRemovesItsSegment) {
  const std::string name = unique_name("pipe");
  test::Child s = serve({"--name", name, "--size", "1"});
  const std::string first_line = s.read_line();
  ASSERT_GT(s.pid, 0);
  ASSERT_NE(first_line.find("serving pool " + name), std::string::npos) << first_line;
  std::fclose(s.out);  // nobody reads its stdout any more
  s.out = nullptr;
  ASSERT_EQ(::kill(s.pid, SIGTERM), 0);
  const int status = s.wait();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_NE(::access(("/dev/shm/shmpool." + name).c_str(), F_OK), 0) << "segment removed";
}

TEST_F(CliTest, ADeadOwnerIsListedAsDeadAndGcRemovesItsSegment) {
  const std::string name = unique_name("gc");
  test::Child s = serve({"--name", name, "--size", "2", "--handlers", SHMPOOL_TEST_HANDLERS});
  const std::string first_line = s.read_line();
  ASSERT_GT(s.pid, 0);
  ASSERT_NE(first_line.find("serving pool"), std::string::npos) << first_line;
  json before = cli_json("status " + name + " --json");
  const pid_t owner = s.pid;
  ASSERT_EQ(::kill(owner, SIGKILL), 0);
  s.wait();
  // Its workers notice the owner's death by themselves.
  for (const auto& w : before["slots"]) {
    if (w["pid"] != 0) {
      EXPECT_TRUE(wait_gone(w["pid"].get<pid_t>(), 10'000'000'000));
    }
  }
  auto listed = [&]() -> json {
    for (const auto& p : cli_json("list --json"))
      if (p["name"] == name) return p;
    return nullptr;
  };
  json entry = listed();
  ASSERT_FALSE(entry.is_null());
  EXPECT_EQ(entry["owner_pid"], owner);
  EXPECT_EQ(entry["owner_alive"], false);
  CliRun table = cli("list");
  EXPECT_NE(table.out.find("DEAD"), std::string::npos) << table.out;
  EXPECT_EQ(cli_json("status " + name + " --json")["owner_alive"], false);

  CliRun dry = cli("gc --dry-run " + name);
  EXPECT_EQ(dry.exit_code, 0);
  EXPECT_NE(dry.out.find("would remove " + name), std::string::npos) << dry.out;
  EXPECT_FALSE(listed().is_null()) << "a dry run removes nothing";
  CliRun gc = cli("gc " + name);
  EXPECT_EQ(gc.exit_code, 0);
  EXPECT_NE(gc.out.find("removed " + name), std::string::npos) << gc.out;
  EXPECT_TRUE(listed().is_null());
  EXPECT_NE(gc.out.find("1 segment(s) removed"), std::string::npos) << gc.out;
}

}  // namespace
}  // namespace shmpool
