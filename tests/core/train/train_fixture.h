#pragma once

#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "core/train/trainer.h"
#include "tests/support/temp_dir.h"
#include "tests/support/thread_ranks.h"

namespace cdl::core {

// A temporary runs folder and small synthetic experiments trained on in-process ranks.
class TrainFixture : public ::testing::Test {
 protected:
  void SetUp() override { at::set_num_threads(1); }

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
    std::vector<TrainResult> results(size);
    test::spawn(size, [&](int r, std::shared_ptr<comm::Communicator> comm) {
      results[r] = train(c, std::move(comm), opt);
    });
    return results[0];
  }

  // Runs train() on a grid of in-process ranks (perRank[r] is world rank r's config, `stages`
  // pipeline stages); returns every rank's result.
  std::vector<TrainResult> runGrid(const std::vector<Config>& perRank, int stages,
                                   const TrainOptions& opt = {}) {
    const int ranks = static_cast<int>(perRank.size());
    std::vector<ProcessGrid> grids = makeLocalGrids(ranks, stages);
    std::vector<TrainResult> results(static_cast<size_t>(ranks));
    test::onThreadRanks(ranks, [&](int r) { results[r] = train(perRank[r], grids[r], opt); });
    return results;
  }
  // Runs c on `size` ranks stopped after `stopAfter` steps (checking that it stopped), then
  // resumed to the end; returns the resumed run's result.
  TrainResult runInterrupted(const Config& c, int size, int64_t stopAfter) {
    TrainOptions stop;
    stop.stopAfterSteps = stopAfter;
    const TrainResult first = run(c, size, stop);
    EXPECT_FALSE(first.finished);
    EXPECT_EQ(first.steps, stopAfter);
    TrainOptions resume;
    resume.resume = true;
    const TrainResult last = run(c, size, resume);
    EXPECT_TRUE(last.finished);
    return last;
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

  test::TempDir tmp_;
  std::string dir_ = tmp_.path();
};

}  // namespace cdl::core
