#include "kernels/quantize.h"

#include <cstring>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define CDL_QUANTIZE_SIMD 1
#endif

#include "kernels/base/cpu_dispatch.h"
#include "kernels/base/error.h"
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

// The symbols of one bucket. The restrict-qualified parameters tell the vectorizer that the
// symbols do not overlap the input.
template <bool kStochastic>
inline void roundBucket(const float* __restrict xb, int64_t len, BucketMap map, float half,
                        float top, uint64_t key, uint64_t first, uint8_t* __restrict sb) {
  for (int64_t j = 0; j < len; ++j) {
    float t = xb[j] * map.pre * map.inv + half;
    t = t < 0.0f ? 0.0f : t;
    t = t > top ? top : t;
    int32_t k = static_cast<int32_t>(t);
    const float frac = t - static_cast<float>(k);
    if constexpr (kStochastic) {
      k += uniform01(key, first + static_cast<uint64_t>(j)) < frac ? 1 : 0;
    } else {
      k += frac >= 0.5f ? 1 : 0;
    }
    sb[j] = static_cast<uint8_t>(k);
  }
}

#ifdef CDL_QUANTIZE_SIMD
// a * c mod 2^64 for four 64-bit lanes, from 32 x 32 -> 64-bit products.
__attribute__((target("avx2"))) inline __m256i mulLo64(__m256i a, __m256i cLo, __m256i cHi) {
  const __m256i lolo = _mm256_mul_epu32(a, cLo);
  const __m256i cross =
      _mm256_add_epi64(_mm256_mul_epu32(_mm256_srli_epi64(a, 32), cLo), _mm256_mul_epu32(a, cHi));
  return _mm256_add_epi64(lolo, _mm256_slli_epi64(cross, 32));
}

// The top 24 bits of mix64(z) for four lanes, in the low half of each lane. mix64's last step,
// z ^ (z >> 31), leaves bits 40..63 unchanged, so it is skipped.
__attribute__((target("avx2"))) inline __m256i mixTop24(__m256i z) {
  const __m256i c1Lo = _mm256_set1_epi64x(0x1ce4e5b9LL), c1Hi = _mm256_set1_epi64x(0xbf58476dLL);
  const __m256i c2Lo = _mm256_set1_epi64x(0x133111ebLL), c2Hi = _mm256_set1_epi64x(0x94d049bbLL);
  z = mulLo64(_mm256_xor_si256(z, _mm256_srli_epi64(z, 30)), c1Lo, c1Hi);
  z = mulLo64(_mm256_xor_si256(z, _mm256_srli_epi64(z, 27)), c2Lo, c2Hi);
  return _mm256_srli_epi64(z, 40);
}

// The symbols of eight elements: the same float operations as roundBucket in the same order, so
// the results are identical. z holds the generator inputs key + i * golden of the eight elements
// (two vectors of four lanes) and advances by eight.
template <bool kStochastic>
__attribute__((target("avx2"))) inline __m256i symbols8(const float* x, __m256 pre, __m256 inv,
                                                        __m256 half, __m256 top, __m256i z[2]) {
  __m256 t = _mm256_add_ps(_mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x), pre), inv), half);
  t = _mm256_min_ps(_mm256_max_ps(t, _mm256_setzero_ps()), top);
  const __m256i k = _mm256_cvttps_epi32(t);
  const __m256 frac = _mm256_sub_ps(t, _mm256_cvtepi32_ps(k));
  __m256 up;
  if constexpr (kStochastic) {
    constexpr int64_t kStep = static_cast<int64_t>(8 * 0x9e3779b97f4a7c15ULL);
    const __m256i evenDwords = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    const __m256i a = _mm256_permutevar8x32_epi32(mixTop24(z[0]), evenDwords);
    const __m256i b = _mm256_permutevar8x32_epi32(mixTop24(z[1]), evenDwords);
    const __m256 u = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_permute2x128_si256(a, b, 0x20)),
                                   _mm256_set1_ps(0x1.0p-24f));
    z[0] = _mm256_add_epi64(z[0], _mm256_set1_epi64x(kStep));
    z[1] = _mm256_add_epi64(z[1], _mm256_set1_epi64x(kStep));
    up = _mm256_cmp_ps(u, frac, _CMP_LT_OQ);
  } else {
    up = _mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ);
  }
  return _mm256_sub_epi32(k, _mm256_castps_si256(up));  // the mask is -1 where rounding up
}

// roundBucket with AVX2, 32 elements at a time.
template <bool kStochastic>
__attribute__((target("avx2"))) void roundBucketAvx2(const float* __restrict xb, int64_t len,
                                                     BucketMap map, float half, float top,
                                                     uint64_t key, uint64_t first,
                                                     uint8_t* __restrict sb) {
  const __m256 pre = _mm256_set1_ps(map.pre), inv = _mm256_set1_ps(map.inv);
  const __m256 vhalf = _mm256_set1_ps(half), vtop = _mm256_set1_ps(top);
  constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ULL;
  const __m256i base = _mm256_set1_epi64x(static_cast<int64_t>(key + first * kGolden));
  __m256i z[2] = {_mm256_add_epi64(base, _mm256_setr_epi64x(0, static_cast<int64_t>(kGolden),
                                                            static_cast<int64_t>(2 * kGolden),
                                                            static_cast<int64_t>(3 * kGolden))),
                  _mm256_add_epi64(base, _mm256_setr_epi64x(static_cast<int64_t>(4 * kGolden),
                                                            static_cast<int64_t>(5 * kGolden),
                                                            static_cast<int64_t>(6 * kGolden),
                                                            static_cast<int64_t>(7 * kGolden)))};
  const __m256i byteOrder = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  int64_t j = 0;
  for (; j + 32 <= len; j += 32) {
    const __m256i k0 = symbols8<kStochastic>(xb + j, pre, inv, vhalf, vtop, z);
    const __m256i k1 = symbols8<kStochastic>(xb + j + 8, pre, inv, vhalf, vtop, z);
    const __m256i k2 = symbols8<kStochastic>(xb + j + 16, pre, inv, vhalf, vtop, z);
    const __m256i k3 = symbols8<kStochastic>(xb + j + 24, pre, inv, vhalf, vtop, z);
    const __m256i bytes =
        _mm256_packus_epi16(_mm256_packs_epi32(k0, k1), _mm256_packs_epi32(k2, k3));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(sb + j),
                        _mm256_permutevar8x32_epi32(bytes, byteOrder));
  }
  roundBucket<kStochastic>(xb + j, len - j, map, half, top, key, first + static_cast<uint64_t>(j),
                           sb + j);
}

// GCC 12 warns, wrongly, that the AVX-512 intrinsics' own undefined pass-through operands may be
// used uninitialized (a GCC 12 false positive).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

// mixTop24 with AVX-512DQ's 64-bit multiply, eight lanes.
__attribute__((target("avx512f,avx512dq"))) inline __m512i mixTop24x8(__m512i z) {
  const __m512i c1 = _mm512_set1_epi64(static_cast<int64_t>(0xbf58476d1ce4e5b9ULL));
  const __m512i c2 = _mm512_set1_epi64(static_cast<int64_t>(0x94d049bb133111ebULL));
  z = _mm512_mullo_epi64(_mm512_xor_si512(z, _mm512_srli_epi64(z, 30)), c1);
  z = _mm512_mullo_epi64(_mm512_xor_si512(z, _mm512_srli_epi64(z, 27)), c2);
  return _mm512_srli_epi64(z, 40);
}

// symbols8 for sixteen elements (z: two vectors of eight generator inputs, advanced by sixteen),
// narrowed to bytes.
template <bool kStochastic>
__attribute__((target("avx512f,avx512dq,avx512bw,avx512vl"))) inline __m128i symbols16(
    const float* x, __m512 pre, __m512 inv, __m512 half, __m512 top, __m512i z[2]) {
  __m512 t = _mm512_add_ps(_mm512_mul_ps(_mm512_mul_ps(_mm512_loadu_ps(x), pre), inv), half);
  t = _mm512_min_ps(_mm512_max_ps(t, _mm512_setzero_ps()), top);
  const __m512i k = _mm512_cvttps_epi32(t);
  const __m512 frac = _mm512_sub_ps(t, _mm512_cvtepi32_ps(k));
  __mmask16 up;
  if constexpr (kStochastic) {
    constexpr int64_t kStep = static_cast<int64_t>(16 * 0x9e3779b97f4a7c15ULL);
    const __m256i a = _mm512_cvtepi64_epi32(mixTop24x8(z[0]));
    const __m256i b = _mm512_cvtepi64_epi32(mixTop24x8(z[1]));
    const __m512 u =
        _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1)),
                      _mm512_set1_ps(0x1.0p-24f));
    z[0] = _mm512_add_epi64(z[0], _mm512_set1_epi64(kStep));
    z[1] = _mm512_add_epi64(z[1], _mm512_set1_epi64(kStep));
    up = _mm512_cmp_ps_mask(u, frac, _CMP_LT_OQ);
  } else {
    up = _mm512_cmp_ps_mask(frac, _mm512_set1_ps(0.5f), _CMP_GE_OQ);
  }
  return _mm512_cvtepi32_epi8(_mm512_mask_add_epi32(k, up, k, _mm512_set1_epi32(1)));
}

// roundBucket with AVX-512, 64 elements at a time.
template <bool kStochastic>
__attribute__((target("avx512f,avx512dq,avx512bw,avx512vl"))) void roundBucketAvx512(
    const float* __restrict xb, int64_t len, BucketMap map, float half, float top, uint64_t key,
    uint64_t first, uint8_t* __restrict sb) {
  const __m512 pre = _mm512_set1_ps(map.pre), inv = _mm512_set1_ps(map.inv);
  const __m512 vhalf = _mm512_set1_ps(half), vtop = _mm512_set1_ps(top);
  constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ULL;
  const __m512i lane = _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7);
  const __m512i base =
      _mm512_add_epi64(_mm512_set1_epi64(static_cast<int64_t>(key + first * kGolden)),
                       _mm512_mullo_epi64(lane, _mm512_set1_epi64(static_cast<int64_t>(kGolden))));
  __m512i z[2] = {base,
                  _mm512_add_epi64(base, _mm512_set1_epi64(static_cast<int64_t>(8 * kGolden)))};
  int64_t j = 0;
  for (; j + 64 <= len; j += 64) {
    for (int q = 0; q < 4; ++q) {
      const __m128i bytes = symbols16<kStochastic>(xb + j + 16 * q, pre, inv, vhalf, vtop, z);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(sb + j + 16 * q), bytes);
    }
  }
  roundBucket<kStochastic>(xb + j, len - j, map, half, top, key, first + static_cast<uint64_t>(j),
                           sb + j);
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif

// The shared shape of both roundings: a pass for the scale, then one for the symbols, bucket by
// bucket so that the second pass reads from cache.
template <bool kStochastic>
inline void quantizeImpl(const float* x, int64_t n, int bits, int64_t bucket, uint64_t key,
                         uint8_t* sym, float* scales) {
  const uint32_t intervals = quantIntervals(bits);
  const float top = static_cast<float>(intervals);
  const float half = 0.5f * top;
  const uint8_t zeroSym = static_cast<uint8_t>(intervals / 2);
#ifdef CDL_QUANTIZE_SIMD
  const CpuLevel level = cpuLevel();
#endif
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
#ifdef CDL_QUANTIZE_SIMD
    if (level == CpuLevel::kAvx512) {
      roundBucketAvx512<kStochastic>(xb, len, bucketMap(m, half), half, top, key,
                                     static_cast<uint64_t>(start), sb);
      continue;
    }
    if (level == CpuLevel::kAvx2) {
      roundBucketAvx2<kStochastic>(xb, len, bucketMap(m, half), half, top, key,
                                   static_cast<uint64_t>(start), sb);
      continue;
    }
#endif
    roundBucket<kStochastic>(xb, len, bucketMap(m, half), half, top, key,
                             static_cast<uint64_t>(start), sb);
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
