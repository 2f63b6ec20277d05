// bench_compare.h: the regression gate behind `shmpool bench compare`.
//
// Compares two Google Benchmark JSON files (--benchmark_out=F
// --benchmark_out_format=json). With a baseline benchmark named, every other
// benchmark's metric is divided by the baseline's from the same run first, so
// a machine that is uniformly slower today does not fail the gate; only a
// change relative to the baseline does.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace shmpool::tools {

struct CompareOptions {
  std::string metric = "real_time";      // real_time, cpu_time or any counter (p50_us, ...)
  std::string baseline;                  // run name of the in-run baseline; empty: absolute values
  double max_regression = 0.10;          // 0.10 = fail when 10 % worse
  std::optional<bool> higher_is_better;  // unset: true for *_per_second metrics
  std::string filter;                    // ECMAScript regex on run names; empty: all
  bool allow_missing = false;            // a benchmark gone from the new file is not a failure
};

// improved/regressed: changed by more than the limit (relative to the baseline).
enum class Verdict { ok, improved, regressed, missing, added, failed };
const char* verdict_name(Verdict v);

struct CompareRow {
  std::string name;
  double old_value = 0, new_value = 0;  // the metric (time in ns for real_time/cpu_time)
  double old_ratio = 0, new_ratio = 0;  // divided by the baseline of the same run (or as is)
  double change = 0;                    // +0.25 = 25 % worse, -0.10 = 10 % better
  Verdict verdict = Verdict::ok;
  std::string note;  // error message of a failed benchmark
};

struct CompareReport {
  std::string error;  // input or usage error: nothing was compared
  std::vector<CompareRow> rows;
  bool passed() const;  // no error, no regression, nothing failed (or missing, unless allowed)
  bool allow_missing = false;
};

// "10%" or "10" (both percent) -> 0.10; nullopt when not a number >= 0.
std::optional<double> parse_percent(const std::string& text);

CompareReport compare(const nlohmann::json& old_run, const nlohmann::json& new_run,
                      const CompareOptions& options);

// A fixed-width table for humans, ending with the verdict line.
std::string format_report(const CompareReport& report, const CompareOptions& options);

}  // namespace shmpool::tools
