#include "kernels/cuda/scratch.h"

#include <cuda_runtime_api.h>

#include "kernels/base/checks.h"
#include "kernels/base/error.h"

namespace cdl::kernels::cuda {

DeviceScratch::DeviceScratch(size_t bytes, cudaStream_t stream) : stream_(stream) {
  if (bytes > 0) CDL_CUDA_CHECK(cudaMallocAsync(&ptr_, bytes, stream));
}

DeviceScratch::~DeviceScratch() {
  if (ptr_ != nullptr) (void)cudaFreeAsync(ptr_, stream_);
}

template <typename T>
T readBack(const T* value_dev, cudaStream_t stream) {
  T value{};
  copyToHost(&value, value_dev, sizeof(T), stream);
  return value;
}

template uint64_t readBack<uint64_t>(const uint64_t*, cudaStream_t);
template int64_t readBack<int64_t>(const int64_t*, cudaStream_t);
template uint8_t readBack<uint8_t>(const uint8_t*, cudaStream_t);
template float readBack<float>(const float*, cudaStream_t);

void copyToDevice(void* dst_dev, const void* host, size_t bytes, cudaStream_t stream) {
  if (bytes == 0) return;
  // The wait lets `host` be a temporary whatever memory it is (cudaMemcpyAsync keeps reading
  // pinned memory after it returns); the copies here are headers and tables, a few KiB at most.
  CDL_CUDA_CHECK(cudaMemcpyAsync(dst_dev, host, bytes, cudaMemcpyHostToDevice, stream));
  CDL_CUDA_CHECK(cudaStreamSynchronize(stream));
}

void copyToHost(void* host, const void* src_dev, size_t bytes, cudaStream_t stream) {
  if (bytes == 0) return;
  CDL_CUDA_CHECK(cudaMemcpyAsync(host, src_dev, bytes, cudaMemcpyDeviceToHost, stream));
  CDL_CUDA_CHECK(cudaStreamSynchronize(stream));
}

}  // namespace cdl::kernels::cuda
