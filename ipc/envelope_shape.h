// envelope_shape.h: an envelope that repeats but for a few fields. Calls and
// replies repeat (a ping, an ack, a poll with the same args): their
// envelopes are the same bytes but for the id, a deadline, a result of the
// same length. An EnvelopeShape remembers one envelope and where those
// fields ("holes") are, so that
//   - a reader recognises a repeat (matches(): equal but for the holes) and
//     skips the Verifier (read_request / read_response, envelope.h), and
//   - a sender rewrites the holes of the last envelope (patch()) instead of
//     building a new one (ShmChannel's requests, the Python worker's replies).
//
// A hole is a root-table field named by its vtable offset (the generated
// VT_* constant): a scalar's or struct's bytes, or a string's or vector's
// elements (its length is not part of the hole: a match has the same
// length). The field tables below say what each root-table field is, for
// locating holes and for the reader's soundness check; they are checked at
// compile time against the generated code (`static_assert` at the bottom),
// so a field added to schemas/envelope.fbs fails the build here until it is
// listed.
//
// One process, one thread at a time; plain memory. remember() copies the
// envelope (the first copies allocate, later ones reuse the capacity);
// matches() and patch() never allocate.
#pragma once

#include <cassert>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include "shmpool/schema/envelope_generated.h"

namespace shmpool::ipc {

// What a root-table field is, as far as the Verifier reads it.
enum class FieldKind : uint8_t {
  scalar,  // a scalar or a struct, stored in the table
  string,  // an offset to a string
  bytes,   // an offset to a [ubyte] (possibly a nested FlexBuffer)
  table,   // an offset to a sub-table
};

struct FieldSpec {
  flatbuffers::voffset_t vt;  // the generated VT_* constant
  FieldKind kind;
  uint8_t size;  // bytes in the table: the scalar's or struct's, 4 for an offset
};

// Every field of the root tables, in schema order.
inline constexpr FieldSpec kRequestFields[] = {
    {schema::Request::VT_ID, FieldKind::scalar, 8},
    {schema::Request::VT_SESSION_ID, FieldKind::string, 4},
    {schema::Request::VT_COMMAND, FieldKind::string, 4},
    {schema::Request::VT_ARGS, FieldKind::bytes, 4},
    {schema::Request::VT_PAYLOAD, FieldKind::scalar, 16},
    {schema::Request::VT_BODY, FieldKind::bytes, 4},
    {schema::Request::VT_DEADLINE_MONO_NS, FieldKind::scalar, 8},
    {schema::Request::VT_ARENA_PAYLOAD, FieldKind::scalar, 24},
    {schema::Request::VT_FLAGS, FieldKind::scalar, 4},
    {schema::Request::VT_NOTIFY, FieldKind::scalar, 4},
    {schema::Request::VT_WINDOW_ITEMS, FieldKind::scalar, 4},
    {schema::Request::VT_WINDOW_BYTES, FieldKind::scalar, 8},
};
inline constexpr FieldSpec kResponseFields[] = {
    {schema::Response::VT_ID, FieldKind::scalar, 8},
    {schema::Response::VT_STATUS, FieldKind::scalar, 1},
    {schema::Response::VT_RESULT, FieldKind::bytes, 4},
    {schema::Response::VT_PAYLOAD, FieldKind::scalar, 16},
    {schema::Response::VT_BODY, FieldKind::bytes, 4},
    {schema::Response::VT_ERROR, FieldKind::table, 4},
    {schema::Response::VT_ARENA_PAYLOAD, FieldKind::scalar, 24},
    {schema::Response::VT_MORE, FieldKind::scalar, 1},
};

class EnvelopeShape {
 public:
  static constexpr std::size_t kMaxHoles = 2;
  struct Hole {
    uint32_t at = 0;    // offset in the envelope
    uint32_t size = 0;  // 0: the field is absent (no hole)
  };

  // Sender: remembers `env`, an envelope this process built with
  // FlatBufferBuilder, whose root table has `fields`, with a hole at each
  // field of `holes` (VT_* constants, in the order patch() numbers them).
  // True if every one of them is present (a sender can patch them all).
  bool remember(std::span<const uint8_t> env, std::span<const FieldSpec> fields,
                std::initializer_list<flatbuffers::voffset_t> holes);

  // Reader: the same for an envelope the Verifier accepted, kept only when
  // the Verifier's verdict cannot depend on the bytes of its holes: holes
  // are scalars, and no other byte it reads (root offset, the table's
  // soffset and vtable, the other fields and the strings and vectors they
  // point to) lies in them. FlatBufferBuilder never overlaps them; a crafted
  // envelope can, and is then not kept. Nor is one with a sub-table (an
  // error): its vtable may lie anywhere. A hole field may be absent. True if
  // kept.
  bool remember_verified(std::span<const uint8_t> env, std::span<const FieldSpec> fields,
                         std::initializer_list<flatbuffers::voffset_t> holes);

  void forget() {
    bytes_.clear();
    solid_count_ = 0;
  }
  bool empty() const { return bytes_.empty(); }

  // True if `env` equals the remembered envelope but for the holes' bytes.
  // Never true while empty().
  bool matches(std::span<const uint8_t> env) const {
    if (env.size() != bytes_.size() || bytes_.empty()) return false;
    for (std::size_t i = 0; i < solid_count_; ++i) {
      const Solid s = solid_[i];
      if (std::memcmp(env.data() + s.from, bytes_.data() + s.from, s.to - s.from) != 0)
        return false;
    }
    return true;
  }

  // The remembered envelope, patched.
  std::span<const uint8_t> bytes() const { return bytes_; }
  // Hole k as remember() found it (size 0: absent, or no such hole).
  Hole hole(std::size_t k) const { return k < kMaxHoles && k < hole_count_ ? holes_[k] : Hole{}; }

  // Rewrites hole k (present) with a scalar of its size, or with bytes of its size.
  template <class T>
  requires std::is_arithmetic_v<T>
  void patch(std::size_t k, T value) {
    assert(k < hole_count_ && holes_[k].size == sizeof(T));
    flatbuffers::WriteScalar(bytes_.data() + holes_[k].at, value);
  }
  void patch(std::size_t k, std::span<const uint8_t> value) {
    assert(k < hole_count_ && holes_[k].size == value.size());
    std::memcpy(bytes_.data() + holes_[k].at, value.data(), value.size());
  }

 private:
  // Forgets, then finds the holes of `env` in holes_; false if a hole field
  // is unknown, a table or (scalars_only) not a scalar.
  bool locate(std::span<const uint8_t> env, std::span<const FieldSpec> fields,
              std::initializer_list<flatbuffers::voffset_t> holes, bool scalars_only);
  // Copies `env` and the bytes between the holes; false if holes overlap.
  bool keep(std::span<const uint8_t> env);

  std::vector<uint8_t> bytes_;
  Hole holes_[kMaxHoles];
  std::size_t hole_count_ = 0;
  // The bytes matches() compares: [from, to) between the holes, ascending.
  struct Solid {
    uint32_t from, to;
  };
  Solid solid_[kMaxHoles + 1];
  std::size_t solid_count_ = 0;
};

// ---- The field tables, checked against the generated code ----------------
// (flatc --cpp-static-reflection: Table::Traits::fields_number and
// FieldType<i>, the type of the i-th field's accessor.)
namespace envelope_fields {

template <class T>
concept Reflected = requires {
  typename T::Traits;
};

// True if a field whose accessor returns T is of kind k with `size` bytes
// in the table. False for any kind the soundness check cannot bound (e.g. a
// vector of tables): supporting one must be a deliberate change.
template <class T>
constexpr bool kind_is(FieldKind k, std::size_t size) {
  using P = std::remove_cv_t<std::remove_pointer_t<T>>;
  if constexpr (std::is_arithmetic_v<T> || std::is_enum_v<T>) {
    return k == FieldKind::scalar && size == sizeof(T);
  } else if constexpr (std::is_same_v<T, const flatbuffers::String*>) {
    return k == FieldKind::string && size == sizeof(flatbuffers::uoffset_t);
  } else if constexpr (std::is_same_v<T, const flatbuffers::Vector<uint8_t>*>) {
    return k == FieldKind::bytes && size == sizeof(flatbuffers::uoffset_t);
  } else if constexpr (std::is_pointer_v<T> && Reflected<P> &&
                       std::is_base_of_v<flatbuffers::Table, P>) {
    return k == FieldKind::table && size == sizeof(flatbuffers::uoffset_t);
  } else if constexpr (std::is_pointer_v<T> && Reflected<P>) {  // a struct, stored inline
    return k == FieldKind::scalar && size == sizeof(P);
  } else {
    return false;
  }
}

// The vtable offset FlatBuffers gives the field with index i (its VT_*).
constexpr flatbuffers::voffset_t field_offset(std::size_t i) {
  return flatbuffers::voffset_t((2 + i) * sizeof(flatbuffers::voffset_t));
}

template <class Table, std::size_t... I>
constexpr bool lists_each(std::span<const FieldSpec> f, std::index_sequence<I...>) {
  return f.size() == sizeof...(I) &&
         ((f[I].vt == field_offset(I) &&
           kind_is<typename Table::Traits::template FieldType<I>>(f[I].kind, f[I].size)) &&
          ...);
}

// True if `f` lists every field of Table, in order, each at its VT_* offset
// and with its kind and size.
template <class Table>
constexpr bool lists_every_field(std::span<const FieldSpec> f) {
  return lists_each<Table>(f, std::make_index_sequence<Table::Traits::fields_number>{});
}

}  // namespace envelope_fields

static_assert(envelope_fields::lists_every_field<schema::Request>(kRequestFields),
              "kRequestFields must list every field of Request (schemas/envelope.fbs) in order, "
              "with its kind: EnvelopeShape's soundness check reads it");
static_assert(envelope_fields::lists_every_field<schema::Response>(kResponseFields),
              "kResponseFields must list every field of Response (schemas/envelope.fbs) in order, "
              "with its kind: EnvelopeShape's soundness check reads it");

}  // namespace shmpool::ipc
