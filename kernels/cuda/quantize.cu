#include "kernels/cuda/quantize.h"

#include <algorithm>
#include <cstdint>

#include <cuda_runtime_api.h>

#include "kernels/base/checks.h"
#include "kernels/base/error.h"
#include "kernels/cuda/quantize.cuh"

namespace cdl::kernels::cuda {
namespace {

using detail::bucketOf;
using detail::kNonFiniteBits;

constexpr int kThreads = 256;
constexpr int kMaxBlocks = 8192;
// Each thread of the symbol and dequantize kernels handles this many consecutive elements.
constexpr int kGroup = 4;
// Each warp of the scale kernel covers this many consecutive elements per step.
constexpr int kWarpSpan = 32 * kGroup;

int blocksFor(int64_t items) {
  const int64_t blocks = (items + kThreads - 1) / kThreads;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(blocks, kMaxBlocks)));
}

bool narrowIndices(int64_t n, int64_t bucket) {
  return n + kWarpSpan <= int64_t{UINT32_MAX} && bucket <= int64_t{UINT32_MAX};
}

bool aligned(const void* p, uintptr_t to) { return reinterpret_cast<uintptr_t>(p) % to == 0; }

// scaleBits[b] = max over bucket b of the bit pattern of |x| (zeroed beforehand): for finite
// floats the largest pattern is the largest magnitude, and patterns >= kNonFiniteBits mark a NaN
// or infinity, whose smallest index goes to *firstBad.
__global__ void bucketMaxKernel(const float* __restrict__ x, int64_t n, int64_t bucket, bool narrow,
                                unsigned int* __restrict__ scaleBits,
                                unsigned long long* __restrict__ firstBad) {
  const int lane = threadIdx.x % 32;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * blockDim.x / 32;
  for (int64_t w = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
       w * kWarpSpan < n; w += warps) {
    const int64_t base = w * kWarpSpan;
    const int64_t last = (base + kWarpSpan < n ? base + kWarpSpan : n) - 1;
    const bool oneBucket = bucketOf(base, bucket, narrow) == bucketOf(last, bucket, narrow);
    unsigned int mx = 0;
#pragma unroll
    for (int k = 0; k < kGroup; ++k) {
      const int64_t i = base + lane + 32 * k;
      if (i > last) break;
      const unsigned int u = __float_as_uint(x[i]) & 0x7fffffffu;
      if (u >= kNonFiniteBits) atomicMin(firstBad, static_cast<unsigned long long>(i));
      if (oneBucket) {
        mx = u > mx ? u : mx;
      } else if (u != 0) {
        atomicMax(scaleBits + bucketOf(i, bucket, narrow), u);
      }
    }
    if (oneBucket) {
      for (int offset = 16; offset > 0; offset /= 2) {
        const unsigned int other = __shfl_xor_sync(0xffffffffu, mx, offset);
        mx = other > mx ? other : mx;
      }
      if (lane == 0 && mx != 0) atomicMax(scaleBits + bucketOf(base, bucket, narrow), mx);
    }
  }
}

template <bool kStochastic, bool kVector>
__global__ void symbolKernel(const float* __restrict__ x, int64_t n, int64_t bucket, bool narrow,
                             uint32_t intervals, uint64_t key, const float* __restrict__ scales,
                             uint8_t* __restrict__ sym) {
  const float top = static_cast<float>(intervals);
  const float half = 0.5f * top;
  const uint32_t zeroSym = intervals / 2;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t g = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; g * kGroup < n;
       g += stride) {
    const int64_t i0 = g * kGroup;
    const int count = n - i0 < kGroup ? static_cast<int>(n - i0) : kGroup;
    float v[kGroup] = {0.0f, 0.0f, 0.0f, 0.0f};
    if (kVector && count == kGroup) {
      const float4 q = *reinterpret_cast<const float4*>(x + i0);
      v[0] = q.x;
      v[1] = q.y;
      v[2] = q.z;
      v[3] = q.w;
    } else {
#pragma unroll
      for (int k = 0; k < kGroup; ++k) {
        if (k < count) v[k] = x[i0 + k];
      }
    }
    uint32_t s[kGroup] = {0, 0, 0, 0};
    int64_t b = bucketOf(i0, bucket, narrow);
    const bool oneBucket = b == bucketOf(i0 + count - 1, bucket, narrow);
    float m = __ldg(scales + b);
    detail::BucketMap map = detail::bucketMap(m > 0.0f ? m : 1.0f, half);
#pragma unroll
    for (int k = 0; k < kGroup; ++k) {
      if (k >= count) break;
      if (!oneBucket && k > 0) {
        const int64_t bk = bucketOf(i0 + k, bucket, narrow);
        if (bk != b) {
          b = bk;
          m = __ldg(scales + b);
          map = detail::bucketMap(m > 0.0f ? m : 1.0f, half);
        }
      }
      const bool usable = m > 0.0f && __float_as_uint(m) < kNonFiniteBits;
      s[k] = usable ? detail::symbolOf<kStochastic>(v[k], map, half, top, key,
                                                    static_cast<uint64_t>(i0 + k))
                    : zeroSym;
    }
    if (kVector && count == kGroup) {
      *reinterpret_cast<uint32_t*>(sym + i0) = s[0] | (s[1] << 8) | (s[2] << 16) | (s[3] << 24);
    } else {
#pragma unroll
      for (int k = 0; k < kGroup; ++k) {
        if (k < count) sym[i0 + k] = static_cast<uint8_t>(s[k]);
      }
    }
  }
}

template <bool kAccumulate, bool kVector>
__global__ void dequantizeKernel(const uint8_t* __restrict__ sym, const float* __restrict__ scales,
                                 int64_t n, int64_t bucket, bool narrow, uint32_t intervals,
                                 float* __restrict__ out) {
  __shared__ float levels[256];
  const float half = 0.5f * static_cast<float>(intervals);
  for (int k = threadIdx.x; k < 256; k += blockDim.x) {
    levels[k] = detail::levelOf(static_cast<uint32_t>(k), intervals, half);
  }
  __syncthreads();
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t g = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; g * kGroup < n;
       g += stride) {
    const int64_t i0 = g * kGroup;
    const int count = n - i0 < kGroup ? static_cast<int>(n - i0) : kGroup;
    uint32_t s[kGroup] = {0, 0, 0, 0};
    float prev[kGroup] = {0.0f, 0.0f, 0.0f, 0.0f};
    const bool vector = kVector && count == kGroup;
    if (vector) {
      const uint32_t packed = *reinterpret_cast<const uint32_t*>(sym + i0);
#pragma unroll
      for (int k = 0; k < kGroup; ++k) s[k] = (packed >> (8 * k)) & 0xffu;
      if (kAccumulate) {
        const float4 q = *reinterpret_cast<const float4*>(out + i0);
        prev[0] = q.x;
        prev[1] = q.y;
        prev[2] = q.z;
        prev[3] = q.w;
      }
    } else {
#pragma unroll
      for (int k = 0; k < kGroup; ++k) {
        if (k < count) {
          s[k] = sym[i0 + k];
          if (kAccumulate) prev[k] = out[i0 + k];
        }
      }
    }
    const int64_t b0 = bucketOf(i0, bucket, narrow);
    const bool oneBucket = b0 == bucketOf(i0 + count - 1, bucket, narrow);
    const float m0 = __ldg(scales + b0);
    float r[kGroup];
#pragma unroll
    for (int k = 0; k < kGroup; ++k) {
      float m = m0;
      if (!oneBucket && k > 0 && k < count) m = __ldg(scales + bucketOf(i0 + k, bucket, narrow));
      r[k] = __fadd_rn(prev[k], __fmul_rn(levels[s[k]], m));
    }
    if (vector) {
      *reinterpret_cast<float4*>(out + i0) = make_float4(r[0], r[1], r[2], r[3]);
    } else {
#pragma unroll
      for (int k = 0; k < kGroup; ++k) {
        if (k < count) out[i0 + k] = r[k];
      }
    }
  }
}

void checkParams(const char* what, int64_t n, int bits, int64_t bucket) {
  CDL_CHECK(bits >= 1 && bits <= 8, what, ": bits = ", bits, ", must be in 1..8");
  CDL_CHECK(bucket >= 1, what, ": bucket = ", bucket, ", must be >= 1");
  CDL_CHECK(n >= 0, what, ": element count ", n, " is negative");
}

template <bool kStochastic>
void launchSymbols(const float* x_dev, int64_t n, const QuantizeParams& p, bool narrow,
                   const float* scales_dev, uint8_t* sym_dev, cudaStream_t stream) {
  const int blocks = blocksFor((n + kGroup - 1) / kGroup);
  const uint32_t intervals = quantIntervals(p.bits);
  if (aligned(x_dev, 16) && aligned(sym_dev, 4)) {
    symbolKernel<kStochastic, true><<<blocks, kThreads, 0, stream>>>(
        x_dev, n, p.bucket, narrow, intervals, p.key, scales_dev, sym_dev);
  } else {
    symbolKernel<kStochastic, false><<<blocks, kThreads, 0, stream>>>(
        x_dev, n, p.bucket, narrow, intervals, p.key, scales_dev, sym_dev);
  }
  CDL_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void quantizeAsync(const float* x_dev, int64_t n, const QuantizeParams& p, uint8_t* sym_dev,
                   float* scales_dev, int64_t* firstBad_dev, cudaStream_t stream) {
  checkParams("cuda::quantize", n, p.bits, p.bucket);
  CDL_CHECK(firstBad_dev != nullptr, "cuda::quantize: null firstBad_dev");
  CDL_CUDA_CHECK(cudaMemsetAsync(firstBad_dev, 0xff, sizeof(int64_t), stream));
  if (n == 0) return;
  CDL_CHECK(x_dev != nullptr && sym_dev != nullptr && scales_dev != nullptr,
            "cuda::quantize: null input, symbol or scale pointer for ", n, " elements");
  CDL_CHECK(p.rounding == Rounding::kNearest || p.rounding == Rounding::kStochastic,
            "cuda::quantize: unknown rounding mode ", static_cast<int>(p.rounding));
  const int64_t nb = numBuckets(n, p.bucket);
  const bool narrow = narrowIndices(n, p.bucket);
  CDL_CUDA_CHECK(cudaMemsetAsync(scales_dev, 0, static_cast<size_t>(nb) * sizeof(float), stream));
  bucketMaxKernel<<<blocksFor((n + kGroup - 1) / kGroup), kThreads, 0, stream>>>(
      x_dev, n, p.bucket, narrow, reinterpret_cast<unsigned int*>(scales_dev),
      reinterpret_cast<unsigned long long*>(firstBad_dev));
  CDL_CUDA_CHECK(cudaGetLastError());
  if (p.rounding == Rounding::kStochastic) {
    launchSymbols<true>(x_dev, n, p, narrow, scales_dev, sym_dev, stream);
  } else {
    launchSymbols<false>(x_dev, n, p, narrow, scales_dev, sym_dev, stream);
  }
}

void throwIfNonFinite(const int64_t* firstBad_dev, const float* x_dev, cudaStream_t stream) {
  int64_t bad = -1;
  CDL_CUDA_CHECK(cudaMemcpyAsync(&bad, firstBad_dev, sizeof(bad), cudaMemcpyDeviceToHost, stream));
  CDL_CUDA_CHECK(cudaStreamSynchronize(stream));
  if (bad < 0) return;
  float value = 0.0f;
  CDL_CUDA_CHECK(
      cudaMemcpyAsync(&value, x_dev + bad, sizeof(value), cudaMemcpyDeviceToHost, stream));
  CDL_CUDA_CHECK(cudaStreamSynchronize(stream));
  CDL_THROW("quantize: element ", bad, " is ", value,
            "; only finite values can be quantized (check the tensor for overflow or NaNs)");
}

void quantize(const float* x_dev, int64_t n, const QuantizeParams& p, uint8_t* sym_dev,
              float* scales_dev, cudaStream_t stream) {
  void* scratch = nullptr;
  CDL_CUDA_CHECK(cudaMallocAsync(&scratch, sizeof(int64_t), stream));
  int64_t* firstBad_dev = static_cast<int64_t*>(scratch);
  try {
    quantizeAsync(x_dev, n, p, sym_dev, scales_dev, firstBad_dev, stream);
    throwIfNonFinite(firstBad_dev, x_dev, stream);
  } catch (...) {
    (void)cudaFreeAsync(scratch, stream);
    throw;
  }
  CDL_CUDA_CHECK(cudaFreeAsync(scratch, stream));
}

void dequantize(const uint8_t* sym_dev, const float* scales_dev, int64_t n, int bits,
                int64_t bucket, float* out_dev, bool accumulate, cudaStream_t stream) {
  checkParams("cuda::dequantize", n, bits, bucket);
  if (n == 0) return;
  CDL_CHECK(sym_dev != nullptr && scales_dev != nullptr && out_dev != nullptr,
            "cuda::dequantize: null symbol, scale or output pointer for ", n, " elements");
  const int blocks = blocksFor((n + kGroup - 1) / kGroup);
  const bool narrow = narrowIndices(n, bucket);
  const uint32_t intervals = quantIntervals(bits);
  const bool vector = aligned(sym_dev, 4) && aligned(out_dev, 16);
  if (accumulate && vector) {
    dequantizeKernel<true, true><<<blocks, kThreads, 0, stream>>>(sym_dev, scales_dev, n, bucket,
                                                                  narrow, intervals, out_dev);
  } else if (accumulate) {
    dequantizeKernel<true, false><<<blocks, kThreads, 0, stream>>>(sym_dev, scales_dev, n, bucket,
                                                                   narrow, intervals, out_dev);
  } else if (vector) {
    dequantizeKernel<false, true><<<blocks, kThreads, 0, stream>>>(sym_dev, scales_dev, n, bucket,
                                                                   narrow, intervals, out_dev);
  } else {
    dequantizeKernel<false, false><<<blocks, kThreads, 0, stream>>>(sym_dev, scales_dev, n, bucket,
                                                                    narrow, intervals, out_dev);
  }
  CDL_CUDA_CHECK(cudaGetLastError());
}

}  // namespace cdl::kernels::cuda
