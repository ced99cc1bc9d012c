#pragma once

// Device memory for the CUDA tests (kernels and codecs), and the skip that every such test makes
// on a machine without a GPU.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cstddef>
#include <vector>

#include "kernels/base/checks.h"
#include "kernels/base/error.h"
#include "kernels/cuda/device.h"

namespace cdl::test {

// Device memory with room for `offsetBytes` leading bytes, so that tests can pass misaligned
// pointers the way a caller slicing a larger buffer would.
template <typename T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t count, size_t offsetBytes = 0) : offset_(offsetBytes) {
    CDL_CUDA_CHECK(cudaMalloc(&base_, count * sizeof(T) + offsetBytes + 16));
  }
  explicit DeviceBuffer(const std::vector<T>& v, size_t offsetBytes = 0)
      : DeviceBuffer(v.size(), offsetBytes) {
    upload(v);
  }
  ~DeviceBuffer() { cudaFree(base_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  T* get() { return reinterpret_cast<T*>(static_cast<char*>(base_) + offset_); }

  void upload(const std::vector<T>& v) {
    if (!v.empty()) {
      CDL_CUDA_CHECK(cudaMemcpy(get(), v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
    }
  }
  std::vector<T> download(size_t count) {
    std::vector<T> v(count);
    if (count > 0) {
      CDL_CUDA_CHECK(cudaMemcpy(v.data(), get(), count * sizeof(T), cudaMemcpyDeviceToHost));
    }
    return v;
  }

 private:
  void* base_ = nullptr;
  size_t offset_;
};

// A fixture base that skips, with the reason, where no CUDA device is visible.
class CudaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!kernels::cuda::cudaDeviceAvailable()) {
      GTEST_SKIP() << "no CUDA device visible (cudaGetDeviceCount found none); the CUDA code is "
                      "built and linked on this machine but can only run on a GPU";
    }
  }
};

}  // namespace cdl::test
