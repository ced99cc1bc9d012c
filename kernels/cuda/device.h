#pragma once

namespace cdl::kernels::cuda {

// True when the CUDA runtime finds at least one usable device. False, without an error, on a
// machine with no GPU or no driver; the CUDA kernels are still compiled and linked there.
bool cudaDeviceAvailable();

}  // namespace cdl::kernels::cuda
