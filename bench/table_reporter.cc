#include "bench/table_reporter.h"

#include <algorithm>

#include "bench/case_names.h"
#include "bench/cases.h"

namespace shmpool::bench {
namespace {

// m[k], or `fallback` when the key is not there.
template <class Map, class V = typename Map::mapped_type>
V find_or(const Map& m, const typename Map::key_type& k, V fallback = V{}) {
  auto it = m.find(k);
  return it == m.end() ? fallback : it->second;
}

// v with `format`, or "-" when there is none.
std::string cell(double v, const char* format = "%.2f") {
  char buf[32];
  std::snprintf(buf, sizeof buf, format, v);
  return v > 0 ? std::string(buf) : std::string("-");
}

// Streams and pipelined calls: their peers differ from case to case, so
// their table has a line per case and peer.
bool by_peer(const std::string& key) {
  return key.rfind("BM_Stream", 0) == 0 || key.rfind("BM_Pipelined", 0) == 0;
}

}  // namespace

bool TeeReporter::ReportContext(const Context& context) {
  bool ok = true;
  for (auto* r : to_) ok = r->ReportContext(context) && ok;
  return ok;
}

void TeeReporter::ReportRuns(const std::vector<Run>& runs) {
  for (auto* r : to_) r->ReportRuns(runs);
}

void TeeReporter::Finalize() {
  for (auto* r : to_) r->Finalize();
}

void TableReporter::ReportRuns(const std::vector<Run>& runs) {
  for (const Run& r : runs) {
    // Repeated benchmarks (the headline pings) count by their median,
    // reported after the repetitions: it replaces the last repetition.
    const bool median = r.run_type == Run::RT_Aggregate && r.aggregate_name == "median";
    if (r.error_occurred || (r.run_type != Run::RT_Iteration && !median)) continue;
    const CaseName* c = find_case(r.run_name.function_name);
    auto counter = [&](const char* k) {
      auto it = r.counters.find(k);
      return it == r.counters.end() ? 0.0 : it->second.value;
    };
    if (c && c->family == "BM_Real") {
      real_[{c->what, c->bytes}][c->peer_index] = {counter("p50_us"), counter("p99_us"),
                                                   counter("handler_us"), counter("faults")};
      continue;
    }
    if (c && r.counters.count("p50_us")) {
      if (c->family == "BM_Bulk") {
        bulk_[{c->what, c->bytes}][c->peer_index] = counter("p50_us");
        continue;
      }
      if (c->family == "BM_Memcpy") {
        memcpy_p50_[c->bytes] = counter("p50_us");
        continue;
      }
    }
    // One row per case across the peers: the name without its peer, with
    // the real-time and thread parts (the pool cases' callers).
    const std::string transport = c && !c->peer.empty() ? c->peer : "-";
    std::string key = c ? c->row() : r.run_name.function_name;
    if (r.run_name.time_type == "real_time") key += "/real_time";
    if (!r.run_name.threads.empty()) key += "/" + r.run_name.threads;
    Row row;
    row.p50 = counter("p50_us");
    row.p99 = counter("p99_us");
    row.mean_us = r.GetAdjustedRealTime() * (r.time_unit == benchmark::kMicrosecond   ? 1
                                             : r.time_unit == benchmark::kMillisecond ? 1000
                                                                                      : 0.001);
    row.items_per_s = counter("items_per_second");
    row.bytes_per_s = counter("bytes_per_second");
    row.first_item_us = counter("first_item_us");
    if (!rows_.count(key)) order_.push_back(key);
    rows_[key][transport] = row;
  }
}

void TableReporter::PrintRealTable(FILE* out) const {
  if (real_.empty()) return;
  std::fprintf(
      out,
      "\n| work | bytes | floor (default malloc): compute p50 us, faults | floor (pool's malloc) "
      "| "
      "shm: p50 / p99 us, handler us, faults | pipe_json: p50 us, handler us, faults | zmq: p50 "
      "us, handler us, faults | shm handler / floor | shm p50 - floor |\n"
      "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (const auto& [key, t] : real_) {
    const RealRow fd = find_or(t, kFloorDefault), ft = find_or(t, kFloorTuned), shm = find_or(t, 0),
                  pipe = find_or(t, 1), zmq = find_or(t, 2);
    const double floor_us = std::min(fd.p50 > 0 ? fd.p50 : 1e300, ft.p50 > 0 ? ft.p50 : 1e300);
    std::fprintf(
        out,
        "| %s | %lld MiB | %.0f, %.0f | %.0f, %.0f | %.0f / %.0f, %.0f, %.0f | %.0f, %.0f, %.0f "
        "| %.0f, %.0f, %.0f | %.2f | %+.0f us |\n",
        real_work_name(key.first), (long long)(key.second >> 20), fd.p50, fd.faults, ft.p50,
        ft.faults, shm.p50, shm.p99, shm.handler, shm.faults, pipe.p50, pipe.handler, pipe.faults,
        zmq.p50, zmq.handler, zmq.faults, shm.handler / floor_us, shm.p50 - floor_us);
  }
}

void TableReporter::PrintBulkTable(FILE* out) const {
  if (bulk_.empty()) return;
  static const char* ops[] = {"ack (handed to Python)", "echo (returned in place)", "numpy sum"};
  auto size = [](int64_t n) {
    return n >= (1 << 20) ? std::to_string(n >> 20) + " MiB" : std::to_string(n >> 10) + " KiB";
  };
  std::fprintf(
      out,
      "\n| payload | bytes | shm in place p50 (us) | shm copy p50 (us) | pipe_json p50 (us) | "
      "zmq p50 (us) | in place vs pipe_json | in place vs zmq |\n"
      "|---|---:|---:|---:|---:|---:|---:|---:|\n");
  for (const auto& [key, modes] : bulk_) {
    const double in_place = find_or(modes, kInPlace), copy = find_or(modes, kCopy),
                 pipe = find_or(modes, kPipe), zmq = find_or(modes, kZmqBulk);
    std::fprintf(out, "| %s | %s | %.1f | %.1f | %.1f | %.1f | %.0fx | %.1fx |\n", ops[key.first],
                 size(key.second).c_str(), in_place, copy, pipe, zmq,
                 in_place > 0 ? pipe / in_place : 0.0, in_place > 0 ? zmq / in_place : 0.0);
  }
  for (const auto& [n, p50] : memcpy_p50_) {
    auto echo = bulk_.find({kEcho, n});
    if (echo == bulk_.end() || !echo->second.count(kInPlace) || p50 <= 0) continue;
    const double echo_us = echo->second.at(kInPlace);
    std::fprintf(out,
                 "| memcpy (this machine) | %s | %.1f | | | | echo in place at %.0f%% of memcpy "
                 "| |\n",
                 size(n).c_str(), p50, echo_us > 0 ? 100.0 * p50 / echo_us : 0.0);
  }
}

void TableReporter::PrintStreamTable(FILE* out) const {
  bool header = false;
  for (const auto& key : order_) {
    if (!by_peer(key)) continue;
    if (!header) {
      std::fprintf(out,
                   "\n| streams, pipelined calls | peer | items/s | MiB/s | first item p50 (us) "
                   "|\n|---|---|---:|---:|---:|\n");
      header = true;
    }
    for (const auto& [peer, row] : rows_.at(key))
      std::fprintf(out, "| %s | %s | %s | %s | %s |\n", key.c_str(), peer.c_str(),
                   cell(row.items_per_s, "%.0f").c_str(),
                   cell(row.bytes_per_s / (1 << 20), "%.1f").c_str(),
                   cell(row.first_item_us, "%.1f").c_str());
  }
}

void TableReporter::PrintTable(FILE* out) const {
  if (rows_.empty() && bulk_.empty() && memcpy_p50_.empty() && real_.empty()) return;
  PrintBulkTable(out);
  PrintRealTable(out);
  std::fprintf(out,
               "\n| case | shm p50 (us) | shm p99 (us) | pipe_json p50 (us) | pipe_json p99 (us) | "
               "zmq p50 (us) | zmq p99 (us) | grpc p50 (us) | grpc p99 (us) | vs pipe_json | "
               "vs zmq | vs grpc |\n");
  std::fprintf(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  // A row per case run over any of the peers; "-" where a peer did not run it.
  for (const auto& key : order_) {
    const auto& m = rows_.at(key);
    const Row shm = find_or(m, "shm"), pipe = find_or(m, "pipe_json"), zmq = find_or(m, "zmq"),
              grpc = find_or(m, "grpc");
    if (shm.p50 == 0 && pipe.p50 == 0 && zmq.p50 == 0 && grpc.p50 == 0) continue;
    auto vs = [&](double p50, const char* format) {
      return shm.p50 > 0 && p50 > 0 ? cell(p50 / shm.p50, format) + "x" : std::string("-");
    };
    std::fprintf(out, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
                 key.c_str(), cell(shm.p50).c_str(), cell(shm.p99).c_str(), cell(pipe.p50).c_str(),
                 cell(pipe.p99).c_str(), cell(zmq.p50).c_str(), cell(zmq.p99).c_str(),
                 cell(grpc.p50).c_str(), cell(grpc.p99).c_str(), vs(pipe.p50, "%.1f").c_str(),
                 vs(zmq.p50, "%.2f").c_str(), vs(grpc.p50, "%.2f").c_str());
  }
  bool header = false;
  for (const auto& key : order_) {
    const auto& m = rows_.at(key);
    auto shm = m.find("shm"), pipe = m.find("pipe_json"), zmq = m.find("zmq");
    if (shm == m.end() || pipe == m.end() || shm->second.items_per_s == 0 || by_peer(key)) continue;
    if (!header) {
      std::fprintf(
          out,
          "\n| throughput | shm calls/s | pipe_json calls/s | zmq calls/s | vs pipe_json | "
          "vs zmq |\n|---|---:|---:|---:|---:|---:|\n");
      header = true;
    }
    const double z = zmq == m.end() ? 0 : zmq->second.items_per_s;
    std::fprintf(out, "| %s | %.0f | %.0f | %.0f | %.1fx | %.1fx |\n", key.c_str(),
                 shm->second.items_per_s, pipe->second.items_per_s, z,
                 shm->second.items_per_s / pipe->second.items_per_s,
                 z > 0 ? shm->second.items_per_s / z : 0.0);
  }
  if (rows_.count("BM_ClientPing") && rows_.count("BM_PoolPing") &&
      rows_.at("BM_PoolPing").count("shm")) {
    const Row& own = rows_.at("BM_PoolPing").at("shm");
    const Row& other = rows_.at("BM_ClientPing").begin()->second;
    std::fprintf(out,
                 "\n| pool ping over shm | p50 (us) | p99 (us) |\n|---|---:|---:|\n"
                 "| from the owner process | %.2f | %.2f |\n"
                 "| from another process (Client) | %.2f | %.2f |\n"
                 "| other / owner | %.2fx | %.2fx |\n",
                 own.p50, own.p99, other.p50, other.p99, own.p50 > 0 ? other.p50 / own.p50 : 0.0,
                 own.p99 > 0 ? other.p99 / own.p99 : 0.0);
  }
  header = false;
  for (const auto& key : order_) {
    const auto& m = rows_.at(key);
    for (const auto& [transport, row] : m) {
      if (row.p50 != 0 || row.items_per_s != 0 || key == "BM_ClientPing" || by_peer(key)) continue;
      if (!header) {
        std::fprintf(out, "\n| other | mean |\n|---|---:|\n");
        header = true;
      }
      std::fprintf(out, "| %s%s | %.3f us |\n", key.c_str(),
                   m.size() > 1 ? (" (" + transport + ")").c_str() : "", row.mean_us);
    }
  }
  PrintStreamTable(out);
}

void TableReporter::PrintLoadTable(FILE* out, const std::vector<int>& levels,
                                   const std::vector<std::unique_ptr<TableReporter>>& runs) {
  auto get = [](const TableReporter& t, const std::string& key, const char* transport) {
    return find_or(find_or(t.rows_, key), transport);
  };
  std::fprintf(
      out,
      "\n| case | busy loops | shm p50 (us) | shm p99 (us) | pipe_json p50 (us) | pipe_json p99 "
      "(us) | zmq p50 (us) | zmq p99 (us) | pipe_json / shm p50 | pipe_json / shm p99 |\n"
      "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (const auto& key : runs.front()->order_) {
    for (size_t i = 0; i < levels.size(); ++i) {
      const Row shm = get(*runs[i], key, "shm"), pipe = get(*runs[i], key, "pipe_json"),
                zmq = get(*runs[i], key, "zmq");
      if (shm.p50 == 0 || shm.items_per_s != 0) continue;
      std::fprintf(out, "| %s | %d | %.2f | %.2f | %.2f | %.2f | %s | %s | %.1fx | %.1fx |\n",
                   key.c_str(), levels[i], shm.p50, shm.p99, pipe.p50, pipe.p99,
                   cell(zmq.p50).c_str(), cell(zmq.p99).c_str(), pipe.p50 / shm.p50,
                   shm.p99 > 0 ? pipe.p99 / shm.p99 : 0.0);
    }
  }
  bool header = false;
  for (const auto& key : runs.front()->order_) {
    for (size_t i = 0; i < levels.size(); ++i) {
      const Row shm = get(*runs[i], key, "shm"), pipe = get(*runs[i], key, "pipe_json"),
                zmq = get(*runs[i], key, "zmq");
      if (shm.items_per_s == 0) continue;
      if (!header) {
        std::fprintf(
            out,
            "\n| throughput | busy loops | shm calls/s | pipe_json calls/s | zmq calls/s | shm / "
            "pipe_json | shm / zmq | shm p99 (us) | pipe_json p99 (us) |\n"
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        header = true;
      }
      std::fprintf(out, "| %s | %d | %.0f | %.0f | %.0f | %.1fx | %.1fx | %.1f | %.1f |\n",
                   key.c_str(), levels[i], shm.items_per_s, pipe.items_per_s, zmq.items_per_s,
                   pipe.items_per_s > 0 ? shm.items_per_s / pipe.items_per_s : 0.0,
                   zmq.items_per_s > 0 ? shm.items_per_s / zmq.items_per_s : 0.0, shm.p99,
                   pipe.p99);
    }
  }
}

}  // namespace shmpool::bench
