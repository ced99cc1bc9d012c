#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace cdl::kernels::cuda {

// Enqueues on `stream`: counts_dev[s] = number of i in [0, n) with sym_dev[i] == s, for all 256
// byte values (the array is overwritten). The GPU twin of kernels/histogram.h.
void histogram(const uint8_t* sym_dev, int64_t n, uint64_t* counts_dev, cudaStream_t stream);

}  // namespace cdl::kernels::cuda
