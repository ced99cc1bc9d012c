#include "kernels/cuda/residual.h"

#include <algorithm>

#include "kernels/base/checks.h"

namespace cdl::kernels::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void subtractKernel(const float* __restrict__ x, float* __restrict__ r, int64_t n) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    r[i] = __fsub_rn(x[i], r[i]);
  }
}

}  // namespace

void subtractFrom(const float* x_dev, float* r_dev, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  const int blocks = static_cast<int>(std::min<int64_t>((n + kThreads - 1) / kThreads, 8192));
  subtractKernel<<<blocks, kThreads, 0, stream>>>(x_dev, r_dev, n);
  CDL_CUDA_CHECK(cudaGetLastError());
}

}  // namespace cdl::kernels::cuda
