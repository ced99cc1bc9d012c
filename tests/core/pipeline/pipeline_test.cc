// The model split across ranks (Note [Pipeline split]) on in-process ranks: stages partition the
// model, cut messages round-trip, and a split run with lossless codecs trains as the unsplit run.
#include "core/pipeline/pipeline.h"

#include <ATen/ops/rand.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/round.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "core/models/models.h"
#include "tests/core/train/train_fixture.h"

namespace cdl::core {
namespace {

using ::testing::HasSubstr;

std::vector<std::string> segmentNames(const Net& n) {
  std::vector<std::string> out;
  for (const Segment& s : n.segments()) out.push_back(s.name);
  return out;
}

Config::Model::Split splitOf(int64_t stages, std::vector<std::string> cuts) {
  Config::Model::Split s;
  s.stages = stages;
  s.cutAfter = std::move(cuts);
  return s;
}

TEST(PipelineModelTest, EveryModelNamesItsSegments) {
  EXPECT_EQ(segmentNames(*makeModel("mlp")), (std::vector<std::string>{"fc1", "fc2", "fc3"}));
  EXPECT_EQ(segmentNames(*makeModel("cnn")),
            (std::vector<std::string>{"conv1", "conv2", "fc1", "fc2"}));
  EXPECT_EQ(segmentNames(*makeModel("resnet20")),
            (std::vector<std::string>{"conv1", "layer1", "layer2", "layer3", "fc"}));
}

// The stages hold disjoint parameters that together are the whole model's, under its names, and
// running them one after another computes the whole model's output bit for bit.
TEST(PipelineModelTest, StagesPartitionTheModelAndChainToItsOutput) {
  struct Case {
    std::string model;
    std::vector<std::string> cuts;
    bool cdl;
  };
  for (const Case& c : {Case{"mlp", {"fc1", "fc2"}, false}, Case{"cnn", {"conv2"}, true},
                        Case{"cnn", {"conv1", "fc1"}, false}, Case{"resnet20", {"layer1"}, true}}) {
    SCOPED_TRACE(c.model);
    ModelOptions mo;
    mo.width = 4;
    mo.hidden = 16;
    mo.cdl.enabled = c.cdl;
    std::shared_ptr<Net> whole = makeModel(c.model, mo);
    whole->eval();
    const auto bounds = stageSegments(*whole, splitOf(c.cuts.size() + 1, c.cuts));
    ASSERT_EQ(bounds.size(), c.cuts.size() + 1);
    std::set<std::string> names;
    size_t count = 0;
    const at::Tensor x = at::rand({3, 1, 28, 28});
    at::Tensor y = x;
    for (const auto& [first, last] : bounds) {
      std::shared_ptr<Net> stage = makeStageNet(whole, first, last);
      stage->eval();
      for (const auto& p : stage->named_parameters()) {
        EXPECT_TRUE(names.insert(p.key()).second) << p.key() << " in two stages";
        EXPECT_TRUE(p.value().is_same(whole->named_parameters()[p.key()])) << p.key();
        ++count;
      }
      y = stage->forward(y);
    }
    EXPECT_EQ(count, whole->named_parameters().size());
    EXPECT_TRUE(y.equal(whole->forward(x)));
  }
}

TEST(PipelineModelTest, BadCutsNameTheKey) {
  const std::shared_ptr<Net> cnn = makeModel("cnn");
  const auto error = [&](const Config::Model::Split& s) {
    try {
      stageSegments(*cnn, s);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_THAT(error(splitOf(2, {})), HasSubstr("model.split.cut_after: 2 stages need 1 cut"));
  EXPECT_THAT(error(splitOf(2, {"conv3"})),
              HasSubstr("'conv3' is not a place the model can be cut (it can be cut after: conv1, "
                        "conv2, fc1)"));
  EXPECT_THAT(error(splitOf(2, {"fc2"})), HasSubstr("'fc2' is not a place"));
  EXPECT_THAT(error(splitOf(3, {"fc1", "conv1"})),
              HasSubstr("cut_after[1]: 'conv1' does not come after the previous cut"));
  EXPECT_THAT(error(splitOf(3, {"conv1", "conv1"})), HasSubstr("does not come after"));
  try {
    checkGridSize(6, 4);
    ADD_FAILURE() << "6 ranks in 4 stages accepted";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(),
                HasSubstr("model.split.stages: 4 stages do not divide the job's 6 ranks"));
  }
}

TEST(CutCodecTest, MessagesRoundTripAsTheirCodecPromises) {
  const at::Tensor x = at::randn({5, 8, 3, 3});
  const CutCodec none("none", Quantizer(nullptr), "k");
  EXPECT_TRUE(none.decode(none.encode(x, 1), "m").equal(x));
  const CutCodec fp16("fp16", Quantizer(nullptr), "k");
  const at::Tensor h = fp16.decode(fp16.encode(x, 1), "m");
  EXPECT_EQ(h.sizes(), x.sizes());
  EXPECT_LT((h - x).abs().max().item<double>(), 2e-3 * x.abs().max().item<double>());
  const CutCodec qsgd("qsgd:bits=8,entropy=rans", Quantizer(nullptr), "k");
  const Bytes q = qsgd.encode(x, 3);
  EXPECT_LT(q.size(), 4 * x.numel() / 3);
  EXPECT_LT((qsgd.decode(q, "m") - x).abs().max().item<double>(),
            0.05 * x.abs().max().item<double>());

  // A CDL activation (levels times the quantizer's step) crosses as its indices, exactly.
  QuantizerOptions qo;
  qo.bits = 4;
  qo.isSigned = false;
  qo.activation = true;
  Quantizer aq(qo);
  const double step = aq->stepValue();
  const at::Tensor levels = at::round(at::rand({6, 10}) * 15);
  const at::Tensor act = levels * static_cast<float>(step);
  const CutCodec indices("auto", aq, "k");
  EXPECT_TRUE(indices.indices());
  const Bytes m = indices.encode(act, 0);
  EXPECT_TRUE(indices.decode(m, "m").equal(act));
  EXPECT_LT(m.size(), 60u + 60u / 2);  // 4-bit levels: about half a byte each, with the header

  // Every truncation is one error naming the message; a codec the receiver does not expect too.
  for (size_t n = 0; n < m.size(); ++n) {
    const Bytes cut(m.begin(), m.begin() + static_cast<std::ptrdiff_t>(n));
    EXPECT_THROW(indices.decode(cut, "the activation of micro-batch 0"), Error) << n;
  }
  try {
    fp16.decode(m, "the activation of micro-batch 2");
    ADD_FAILURE() << "indices decoded as fp16";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(),
                HasSubstr("the activation of micro-batch 2: the message holds CDL indices"));
  }
}

TEST(CutCodecTest, BadSpecsNameTheKey) {
  try {
    CutCodec("cdl", Quantizer(nullptr), "model.split.activation_codec");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("model.split.activation_codec: 'cdl' codes a CDL model's"));
  }
  try {
    CutCodec("qsgd:bits=99", Quantizer(nullptr), "model.split.gradient_codec");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("model.split.gradient_codec: "));
  }
}

class SplitTrainTest : public TrainFixture {
 protected:
  Config splitConfig(const std::string& name, const std::string& model, int64_t stages,
                     std::vector<std::string> cuts, int64_t micro) const {
    Config c = smallConfig(name);
    c.model.name = model;
    c.model.width = 4;
    c.model.split.stages = stages;
    c.model.split.cutAfter = std::move(cuts);
    c.model.split.microBatches = micro;
    c.model.split.activationCodec = "none";
    c.model.split.gradientCodec = "none";
    return c;
  }

  std::vector<TrainResult> runSplit(const Config& c, int ranks, const TrainOptions& opt = {}) {
    return runGrid(std::vector<Config>(static_cast<size_t>(ranks), c),
                   static_cast<int>(c.model.split.stages), opt);
  }

  void expectSameCurves(const std::string& a, const std::string& b, double tol) {
    const auto ra = records(a, "step"), rb = records(b, "step");
    ASSERT_EQ(ra.size(), rb.size());
    ASSERT_FALSE(ra.empty());
    for (size_t i = 0; i < ra.size(); ++i) {
      EXPECT_NEAR(ra[i]["train_loss"].get<double>(), rb[i]["train_loss"].get<double>(), tol)
          << "step " << ra[i]["step"];
      EXPECT_NEAR(ra[i]["train_accuracy"].get<double>(), rb[i]["train_accuracy"].get<double>(),
                  1e-6);
      if (ra[i].contains("weight_bits")) {
        EXPECT_NEAR(ra[i]["weight_bits"].get<double>(), rb[i]["weight_bits"].get<double>(), tol);
        EXPECT_NEAR(ra[i]["activation_bits"].get<double>(), rb[i]["activation_bits"].get<double>(),
                    tol);
      }
    }
    const auto ea = records(a, "epoch"), eb = records(b, "epoch");
    ASSERT_EQ(ea.size(), eb.size());
    for (size_t i = 0; i < ea.size(); ++i) {
      EXPECT_NEAR(ea[i]["test_loss"].get<double>(), eb[i]["test_loss"].get<double>(), tol);
      EXPECT_NEAR(ea[i]["test_accuracy"].get<double>(), eb[i]["test_accuracy"].get<double>(),
                  2.0 / 200);
    }
  }
};

// With lossless codecs the split run trains as the unsplit one, to floating-point tolerance:
// 2 and 3 stages, 1 and 2 data-parallel replicas, several micro-batches (the MLP has no batch
// normalization, whose statistics are per micro-batch) and one for the CNN.
TEST_F(SplitTrainTest, LosslessSplitRunsFollowTheUnsplitLossCurve) {
  struct Case {
    std::string model;
    std::vector<std::string> cuts;
    int64_t micro;
    int replicas;
  };
  for (const Case& k : {Case{"mlp", {"fc1"}, 4, 1}, Case{"mlp", {"fc1", "fc2"}, 2, 2},
                        Case{"cnn", {"conv2"}, 1, 2}, Case{"cnn", {"conv1", "fc1"}, 1, 1}}) {
    const std::string name = k.model + std::to_string(k.cuts.size() + 1) + "x" +
                             std::to_string(k.replicas) + "m" + std::to_string(k.micro);
    SCOPED_TRACE(name);
    Config whole = splitConfig(name + "-whole", k.model, 1, {}, 1);
    whole.train.epochs = 1;
    run(whole, k.replicas);
    Config split = splitConfig(name, k.model, k.cuts.size() + 1, k.cuts, k.micro);
    split.train.epochs = 1;
    const auto results = runSplit(split, k.replicas * static_cast<int>(k.cuts.size() + 1));
    expectSameCurves(name + "-whole", name, 2e-4);
    const auto s = summary(name);
    EXPECT_EQ(s["stages"], k.cuts.size() + 1);
    EXPECT_EQ(s["global_batch"], 16 * k.replicas);
    // fp32 both ways: 4 bytes an element plus each message's length, shape and payload header.
    const uint64_t messages = 2 * s["steps"].get<uint64_t>() * k.micro * k.cuts.size() * k.replicas;
    const uint64_t wire = s["activation_wire_bytes"], fp32 = s["activation_fp32_bytes"];
    EXPECT_GT(wire, fp32);
    EXPECT_LE(wire - fp32, 100 * messages);
  }
}

// A CDL model split at a quantized activation sends its indices and trains as the unsplit model:
// samples, rate term and reported bits alike.
TEST_F(SplitTrainTest, ACdlSplitSendsIndicesAndTrainsAsTheUnsplitModel) {
  Config whole = splitConfig("cdl-whole", "mlp", 1, {}, 1);
  whole.cdl.mode = "cdl";
  whole.cdl.lambdaW = 0.02;
  whole.cdl.lambdaA = 0.05;
  whole.cdl.actBits = 4;
  run(whole, 2);
  Config split = whole;
  split.name = "cdl-split";
  split.model.split.stages = 2;
  split.model.split.cutAfter = {"fc2"};
  split.model.split.activationCodec = "auto";
  runSplit(split, 4);
  expectSameCurves("cdl-whole", "cdl-split", 2e-4);
  const auto s = summary("cdl-split");
  // 4-bit indices rANS-coded forward, fp32 backward: well under fp32 both ways.
  EXPECT_LT(s["activation_wire_bytes"].get<double>(),
            0.6 * s["activation_fp32_bytes"].get<double>());
  const auto steps = records("cdl-split", "step");
  // At most 4 bits of entropy an index, plus the rANS table of a 512-element message.
  EXPECT_LT(steps.back()["cut_forward_bits"].get<double>(), 6.0);
  EXPECT_GT(steps.back()["cut_backward_bits"].get<double>(), 32.0);
  const auto ea = records("cdl-whole", "epoch"), eb = records("cdl-split", "epoch");
  const double coded = ea.back()["cdl"]["model_coded_bytes"].get<double>();
  EXPECT_NEAR(eb.back()["cdl"]["model_coded_bytes"].get<double>(), coded, 0.01 * coded);
  EXPECT_EQ(eb.back()["cdl"]["weights"].size(), 3u);
}

// Coded activations and gradients cross in fewer bytes and the model still learns.
TEST_F(SplitTrainTest, CodedCutsSendFewerBytesAndStillLearn) {
  Config c = splitConfig("coded", "cnn", 2, {"conv2"}, 2);
  c.model.split.activationCodec = "fp16";
  c.model.split.gradientCodec = "qsgd:bits=8,entropy=rans";
  const auto results = runSplit(c, 2);
  const auto s = summary("coded");
  EXPECT_LT(s["activation_wire_bytes"].get<double>(),
            0.45 * s["activation_fp32_bytes"].get<double>());
  EXPECT_GT(s["test_accuracy"].get<double>(), 0.9);
  const auto steps = records("coded", "step");
  EXPECT_NEAR(steps.back()["cut_forward_bits"].get<double>(), 16.0, 0.5);
  EXPECT_LT(steps.back()["cut_backward_bits"].get<double>(), 9.0);
  // A split step is timed part by part as an unsplit one (Note [One training step]).
  for (const auto& step : steps) {
    ASSERT_TRUE(step.contains("ms")) << step.dump();
    const auto& ms = step["ms"];
    EXPECT_GT(ms["compute"].get<double>(), 0.0);
    EXPECT_LE(ms["data"].get<double>() + ms["compute"].get<double>() + ms["wait"].get<double>() +
                  ms["optimizer"].get<double>(),
              ms["step"].get<double>() * (1 + 1e-9));
  }
}

TEST_F(SplitTrainTest, AnInterruptedSplitRunResumesExactly) {
  Config c = splitConfig("resume", "mlp", 2, {"fc1"}, 2);
  c.comm.codec = "qsgd:bits=4";
  c.model.split.gradientCodec = "qsgd:bits=4,entropy=rans";
  c.model.split.activationCodec = "fp16";
  c.checkpoint.everySteps = 5;
  runSplit(c, 4);
  const auto whole = records("resume", "step");
  const auto fullSummary = summary("resume");
  c.name = "resume2";
  TrainOptions stop;
  stop.stopAfterSteps = 7;  // inside a metrics window: the checkpoint carries it
  runSplit(c, 4, stop);
  TrainOptions resume;
  resume.resume = true;
  runSplit(c, 4, resume);
  const auto resumed = records("resume2", "step");
  ASSERT_EQ(resumed.size(), whole.size());
  for (size_t i = 0; i < whole.size(); ++i) {
    EXPECT_EQ(resumed[i]["train_loss"], whole[i]["train_loss"]) << i;
    EXPECT_EQ(resumed[i]["cut_forward_bytes"], whole[i]["cut_forward_bytes"]) << i;
  }
  const auto s = summary("resume2");
  EXPECT_EQ(s["test_loss"], fullSummary["test_loss"]);
  EXPECT_EQ(s["activation_wire_bytes"], fullSummary["activation_wire_bytes"]);
}

// Each stage plans its own layers' rates within its data-parallel group.
TEST_F(SplitTrainTest, AdaptiveRatesPlanEachStagesLayers) {
  Config c = splitConfig("adaptive", "mlp", 2, {"fc1"}, 2);
  c.comm.codec = "qsgd:bits=4";
  c.comm.adaptive.enabled = true;
  c.comm.adaptive.warmupSteps = 4;
  c.comm.adaptive.everySteps = 8;
  c.comm.adaptive.window = 2;
  const auto results = runSplit(c, 4);
  const auto plans = records("adaptive", "plan");
  ASSERT_FALSE(plans.empty());
  for (const auto& l : plans.front()["layers"]) EXPECT_EQ(l["name"], "fc1.weight");  // stage 0's
  EXPECT_GT(summary("adaptive")["test_accuracy"].get<double>(), 0.5);
}

TEST_F(SplitTrainTest, ConfigsThatDifferAcrossRanksNameTheStageAndKey) {
  const Config c = splitConfig("differ", "mlp", 2, {"fc1"}, 2);
  std::vector<Config> perRank(4, c);
  perRank[3].model.split.microBatches = 4;
  try {
    runGrid(perRank, 2);
    ADD_FAILURE() << "ranks with different configs trained";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("key model.split.micro_batches (2 vs 4) between rank 0 "
                                    "(stage 0) and rank 3 (stage 1)"));
  }
}

}  // namespace
}  // namespace cdl::core
