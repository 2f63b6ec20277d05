#include "tools/pool_format.h"

#include <cstdarg>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tools/exposition.h"

namespace shmpool::tools {
namespace {

using nlohmann::json;

// printf into a string of any length.
[[gnu::format(printf, 1, 2)]] std::string printf_string(const char* fmt, ...) {
  va_list args, again;
  va_start(args, fmt);
  va_copy(again, args);
  const int n = std::vsnprintf(nullptr, 0, fmt, args);
  va_end(args);
  std::string out(size_t(n > 0 ? n : 0), '\0');
  if (n > 0) std::vsnprintf(out.data(), out.size() + 1, fmt, again);
  va_end(again);
  return out;
}

// ---- status ---------------------------------------------------------------

json status_json(const PoolSnapshot& p) {
  json slots = json::array();
  for (const auto& s : p.slots) {
    slots.push_back({{"slot", s.slot},
                     {"state", s.state},
                     {"pid", s.pid},
                     {"generation", s.generation},
                     {"checkouts", s.checkouts},
                     {"calls", s.calls},
                     {"successes", s.successes},
                     {"errors", s.errors},
                     {"restarts", s.restarts},
                     {"idle_s", s.idle_s},
                     {"worker_age_s", s.worker_age_s}});
  }
  return {{"name", p.name},
          {"owner_pid", p.owner_pid},
          {"owner_alive", p.owner_alive},
          {"state", p.state},
          {"segment_bytes", p.segment_bytes},
          {"slot_count", p.slot_count},
          {"session_capacity", p.session_capacity},
          {"request_ring_bytes", p.request_ring_bytes},
          {"response_ring_bytes", p.response_ring_bytes},
          {"arena_bytes", p.arena_bytes},
          {"arena_bytes_in_use", p.arena_bytes_in_use},
          {"arena_blocks_in_use", p.arena_blocks_in_use},
          {"arena_pinned_blocks", p.arena_pinned_blocks},
          {"uptime_s", p.uptime_s},
          {"calls", p.calls},
          {"checkout_timeouts", p.checkout_timeouts},
          {"session_table_full", p.session_table_full},
          {"errors_by_category", p.errors_by_category},
          {"waiting", p.waiting},
          {"active_sessions", p.active_sessions},
          {"slots_by_state", p.slots_by_state},
          {"slots", slots}};
}

std::string status_prometheus(const PoolSnapshot& p) {
  Exposition e;
  const std::pair<std::string, std::string> pool{"pool", p.name};
  e.family("shmpool_up", "gauge", "1 when the pool's owner process is alive.");
  e.sample("shmpool_up", {pool}, p.owner_alive ? 1 : 0);
  e.family("shmpool_uptime_seconds", "gauge", "Seconds since the pool's segment was created.");
  e.sample("shmpool_uptime_seconds", {pool}, p.uptime_s);
  e.family("shmpool_slots", "gauge", "Worker slots by state.");
  for (const auto& [state, n] : p.slots_by_state)
    e.sample("shmpool_slots", {pool, {"state", state}}, n);
  e.family("shmpool_waiting_callers", "gauge", "Callers waiting for a free worker.");
  e.sample("shmpool_waiting_callers", {pool}, p.waiting);
  e.family("shmpool_active_sessions", "gauge", "Sessions in the session table.");
  e.sample("shmpool_active_sessions", {pool}, p.active_sessions);
  e.family("shmpool_calls_total", "counter", "Calls made through the pool.");
  e.sample("shmpool_calls_total", {pool}, double(p.calls));
  e.family("shmpool_errors_total", "counter", "Failed calls by error category.");
  for (const auto& [cat, n] : p.errors_by_category)
    e.sample("shmpool_errors_total", {pool, {"category", cat}}, double(n));
  e.family("shmpool_checkout_timeouts_total", "counter", "Calls that found no worker in time.");
  e.sample("shmpool_checkout_timeouts_total", {pool}, double(p.checkout_timeouts));
  e.family("shmpool_session_table_full_total", "counter",
           "Session records refused because the table was full.");
  e.sample("shmpool_session_table_full_total", {pool}, double(p.session_table_full));
  e.family("shmpool_arena_bytes", "gauge", "Size of the payload arena.");
  e.sample("shmpool_arena_bytes", {pool}, double(p.arena_bytes));
  e.family("shmpool_arena_bytes_in_use", "gauge", "Payload arena bytes held by live blocks.");
  e.sample("shmpool_arena_bytes_in_use", {pool}, double(p.arena_bytes_in_use));
  e.family("shmpool_arena_blocks_in_use", "gauge", "Live payload arena blocks.");
  e.sample("shmpool_arena_blocks_in_use", {pool}, double(p.arena_blocks_in_use));
  e.family("shmpool_worker_calls_total", "counter", "Calls served by each worker slot.");
  for (const auto& s : p.slots)
    e.sample("shmpool_worker_calls_total", {pool, {"slot", std::to_string(s.slot)}},
             double(s.calls));
  e.family("shmpool_worker_errors_total", "counter", "Failed calls on each worker slot.");
  for (const auto& s : p.slots)
    e.sample("shmpool_worker_errors_total", {pool, {"slot", std::to_string(s.slot)}},
             double(s.errors));
  e.family("shmpool_worker_restarts_total", "counter", "Worker processes restarted in each slot.");
  for (const auto& s : p.slots)
    e.sample("shmpool_worker_restarts_total", {pool, {"slot", std::to_string(s.slot)}},
             double(s.restarts));
  return e.str();
}

std::string status_table(const PoolSnapshot& p) {
  std::ostringstream o;
  o << "pool " << p.name << "  owner " << p.owner_pid << (p.owner_alive ? " (alive)" : " (DEAD)")
    << "  state " << p.state << "  up " << seconds_text(p.uptime_s) << "\n";
  o << "calls " << p.calls << "  waiting " << p.waiting << "  sessions " << p.active_sessions << "/"
    << p.session_capacity << "  checkout timeouts " << p.checkout_timeouts << "\n";
  o << "payload arena " << p.arena_bytes_in_use << "/" << p.arena_bytes << " bytes in use, "
    << p.arena_blocks_in_use << " blocks (" << p.arena_pinned_blocks << " pinned)\n";
  o << "rings " << p.request_ring_bytes << " request / " << p.response_ring_bytes
    << " response bytes per worker\n";
  o << "errors";
  for (const auto& [cat, n] : p.errors_by_category) o << "  " << cat << " " << n;
  o << "\n\n";
  char line[200];
  std::snprintf(line, sizeof line, "%4s  %-9s %8s %10s %10s %8s %8s %8s %8s\n", "slot", "state",
                "pid", "checkouts", "calls", "errors", "restarts", "idle", "age");
  o << line;
  for (const auto& s : p.slots) {
    std::snprintf(line, sizeof line, "%4u  %-9s %8d %10llu %10llu %8llu %8llu %8s %8s\n", s.slot,
                  s.state.c_str(), int(s.pid), (unsigned long long)s.checkouts,
                  (unsigned long long)s.calls, (unsigned long long)s.errors,
                  (unsigned long long)s.restarts, seconds_text(s.idle_s).c_str(),
                  seconds_text(s.worker_age_s).c_str());
    o << line;
  }
  return o.str();
}

}  // namespace

std::string seconds_text(double s) {
  if (s < 0) return "-";
  char buf[32];
  if (s < 120)
    std::snprintf(buf, sizeof buf, "%.1fs", s);
  else if (s < 7200)
    std::snprintf(buf, sizeof buf, "%.1fm", s / 60);
  else
    std::snprintf(buf, sizeof buf, "%.1fh", s / 3600);
  return buf;
}

std::string status_output(const PoolSnapshot& pool, OutputFormat format) {
  switch (format) {
    case OutputFormat::json:
      return status_json(pool).dump(2) + "\n";
    case OutputFormat::prometheus:
      return status_prometheus(pool);
    case OutputFormat::table:
      break;
  }
  return status_table(pool);
}

std::string sessions_output(const std::string& pool, const std::vector<SessionInfo>& all,
                            int64_t now, OutputFormat format) {
  if (format == OutputFormat::json) {
    json arr = json::array();
    for (const auto& s : all) {
      arr.push_back({{"id", s.id},
                     {"operations", s.operations},
                     {"errors", s.errors},
                     {"last_slot", s.last_slot},
                     {"age_s", double(now - s.created_ns) / 1e9},
                     {"idle_s", double(now - s.last_activity_ns) / 1e9}});
    }
    return json{{"pool", pool}, {"sessions", arr}}.dump(2) + "\n";
  }
  if (format == OutputFormat::prometheus) {
    Exposition e;
    e.family("shmpool_sessions", "gauge", "Sessions in the session table.");
    e.sample("shmpool_sessions", {{"pool", pool}}, double(all.size()));
    e.family("shmpool_session_operations_total", "counter", "Calls made in each session.");
    for (const auto& s : all)
      e.sample("shmpool_session_operations_total", {{"pool", pool}, {"session", s.id}},
               double(s.operations));
    e.family("shmpool_session_errors_total", "counter", "Failed calls in each session.");
    for (const auto& s : all)
      e.sample("shmpool_session_errors_total", {{"pool", pool}, {"session", s.id}},
               double(s.errors));
    return e.str();
  }
  std::ostringstream o;
  char line[256];
  std::snprintf(line, sizeof line, "%-40s %10s %8s %9s %8s %8s\n", "session", "operations",
                "errors", "last_slot", "age", "idle");
  o << line;
  for (const auto& s : all) {
    std::snprintf(line, sizeof line, "%-40s %10llu %8llu %9d %8s %8s\n", s.id.c_str(),
                  (unsigned long long)s.operations, (unsigned long long)s.errors, s.last_slot,
                  seconds_text(double(now - s.created_ns) / 1e9).c_str(),
                  seconds_text(double(now - s.last_activity_ns) / 1e9).c_str());
    o << line;
  }
  o << all.size() << " session(s)\n";
  return o.str();
}

std::string pools_output(const std::vector<PoolListing>& pools, OutputFormat format) {
  if (format == OutputFormat::json) {
    json arr = json::array();
    for (const auto& p : pools)
      arr.push_back({{"name", p.name},
                     {"owner_pid", p.owner_pid},
                     {"owner_alive", p.owner_alive},
                     {"segment_bytes", p.segment_bytes},
                     {"problem", p.problem}});
    return arr.dump(2) + "\n";
  }
  std::string out = printf_string("%-40s %8s %-6s %12s\n", "pool", "owner", "alive", "bytes");
  for (const auto& p : pools) {
    out += printf_string("%-40s %8d %-6s %12llu %s\n", p.name.c_str(), int(p.owner_pid),
                         !p.problem.empty() ? "?"
                         : p.owner_alive    ? "yes"
                                            : "DEAD",
                         (unsigned long long)p.segment_bytes, p.problem.c_str());
  }
  return out;
}

std::string gc_output(const std::vector<PoolListing>& stale, bool dry_run) {
  std::string out;
  for (const auto& p : stale) {
    out +=
        printf_string("%s %s (owner %d dead, %llu bytes)\n", dry_run ? "would remove" : "removed",
                      p.name.c_str(), int(p.owner_pid), (unsigned long long)p.segment_bytes);
  }
  out += printf_string("%zu segment(s) %s\n", stale.size(), dry_run ? "stale" : "removed");
  return out;
}

}  // namespace shmpool::tools
