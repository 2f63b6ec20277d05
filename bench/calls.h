// The calls the worker and pool cases share, and the replies they expect
// (a check returns nullptr when the reply is as expected, else what is wrong).
#pragma once

#include <cstddef>

#include "shmpool/worker.h"

namespace shmpool::bench {

// The small-args case: 5 fields of mixed types.
inline Args small_args_map() {
  return make_args([](flexbuffers::Builder& b) {
    b.Int("id", 42);
    b.Double("score", 0.75);
    b.String("name", "shmpool");
    b.Bool("flag", true);
    b.Vector("tags", [&] {
      b.String("a");
      b.String("b");
    });
  });
}

inline const char* pong(const Reply& r) {
  return r.value().AsMap()["pong"].AsBool() ? nullptr : "no pong";
}

// The small-args map (small_args_map()) echoed back.
inline const char* small_args_echoed(const Reply& r) {
  return r.value().AsMap()["id"].AsInt64() == 42 ? nullptr : "echo mismatch";
}

// An `ack` of an n-byte payload.
inline auto acked(size_t n) {
  return [n](const Reply& r) -> const char* {
    return r.value().AsMap()["bytes"].AsUInt64() == n ? nullptr : "wrong length";
  };
}

}  // namespace shmpool::bench
