#pragma once

#include <cstdint>

#include "kernels/rng.h"

// Per-element device math of the bucketed quantizer (Note [Bucketed uniform quantization] in
// kernels/quantize.h). Every step mirrors kernels/quantize.cc with explicitly rounded intrinsics,
// so that nvcc cannot fuse a multiply and an add and the results match the CPU bit for bit.
namespace cdl::kernels::cuda::detail {

constexpr uint32_t kNonFiniteBits = 0x7f800000u;

struct BucketMap {
  float pre;
  float inv;
};

// Position t = (x * pre) * inv + half; pre rescales tiny or huge buckets by a power of two and
// inv = half / (m * pre) is rounded up so that +-m land exactly on the end points.
__device__ __forceinline__ BucketMap bucketMap(float m, float half) {
  float pre = 1.0f;
  if (m < 0x1.0p-64f) {
    pre = 0x1.0p64f;
  } else if (m > 0x1.0p64f) {
    pre = 0x1.0p-64f;
  }
  const float ms = __fmul_rn(m, pre);
  float inv = __fdiv_rn(half, ms);
  if (__dmul_rn(static_cast<double>(inv), static_cast<double>(ms)) < static_cast<double>(half)) {
    inv = __uint_as_float(__float_as_uint(inv) + 1u);
  }
  return {pre, inv};
}

template <bool kStochastic>
__device__ __forceinline__ uint32_t symbolOf(float x, const BucketMap& map, float half, float top,
                                             uint64_t key, uint64_t index) {
  float t = __fadd_rn(__fmul_rn(__fmul_rn(x, map.pre), map.inv), half);
  t = t < 0.0f ? 0.0f : t;
  t = t > top ? top : t;
  int32_t k = static_cast<int32_t>(t);
  const float frac = __fsub_rn(t, static_cast<float>(k));
  if constexpr (kStochastic) {
    k += uniform01(key, index) < frac ? 1 : 0;
  } else {
    k += frac >= 0.5f ? 1 : 0;
  }
  return static_cast<uint32_t>(k);
}

// (k - half) / half for k clamped to L: exactly -1, 0 and +1 at the ends and the middle.
__device__ __forceinline__ float levelOf(uint32_t k, uint32_t intervals, float half) {
  k = k > intervals ? intervals : k;
  return __fdiv_rn(__fsub_rn(static_cast<float>(k), half), half);
}

// The bucket of element i; 32-bit division, much cheaper on the GPU, when the indices fit.
__device__ __forceinline__ int64_t bucketOf(int64_t i, int64_t bucket, bool narrow) {
  if (narrow) return static_cast<uint32_t>(i) / static_cast<uint32_t>(bucket);
  return i / bucket;
}

}  // namespace cdl::kernels::cuda::detail
