// Exposition: the Prometheus text exposition format 0.0.4, written family by
// family (HELP and TYPE once, then its samples), label values escaped
// (backslash, double quote, newline), values printed exactly (%.17g).
// A plain value type: one writer per instance.
#pragma once

#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace shmpool::tools {

class Exposition {
 public:
  using Labels = std::vector<std::pair<std::string, std::string>>;
  // Starts a metric family: its type is gauge or counter.
  void family(const char* name, const char* type, const char* help);
  // One sample of the current family: name{labels} value.
  void sample(const char* name, const Labels& labels, double value);
  std::string str() const { return out_.str(); }

 private:
  std::ostringstream out_;
};

}  // namespace shmpool::tools
