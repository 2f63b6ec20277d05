#include "tools/bench_compare.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <regex>

namespace shmpool::tools {

using nlohmann::json;

const char* verdict_name(Verdict v) {
  switch (v) {
    case Verdict::ok:
      return "ok";
    case Verdict::improved:
      return "improved";
    case Verdict::regressed:
      return "REGRESSED";
    case Verdict::missing:
      return "MISSING";
    case Verdict::added:
      return "new";
    case Verdict::failed:
      return "FAILED";
  }
  return "?";
}

bool CompareReport::passed() const {
  if (!error.empty()) return false;
  for (const auto& r : rows) {
    if (r.verdict == Verdict::regressed || r.verdict == Verdict::failed) return false;
    if (r.verdict == Verdict::missing && !allow_missing) return false;
  }
  return true;
}

std::optional<double> parse_percent(const std::string& text) {
  std::string t = text;
  if (!t.empty() && t.back() == '%') t.pop_back();
  if (t.empty()) return std::nullopt;
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(t, &used);
  } catch (const std::exception&) {
    return std::nullopt;
  }
  if (used != t.size() || !std::isfinite(v) || v < 0) return std::nullopt;
  return v / 100.0;
}

namespace {

double ns_per_unit(const std::string& unit) {
  if (unit == "ns") return 1;
  if (unit == "us") return 1e3;
  if (unit == "ms") return 1e6;
  if (unit == "s") return 1e9;
  return 0;
}

struct Sample {
  std::vector<double> values;  // one per repetition
  std::optional<double> median_aggregate;
  std::string error;
  double value() const {
    if (median_aggregate) return *median_aggregate;
    std::vector<double> v = values;
    std::sort(v.begin(), v.end());
    return v.empty()      ? 0
           : v.size() % 2 ? v[v.size() / 2]
                          : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
  }
};

// run name -> its metric, one value per run (median of repetitions).
std::map<std::string, Sample> samples(const json& run, const std::string& metric,
                                      const std::string& which, std::string* error) {
  std::map<std::string, Sample> out;
  if (!run.is_object() || !run.contains("benchmarks") || !run["benchmarks"].is_array()) {
    *error = which + ": not a Google Benchmark JSON file (no \"benchmarks\" array)";
    return out;
  }
  for (const auto& b : run["benchmarks"]) {
    if (!b.is_object() || !b.contains("name") || !b["name"].is_string()) {
      *error = which + ": a benchmark entry without a name";
      return {};
    }
    const std::string run_name = b.value("run_name", b["name"].get<std::string>());
    Sample& s = out[run_name];
    if (b.value("error_occurred", false)) {
      s.error = b.value("error_message", std::string("error_occurred"));
      continue;
    }
    const std::string run_type = b.value("run_type", std::string("iteration"));
    if (run_type == "aggregate" && b.value("aggregate_name", std::string()) != "median") continue;
    if (!b.contains(metric) || !b[metric].is_number()) {
      *error = which + ": benchmark " + run_name + " has no numeric \"" + metric + "\"";
      return {};
    }
    double v = b[metric].get<double>();
    if (metric == "real_time" || metric == "cpu_time") {
      double scale = ns_per_unit(b.value("time_unit", std::string("ns")));
      if (scale == 0) {
        *error = which + ": benchmark " + run_name + " has an unknown time_unit";
        return {};
      }
      v *= scale;
    }
    if (run_type == "aggregate")
      s.median_aggregate = v;
    else
      s.values.push_back(v);
  }
  return out;
}

std::string human(double v, const std::string& metric) {
  char buf[32];
  if (metric == "real_time" || metric == "cpu_time") {
    if (v >= 1e9)
      std::snprintf(buf, sizeof buf, "%.3g s", v / 1e9);
    else if (v >= 1e6)
      std::snprintf(buf, sizeof buf, "%.3g ms", v / 1e6);
    else if (v >= 1e3)
      std::snprintf(buf, sizeof buf, "%.3g us", v / 1e3);
    else
      std::snprintf(buf, sizeof buf, "%.3g ns", v);
  } else {
    std::snprintf(buf, sizeof buf, "%.4g", v);
  }
  return buf;
}

}  // namespace

CompareReport compare_checked(const json& old_run, const json& new_run, const CompareOptions& o);

CompareReport compare(const json& old_run, const json& new_run, const CompareOptions& o) {
  try {
    return compare_checked(old_run, new_run, o);
  } catch (const json::exception& e) {  // a field of the wrong type
    CompareReport report;
    report.error = std::string("malformed benchmark JSON: ") + e.what();
    return report;
  }
}

CompareReport compare_checked(const json& old_run, const json& new_run, const CompareOptions& o) {
  CompareReport report;
  report.allow_missing = o.allow_missing;
  auto old_s = samples(old_run, o.metric, "old", &report.error);
  if (!report.error.empty()) return report;
  auto new_s = samples(new_run, o.metric, "new", &report.error);
  if (!report.error.empty()) return report;
  std::optional<std::regex> filter;
  if (!o.filter.empty()) {
    try {
      filter.emplace(o.filter);
    } catch (const std::regex_error& e) {
      report.error = "bad --filter regex: " + std::string(e.what());
      return report;
    }
  }
  const bool higher_better = o.higher_is_better.value_or(o.metric.ends_with("per_second"));

  // The baseline by its run name, or by a prefix of it up to a '/'
  // (BM_Ping matches BM_Ping/real_time) when that is unambiguous.
  std::string baseline = o.baseline;
  if (!baseline.empty() && !old_s.count(baseline)) {
    std::vector<std::string> matches;
    for (const auto& [name, _] : old_s)
      if (name.starts_with(baseline + "/")) matches.push_back(name);
    if (matches.size() > 1) {
      report.error = "the baseline " + baseline + " matches " + std::to_string(matches.size()) +
                     " benchmarks; name one of them in full (" + matches[0] + ", ...)";
      return report;
    }
    if (matches.size() == 1) baseline = matches[0];
  }
  double old_base = 1, new_base = 1;
  if (!baseline.empty()) {
    for (auto* side : {&old_s, &new_s}) {
      auto it = side->find(baseline);
      const char* which = side == &old_s ? "old" : "new";
      if (it == side->end()) {
        report.error =
            std::string(which) + ": the baseline benchmark " + baseline + " is not in the file";
        return report;
      }
      if (!it->second.error.empty() || it->second.value() <= 0) {
        report.error = std::string(which) + ": the baseline benchmark " + baseline +
                       " failed or measured nothing: " + it->second.error;
        return report;
      }
    }
    old_base = old_s[baseline].value();
    new_base = new_s[baseline].value();
  }

  auto selected = [&](const std::string& name) {
    return name != baseline && (!filter || std::regex_search(name, *filter));
  };
  for (const auto& [name, before] : old_s) {
    if (!selected(name)) continue;
    CompareRow row;
    row.name = name;
    auto it = new_s.find(name);
    if (it == new_s.end()) {
      row.verdict = Verdict::missing;
      report.rows.push_back(row);
      continue;
    }
    const Sample& after = it->second;
    if (!after.error.empty() || !before.error.empty()) {
      row.verdict = Verdict::failed;
      row.note = !after.error.empty() ? "new: " + after.error : "old: " + before.error;
      report.rows.push_back(row);
      continue;
    }
    row.old_value = before.value();
    row.new_value = after.value();
    row.old_ratio = row.old_value / old_base;
    row.new_ratio = row.new_value / new_base;
    if (row.old_ratio <= 0 || row.new_ratio <= 0) {
      row.verdict = Verdict::failed;
      row.note = "measured zero";
      report.rows.push_back(row);
      continue;
    }
    // Positive change = worse, whichever direction the metric runs.
    row.change =
        higher_better ? row.old_ratio / row.new_ratio - 1 : row.new_ratio / row.old_ratio - 1;
    // The epsilon keeps "exactly at the limit" from failing on rounding.
    row.verdict = row.change > o.max_regression + 1e-9    ? Verdict::regressed
                  : row.change < -o.max_regression - 1e-9 ? Verdict::improved
                                                          : Verdict::ok;
    report.rows.push_back(row);
  }
  for (const auto& [name, after] : new_s) {
    if (!selected(name) || old_s.count(name)) continue;
    CompareRow row;
    row.name = name;
    row.new_value = after.value();
    row.verdict = after.error.empty() ? Verdict::added : Verdict::failed;
    row.note = after.error.empty() ? "" : "new: " + after.error;
    report.rows.push_back(row);
  }
  return report;
}

std::string format_report(const CompareReport& report, const CompareOptions& o) {
  if (!report.error.empty()) return "error: " + report.error + "\n";
  std::string out;
  char line[512];
  std::snprintf(line, sizeof line, "metric %s (%s is better), %s, fail above +%.1f%%\n",
                o.metric.c_str(),
                o.higher_is_better.value_or(o.metric.ends_with("per_second")) ? "higher" : "lower",
                o.baseline.empty() ? "absolute values (no baseline)"
                                   : ("each divided by " + o.baseline + " of its own run").c_str(),
                o.max_regression * 100);
  out += line;
  size_t width = 9;
  for (const auto& r : report.rows) width = std::max(width, r.name.size());
  std::snprintf(line, sizeof line, "%-*s %12s %12s %10s %10s %9s  %s\n", int(width), "benchmark",
                "old", "new", "old/base", "new/base", "change", "verdict");
  out += line;
  int regressions = 0, failures = 0;
  for (const auto& r : report.rows) {
    if (r.verdict == Verdict::regressed) ++regressions;
    if (r.verdict == Verdict::failed || (r.verdict == Verdict::missing && !report.allow_missing))
      ++failures;
    if (r.verdict == Verdict::missing || r.verdict == Verdict::added ||
        r.verdict == Verdict::failed) {
      std::snprintf(line, sizeof line, "%-*s %12s %12s %10s %10s %9s  %s %s\n", int(width),
                    r.name.c_str(), r.verdict == Verdict::added ? "-" : "",
                    r.new_value > 0 ? human(r.new_value, o.metric).c_str() : "-", "", "", "",
                    verdict_name(r.verdict), r.note.c_str());
    } else {
      std::snprintf(line, sizeof line, "%-*s %12s %12s %10.4g %10.4g %+8.1f%%  %s\n", int(width),
                    r.name.c_str(), human(r.old_value, o.metric).c_str(),
                    human(r.new_value, o.metric).c_str(), r.old_ratio, r.new_ratio, r.change * 100,
                    verdict_name(r.verdict));
    }
    out += line;
  }
  if (report.passed()) {
    out += "PASS: no benchmark regressed beyond the limit\n";
  } else {
    std::snprintf(line, sizeof line, "FAIL: %d regressed beyond +%.1f%%, %d failed or missing\n",
                  regressions, o.max_regression * 100, failures);
    out += line;
  }
  return out;
}

}  // namespace shmpool::tools
