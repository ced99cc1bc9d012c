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
  for (const std::string mode : {"cdl", "rcdl"}) {
    SCOPED_TRACE(mode);
    const TrainResult a = run(cdlConfig("whole_" + mode, mode, 0.5), 2);
    // Stopped in the middle of the second epoch.
    const TrainResult b = runInterrupted(cdlConfig("parts_" + mode, mode, 0.5), 2, 12);
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
