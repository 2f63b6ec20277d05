// The comparison tables printed after a run (Markdown, as the README shows
// them): shm against pipe-JSON, ZeroMQ and gRPC per case, bulk payloads
// against memcpy, real workloads against their compute floor, pool calls/s,
// the served pool against the owner's, streams and pipelined calls per
// peer, and one table across the --load levels.
//
// TableReporter only collects: it reports nothing itself, so it runs beside
// the display Google Benchmark's --benchmark_format asks for (TeeReporter),
// and prints its tables where it is told (stdout under the console display,
// stderr when stdout carries JSON or CSV). Rows are found by the names in
// case_names.h. Called by Google Benchmark's reporting thread, then by main.
#pragma once

#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace shmpool::bench {

// Forwards every report to each of its reporters, in order (the display,
// the tables, a --load level's JSON file). Runs only if all accept the context.
class TeeReporter : public benchmark::BenchmarkReporter {
 public:
  explicit TeeReporter(std::vector<benchmark::BenchmarkReporter*> to) : to_(std::move(to)) {}
  bool ReportContext(const Context& context) override;
  void ReportRuns(const std::vector<Run>& runs) override;
  void Finalize() override;

 private:
  std::vector<benchmark::BenchmarkReporter*> to_;
};

class TableReporter : public benchmark::BenchmarkReporter {
 public:
  bool ReportContext(const Context&) override { return true; }
  void ReportRuns(const std::vector<Run>& runs) override;

  // Every table of this run (the ones with rows), to `out`.
  void PrintTable(FILE* out) const;
  // The same cases at each load level (busy loops beside the benchmark), one
  // row per case and level: latency cases by p50/p99, throughput by calls/s.
  static void PrintLoadTable(FILE* out, const std::vector<int>& levels,
                             const std::vector<std::unique_ptr<TableReporter>>& runs);

 private:
  void PrintBulkTable(FILE* out) const;
  void PrintRealTable(FILE* out) const;
  void PrintStreamTable(FILE* out) const;

  struct Row {
    double p50 = 0, p99 = 0, mean_us = 0, items_per_s = 0, bytes_per_s = 0, first_item_us = 0;
  };
  std::map<std::string, std::map<std::string, Row>> rows_;  // case -> transport -> row
  std::vector<std::string> order_;
  // BM_Bulk: (op, bytes) -> mode -> p50 us; BM_Memcpy: bytes -> p50 us.
  std::map<std::pair<int64_t, int64_t>, std::map<int64_t, double>> bulk_;
  std::map<int64_t, double> memcpy_p50_;
  // BM_Real: (work, bytes) -> peer (0-2 the transports, 3/4 the floors) -> figures.
  struct RealRow {
    double p50 = 0, p99 = 0, handler = 0, faults = 0;
  };
  std::map<std::pair<int64_t, int64_t>, std::map<int64_t, RealRow>> real_;
};

}  // namespace shmpool::bench
