#include "kernels/cuda/half.h"

#include <cuda_fp16.h>

#include <algorithm>

#include "kernels/base/checks.h"
#include "kernels/base/error.h"

namespace cdl::kernels::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 8192;

int blocksFor(int64_t n) {
  return static_cast<int>(std::clamp<int64_t>((n + kThreads - 1) / kThreads, 1, kMaxBlocks));
}

#define CDL_GRID_LOOP(i, n)                                                              \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)

__global__ void scanFiniteKernel(const float* __restrict__ x, int64_t n, float limit,
                                 unsigned long long* __restrict__ firstNonFinite,
                                 unsigned long long* __restrict__ firstAbove) {
  CDL_GRID_LOOP(i, n) {
    const uint32_t bits = __float_as_uint(x[i]) & 0x7fffffffu;
    if (bits >= 0x7f800000u) {
      atomicMin(firstNonFinite, static_cast<unsigned long long>(i));
    } else if (__uint_as_float(bits) > limit) {
      atomicMin(firstAbove, static_cast<unsigned long long>(i));
    }
  }
}

__device__ __forceinline__ void storeU16(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
}

__device__ __forceinline__ uint32_t loadU16(const uint8_t* p) {
  return uint32_t{p[0]} | uint32_t{p[1]} << 8;
}

__global__ void toHalfKernel(const float* __restrict__ x, int64_t n, uint8_t* __restrict__ out) {
  CDL_GRID_LOOP(i, n) { storeU16(out + 2 * i, __half_as_ushort(__float2half_rn(x[i]))); }
}

// Round to nearest even on the bit pattern, as kernels/half.cc does (inputs are finite here; a
// NaN keeps its sign and becomes quiet, as there).
__global__ void toBf16Kernel(const float* __restrict__ x, int64_t n, uint8_t* __restrict__ out) {
  CDL_GRID_LOOP(i, n) {
    const uint32_t u = __float_as_uint(x[i]);
    const bool nan = (u & 0x7fffffffu) > 0x7f800000u;
    const uint32_t rounded = u + 0x7fffu + ((u >> 16) & 1u);
    storeU16(out + 2 * i, nan ? ((u >> 16) | 0x40u) : (rounded >> 16));
  }
}

// kFormat: 0 fp16, 1 bf16, 2 fp32.
template <int kFormat>
__global__ void fromWireKernel(const uint8_t* __restrict__ in, int64_t n, float* __restrict__ out,
                               bool accumulate) {
  CDL_GRID_LOOP(i, n) {
    float v;
    if constexpr (kFormat == 0) {
      v = __half2float(__ushort_as_half(static_cast<unsigned short>(loadU16(in + 2 * i))));
    } else if constexpr (kFormat == 1) {
      v = __fadd_rn(accumulate ? out[i] : 0.0f, __uint_as_float(loadU16(in + 2 * i) << 16));
    } else {
      v = __uint_as_float(loadU16(in + 4 * i) | loadU16(in + 4 * i + 2) << 16);
    }
    if (kFormat != 1 && accumulate) v = __fadd_rn(out[i], v);
    out[i] = v;
  }
}

void checkArgs(const char* what, const void* in, int64_t n, const void* out) {
  CDL_CHECK(n >= 0, what, ": element count ", n, " is negative");
  CDL_CHECK(n == 0 || (in != nullptr && out != nullptr), what, ": null buffer for ", n,
            " elements");
}

template <int kFormat>
void fromWire(const char* what, const uint8_t* in_dev, int64_t n, float* out_dev, bool accumulate,
              cudaStream_t stream) {
  checkArgs(what, in_dev, n, out_dev);
  if (n == 0) return;
  fromWireKernel<kFormat><<<blocksFor(n), kThreads, 0, stream>>>(in_dev, n, out_dev, accumulate);
  CDL_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void scanFinite(const float* x_dev, int64_t n, float limit, int64_t* firstNonFinite_dev,
                int64_t* firstAbove_dev, cudaStream_t stream) {
  checkArgs("cuda::scanFinite", x_dev, n, firstNonFinite_dev);
  CDL_CHECK(firstNonFinite_dev != nullptr && firstAbove_dev != nullptr,
            "cuda::scanFinite: null result pointer");
  CDL_CUDA_CHECK(cudaMemsetAsync(firstNonFinite_dev, 0xff, sizeof(int64_t), stream));
  CDL_CUDA_CHECK(cudaMemsetAsync(firstAbove_dev, 0xff, sizeof(int64_t), stream));
  if (n == 0) return;
  scanFiniteKernel<<<blocksFor(n), kThreads, 0, stream>>>(
      x_dev, n, limit, reinterpret_cast<unsigned long long*>(firstNonFinite_dev),
      reinterpret_cast<unsigned long long*>(firstAbove_dev));
  CDL_CUDA_CHECK(cudaGetLastError());
}

void floatToHalf(const float* x_dev, int64_t n, uint8_t* out_dev, cudaStream_t stream) {
  checkArgs("cuda::floatToHalf", x_dev, n, out_dev);
  if (n == 0) return;
  toHalfKernel<<<blocksFor(n), kThreads, 0, stream>>>(x_dev, n, out_dev);
  CDL_CUDA_CHECK(cudaGetLastError());
}

void floatToBf16(const float* x_dev, int64_t n, uint8_t* out_dev, cudaStream_t stream) {
  checkArgs("cuda::floatToBf16", x_dev, n, out_dev);
  if (n == 0) return;
  toBf16Kernel<<<blocksFor(n), kThreads, 0, stream>>>(x_dev, n, out_dev);
  CDL_CUDA_CHECK(cudaGetLastError());
}

void halfToFloat(const uint8_t* in_dev, int64_t n, float* out_dev, bool accumulate,
                 cudaStream_t stream) {
  fromWire<0>("cuda::halfToFloat", in_dev, n, out_dev, accumulate, stream);
}

void bf16ToFloat(const uint8_t* in_dev, int64_t n, float* out_dev, bool accumulate,
                 cudaStream_t stream) {
  fromWire<1>("cuda::bf16ToFloat", in_dev, n, out_dev, accumulate, stream);
}

void fp32ToFloat(const uint8_t* in_dev, int64_t n, float* out_dev, bool accumulate,
                 cudaStream_t stream) {
  fromWire<2>("cuda::fp32ToFloat", in_dev, n, out_dev, accumulate, stream);
}

}  // namespace cdl::kernels::cuda
