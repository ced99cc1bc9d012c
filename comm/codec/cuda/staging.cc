#include "comm/codec/cuda/staging.h"

#include <cuda_runtime_api.h>

#include "kernels/base/checks.h"
#include "kernels/base/error.h"
#include "kernels/cuda/scratch.h"

namespace cdl::comm::cuda {
namespace {

// Pinned memory that only grows, one per thread: payloads are staged one at a time, and page-
// locked memory is costly to allocate and fast to copy into.
class PinnedStaging {
 public:
  ~PinnedStaging() {
    // At thread or process exit the runtime may already be gone; nothing to report then.
    if (data_ != nullptr) (void)cudaFreeHost(data_);
  }
  uint8_t* reserve(size_t bytes) {
    if (bytes > size_) {
      if (data_ != nullptr) CDL_CUDA_CHECK(cudaFreeHost(data_));
      data_ = nullptr;
      size_ = 0;
      void* p = nullptr;
      CDL_CUDA_CHECK(cudaHostAlloc(&p, bytes, cudaHostAllocPortable));
      data_ = static_cast<uint8_t*>(p);
      size_ = bytes;
    }
    return data_;
  }

 private:
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

uint8_t* staging(size_t bytes) {
  thread_local PinnedStaging buffer;
  return buffer.reserve(bytes < kHeaderBytes ? kHeaderBytes : bytes);
}

}  // namespace

void sealPayload(const PayloadHeader& h, uint8_t* out_dev, cudaStream_t stream) {
  const size_t total = kHeaderBytes + static_cast<size_t>(h.bodyBytes);
  uint8_t* host = staging(total);
  kernels::cuda::copyToHost(host + kHeaderBytes, out_dev + kHeaderBytes,
                            static_cast<size_t>(h.bodyBytes), stream);
  writeHeader(h, host);
  kernels::cuda::copyToDevice(out_dev, host, kHeaderBytes, stream);
}

const uint8_t* stagePayload(const uint8_t* in_dev, size_t len, cudaStream_t stream) {
  uint8_t* host = staging(len);
  kernels::cuda::copyToHost(host, in_dev, len, stream);
  return host;
}

}  // namespace cdl::comm::cuda
