#pragma once

#include <cstdint>

namespace cdl::kernels {

// Writes to idx[0..k) the indices of the k elements of x with the largest magnitude, in increasing
// index order; among equal magnitudes the lower indices win, so the choice is deterministic.
// Requires 0 <= k <= n < 2^32 and finite x (NaN has no magnitude order; callers reject it first).
void topkIndices(const float* x, int64_t n, int64_t k, uint32_t* idx);

}  // namespace cdl::kernels
