#include "core/model_file/model_canonical.h"

#include <algorithm>
#include <cstring>
#include <numeric>

#include "kernels/base/error.h"
#include "kernels/row_multiset.h"

namespace cdl::core {
namespace {

ModelTensor& tensorOf(ModelFile& f, const std::string& name, const std::string& group) {
  for (ModelTensor& t : f.tensors) {
    if (t.name == name) return t;
  }
  CDL_THROW("canonical order of '", group, "': the model has no tensor '", name, "'");
}

// The bytes of element i of t's row `row` (rows x cols view), for ordering.
const uint8_t* elementBytes(const ModelTensor& t, int64_t index, size_t* width) {
  switch (t.kind) {
    case TensorKind::kQuantized:
      *width = 1;
      return t.symbols.data() + index;
    case TensorKind::kFloat:
      *width = 4;
      return reinterpret_cast<const uint8_t*>(t.values.data() + index);
    default:
      *width = 8;
      return reinterpret_cast<const uint8_t*>(t.ints.data() + index);
  }
}

// The sort key of every unit: its row, then its per-unit entries, then its next-layer columns.
std::vector<std::vector<uint8_t>> unitKeys(const ModelTensor& w,
                                           const std::vector<ModelTensor*>& per,
                                           const ModelTensor& next, int64_t block) {
  const int64_t units = w.rows();
  std::vector<std::vector<uint8_t>> keys(units);
  size_t width = 0;
  for (int64_t u = 0; u < units; ++u) {
    std::vector<uint8_t>& k = keys[u];
    const uint8_t* row = elementBytes(w, u * w.cols(), &width);
    k.assign(row, row + w.cols());
    for (const ModelTensor* t : per) {
      const uint8_t* e = elementBytes(*t, u, &width);
      k.insert(k.end(), e, e + width);
    }
    for (int64_t o = 0; o < next.rows(); ++o) {
      const uint8_t* c = elementBytes(next, o * next.cols() + u * block, &width);
      k.insert(k.end(), c, c + width * block);
    }
  }
  return keys;
}

// Reorders the units (blocks of `unit` elements, `count` of them per outer index) of one buffer.
template <typename T>
void permuteBlocks(std::vector<T>& v, int64_t outer, int64_t count, int64_t unit,
                   const std::vector<int64_t>& perm) {
  std::vector<T> out(v.size());
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t i = 0; i < count; ++i) {
      std::copy_n(v.begin() + (o * count + perm[i]) * unit, unit,
                  out.begin() + (o * count + i) * unit);
    }
  }
  v.swap(out);
}

void permute(ModelTensor& t, int64_t outer, int64_t count, int64_t unit,
             const std::vector<int64_t>& perm) {
  if (t.kind == TensorKind::kQuantized) {
    permuteBlocks(t.symbols, outer, count, unit, perm);
  } else if (t.kind == TensorKind::kFloat) {
    permuteBlocks(t.values, outer, count, unit, perm);
  } else {
    permuteBlocks(t.ints, outer, count, unit, perm);
  }
}

std::vector<int64_t> canonicalizeGroup(ModelFile& f, const UnitGroup& g) {
  ModelTensor& w = tensorOf(f, g.weight, g.weight);
  CDL_CHECK(w.kind == TensorKind::kQuantized && !w.shape.empty() &&
                static_cast<int64_t>(w.symbols.size()) == w.numel(),
            "canonical order: '", g.weight, "' is not a quantized weight with its symbols");
  const int64_t units = w.rows();
  std::vector<int64_t> perm(units);
  std::iota(perm.begin(), perm.end(), 0);
  if (units > kernels::kRowMultisetMaxRows) return perm;  // stays in order, coded as it was
  std::vector<ModelTensor*> per;
  for (const std::string& name : g.perUnit) {
    ModelTensor& t = tensorOf(f, name, g.weight);
    CDL_CHECK(t.kind != TensorKind::kQuantized && t.numel() == units, "canonical order of '",
              g.weight, "': '", name, "' has ", t.numel(), " entries, not one per unit (", units,
              ")");
    per.push_back(&t);
  }
  ModelTensor& next = tensorOf(f, g.next, g.weight);
  CDL_CHECK(g.block >= 1 && next.cols() == units * g.block &&
                (next.kind != TensorKind::kQuantized ||
                 static_cast<int64_t>(next.symbols.size()) == next.numel()),
            "canonical order of '", g.weight, "': '", g.next, "' has ", next.cols(),
            " inputs, not ", g.block, " per unit of ", units);
  const auto keys = unitKeys(w, per, next, g.block);
  std::stable_sort(perm.begin(), perm.end(),
                   [&](int64_t a, int64_t b) { return keys[a] < keys[b]; });
  permute(w, 1, units, w.cols(), perm);
  for (ModelTensor* t : per) permute(*t, 1, units, 1, perm);
  permute(next, next.rows(), units, g.block, perm);
  w.coder = TensorCoder::kRowMultiset;
  return perm;
}

}  // namespace

std::vector<std::vector<int64_t>> canonicalize(ModelFile& file,
                                               const std::vector<UnitGroup>& groups) {
  std::vector<std::vector<int64_t>> perms;
  for (const UnitGroup& g : groups) perms.push_back(canonicalizeGroup(file, g));
  return perms;
}

}  // namespace cdl::core
