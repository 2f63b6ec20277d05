#include "tools/exposition.h"

#include <cstdio>

namespace shmpool::tools {
namespace {

std::string escape(const std::string& v) {
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

}  // namespace

void Exposition::family(const char* name, const char* type, const char* help) {
  out_ << "# HELP " << name << " " << help << "\n# TYPE " << name << " " << type << "\n";
}

void Exposition::sample(const char* name, const Labels& labels, double value) {
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

}  // namespace shmpool::tools
