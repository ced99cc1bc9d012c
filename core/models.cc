#include "core/models.h"

#include <ATen/ops/adaptive_avg_pool2d.h>
#include <ATen/ops/max_pool2d.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>

#include <string>
#include <utility>
#include <vector>

#include "kernels/base/error.h"

namespace cdl::core {
namespace {

// Checks the input against the shape the layers were sized for, so that a mismatch reads as one
// line naming both shapes instead of a matmul or convolution error from deep inside torch.
class CheckedNet : public Net {
 protected:
  CheckedNet(std::string name, const ModelOptions& opt) : name_(std::move(name)), opt_(opt) {}

  void checkInput(const torch::Tensor& x) const {
    CDL_CHECK(x.dim() == 4 && x.size(1) == opt_.inputChannels && x.size(2) == opt_.imageHeight &&
                  x.size(3) == opt_.imageWidth,
              "model '", name_, "' expects input [N, ", opt_.inputChannels, ", ", opt_.imageHeight,
              ", ", opt_.imageWidth, "], got ", x.sizes());
    CDL_CHECK(x.is_floating_point(), "model '", name_, "' expects a floating point input, got ",
              x.scalar_type());
  }

 private:
  std::string name_;
  ModelOptions opt_;
};

// Bias-free because every convolution here feeds a batchnorm, whose shift makes a bias redundant.
torch::nn::Conv2d conv(int64_t in, int64_t out, int64_t kernel, int64_t stride) {
  return torch::nn::Conv2d(
      torch::nn::Conv2dOptions(in, out, kernel).stride(stride).padding(kernel / 2).bias(false));
}

class Mlp : public CheckedNet {
 public:
  explicit Mlp(const ModelOptions& opt) : CheckedNet("mlp", opt) {
    fc1_ = register_module(
        "fc1", torch::nn::Linear(opt.inputChannels * opt.imageHeight * opt.imageWidth, opt.hidden));
    fc2_ = register_module("fc2", torch::nn::Linear(opt.hidden, opt.hidden));
    fc3_ = register_module("fc3", torch::nn::Linear(opt.hidden, opt.classes));
  }

  torch::Tensor forward(torch::Tensor x) override {
    checkInput(x);
    x = fc1_(x.flatten(1)).relu();
    x = fc2_(x).relu();
    return fc3_(x);
  }

 private:
  torch::nn::Linear fc1_{nullptr}, fc2_{nullptr}, fc3_{nullptr};
};

class Cnn : public CheckedNet {
 public:
  explicit Cnn(const ModelOptions& opt) : CheckedNet("cnn", opt) {
    conv1_ = register_module("conv1", conv(opt.inputChannels, opt.width, 3, 1));
    bn1_ = register_module("bn1", torch::nn::BatchNorm2d(opt.width));
    conv2_ = register_module("conv2", conv(opt.width, 2 * opt.width, 3, 1));
    bn2_ = register_module("bn2", torch::nn::BatchNorm2d(2 * opt.width));
    fc1_ = register_module(
        "fc1",
        torch::nn::Linear(2 * opt.width * (opt.imageHeight / 4) * (opt.imageWidth / 4), 128));
    fc2_ = register_module("fc2", torch::nn::Linear(128, opt.classes));
  }

  torch::Tensor forward(torch::Tensor x) override {
    checkInput(x);
    x = at::max_pool2d(bn1_(conv1_(x)).relu(), {2, 2});
    x = at::max_pool2d(bn2_(conv2_(x)).relu(), {2, 2});
    x = fc1_(x.flatten(1)).relu();
    return fc2_(x);
  }

 private:
  torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr};
  torch::nn::BatchNorm2d bn1_{nullptr}, bn2_{nullptr};
  torch::nn::Linear fc1_{nullptr}, fc2_{nullptr};
};

// conv-bn-relu-conv-bn plus a shortcut; where the shape changes the shortcut is a strided 1x1
// convolution with batchnorm (option B of the ResNet paper).
class BasicBlock : public torch::nn::Module {
 public:
  BasicBlock(int64_t in, int64_t out, int64_t stride) {
    conv1_ = register_module("conv1", conv(in, out, 3, stride));
    bn1_ = register_module("bn1", torch::nn::BatchNorm2d(out));
    conv2_ = register_module("conv2", conv(out, out, 3, 1));
    bn2_ = register_module("bn2", torch::nn::BatchNorm2d(out));
    if (stride != 1 || in != out) {
      shortcut_conv_ = register_module("shortcut_conv", conv(in, out, 1, stride));
      shortcut_bn_ = register_module("shortcut_bn", torch::nn::BatchNorm2d(out));
    }
  }

  torch::Tensor forward(const torch::Tensor& x) {
    auto y = bn1_(conv1_(x)).relu();
    y = bn2_(conv2_(y));
    auto shortcut = shortcut_conv_ ? shortcut_bn_(shortcut_conv_(x)) : x;
    return (y + shortcut).relu();
  }

 private:
  torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr}, shortcut_conv_{nullptr};
  torch::nn::BatchNorm2d bn1_{nullptr}, bn2_{nullptr}, shortcut_bn_{nullptr};
};

// A stage of blocks named "0", "1", ... (module names may not contain dots, so nesting is what
// yields parameter names like "layer2.0.conv1.weight").
class Stage : public torch::nn::Module {
 public:
  Stage(int64_t blocks, int64_t in, int64_t out, int64_t stride) {
    for (int64_t i = 0; i < blocks; ++i) {
      blocks_.push_back(register_module(
          std::to_string(i),
          std::make_shared<BasicBlock>(i == 0 ? in : out, out, i == 0 ? stride : 1)));
    }
  }

  torch::Tensor forward(torch::Tensor x) {
    for (auto& block : blocks_) x = block->forward(x);
    return x;
  }

 private:
  std::vector<std::shared_ptr<BasicBlock>> blocks_;
};

class ResNet20 : public CheckedNet {
 public:
  explicit ResNet20(const ModelOptions& opt) : CheckedNet("resnet20", opt) {
    constexpr int64_t kBlocksPerStage = 3;
    const int64_t b = opt.width;
    conv1_ = register_module("conv1", conv(opt.inputChannels, b, 3, 1));
    bn1_ = register_module("bn1", torch::nn::BatchNorm2d(b));
    layer1_ = register_module("layer1", std::make_shared<Stage>(kBlocksPerStage, b, b, 1));
    layer2_ = register_module("layer2", std::make_shared<Stage>(kBlocksPerStage, b, 2 * b, 2));
    layer3_ = register_module("layer3", std::make_shared<Stage>(kBlocksPerStage, 2 * b, 4 * b, 2));
    fc_ = register_module("fc", torch::nn::Linear(4 * b, opt.classes));
  }

  torch::Tensor forward(torch::Tensor x) override {
    checkInput(x);
    x = bn1_(conv1_(x)).relu();
    x = layer3_->forward(layer2_->forward(layer1_->forward(x)));
    x = at::adaptive_avg_pool2d(x, {1, 1}).flatten(1);
    return fc_(x);
  }

 private:
  torch::nn::Conv2d conv1_{nullptr};
  torch::nn::BatchNorm2d bn1_{nullptr};
  std::shared_ptr<Stage> layer1_, layer2_, layer3_;
  torch::nn::Linear fc_{nullptr};
};

void checkPositive(const std::string& model, const char* field, int64_t value) {
  CDL_CHECK(value > 0, "model '", model, "': ", field, " must be positive, got ", value);
}

}  // namespace

std::shared_ptr<Net> makeModel(const std::string& name, const ModelOptions& opt) {
  const bool known = name == "mlp" || name == "cnn" || name == "resnet20";
  CDL_CHECK(known, "unknown model '", name, "' (known: mlp, cnn, resnet20)");
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

}  // namespace cdl::core
