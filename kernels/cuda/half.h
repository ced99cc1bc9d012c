#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

// The GPU twins of kernels/half.h for the float codecs: the same bits as the CPU conversions for
// every finite input (round to nearest even, as the F16C instructions and the bf16 bit trick of
// kernels/half.cc). The 16- and 32-bit wire values are little-endian bytes at any alignment, as
// they sit in a payload body. Pointers ending in _dev are device memory; every call enqueues on
// `stream`.
namespace cdl::kernels::cuda {

// *firstNonFinite_dev receives the smallest index of a NaN or infinity in x_dev[0..n), and
// *firstAbove_dev the smallest index of a finite element with |x| > limit; each is -1 when there
// is none (both are one device int64, set here first).
void scanFinite(const float* x_dev, int64_t n, float limit, int64_t* firstNonFinite_dev,
                int64_t* firstAbove_dev, cudaStream_t stream);

// x_dev[0..n) as IEEE binary16 (floatToHalf) or bfloat16 (floatToBf16), 2n bytes at out_dev.
void floatToHalf(const float* x_dev, int64_t n, uint8_t* out_dev, cudaStream_t stream);
void floatToBf16(const float* x_dev, int64_t n, uint8_t* out_dev, cudaStream_t stream);

// out_dev[i] = (accumulate ? out_dev[i] : 0) + the value of element i of the wire form in_dev,
// as the CPU's halfToFloat (F16C path: overwriting stores the exact value), bf16ToFloat (which
// adds to 0.0f even when overwriting, so -0 reads as +0) and, for fp32, memcpy or +=.
void halfToFloat(const uint8_t* in_dev, int64_t n, float* out_dev, bool accumulate,
                 cudaStream_t stream);
void bf16ToFloat(const uint8_t* in_dev, int64_t n, float* out_dev, bool accumulate,
                 cudaStream_t stream);
void fp32ToFloat(const uint8_t* in_dev, int64_t n, float* out_dev, bool accumulate,
                 cudaStream_t stream);

}  // namespace cdl::kernels::cuda
