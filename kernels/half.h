#pragma once

#include <cstdint>

namespace cdl::kernels {

// IEEE binary16 and bfloat16 conversions with round-to-nearest-even. Values beyond the fp16 range
// become infinities and NaNs stay NaNs; callers that must not overflow check first (the fp16 codec
// does).
void floatToHalf(const float* x, int64_t n, uint16_t* out);
void halfToFloat(const uint16_t* in, int64_t n, float* out, bool accumulate);
void floatToBf16(const float* x, int64_t n, uint16_t* out);
void bf16ToFloat(const uint16_t* in, int64_t n, float* out, bool accumulate);

// Index of the first element of x that is NaN or infinite, or -1. maxAbs receives max |x| over
// the finite elements (0 when none).
int64_t firstNonFinite(const float* x, int64_t n, float* maxAbs);

}  // namespace cdl::kernels
