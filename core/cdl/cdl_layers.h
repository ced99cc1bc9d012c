#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>

#include <memory>
#include <vector>

#include "core/cdl/cdl_quantizer.h"
#include "core/cdl/exact_linear.h"

namespace torch::nn {
class Module;
}

namespace cdl::core {

// A linear layer whose weight may be quantized (Note [CDL quantizer]): without a quantizer it is
// torch's Linear, parameters, initialization and results alike; with one (submodule "wq") the
// forward pass uses the quantized weight and the bias as it is, and evaluation computes exactly
// from the weight's levels (Note [Exact linear]). A layer given indexed weights (a model decoded
// from a coded file) evaluates exactly from them instead, whether or not it has a quantizer.
class QLinearImpl : public torch::nn::LinearImpl {
 public:
  QLinearImpl(const torch::nn::LinearOptions& options, const QuantizerOptions* weightQuantizer);
  at::Tensor forward(const at::Tensor& x) { return forwardFrom(x, Quantizer(nullptr)); }
  // The same for an x that is `input`'s output: in evaluation, with its levels summed in integers
  // (Note [Integer linear]) while it evaluates to nearest levels.
  at::Tensor forwardFrom(const at::Tensor& x, const Quantizer& input);
  const Quantizer& weightQuantizer() const { return wq_; }
  void setIndexedWeight(std::shared_ptr<const IndexedWeight> w) { indexed_ = std::move(w); }

 private:
  Quantizer wq_;
  std::shared_ptr<const IndexedWeight> indexed_;
};

// The same for a 2-D convolution.
class QConv2dImpl : public torch::nn::Conv2dImpl {
 public:
  QConv2dImpl(const torch::nn::Conv2dOptions& options, const QuantizerOptions* weightQuantizer);
  at::Tensor forward(const at::Tensor& x);
  const Quantizer& weightQuantizer() const { return wq_; }

 private:
  Quantizer wq_;
};

// x through the activation quantizer q, or x itself when q is empty.
inline at::Tensor quantized(Quantizer q, const at::Tensor& x) {
  return q.is_empty() ? x : q->forward(x);
}

// 2x2 max pooling of x [N, C, H, W], then the activation quantizer q (or x pooled when q is empty).
// Evaluating to nearest levels without gradients, one pass (kernels::maxPool2NearestLevelValues),
// bit for bit the same values.
at::Tensor pooledQuantized(Quantizer q, const at::Tensor& x);

// A quantized weight: the quantizer and the tensor it quantizes.
struct QuantizedWeight {
  std::string name;  // the weight's parameter name, e.g. "conv1.weight"
  Quantizer quantizer;
  at::Tensor weight;
};

// The model's quantizers in module order (weights and activations), and its quantized weights.
std::vector<std::pair<std::string, Quantizer>> quantizersOf(torch::nn::Module& model);
std::vector<QuantizedWeight> quantizedWeightsOf(torch::nn::Module& model);

}  // namespace cdl::core
