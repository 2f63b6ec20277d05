// The stream cases of async_cases.cc (BM_StreamItems, BM_StreamChunks) over
// the gRPC peer (server streaming) and the pipe-JSON stream peer (a frame
// per item), from the same generators (bench/stream_handlers.py), with the
// same names, sizes, timing and counters as over shm:
//   BM_StreamItems/<peer>             100,000 small dicts {i: k, name: "item"}
//   BM_StreamChunks/<peer>/1MiB       64 numpy chunks of 1 MiB
// Each iteration is a whole stream (real time); every item is checked (its
// index in order and name; a chunk's length and bytes), the count too.
// Counters: items/s (and bytes/s), first_item_us (the median time from the
// request to the first item). A short stream first warms the path, untimed.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <span>
#include <string>
#include <vector>

#include "bench/grpc_peer.h"
#include "bench/peers.h"
#include "bench/pipe_json_stream.h"
#include "bench/timing.h"
#include "pool/src/base64.h"

namespace shmpool::bench {
namespace {

constexpr int64_t kItems = 100'000;
constexpr int64_t kChunks = 64, kChunkBytes = int64_t(1) << 20;
constexpr int64_t kWarmUpItems = 100, kWarmUpChunks = 2;

Error wrong(const char* what) { return make_error(Category::protocol_error, "bad_reply", what); }

// What is wrong with item `k` (index i, name), or nullptr.
const char* wrong_item(int64_t k, int64_t i, std::string_view name) {
  return i != k ? "item out of order" : name != "item" ? "wrong item name" : nullptr;
}

// What is wrong with chunk `k` (index i, bytes), or nullptr: kChunkBytes
// bytes of 7 (stream_chunks_gen; the first and the last checked).
const char* wrong_chunk(int64_t k, int64_t i, std::span<const uint8_t> data) {
  if (i != k) return "chunk out of order";
  if (int64_t(data.size()) != kChunkBytes) return "wrong chunk length";
  return data.front() == 7 && data.back() == 7 ? nullptr : "wrong chunk bytes";
}

// The benchmark loop of a stream case: `stream(n, first)` runs a stream of
// n items to its end, checking each, and sets `first` when the first item
// arrived.
template <class Stream>
void timed_streams(benchmark::State& state, int64_t n, int64_t warm_up_n, Stream&& stream) {
  Clock::time_point first;
  if (Status s = stream(warm_up_n, first); !s.ok()) return (void)fail(state, s.error());
  std::vector<double> first_us;
  for (auto _ : state) {
    const auto t0 = Clock::now();
    if (Status s = stream(n, first); !s.ok()) return (void)fail(state, s.error());
    first_us.push_back(std::chrono::duration<double, std::micro>(first - t0).count());
  }
  state.SetItemsProcessed(int64_t(state.iterations()) * n);
  std::sort(first_us.begin(), first_us.end());
  if (!first_us.empty()) state.counters["first_item_us"] = first_us[first_us.size() / 2];
}

// One gRPC server stream of n `Item`s: calls check(k, item) per item; a
// wrong item cancels the call.
template <class Item, class Request, class Check>
Status grpc_stream(std::unique_ptr<grpc::ClientReader<Item>> (pb::BenchPeer::Stub::*method)(
                       grpc::ClientContext*, const Request&),
                   const Request& request, int64_t n, Clock::time_point& first, Check&& check) {
  grpc::ClientContext ctx;
  set_deadline(ctx);
  auto reader = (grpc_server().stub().*method)(&ctx, request);
  Item item;
  int64_t k = 0;
  const char* bad = nullptr;
  while (!bad && reader->Read(&item)) {
    if (k == 0) first = Clock::now();
    bad = check(k++, item);
  }
  if (bad) {
    ctx.TryCancel();
    while (reader->Read(&item)) {
    }
  }
  const grpc::Status s = reader->Finish();
  if (bad) return wrong(bad);
  if (!s.ok()) return grpc_error(s);
  return k == n ? Status() : wrong("wrong item count");
}

// A pipe-JSON item frame's "result" object, or nullptr.
const nlohmann::json* result_of(const nlohmann::json& frame) {
  auto r = frame.find("result");
  return r != frame.end() && r->is_object() ? &*r : nullptr;
}

// One pipe-JSON stream of n items: calls check(k, frame) per item frame.
template <class Check>
Status pipe_json_stream_of(const char* command, nlohmann::json args, int64_t n,
                           Clock::time_point& first, Check&& check) {
  PipeJsonStream& peer = pipe_json_stream();
  args["n"] = n;
  if (Status s = peer.request(command, args); !s.ok()) return s;
  const char* bad = nullptr;
  for (int64_t k = 0;; ++k) {
    auto frame = peer.next();
    if (!frame.ok()) return frame.error();
    if (*frame == nullptr) return bad ? wrong(bad) : k == n ? Status() : wrong("wrong item count");
    if (k == 0) first = Clock::now();
    if (!bad) bad = check(k, **frame);  // read on to the end frame
  }
}

void stream_items(benchmark::State& state, Peer p) {
  if (p == Peer::grpc) {
    timed_streams(state, kItems, kWarmUpItems, [](int64_t n, Clock::time_point& first) {
      pb::ItemsRequest request;
      request.set_n(n);
      return grpc_stream(
          &pb::BenchPeer::Stub::Items, request, n, first,
          [](int64_t k, const pb::Item& item) { return wrong_item(k, item.i(), item.name()); });
    });
    return;
  }
  timed_streams(state, kItems, kWarmUpItems, [](int64_t n, Clock::time_point& first) {
    return pipe_json_stream_of(
        "items", nlohmann::json::object(), n, first, [](int64_t k, const nlohmann::json& f) {
          const nlohmann::json* item = result_of(f);
          return item ? wrong_item(k, item->value("i", int64_t(-1)), item->value("name", ""))
                      : "no item";
        });
  });
}

void stream_chunks(benchmark::State& state, Peer p) {
  if (p == Peer::grpc) {
    timed_streams(state, kChunks, kWarmUpChunks, [](int64_t n, Clock::time_point& first) {
      pb::ChunksRequest request;
      request.set_n(n);
      request.set_size(kChunkBytes);
      return grpc_stream(
          &pb::BenchPeer::Stub::Chunks, request, n, first, [](int64_t k, const pb::Chunk& chunk) {
            const auto* bytes = reinterpret_cast<const uint8_t*>(chunk.data().data());
            return wrong_chunk(k, chunk.i(), {bytes, chunk.data().size()});
          });
    });
  } else {
    timed_streams(state, kChunks, kWarmUpChunks, [](int64_t n, Clock::time_point& first) {
      return pipe_json_stream_of(
          "chunks", {{"size", kChunkBytes}}, n, first, [](int64_t k, const nlohmann::json& f) {
            const nlohmann::json* result = result_of(f);
            auto payload = f.find("payload");
            if (!result || payload == f.end() || !payload->is_string()) return "no chunk";
            const std::vector<uint8_t> data = base64_decode(payload->get_ref<const std::string&>());
            return wrong_chunk(k, result->value("i", int64_t(-1)), data);
          });
    });
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * kChunks * kChunkBytes);
}

}  // namespace

void register_stream_cases() {
  for (Peer p : {Peer::pipe_json, Peer::grpc})
    add_case(case_name("BM_StreamItems", p), [p](auto& s) { stream_items(s, p); })
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
  for (Peer p : {Peer::pipe_json, Peer::grpc})
    add_case(case_name("BM_StreamChunks", p, {size_label(kChunkBytes)}, kChunkBytes),
             [p](auto& s) { stream_chunks(s, p); })
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
}

}  // namespace shmpool::bench
