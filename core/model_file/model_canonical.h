#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/model_file/model_file.h"

namespace cdl::core {

// Note [Canonical order]
// A hidden unit of a layer is invariant to where it sits: permuting the units of a layer (the rows
// of its weight, the entries of its bias and of a batchnorm after it) together with the next
// layer's inputs (its weight's columns, `block` of them per unit, as a flatten of [units, h, w]
// lays them out) gives the same network. Canonical order sorts the units by their weight row's
// symbols, lexicographically (the order a row-multiset stream decodes to, Note [Coded model
// file]), breaking ties by their other entries and then their columns of the next layer, so that
// only units equal in everything share a key and the order is a function of the network alone.
// A layer in canonical order can then be stored as the multiset of its rows, saving up to
// log2(units! / prod m_j!) bits (m_j: multiplicities of identical rows).
struct UnitGroup {
  std::string weight;                // the layer's quantized weight: one row per unit
  std::vector<std::string> perUnit;  // 1-D tensors with one entry per unit (bias, batchnorm)
  std::string next;                  // the next layer's weight, [out, units * block, ...]
  int64_t block = 1;                 // its columns per unit
};

// Puts every group's units in canonical order, group after group (a group whose weight is a later
// group's `next` is permuted first), and marks each group's weight for row-multiset coding. A
// layer of more than kernels::kRowMultisetMaxRows units is left as it is.
// Returns the permutation of every group: new unit i was unit perm[i]. A group that does not fit
// the file (a missing tensor, sizes that disagree, a weight that is not quantized) is a
// cdl::Error naming the tensor.
std::vector<std::vector<int64_t>> canonicalize(ModelFile& file,
                                               const std::vector<UnitGroup>& groups);

}  // namespace cdl::core
