// flex_writer.h: a fast writer of FlexBuffers (args and results), for the
// hot path. flexbuffers::Builder (FlatBuffers 2.0.8) spends ~170 ns on a
// one-key map on this machine, most of it in out-of-line vector inserts and
// its generic sort; a worker pays that on every reply. FlexWriter follows
// the Builder's algorithm step by step (same widths, padding, key order) and
// produces byte-identical buffers (flex_writer_test checks that against the
// Builder with BUILDER_FLAG_NONE), in a buffer that grows by doubling.
//
// Use: like the Builder. Push values (Null/Bool/Int/UInt/Double/String/
// Blob), open a map or vector with Start*, give each map value a Key first,
// close with End*, then Finish() once and read data()/size(). Clear() makes
// the writer reusable without freeing memory. Not thread-safe.
//
// Differences from the Builder, both about inputs the Builder gets wrong:
// keys are taken with their length and may not contain a NUL (Key() returns
// false; the Builder would silently cut the key at the NUL), and EndMap()
// returns false on duplicate keys instead of writing an unreadable map.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "flatbuffers/flexbuffers.h"

namespace shmpool::ipc {

class FlexWriter {
 public:
  explicit FlexWriter(std::size_t initial_bytes = 512) { grow(initial_bytes); }

  void Clear() {
    size_ = 0;
    stack_.clear();
  }

  void Null() { stack_.push_back(Value{0, flexbuffers::FBT_NULL, flexbuffers::BIT_WIDTH_8}); }
  void Bool(bool b) {
    stack_.push_back(Value{uint64_t(b), flexbuffers::FBT_BOOL, flexbuffers::BIT_WIDTH_8});
  }
  void Int(int64_t i) {
    stack_.push_back(Value{uint64_t(i), flexbuffers::FBT_INT, flexbuffers::WidthI(i)});
  }
  void UInt(uint64_t u) {
    stack_.push_back(Value{u, flexbuffers::FBT_UINT, flexbuffers::WidthU(u)});
  }
  void Double(double d) {
    Value v{0, flexbuffers::FBT_FLOAT, flexbuffers::WidthF(d)};
    std::memcpy(&v.bits, &d, sizeof d);
    stack_.push_back(v);
  }
  void String(const char* s, std::size_t n) { blob(s, n, 1, flexbuffers::FBT_STRING); }
  void Blob(const void* p, std::size_t n) { blob(p, n, 0, flexbuffers::FBT_BLOB); }
  // A map key; false if it contains a NUL (nothing is written then).
  [[nodiscard]] bool Key(const char* s, std::size_t n) {
    if (std::memchr(s, 0, n) != nullptr) return false;
    const std::size_t at = size_;
    write_bytes(s, n);
    put_byte(0);
    stack_.push_back(Value{at, flexbuffers::FBT_KEY, flexbuffers::BIT_WIDTH_8});
    return true;
  }

  std::size_t StartMap() const { return stack_.size(); }
  std::size_t StartVector() const { return stack_.size(); }
  void EndVector(std::size_t start) {
    Value v = create_vector(start, stack_.size() - start, 1, nullptr);
    stack_.resize(start);
    stack_.push_back(v);
  }
  // False on duplicate keys (the map is not written).
  [[nodiscard]] bool EndMap(std::size_t start) {
    const std::size_t len = (stack_.size() - start) / 2;
    if (!sort_keys(start, len)) return false;
    Value keys = create_vector(start, len, 2, nullptr);
    Value map = create_vector(start + 1, len, 2, &keys);
    stack_.resize(start);
    stack_.push_back(map);
    return true;
  }

  // Writes the root: exactly one value must be on the stack.
  void Finish() {
    const Value& root = stack_[0];
    const uint8_t width = align(elem_width(root, size_, 0));
    write_any(root, width);
    put_byte(stored_packed_type(root, flexbuffers::BIT_WIDTH_8));
    put_byte(width);
  }

  const uint8_t* data() const { return buf_.get(); }
  std::size_t size() const { return size_; }

 private:
  struct Value {
    uint64_t bits;  // the scalar's bits (int, uint, bool, double), or the target's position
    flexbuffers::Type type;
    flexbuffers::BitWidth min_width;
  };

  static bool is_inline(flexbuffers::Type t) { return flexbuffers::IsInline(t); }

  // Builder::Value::ElemWidth: an inline value's own width; for an offset,
  // the smallest width that reaches the target from where the element lands.
  static flexbuffers::BitWidth elem_width(const Value& v, std::size_t buf_size, std::size_t index) {
    if (is_inline(v.type)) return v.min_width;
    for (std::size_t byte_width = 1; byte_width <= 8; byte_width *= 2) {
      const std::size_t loc =
          buf_size + flatbuffers::PaddingBytes(buf_size, byte_width) + index * byte_width;
      const flexbuffers::BitWidth w = flexbuffers::WidthU(loc - v.bits);
      if ((std::size_t(1) << w) == byte_width) return w;
    }
    return flexbuffers::BIT_WIDTH_64;  // unreachable: 8 bytes reach anything
  }
  static uint8_t stored_packed_type(const Value& v, flexbuffers::BitWidth parent) {
    const flexbuffers::BitWidth w = is_inline(v.type) ? std::max(v.min_width, parent) : v.min_width;
    return flexbuffers::PackedType(w, v.type);
  }

  // Sorts the (key, value) pairs from `start` by key bytes (strcmp order, as
  // the Builder). Small maps, the common case, by insertion sort.
  bool sort_keys(std::size_t start, std::size_t len) {
    struct Pair {
      Value key, value;
    };
    static_assert(sizeof(Pair) == 2 * sizeof(Value));
    auto* pairs = reinterpret_cast<Pair*>(stack_.data() + start);
    const char* base = reinterpret_cast<const char*>(buf_.get());
    auto less = [base](const Pair& a, const Pair& b) {
      return std::strcmp(base + a.key.bits, base + b.key.bits) < 0;
    };
    if (len <= 16) {
      for (std::size_t i = 1; i < len; ++i) {
        Pair p = pairs[i];
        std::size_t j = i;
        for (; j > 0 && less(p, pairs[j - 1]); --j) pairs[j] = pairs[j - 1];
        pairs[j] = p;
      }
    } else {
      std::sort(pairs, pairs + len, less);
    }
    for (std::size_t i = 1; i < len; ++i) {
      if (!less(pairs[i - 1], pairs[i])) return false;  // equal keys
    }
    return true;
  }

  // Builder::CreateVector (never typed-fixed); `keys` makes it a map. With
  // step 2 from a map's start it writes the typed vector of its keys.
  Value create_vector(std::size_t start, std::size_t len, std::size_t step, const Value* keys) {
    const bool typed = step == 2 && keys == nullptr;  // the keys of a map
    flexbuffers::BitWidth width = flexbuffers::WidthU(len);
    std::size_t prefix = 1;
    if (keys) {
      width = std::max(width, elem_width(*keys, size_, 0));
      prefix += 2;
    }
    const std::size_t end = start + len * step;
    for (std::size_t i = start; i < end; i += step) {
      // (i - start, as the Builder: for a map's keys and values the index
      // runs over both, which can only overestimate the width needed.)
      width = std::max(width, elem_width(stack_[i], size_, i - start + prefix));
    }
    const uint8_t byte_width = align(width);
    if (keys) {
      write_offset(keys->bits, byte_width);
      write_uint(uint64_t(1) << keys->min_width, byte_width);
    }
    write_uint(len, byte_width);
    const std::size_t at = size_;
    for (std::size_t i = start; i < end; i += step) write_any(stack_[i], byte_width);
    if (!typed) {
      reserve(len);
      for (std::size_t i = start; i < end; i += step) {
        buf_[size_++] = stored_packed_type(stack_[i], width);
      }
    }
    flexbuffers::Type type = keys    ? flexbuffers::FBT_MAP
                             : typed ? flexbuffers::FBT_VECTOR_KEY
                                     : flexbuffers::FBT_VECTOR;
    return Value{at, type, width};
  }

  void blob(const void* p, std::size_t n, std::size_t trailing, flexbuffers::Type type) {
    const flexbuffers::BitWidth w = flexbuffers::WidthU(n);
    write_uint(n, align(w));
    const std::size_t at = size_;
    write_bytes(p, n);
    if (trailing) put_byte(0);
    stack_.push_back(Value{at, type, w});
  }

  void write_any(const Value& v, uint8_t byte_width) {
    switch (v.type) {
      case flexbuffers::FBT_NULL:
      case flexbuffers::FBT_INT:
      case flexbuffers::FBT_BOOL:
      case flexbuffers::FBT_UINT:
        write_uint(v.bits, byte_width);  // little-endian truncation of the two's complement
        break;
      case flexbuffers::FBT_FLOAT: {
        double d;
        std::memcpy(&d, &v.bits, sizeof d);
        if (byte_width == 4) {
          const float f = float(d);
          write_bytes(&f, 4);
        } else {
          write_bytes(&d, 8);
        }
        break;
      }
      default:
        write_offset(v.bits, byte_width);
        break;
    }
  }
  void write_offset(uint64_t target, uint8_t byte_width) { write_uint(size_ - target, byte_width); }
  void write_uint(uint64_t v, uint8_t byte_width) {
    reserve(8);
    std::memcpy(buf_.get() + size_, &v, byte_width);  // little-endian (x86-64, aarch64)
    size_ += byte_width;
  }
  uint8_t align(flexbuffers::BitWidth w) {
    const std::size_t byte_width = std::size_t(1) << w;
    const std::size_t pad = flatbuffers::PaddingBytes(size_, byte_width);
    reserve(8);
    std::memset(buf_.get() + size_, 0, 8);  // (pad < 8: one fixed-size store)
    size_ += pad;
    return uint8_t(byte_width);
  }
  void put_byte(uint8_t b) {
    reserve(1);
    buf_[size_++] = b;
  }
  void write_bytes(const void* p, std::size_t n) {
    reserve(n);
    if (n) std::memcpy(buf_.get() + size_, p, n);
    size_ += n;
  }
  void reserve(std::size_t n) {
    if (n > capacity_ - size_) grow(size_ + n);
  }
  void grow(std::size_t need) {
    std::size_t cap = std::max<std::size_t>(capacity_ * 2, 64);
    while (cap < need) cap *= 2;
    std::unique_ptr<uint8_t[]> next(new uint8_t[cap]);
    if (size_) std::memcpy(next.get(), buf_.get(), size_);
    buf_ = std::move(next);
    capacity_ = cap;
  }

  std::unique_ptr<uint8_t[]> buf_;
  std::size_t size_ = 0;
  std::size_t capacity_ = 0;
  std::vector<Value> stack_;
};

}  // namespace shmpool::ipc
