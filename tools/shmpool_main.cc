// shmpool: serve a pool, look at pools from outside, clean up after dead
// owners, and gate benchmark regressions.
//
//   shmpool serve --name NAME [--size N] [--handlers FILE.py] ... | --config FILE
//   shmpool list [--json]
//   shmpool status NAME [--json | --prometheus]
//   shmpool sessions NAME [--json | --prometheus]
//   shmpool call NAME COMMAND [--session ID] [--args JSON] [--payload FILE] [--payload-out FILE]
//   shmpool gc [NAME...] [--dry-run]
//   shmpool bench compare OLD.json NEW.json [--baseline NAME] [--max-regression 10%]
//
// Exit codes: 0 success, 1 a failed check (regression, pool not found), 2 bad usage.
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>

#include "shmpool/client.h"
#include "shmpool/inspect.h"
#include "shmpool/pool.h"
#include "tools/bench_compare.h"

namespace {

using nlohmann::json;

int fail(const shmpool::Error& e) {
  std::cerr << "shmpool: " << e.to_string() << "\n";
  return 1;
}

std::string seconds_text(double s) {
  if (s < 0) return "-";
  char buf[32];
  if (s < 120)
    std::snprintf(buf, sizeof buf, "%.1fs", s);
  else if (s < 7200)
    std::snprintf(buf, sizeof buf, "%.1fm", s / 60);
  else
    std::snprintf(buf, sizeof buf, "%.1fh", s / 3600);
  return buf;
}

// ---- status ---------------------------------------------------------------

json status_json(const shmpool::PoolSnapshot& p) {
  json slots = json::array();
  for (const auto& s : p.slots) {
    slots.push_back({{"slot", s.slot},
                     {"state", s.state},
                     {"pid", s.pid},
                     {"generation", s.generation},
                     {"checkouts", s.checkouts},
                     {"calls", s.calls},
                     {"successes", s.successes},
                     {"errors", s.errors},
                     {"restarts", s.restarts},
                     {"idle_s", s.idle_s},
                     {"worker_age_s", s.worker_age_s}});
  }
  return {{"name", p.name},
          {"owner_pid", p.owner_pid},
          {"owner_alive", p.owner_alive},
          {"state", p.state},
          {"segment_bytes", p.segment_bytes},
          {"slot_count", p.slot_count},
          {"session_capacity", p.session_capacity},
          {"request_ring_bytes", p.request_ring_bytes},
          {"response_ring_bytes", p.response_ring_bytes},
          {"arena_bytes", p.arena_bytes},
          {"arena_bytes_in_use", p.arena_bytes_in_use},
          {"arena_blocks_in_use", p.arena_blocks_in_use},
          {"arena_pinned_blocks", p.arena_pinned_blocks},
          {"uptime_s", p.uptime_s},
          {"calls", p.calls},
          {"checkout_timeouts", p.checkout_timeouts},
          {"session_table_full", p.session_table_full},
          {"errors_by_category", p.errors_by_category},
          {"waiting", p.waiting},
          {"active_sessions", p.active_sessions},
          {"slots_by_state", p.slots_by_state},
          {"slots", slots}};
}

// Prometheus text exposition format 0.0.4: HELP and TYPE once per family,
// label values escaped.
class Exposition {
 public:
  void family(const char* name, const char* type, const char* help) {
    out_ << "# HELP " << name << " " << help << "\n# TYPE " << name << " " << type << "\n";
  }
  void sample(const char* name, const std::vector<std::pair<std::string, std::string>>& labels,
              double value) {
    out_ << name;
    if (!labels.empty()) {
      out_ << "{";
      for (size_t i = 0; i < labels.size(); ++i) {
        out_ << (i ? "," : "") << labels[i].first << "=\"" << escape(labels[i].second) << "\"";
      }
      out_ << "}";
    }
    char buf[64];
    std::snprintf(buf, sizeof buf, " %.17g\n", value);
    out_ << buf;
  }
  std::string str() const { return out_.str(); }

 private:
  static std::string escape(const std::string& v) {
    std::string o;
    for (char c : v) {
      if (c == '\\' || c == '"')
        o += {'\\', c};
      else if (c == '\n')
        o += "\\n";
      else
        o += c;
    }
    return o;
  }
  std::ostringstream out_;
};

std::string status_prometheus(const shmpool::PoolSnapshot& p) {
  Exposition e;
  const std::pair<std::string, std::string> pool{"pool", p.name};
  e.family("shmpool_up", "gauge", "1 when the pool's owner process is alive.");
  e.sample("shmpool_up", {pool}, p.owner_alive ? 1 : 0);
  e.family("shmpool_uptime_seconds", "gauge", "Seconds since the pool's segment was created.");
  e.sample("shmpool_uptime_seconds", {pool}, p.uptime_s);
  e.family("shmpool_slots", "gauge", "Worker slots by state.");
  for (const auto& [state, n] : p.slots_by_state)
    e.sample("shmpool_slots", {pool, {"state", state}}, n);
  e.family("shmpool_waiting_callers", "gauge", "Callers waiting for a free worker.");
  e.sample("shmpool_waiting_callers", {pool}, p.waiting);
  e.family("shmpool_active_sessions", "gauge", "Sessions in the session table.");
  e.sample("shmpool_active_sessions", {pool}, p.active_sessions);
  e.family("shmpool_calls_total", "counter", "Calls made through the pool.");
  e.sample("shmpool_calls_total", {pool}, double(p.calls));
  e.family("shmpool_errors_total", "counter", "Failed calls by error category.");
  for (const auto& [cat, n] : p.errors_by_category)
    e.sample("shmpool_errors_total", {pool, {"category", cat}}, double(n));
  e.family("shmpool_checkout_timeouts_total", "counter", "Calls that found no worker in time.");
  e.sample("shmpool_checkout_timeouts_total", {pool}, double(p.checkout_timeouts));
  e.family("shmpool_session_table_full_total", "counter",
           "Session records refused because the table was full.");
  e.sample("shmpool_session_table_full_total", {pool}, double(p.session_table_full));
  e.family("shmpool_arena_bytes", "gauge", "Size of the payload arena.");
  e.sample("shmpool_arena_bytes", {pool}, double(p.arena_bytes));
  e.family("shmpool_arena_bytes_in_use", "gauge", "Payload arena bytes held by live blocks.");
  e.sample("shmpool_arena_bytes_in_use", {pool}, double(p.arena_bytes_in_use));
  e.family("shmpool_arena_blocks_in_use", "gauge", "Live payload arena blocks.");
  e.sample("shmpool_arena_blocks_in_use", {pool}, double(p.arena_blocks_in_use));
  e.family("shmpool_worker_calls_total", "counter", "Calls served by each worker slot.");
  for (const auto& s : p.slots)
    e.sample("shmpool_worker_calls_total", {pool, {"slot", std::to_string(s.slot)}},
             double(s.calls));
  e.family("shmpool_worker_errors_total", "counter", "Failed calls on each worker slot.");
  for (const auto& s : p.slots)
    e.sample("shmpool_worker_errors_total", {pool, {"slot", std::to_string(s.slot)}},
             double(s.errors));
  e.family("shmpool_worker_restarts_total", "counter", "Worker processes restarted in each slot.");
  for (const auto& s : p.slots)
    e.sample("shmpool_worker_restarts_total", {pool, {"slot", std::to_string(s.slot)}},
             double(s.restarts));
  return e.str();
}

std::string status_table(const shmpool::PoolSnapshot& p) {
  std::ostringstream o;
  o << "pool " << p.name << "  owner " << p.owner_pid << (p.owner_alive ? " (alive)" : " (DEAD)")
    << "  state " << p.state << "  up " << seconds_text(p.uptime_s) << "\n";
  o << "calls " << p.calls << "  waiting " << p.waiting << "  sessions " << p.active_sessions << "/"
    << p.session_capacity << "  checkout timeouts " << p.checkout_timeouts << "\n";
  o << "payload arena " << p.arena_bytes_in_use << "/" << p.arena_bytes << " bytes in use, "
    << p.arena_blocks_in_use << " blocks (" << p.arena_pinned_blocks << " pinned)\n";
  o << "rings " << p.request_ring_bytes << " request / " << p.response_ring_bytes
    << " response bytes per worker\n";
  o << "errors";
  for (const auto& [cat, n] : p.errors_by_category) o << "  " << cat << " " << n;
  o << "\n\n";
  char line[200];
  std::snprintf(line, sizeof line, "%4s  %-9s %8s %10s %10s %8s %8s %8s %8s\n", "slot", "state",
                "pid", "checkouts", "calls", "errors", "restarts", "idle", "age");
  o << line;
  for (const auto& s : p.slots) {
    std::snprintf(line, sizeof line, "%4u  %-9s %8d %10llu %10llu %8llu %8llu %8s %8s\n", s.slot,
                  s.state.c_str(), int(s.pid), (unsigned long long)s.checkouts,
                  (unsigned long long)s.calls, (unsigned long long)s.errors,
                  (unsigned long long)s.restarts, seconds_text(s.idle_s).c_str(),
                  seconds_text(s.worker_age_s).c_str());
    o << line;
  }
  return o.str();
}

// ---- sessions -------------------------------------------------------------

std::string sessions_output(const std::string& pool, const std::vector<shmpool::SessionInfo>& all,
                            bool as_json, bool as_prometheus) {
  // Session times are CLOCK_MONOTONIC, which is steady_clock on Linux.
  const int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                          std::chrono::steady_clock::now().time_since_epoch())
                          .count();
  if (as_json) {
    json arr = json::array();
    for (const auto& s : all) {
      arr.push_back({{"id", s.id},
                     {"operations", s.operations},
                     {"errors", s.errors},
                     {"last_slot", s.last_slot},
                     {"age_s", double(now - s.created_ns) / 1e9},
                     {"idle_s", double(now - s.last_activity_ns) / 1e9}});
    }
    return json{{"pool", pool}, {"sessions", arr}}.dump(2) + "\n";
  }
  if (as_prometheus) {
    Exposition e;
    e.family("shmpool_sessions", "gauge", "Sessions in the session table.");
    e.sample("shmpool_sessions", {{"pool", pool}}, double(all.size()));
    e.family("shmpool_session_operations_total", "counter", "Calls made in each session.");
    for (const auto& s : all)
      e.sample("shmpool_session_operations_total", {{"pool", pool}, {"session", s.id}},
               double(s.operations));
    e.family("shmpool_session_errors_total", "counter", "Failed calls in each session.");
    for (const auto& s : all)
      e.sample("shmpool_session_errors_total", {{"pool", pool}, {"session", s.id}},
               double(s.errors));
    return e.str();
  }
  std::ostringstream o;
  char line[256];
  std::snprintf(line, sizeof line, "%-40s %10s %8s %9s %8s %8s\n", "session", "operations",
                "errors", "last_slot", "age", "idle");
  o << line;
  for (const auto& s : all) {
    std::snprintf(line, sizeof line, "%-40s %10llu %8llu %9d %8s %8s\n", s.id.c_str(),
                  (unsigned long long)s.operations, (unsigned long long)s.errors, s.last_slot,
                  seconds_text(double(now - s.created_ns) / 1e9).c_str(),
                  seconds_text(double(now - s.last_activity_ns) / 1e9).c_str());
    o << line;
  }
  o << all.size() << " session(s)\n";
  return o.str();
}

// ---- call -----------------------------------------------------------------

struct CallOptions {
  std::string pool, command, session, args = "{}", payload_file, payload_out;
  double timeout_s = 30;
};

std::optional<std::vector<uint8_t>> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

int call(const CallOptions& o) {
  auto args = shmpool::args_from_json(o.args);
  if (!args.ok()) {
    std::cerr << "shmpool call: --args is not valid JSON: " << args.error().to_string() << "\n";
    return 2;
  }
  std::vector<uint8_t> payload;
  if (!o.payload_file.empty()) {
    auto bytes = read_file(o.payload_file);
    if (!bytes) {
      std::cerr << "shmpool call: cannot read --payload " << o.payload_file << "\n";
      return 2;
    }
    payload = std::move(*bytes);
  }
  auto client = shmpool::Client::attach(o.pool);
  if (!client.ok()) return fail(client.error());
  shmpool::ExecOptions opt;
  opt.payload = payload;
  opt.operation_timeout = std::chrono::milliseconds(int64_t(o.timeout_s * 1000));
  auto r = o.session.empty() ? (*client)->execute_anonymous(o.command, *args, opt)
                             : (*client)->execute_in_session(o.session, o.command, *args, opt);
  if (!r.ok()) return fail(r.error());
  std::cout << r->json() << "\n";
  if (!r->payload().empty()) {
    if (o.payload_out.empty()) {
      std::cerr << "(reply payload: " << r->payload().size()
                << " bytes; --payload-out FILE keeps it)\n";
    } else {
      std::ofstream out(o.payload_out, std::ios::binary);
      out.write(reinterpret_cast<const char*>(r->payload().data()),
                std::streamsize(r->payload().size()));
      if (!out) {
        std::cerr << "shmpool call: cannot write " << o.payload_out << "\n";
        return 1;
      }
    }
  }
  return 0;
}

// ---- serve ----------------------------------------------------------------

struct ServeOptions {
  shmpool::PoolConfig config;
  // Segment sizes (unset: automatic, shrunk to fit a small /dev/shm).
  uint64_t arena_bytes = 0, ring_bytes = 0;
  CLI::Option *arena_opt = nullptr, *ring_opt = nullptr;
  std::vector<std::string> env;  // KEY=VALUE
  double checkout_timeout_s = 5, operation_timeout_s = 30, startup_timeout_s = 10;
  double health_check_s = 0, session_ttl_s = 3600;
};

int serve(ServeOptions o) {
  for (const auto& kv : o.env) {
    auto eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) {
      std::cerr << "shmpool serve: --env wants KEY=VALUE, got '" << kv << "'\n";
      return 2;
    }
    o.config.env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  if (o.arena_opt && o.arena_opt->count() > 0) o.config.payload_arena_bytes = o.arena_bytes;
  if (o.ring_opt && o.ring_opt->count() > 0) {
    o.config.request_ring_bytes = o.ring_bytes;
    o.config.response_ring_bytes = o.ring_bytes;
  }
  auto ms = [](double s) { return std::chrono::milliseconds(int64_t(s * 1000)); };
  o.config.checkout_timeout = ms(o.checkout_timeout_s);
  o.config.operation_timeout = ms(o.operation_timeout_s);
  o.config.startup_timeout = ms(o.startup_timeout_s);
  o.config.health_check_interval = ms(o.health_check_s);
  o.config.session_ttl = ms(o.session_ttl_s);
  // A closed stdout (`shmpool serve | head -1`, a parent that read the
  // ready line and closed its pipe) must not kill the pool by SIGPIPE at its
  // "shutting down" line, before it removes its segment. Workers get the
  // default back when they are spawned.
  std::signal(SIGPIPE, SIG_IGN);
  // Block the stop signals before any thread starts, then wait for one.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  auto pool = shmpool::Pool::start(o.config);
  if (!pool.ok()) return fail(pool.error());
  std::cout << "serving pool " << (*pool)->name() << " (pid " << ::getpid()
            << "); SIGINT or SIGTERM stops it" << std::endl;
  int sig = 0;
  sigwait(&stop, &sig);
  std::cout << "signal " << sig << ": shutting down" << std::endl;
  auto done = (*pool)->shutdown(std::chrono::seconds(10));
  if (!done.ok()) return fail(done.error());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"shmpool: pools of Python workers over shared memory"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "shmpool " SHMPOOL_VERSION);
  int rc = 0;

  // serve
  ServeOptions serve_opts;
  auto* serve_cmd = app.add_subcommand("serve", "Start a pool and run it until SIGINT/SIGTERM");
  // Config files are read by the top-level app (CLI11 2.1 reads none for a
  // subcommand); fallthrough lets `shmpool serve --config F` reach it. Keys
  // go under [serve], named like the long options: name = "models".
  app.set_config("--config", "", "Read options from a TOML/INI file ([serve] name = \"x\" ...)");
  serve_cmd->fallthrough();
  auto& c = serve_opts.config;
  serve_cmd->add_option("--name", c.name, "Pool name (1-64 of [A-Za-z0-9_.-])")->required();
  serve_cmd->add_option("--size", c.size, "Workers (default: CPUs)");
  serve_cmd->add_option("--max-overflow", c.max_overflow, "Extra workers started on demand");
  serve_cmd->add_option("--handlers", c.handler_modules, "Python handler module files")
      ->check(CLI::ExistingFile);
  serve_cmd->add_option("--python", c.python, "Python interpreter for the workers");
  serve_cmd->add_flag("--lazy", c.lazy, "Start workers on demand (keep --min-warm ready)");
  serve_cmd->add_option("--min-warm", c.min_warm, "Workers started at once when lazy");
  serve_cmd->add_option("--checkout-timeout", serve_opts.checkout_timeout_s, "Seconds");
  serve_cmd->add_option("--operation-timeout", serve_opts.operation_timeout_s, "Seconds");
  serve_cmd->add_option("--startup-timeout", serve_opts.startup_timeout_s, "Seconds");
  serve_cmd->add_option("--health-check", serve_opts.health_check_s,
                        "Seconds between pings (0: off)");
  serve_cmd->add_option("--session-ttl", serve_opts.session_ttl_s, "Seconds a session may idle");
  serve_cmd->add_option("--env", serve_opts.env, "KEY=VALUE for the workers' environment");
  serve_opts.arena_opt =
      serve_cmd
          ->add_option("--arena-bytes", serve_opts.arena_bytes,
                       "Payload arena size, e.g. 16M (0: none; default: 64M, less if /dev/shm "
                       "is small)")
          ->transform(CLI::AsSizeValue(false));
  serve_cmd
      ->add_option("--worker-malloc-threshold", c.worker_malloc_threshold,
                   "Workers' malloc keeps freed memory for reuse up to this allocation size, "
                   "e.g. 32M (the default and the most; 0: glibc's defaults)")
      ->transform(CLI::AsSizeValue(false));
  serve_opts.ring_opt =
      serve_cmd
          ->add_option("--ring-bytes", serve_opts.ring_bytes,
                       "Request and response ring size per worker, e.g. 1M (default: 4M, less if "
                       "/dev/shm is small)")
          ->transform(CLI::AsSizeValue(false));
  serve_cmd->callback([&] { rc = serve(serve_opts); });

  // list
  bool list_json = false;
  auto* list_cmd =
      app.add_subcommand("list", "Pools on this machine and whether their owner lives");
  list_cmd->add_flag("--json", list_json, "JSON instead of a table");
  list_cmd->callback([&] {
    auto pools = shmpool::list_pools();
    if (list_json) {
      json arr = json::array();
      for (const auto& p : pools)
        arr.push_back({{"name", p.name},
                       {"owner_pid", p.owner_pid},
                       {"owner_alive", p.owner_alive},
                       {"segment_bytes", p.segment_bytes},
                       {"problem", p.problem}});
      std::cout << arr.dump(2) << "\n";
      return;
    }
    std::printf("%-40s %8s %-6s %12s\n", "pool", "owner", "alive", "bytes");
    for (const auto& p : pools) {
      std::printf("%-40s %8d %-6s %12llu %s\n", p.name.c_str(), int(p.owner_pid),
                  !p.problem.empty() ? "?"
                  : p.owner_alive    ? "yes"
                                     : "DEAD",
                  (unsigned long long)p.segment_bytes, p.problem.c_str());
    }
  });

  // status, sessions
  std::string pool_name;
  bool as_json = false, as_prometheus = false;
  for (auto* cmd :
       {app.add_subcommand("status", "A pool's workers and counters, read from its segment"),
        app.add_subcommand("sessions", "A pool's sessions, read from its segment")}) {
    cmd->add_option("NAME", pool_name, "Pool name")->required();
    auto* j = cmd->add_flag("--json", as_json, "JSON");
    auto* p = cmd->add_flag("--prometheus", as_prometheus, "Prometheus text exposition format");
    j->excludes(p);
    const bool is_status = cmd->get_name() == "status";
    cmd->callback([&, is_status] {
      if (is_status) {
        auto snap = shmpool::inspect_pool(pool_name);
        if (!snap.ok()) {
          rc = fail(snap.error());
          return;
        }
        std::cout << (as_json         ? status_json(*snap).dump(2) + "\n"
                      : as_prometheus ? status_prometheus(*snap)
                                      : status_table(*snap));
      } else {
        auto all = shmpool::inspect_sessions(pool_name);
        if (!all.ok()) {
          rc = fail(all.error());
          return;
        }
        std::cout << sessions_output(pool_name, *all, as_json, as_prometheus);
      }
    });
  }

  // gc
  bool dry_run = false;
  std::vector<std::string> gc_names;
  auto* gc_cmd = app.add_subcommand("gc", "Remove segments whose owner process is dead");
  gc_cmd->add_option("NAME", gc_names, "Only these pools (default: all)");
  gc_cmd->add_flag("--dry-run", dry_run, "Only say what would be removed");
  gc_cmd->callback([&] {
    std::vector<shmpool::PoolListing> stale;
    if (dry_run) {
      for (auto& p : shmpool::list_pools()) {
        const bool named = gc_names.empty() ||
                           std::find(gc_names.begin(), gc_names.end(), p.name) != gc_names.end();
        if (named && p.problem.empty() && !p.owner_alive) stale.push_back(p);
      }
    } else {
      stale = shmpool::remove_stale_pools(gc_names);
    }
    for (const auto& p : stale) {
      std::printf("%s %s (owner %d dead, %llu bytes)\n", dry_run ? "would remove" : "removed",
                  p.name.c_str(), int(p.owner_pid), (unsigned long long)p.segment_bytes);
    }
    std::printf("%zu segment(s) %s\n", stale.size(), dry_run ? "stale" : "removed");
  });

  // call
  CallOptions call_opts;
  auto* call_cmd = app.add_subcommand("call", "Call a command on a served pool from this process");
  call_cmd->add_option("NAME", call_opts.pool, "Pool name")->required();
  call_cmd->add_option("COMMAND", call_opts.command, "Handler command")->required();
  call_cmd->add_option("--session", call_opts.session, "Session id (default: anonymous)");
  call_cmd->add_option("--args", call_opts.args, "Arguments as a JSON object (default {})");
  call_cmd->add_option("--payload", call_opts.payload_file, "File sent as the request payload")
      ->check(CLI::ExistingFile);
  call_cmd->add_option("--payload-out", call_opts.payload_out, "Write the reply payload here");
  call_cmd->add_option("--timeout", call_opts.timeout_s, "Operation timeout in seconds (30)");
  call_cmd->callback([&] { rc = call(call_opts); });

  // bench compare
  auto* bench_cmd = app.add_subcommand("bench", "Benchmark tools");
  bench_cmd->require_subcommand(1);
  auto* compare_cmd = bench_cmd->add_subcommand(
      "compare", "Compare two Google Benchmark JSON files; exit 1 on a regression");
  std::string old_file, new_file, max_regression = "10%";
  shmpool::tools::CompareOptions copt;
  bool higher = false, lower = false;
  compare_cmd->add_option("OLD", old_file, "Reference run (JSON)")
      ->required()
      ->check(CLI::ExistingFile);
  compare_cmd->add_option("NEW", new_file, "Candidate run (JSON)")
      ->required()
      ->check(CLI::ExistingFile);
  compare_cmd->add_option("--baseline", copt.baseline,
                          "Benchmark (run name) to divide every other one by, per run");
  compare_cmd->add_option("--metric", copt.metric, "real_time (default), cpu_time or a counter");
  compare_cmd->add_option("--max-regression", max_regression,
                          "Fail above this change (10% default)");
  compare_cmd->add_option("--filter", copt.filter, "Regex on benchmark names");
  auto* hi = compare_cmd->add_flag("--higher-is-better", higher, "Larger metric values are better");
  auto* lo = compare_cmd->add_flag("--lower-is-better", lower, "Smaller metric values are better");
  hi->excludes(lo);
  compare_cmd->add_flag("--allow-missing", copt.allow_missing,
                        "A benchmark absent from NEW is not a failure");
  compare_cmd->callback([&] {
    auto limit = shmpool::tools::parse_percent(max_regression);
    if (!limit) {
      std::cerr << "shmpool bench compare: --max-regression wants a percentage like 10%\n";
      rc = 2;
      return;
    }
    copt.max_regression = *limit;
    if (higher) copt.higher_is_better = true;
    if (lower) copt.higher_is_better = false;
    json runs[2];
    const std::string* files[2] = {&old_file, &new_file};
    for (int i = 0; i < 2; ++i) {
      std::ifstream in(*files[i]);
      runs[i] = json::parse(in, nullptr, /*allow_exceptions=*/false);
      if (runs[i].is_discarded()) {
        std::cerr << "shmpool bench compare: " << *files[i] << " is not valid JSON\n";
        rc = 2;
        return;
      }
    }
    auto report = shmpool::tools::compare(runs[0], runs[1], copt);
    std::cout << shmpool::tools::format_report(report, copt);
    rc = report.error.empty() ? (report.passed() ? 0 : 1) : 2;
  });

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  return rc;
}
