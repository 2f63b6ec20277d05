#include "shmpool/error.h"

#include <cstdio>
#include <cstdlib>

#include "shmpool/pool.h"

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
    case Category::cancelled:
      return "cancelled";
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

std::string_view event_kind_name(PoolEvent::Kind k) {
  switch (k) {
    case PoolEvent::Kind::worker_started:
      return "worker_started";
    case PoolEvent::Kind::worker_restarted:
      return "worker_restarted";
    case PoolEvent::Kind::worker_died:
      return "worker_died";
    case PoolEvent::Kind::worker_retired:
      return "worker_retired";
    case PoolEvent::Kind::call_timed_out:
      return "call_timed_out";
    case PoolEvent::Kind::session_created:
      return "session_created";
    case PoolEvent::Kind::session_ended:
      return "session_ended";
    case PoolEvent::Kind::session_expired:
      return "session_expired";
    case PoolEvent::Kind::client_slot_reclaimed:
      return "client_slot_reclaimed";
    case PoolEvent::Kind::pool_lost:
      return "pool_lost";
  }
  return "unknown";
}

}  // namespace shmpool
