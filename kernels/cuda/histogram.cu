#include "kernels/cuda/histogram.h"

#include <cuda_runtime_api.h>

#include "kernels/base/checks.h"
#include "kernels/base/error.h"

namespace cdl::kernels::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxBlocks = 1024;
// One shared sub-histogram per warp, so that warps never contend for a counter.
constexpr int kCopies = kThreads / 32;

__device__ __forceinline__ void countWord(unsigned int* hist, unsigned int w) {
  atomicAdd(hist + (w & 0xffu), 1u);
  atomicAdd(hist + ((w >> 8) & 0xffu), 1u);
  atomicAdd(hist + ((w >> 16) & 0xffu), 1u);
  atomicAdd(hist + (w >> 24), 1u);
}

// Bytes [0, head) come before the first 16-byte boundary and are counted one by one, as is the
// tail after the last whole 16-byte word; the middle is read as uint4.
__global__ void histogramKernel(const uint8_t* __restrict__ sym, int64_t n, int64_t head,
                                unsigned long long* __restrict__ counts) {
  __shared__ unsigned int local[kCopies][256];
  for (int k = threadIdx.x; k < kCopies * 256; k += blockDim.x) local[k / 256][k % 256] = 0;
  __syncthreads();
  unsigned int* mine = local[(threadIdx.x / 32) % kCopies];
  const int64_t words = (n - head) / 16;
  const uint4* w = reinterpret_cast<const uint4*>(sym + head);
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; j < words;
       j += stride) {
    const uint4 q = w[j];
    countWord(mine, q.x);
    countWord(mine, q.y);
    countWord(mine, q.z);
    countWord(mine, q.w);
  }
  if (blockIdx.x == 0) {
    for (int64_t i = threadIdx.x; i < head; i += blockDim.x) atomicAdd(mine + sym[i], 1u);
    for (int64_t i = head + 16 * words + threadIdx.x; i < n; i += blockDim.x) {
      atomicAdd(mine + sym[i], 1u);
    }
  }
  __syncthreads();
  for (int s = threadIdx.x; s < 256; s += blockDim.x) {
    unsigned long long total = 0;
    for (int c = 0; c < kCopies; ++c) total += local[c][s];
    if (total != 0) atomicAdd(counts + s, total);
  }
}

}  // namespace

void histogram(const uint8_t* sym_dev, int64_t n, uint64_t* counts_dev, cudaStream_t stream) {
  CDL_CHECK(n >= 0, "cuda::histogram: element count ", n, " is negative");
  CDL_CHECK(counts_dev != nullptr && (sym_dev != nullptr || n == 0),
            "cuda::histogram: null symbol or count buffer for ", n, " symbols");
  CDL_CUDA_CHECK(cudaMemsetAsync(counts_dev, 0, 256 * sizeof(uint64_t), stream));
  if (n == 0) return;
  const int64_t misalign = static_cast<int64_t>(reinterpret_cast<uintptr_t>(sym_dev) % 16);
  const int64_t head = misalign == 0 ? 0 : (16 - misalign < n ? 16 - misalign : n);
  const int64_t words = (n - head) / 16;
  // Several words per thread, so that the per-block flush stays a small part of the work.
  int64_t blocks = (words + 4 * kThreads - 1) / (4 * kThreads);
  blocks = blocks < 1 ? 1 : (blocks > kMaxBlocks ? kMaxBlocks : blocks);
  histogramKernel<<<static_cast<int>(blocks), kThreads, 0, stream>>>(
      sym_dev, n, head, reinterpret_cast<unsigned long long*>(counts_dev));
  CDL_CUDA_CHECK(cudaGetLastError());
}

}  // namespace cdl::kernels::cuda
