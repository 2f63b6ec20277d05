// `shmpool bench compare`: reads two Google Benchmark JSON files and gates
// them with bench_compare.h.
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "tools/commands.h"

namespace shmpool::tools {

int bench_compare(BenchCompareArgs a) {
  auto limit = parse_percent(a.max_regression);
  if (!limit) {
    std::cerr << "shmpool bench compare: --max-regression wants a percentage like 10%\n";
    return 2;
  }
  CompareOptions& copt = a.options;
  copt.max_regression = *limit;
  if (a.higher_is_better) copt.higher_is_better = true;
  if (a.lower_is_better) copt.higher_is_better = false;
  nlohmann::json runs[2];
  const std::string* files[2] = {&a.old_file, &a.new_file};
  for (int i = 0; i < 2; ++i) {
    std::ifstream in(*files[i]);
    runs[i] = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
    if (runs[i].is_discarded()) {
      std::cerr << "shmpool bench compare: " << *files[i] << " is not valid JSON\n";
      return 2;
    }
  }
  auto report = compare(runs[0], runs[1], copt);
  std::cout << format_report(report, copt);
  return report.error.empty() ? (report.passed() ? 0 : 1) : 2;
}

}  // namespace shmpool::tools
