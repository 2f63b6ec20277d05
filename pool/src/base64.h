// base64.h: base64 for the pipe-JSON baseline (Boost.Beast's codec).
#pragma once

#include <boost/beast/core/detail/base64.hpp>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace shmpool {

inline std::string base64_encode(std::span<const uint8_t> data) {
  namespace b64 = boost::beast::detail::base64;
  std::string out(b64::encoded_size(data.size()), '\0');
  out.resize(b64::encode(out.data(), data.data(), data.size()));
  return out;
}

inline std::vector<uint8_t> base64_decode(std::string_view text) {
  namespace b64 = boost::beast::detail::base64;
  std::vector<uint8_t> out(b64::decoded_size(text.size()));
  auto [written, read] = b64::decode(out.data(), text.data(), text.size());
  (void)read;
  out.resize(written);
  return out;
}

}  // namespace shmpool
