#include "shmpool/value.h"

#include <boost/beast/core/detail/base64.hpp>
#include <nlohmann/json.hpp>

#include "pool/src/base64.h"

namespace shmpool {

using nlohmann::json;

Args make_args(const std::function<void(flexbuffers::Builder&)>& fill_map) {
  flexbuffers::Builder b;
  size_t m = b.StartMap();
  fill_map(b);
  b.EndMap(m);
  b.Finish();
  return b.GetBuffer();
}

const Args& empty_args() {
  static const Args empty = make_args([](flexbuffers::Builder&) {});
  return empty;
}

namespace detail {

void json_to_flex(flexbuffers::Builder& b, const json& j) {
  switch (j.type()) {
    case json::value_t::null:
      b.Null();
      break;
    case json::value_t::boolean:
      b.Bool(j.get<bool>());
      break;
    case json::value_t::number_integer:
      b.Int(j.get<int64_t>());
      break;
    case json::value_t::number_unsigned: {
      uint64_t u = j.get<uint64_t>();
      if (u <= uint64_t(INT64_MAX))
        b.Int(int64_t(u));
      else
        b.UInt(u);
      break;
    }
    case json::value_t::number_float:
      b.Double(j.get<double>());
      break;
    case json::value_t::string: {
      auto& s = j.get_ref<const std::string&>();
      b.String(s.data(), s.size());
      break;
    }
    case json::value_t::object: {
      if (j.size() == 1 && j.contains("__bytes__") && j["__bytes__"].is_string()) {
        auto bytes = base64_decode(j["__bytes__"].get_ref<const std::string&>());
        b.Blob(bytes.data(), bytes.size());
        break;
      }
      size_t m = b.StartMap();
      for (auto& [k, v] : j.items()) {
        b.Key(k.c_str());
        json_to_flex(b, v);
      }
      b.EndMap(m);
      break;
    }
    case json::value_t::array: {
      size_t v = b.StartVector();
      for (auto& e : j) json_to_flex(b, e);
      b.EndVector(v, false, false);
      break;
    }
    default:
      b.Null();
      break;
  }
}

json flex_to_json(const flexbuffers::Reference& r, int depth) {
  if (depth > 64) return nullptr;
  if (r.IsNull()) return nullptr;
  if (r.IsBool()) return r.AsBool();
  if (r.IsUInt()) return r.AsUInt64();
  if (r.IsInt()) return r.AsInt64();
  if (r.IsFloat()) return r.AsDouble();
  if (r.IsString()) return r.AsString().str();
  if (r.IsKey()) return std::string(r.AsKey());
  if (r.IsBlob()) {
    auto blob = r.AsBlob();
    return json{{"__bytes__", base64_encode({blob.data(), blob.size()})}};
  }
  if (r.IsMap()) {
    auto m = r.AsMap();
    auto keys = m.Keys();
    auto vals = m.Values();
    json o = json::object();
    for (size_t i = 0; i < keys.size(); ++i) o[keys[i].AsKey()] = flex_to_json(vals[i], depth + 1);
    return o;
  }
  if (r.IsVector() || r.IsTypedVector() || r.IsFixedTypedVector()) {
    auto v = r.AsVector();
    json a = json::array();
    for (size_t i = 0; i < v.size(); ++i) a.push_back(flex_to_json(v[i], depth + 1));
    return a;
  }
  return nullptr;
}

}  // namespace detail

Expected<Args> args_from_json(std::string_view text) {
  json j = json::parse(text.begin(), text.end(), nullptr, false);
  if (j.is_discarded()) {
    return make_error(Category::config_error, "invalid_json", "args are not valid JSON");
  }
  flexbuffers::Builder b;
  detail::json_to_flex(b, j);
  b.Finish();
  return b.GetBuffer();
}

std::string to_json(const flexbuffers::Reference& value) {
  return detail::flex_to_json(value, 0).dump();
}

}  // namespace shmpool
