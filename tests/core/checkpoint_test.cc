#include "core/checkpoint.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "kernels/base/error.h"
#include "tests/core/train_fixture.h"

namespace cdl::core {
namespace {

using CheckpointTest = TrainFixture;

// The newest `keep` survive; a truncated newest checkpoint is skipped and the run resumes from
// the one before, ending as the uninterrupted run; with nothing intact the error names the file.
TEST_F(CheckpointTest, ACorruptNewestCheckpointIsSkippedAndTheRunStillEndsExactly) {
  Config c = smallConfig("ckpt");
  c.checkpoint.everySteps = 3;
  c.checkpoint.keep = 2;
  run(c, 2);
  const auto whole = summary("ckpt");
  c.name = "ckpt2";
  TrainOptions stop;
  stop.stopAfterSteps = 10;
  run(c, 2, stop);
  const std::string dir = dir_ + "/ckpt2/checkpoints";
  EXPECT_EQ(checkpointSteps(dir, 0), (std::vector<int64_t>{9, 10}));
  ASSERT_EQ(truncate(checkpointPath(dir, 10, 1).c_str(), 100), 0);
  TrainOptions resume;
  resume.resume = true;
  run(c, 2, resume);
  EXPECT_EQ(summary("ckpt2")["test_loss"], whole["test_loss"]);

  c.name = "ckpt3";
  c.checkpoint.keep = 1;
  run(c, 1, stop);
  const std::string only = checkpointPath(dir_ + "/ckpt3/checkpoints", 10, 0);
  ASSERT_EQ(truncate(only.c_str(), 100), 0);
  try {
    run(c, 1, resume);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no step of which every rank holds an intact checkpoint"),
              std::string::npos)
        << e.what();
  }
}

// The files a rank killed before its rename at step 8 leaves with keep 1: rank 0 wrote step 8 but
// never saw rank 1 confirm, so it still holds step 4; rank 1 holds step 4 only. The run resumes
// from step 4 and ends as the uninterrupted run.
TEST_F(CheckpointTest, ARankKilledBeforeItsRenameLeavesACommonStep) {
  Config c = smallConfig("died");
  c.checkpoint.everySteps = 4;
  c.checkpoint.keep = 1;
  run(c, 2);
  const auto whole = summary("died");
  c.name = "died2";
  const std::string dir = dir_ + "/died2/checkpoints";
  TrainOptions stop;
  stop.stopAfterSteps = 4;
  run(c, 2, stop);
  for (int r = 0; r < 2; ++r) {
    std::filesystem::copy_file(checkpointPath(dir, 4, r), dir_ + "/step4.rank" + std::to_string(r));
  }
  TrainOptions resume;
  resume.resume = true;
  resume.stopAfterSteps = 8;
  run(c, 2, resume);
  EXPECT_EQ(checkpointSteps(dir, 0), (std::vector<int64_t>{8}));  // pruned once both confirmed
  for (int r = 0; r < 2; ++r) {
    std::filesystem::copy_file(dir_ + "/step4.rank" + std::to_string(r), checkpointPath(dir, 4, r));
  }
  ASSERT_EQ(std::remove(checkpointPath(dir, 8, 1).c_str()), 0);
  resume.stopAfterSteps = 0;
  EXPECT_TRUE(run(c, 2, resume).finished);
  EXPECT_EQ(summary("died2")["test_loss"], whole["test_loss"]);
}

// A run that died after writing records past its newest checkpoint resumes without writing
// them twice: the records are exactly the uninterrupted run's.
TEST_F(CheckpointTest, AResumedRunWritesNoRecordTwice) {
  Config c = smallConfig("records");
  c.checkpoint.everySteps = 4;
  c.log.everySteps = 2;
  run(c, 2);
  c.name = "records2";
  TrainOptions stop;
  stop.stopAfterSteps = 10;
  run(c, 2, stop);
  // As if killed after the records of steps 9 and 10 but before step 10's checkpoints.
  const std::string dir = dir_ + "/records2/checkpoints";
  for (int r = 0; r < 2; ++r) ASSERT_EQ(std::remove(checkpointPath(dir, 10, r).c_str()), 0);
  {
    std::ofstream torn(dir_ + "/records2/metrics.jsonl", std::ios::app);
    torn << "{\"kind\":\"step\",\"step\":1";  // and a torn last line
  }
  TrainOptions resume;
  resume.resume = true;
  run(c, 2, resume);
  const auto want = records("records", "step"), got = records("records2", "step");
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(got[i]["step"], want[i]["step"]);
    EXPECT_EQ(got[i]["train_loss"], want[i]["train_loss"]) << "step " << want[i]["step"];
  }
  EXPECT_EQ(records("records2", "epoch").size(), records("records", "epoch").size());
}

}  // namespace
}  // namespace cdl::core
