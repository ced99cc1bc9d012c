#include "core/step/lr_schedule.h"

#include <gtest/gtest.h>

#include "kernels/base/error.h"

namespace cdl::core {
namespace {

TEST(Schedule, WarmUpThenConstantCosineAndStepDecay) {
  EXPECT_DOUBLE_EQ(scheduledLr("constant", 0.1, 0, 100, 4), 0.025);  // warm-up: 1/4 of lr
  EXPECT_DOUBLE_EQ(scheduledLr("constant", 0.1, 3, 100, 4), 0.1);
  EXPECT_DOUBLE_EQ(scheduledLr("constant", 0.1, 99, 100, 4), 0.1);
  EXPECT_DOUBLE_EQ(scheduledLr("cosine", 0.1, 4, 104, 4), 0.1);
  EXPECT_NEAR(scheduledLr("cosine", 0.1, 54, 104, 4), 0.05, 1e-12);
  EXPECT_NEAR(scheduledLr("cosine", 0.1, 104, 104, 4), 0.0, 1e-12);
  EXPECT_DOUBLE_EQ(scheduledLr("step", 0.1, 9, 100, 0, 10, 0.5), 0.1);
  EXPECT_DOUBLE_EQ(scheduledLr("step", 0.1, 10, 100, 0, 10, 0.5), 0.05);
  EXPECT_DOUBLE_EQ(scheduledLr("step", 0.1, 25, 100, 0, 10, 0.5), 0.025);
  EXPECT_THROW(scheduledLr("linear", 0.1, 0, 10, 0), Error);
}

}  // namespace
}  // namespace cdl::core
