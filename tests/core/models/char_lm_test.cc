#include "core/models/char_lm.h"

#include <ATen/ops/cross_entropy_loss.h>
#include <ATen/ops/randint.h>
#include <ATen/ops/randn.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/grad_mode.h>
#include <torch/optim/adam.h>

#include <string>

#include "tests/support/temp_dir.h"

namespace cdl::core {
namespace {

using test::errorOf;
using ::testing::AllOf;
using ::testing::HasSubstr;

ModelOptions small() {
  ModelOptions o;
  o.classes = 256;
  o.context = 16;
  o.width = 32;
  o.layers = 2;
  o.heads = 4;
  return o;
}

at::Tensor tokens(int64_t n, int64_t t) { return at::randint(0, 256, {n, t}, at::kLong); }

TEST(CharLm, LogitsAreBatchByClassesByPositionForTheTrainersLoss) {
  const auto lm = makeModel("charlm", small());
  const at::Tensor x = tokens(3, 16);
  const at::Tensor logits = lm->forward(x);
  EXPECT_EQ(logits.sizes().vec(), (std::vector<int64_t>{3, 256, 16}));
  // Cross-entropy and argmax over dim 1 are per token, as the trainer takes them.
  EXPECT_TRUE(at::cross_entropy_loss(logits, tokens(3, 16)).defined());
}

TEST(CharLm, APositionSeesOnlyTheTokensBeforeIt) {
  const auto lm = makeModel("charlm", small());
  torch::NoGradGuard noGrad;
  at::Tensor x = tokens(2, 16);
  const at::Tensor before = lm->forward(x);
  x.select(1, 9).fill_(7);  // a later token changes...
  const at::Tensor after = lm->forward(x);
  // ... nothing before it,
  EXPECT_TRUE(after.narrow(2, 0, 9).equal(before.narrow(2, 0, 9)));
  // and what comes from it on.
  EXPECT_FALSE(after.narrow(2, 9, 7).equal(before.narrow(2, 9, 7)));
}

TEST(CharLm, TheOutputIsTiedToTheEmbeddingAndEveryLayerIsNamed) {
  const ModelOptions o = small();
  const auto lm = makeModel("charlm", o);
  const auto params = lm->named_parameters();
  for (const char* name :
       {"embed.weight", "pos", "block0.qkv.weight", "block0.proj.weight", "block1.fc1.weight",
        "block1.fc2.bias", "block1.ln2.weight", "ln.weight"}) {
    EXPECT_TRUE(params.contains(name)) << name;
  }
  // Per block: 2 layer norms, qkv, proj, fc1, fc2 (weights and biases); no output matrix.
  const int64_t w = o.width;
  const int64_t block =
      2 * 2 * w + (3 * w * w + 3 * w) + (w * w + w) + (4 * w * w + 4 * w) + (4 * w * w + w);
  int64_t total = 0;
  for (const auto& p : lm->parameters()) total += p.numel();
  EXPECT_EQ(total, o.classes * w + o.context * w + o.layers * block + 2 * w);
}

TEST(CharLm, AdamStepsOnAFixedBatchLearnIt) {
  at::manual_seed(1);
  const auto lm = makeModel("charlm", small());
  torch::optim::Adam opt(lm->parameters(), torch::optim::AdamOptions(3e-3));
  const at::Tensor x = tokens(8, 16), y = tokens(8, 16);
  double first = 0.0, last = 0.0;
  for (int i = 0; i < 30; ++i) {
    opt.zero_grad();
    const at::Tensor loss = at::cross_entropy_loss(lm->forward(x), y);
    loss.backward();
    opt.step();
    (i == 0 ? first : last) = loss.item<double>();
  }
  EXPECT_LT(last, 0.5 * first);
}

TEST(CharLm, BadInputsAndOptionsAreNamed) {
  const auto lm = makeModel("charlm", small());
  EXPECT_THAT(errorOf([&] {
                lm->forward(at::randn({2, 1, 28, 28}));
              }),
              AllOf(HasSubstr("expects tokens [N, 16] of int64"), HasSubstr("[2, 1, 28, 28]")));
  ModelOptions o = small();
  o.heads = 3;
  EXPECT_THAT(errorOf([&] { makeModel("charlm", o); }), HasSubstr("3 heads do not divide"));
  o = small();
  o.cdl.enabled = true;
  EXPECT_THAT(errorOf([&] { makeModel("charlm", o); }), HasSubstr("no CDL variant"));
}

}  // namespace
}  // namespace cdl::core
