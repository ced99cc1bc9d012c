#include "core/run/metrics_log.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/run/checkpoint.h"
#include "core/train/trainer.h"
#include "tests/support/temp_dir.h"
#include "tests/support/thread_ranks.h"

namespace cdl::core {
namespace {

TEST(CompressionRatio, IsFp32BytesOverWireBytes) {
  EXPECT_DOUBLE_EQ(compressionRatio(1000, 250), 4.0);
  EXPECT_DOUBLE_EQ(compressionRatio(100, 100), 1.0);
  EXPECT_DOUBLE_EQ(compressionRatio(3, 2), 1.5);
}

// A run that sent nothing (one rank, or no gradients yet) reports 1x, never inf or nan.
TEST(CompressionRatio, IsOneWhenNothingWasSent) {
  EXPECT_DOUBLE_EQ(compressionRatio(0, 0), 1.0);
  EXPECT_DOUBLE_EQ(compressionRatio(4096, 0), 1.0);
}

class MetricsLogTest : public ::testing::Test {
 protected:
  std::vector<nlohmann::json> lines() const {
    std::ifstream in(dir_ + "/metrics.jsonl");
    std::vector<nlohmann::json> out;
    for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
    return out;
  }

  test::TempDir tmp_;
  std::string dir_ = tmp_.path();
};

// The step record's loss and accuracy cover every rank's examples; the bytes are this rank's.
TEST_F(MetricsLogTest, AStepRecordSumsTheWindowOverTheRanksAndOnlyRankZeroWrites) {
  test::spawn(2, [&](int r, std::shared_ptr<comm::Communicator> c) {
    MetricsLog log(*c, dir_ + "/metrics.jsonl", /*progressBar=*/false, /*totalSteps=*/10);
    StepMetrics m;
    m.lr = 0.1;
    m.loss = r == 0 ? 1.0 : 3.0;  // mean over the batch
    m.correct = r == 0 ? 2 : 4;
    m.count = 4;
    m.wireBytes = 100;
    m.fp32Bytes = 400;
    log.addStep(m);
    log.addStep(m);
    log.writeStep(2, 0, 0.1);
    log.writeEpoch(0, 2, 0.5, 0.75);
  });
  const auto records = lines();
  ASSERT_EQ(records.size(), 2u);
  const auto& s = records[0];
  EXPECT_EQ(s["kind"], "step");
  EXPECT_EQ(s["step"], 2);
  EXPECT_EQ(s["epoch"], 0);
  EXPECT_DOUBLE_EQ(s["lr"].get<double>(), 0.1);
  EXPECT_DOUBLE_EQ(s["train_loss"].get<double>(), 2.0);       // (2*4*1 + 2*4*3) / 16
  EXPECT_DOUBLE_EQ(s["train_accuracy"].get<double>(), 0.75);  // (4 + 8) / 16
  EXPECT_DOUBLE_EQ(s["wire_mb_per_step"].get<double>(), 100 / 1e6);
  EXPECT_DOUBLE_EQ(s["compression_ratio"].get<double>(), 4.0);
  EXPECT_TRUE(s.contains("samples_per_s"));
  ASSERT_TRUE(s["wall_s"].is_number());
  EXPECT_GE(s["wall_s"].get<double>(), 0.0);
  EXPECT_EQ(s.size(), 10u);
  nlohmann::json got = records[1];
  ASSERT_TRUE(got["wall_s"].is_number());
  EXPECT_GE(got["wall_s"].get<double>(), s["wall_s"].get<double>());
  got.erase("wall_s");
  const nlohmann::json epoch = {
      {"kind", "epoch"}, {"epoch", 0}, {"step", 2}, {"test_loss", 0.5}, {"test_accuracy", 0.75}};
  EXPECT_EQ(got, epoch);
}

// wall_s goes on from a checkpoint's seconds, and the accuracy targets reached before a resume
// keep the seconds of the records that reached them.
TEST_F(MetricsLogTest, WallSecondsAndTimeToAccuracyCountAcrossAResume) {
  std::vector<std::pair<double, double>> reached;
  test::spawn(1, [&](int, std::shared_ptr<comm::Communicator> c) {
    TrainState state;
    {
      MetricsLog first(*c, dir_ + "/metrics.jsonl", false, 8);
      first.writeEpoch(0, 2, 1.0, 0.55);
      first.writeEpoch(1, 4, 1.0, 0.65);  // written after the checkpoint below: dropped
      first.saveTo(state);
    }
    state.wallSeconds = 100.0;  // as if the first attempt had trained for 100 s up to step 2
    MetricsLog resumed(*c, dir_ + "/metrics.jsonl", false, 8, /*resumedStep=*/2);
    resumed.resumeFrom(state);
    EXPECT_GE(resumed.elapsed(), 100.0);
    resumed.writeEpoch(1, 4, 0.5, 0.86);
    reached = resumed.timeToAccuracy();
  });
  const auto records = lines();
  ASSERT_EQ(records.size(), 2u);
  const double before = records[0]["wall_s"].get<double>(), after = records[1]["wall_s"];
  EXPECT_LT(before, 100.0);
  EXPECT_GE(after, 100.0);
  ASSERT_EQ(reached.size(), 5u);  // 0.5 before the resume; 0.6, 0.7, 0.8, 0.85 after it
  EXPECT_EQ(reached[0], std::make_pair(0.5, before));
  for (size_t i = 1; i < reached.size(); ++i) EXPECT_EQ(reached[i].second, after);
  EXPECT_EQ(reached[4].first, 0.85);
}

TEST_F(MetricsLogTest, AResumedRunAppendsToTheLog) {
  test::spawn(1, [&](int, std::shared_ptr<comm::Communicator> c) {
    MetricsLog(*c, dir_ + "/metrics.jsonl", false, 4).writeEpoch(0, 2, 1.0, 0.5);
    MetricsLog(*c, dir_ + "/metrics.jsonl", false, 4).writeEpoch(1, 4, 0.5, 0.75);
  });
  const auto records = lines();
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[0]["epoch"], 0);
  EXPECT_EQ(records[1]["epoch"], 1);
}

TEST(SummaryJson, HoldsTheRunsResultAndItsCompressionRatio) {
  Config cfg;
  cfg.name = "s";
  cfg.train.batchSize = 32;
  cfg.comm.codec = "qsgd:bits=4";
  TrainResult r;
  r.testAccuracy = 0.9;
  r.epochs = 2;
  r.steps = 40;
  r.wireBytes = 1000;
  r.fp32WireBytes = 8000;
  const auto j = nlohmann::json::parse(summaryJson(cfg, r, 4));
  EXPECT_EQ(j["name"], "s");
  EXPECT_DOUBLE_EQ(j["test_accuracy"].get<double>(), 0.9);
  EXPECT_DOUBLE_EQ(j["compression_ratio"].get<double>(), 8.0);
  EXPECT_EQ(j["ranks"], 4);
  EXPECT_EQ(j["batch_per_rank"], 32);
  EXPECT_EQ(j["global_batch"], 128);
  EXPECT_EQ(j["codec"], "qsgd:bits=4");
  EXPECT_EQ(j["config_hash"], configHash(cfg));
  EXPECT_EQ(j["time_to_accuracy"], nlohmann::json::object());
  EXPECT_EQ(j.size(), 16u);
  r.timeToAccuracy = {{0.85, 31.25}, {0.9, 64.0}};
  const nlohmann::json reached = {{"0.85", 31.25}, {"0.90", 64.0}};
  EXPECT_EQ(nlohmann::json::parse(summaryJson(cfg, r, 4))["time_to_accuracy"], reached);
}

}  // namespace
}  // namespace cdl::core
