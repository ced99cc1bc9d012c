#pragma once

#include <torch/nn/module.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/cdl/cdl_quantizer.h"

namespace cdl::core {

// A classifier: images [batch, inputChannels, imageHeight, imageWidth] (float) to logits [batch,
// classes]. Parameter names ("conv1.weight", "layer2.0.bn1.bias", ...) are deterministic and
// unique: the gradient reducer and checkpoints use them as keys.
//
// The forward pass is a chain of segments, the places between which a pipeline may cut the model
// (Note [Pipeline split]): each names the direct submodules it runs and, in a CDL model, the
// activation quantizer its output comes from.
struct Segment {
  std::string name;                  // what model.split.cut_after names: "conv2", "layer1", ...
  std::vector<std::string> modules;  // the model's direct submodules it runs, in model order
  std::function<torch::Tensor(const torch::Tensor&)> forward;
  Quantizer output{nullptr};  // CDL: the quantizer of the segment's output, else empty
};

class Net : public torch::nn::Module {
 public:
  // Throws cdl::Error naming the expected and the actual shape when x is not a floating point
  // [N, inputChannels, imageHeight, imageWidth] tensor of the options the model was built with.
  virtual void checkInput(const torch::Tensor& x) const = 0;
  // checkInput, then the segments in order.
  virtual torch::Tensor forward(torch::Tensor x);
  const std::vector<Segment>& segments() const { return segments_; }

 protected:
  std::vector<Segment> segments_;
};

// A model's Coded Deep Learning variant (Note [CDL quantizer]): every convolution and linear
// layer's weight quantized (the first and last with firstLastBits), every ReLU's output quantized
// with unsigned levels.
struct CdlModelOptions {
  bool enabled = false;
  int weightBits = 6;
  int actBits = 6;
  int firstLastBits = 8;
  double kappa = 2.0;
  bool trainKappa = false;
  int window = 5;
};

struct ModelOptions {
  int64_t inputChannels = 1;  // of the images
  int64_t imageHeight = 28;
  int64_t imageWidth = 28;
  int64_t classes = 10;
  int64_t hidden = 256;  // mlp: width of the hidden layers (config key model.hidden)
  int64_t width = 16;    // cnn, resnet20: channels of the first stage (config key model.width)
  // A text set's tokens per example (0: the input is images); charlm: with `width` as the
  // embedding width, its blocks and heads per block.
  int64_t context = 0;
  int64_t layers = 2;
  int64_t heads = 4;
  CdlModelOptions cdl;
};

// "mlp": flatten, two hidden layers of `hidden` with ReLU, linear out.
// "cnn": two conv(3x3)-batchnorm-ReLU-maxpool(2) blocks (width, 2*width channels), a hidden
//        linear layer of 128 with ReLU, linear out.
// "resnet20": the CIFAR ResNet-20 layout (3 stages of 3 basic blocks, width, 2*width, 4*width
//        channels, stride 2 between stages, batchnorm, global average pooling, linear out;
//        projection shortcuts where the shape changes).
// "charlm": a character-level transformer language model (Note [Char LM], core/models/char_lm.h):
// tokens
//        [batch, context] (int64, 0..classes-1) to logits [batch, classes, context].
// Parameters are initialized from torch's global generator (seed it first for reproducibility), the
// same way with CDL on or off. With opt.cdl.enabled the quantizers are submodules: "wq" of each
// layer (parameter "conv1.wq.step", ...) and "aq1", "aq2", ... after the ReLUs.
// An unknown name is a cdl::Error listing the known ones; so are non-positive sizes, for "cnn"
// an image height or width not divisible by 4, and for "charlm" CDL or heads that do not divide
// the width.
std::shared_ptr<Net> makeModel(const std::string& name, const ModelOptions& opt = {});

// The device of a model's parameters (Note [Training device]); the CPU for a model without any.
c10::Device modelDevice(const torch::nn::Module& model);

}  // namespace cdl::core
