// CDL runs through train(): resumes, the rate term's effect and how an 8-bit model trains.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/train/trainer.h"
#include "kernels/base/error.h"
#include "tests/core/train/train_fixture.h"

namespace cdl::core {
namespace {

class CdlTrainerTest : public TrainFixture {
 protected:
  Config cdlConfig(const std::string& name, const std::string& mode, double lambdaW) const {
    Config c = smallConfig(name, "qsgd:bits=4,rounding=stochastic");
    c.cdl.mode = mode;
    c.cdl.lambdaW = lambdaW;
    c.cdl.lambdaA = 0.05;
    c.cdl.rateWarmupSteps = 4;
    return c;
  }
};

TEST_F(CdlTrainerTest, AnInterruptedAndResumedCdlRunMatchesAnUninterruptedOne) {
  for (const std::string mode : {"cdl", "rcdl", "lsq"}) {
    SCOPED_TRACE(mode);
    // LSQ has no rate term.
    const auto config = [&](const std::string& name) {
      Config c = cdlConfig(name, mode, mode == "lsq" ? 0.0 : 0.5);
      if (mode == "lsq") c.cdl.lambdaA = 0.0;
      return c;
    };
    const TrainResult a = run(config("whole_" + mode), 2);
    // Stopped in the middle of the second epoch.
    const TrainResult b = runInterrupted(config("parts_" + mode), 2, 12);
    EXPECT_EQ(b.testAccuracy, a.testAccuracy);
    EXPECT_EQ(b.testLoss, a.testLoss);
    EXPECT_EQ(b.modelCodedBytes, a.modelCodedBytes);
    EXPECT_EQ(b.modelBitsPerWeight, a.modelBitsPerWeight);
    const auto sa = records("whole_" + mode, "step"), sb = records("parts_" + mode, "step");
    ASSERT_EQ(sa.size(), sb.size());
    for (size_t i = 0; i < sa.size(); ++i) {
      EXPECT_EQ(sa[i]["train_loss"], sb[i]["train_loss"]);
      EXPECT_EQ(sa[i]["weight_bits"], sb[i]["weight_bits"]);
      EXPECT_EQ(sa[i]["activation_bits"], sb[i]["activation_bits"]);
    }
    const auto ea = records("whole_" + mode, "epoch"), eb = records("parts_" + mode, "epoch");
    ASSERT_EQ(ea.size(), eb.size());
    for (size_t i = 0; i < ea.size(); ++i) EXPECT_EQ(ea[i]["cdl"], eb[i]["cdl"]);
  }
}

TEST_F(CdlTrainerTest, TheRateTermShrinksTheCodedModelAndTheSummaryReportsIt) {
  Config plain = cdlConfig("lambda0", "cdl", 0.0);
  plain.cdl.lambdaA = 0.0;
  Config rated = cdlConfig("lambda2", "cdl", 2.0);
  plain.train.epochs = rated.train.epochs = 3;
  const TrainResult a = run(plain, 2), b = run(rated, 2);
  EXPECT_TRUE(a.cdl);
  EXPECT_LT(b.modelBitsPerWeight, a.modelBitsPerWeight - 0.5)
      << a.modelBitsPerWeight << " -> " << b.modelBitsPerWeight;
  EXPECT_LT(b.modelCodedBytes, a.modelCodedBytes);
  const auto s = summary("lambda2");
  EXPECT_EQ(s["model_bits_per_weight"], b.modelBitsPerWeight);
  EXPECT_EQ(s["model_coded_bytes"], b.modelCodedBytes);
  const auto epochs = records("lambda2", "epoch");
  ASSERT_EQ(epochs.size(), 3u);
  const auto& report = epochs.back()["cdl"];
  EXPECT_EQ(report["weights"].size(), 3u);      // fc1, fc2, fc3
  EXPECT_EQ(report["activations"].size(), 2u);  // after the two hidden ReLUs
  EXPECT_EQ(report["weights"][0]["bits"], 8);   // the first layer keeps 8 bits
  EXPECT_EQ(report["weights"][1]["bits"], 6);
  EXPECT_GT(report["activations"][0]["entropy_bits"].get<double>(), 0.0);
  EXPECT_TRUE(report.contains("off_nearest"));
  EXPECT_FALSE(report.contains("test_accuracy_soft"));  // no cdl.diagnostics: no extra evaluation
}

// Note [CDL diagnostics]: kappa and the share of samples off the nearest level in every report;
// with cdl.diagnostics the accuracies with Q_d and with a sample, which at 8 bits and a sharp
// kappa are the nearest one's within a point, and at 2 bits and a flat kappa are not all equal.
TEST_F(CdlTrainerTest, TheDiagnosticsSayHowFarTrainingIsFromTheModelEvaluated) {
  Config sharp = cdlConfig("sharp", "cdl", 0.0);
  sharp.cdl.lambdaA = 0.0;
  sharp.cdl.weightBits = sharp.cdl.actBits = sharp.cdl.firstLastBits = 8;
  sharp.cdl.kappa = 20.0;
  sharp.cdl.diagnostics = true;
  Config flat = sharp;
  flat.name = "flat";
  flat.cdl.weightBits = flat.cdl.actBits = flat.cdl.firstLastBits = 2;
  flat.cdl.kappa = 0.3;
  const TrainResult a = run(sharp, 2), b = run(flat, 2);
  const auto sa = records("sharp", "epoch").back()["cdl"];
  const auto sb = records("flat", "epoch").back()["cdl"];
  EXPECT_NEAR(sa["test_accuracy_soft"].get<double>(), a.testAccuracy, 0.01);
  EXPECT_NEAR(sa["test_accuracy_sampled"].get<double>(), a.testAccuracy, 0.01);
  EXPECT_EQ(sa["weights"][0]["kappa"], 20.0);
  EXPECT_EQ(sa["activations"][0]["kappa"], 20.0);
  const double offSharp = sa["off_nearest"].get<double>(),
               offFlat = sb["off_nearest"].get<double>();
  EXPECT_LT(offSharp, 0.08);  // about 3.5% of uniformly placed weights at kappa 20
  EXPECT_GT(offFlat, 0.2);
  EXPECT_LE(offFlat, 1.0);
  const double soft = sb["test_accuracy_soft"].get<double>();
  const double sampled = sb["test_accuracy_sampled"].get<double>();
  EXPECT_TRUE(soft != b.testAccuracy || sampled != b.testAccuracy)
      << soft << " " << sampled << " " << b.testAccuracy;
}

TEST_F(CdlTrainerTest, AnEightBitCdlModelWithoutRateTrainsLikeTheFp32One) {
  Config fp32 = smallConfig("fp32");
  Config cdl = cdlConfig("cdl8", "cdl", 0.0);
  cdl.cdl.lambdaA = 0.0;
  cdl.cdl.weightBits = cdl.cdl.actBits = 8;
  cdl.comm.codec = "none";
  const TrainResult a = run(fp32, 2), b = run(cdl, 2);
  EXPECT_GT(b.testAccuracy, 0.8);
  EXPECT_GT(b.testAccuracy, a.testAccuracy - 0.05)
      << "fp32 " << a.testAccuracy << ", cdl " << b.testAccuracy;
}

}  // namespace
}  // namespace cdl::core
