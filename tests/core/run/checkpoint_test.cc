#include "core/run/checkpoint.h"

#include <ATen/ops/randint.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/scalar_tensor.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/linear.h>
#include <torch/optim/adam.h>
#include <torch/optim/sgd.h>
#include <torch/utils.h>
#include <unistd.h>
#include <xxhash.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kernels/base/error.h"
#include "tests/core/train/train_fixture.h"
#include "tests/support/temp_dir.h"

namespace cdl::core {
namespace {

using ::testing::HasSubstr;

struct SmallNet : torch::nn::Module {
  explicit SmallNet(int64_t out = 2) {
    fc = register_module("fc", torch::nn::Linear(3, out));
    bn = register_module("bn", torch::nn::BatchNorm1d(out));
  }
  void step(torch::optim::Optimizer& o) {
    o.zero_grad();
    bn->forward(fc->forward(at::randn({4, 3}))).pow(2).sum().backward();
    o.step();
  }
  torch::nn::Linear fc{nullptr};
  torch::nn::BatchNorm1d bn{nullptr};
};

std::unique_ptr<torch::optim::Optimizer> makeOptimizer(SmallNet& net, bool adam) {
  if (adam) {
    return std::make_unique<torch::optim::Adam>(net.parameters(),
                                                torch::optim::AdamOptions(0.01).amsgrad(true));
  }
  return std::make_unique<torch::optim::SGD>(net.parameters(),
                                             torch::optim::SGDOptions(0.1).momentum(0.9));
}

// The optimizer's state tensors by parameter, in order, with Adam's step counts as tensors.
std::vector<at::Tensor> stateOf(SmallNet& net, torch::optim::Optimizer& o) {
  std::vector<at::Tensor> out;
  for (const at::Tensor& p : net.parameters()) {
    auto it = o.state().find(optimizerStateKey(p));
    if (it == o.state().end()) continue;
    if (auto* s = dynamic_cast<torch::optim::SGDParamState*>(it->second.get())) {
      out.push_back(s->momentum_buffer());
    } else if (auto* a = dynamic_cast<torch::optim::AdamParamState*>(it->second.get())) {
      out.push_back(at::scalar_tensor(a->step(), at::kLong));
      for (const at::Tensor& t : {a->exp_avg(), a->exp_avg_sq(), a->max_exp_avg_sq()}) {
        out.push_back(t);
      }
    }
  }
  return out;
}

std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Writes body with a trailer that matches it, as a forger would.
void writeSealed(const std::string& path, std::string body, char format = '4') {
  const uint64_t hash = XXH64(body.data(), body.size(), 0);
  body.append(reinterpret_cast<const char*>(&hash), 8);
  body += std::string("CDLCKPT") + format;
  std::ofstream(path, std::ios::binary) << body;
}

// Every part of the state comes back bit for bit, with SGD's and with Adam's optimizer state.
TEST(CheckpointFile, HoldsEveryPartOfTheStateExactly) {
  for (const bool adam : {false, true}) {
    torch::manual_seed(3);
    SmallNet net;
    auto opt = makeOptimizer(net, adam);
    net.step(*opt);
    net.step(*opt);
    TrainState s;
    s.step = 12;
    s.epoch = 2;
    s.batchInEpoch = 5;
    s.worldSize = 4;
    s.rank = 3;
    s.configHash = 0xfedcba9876543210ULL;
    s.wireBytes = 1234567;
    s.fp32WireBytes = 7654321;
    s.schemeState["fc.weight"]["residual"] = {0.5f, -1.25f};
    s.schemeState["fc.weight"]["q"] = {3.0f};
    s.ratePlan["fc.weight"] = "qsgd:bits=3";
    s.captured["fc.bias"] = {1.5f, 2.5f};
    s.capturedSteps = 7;
    s.sentSincePlan = 99;
    s.stepsSincePlan = 6;
    s.cutWireBytes = 11;
    s.cutFp32Bytes = 44;
    s.skippedSteps = 2;
    s.metricsWindow = {0.25, 8.0};
    s.wallSeconds = 12.375;
    s.rngState = at::randint(0, 255, {32}, at::kByte);
    const test::TempDir tmp;
    const std::string& dir = tmp.path();
    const std::string path = saveCheckpoint(dir, net, *opt, s);
    EXPECT_EQ(path, checkpointPath(dir, 12, 3));
    EXPECT_EQ(checkpointProblem(path), "");

    torch::manual_seed(4);
    SmallNet other;
    auto otherOpt = makeOptimizer(other, adam);
    const TrainState got = loadCheckpoint(path, other, *otherOpt);
    const auto a = net.named_parameters(), b = other.named_parameters();
    for (const auto& p : a) EXPECT_TRUE(p.value().equal(b[p.key()])) << p.key();
    const auto ab = net.named_buffers(), bb = other.named_buffers();
    for (const auto& p : ab) EXPECT_TRUE(p.value().equal(bb[p.key()])) << p.key();
    const auto want = stateOf(net, *opt), have = stateOf(other, *otherOpt);
    ASSERT_EQ(have.size(), want.size());
    ASSERT_EQ(want.size(), adam ? 16u : 4u);
    for (size_t i = 0; i < want.size(); ++i) EXPECT_TRUE(have[i].equal(want[i])) << i;
    EXPECT_EQ(got.step, s.step);
    EXPECT_EQ(got.epoch, s.epoch);
    EXPECT_EQ(got.batchInEpoch, s.batchInEpoch);
    EXPECT_EQ(got.worldSize, s.worldSize);
    EXPECT_EQ(got.rank, s.rank);
    EXPECT_EQ(got.configHash, s.configHash);
    EXPECT_EQ(got.wireBytes, s.wireBytes);
    EXPECT_EQ(got.fp32WireBytes, s.fp32WireBytes);
    EXPECT_EQ(got.schemeState, s.schemeState);
    EXPECT_EQ(got.ratePlan, s.ratePlan);
    EXPECT_EQ(got.captured, s.captured);
    EXPECT_EQ(got.capturedSteps, s.capturedSteps);
    EXPECT_EQ(got.sentSincePlan, s.sentSincePlan);
    EXPECT_EQ(got.stepsSincePlan, s.stepsSincePlan);
    EXPECT_EQ(got.cutWireBytes, s.cutWireBytes);
    EXPECT_EQ(got.cutFp32Bytes, s.cutFp32Bytes);
    EXPECT_EQ(got.skippedSteps, s.skippedSteps);
    EXPECT_EQ(got.metricsWindow, s.metricsWindow);
    EXPECT_EQ(got.wallSeconds, s.wallSeconds);
    EXPECT_TRUE(got.rngState.equal(s.rngState));
  }
}

// A checkpoint of another model is refused naming the tensor, before the optimizer is touched.
TEST(CheckpointFile, AnotherModelsCheckpointNamesTheTensorThatDoesNotFit) {
  SmallNet net;
  auto opt = makeOptimizer(net, false);
  net.step(*opt);
  const test::TempDir dir;
  const std::string path = saveCheckpoint(dir.path(), net, *opt, TrainState{});
  SmallNet wider(4);
  auto widerOpt = makeOptimizer(wider, false);
  EXPECT_THAT(test::errorOf([&] { loadCheckpoint(path, wider, *widerOpt); }),
              HasSubstr(path + ": entry 'param/fc.weight' has shape [2,3], expected [4,3]"));
  struct Bigger : SmallNet {
    Bigger() { register_module("extra", torch::nn::Linear(2, 2)); }
  } bigger;
  auto biggerOpt = makeOptimizer(bigger, false);
  EXPECT_THAT(test::errorOf([&] { loadCheckpoint(path, bigger, *biggerOpt); }),
              HasSubstr("it has no entry 'param/extra.weight'"));
  auto adam = makeOptimizer(net, true);
  EXPECT_THAT(test::errorOf([&] { loadCheckpoint(path, net, *adam); }),
              HasSubstr("it holds optimizer state 'bn.bias/momentum_buffer' that this run does "
                        "not have"));
}

// A forged file (its hash recomputed over altered bytes) meets the container's own checks: a shape
// that claims more than the file holds is refused before anything is allocated, and so are a
// wrong type, a duplicate entry and trailing bytes; a LibTorch archive of format 3 is named.
TEST(CheckpointFile, AForgedFileIsRefusedByTheChecksBehindItsHash) {
  SmallNet net;
  auto opt = makeOptimizer(net, false);
  const test::TempDir dir;
  const std::string path = saveCheckpoint(dir.path(), net, *opt, TrainState{});
  const std::string bytes = readFile(path);
  const std::string body = bytes.substr(0, bytes.size() - 16);
  // "meta": name length 4, the name, type int64 (2), one dimension of 15.
  const std::string meta = std::string("\x04\x00meta\x02\x01\x0f", 9);
  const size_t at = body.find(meta);
  ASSERT_NE(at, std::string::npos);
  std::string huge = body;
  huge.replace(at + 8, 1, std::string("\xff\xff\xff\xff\xff\xff\xff\xff\x7f", 9));
  writeSealed(path, huge);
  EXPECT_THAT(test::errorOf([&] { loadCheckpoint(path, net, *opt); }),
              HasSubstr("entry 'meta': its shape claims more than the"));
  std::string retyped = body;
  retyped[at + 6] = 1;  // float64: the same width
  writeSealed(path, retyped);
  EXPECT_THAT(test::errorOf([&] { loadCheckpoint(path, net, *opt); }),
              HasSubstr("entry 'meta' is float64, expected int64"));
  writeSealed(path, body + body.substr(at, 9 + 15 * 8));
  EXPECT_THAT(test::errorOf([&] { loadCheckpoint(path, net, *opt); }),
              HasSubstr("entry 'meta' appears twice"));
  writeSealed(path, body + "x");
  EXPECT_THAT(test::errorOf([&] { loadCheckpoint(path, net, *opt); }),
              HasSubstr("truncated: an entry's"));
  writeSealed(path, "PK\x03\x04 an older archive", '3');
  EXPECT_THAT(test::errorOf([&] { loadCheckpointWeights(path, net); }),
              HasSubstr("is of format 3 (an older cdl's); this build reads format 4"));
}

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
