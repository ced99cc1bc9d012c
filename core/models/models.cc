#include "core/models/models.h"

#include <ATen/ops/adaptive_avg_pool2d.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>

#include <string>
#include <utility>
#include <vector>

#include "core/cdl/cdl_layers.h"
#include "core/models/char_lm.h"
#include "kernels/base/error.h"

namespace cdl::core {
namespace {

// Checks the input against the shape the layers were sized for, so that a mismatch reads as one
// line naming both shapes instead of a matmul or convolution error from deep inside torch.
class CheckedNet : public Net {
 public:
  void checkInput(const torch::Tensor& x) const override {
    CDL_CHECK(x.dim() == 4 && x.size(1) == opt_.inputChannels && x.size(2) == opt_.imageHeight &&
                  x.size(3) == opt_.imageWidth,
              "model '", name_, "' expects input [N, ", opt_.inputChannels, ", ", opt_.imageHeight,
              ", ", opt_.imageWidth, "], got ", x.sizes());
    CDL_CHECK(x.is_floating_point(), "model '", name_, "' expects a floating point input, got ",
              x.scalar_type());
  }

 protected:
  CheckedNet(std::string name, const ModelOptions& opt) : name_(std::move(name)), opt_(opt) {}

  // Appends a segment running the named submodules (those that exist: quantizers only in CDL
  // models) and ending with `output`.
  void segment(std::string name, std::vector<std::string> modules,
               std::function<torch::Tensor(const torch::Tensor&)> forward,
               Quantizer output = Quantizer(nullptr)) {
    std::vector<std::string> present;
    const auto children = named_children();
    for (std::string& m : modules) {
      if (children.contains(m)) present.push_back(std::move(m));
    }
    segments_.push_back({std::move(name), std::move(present), std::move(forward), output});
  }

 private:
  std::string name_;
  ModelOptions opt_;
};

using Linear = std::shared_ptr<QLinearImpl>;
using Conv = std::shared_ptr<QConv2dImpl>;

// Makes the layers of a model, quantized as its CDL options say (plain torch layers otherwise).
class Layers {
 public:
  explicit Layers(const CdlModelOptions& cdl) : cdl_(cdl) {}

  // `edge`: the model's first or last layer, which keeps firstLastBits.
  Linear linear(int64_t in, int64_t out, bool edge = false) const {
    const QuantizerOptions q = weightOptions(edge);
    return std::make_shared<QLinearImpl>(torch::nn::LinearOptions(in, out),
                                         cdl_.enabled ? &q : nullptr);
  }

  // Bias-free because every convolution here feeds a batchnorm, whose shift makes a bias
  // redundant.
  Conv conv(int64_t in, int64_t out, int64_t kernel, int64_t stride, bool edge = false) const {
    const QuantizerOptions q = weightOptions(edge);
    return std::make_shared<QConv2dImpl>(
        torch::nn::Conv2dOptions(in, out, kernel).stride(stride).padding(kernel / 2).bias(false),
        cdl_.enabled ? &q : nullptr);
  }

  // The quantizer of a ReLU's output, registered on `owner` as "aq<k>" (k counts from 1), or an
  // empty one without CDL.
  Quantizer activation(torch::nn::Module& owner) {
    if (!cdl_.enabled) return Quantizer(nullptr);
    QuantizerOptions q = common();
    q.bits = cdl_.actBits;
    q.isSigned = false;
    q.activation = true;
    return owner.register_module("aq" + std::to_string(++activations_), Quantizer(q));
  }

 private:
  QuantizerOptions common() const {
    QuantizerOptions q;
    q.kappa = cdl_.kappa;
    q.trainKappa = cdl_.trainKappa;
    q.window = cdl_.window;
    return q;
  }
  QuantizerOptions weightOptions(bool edge) const {
    QuantizerOptions q = common();
    q.bits = edge ? cdl_.firstLastBits : cdl_.weightBits;
    return q;
  }

  CdlModelOptions cdl_;
  int activations_ = 0;
};

class Mlp : public CheckedNet {
 public:
  explicit Mlp(const ModelOptions& opt) : CheckedNet("mlp", opt) {
    Layers l(opt.cdl);
    fc1_ = register_module(
        "fc1", l.linear(opt.inputChannels * opt.imageHeight * opt.imageWidth, opt.hidden, true));
    fc2_ = register_module("fc2", l.linear(opt.hidden, opt.hidden));
    fc3_ = register_module("fc3", l.linear(opt.hidden, opt.classes, true));
    aq1_ = l.activation(*this);
    aq2_ = l.activation(*this);
    segment(
        "fc1", {"fc1", "aq1"},
        [this](const torch::Tensor& x) {
          return quantized(aq1_, fc1_->forward(x.flatten(1)).relu());
        },
        aq1_);
    segment(
        "fc2", {"fc2", "aq2"},
        [this](const torch::Tensor& x) {
          return quantized(aq2_, fc2_->forwardFrom(x, aq1_).relu());
        },
        aq2_);
    segment("fc3", {"fc3"}, [this](const torch::Tensor& x) { return fc3_->forwardFrom(x, aq2_); });
  }

 private:
  Linear fc1_, fc2_, fc3_;
  Quantizer aq1_{nullptr}, aq2_{nullptr};
};

class Cnn : public CheckedNet {
 public:
  explicit Cnn(const ModelOptions& opt) : CheckedNet("cnn", opt) {
    Layers l(opt.cdl);
    conv1_ = register_module("conv1", l.conv(opt.inputChannels, opt.width, 3, 1, true));
    bn1_ = register_module("bn1", torch::nn::BatchNorm2d(opt.width));
    conv2_ = register_module("conv2", l.conv(opt.width, 2 * opt.width, 3, 1));
    bn2_ = register_module("bn2", torch::nn::BatchNorm2d(2 * opt.width));
    fc1_ = register_module(
        "fc1", l.linear(2 * opt.width * (opt.imageHeight / 4) * (opt.imageWidth / 4), 128));
    fc2_ = register_module("fc2", l.linear(128, opt.classes, true));
    aq1_ = l.activation(*this);
    aq2_ = l.activation(*this);
    aq3_ = l.activation(*this);
    // Activations are quantized where the next layer reads them: after the pooling (which
    // commutes with nearest-level quantization and leaves a quarter of the elements).
    segment(
        "conv1", {"conv1", "bn1", "aq1"},
        [this](const torch::Tensor& x) {
          return pooledQuantized(aq1_, bn1_(conv1_->forward(x)).relu());
        },
        aq1_);
    segment(
        "conv2", {"conv2", "bn2", "aq2"},
        [this](const torch::Tensor& x) {
          return pooledQuantized(aq2_, bn2_(conv2_->forward(x)).relu());
        },
        aq2_);
    segment(
        "fc1", {"fc1", "aq3"},
        [this](const torch::Tensor& x) {
          return quantized(aq3_, fc1_->forwardFrom(x.flatten(1), aq2_).relu());
        },
        aq3_);
    segment("fc2", {"fc2"}, [this](const torch::Tensor& x) { return fc2_->forwardFrom(x, aq3_); });
  }

 private:
  Conv conv1_, conv2_;
  torch::nn::BatchNorm2d bn1_{nullptr}, bn2_{nullptr};
  Linear fc1_, fc2_;
  Quantizer aq1_{nullptr}, aq2_{nullptr}, aq3_{nullptr};
};

// conv-bn-relu-conv-bn plus a shortcut; where the shape changes the shortcut is a strided 1x1
// convolution with batchnorm (option B of the ResNet paper).
class BasicBlock : public torch::nn::Module {
 public:
  BasicBlock(int64_t in, int64_t out, int64_t stride, const CdlModelOptions& cdl) {
    Layers l(cdl);
    conv1_ = register_module("conv1", l.conv(in, out, 3, stride));
    bn1_ = register_module("bn1", torch::nn::BatchNorm2d(out));
    conv2_ = register_module("conv2", l.conv(out, out, 3, 1));
    bn2_ = register_module("bn2", torch::nn::BatchNorm2d(out));
    if (stride != 1 || in != out) {
      shortcut_conv_ = register_module("shortcut_conv", l.conv(in, out, 1, stride));
      shortcut_bn_ = register_module("shortcut_bn", torch::nn::BatchNorm2d(out));
    }
    aq1_ = l.activation(*this);
    aq2_ = l.activation(*this);
  }

  torch::Tensor forward(const torch::Tensor& x) {
    auto y = quantized(aq1_, bn1_(conv1_->forward(x)).relu());
    y = bn2_(conv2_->forward(y));
    auto shortcut = shortcut_conv_ ? shortcut_bn_(shortcut_conv_->forward(x)) : x;
    return quantized(aq2_, (y + shortcut).relu());
  }
  Quantizer output() const { return aq2_; }

 private:
  Conv conv1_, conv2_, shortcut_conv_;
  torch::nn::BatchNorm2d bn1_{nullptr}, bn2_{nullptr}, shortcut_bn_{nullptr};
  Quantizer aq1_{nullptr}, aq2_{nullptr};
};

// A stage of blocks named "0", "1", ... (module names may not contain dots, so nesting is what
// yields parameter names like "layer2.0.conv1.weight").
class Stage : public torch::nn::Module {
 public:
  Stage(int64_t blocks, int64_t in, int64_t out, int64_t stride, const CdlModelOptions& cdl) {
    for (int64_t i = 0; i < blocks; ++i) {
      blocks_.push_back(register_module(
          std::to_string(i),
          std::make_shared<BasicBlock>(i == 0 ? in : out, out, i == 0 ? stride : 1, cdl)));
    }
  }

  torch::Tensor forward(torch::Tensor x) {
    for (auto& block : blocks_) x = block->forward(x);
    return x;
  }
  Quantizer output() const { return blocks_.back()->output(); }

 private:
  std::vector<std::shared_ptr<BasicBlock>> blocks_;
};

class ResNet20 : public CheckedNet {
 public:
  explicit ResNet20(const ModelOptions& opt) : CheckedNet("resnet20", opt) {
    constexpr int64_t kBlocksPerStage = 3;
    const int64_t b = opt.width;
    const CdlModelOptions& cdl = opt.cdl;
    Layers l(cdl);
    conv1_ = register_module("conv1", l.conv(opt.inputChannels, b, 3, 1, true));
    bn1_ = register_module("bn1", torch::nn::BatchNorm2d(b));
    layer1_ = register_module("layer1", std::make_shared<Stage>(kBlocksPerStage, b, b, 1, cdl));
    layer2_ = register_module("layer2", std::make_shared<Stage>(kBlocksPerStage, b, 2 * b, 2, cdl));
    layer3_ =
        register_module("layer3", std::make_shared<Stage>(kBlocksPerStage, 2 * b, 4 * b, 2, cdl));
    fc_ = register_module("fc", l.linear(4 * b, opt.classes, true));
    aq1_ = l.activation(*this);
    segment(
        "conv1", {"conv1", "bn1", "aq1"},
        [this](const torch::Tensor& x) { return quantized(aq1_, bn1_(conv1_->forward(x)).relu()); },
        aq1_);
    for (const auto& [name, layer] : {std::pair{"layer1", &layer1_}, std::pair{"layer2", &layer2_},
                                      std::pair{"layer3", &layer3_}}) {
      std::shared_ptr<Stage> stage = *layer;
      segment(
          name, {name}, [stage](const torch::Tensor& x) { return stage->forward(x); },
          stage->output());
    }
    segment("fc", {"fc"}, [this](const torch::Tensor& x) {
      return fc_->forward(at::adaptive_avg_pool2d(x, {1, 1}).flatten(1));
    });
  }

 private:
  Conv conv1_;
  torch::nn::BatchNorm2d bn1_{nullptr};
  std::shared_ptr<Stage> layer1_, layer2_, layer3_;
  Linear fc_;
  Quantizer aq1_{nullptr};
};

void checkPositive(const std::string& model, const char* field, int64_t value) {
  CDL_CHECK(value > 0, "model '", model, "': ", field, " must be positive, got ", value);
}

}  // namespace

torch::Tensor Net::forward(torch::Tensor x) {
  checkInput(x);
  for (const Segment& s : segments_) x = s.forward(x);
  return x;
}

std::shared_ptr<Net> makeModel(const std::string& name, const ModelOptions& opt) {
  CDL_CHECK(
      name != "torchscript",
      "model 'torchscript' is loaded from its file (loadTorchScriptModel, model.torchscript)");
  const bool known = name == "mlp" || name == "cnn" || name == "resnet20" || name == "charlm";
  CDL_CHECK(known, "unknown model '", name, "' (known: mlp, cnn, resnet20, charlm)");
  if (name == "charlm") return makeCharLm(opt);
  checkPositive(name, "inputChannels", opt.inputChannels);
  checkPositive(name, "imageHeight", opt.imageHeight);
  checkPositive(name, "imageWidth", opt.imageWidth);
  checkPositive(name, "classes", opt.classes);
  if (name == "mlp") {
    checkPositive(name, "hidden", opt.hidden);
    return std::make_shared<Mlp>(opt);
  }
  checkPositive(name, "width", opt.width);
  if (name == "cnn") {
    // Two unpadded 2x2 poolings would silently drop rows and columns of any other size.
    CDL_CHECK(opt.imageHeight % 4 == 0 && opt.imageWidth % 4 == 0,
              "model 'cnn': the image height and width must be divisible by 4, got ",
              opt.imageHeight, "x", opt.imageWidth);
    return std::make_shared<Cnn>(opt);
  }
  return std::make_shared<ResNet20>(opt);
}

c10::Device modelDevice(const torch::nn::Module& model) {
  const std::vector<at::Tensor> params = model.parameters();
  return params.empty() ? c10::Device(c10::kCPU) : params.front().device();
}

}  // namespace cdl::core
