#include "core/step/cdl_training.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/optim/sgd.h>

#include <cmath>
#include <string>
#include <vector>

#include "comm/transport/communicator.h"
#include "core/cdl/cdl_layers.h"
#include "core/models/models.h"
#include "kernels/base/error.h"

namespace cdl::core {
namespace {

ModelOptions cdlOptions(const std::string& mode = "cdl") {
  ModelOptions o;
  o.inputChannels = 1;
  o.imageHeight = 8;
  o.imageWidth = 8;
  o.classes = 4;
  o.hidden = 16;
  o.width = 4;
  Config::Cdl c;
  c.mode = mode;
  o.cdl = cdlModelOptions(c);
  return o;
}

TEST(CdlTraining, EveryModelOfTheZooHasQuantizedWeightsAndActivations) {
  for (const char* name : {"mlp", "cnn", "resnet20"}) {
    at::manual_seed(1);
    auto model = makeModel(name, cdlOptions());
    const auto weights = quantizedWeightsOf(*model);
    const auto all = quantizersOf(*model);
    EXPECT_GE(weights.size(), 3u) << name;
    EXPECT_GT(all.size(), weights.size()) << name << ": no activation quantizers";
    // The first and last layers keep 8 bits, the others 6.
    EXPECT_EQ(weights.front().quantizer->options().bits, 8) << name;
    EXPECT_EQ(weights.back().quantizer->options().bits, 8) << name;
    EXPECT_EQ(weights[1].quantizer->options().bits, 6) << name;
  }
}

TEST(CdlTraining, WithoutCdlTheModelsAreThePlainOnes) {
  at::manual_seed(3);
  ModelOptions plain = cdlOptions();
  plain.cdl.enabled = false;
  auto a = makeModel("cnn", plain);
  EXPECT_TRUE(quantizersOf(*a).empty());
  at::manual_seed(3);
  auto b = makeModel("cnn", cdlOptions());
  // Same initialization of the shared parameters, CDL or not.
  for (const auto& p : a->named_parameters()) {
    EXPECT_TRUE(at::equal(p.value(), b->named_parameters()[p.key()])) << p.key();
  }
}

// A few SGD steps of a small CDL CNN on one fixed batch: the loss stays finite and, with a rate
// term, the weights' bits fall. *firstLoss and *lastLoss get the loss of the first and last step.
double bitsAfterTraining(const std::string& mode, double lambdaW, int steps,
                         double* firstLoss = nullptr, double* lastLoss = nullptr) {
  at::manual_seed(5);
  auto model = makeModel("cnn", cdlOptions(mode));
  auto comm = comm::makeLocalGroup(1)[0];
  Config::Cdl cfg;
  cfg.mode = mode;
  cfg.lambdaW = lambdaW;
  CdlTraining cdl(cfg, 7, *model, *comm);
  torch::optim::SGD sgd(model->parameters(), torch::optim::SGDOptions(0.05).momentum(0.9));
  const at::Tensor x = at::randn({32, 1, 8, 8});
  const at::Tensor y = at::randint(0, 4, {32});
  for (int s = 0; s < steps; ++s) {
    cdl.setStep(s);
    sgd.zero_grad();
    const at::Tensor loss = at::cross_entropy_loss(model->forward(x), y);
    const CdlTraining::Rate rate = cdl.rate(s);
    EXPECT_TRUE(std::isfinite(loss.item<double>())) << "step " << s;
    if (s == 0 && firstLoss) *firstLoss = loss.item<double>();
    if (lastLoss) *lastLoss = loss.item<double>();
    (loss + rate.loss).backward();
    for (const auto& p : model->parameters()) {
      if (p.grad().defined()) {
        EXPECT_TRUE(at::isfinite(p.grad()).all().item<bool>()) << "step " << s;
      }
    }
    sgd.step();
  }
  model->eval();
  cdl.setCounting(true);
  {
    at::NoGradGuard noGrad;
    model->forward(x);
  }
  cdl.setCounting(false);
  return cdl.report().bitsPerWeight;
}

TEST(CdlTraining, CdlRcdlAndLsqFitAFixedBatch) {
  for (const char* mode : {"cdl", "rcdl", "lsq"}) {
    double first = 0, last = 0;
    bitsAfterTraining(mode, 0.0, 40, &first, &last);
    EXPECT_LT(last, 0.5 * first) << mode << ": loss " << first << " -> " << last;
  }
}

TEST(CdlTraining, TheRateTermLowersTheBitsPerWeight) {
  const double without = bitsAfterTraining("cdl", 0.0, 30);
  const double with = bitsAfterTraining("cdl", 0.5, 30);
  EXPECT_LT(with, without - 0.3) << "without " << without << ", with " << with;
  EXPECT_LT(bitsAfterTraining("rcdl", 0.5, 30), without - 0.3);
}

TEST(CdlTraining, TheKappaScheduleRunsFromKappaToKappaFinalOverTheRun) {
  at::manual_seed(9);
  auto model = makeModel("cnn", cdlOptions());
  auto comm = comm::makeLocalGroup(1)[0];
  Config::Cdl cfg;
  cfg.mode = "cdl";
  cfg.kappa = 2.0;
  cfg.kappaFinal = 18.0;
  CdlTraining cdl(cfg, 7, *model, *comm);
  cdl.setTotalSteps(101);
  EXPECT_DOUBLE_EQ(cdl.kappaAt(0), 2.0);
  EXPECT_NEAR(cdl.kappaAt(50), 6.0, 1e-12);  // the geometric mean halfway
  EXPECT_NEAR(cdl.kappaAt(100), 18.0, 1e-12);
  EXPECT_NEAR(cdl.kappaAt(500), 18.0, 1e-12);  // steps past the end keep the final kappa
  // Every quantizer, weights and activations, takes the step's kappa; a resume at step 50 sets
  // it from the step alone.
  for (int64_t step : {int64_t{100}, int64_t{50}}) {
    cdl.setStep(step);
    for (const auto& [name, q] : quantizersOf(*model)) {
      EXPECT_NEAR(q->kappaValue(), cdl.kappaAt(step), 1e-5) << name << " at step " << step;
    }
  }
  // Without a schedule kappa stays where it is.
  cfg.kappaFinal = 0.0;
  at::manual_seed(9);
  auto still = makeModel("cnn", cdlOptions());
  CdlTraining fixed(cfg, 7, *still, *comm);
  fixed.setTotalSteps(101);
  fixed.setStep(100);
  EXPECT_DOUBLE_EQ(fixed.kappaAt(100), 2.0);
  for (const auto& [name, q] : quantizersOf(*still)) EXPECT_NEAR(q->kappaValue(), 2.0, 1e-6);
}

}  // namespace
}  // namespace cdl::core
