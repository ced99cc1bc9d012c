#include "core/models/models.h"

#include <ATen/ops/cross_entropy_loss.h>
#include <ATen/ops/randint.h>
#include <ATen/ops/randn.h>
#include <gtest/gtest.h>

#include <functional>
#include <set>
#include <string>
#include <vector>

#include "kernels/base/error.h"
#include "tests/support/temp_dir.h"

namespace cdl::core {
namespace {

// Small enough that every model runs a few training steps in well under a second.
ModelOptions smallOptions() {
  ModelOptions opt;
  opt.inputChannels = 3;
  opt.imageHeight = 8;
  opt.imageWidth = 12;
  opt.classes = 5;
  opt.hidden = 32;
  opt.width = 4;
  return opt;
}

torch::Tensor input(const ModelOptions& opt, int64_t n) {
  return at::randn({n, opt.inputChannels, opt.imageHeight, opt.imageWidth});
}

using test::errorOf;

class ModelsTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ModelsTest, LogitsHaveShapeBatchByClassesForAnyBatchSize) {
  const auto opt = smallOptions();
  auto net = makeModel(GetParam(), opt);
  for (int64_t n : {1, 5}) {
    auto logits = net->forward(input(opt, n));
    EXPECT_EQ(logits.sizes(), (std::vector<int64_t>{n, opt.classes})) << "batch " << n;
  }
}

// The gradient reducer and checkpoints key tensors by parameter name.
TEST_P(ModelsTest, ParameterNamesAreUniqueAndStableAcrossConstructions) {
  auto a = makeModel(GetParam(), smallOptions());
  auto b = makeModel(GetParam(), smallOptions());
  const auto keysA = a->named_parameters().keys();
  const auto keysB = b->named_parameters().keys();
  EXPECT_EQ(keysA, keysB);
  EXPECT_EQ(std::set<std::string>(keysA.begin(), keysA.end()).size(), keysA.size());
  EXPECT_FALSE(keysA.empty());
}

// Every rank builds its replica from the same seed and must start from identical weights.
TEST_P(ModelsTest, SameSeedGivesIdenticalParameters) {
  at::manual_seed(7);
  auto a = makeModel(GetParam(), smallOptions());
  at::manual_seed(7);
  auto b = makeModel(GetParam(), smallOptions());
  const auto pb = b->named_parameters();
  for (const auto& p : a->named_parameters()) {
    EXPECT_TRUE(p.value().equal(pb[p.key()])) << p.key();
  }
}

TEST_P(ModelsTest, BackwardGivesEveryParameterAGradient) {
  const auto opt = smallOptions();
  auto net = makeModel(GetParam(), opt);
  net->forward(input(opt, 4)).square().sum().backward();
  for (const auto& p : net->named_parameters()) {
    ASSERT_TRUE(p.value().grad().defined()) << p.key();
    EXPECT_EQ(p.value().grad().sizes(), p.value().sizes()) << p.key();
  }
}

TEST_P(ModelsTest, WrongInputShapeErrorNamesBothShapes) {
  const auto opt = smallOptions();
  auto net = makeModel(GetParam(), opt);
  const auto msg = errorOf([&] { net->forward(at::randn({2, 3, 12, 8})); });
  EXPECT_NE(msg.find("[N, 3, 8, 12]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[2, 3, 12, 8]"), std::string::npos) << msg;
  const auto flat = errorOf([&] { net->forward(at::randn({2, 288})); });
  EXPECT_NE(flat.find("[2, 288]"), std::string::npos) << flat;
}

TEST_P(ModelsTest, SgdStepsOnAFixedBatchReduceTheLoss) {
  at::manual_seed(1);
  const auto opt = smallOptions();
  auto net = makeModel(GetParam(), opt);
  const auto x = input(opt, 8);
  const auto y = at::randint(opt.classes, {8});
  auto lossOf = [&] { return at::cross_entropy_loss(net->forward(x), y); };
  const double before = lossOf().item<double>();
  for (int step = 0; step < 10; ++step) {
    net->zero_grad();
    lossOf().backward();
    at::NoGradGuard noGrad;
    for (auto& p : net->parameters()) p.sub_(p.grad(), 0.05);
  }
  const double after = lossOf().item<double>();
  EXPECT_LT(after, before * 0.9);
}

INSTANTIATE_TEST_SUITE_P(AllModels, ModelsTest, ::testing::Values("mlp", "cnn", "resnet20"),
                         [](const auto& info) { return info.param; });

int64_t numel(const Net& net) {
  int64_t n = 0;
  for (const auto& p : net.parameters()) n += p.numel();
  return n;
}

TEST(ModelsSizeTest, MlpParameterCountMatchesItsLayers) {
  const auto o = smallOptions();
  const int64_t in = o.inputChannels * o.imageHeight * o.imageWidth;
  const int64_t expected =
      (in + 1) * o.hidden + (o.hidden + 1) * o.hidden + (o.hidden + 1) * o.classes;
  EXPECT_EQ(numel(*makeModel("mlp", o)), expected);
}

TEST(ModelsSizeTest, CnnParameterCountMatchesItsLayers) {
  const auto o = smallOptions();
  const int64_t convs = o.inputChannels * o.width * 9 + o.width * 2 * o.width * 9;  // no biases
  const int64_t norms = 2 * o.width + 2 * (2 * o.width);  // weight and bias
  const int64_t fc1 = (2 * o.width * (o.imageHeight / 4) * (o.imageWidth / 4) + 1) * 128;
  const int64_t fc2 = (128 + 1) * o.classes;
  EXPECT_EQ(numel(*makeModel("cnn", o)), convs + norms + fc1 + fc2);
}

// The CIFAR-10 ResNet-20 of the paper has 0.27M parameters.
TEST(ModelsSizeTest, ResNet20OnCifarHasTheUsualSize) {
  ModelOptions o;
  o.inputChannels = 3;
  o.imageHeight = 32;
  o.imageWidth = 32;
  const int64_t n = numel(*makeModel("resnet20", o));
  EXPECT_GT(n, 260000);
  EXPECT_LT(n, 280000);
}

TEST(ModelsErrorTest, UnknownNameListsTheKnownModels) {
  const auto msg = errorOf([] { makeModel("vgg"); });
  for (const char* known : {"vgg", "mlp", "cnn", "resnet20"}) {
    EXPECT_NE(msg.find(known), std::string::npos) << msg;
  }
}

TEST(ModelsErrorTest, InvalidOptionsAreRejected) {
  auto with = [](auto edit) {
    auto o = smallOptions();
    edit(o);
    return o;
  };
  EXPECT_THROW(makeModel("mlp", with([](ModelOptions& o) { o.hidden = 0; })), Error);
  EXPECT_THROW(makeModel("mlp", with([](ModelOptions& o) { o.classes = -1; })), Error);
  EXPECT_THROW(makeModel("resnet20", with([](ModelOptions& o) { o.width = 0; })), Error);
  EXPECT_THROW(makeModel("resnet20", with([](ModelOptions& o) { o.inputChannels = 0; })), Error);
  const auto msg =
      errorOf([&] { makeModel("cnn", with([](ModelOptions& o) { o.imageHeight = 10; })); });
  EXPECT_NE(msg.find("divisible by 4"), std::string::npos) << msg;
}

}  // namespace
}  // namespace cdl::core
