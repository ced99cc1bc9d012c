#include "core/checkpoint.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <string>

#include "kernels/base/error.h"
#include "tests/core/train_fixture.h"

namespace cdl::core {
namespace {

using CheckpointTest = TrainFixture;

TEST_F(CheckpointTest, CheckpointsKeepTheNewestAndACorruptOneIsNamedOnResume) {
  Config c = smallConfig("ckpt");
  c.checkpoint.everySteps = 3;
  c.checkpoint.keep = 2;
  TrainOptions stop;
  stop.stopAfterSteps = 10;
  run(c, 1, stop);
  const auto steps = checkpointSteps(dir_ + "/ckpt/checkpoints", 0);
  ASSERT_EQ(steps.size(), 2u);
  EXPECT_EQ(steps.back(), 10);
  const std::string path = checkpointPath(dir_ + "/ckpt/checkpoints", 10, 0);
  ASSERT_EQ(truncate(path.c_str(), 100), 0);
  TrainOptions resume;
  resume.resume = true;
  try {
    run(c, 1, resume);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace cdl::core
