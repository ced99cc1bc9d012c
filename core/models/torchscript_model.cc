#include "core/models/torchscript_model.h"

#include <ATen/ops/zeros.h>
#include <c10/util/Exception.h>
#include <torch/csrc/autograd/grad_mode.h>
#include <torch/csrc/jit/api/module.h>
#include <torch/csrc/jit/serialization/import.h>

#include <filesystem>
#include <map>
#include <sstream>
#include <vector>

#include "kernels/base/error.h"

namespace cdl::core {
namespace {

// What went wrong in one line: c10's message without its C++ backtrace; of an error raised while
// the TorchScript interpreter ran, its last line (the Python-style "RuntimeError: ..." under the
// TorchScript traceback).
std::string oneLine(const std::exception& e) {
  const auto* c10 = dynamic_cast<const c10::Error*>(&e);
  std::string msg = c10 ? c10->what_without_backtrace() : e.what();
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
  const bool traceback = msg.find("Traceback of TorchScript") != std::string::npos;
  const size_t nl = traceback ? msg.rfind('\n') : msg.find('\n');
  if (nl == std::string::npos) return msg;
  return traceback ? msg.substr(nl + 1) : msg.substr(0, nl);
}

class TorchScriptNet : public Net {
 public:
  TorchScriptNet(const std::string& path, const ModelOptions& opt) : path_(path), opt_(opt) {
    std::error_code ec;
    CDL_CHECK(std::filesystem::is_regular_file(path, ec), "model.torchscript ", path,
              ": no such file (make one with torch.jit.script(model).save(path))");
    try {
      module_ = torch::jit::load(path);
    } catch (const std::exception& e) {
      CDL_THROW("model.torchscript ", path,
                ": not a TorchScript module saved with torch.jit.save (", oneLine(e), ")");
    }
    mirror();
    CDL_CHECK(!parameters().empty(), "model.torchscript ", path, ": the module has no parameters");
    std::vector<std::string> children;
    for (const auto& c : named_children()) children.push_back(c.key());
    segments_.push_back(
        {"model", children, [this](const torch::Tensor& x) { return run(x); }, Quantizer(nullptr)});
    probe();
  }

  void checkInput(const torch::Tensor& x) const override {
    if (opt_.context > 0) {
      CDL_CHECK(x.dim() == 2 && x.size(1) == opt_.context && x.scalar_type() == at::kLong,
                "model.torchscript ", path_, ": the data give tokens [N, ", opt_.context,
                "] of int64, got ", x.sizes(), " of ", x.scalar_type());
      return;
    }
    CDL_CHECK(x.dim() == 4 && x.size(1) == opt_.inputChannels && x.size(2) == opt_.imageHeight &&
                  x.size(3) == opt_.imageWidth && x.is_floating_point(),
              "model.torchscript ", path_, ": the data give images [N, ", opt_.inputChannels, ", ",
              opt_.imageHeight, ", ", opt_.imageWidth, "] of floats, got ", x.sizes(), " of ",
              x.scalar_type());
  }

  void train(bool on) override {
    Net::train(on);
    module_.train(on);
  }

 private:
  // Registers every parameter and buffer of the module on a tree of plain modules with the
  // module's own hierarchy, so that named_parameters() yields the module's dotted names.
  void mirror() {
    std::map<std::string, std::shared_ptr<torch::nn::Module>> nodes;
    auto ownerOf = [&](const std::string& dotted, std::string* leaf) -> torch::nn::Module& {
      torch::nn::Module* owner = this;
      std::string prefix;
      size_t start = 0;
      for (size_t dot; (dot = dotted.find('.', start)) != std::string::npos; start = dot + 1) {
        const std::string part = dotted.substr(start, dot - start);
        prefix += (prefix.empty() ? "" : ".") + part;
        auto& node = nodes[prefix];
        if (!node) node = owner->register_module(part, std::make_shared<torch::nn::Module>());
        owner = node.get();
      }
      *leaf = dotted.substr(start);
      return *owner;
    };
    std::string leaf;
    for (const auto& p : module_.named_parameters(/*recurse=*/true)) {
      torch::nn::Module& owner = ownerOf(p.name, &leaf);
      owner.register_parameter(leaf, p.value, p.value.requires_grad());
    }
    for (const auto& b : module_.named_buffers(/*recurse=*/true)) {
      torch::nn::Module& owner = ownerOf(b.name, &leaf);
      owner.register_buffer(leaf, b.value);
    }
  }

  torch::Tensor run(const torch::Tensor& x) {
    c10::IValue out;
    try {
      out = module_.forward({x});
    } catch (const std::exception& e) {
      CDL_THROW("model.torchscript ", path_, ": forward failed on input ", x.sizes(), ": ",
                oneLine(e));
    }
    CDL_CHECK(out.isTensor(), "model.torchscript ", path_,
              ": forward must return one tensor of logits, it returned ", out.tagKind());
    const torch::Tensor y = out.toTensor();
    // Logits [N, classes] of images; of tokens [N, classes, context] (per position).
    std::vector<int64_t> want{x.size(0), opt_.classes};
    if (opt_.context > 0) want.push_back(opt_.context);
    CDL_CHECK(y.sizes().vec() == want && y.is_floating_point(), "model.torchscript ", path_,
              ": the output for input ", x.sizes(), " is ", y.sizes(), " of ", y.scalar_type(),
              "; expected ", c10::IntArrayRef(want), " floats (batch, classes",
              opt_.context > 0 ? ", position)" : ")");
    return y;
  }

  // One batch of two blank images through the module in eval mode, so that a module that does
  // not fit the data fails here, before a run folder exists.
  void probe() {
    const bool wasTraining = is_training();
    train(false);
    {
      torch::NoGradGuard noGrad;
      forward(opt_.context > 0
                  ? at::zeros({2, opt_.context}, at::kLong)
                  : at::zeros({2, opt_.inputChannels, opt_.imageHeight, opt_.imageWidth}));
    }
    train(wasTraining);
  }

  std::string path_;
  ModelOptions opt_;
  torch::jit::Module module_;
};

}  // namespace

std::shared_ptr<Net> loadTorchScriptModel(const std::string& path, const ModelOptions& opt) {
  return std::make_shared<TorchScriptNet>(path, opt);
}

}  // namespace cdl::core
