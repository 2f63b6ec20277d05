#include "bench/case_names.h"

#include <map>

namespace shmpool::bench {
namespace {

std::map<std::string, CaseName>& registry() {
  static std::map<std::string, CaseName> cases;
  return cases;
}

}  // namespace

std::string CaseName::name() const {
  std::string n = family;
  if (!peer.empty()) n += "/" + peer;
  for (const auto& p : params) n += "/" + p;
  return n;
}

std::string CaseName::row() const {
  std::string n = family;
  for (const auto& p : params) n += "/" + p;
  return n;
}

benchmark::internal::Benchmark* add_case(const CaseName& name,
                                         std::function<void(benchmark::State&)> run) {
  const std::string n = name.name();
  registry()[n] = name;
  return benchmark::RegisterBenchmark(n.c_str(), std::move(run));
}

const CaseName* find_case(const std::string& function_name) {
  auto it = registry().find(function_name);
  return it == registry().end() ? nullptr : &it->second;
}

std::string size_label(int64_t bytes) {
  if (bytes >= (int64_t(1) << 20) && bytes % (int64_t(1) << 20) == 0)
    return std::to_string(bytes >> 20) + "MiB";
  if (bytes >= 1024 && bytes % 1024 == 0) return std::to_string(bytes >> 10) + "KiB";
  return std::to_string(bytes) + "B";
}

}  // namespace shmpool::bench
