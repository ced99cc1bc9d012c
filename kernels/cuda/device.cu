#include "kernels/cuda/device.h"

#include <cuda_runtime_api.h>

namespace cdl::kernels::cuda {

bool cudaDeviceAvailable() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    // Clears the error so that it does not surface in a later, unrelated check.
    (void)cudaGetLastError();
    return false;
  }
  return count > 0;
}

}  // namespace cdl::kernels::cuda
