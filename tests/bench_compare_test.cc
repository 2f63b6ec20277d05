// The regression gate's arithmetic on hand-made Google Benchmark JSON.
#include "tools/bench_compare.h"

#include <gtest/gtest.h>

#include <map>

namespace shmpool::tools {
namespace {

using nlohmann::json;

json entry(const std::string& name, double time, const std::string& unit = "ns") {
  return {{"name", name},      {"run_name", name}, {"run_type", "iteration"},
          {"real_time", time}, {"cpu_time", time}, {"time_unit", unit}};
}

json run(const std::map<std::string, double>& times_ns) {
  json b = json::array();
  for (const auto& [name, t] : times_ns) b.push_back(entry(name, t));
  return {{"context", {{"num_cpus", 2}}}, {"benchmarks", b}};
}

const CompareRow& row(const CompareReport& r, const std::string& name) {
  for (const auto& x : r.rows)
    if (x.name == name) return x;
  ADD_FAILURE() << "no row " << name;
  static CompareRow none;
  return none;
}

CompareOptions with_baseline(double max = 0.10) {
  CompareOptions o;
  o.baseline = "BM_Base";
  o.max_regression = max;
  return o;
}

TEST(BenchCompare, AUniformlySlowerMachinePassesWhenNormalisedByTheBaseline) {
  auto before = run({{"BM_Base", 100}, {"BM_Work", 1000}});
  auto after = run({{"BM_Base", 200}, {"BM_Work", 2000}});  // everything twice as slow
  auto r = compare(before, after, with_baseline());
  ASSERT_TRUE(r.error.empty()) << r.error;
  EXPECT_TRUE(r.passed());
  EXPECT_NEAR(row(r, "BM_Work").change, 0.0, 1e-12);
  EXPECT_EQ(r.rows.size(), 1u) << "the baseline itself is not gated";

  CompareOptions absolute;  // without a baseline the same files fail
  auto a = compare(before, after, absolute);
  EXPECT_FALSE(a.passed());
  EXPECT_EQ(row(a, "BM_Work").verdict, Verdict::regressed);
  EXPECT_NEAR(row(a, "BM_Work").change, 1.0, 1e-12);
}

TEST(BenchCompare, ARelativeSlowdownBeyondTheLimitFailsAndWithinItPasses) {
  auto before = run({{"BM_Base", 100}, {"BM_Work", 1000}, {"BM_Other", 500}});
  auto after = run({{"BM_Base", 100}, {"BM_Work", 1200}, {"BM_Other", 400}});
  auto r = compare(before, after, with_baseline(0.10));
  EXPECT_FALSE(r.passed());
  EXPECT_EQ(row(r, "BM_Work").verdict, Verdict::regressed);
  EXPECT_NEAR(row(r, "BM_Work").change, 0.20, 1e-12);
  EXPECT_EQ(row(r, "BM_Other").verdict, Verdict::improved);
  EXPECT_TRUE(compare(before, after, with_baseline(0.25)).passed());
  const std::string text = format_report(r, with_baseline(0.10));
  EXPECT_NE(text.find("REGRESSED"), std::string::npos) << text;
  EXPECT_NE(text.find("FAIL: 1 regressed"), std::string::npos) << text;
}

TEST(BenchCompare, ExactlyAtTheLimitPasses) {
  auto r = compare(run({{"BM_Base", 100}, {"BM_Work", 100}}),
                   run({{"BM_Base", 100}, {"BM_Work", 110}}), with_baseline(0.10));
  EXPECT_TRUE(r.passed());
  EXPECT_EQ(row(r, "BM_Work").verdict, Verdict::ok);
}

TEST(BenchCompare, TimeUnitsAreConverted) {
  json before = {{"benchmarks", {entry("BM_Base", 1, "us"), entry("BM_Work", 2, "ms")}}};
  json after = {{"benchmarks", {entry("BM_Base", 1000, "ns"), entry("BM_Work", 2000, "us")}}};
  auto r = compare(before, after, with_baseline());
  EXPECT_TRUE(r.passed());
  EXPECT_NEAR(row(r, "BM_Work").old_value, 2e6, 1e-6);
  EXPECT_NEAR(row(r, "BM_Work").change, 0.0, 1e-12);
}

TEST(BenchCompare, ThroughputMetricsAreHigherIsBetter) {
  auto tput = [](double base, double work) {
    json b = json::array();
    for (auto [name, v] : {std::pair{"BM_Base", base}, std::pair{"BM_Work", work}}) {
      json e = entry(name, 1);
      e["items_per_second"] = v;
      b.push_back(e);
    }
    return json{{"benchmarks", b}};
  };
  CompareOptions o = with_baseline();
  o.metric = "items_per_second";
  auto r = compare(tput(1000, 5000), tput(1000, 4000), o);  // 20 % fewer calls/s
  EXPECT_FALSE(r.passed());
  EXPECT_EQ(row(r, "BM_Work").verdict, Verdict::regressed);
  EXPECT_NEAR(row(r, "BM_Work").change, 0.25, 1e-12);  // 5000/4000 - 1
  EXPECT_TRUE(compare(tput(1000, 4000), tput(1000, 5000), o).passed());
  o.higher_is_better = false;  // an explicit direction wins over the name
  EXPECT_TRUE(compare(tput(1000, 5000), tput(1000, 4000), o).passed());
}

TEST(BenchCompare, TheMedianAggregateOfRepetitionsIsUsed) {
  auto reps = [](double median, double mean) {
    json b = json::array();
    b.push_back(entry("BM_Base", 100));
    for (double t : {median * 0.5, median, median * 3}) b.push_back(entry("BM_Work", t));
    json m = entry("BM_Work", median);
    m["run_type"] = "aggregate";
    m["aggregate_name"] = "median";
    json avg = entry("BM_Work", mean);
    avg["run_type"] = "aggregate";
    avg["aggregate_name"] = "mean";
    b.push_back(m);
    b.push_back(avg);
    return json{{"benchmarks", b}};
  };
  auto r = compare(reps(1000, 1000), reps(1000, 5000), with_baseline());  // only the mean moved
  EXPECT_TRUE(r.passed());
  EXPECT_NEAR(row(r, "BM_Work").new_value, 1000, 1e-9);
}

TEST(BenchCompare, MissingFailedAndNewBenchmarks) {
  auto before = run({{"BM_Base", 100}, {"BM_Gone", 10}, {"BM_Work", 10}});
  json after = run({{"BM_Base", 100}, {"BM_Work", 10}, {"BM_Added", 10}});
  auto r = compare(before, after, with_baseline());
  EXPECT_EQ(row(r, "BM_Gone").verdict, Verdict::missing);
  EXPECT_EQ(row(r, "BM_Added").verdict, Verdict::added);
  EXPECT_FALSE(r.passed());
  CompareOptions allow = with_baseline();
  allow.allow_missing = true;
  EXPECT_TRUE(compare(before, after, allow).passed());

  json failing = run({{"BM_Base", 100}, {"BM_Gone", 10}, {"BM_Work", 10}});
  failing["benchmarks"][2]["error_occurred"] = true;
  failing["benchmarks"][2]["error_message"] = "worker_error/worker_crashed";
  auto f = compare(before, failing, with_baseline());
  EXPECT_FALSE(f.passed());
  EXPECT_EQ(row(f, "BM_Work").verdict, Verdict::failed);
  EXPECT_NE(row(f, "BM_Work").note.find("worker_crashed"), std::string::npos);
}

TEST(BenchCompare, BadInputIsAnErrorNotAVerdict) {
  auto good = run({{"BM_Base", 100}, {"BM_Work", 10}});
  CompareOptions o = with_baseline();
  o.baseline = "BM_Nope";
  EXPECT_NE(compare(good, good, o).error.find("BM_Nope"), std::string::npos);
  EXPECT_FALSE(compare(json::object(), good, with_baseline()).error.empty());
  CompareOptions counter = with_baseline();
  counter.metric = "p50_us";
  EXPECT_NE(compare(good, good, counter).error.find("p50_us"), std::string::npos);
  CompareOptions bad_regex = with_baseline();
  bad_regex.filter = "(";
  EXPECT_NE(compare(good, good, bad_regex).error.find("regex"), std::string::npos);
  EXPECT_FALSE(compare(json::object(), good, with_baseline()).passed());
  json wrong_type = good;
  wrong_type["benchmarks"][0]["run_name"] = 42;
  EXPECT_NE(compare(wrong_type, good, with_baseline()).error.find("malformed"), std::string::npos);
}

TEST(BenchCompare, TheBaselineMayOmitItsArgumentsWhenUnambiguous) {
  auto r = compare(run({{"BM_Base/real_time", 100}, {"BM_Work", 10}}),
                   run({{"BM_Base/real_time", 200}, {"BM_Work", 20}}), with_baseline());
  ASSERT_TRUE(r.error.empty()) << r.error;
  EXPECT_TRUE(r.passed());
  ASSERT_EQ(r.rows.size(), 1u);
  auto two = run({{"BM_Base/1", 100}, {"BM_Base/2", 100}, {"BM_Work", 10}});
  EXPECT_NE(compare(two, two, with_baseline()).error.find("matches 2"), std::string::npos);
}

// shmpool_bench names its cases family/peer/parameters: a baseline named up
// to its peer picks that peer's runs, and a filter selects by the words.
TEST(BenchCompare, ReadableCaseNamesSelectTheBaselineAndTheFilter) {
  auto bench = [](double shm_ping, double in_place) {
    return run({{"BM_Ping/shm/repeats:5/manual_time", shm_ping},
                {"BM_Ping/pipe_json/repeats:5/manual_time", 30 * shm_ping},
                {"BM_Bulk/in_place/echo/1MiB/min_time:0.200/manual_time", in_place},
                {"BM_Bulk/copy/echo/1MiB/min_time:0.200/manual_time", 2 * in_place}});
  };
  CompareOptions o = with_baseline();
  o.baseline = "BM_Ping";  // two peers: ambiguous
  EXPECT_NE(compare(bench(1, 100), bench(1, 100), o).error.find("matches 2"), std::string::npos);
  o.baseline = "BM_Ping/shm";
  o.filter = "^BM_Bulk/in_place/";
  auto r = compare(bench(1, 100), bench(2, 300), o);  // in place: 100 -> 150 per ping
  ASSERT_TRUE(r.error.empty()) << r.error;
  ASSERT_EQ(r.rows.size(), 1u);
  EXPECT_EQ(r.rows[0].name, "BM_Bulk/in_place/echo/1MiB/min_time:0.200/manual_time");
  EXPECT_EQ(r.rows[0].verdict, Verdict::regressed);
  EXPECT_NEAR(r.rows[0].change, 0.5, 1e-12);
}

TEST(BenchCompare, TheFilterSelectsBenchmarks) {
  auto before = run({{"BM_Base", 100}, {"BM_A", 10}, {"BM_B", 10}});
  auto after = run({{"BM_Base", 100}, {"BM_A", 10}, {"BM_B", 100}});
  CompareOptions o = with_baseline();
  o.filter = "^BM_A$";
  auto r = compare(before, after, o);
  EXPECT_TRUE(r.passed());
  ASSERT_EQ(r.rows.size(), 1u);
  EXPECT_EQ(r.rows[0].name, "BM_A");
}

TEST(BenchCompare, ParsePercent) {
  EXPECT_DOUBLE_EQ(*parse_percent("10%"), 0.10);
  EXPECT_DOUBLE_EQ(*parse_percent("2.5"), 0.025);
  EXPECT_DOUBLE_EQ(*parse_percent("0"), 0.0);
  EXPECT_FALSE(parse_percent("-1%"));
  EXPECT_FALSE(parse_percent("ten"));
  EXPECT_FALSE(parse_percent("10%%"));
  EXPECT_FALSE(parse_percent(""));
  EXPECT_FALSE(parse_percent("nan"));
}

}  // namespace
}  // namespace shmpool::tools
