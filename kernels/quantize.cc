#include "kernels/quantize.h"

#include <cstring>

#include "kernels/cpu_dispatch.h"
#include "kernels/error.h"
#include "kernels/rng.h"

namespace cdl::kernels {
namespace {

// Bit patterns of |x| order like the magnitudes for finite floats; infinities and NaNs are the
// patterns from here up.
constexpr uint32_t kNonFiniteBits = 0x7f800000u;

void checkParams(const char* what, int64_t n, int bits, int64_t bucket) {
  CDL_CHECK(bits >= 1 && bits <= 8, what, ": bits = ", bits, ", must be in 1..8");
  CDL_CHECK(bucket >= 1, what, ": bucket = ", bucket, ", must be >= 1");
  CDL_CHECK(n >= 0, what, ": element count ", n, " is negative");
}

// Largest |x| of the bucket as a bit pattern; >= kNonFiniteBits when it holds a NaN or infinity.
inline uint32_t maxAbsBits(const float* x, int64_t len) {
  uint32_t mx = 0;
  for (int64_t j = 0; j < len; ++j) {
    uint32_t u;
    std::memcpy(&u, x + j, sizeof(u));
    u &= 0x7fffffffu;
    mx = u > mx ? u : mx;
  }
  return mx;
}

[[noreturn]] __attribute__((noinline, cold)) void throwNonFinite(const float* x, int64_t start,
                                                                 int64_t len) {
  for (int64_t j = 0; j < len; ++j) {
    uint32_t u;
    std::memcpy(&u, x + j, sizeof(u));
    if ((u & 0x7fffffffu) >= kNonFiniteBits) {
      CDL_THROW("quantize: element ", start + j, " is ", x[j],
                "; only finite values can be quantized (check the tensor for overflow or NaNs)");
    }
  }
  CDL_THROW("quantize: internal error, non-finite bucket at ", start, " has no bad element");
}

// The position of x on the bucket's grid is t = (x * pre) * inv + half, clamped to [0, L]:
// (x + m) * L / (2m) rewritten so that x = 0 lands exactly on half. pre is a power of two that
// keeps inv = half / (m * pre) a normal float for any positive finite m, and inv is rounded up so
// that x = +-m reach the end points 0 and L exactly (after the clamp).
struct BucketMap {
  float pre;
  float inv;
};

inline BucketMap bucketMap(float m, float half) {
  float pre = 1.0f;
  if (m < 0x1.0p-64f) {
    pre = 0x1.0p64f;
  } else if (m > 0x1.0p64f) {
    pre = 0x1.0p-64f;
  }
  const float ms = m * pre;
  float inv = half / ms;
  // The double product of two floats is exact.
  if (static_cast<double>(inv) * static_cast<double>(ms) < static_cast<double>(half)) {
    uint32_t bits;
    std::memcpy(&bits, &inv, sizeof(bits));
    ++bits;
    std::memcpy(&inv, &bits, sizeof(inv));
  }
  return {pre, inv};
}

// The shared shape of both roundings: a pass for the scale, then one for the symbols, bucket by
// bucket so that the second pass reads from cache.
template <bool kStochastic>
inline void quantizeImpl(const float* x, int64_t n, int bits, int64_t bucket, uint64_t key,
                         uint8_t* sym, float* scales) {
  const uint32_t intervals = quantIntervals(bits);
  const float top = static_cast<float>(intervals);
  const float half = 0.5f * top;
  const uint8_t zeroSym = static_cast<uint8_t>(intervals / 2);
  for (int64_t start = 0, b = 0; start < n; start += bucket, ++b) {
    const int64_t len = n - start < bucket ? n - start : bucket;
    const float* xb = x + start;
    uint8_t* sb = sym + start;
    const uint32_t mBits = maxAbsBits(xb, len);
    if (mBits >= kNonFiniteBits) throwNonFinite(xb, start, len);
    float m;
    std::memcpy(&m, &mBits, sizeof(m));
    scales[b] = m;
    if (mBits == 0) {
      std::memset(sb, zeroSym, static_cast<size_t>(len));
      continue;
    }
    const BucketMap map = bucketMap(m, half);
    for (int64_t j = 0; j < len; ++j) {
      float t = xb[j] * map.pre * map.inv + half;
      t = t < 0.0f ? 0.0f : t;
      t = t > top ? top : t;
      int32_t k = static_cast<int32_t>(t);
      const float frac = t - static_cast<float>(k);
      if constexpr (kStochastic) {
        k += uniform01(key, static_cast<uint64_t>(start + j)) < frac ? 1 : 0;
      } else {
        k += frac >= 0.5f ? 1 : 0;
      }
      sb[j] = static_cast<uint8_t>(k);
    }
  }
}

CDL_TARGET_CLONES void quantizeNearest(const float* x, int64_t n, int bits, int64_t bucket,
                                       uint8_t* sym, float* scales) {
  quantizeImpl<false>(x, n, bits, bucket, 0, sym, scales);
}

CDL_TARGET_CLONES void quantizeStochastic(const float* x, int64_t n, int bits, int64_t bucket,
                                          uint64_t key, uint8_t* sym, float* scales) {
  quantizeImpl<true>(x, n, bits, bucket, key, sym, scales);
}

template <bool kAccumulate>
inline void dequantizeImpl(const uint8_t* sym, const float* scales, int64_t n, int bits,
                           int64_t bucket, float* out) {
  const uint32_t intervals = quantIntervals(bits);
  const int32_t top = static_cast<int32_t>(intervals);
  const float half = 0.5f * static_cast<float>(intervals);
  for (int64_t start = 0, b = 0; start < n; start += bucket, ++b) {
    const int64_t len = n - start < bucket ? n - start : bucket;
    const float m = scales[b];
    const uint8_t* sb = sym + start;
    float* ob = out + start;
    for (int64_t j = 0; j < len; ++j) {
      int32_t k = sb[j];
      k = k > top ? top : k;
      // (k - half) / half is exact at the ends (+-1) and the middle (0), so the extreme points
      // are exactly +-m and the zero symbol exactly 0.
      const float level = (static_cast<float>(k) - half) / half;
      const float v = level * m;
      ob[j] = (kAccumulate ? ob[j] : 0.0f) + v;
    }
  }
}

CDL_TARGET_CLONES void dequantizeSet(const uint8_t* sym, const float* scales, int64_t n, int bits,
                                     int64_t bucket, float* out) {
  dequantizeImpl<false>(sym, scales, n, bits, bucket, out);
}

CDL_TARGET_CLONES void dequantizeAdd(const uint8_t* sym, const float* scales, int64_t n, int bits,
                                     int64_t bucket, float* out) {
  dequantizeImpl<true>(sym, scales, n, bits, bucket, out);
}

}  // namespace

uint32_t quantIntervals(int bits) {
  CDL_CHECK(bits >= 1 && bits <= 8, "quantIntervals: bits = ", bits, ", must be in 1..8");
  return bits == 1 ? 1u : (1u << bits) - 2u;
}

int64_t numBuckets(int64_t n, int64_t bucket) {
  CDL_CHECK(bucket >= 1, "numBuckets: bucket = ", bucket, ", must be >= 1");
  CDL_CHECK(n >= 0, "numBuckets: element count ", n, " is negative");
  return n / bucket + (n % bucket != 0 ? 1 : 0);
}

void quantize(const float* x, int64_t n, const QuantizeParams& p, uint8_t* sym, float* scales) {
  checkParams("quantize", n, p.bits, p.bucket);
  if (n == 0) return;
  CDL_CHECK(x != nullptr && sym != nullptr && scales != nullptr,
            "quantize: null input, symbol or scale pointer for ", n, " elements");
  switch (p.rounding) {
    case Rounding::kNearest:
      quantizeNearest(x, n, p.bits, p.bucket, sym, scales);
      return;
    case Rounding::kStochastic:
      quantizeStochastic(x, n, p.bits, p.bucket, p.key, sym, scales);
      return;
  }
  CDL_THROW("quantize: unknown rounding mode ", static_cast<int>(p.rounding));
}

void dequantize(const uint8_t* sym, const float* scales, int64_t n, int bits, int64_t bucket,
                float* out, bool accumulate) {
  checkParams("dequantize", n, bits, bucket);
  if (n == 0) return;
  CDL_CHECK(sym != nullptr && scales != nullptr && out != nullptr,
            "dequantize: null symbol, scale or output pointer for ", n, " elements");
  if (accumulate) {
    dequantizeAdd(sym, scales, n, bits, bucket, out);
  } else {
    dequantizeSet(sym, scales, n, bits, bucket, out);
  }
}

}  // namespace cdl::kernels
