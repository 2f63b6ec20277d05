#include "ipc/envelope_shape.h"

#include <algorithm>

namespace shmpool::ipc {

namespace {
// The field tables list every field in order (static_assert in the header),
// so a field's entry is found by its vtable offset.
const FieldSpec* spec_of(std::span<const FieldSpec> fields, flatbuffers::voffset_t vt) {
  if (vt < envelope_fields::field_offset(0) || vt % 2 != 0) return nullptr;
  const std::size_t i = vt / sizeof(flatbuffers::voffset_t) - 2;
  return i < fields.size() ? &fields[i] : nullptr;
}

bool is_hole(flatbuffers::voffset_t vt, std::initializer_list<flatbuffers::voffset_t> holes) {
  return std::find(holes.begin(), holes.end(), vt) != holes.end();
}

struct Range {
  std::size_t from, to;
};
bool overlap(Range a, Range b) { return a.from < b.to && b.from < a.to; }

// At most this many fields in a root table (the check below keeps their
// ranges on the stack).
constexpr std::size_t kMaxFields = 16;
static_assert(std::size(kRequestFields) <= kMaxFields && std::size(kResponseFields) <= kMaxFields);

// True if the Verifier's verdict on `env` (verified; its root table has
// `fields`) cannot depend on the bytes of `holes` (their positions in
// `found`, size 0 when absent): no other byte it reads lies among them.
bool stands_alone(std::span<const uint8_t> env, std::span<const FieldSpec> fields,
                  std::initializer_list<flatbuffers::voffset_t> holes,
                  std::span<const EnvelopeShape::Hole> found) {
  if (fields.size() > kMaxFields) return false;
  Range used[3 + 2 * kMaxFields];
  std::size_t n = 0;
  const uint8_t* base = env.data();
  const std::size_t table = flatbuffers::ReadScalar<flatbuffers::uoffset_t>(base);
  const std::size_t vtable =
      std::size_t(int64_t(table) - flatbuffers::ReadScalar<flatbuffers::soffset_t>(base + table));
  const std::size_t vsize = flatbuffers::ReadScalar<flatbuffers::voffset_t>(base + vtable);
  used[n++] = {0, sizeof(flatbuffers::uoffset_t)};
  used[n++] = {table, table + sizeof(flatbuffers::soffset_t)};
  used[n++] = {vtable, vtable + vsize};
  for (const FieldSpec& f : fields) {
    if (std::size_t(f.vt) + 2 > vsize) break;  // past the vtable: absent
    const std::size_t off = flatbuffers::ReadScalar<flatbuffers::voffset_t>(base + vtable + f.vt);
    if (off == 0) continue;              // absent
    if (is_hole(f.vt, holes)) continue;  // the holes themselves
    const std::size_t at = table + off;
    used[n++] = {at, at + f.size};
    if (f.kind == FieldKind::table) return false;
    if (f.kind == FieldKind::scalar) continue;
    const std::size_t target = at + flatbuffers::ReadScalar<flatbuffers::uoffset_t>(base + at);
    const std::size_t len = flatbuffers::ReadScalar<flatbuffers::uoffset_t>(base + target);
    used[n++] = {target, target + 4 + len + (f.kind == FieldKind::string ? 1 : 0)};
  }
  for (const EnvelopeShape::Hole& h : found) {
    if (h.size == 0) continue;
    const Range r{h.at, std::size_t(h.at) + h.size};
    for (std::size_t u = 0; u < n; ++u) {
      if (overlap(r, used[u])) return false;
    }
  }
  return true;
}
}  // namespace

bool EnvelopeShape::locate(std::span<const uint8_t> env, std::span<const FieldSpec> fields,
                           std::initializer_list<flatbuffers::voffset_t> holes, bool scalars_only) {
  forget();
  if (holes.size() > kMaxHoles || env.size() < sizeof(flatbuffers::uoffset_t)) return false;
  const uint8_t* base = env.data();
  const auto* table = flatbuffers::GetRoot<flatbuffers::Table>(base);
  hole_count_ = 0;
  std::fill(std::begin(holes_), std::end(holes_), Hole{});
  for (flatbuffers::voffset_t vt : holes) {
    const FieldSpec* f = spec_of(fields, vt);
    if (!f || f->kind == FieldKind::table || (scalars_only && f->kind != FieldKind::scalar))
      return false;
    Hole h;
    if (const uint8_t* p = table->GetAddressOf(vt)) {
      std::size_t at = std::size_t(p - base), size = f->size;
      if (f->kind != FieldKind::scalar) {  // the elements of a string or vector
        const std::size_t target = at + flatbuffers::ReadScalar<flatbuffers::uoffset_t>(p);
        at = target + sizeof(flatbuffers::uoffset_t);
        size = flatbuffers::ReadScalar<flatbuffers::uoffset_t>(base + target);
      }
      if (at + size > env.size()) return false;
      h = {uint32_t(at), uint32_t(size)};
    }
    holes_[hole_count_++] = h;
  }
  return true;
}

bool EnvelopeShape::keep(std::span<const uint8_t> env) {
  // The present holes in ascending order; the bytes between them are solid.
  Hole sorted[kMaxHoles];
  std::size_t n = 0;
  for (std::size_t k = 0; k < hole_count_; ++k) {
    if (holes_[k].size != 0) sorted[n++] = holes_[k];
  }
  for (std::size_t k = 1; k < n; ++k) {  // insertion sort (a std::sort of two trips -Warray-bounds)
    for (std::size_t j = k; j > 0 && sorted[j].at < sorted[j - 1].at; --j)
      std::swap(sorted[j], sorted[j - 1]);
  }
  std::size_t from = 0;
  solid_count_ = 0;
  for (std::size_t k = 0; k < n; ++k) {
    if (sorted[k].at < from) return false;  // holes that overlap
    if (sorted[k].at > from) solid_[solid_count_++] = {uint32_t(from), sorted[k].at};
    from = std::size_t(sorted[k].at) + sorted[k].size;
  }
  if (from < env.size()) solid_[solid_count_++] = {uint32_t(from), uint32_t(env.size())};
  bytes_.assign(env.begin(), env.end());
  return true;
}

bool EnvelopeShape::remember(std::span<const uint8_t> env, std::span<const FieldSpec> fields,
                             std::initializer_list<flatbuffers::voffset_t> holes) {
  if (!locate(env, fields, holes, false)) return false;
  for (std::size_t k = 0; k < hole_count_; ++k) {
    if (holes_[k].size == 0) return false;  // absent: nothing to patch
  }
  return keep(env);
}

bool EnvelopeShape::remember_verified(std::span<const uint8_t> env,
                                      std::span<const FieldSpec> fields,
                                      std::initializer_list<flatbuffers::voffset_t> holes) {
  if (!locate(env, fields, holes, true)) return false;
  if (!stands_alone(env, fields, holes, {holes_, hole_count_})) return false;
  return keep(env);
}

}  // namespace shmpool::ipc
