// Training with layerwise-adaptive rates (Note [Adaptive rates]) on in-process ranks.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "kernels/base/error.h"
#include "tests/core/train/train_fixture.h"

namespace cdl::core {
namespace {

using ::testing::HasSubstr;

class AdaptiveTrainerTest : public TrainFixture {
 protected:
  // Plans after steps 4 and 10 of the 12 (3 ranks), each from the 3 steps before it, choosing among
  // qsgd and PowerSGD schemes.
  Config adaptiveConfig(const std::string& name) const {
    Config c = smallConfig(name, "qsgd:bits=4,rounding=stochastic");
    c.comm.adaptive.enabled = true;
    c.comm.adaptive.warmupSteps = 4;
    c.comm.adaptive.everySteps = 6;
    c.comm.adaptive.window = 3;
    c.comm.adaptive.alpha = 1.5;
    c.comm.adaptive.families = {"qsgd", "powersgd"};
    return c;
  }
};

TEST_F(AdaptiveTrainerTest, PlansAreWrittenAtTheirStepsAndNeverSendMoreThanUniform) {
  const TrainResult r = run(adaptiveConfig("plans"), 3);
  EXPECT_TRUE(r.finished);
  const auto plans = records("plans", "plan");
  ASSERT_EQ(plans.size(), 2u);  // after steps 4 and 10 of 12
  for (size_t i = 0; i < plans.size(); ++i) {
    EXPECT_EQ(plans[i]["step"], 4 + 6 * i);
    EXPECT_TRUE(plans[i]["feasible"]);
    EXPECT_LE(plans[i]["bytes"].get<int64_t>(), plans[i]["uniform_bytes"].get<int64_t>());
    EXPECT_LE(plans[i]["error"].get<double>(), plans[i]["budget"].get<double>() * (1 + 1e-6));
    EXPECT_GT(plans[i]["actual_bytes"].get<int64_t>(), 0);
    ASSERT_EQ(plans[i]["layers"].size(), 3u);  // the MLP's three weights; biases stay fp32
    EXPECT_EQ(plans[i]["layers"][0]["name"], "fc1.weight");
  }
  EXPECT_GT(r.testAccuracy, 0.5);
}

TEST_F(AdaptiveTrainerTest, AResumeAcrossARePlanAndInsideAWindowIsExact) {
  const TrainResult a = run(adaptiveConfig("whole"), 3);
  // Stopped after step 8 (a logging step, so the step records compare): past the plan of step 4,
  // inside the window of the plan of step 10 (its steps 7 to 9).
  const TrainResult b = runInterrupted(adaptiveConfig("parts"), 3, 8);
  EXPECT_EQ(b.testAccuracy, a.testAccuracy);
  EXPECT_EQ(b.testLoss, a.testLoss);
  EXPECT_EQ(b.wireBytes, a.wireBytes);
  const auto pa = records("whole", "plan"), pb = records("parts", "plan");
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i) {
    EXPECT_EQ(pa[i]["layers"], pb[i]["layers"]) << "plan " << i;
    EXPECT_EQ(pa[i]["error"], pb[i]["error"]) << "plan " << i;
    EXPECT_EQ(pa[i]["actual_bytes"], pb[i]["actual_bytes"]) << "plan " << i;
  }
  const auto sa = records("whole", "step"), sb = records("parts", "step");
  ASSERT_EQ(sa.size(), sb.size());
  for (size_t i = 0; i < sa.size(); ++i) {
    EXPECT_EQ(sa[i]["train_loss"], sb[i]["train_loss"]) << "step " << sa[i]["step"];
  }
}

TEST_F(AdaptiveTrainerTest, BadAdaptiveSettingsNameTheKey) {
  Config c = adaptiveConfig("bad1");
  c.comm.adaptive.families = {"qsgd", "lowrank"};
  EXPECT_THAT(
      test::errorOf([&] { run(c, 1); }),
      HasSubstr("comm.adaptive.families[1] must be one of qsgd, topk, powersgd, got 'lowrank'"));
  c = adaptiveConfig("bad2");
  c.comm.adaptive.candidates = {"qsgd:bits=3", "qsgd:bits=12"};
  EXPECT_THAT(test::errorOf([&] { run(c, 1); }), HasSubstr("comm.adaptive.candidates[1]"));
  c = adaptiveConfig("bad3");
  c.comm.adaptive.candidates = {"powersgd:rank=512"};
  EXPECT_THAT(test::errorOf([&] { run(c, 1); }),
              HasSubstr("'powersgd:rank=512' applies to no layer"));
  c = adaptiveConfig("bad4");
  c.comm.codec = "none";
  c.comm.adaptive.families = {};
  EXPECT_THAT(test::errorOf([&] { run(c, 1); }),
              HasSubstr("comm.adaptive.families: empty, and comm.codec 'none'"));
}

}  // namespace
}  // namespace cdl::core
