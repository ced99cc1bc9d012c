#include "kernels/cuda/bitpack.h"

#include <algorithm>

#include "kernels/base/checks.h"
#include "kernels/base/error.h"
#include "kernels/bitpack.h"

namespace cdl::kernels::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 8192;

// Eight symbols of `bits` bits fill exactly `bits` bytes, so thread g owns symbols 8g .. 8g+7
// and output bytes bits*g .. bits*g + bits - 1, and no two threads touch the same byte.
__global__ void packKernel(const uint8_t* __restrict__ sym, int64_t n, int bits,
                           uint8_t* __restrict__ out) {
  const int64_t groups = (n + 7) / 8;
  const uint32_t mask = (1u << bits) - 1u;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t g = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; g < groups;
       g += stride) {
    const int64_t first = 8 * g;
    const int count = n - first < 8 ? static_cast<int>(n - first) : 8;
    uint64_t v = 0;
    for (int k = 0; k < count; ++k) v |= static_cast<uint64_t>(sym[first + k] & mask) << (k * bits);
    const int bytes = (count * bits + 7) / 8;
    uint8_t* o = out + bits * g;
    for (int k = 0; k < bytes; ++k) o[k] = static_cast<uint8_t>(v >> (8 * k));
  }
}

__global__ void unpackKernel(const uint8_t* __restrict__ in, int64_t n, int bits,
                             uint8_t* __restrict__ sym, uint32_t limit,
                             unsigned long long* __restrict__ firstBad) {
  const int64_t groups = (n + 7) / 8;
  const uint32_t mask = (1u << bits) - 1u;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t g = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; g < groups;
       g += stride) {
    const int64_t first = 8 * g;
    const int count = n - first < 8 ? static_cast<int>(n - first) : 8;
    const int bytes = (count * bits + 7) / 8;
    const uint8_t* p = in + bits * g;
    uint64_t v = 0;
    for (int k = 0; k < bytes; ++k) v |= static_cast<uint64_t>(p[k]) << (8 * k);
    for (int k = 0; k < count; ++k) {
      const uint32_t s = static_cast<uint32_t>(v >> (k * bits)) & mask;
      sym[first + k] = static_cast<uint8_t>(s);
      if (firstBad != nullptr && s >= limit) {
        atomicMin(firstBad, static_cast<unsigned long long>(first + k));
        break;
      }
    }
  }
}

int blocksFor(int64_t n) {
  const int64_t groups = (n + 7) / 8;
  return static_cast<int>(std::clamp<int64_t>((groups + kThreads - 1) / kThreads, 1, kMaxBlocks));
}

}  // namespace

void packBits(const uint8_t* sym_dev, int64_t n, int bits, uint8_t* out_dev, cudaStream_t stream) {
  checkBitpackArgs("cuda::packBits", sym_dev, n, bits, out_dev);
  if (n == 0) return;
  packKernel<<<blocksFor(n), kThreads, 0, stream>>>(sym_dev, n, bits, out_dev);
  CDL_CUDA_CHECK(cudaGetLastError());
}

void unpackBits(const uint8_t* in_dev, int64_t n, int bits, uint8_t* sym_dev, int limit,
                int64_t* firstBad_dev, cudaStream_t stream) {
  checkBitpackArgs("cuda::unpackBits", in_dev, n, bits, sym_dev);
  if (firstBad_dev != nullptr) {
    CDL_CUDA_CHECK(cudaMemsetAsync(firstBad_dev, 0xff, sizeof(int64_t), stream));
  }
  if (n == 0) return;
  // Symbols are below 2^bits, so a limit at or above it can never be broken: skip the atomics.
  const uint32_t cap = static_cast<uint32_t>(std::max(limit, 0));
  unsigned long long* bad = firstBad_dev != nullptr && cap < (1u << bits)
                                ? reinterpret_cast<unsigned long long*>(firstBad_dev)
                                : nullptr;
  unpackKernel<<<blocksFor(n), kThreads, 0, stream>>>(in_dev, n, bits, sym_dev, cap, bad);
  CDL_CUDA_CHECK(cudaGetLastError());
}

}  // namespace cdl::kernels::cuda
