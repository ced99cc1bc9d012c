#include "core/train/trainer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "core/run/stop_signals.h"
#include "kernels/base/error.h"
#include "tests/core/train/train_fixture.h"

namespace cdl::core {
namespace {

using TrainerTest = TrainFixture;

TEST_F(TrainerTest, TwoRanksLearnTheSyntheticSetAndWriteTheSummary) {
  const Config c = smallConfig("two");
  const TrainResult r = run(c, 2);
  EXPECT_TRUE(r.finished);
  EXPECT_EQ(r.epochs, 2);
  EXPECT_EQ(r.steps, 2 * (128 / 16));
  EXPECT_GT(r.testAccuracy, 0.8);
  const auto s = summary("two");
  for (const char* key :
       {"test_accuracy", "epochs", "steps", "wall_seconds", "wire_bytes", "fp32_wire_bytes"}) {
    EXPECT_TRUE(s.contains(key)) << key;
  }
  EXPECT_DOUBLE_EQ(s["test_accuracy"].get<double>(), r.testAccuracy);
  EXPECT_EQ(records("two", "epoch").size(), 2u);
  EXPECT_EQ(records("two", "step").size(), 4u);  // every 4 of 16 steps
  struct stat st;
  EXPECT_EQ(stat((dir_ + "/two/config.yaml").c_str(), &st), 0);
}

TEST_F(TrainerTest, CompressedGradientsSendFewerBytesAndStillLearn) {
  const TrainResult fp32 = run(smallConfig("fp32"), 2);
  const TrainResult q = run(smallConfig("q4", "qsgd:bits=4,entropy=rans"), 2);
  EXPECT_EQ(fp32.wireBytes, fp32.fp32WireBytes);
  EXPECT_LT(q.wireBytes * 4, q.fp32WireBytes);
  EXPECT_GT(q.testAccuracy, 0.8);
}

// Note [Step times]: every step is timed; its parts on the training thread add up to at most the
// whole, the step records carry their means per window, and keepStepTimes hands them back.
TEST_F(TrainerTest, StepsAreTimedPartByPart) {
  TrainOptions keep;
  keep.keepStepTimes = true;
  const TrainResult r = run(smallConfig("timed", "qsgd:bits=4,entropy=rans"), 2, keep);
  ASSERT_EQ(r.stepTimes.size(), static_cast<size_t>(r.steps));
  for (const StepTimes& t : r.stepTimes) {
    EXPECT_GT(t.step, 0.0);
    EXPECT_GT(t.compute, 0.0);
    for (double part : {t.data, t.wait, t.optimizer, t.encode, t.comm, t.decode}) {
      EXPECT_GE(part, 0.0);
    }
    EXPECT_LE(t.data + t.compute + t.wait + t.optimizer, t.step);
    EXPECT_GT(t.encode + t.decode, 0.0);  // the codec ran on the communication thread
  }
  const auto steps = records("timed", "step");
  ASSERT_EQ(steps.size(), 4u);
  for (const auto& s : steps) {
    ASSERT_TRUE(s.contains("ms")) << s.dump();
    const auto& ms = s["ms"];
    for (const char* k :
         {"data", "compute", "wait", "optimizer", "step", "encode", "comm", "decode"}) {
      ASSERT_TRUE(ms.contains(k) && ms[k].is_number()) << k;
      EXPECT_GE(ms[k].get<double>(), 0.0) << k;
    }
    EXPECT_LE(ms["compute"].get<double>(), ms["step"].get<double>());
  }
  EXPECT_TRUE(run(smallConfig("untimed"), 2).stepTimes.empty());  // only when asked for
}

TEST_F(TrainerTest, SameSeedAndConfigGiveIdenticalResults) {
  const TrainResult a = run(smallConfig("a", "qsgd:bits=4"), 2);
  const TrainResult b = run(smallConfig("b", "qsgd:bits=4"), 2);
  EXPECT_EQ(a.testAccuracy, b.testAccuracy);
  EXPECT_EQ(a.testLoss, b.testLoss);
  const auto ra = records("a", "step"), rb = records("b", "step");
  ASSERT_EQ(ra.size(), rb.size());
  for (size_t i = 0; i < ra.size(); ++i) EXPECT_EQ(ra[i]["train_loss"], rb[i]["train_loss"]);
}

TEST_F(TrainerTest, AnInterruptedAndResumedRunMatchesAnUninterruptedOne) {
  for (const std::string codec : {"qsgd:bits=2,rounding=stochastic", "powersgd:rank=2"}) {
    SCOPED_TRACE(codec);
    const std::string whole = "whole" + std::to_string(codec.size());
    const std::string parts = "parts" + std::to_string(codec.size());
    const TrainResult a = run(smallConfig(whole, codec), 2);
    // Stopped in the middle of the second epoch, on a logging step.
    const TrainResult b = runInterrupted(smallConfig(parts, codec), 2, 12);
    EXPECT_EQ(b.testAccuracy, a.testAccuracy);
    EXPECT_EQ(b.testLoss, a.testLoss);
    EXPECT_EQ(b.wireBytes, a.wireBytes);
    const auto ea = records(whole, "epoch"), eb = records(parts, "epoch");
    ASSERT_EQ(ea.size(), eb.size());
    for (size_t i = 0; i < ea.size(); ++i) EXPECT_EQ(ea[i]["test_loss"], eb[i]["test_loss"]);
    const auto sa = records(whole, "step"), sb = records(parts, "step");
    ASSERT_EQ(sa.size(), sb.size());
    for (size_t i = 0; i < sa.size(); ++i) EXPECT_EQ(sa[i]["train_loss"], sb[i]["train_loss"]);
  }
}

// Note [Stop signals]: a stop request (as the signal handler makes it) stops every rank after the
// same step with a checkpoint, and the resumed run ends as the uninterrupted one.
TEST_F(TrainerTest, AStopRequestStopsEveryRankAfterTheStepAndTheResumeIsExact) {
  const TrainResult whole = run(smallConfig("unstopped", "qsgd:bits=4"), 2);
  TrainOptions signals;
  signals.stopOnSignals = true;
  requestStop(SIGUSR1);
  const TrainResult stopped = run(smallConfig("stopped", "qsgd:bits=4"), 2, signals);
  clearStopRequest();
  EXPECT_FALSE(stopped.finished);
  EXPECT_EQ(stopped.steps, 1);
  EXPECT_EQ(stopped.stopRanks, 2);  // thread-ranks share the process's request
  EXPECT_EQ(stopped.stopSignal, SIGUSR1);
  EXPECT_TRUE(std::filesystem::exists(dir_ + "/stopped/checkpoints/ckpt-0000000001.rank1.ckpt"));
  signals.resume = true;
  const TrainResult resumed = run(smallConfig("stopped", "qsgd:bits=4"), 2, signals);
  EXPECT_TRUE(resumed.finished);
  EXPECT_EQ(resumed.stopRanks, 0);
  EXPECT_EQ(resumed.testLoss, whole.testLoss);
  const auto a = records("unstopped", "step"), b = records("stopped", "step");
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i]["train_loss"], b[i]["train_loss"]);
}

TEST_F(TrainerTest, AFreshRunRefusesAnOccupiedFolderAndLeavesItIntact) {
  const Config c = smallConfig("taken");
  run(c, 1);
  std::ifstream in(dir_ + "/taken/metrics.jsonl");
  std::stringstream before;
  before << in.rdbuf();
  try {
    run(c, 1);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("already holds a run"), std::string::npos) << e.what();
  }
  std::ifstream again(dir_ + "/taken/metrics.jsonl");
  std::stringstream after;
  after << again.rdbuf();
  EXPECT_EQ(before.str(), after.str());
}

// Note [Non-finite gradients]: a learning rate that blows the model up fails the run naming the
// parameter and the step, on every path (plain fp32 here); with train.skip_nonfinite those steps
// are skipped and counted instead.
TEST_F(TrainerTest, NonFiniteGradientsNameTheParameterAndStepOrAreSkipped) {
  Config c = smallConfig("blowup");
  c.train.lr = 1e30;
  c.train.warmupSteps = 0;
  try {
    run(c, 2);
    ADD_FAILURE() << "a run with lr 1e30 finished";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), ::testing::MatchesRegex(".*step [0-9]+: the gradient of '[a-z0-9.]+' "
                                                  "holds NaN or infinity.*train.skip_nonfinite.*"));
  }
  c.name = "skipped";
  c.train.skipNonfinite = true;
  const TrainResult r = run(c, 2);
  EXPECT_TRUE(r.finished);
  EXPECT_GT(r.skippedSteps, 0);
  EXPECT_EQ(summary("skipped")["skipped_steps"], r.skippedSteps);
}

TEST_F(TrainerTest, AnUnknownCodecNamesTheConfigKey) {
  try {
    run(smallConfig("bad", "qsgd:bits=12"), 1);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("comm.codec"), std::string::npos) << e.what();
  }
  // Checked before the run folder exists: nothing is left behind to refuse the corrected run.
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/bad"));
  Config split = smallConfig("badcut");
  split.model.split.stages = 2;
  split.model.split.cutAfter = {"fc1"};
  split.model.split.gradientCodec = "qsgd:bits=0";
  try {
    runGrid({split, split}, 2);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.split.gradient_codec"), std::string::npos)
        << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/badcut"));
}

}  // namespace
}  // namespace cdl::core
