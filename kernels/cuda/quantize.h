#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/quantize.h"

// The GPU twins of kernels/quantize.h: for the same input and parameters they produce the same
// symbols, scales and dequantized values as the CPU kernels, bit for bit (same position formula
// without fused multiply-adds, same counter-based draws from kernels/rng.h). Pointers ending in
// _dev are device memory; parameters are validated on the host and throw cdl::Error.
namespace cdl::kernels::cuda {

// Enqueues on `stream` the quantization of x_dev[0..n) into sym_dev[0..n) and
// scales_dev[0..numBuckets(n, p.bucket)). *firstBad_dev (one device int64) receives the index of
// the first NaN or infinite element, or -1; when it is not -1 the outputs are unspecified.
void quantizeAsync(const float* x_dev, int64_t n, const QuantizeParams& p, uint8_t* sym_dev,
                   float* scales_dev, int64_t* firstBad_dev, cudaStream_t stream);

// Waits for `stream`, then throws cdl::Error, worded as the CPU kernel's, when *firstBad_dev
// (written by quantizeAsync over x_dev) names a non-finite element.
void throwIfNonFinite(const int64_t* firstBad_dev, const float* x_dev, cudaStream_t stream);

// quantizeAsync and throwIfNonFinite with a scratch index of its own; returns once the stream
// has finished the work.
void quantize(const float* x_dev, int64_t n, const QuantizeParams& p, uint8_t* sym_dev,
              float* scales_dev, cudaStream_t stream);

// Enqueues out_dev[i] = (accumulate ? out_dev[i] : 0) + dequantized sym_dev[i], as the CPU
// dequantize (symbols above L count as L).
void dequantize(const uint8_t* sym_dev, const float* scales_dev, int64_t n, int bits,
                int64_t bucket, float* out_dev, bool accumulate, cudaStream_t stream);

}  // namespace cdl::kernels::cuda
