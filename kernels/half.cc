#include "kernels/half.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "kernels/base/cpu_dispatch.h"

namespace cdl::kernels {
namespace {

uint16_t floatToHalfScalar(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t absx = x & 0x7fffffffu;
  if (absx >= 0x7f800000u) {  // Inf or NaN (keep a quiet NaN payload bit)
    return static_cast<uint16_t>(sign | 0x7c00u | (absx > 0x7f800000u ? 0x200u : 0u));
  }
  if (absx >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to >= 65520
  if (absx < 0x38800000u) {                                               // subnormal or zero
    if (absx < 0x33000000u) return static_cast<uint16_t>(sign);           // below half of 2^-24
    const uint32_t exp = absx >> 23;
    const uint32_t mant = (absx & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126 - exp;  // 14..24
    uint32_t h = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1);
    const uint32_t halfway = 1u << (shift - 1);
    if (rem > halfway || (rem == halfway && (h & 1u))) ++h;
    return static_cast<uint16_t>(sign | h);
  }
  uint32_t h = ((absx - 0x38000000u) >> 13);
  const uint32_t rem = absx & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;
  return static_cast<uint16_t>(sign | h);
}

float halfToFloatScalar(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  uint32_t x;
  if (exp == 0) {
    if (mant == 0) {
      x = sign;
    } else {
      const float v = std::ldexp(static_cast<float>(mant), -24);
      std::memcpy(&x, &v, 4);
      x |= sign;
    }
  } else if (exp == 31) {
    x = sign | 0x7f800000u | (mant << 13);
  } else {
    x = sign | ((exp + 112) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CDL_HAVE_F16C_PATH 1
__attribute__((target("avx2,f16c"))) void floatToHalfF16c(const float* x, int64_t n,
                                                          uint16_t* out) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i),
                     _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  for (; i < n; ++i) out[i] = floatToHalfScalar(x[i]);
}

__attribute__((target("avx2,f16c"))) void halfToFloatF16c(const uint16_t* in, int64_t n, float* out,
                                                          bool accumulate) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i)));
    if (accumulate) v = _mm256_add_ps(v, _mm256_loadu_ps(out + i));
    _mm256_storeu_ps(out + i, v);
  }
  for (; i < n; ++i) out[i] = (accumulate ? out[i] : 0.0f) + halfToFloatScalar(in[i]);
}

#endif

}  // namespace

void floatToHalf(const float* x, int64_t n, uint16_t* out) {
#ifdef CDL_HAVE_F16C_PATH
  if (cpuHasAvx2()) return floatToHalfF16c(x, n, out);
#endif
  for (int64_t i = 0; i < n; ++i) out[i] = floatToHalfScalar(x[i]);
}

void halfToFloat(const uint16_t* in, int64_t n, float* out, bool accumulate) {
#ifdef CDL_HAVE_F16C_PATH
  if (cpuHasAvx2()) return halfToFloatF16c(in, n, out, accumulate);
#endif
  for (int64_t i = 0; i < n; ++i) out[i] = (accumulate ? out[i] : 0.0f) + halfToFloatScalar(in[i]);
}

void floatToBf16(const float* x, int64_t n, uint16_t* out) {
  for (int64_t i = 0; i < n; ++i) {
    uint32_t u;
    std::memcpy(&u, x + i, 4);
    const bool nan = (u & 0x7fffffffu) > 0x7f800000u;
    const uint32_t rounded = u + 0x7fffu + ((u >> 16) & 1u);
    out[i] = static_cast<uint16_t>(nan ? ((u >> 16) | 0x40u) : (rounded >> 16));
  }
}

void bf16ToFloat(const uint16_t* in, int64_t n, float* out, bool accumulate) {
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t u = static_cast<uint32_t>(in[i]) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    out[i] = (accumulate ? out[i] : 0.0f) + f;
  }
}

int64_t firstNonFinite(const float* x, int64_t n, float* maxAbs) {
  float m = 0.0f;
  bool bad = false;
  for (int64_t i = 0; i < n; ++i) {
    const float a = std::fabs(x[i]);
    bad |= !(a <= 3.402823466e38f);
    m = a > m ? a : m;
  }
  int64_t first = -1;
  if (bad) {
    m = 0.0f;
    for (int64_t i = 0; i < n; ++i) {
      if (!std::isfinite(x[i])) {
        if (first < 0) first = i;
      } else {
        m = std::max(m, std::fabs(x[i]));
      }
    }
  }
  if (maxAbs) *maxAbs = m;
  return first;
}

}  // namespace cdl::kernels
