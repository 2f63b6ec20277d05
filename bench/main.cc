// shmpool_bench: shared memory vs the pipe + JSON baseline and ZeroMQ, in
// one run, with the same Python handlers. Every timed call's reply is
// checked; worker start is excluded; each call is timed on its own (manual
// real time) so p50/p99 are reported as counters. Cases are named
// family/peer/parameters (case_names.h): --benchmark_filter='BM_Ping/shm'.
//
//   shmpool_bench [google benchmark flags]   e.g. --benchmark_out=b.json
//   --benchmark_out_format=json shmpool_bench --benchmark_format=json    Google Benchmark's JSON on
//   stdout, the tables on stderr shmpool_bench --demo                     headline cases and the
//   comparison tables shmpool_bench --load 0,1,2               the busy-machine cases beside 0, 1,
//   2 busy loops
//
// This file only wires: it reads the options, registers the cases
// (cases.h), runs them through the display Google Benchmark's
// --benchmark_format asks for plus the tables' collector (table_reporter.h),
// and prints the tables.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "bench/busy_loops.h"
#include "bench/cases.h"
#include "bench/table_reporter.h"

namespace {

using shmpool::bench::TableReporter;
using shmpool::bench::TeeReporter;

// "0,1,2" -> {0, 1, 2}; exits on anything else.
std::vector<int> parse_levels(const std::string& list) {
  std::vector<int> levels;
  size_t at = 0;
  while (at <= list.size()) {
    const size_t comma = std::min(list.find(',', at), list.size());
    const std::string item = list.substr(at, comma - at);
    char* end = nullptr;
    const long n = std::strtol(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || n < 0 || n > 64) {
      std::fprintf(stderr, "--load: expected a list of busy-loop counts like 0,1,2, got '%s'\n",
                   list.c_str());
      std::exit(2);
    }
    levels.push_back(int(n));
    at = comma + 1;
  }
  return levels;
}

// The cases the --load table compares (unless --benchmark_filter says
// otherwise): over shm and the peers of its table (not gRPC).
constexpr const char* kLoadCases =
    "--benchmark_filter=BM_(Ping|PingCold|SmallArgs)/(shm|pipe_json|zmq)/|BM_PoolPing/|"
    "BM_PoolThroughput/.*/threads:[14]$";

// The headline cases of --demo.
constexpr const char* kDemoCases =
    "--benchmark_filter=BM_Ping|BM_SmallArgs|BM_Bulk|BM_Memcpy|BM_PoolPing|BM_ClientPing|"
    "BM_PoolThroughput|BM_CheckoutCheckin|BM_WorkerStartup";

struct Options {
  bool demo = false, filtered = false;
  std::vector<int> levels;         // --load: busy loops beside each run
  std::string json_out;            // --benchmark_out
  std::string format = "console";  // --benchmark_format: the display on stdout
};

// Takes shmpool_bench's own options out of `args`; notes the Google
// Benchmark flags it acts on, which stay for benchmark::Initialize.
Options take_options(std::vector<char*>& args) {
  Options o;
  for (auto it = args.begin(); it != args.end();) {
    const std::string a = *it;
    if (a == "--demo") {
      o.demo = true;
      it = args.erase(it);
    } else if (a == "--load" && it + 1 != args.end()) {
      o.levels = parse_levels(*(it + 1));
      it = args.erase(it, it + 2);
    } else if (a.rfind("--load=", 0) == 0) {
      o.levels = parse_levels(a.substr(7));
      it = args.erase(it);
    } else {
      o.filtered = o.filtered || a.rfind("--benchmark_filter=", 0) == 0;
      if (a.rfind("--benchmark_out=", 0) == 0) o.json_out = a.substr(16);
      if (a.rfind("--benchmark_format=", 0) == 0) o.format = a.substr(19);
      ++it;
    }
  }
  return o;
}

// The display of --benchmark_format on stdout. The console keeps its
// counters in columns (the p50/p99 of every case).
std::unique_ptr<benchmark::BenchmarkReporter> make_display(const std::string& format) {
  if (format == "json") return std::make_unique<benchmark::JSONReporter>();
  if (format == "csv") {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    return std::make_unique<benchmark::CSVReporter>();
#pragma GCC diagnostic pop
  }
  return std::make_unique<benchmark::ConsoleReporter>(
      isatty(STDOUT_FILENO) ? benchmark::ConsoleReporter::OO_ColorTabular
                            : benchmark::ConsoleReporter::OO_Tabular);
}

// The machine, in the JSON output's context (Google Benchmark adds CPUs,
// MHz and caches itself).
void add_machine_context() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);) {
    if (line.rfind("model name", 0) == 0) {
      benchmark::AddCustomContext("cpu_model", line.substr(line.find(':') + 2));
      break;
    }
  }
  std::ifstream release("/proc/sys/kernel/osrelease");
  std::string kernel;
  std::getline(release, kernel);
  benchmark::AddCustomContext("kernel", kernel);
  benchmark::AddCustomContext("compiler", "g++ " __VERSION__);
  benchmark::AddCustomContext("build_flags", SHMPOOL_BUILD_FLAGS);
  benchmark::AddCustomContext("wait_strategy",
                              "hybrid (poll while polling pays, at most 50 us; then futex)");
  benchmark::AddCustomContext("python", SHMPOOL_PYTHON);
}

// Each level of a --load run writes its own JSON (F.json -> F-load0.json,
// ...): Google Benchmark's --benchmark_out would rewrite one file per level.
std::string level_json_path(const std::string& json_out, size_t level_count, int level) {
  if (json_out.empty()) return "";
  const size_t dot = json_out.rfind(".json");
  return level_count == 1 ? json_out
         : dot == std::string::npos
             ? json_out + "-load" + std::to_string(level)
             : json_out.substr(0, dot) + "-load" + std::to_string(level) + ".json";
}

// --load: the same cases beside 0, 1, ... busy loops, one run each, then
// one table across the levels.
void run_load_levels(const Options& o) {
  std::vector<std::unique_ptr<TableReporter>> runs;
  for (int level : o.levels) {
    std::printf("\n== with %d busy loop%s beside the benchmark ==\n", level, level == 1 ? "" : "s");
    std::fflush(stdout);
    auto display = make_display(o.format);
    runs.push_back(std::make_unique<TableReporter>());
    std::vector<benchmark::BenchmarkReporter*> to = {display.get(), runs.back().get()};
    std::ofstream json_file;
    benchmark::JSONReporter json;
    if (const std::string path = level_json_path(o.json_out, o.levels.size(), level);
        !path.empty()) {
      json_file.open(path);
      if (!json_file) {
        std::fprintf(stderr, "cannot write %s\n", path.c_str());
        std::exit(1);
      }
      json.SetOutputStream(&json_file);
      json.SetErrorStream(&std::cerr);
      to.push_back(&json);
    }
    TeeReporter tee(to);
    {
      shmpool::bench::BusyLoops loops(level);
      benchmark::RunSpecifiedBenchmarks(&tee);
    }
    runs.back()->PrintTable(stdout);
  }
  TableReporter::PrintLoadTable(stdout, o.levels, runs);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> args(argv, argv + argc);
  Options o = take_options(args);
  std::string filter_arg;
  if (o.demo) {
    filter_arg = kDemoCases;
    args.push_back(filter_arg.data());
  } else if (!o.levels.empty() && !o.filtered) {
    filter_arg = kLoadCases;
    args.push_back(filter_arg.data());
  }
  if (!o.levels.empty()) {
    if (o.format != "console") {
      std::fprintf(stderr,
                   "--load prints one run per level and a table across them on stdout; for JSON "
                   "use --benchmark_out=F.json (one file per level: F-load0.json, ...)\n");
      return 2;
    }
    // Each level writes its own JSON (the tee above).
    std::erase_if(args, [](char* a) {
      return std::strncmp(a, "--benchmark_out=", 16) == 0 ||
             std::strncmp(a, "--benchmark_out_format=", 23) == 0;
    });
  }
  int n = int(args.size());
  benchmark::Initialize(&n, args.data());
  add_machine_context();
  shmpool::bench::register_worker_cases();
  shmpool::bench::register_grpc_cases();
  shmpool::bench::register_real_cases();
  shmpool::bench::register_pool_cases();
  shmpool::bench::register_startup_cases();
  shmpool::bench::register_async_cases();
  shmpool::bench::register_stream_cases();
  shmpool::bench::register_pipelined_cases();
  if (o.levels.empty()) {
    // JSON or CSV on stdout stays parseable: the tables go to stderr. (Google
    // Benchmark's CSV reporter stops when cases' counters differ: filter to
    // cases with the same counters, or use JSON.)
    auto display = make_display(o.format);
    TableReporter tables;
    TeeReporter tee({display.get(), &tables});
    benchmark::RunSpecifiedBenchmarks(&tee);
    tables.PrintTable(o.format == "console" ? stdout : stderr);
  } else {
    run_load_levels(o);
  }
  benchmark::Shutdown();
  return 0;
}
