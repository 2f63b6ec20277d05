// value.h: args and results are schema-less FlexBuffers (maps, lists,
// scalars, bytes). Build args with make_args() or from JSON; read results
// with flexbuffers::Reference or convert them to JSON.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "flatbuffers/flexbuffers.h"
#include "shmpool/error.h"

namespace shmpool {

// A finished FlexBuffer (the root is normally a map).
using Args = std::vector<uint8_t>;

// Builds a map: make_args([](flexbuffers::Builder& b) { b.Int("x", 1); }).
Args make_args(const std::function<void(flexbuffers::Builder&)>& fill_map);
// An empty map: one shared buffer, so a call that passes it (the default)
// allocates nothing. Requests leave it out; the handler gets an empty dict.
const Args& empty_args();
// JSON text -> FlexBuffer. {"__bytes__": "<base64>"} becomes bytes.
// config_error/invalid_json on bad input.
Expected<Args> args_from_json(std::string_view json);
// FlexBuffer value -> JSON text (bytes as {"__bytes__": "<base64>"}).
std::string to_json(const flexbuffers::Reference& value);

}  // namespace shmpool
