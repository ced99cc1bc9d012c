#include "core/models/torchscript_model.h"

#include <ATen/ops/cross_entropy_loss.h>
#include <ATen/ops/randint.h>
#include <ATen/ops/randn.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "core/models/models.h"
#include "tests/support/temp_dir.h"

namespace cdl::core {
namespace {

using test::errorOf;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

// The modules tests/support/make_test_models.sh made (the CTest fixture torchscript_models).
std::string modelFile(const std::string& name) {
  const char* dir = std::getenv("CDL_TEST_MODELS");
  if (dir == nullptr) {
    ADD_FAILURE() << "CDL_TEST_MODELS is not set (CTest sets it; run the test through ctest)";
    return "";
  }
  return std::string(dir) + "/" + name + ".pt";
}

// Fashion-MNIST's shapes, which the test modules were made for.
ModelOptions fmnist() { return ModelOptions{}; }

std::map<std::string, std::vector<int64_t>> shapes(
    const torch::OrderedDict<std::string, at::Tensor>& tensors) {
  std::map<std::string, std::vector<int64_t>> out;
  for (const auto& t : tensors) out[t.key()] = t.value().sizes().vec();
  return out;
}

TEST(TorchScriptModel, TheBuiltInCnnWrittenInPyTorchHasTheBuiltInNamesAndShapes) {
  const auto ts = loadTorchScriptModel(modelFile("cnn"), fmnist());
  const auto builtIn = makeModel("cnn", fmnist());
  EXPECT_EQ(shapes(ts->named_parameters()), shapes(builtIn->named_parameters()));
  // Batchnorm's running statistics and counter are buffers, as in the built-in model.
  EXPECT_EQ(shapes(ts->named_buffers()), shapes(builtIn->named_buffers()));
  EXPECT_EQ(ts->segments().size(), 1u);
}

// PyTorch and LibTorch of one version initialize the same layers, made in the same order from the
// same seed, with the same numbers: the file's CNN (--seed 42) is the built-in CNN of seed 42,
// and computes what it computes, so a run of either trains alike.
TEST(TorchScriptModel, TheCnnMadeFromTheSameSeedIsTheBuiltInCnnBitForBit) {
  const auto ts = loadTorchScriptModel(modelFile("cnn"), fmnist());
  at::manual_seed(42);
  const auto builtIn = makeModel("cnn", fmnist());
  const auto want = builtIn->named_parameters();
  for (const auto& p : ts->named_parameters()) {
    EXPECT_TRUE(p.value().equal(want[p.key()])) << p.key();
  }
  ts->eval();
  builtIn->eval();
  torch::NoGradGuard noGrad;
  const at::Tensor x = at::randn({4, 1, 28, 28});
  EXPECT_TRUE(ts->forward(x).equal(builtIn->forward(x)));
}

TEST(TorchScriptModel, TheRegisteredParametersAreTheTensorsTheModuleComputesWith) {
  const auto net = loadTorchScriptModel(modelFile("mlp"), fmnist());
  const at::Tensor x = at::randn({8, 1, 28, 28});
  const at::Tensor y = at::randint(0, 10, {8});
  const at::Tensor before = net->forward(x).detach().clone();
  at::cross_entropy_loss(net->forward(x), y).backward();
  for (const auto& p : net->named_parameters()) {
    ASSERT_TRUE(p.value().grad().defined()) << p.key() << " got no gradient";
  }
  {
    torch::NoGradGuard noGrad;
    for (auto& p : net->parameters()) p.sub_(0.1 * p.grad());  // what the optimizer does
  }
  EXPECT_FALSE(net->forward(x).detach().equal(before)) << "the update did not reach the module";
}

TEST(TorchScriptModel, TrainAndEvalReachTheModulesBatchnorm) {
  const auto net = loadTorchScriptModel(modelFile("cnn"), fmnist());
  const at::Tensor mean = net->named_buffers()["bn1.running_mean"];
  const at::Tensor x = at::randn({16, 1, 28, 28}) + 3.0;
  net->eval();
  torch::NoGradGuard noGrad;
  const at::Tensor a = net->forward(x);
  EXPECT_TRUE(mean.abs().max().item<float>() == 0.0f) << "eval mode updated the running mean";
  EXPECT_TRUE(net->forward(x).equal(a)) << "eval mode is not deterministic";
  net->train();
  net->forward(x);
  EXPECT_GT(mean.abs().max().item<float>(), 0.0f) << "train mode left the running mean alone";
}

TEST(TorchScriptModel, AnInputOfOtherShapeIsNamed) {
  const auto net = loadTorchScriptModel(modelFile("cnn"), fmnist());
  EXPECT_THAT(errorOf([&] {
                net->forward(at::randn({2, 3, 28, 28}));
              }),
              AllOf(HasSubstr("images [N, 1, 28, 28]"), HasSubstr("[2, 3, 28, 28]")));
}

TEST(TorchScriptModel, BadFilesAreOneLineNamingTheFileWithoutBacktrace) {
  test::TempDir dir;
  const std::string missing = dir.path() + "/missing.pt";
  EXPECT_THAT(errorOf([&] { loadTorchScriptModel(missing, fmnist()); }),
              AllOf(HasSubstr(missing + ": no such file"), Not(HasSubstr("\n"))));

  const std::string text = dir.path() + "/text.pt";
  std::ofstream(text) << "not a module\n";
  EXPECT_THAT(errorOf([&] { loadTorchScriptModel(text, fmnist()); }),
              AllOf(HasSubstr(text + ": not a TorchScript module"), Not(HasSubstr("\n")),
                    Not(HasSubstr("Exception raised from"))));

  const std::string wrong = modelFile("wrong-out");
  EXPECT_THAT(errorOf([&] { loadTorchScriptModel(wrong, fmnist()); }),
              AllOf(HasSubstr(wrong + ": the output for input [2, 1, 28, 28] is [2, 11]"),
                    HasSubstr("expected [2, 10]")));

  // A module for other images fails in its forward pass, named, on one line.
  ModelOptions rgb = fmnist();
  rgb.inputChannels = 3;
  EXPECT_THAT(errorOf([&] { loadTorchScriptModel(modelFile("cnn"), rgb); }),
              AllOf(HasSubstr(modelFile("cnn") + ": forward failed on input [2, 3, 28, 28]"),
                    Not(HasSubstr("\n"))));
}

TEST(TorchScriptModel, MakeModelPointsToTheFile) {
  EXPECT_THAT(errorOf([] { makeModel("torchscript"); }), HasSubstr("model.torchscript"));
}

}  // namespace
}  // namespace cdl::core
