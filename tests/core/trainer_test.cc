#include "core/trainer.h"

#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>
#include <vector>

#include "core/checkpoint.h"
#include "core/schedule.h"
#include "kernels/base/error.h"

namespace cdl::core {
namespace {

class TrainerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    at::set_num_threads(1);
    char tmpl[] = "/tmp/cdl_trainer_test_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::system(("rm -rf " + dir_).c_str()); }

  // A small, quick experiment on the synthetic set: 256 examples, batch 16 per rank.
  Config smallConfig(const std::string& name, const std::string& codec = "none") const {
    Config c;
    c.name = name;
    c.seed = 7;
    c.data.dataset = "synthetic";
    c.data.syntheticTrain = 256;
    c.data.syntheticTest = 200;
    c.model.name = "mlp";
    c.model.hidden = 32;
    c.train.epochs = 2;
    c.train.batchSize = 16;
    c.train.lr = 0.05;
    c.train.warmupSteps = 2;
    c.comm.codec = codec;
    c.comm.minCompressNumel = 100;
    c.log.runsDir = dir_;
    c.log.everySteps = 4;
    return c;
  }

  // Runs train() on `size` in-process ranks; returns rank 0's result.
  TrainResult run(const Config& c, int size, const TrainOptions& opt = {}) {
    auto group = comm::makeLocalGroup(size);
    std::vector<std::thread> threads;
    std::vector<TrainResult> results(size);
    std::vector<std::exception_ptr> errors(size);
    for (int r = 0; r < size; ++r) {
      threads.emplace_back([&, r] {
        setThreadRank(r);
        try {
          results[r] = train(c, group[r], opt);
        } catch (...) {
          errors[r] = std::current_exception();
        }
      });
    }
    for (auto& t : threads) t.join();
    for (auto& e : errors) {
      if (e) std::rethrow_exception(e);
    }
    return results[0];
  }

  std::vector<nlohmann::json> records(const std::string& name, const std::string& kind) const {
    std::ifstream in(dir_ + "/" + name + "/metrics.jsonl");
    std::vector<nlohmann::json> out;
    std::string line;
    while (std::getline(in, line)) {
      auto j = nlohmann::json::parse(line);
      if (j["kind"] == kind) out.push_back(j);
    }
    return out;
  }

  nlohmann::json summary(const std::string& name) const {
    std::ifstream in(dir_ + "/" + name + "/summary.json");
    return nlohmann::json::parse(in);
  }

  std::string dir_;
};

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
    Config c = smallConfig(parts, codec);
    TrainOptions stop;
    stop.stopAfterSteps = 12;  // in the middle of the second epoch, on a logging step
    const TrainResult first = run(c, 2, stop);
    EXPECT_FALSE(first.finished);
    EXPECT_EQ(first.steps, 12);
    TrainOptions resume;
    resume.resume = true;
    const TrainResult b = run(c, 2, resume);
    EXPECT_TRUE(b.finished);
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

TEST_F(TrainerTest, CheckpointsKeepTheNewestAndACorruptOneIsNamedOnResume) {
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

TEST_F(TrainerTest, AnUnknownCodecNamesTheConfigKey) {
  try {
    run(smallConfig("bad", "qsgd:bits=12"), 1);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("comm.codec"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace cdl::core
