#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "core/data/data.h"

namespace cdl::core {

// Images idx[begin..end) of set as a float batch [end - begin, 1, rows, cols], normalized with
// Fashion-MNIST's pixel mean and standard deviation, and their labels (int64). Of a text set
// (Note [Text data]): each window's first cols - 1 tokens [n, cols - 1] and their successors
// [n, cols - 1], both int64.
std::pair<at::Tensor, at::Tensor> makeBatch(const ImageSet& set, const std::vector<int64_t>& idx,
                                            size_t begin, size_t end);

// A batch of makeBatch on `device` (Note [Training device]): to a GPU through pinned host memory
// with non-blocking copies, which the current stream orders before the kernels that read them;
// a CPU batch is returned as it is.
std::pair<at::Tensor, at::Tensor> toDevice(std::pair<at::Tensor, at::Tensor> batch,
                                           c10::Device device);

}  // namespace cdl::core
