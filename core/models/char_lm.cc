#include "core/models/char_lm.h"

#include <ATen/ops/gelu.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/softmax.h>
#include <ATen/ops/triu.h>
#include <ATen/ops/zeros.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "kernels/base/error.h"

namespace cdl::core {
namespace {

torch::nn::Linear linear(int64_t in, int64_t out) {
  torch::nn::Linear l(torch::nn::LinearOptions(in, out));
  torch::NoGradGuard noGrad;
  torch::nn::init::normal_(l->weight, 0.0, 0.02);
  torch::nn::init::zeros_(l->bias);
  return l;
}

class Block : public torch::nn::Module {
 public:
  Block(int64_t width, int64_t heads) : heads_(heads) {
    ln1_ = register_module("ln1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({width})));
    qkv_ = register_module("qkv", linear(width, 3 * width));
    proj_ = register_module("proj", linear(width, width));
    ln2_ = register_module("ln2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({width})));
    fc1_ = register_module("fc1", linear(width, 4 * width));
    fc2_ = register_module("fc2", linear(4 * width, width));
  }

  // x [n, t, width]; mask [t, t] with -inf above the diagonal.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask) {
    const int64_t n = x.size(0), t = x.size(1), width = x.size(2), d = width / heads_;
    // [n, t, 3, heads, d] -> three [n, heads, t, d]
    const auto qkv = qkv_(ln1_(x)).view({n, t, 3, heads_, d}).permute({2, 0, 3, 1, 4});
    const torch::Tensor scores =
        at::matmul(qkv[0], qkv[1].transpose(-2, -1)) * (1.0 / std::sqrt(static_cast<double>(d)));
    const torch::Tensor attn = at::matmul(at::softmax(scores + mask, -1), qkv[2]);
    const torch::Tensor h = x + proj_(attn.transpose(1, 2).reshape({n, t, width}));
    return h + fc2_(at::gelu(fc1_(ln2_(h))));
  }

 private:
  int64_t heads_;
  torch::nn::LayerNorm ln1_{nullptr}, ln2_{nullptr};
  torch::nn::Linear qkv_{nullptr}, proj_{nullptr}, fc1_{nullptr}, fc2_{nullptr};
};

class CharLm : public Net {
 public:
  explicit CharLm(const ModelOptions& opt) : opt_(opt) {
    embed_ = register_module("embed", torch::nn::Embedding(opt.classes, opt.width));
    pos_ = register_parameter("pos", at::zeros({opt.context, opt.width}));
    {
      torch::NoGradGuard noGrad;
      torch::nn::init::normal_(embed_->weight, 0.0, 0.02);
      torch::nn::init::normal_(pos_, 0.0, 0.02);
    }
    std::vector<std::string> children{"embed"};
    for (int64_t i = 0; i < opt.layers; ++i) {
      const std::string name = "block" + std::to_string(i);
      blocks_.push_back(register_module(name, std::make_shared<Block>(opt.width, opt.heads)));
      children.push_back(name);
    }
    ln_ = register_module("ln", torch::nn::LayerNorm(torch::nn::LayerNormOptions({opt.width})));
    children.push_back("ln");
    segments_.push_back(
        {"model", children, [this](const torch::Tensor& x) { return run(x); }, Quantizer(nullptr)});
  }

  void checkInput(const torch::Tensor& x) const override {
    CDL_CHECK(x.dim() == 2 && x.size(1) == opt_.context && x.scalar_type() == at::kLong,
              "model 'charlm' expects tokens [N, ", opt_.context, "] of int64, got ", x.sizes(),
              " of ", x.scalar_type());
  }

 private:
  torch::Tensor run(const torch::Tensor& x) {
    const int64_t t = x.size(1);
    const torch::Tensor mask =
        at::triu(at::ones({t, t}) * -std::numeric_limits<float>::infinity(), 1);
    torch::Tensor h = embed_(x) + pos_.narrow(0, 0, t);
    for (const auto& b : blocks_) h = b->forward(h, mask);
    return at::matmul(ln_(h), embed_->weight.t()).transpose(1, 2);
  }

  ModelOptions opt_;
  torch::nn::Embedding embed_{nullptr};
  torch::Tensor pos_;
  std::vector<std::shared_ptr<Block>> blocks_;
  torch::nn::LayerNorm ln_{nullptr};
};

}  // namespace

std::shared_ptr<Net> makeCharLm(const ModelOptions& opt) {
  CDL_CHECK(!opt.cdl.enabled, "model 'charlm' has no CDL variant (cdl.mode must be none)");
  CDL_CHECK(
      opt.classes >= 1 && opt.context >= 1 && opt.width >= 1 && opt.layers >= 1 && opt.heads >= 1,
      "model 'charlm': classes, context, width, layers and heads must be positive, got ",
      opt.classes, ", ", opt.context, ", ", opt.width, ", ", opt.layers, ", ", opt.heads);
  CDL_CHECK(opt.width % opt.heads == 0, "model 'charlm': ", opt.heads,
            " heads do not divide the width ", opt.width);
  return std::make_shared<CharLm>(opt);
}

}  // namespace cdl::core
