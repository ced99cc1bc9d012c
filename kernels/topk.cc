#include "kernels/topk.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/base/error.h"

namespace cdl::kernels {
namespace {

inline uint32_t magnitudeKey(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u & 0x7fffffffu;  // for finite floats, the order of these integers is the order of |f|
}

// Finds within hist (counts per bin, bins in increasing key order) the bin where the k-th largest
// lies; returns it and sets *above to the number of elements in higher bins.
uint32_t findBin(const std::vector<uint32_t>& hist, int64_t k, int64_t* above) {
  int64_t acc = 0;
  for (size_t b = hist.size(); b-- > 0;) {
    if (acc + hist[b] >= k) {
      *above = acc;
      return static_cast<uint32_t>(b);
    }
    acc += hist[b];
  }
  *above = acc;
  return 0;
}

}  // namespace

void topkIndices(const float* x, int64_t n, int64_t k, uint32_t* idx) {
  CDL_CHECK(k >= 0 && k <= n, "topk: k = ", k, " out of range for ", n, " elements");
  CDL_CHECK(n < (int64_t{1} << 32), "topk: ", n, " elements exceed the 2^32 index range");
  if (k == 0) return;
  if (k == n) {
    for (int64_t i = 0; i < n; ++i) idx[i] = static_cast<uint32_t>(i);
    return;
  }
  // Radix select on the magnitude bits: high 16 bits, then low 16 bits within the chosen bin.
  std::vector<uint32_t> hist(1u << 16, 0);
  for (int64_t i = 0; i < n; ++i) ++hist[magnitudeKey(x[i]) >> 16];
  int64_t aboveHigh = 0;
  const uint32_t high = findBin(hist, k, &aboveHigh);
  std::fill(hist.begin(), hist.end(), 0u);
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t key = magnitudeKey(x[i]);
    if ((key >> 16) == high) ++hist[key & 0xffffu];
  }
  int64_t aboveLow = 0;
  const uint32_t low = findBin(hist, k - aboveHigh, &aboveLow);
  const uint32_t threshold = (high << 16) | low;
  // Everything above the threshold is taken; of the elements equal to it, the first ones in index
  // order fill the remaining places.
  int64_t equalLeft = k - aboveHigh - aboveLow;
  int64_t out = 0;
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t key = magnitudeKey(x[i]);
    if (key > threshold || (key == threshold && equalLeft-- > 0)) {
      idx[out++] = static_cast<uint32_t>(i);
    }
  }
  CDL_CHECK(out == k, "topk: selected ", out, " of ", k, " elements (non-finite input?)");
}

}  // namespace cdl::kernels
