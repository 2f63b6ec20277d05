// shmpool: serve a pool, look at pools from outside, clean up after dead
// owners, and gate benchmark regressions.
//
//   shmpool serve --name NAME [--size N] [--handlers FILE.py] ... | --config FILE
//   shmpool list [--json]
//   shmpool status NAME [--json | --prometheus]
//   shmpool sessions NAME [--json | --prometheus]
//   shmpool call NAME COMMAND [--session ID] [--args JSON] [--payload FILE] [--payload-out FILE]
//                [--stream]
//   shmpool gc [NAME...] [--dry-run]
//   shmpool bench compare OLD.json NEW.json [--baseline NAME] [--max-regression 10%]
//
// Exit codes: 0 success, 1 a failed check (regression, pool not found), 2 bad usage.
//
// This file only wires the subcommands and their options (CLI11); each
// subcommand is a function of commands.h, and what it prints is formatted
// by pool_format.h.
#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "tools/commands.h"

using namespace shmpool::tools;

int main(int argc, char** argv) {
  CLI::App app{"shmpool: pools of Python workers over shared memory"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "shmpool " SHMPOOL_VERSION);
  int rc = 0;

  // serve
  ServeOptions serve_opts;
  uint64_t arena_bytes = 0, ring_bytes = 0;
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
  auto* arena_opt =
      serve_cmd
          ->add_option("--arena-bytes", arena_bytes,
                       "Payload arena size, e.g. 16M (0: none; default: 64M, less if /dev/shm "
                       "is small)")
          ->transform(CLI::AsSizeValue(false));
  serve_cmd
      ->add_option("--worker-malloc-threshold", c.worker_malloc_threshold,
                   "Workers' malloc keeps freed memory for reuse up to this allocation size, "
                   "e.g. 32M (the default and the most; 0: glibc's defaults)")
      ->transform(CLI::AsSizeValue(false));
  auto* ring_opt =
      serve_cmd
          ->add_option("--ring-bytes", ring_bytes,
                       "Request and response ring size per worker, e.g. 1M (default: 4M, less if "
                       "/dev/shm is small)")
          ->transform(CLI::AsSizeValue(false));
  serve_cmd->callback([&] {
    if (arena_opt->count() > 0) serve_opts.arena_bytes = arena_bytes;
    if (ring_opt->count() > 0) serve_opts.ring_bytes = ring_bytes;
    rc = serve(serve_opts);
  });

  // list
  bool list_json = false;
  auto* list_cmd =
      app.add_subcommand("list", "Pools on this machine and whether their owner lives");
  list_cmd->add_flag("--json", list_json, "JSON instead of a table");
  list_cmd->callback([&] { rc = list(list_json ? OutputFormat::json : OutputFormat::table); });

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
      const OutputFormat format = as_json         ? OutputFormat::json
                                  : as_prometheus ? OutputFormat::prometheus
                                                  : OutputFormat::table;
      rc = is_status ? status(pool_name, format) : sessions(pool_name, format);
    });
  }

  // gc
  bool dry_run = false;
  std::vector<std::string> gc_names;
  auto* gc_cmd = app.add_subcommand("gc", "Remove segments whose owner process is dead");
  gc_cmd->add_option("NAME", gc_names, "Only these pools (default: all)");
  gc_cmd->add_flag("--dry-run", dry_run, "Only say what would be removed");
  gc_cmd->callback([&] { rc = gc(gc_names, dry_run); });

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
  call_cmd->add_option("--timeout", call_opts.timeout_s,
                       "Operation timeout in seconds (30; with --stream: per item)");
  call_cmd->add_flag("--stream", call_opts.stream,
                     "Streaming call: print each item as a JSON line as it comes; Ctrl-C cancels");
  call_cmd->callback([&] { rc = call(call_opts); });

  // bench compare
  auto* bench_cmd = app.add_subcommand("bench", "Benchmark tools");
  bench_cmd->require_subcommand(1);
  auto* compare_cmd = bench_cmd->add_subcommand(
      "compare", "Compare two Google Benchmark JSON files; exit 1 on a regression");
  BenchCompareArgs compare_args;
  CompareOptions& copt = compare_args.options;
  compare_cmd->add_option("OLD", compare_args.old_file, "Reference run (JSON)")
      ->required()
      ->check(CLI::ExistingFile);
  compare_cmd->add_option("NEW", compare_args.new_file, "Candidate run (JSON)")
      ->required()
      ->check(CLI::ExistingFile);
  compare_cmd->add_option("--baseline", copt.baseline,
                          "Benchmark (run name) to divide every other one by, per run");
  compare_cmd->add_option("--metric", copt.metric, "real_time (default), cpu_time or a counter");
  compare_cmd->add_option("--max-regression", compare_args.max_regression,
                          "Fail above this change (10% default)");
  compare_cmd->add_option("--filter", copt.filter, "Regex on benchmark names");
  auto* hi = compare_cmd->add_flag("--higher-is-better", compare_args.higher_is_better,
                                   "Larger metric values are better");
  auto* lo = compare_cmd->add_flag("--lower-is-better", compare_args.lower_is_better,
                                   "Smaller metric values are better");
  hi->excludes(lo);
  compare_cmd->add_flag("--allow-missing", copt.allow_missing,
                        "A benchmark absent from NEW is not a failure");
  compare_cmd->callback([&] { rc = bench_compare(compare_args); });

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  return rc;
}
