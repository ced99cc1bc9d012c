#include "core/data/batch.h"

#include <ATen/ops/empty.h>

namespace cdl::core {
namespace {

// Fashion-MNIST's pixel mean and standard deviation (of x / 255 over the train split).
constexpr float kPixelMean = 0.2860f;
constexpr float kPixelStd = 0.3530f;

std::pair<at::Tensor, at::Tensor> tokenBatch(const ImageSet& set, const std::vector<int64_t>& idx,
                                             size_t begin, int64_t n) {
  const int64_t t = set.cols - 1;
  at::Tensor x = at::empty({n, t}, at::kLong), y = at::empty({n, t}, at::kLong);
  int64_t* xp = x.data_ptr<int64_t>();
  int64_t* yp = y.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* src = set.pixels.data() + idx[begin + static_cast<size_t>(i)] * set.cols;
    for (int64_t j = 0; j < t; ++j) {
      xp[i * t + j] = src[j];
      yp[i * t + j] = src[j + 1];
    }
  }
  return {x, y};
}

}  // namespace

std::pair<at::Tensor, at::Tensor> makeBatch(const ImageSet& set, const std::vector<int64_t>& idx,
                                            size_t begin, size_t end) {
  const int64_t n = static_cast<int64_t>(end - begin), pix = set.rows * set.cols;
  if (set.tokens) return tokenBatch(set, idx, begin, n);
  at::Tensor x = at::empty({n, 1, set.rows, set.cols}, at::kFloat);
  at::Tensor y = at::empty({n}, at::kLong);
  float* xp = x.data_ptr<float>();
  int64_t* yp = y.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t k = idx[begin + static_cast<size_t>(i)];
    const uint8_t* src = set.pixels.data() + k * pix;
    for (int64_t j = 0; j < pix; ++j) {
      xp[i * pix + j] = (static_cast<float>(src[j]) * (1.0f / 255.0f) - kPixelMean) / kPixelStd;
    }
    yp[i] = set.labels[static_cast<size_t>(k)];
  }
  return {x, y};
}

std::pair<at::Tensor, at::Tensor> toDevice(std::pair<at::Tensor, at::Tensor> batch,
                                           c10::Device device) {
  if (device.is_cpu()) return batch;
  return {batch.first.pin_memory().to(device, /*non_blocking=*/true),
          batch.second.pin_memory().to(device, /*non_blocking=*/true)};
}

}  // namespace cdl::core
