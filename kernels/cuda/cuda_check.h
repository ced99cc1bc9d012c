#pragma once

#include <cuda_runtime_api.h>

#include "kernels/error.h"

// Throws cdl::Error naming the failed CUDA call and the runtime's error name and string when
// `expr` does not return cudaSuccess.
#define CDL_CUDA_CHECK(expr)                                                              \
  do {                                                                                    \
    const cudaError_t cdlCudaStatus_ = (expr);                                            \
    if (cdlCudaStatus_ != cudaSuccess) {                                                  \
      CDL_THROW("CUDA call ", #expr, " failed: ", cudaGetErrorName(cdlCudaStatus_), " (", \
                cudaGetErrorString(cdlCudaStatus_), ")");                                 \
    }                                                                                     \
  } while (0)
