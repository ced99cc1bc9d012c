// Training on a GPU (Note [Training device]); every test skips on a machine without one.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "core/train/device.h"
#include "tests/core/train/train_fixture.h"

namespace cdl::core {
namespace {

class TrainCudaTest : public TrainFixture {
 protected:
  void SetUp() override {
    TrainFixture::SetUp();
    if (cudaDeviceCount() == 0) GTEST_SKIP() << "no usable GPU";
  }
  // About 100 steps of smallConfig on 2 ranks.
  Config longer(const std::string& name, const std::string& device) const {
    Config c = smallConfig(name, "qsgd:bits=8,rounding=nearest");
    c.train.epochs = 13;
    c.train.maxSteps = 100;
    c.train.device = device;
    return c;
  }
};

// Two thread-ranks share one GPU through the in-process communicator (NCCL would refuse two
// ranks on one device) and follow the CPU run's losses within float tolerance.
TEST_F(TrainCudaTest, TwoThreadRanksOnOneGpuFollowTheCpuRunsLosses) {
  const TrainResult gpu = run(longer("gpu", "cuda:0"), 2);
  const TrainResult cpu = run(longer("cpu", "cpu"), 2);
  EXPECT_EQ(gpu.steps, 100);
  const auto g = records("gpu", "step"), c = records("cpu", "step");
  ASSERT_EQ(g.size(), c.size());
  ASSERT_FALSE(g.empty());
  for (size_t i = 0; i < g.size(); ++i) {
    const double a = g[i]["train_loss"].get<double>(), b = c[i]["train_loss"].get<double>();
    EXPECT_NEAR(a, b, 0.02 * std::abs(b) + 1e-3) << "record " << i;
  }
  EXPECT_NEAR(gpu.testAccuracy, cpu.testAccuracy, 0.03);
}

// A checkpoint written on the GPU resumes on the CPU (and one from the CPU on the GPU): the
// run finishes with the uninterrupted run's accuracy within float tolerance.
TEST_F(TrainCudaTest, ACheckpointMovesBetweenTheGpuAndTheCpu) {
  for (const auto& [first, second] : {std::pair<std::string, std::string>{"cuda", "cpu"},
                                      std::pair<std::string, std::string>{"cpu", "cuda"}}) {
    SCOPED_TRACE(first + " then " + second);
    const std::string name = "moved-" + first;
    TrainOptions stop;
    stop.stopAfterSteps = 40;
    const TrainResult a = run(longer(name, first), 2, stop);
    EXPECT_EQ(a.steps, 40);
    TrainOptions resume;
    resume.resume = true;
    const TrainResult b = run(longer(name, second), 2, resume);
    EXPECT_TRUE(b.finished);
    const TrainResult whole = run(longer("whole-" + first, first), 2);
    EXPECT_NEAR(b.testAccuracy, whole.testAccuracy, 0.03);
  }
}

}  // namespace
}  // namespace cdl::core
