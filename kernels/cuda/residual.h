#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace cdl::kernels::cuda {

// Enqueues r_dev[i] = x_dev[i] - r_dev[i] for i in [0, n): turns a decoded payload into the
// error-feedback residual, rounding as the CPU's float subtraction does.
void subtractFrom(const float* x_dev, float* r_dev, int64_t n, cudaStream_t stream);

}  // namespace cdl::kernels::cuda
