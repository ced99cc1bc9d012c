#include "core/cdl/cdl_layers.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/linear.h>
#include <ATen/ops/max_pool2d.h>
#include <torch/nn/module.h>

#include "kernels/int_linear.h"

namespace cdl::core {

namespace {

// The weight quantizer "wq" of owner, started from its weight w; empty without options.
Quantizer weightQuantizerOf(torch::nn::Module& owner, const QuantizerOptions* options,
                            const at::Tensor& w) {
  if (options == nullptr) return Quantizer(nullptr);
  Quantizer q = owner.register_module("wq", Quantizer(*options));
  q->initFromWeight(w);
  return q;
}

// The grid of input's outputs (Note [Integer linear]): none while it trains or evaluates other
// than to nearest levels.
LevelGrid gridOf(const Quantizer& input) {
  if (input.is_empty() || input->is_training() || input->evalMode() != EvalMode::kNearest) {
    return {};
  }
  return {static_cast<float>(input->stepValue()), static_cast<int32_t>(input->range().lo),
          static_cast<int32_t>(input->range().hi)};
}

}  // namespace

QLinearImpl::QLinearImpl(const torch::nn::LinearOptions& options,
                         const QuantizerOptions* weightQuantizer)
    : torch::nn::LinearImpl(options), wq_(weightQuantizerOf(*this, weightQuantizer, weight)) {}

at::Tensor QLinearImpl::forwardFrom(const at::Tensor& x, const Quantizer& input) {
  if (!is_training() && x.dim() == 2) {
    if (indexed_ != nullptr) return exactLinear(x, *indexed_, bias, gridOf(input));
    if (!wq_.is_empty()) {
      IndexedWeight w{weight.size(0),
                      weight.size(1),
                      static_cast<int>(wq_->range().lo),
                      wq_->options().bits,
                      static_cast<float>(wq_->stepValue()),
                      wq_->symbols(weight),
                      {}};
      return exactLinear(x, w, bias, gridOf(input));
    }
  }
  return at::linear(x, quantized(wq_, weight), bias);
}

QConv2dImpl::QConv2dImpl(const torch::nn::Conv2dOptions& options,
                         const QuantizerOptions* weightQuantizer)
    : torch::nn::Conv2dImpl(options), wq_(weightQuantizerOf(*this, weightQuantizer, weight)) {}

at::Tensor QConv2dImpl::forward(const at::Tensor& x) {
  return _conv_forward(x, quantized(wq_, weight));
}

at::Tensor pooledQuantized(Quantizer q, const at::Tensor& x) {
  const float step = q.is_empty() ? 0.0f : q->onePassStep();
  if (step > 0.0f && x.dim() == 4 && x.scalar_type() == at::kFloat && x.size(2) >= 2 &&
      x.size(3) >= 2) {
    const at::Tensor xc = x.contiguous();
    at::Tensor y = at::empty({x.size(0), x.size(1), x.size(2) / 2, x.size(3) / 2}, x.options());
    kernels::maxPool2NearestLevelValues(xc.data_ptr<float>(), x.size(0) * x.size(1), x.size(2),
                                        x.size(3), step, static_cast<float>(q->range().lo),
                                        static_cast<float>(q->range().hi), y.data_ptr<float>());
    return y;
  }
  return quantized(q, at::max_pool2d(x, {2, 2}));
}

std::vector<std::pair<std::string, Quantizer>> quantizersOf(torch::nn::Module& model) {
  std::vector<std::pair<std::string, Quantizer>> out;
  for (const auto& item : model.named_modules()) {
    if (auto q = std::dynamic_pointer_cast<QuantizerImpl>(item.value())) {
      out.emplace_back(item.key(), Quantizer(q));
    }
  }
  return out;
}

std::vector<QuantizedWeight> quantizedWeightsOf(torch::nn::Module& model) {
  std::vector<QuantizedWeight> out;
  for (const auto& item : model.named_modules()) {
    const std::string prefix = item.key().empty() ? "" : item.key() + ".";
    if (auto l = std::dynamic_pointer_cast<QLinearImpl>(item.value())) {
      if (!l->weightQuantizer().is_empty()) {
        out.push_back({prefix + "weight", l->weightQuantizer(), l->weight});
      }
    } else if (auto c = std::dynamic_pointer_cast<QConv2dImpl>(item.value())) {
      if (!c->weightQuantizer().is_empty()) {
        out.push_back({prefix + "weight", c->weightQuantizer(), c->weight});
      }
    }
  }
  return out;
}

}  // namespace cdl::core
