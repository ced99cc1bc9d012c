#pragma once

#include <cstdint>

namespace cdl::kernels {

// Note [Bucketed uniform quantization]
// A flat fp32 tensor is cut into buckets of `bucket` consecutive elements (the last one may be
// shorter). Each bucket has a scale m = max |x| over the bucket, stored as fp32. With b bits the
// bucket is mapped onto the L+1 points x_k = -m + k * (2m / L), k = 0..L, where L = 1 for b = 1
// (the points -m and +m) and L = 2^b - 2 for b >= 2 (so that 0 is the point k = L/2 exactly: the
// peak of a gradient's distribution lands on one symbol). The symbol of an element is its k, one
// byte per element, always < 2^b. Nearest rounding picks the closest point (ties up); stochastic
// rounding picks the point above with probability equal to the fractional position, which makes
// the dequantized value an unbiased estimate of x. A bucket whose scale is 0 maps every element to
// the symbol of 0 (L/2, or 0 when b = 1) and dequantizes to exact zeros.

enum class Rounding : uint8_t { kNearest = 0, kStochastic = 1 };

struct QuantizeParams {
  int bits = 4;           // 1..8
  int64_t bucket = 1024;  // elements per bucket, >= 1
  Rounding rounding = Rounding::kNearest;
  uint64_t key = 0;  // stochastic rounding stream, see roundingKey()
};

// The number of intervals L for b bits (see Note [Bucketed uniform quantization]).
uint32_t quantIntervals(int bits);

// ceil(n / bucket).
int64_t numBuckets(int64_t n, int64_t bucket);

// Quantizes x[0..n) into sym[0..n) and scales[0..numBuckets(n)). Throws cdl::Error naming the
// first element index that is NaN or infinite (the outputs are then unspecified), and on invalid
// params. Element i rounds up stochastically when uniform01(p.key, i) < its fractional position,
// so results are reproducible, independent of threading, and equal to the CUDA kernel's
// (kernels/cuda/quantize.h) bit for bit.
void quantize(const float* x, int64_t n, const QuantizeParams& p, uint8_t* sym, float* scales);

// out[i] = (accumulate ? out[i] : 0) + dequantized value of sym[i]. Symbols above L are clamped
// to L (the decoders validate ranges before calling this).
void dequantize(const uint8_t* sym, const float* scales, int64_t n, int bits, int64_t bucket,
                float* out, bool accumulate);

}  // namespace cdl::kernels
