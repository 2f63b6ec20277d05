#include "shmpool/error.h"

#include <cstdio>
#include <cstdlib>

namespace shmpool {

std::string_view category_name(Category c) {
  switch (c) {
    case Category::timeout_error:
      return "timeout_error";
    case Category::worker_error:
      return "worker_error";
    case Category::protocol_error:
      return "protocol_error";
    case Category::handler_error:
      return "handler_error";
    case Category::resource_error:
      return "resource_error";
    case Category::config_error:
      return "config_error";
  }
  return "unknown_error";
}

Error make_error(Category c, std::string type, std::string message) {
  Error e;
  e.category = c;
  e.type = std::move(type);
  e.message = std::move(message);
  return e;
}

std::string Error::to_string() const {
  std::string s = std::string(category_name(category)) + "/" + type + ": " + message;
  if (!context.empty()) {
    s += " {";
    bool first = true;
    for (auto& [k, v] : context) {
      if (k == "traceback") continue;  // multi-line; read it from context
      s += (first ? "" : ", ") + k + "=" + v;
      first = false;
    }
    s += "}";
  }
  return s;
}

void abort_with_error(const Error& e) {
  std::fprintf(stderr, "shmpool: value() called on an error: %s\n", e.to_string().c_str());
  std::abort();
}

}  // namespace shmpool
