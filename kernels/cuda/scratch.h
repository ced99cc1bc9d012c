#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace cdl::kernels::cuda {

// Note [Stream-ordered scratch]
// The device coders need temporary device memory whose size depends on the input (symbols, the
// words and states of every rANS block, status words). They take it from the stream-ordered
// allocator (cudaMallocAsync on the call's stream, from the device's current memory pool) and free
// it on the same stream, so no workspace argument is needed and the pool reuses the memory from
// call to call. The pool's default release threshold (0) hands memory back to the driver at every
// synchronization; a caller that codes many buffers should raise it once
// (cudaMemPoolAttrReleaseThreshold of cudaDeviceGetDefaultMemPool), as cdl-bench codec does.
class DeviceScratch {
 public:
  // `bytes` of device memory ordered on `stream` (none for 0 bytes); throws cdl::Error.
  DeviceScratch(size_t bytes, cudaStream_t stream);
  // Frees on the stream; never throws (a failure here is reported by the stream's next check).
  ~DeviceScratch();
  DeviceScratch(const DeviceScratch&) = delete;
  DeviceScratch& operator=(const DeviceScratch&) = delete;

  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }

 private:
  void* ptr_ = nullptr;
  cudaStream_t stream_;
};

// Copies the one T at value_dev to the host once `stream` has reached it (synchronizes).
template <typename T>
T readBack(const T* value_dev, cudaStream_t stream);

// Copies host[0..bytes) to dst_dev on `stream` and waits for it (small copies: headers, tables).
void copyToDevice(void* dst_dev, const void* host, size_t bytes, cudaStream_t stream);

// Copies src_dev[0..bytes) to the host and waits for it.
void copyToHost(void* host, const void* src_dev, size_t bytes, cudaStream_t stream);

}  // namespace cdl::kernels::cuda
