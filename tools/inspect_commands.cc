// `shmpool list`, `status`, `sessions` and `gc`: pools seen from outside,
// read from their segments (read-only mappings), formatted by pool_format.h.
#include <algorithm>
#include <chrono>
#include <iostream>

#include "shmpool/inspect.h"
#include "tools/commands.h"

namespace shmpool::tools {

int fail(const Error& e) {
  std::cerr << "shmpool: " << e.to_string() << "\n";
  return 1;
}

int list(OutputFormat format) {
  std::cout << pools_output(list_pools(), format);
  return 0;
}

int status(const std::string& pool, OutputFormat format) {
  auto snap = inspect_pool(pool);
  if (!snap.ok()) return fail(snap.error());
  std::cout << status_output(*snap, format);
  return 0;
}

int sessions(const std::string& pool, OutputFormat format) {
  auto all = inspect_sessions(pool);
  if (!all.ok()) return fail(all.error());
  // Session times are CLOCK_MONOTONIC, which is steady_clock on Linux.
  const int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                          std::chrono::steady_clock::now().time_since_epoch())
                          .count();
  std::cout << sessions_output(pool, *all, now, format);
  return 0;
}

int gc(const std::vector<std::string>& names, bool dry_run) {
  std::vector<PoolListing> stale;
  if (dry_run) {
    for (auto& p : list_pools()) {
      const bool named =
          names.empty() || std::find(names.begin(), names.end(), p.name) != names.end();
      if (named && p.problem.empty() && !p.owner_alive) stale.push_back(p);
    }
  } else {
    stale = remove_stale_pools(names);
  }
  std::cout << gc_output(stale, dry_run);
  return 0;
}

}  // namespace shmpool::tools
