#include "core/config/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "kernels/base/error.h"
#include "tests/support/temp_dir.h"

namespace cdl::core {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::HasSubstr;

// Every key set to a value other than its default.
constexpr const char* kFullYaml = R"(name: full
seed: 7
data:
  dataset: synthetic
  path: /tmp/data
  text_path: /tmp/text
  context: 16
  synthetic_train: 100
  synthetic_test: 10
model:
  name: resnet20
  torchscript: /tmp/model.pt
  hidden: 64
  width: 8
  layers: 3
  heads: 2
  split:
    stages: 3
    cut_after: [layer1, layer2]
    micro_batches: 4
    activation_codec: "qsgd:bits=6"
    gradient_codec: fp16
cdl:
  mode: rcdl
  weight_bits: 3
  act_bits: 4
  first_last_bits: 7
  lambda_w: 0.5
  lambda_a: 0.25
  kappa: 3.5
  kappa_final: 12
  train_kappa: true
  window: 3
  rate_warmup_steps: 50
  diagnostics: true
train:
  epochs: 2
  batch_size: 32
  max_steps: 10
  optimizer: adam
  lr: 0.001
  momentum: 0.5
  nesterov: true
  weight_decay: 0
  schedule: step
  warmup_steps: 5
  step_every: 100
  step_gamma: 0.5
  threads: 2
  skip_nonfinite: true
  device: cpu
comm:
  codec: fp16
  error_feedback: false
  bucket_mb: 4.5
  first_bucket_mb: 0.25
  min_compress_numel: 0
  overrides:
    - {pattern: "fc*", codec: none}
    - pattern: conv1.weight
      codec: qsgd:bits=8
  adaptive:
    enabled: true
    budget: time
    overlap: 0.5
    link_mbps: 25
    alpha: 0.8
    warmup_steps: 7
    every_steps: 9
    window: 4
    buckets: 500
    candidates: ["qsgd:bits=3", "powersgd:rank=2"]
    families: [qsgd, topk]
checkpoint:
  every_steps: 20
  every_epoch: false
  keep: 1
log:
  runs_dir: /tmp/runs
  every_steps: 5
slurm:
  nodes: 2
  tasks_per_node: 4
  time: "02:30:00"
  partition: gpu
  account: ml
  job_name: cnn
  output: runs/%x-%j.out
)";

using test::errorOf;

std::string errorOfYaml(const std::string& yaml, const std::vector<std::string>& sets = {}) {
  return errorOf([&] { parseConfig(yaml, "test.yaml", sets); });
}

// The leaves of a YAML map as dotted keys, for comparing configs key by key.
void leaves(const YAML::Node& n, const std::string& prefix,
            std::map<std::string, std::string>& out) {
  if (n.IsMap()) {
    for (const auto& kv : n) {
      leaves(kv.second, prefix.empty() ? kv.first.Scalar() : prefix + "." + kv.first.Scalar(), out);
    }
  } else {
    YAML::Emitter e;
    e << n;
    out[prefix] = e.c_str();
  }
}

class ConfigFileTest : public ::testing::Test {
 protected:
  std::string write(const std::string& name, const std::string& text) {
    const fs::path p = dir_ / name;
    std::ofstream(p) << text;
    return p.string();
  }

  test::TempDir tmp_;
  fs::path dir_ = tmp_.path();
};

TEST_F(ConfigFileTest, EmptyFileMeansAllDefaults) {
  EXPECT_EQ(loadConfig(write("empty.yaml", "")), Config{});
  EXPECT_EQ(loadConfig(write("comments.yaml", "# nothing set yet\n")), Config{});
  // A section whose keys are all commented out is empty, not an error.
  EXPECT_EQ(parseConfig("train:\n  # lr: 0.1\n", "test.yaml"), Config{});
}

TEST_F(ConfigFileTest, FullFileSetsEveryKey) {
  const Config c = loadConfig(write("full.yaml", kFullYaml));
  EXPECT_EQ(c.name, "full");
  EXPECT_EQ(c.seed, 7u);
  EXPECT_EQ(c.data.dataset, "synthetic");
  EXPECT_EQ(c.data.path, "/tmp/data");
  EXPECT_EQ(c.data.syntheticTrain, 100);
  EXPECT_EQ(c.data.syntheticTest, 10);
  EXPECT_EQ(c.data.textPath, "/tmp/text");
  EXPECT_EQ(c.data.context, 16);
  EXPECT_EQ(c.model.name, "resnet20");
  EXPECT_EQ(c.model.torchscript, "/tmp/model.pt");  // loads key by key; checkConfig refuses it
  EXPECT_EQ(c.model.hidden, 64);
  EXPECT_EQ(c.model.width, 8);
  EXPECT_EQ(c.model.layers, 3);
  EXPECT_EQ(c.model.heads, 2);
  EXPECT_EQ(c.model.split.stages, 3);
  EXPECT_EQ(c.model.split.cutAfter, (std::vector<std::string>{"layer1", "layer2"}));
  EXPECT_EQ(c.model.split.microBatches, 4);
  EXPECT_EQ(c.model.split.activationCodec, "qsgd:bits=6");
  EXPECT_EQ(c.model.split.gradientCodec, "fp16");
  EXPECT_EQ(c.cdl.mode, "rcdl");
  EXPECT_EQ(c.cdl.weightBits, 3);
  EXPECT_EQ(c.cdl.actBits, 4);
  EXPECT_EQ(c.cdl.firstLastBits, 7);
  EXPECT_EQ(c.cdl.lambdaW, 0.5);
  EXPECT_EQ(c.cdl.lambdaA, 0.25);
  EXPECT_EQ(c.cdl.kappa, 3.5);
  EXPECT_TRUE(c.cdl.trainKappa);
  EXPECT_EQ(c.cdl.window, 3);
  EXPECT_EQ(c.cdl.rateWarmupSteps, 50);
  EXPECT_TRUE(c.cdl.diagnostics);
  EXPECT_EQ(c.train.epochs, 2);
  EXPECT_EQ(c.train.batchSize, 32);
  EXPECT_EQ(c.train.maxSteps, 10);
  EXPECT_EQ(c.train.optimizer, "adam");
  EXPECT_EQ(c.train.lr, 0.001);
  EXPECT_EQ(c.train.momentum, 0.5);
  EXPECT_TRUE(c.train.nesterov);
  EXPECT_EQ(c.train.weightDecay, 0.0);
  EXPECT_EQ(c.train.schedule, "step");
  EXPECT_EQ(c.train.warmupSteps, 5);
  EXPECT_EQ(c.train.stepEvery, 100);
  EXPECT_EQ(c.train.stepGamma, 0.5);
  EXPECT_EQ(c.train.threads, 2);
  EXPECT_TRUE(c.train.skipNonfinite);
  EXPECT_EQ(c.comm.codec, "fp16");
  EXPECT_FALSE(c.comm.errorFeedback);
  EXPECT_EQ(c.comm.bucketMb, 4.5);
  EXPECT_EQ(c.comm.firstBucketMb, 0.25);
  EXPECT_EQ(c.comm.minCompressNumel, 0);
  EXPECT_EQ(c.comm.overrides,
            (std::vector<CodecOverride>{{"fc*", "none"}, {"conv1.weight", "qsgd:bits=8"}}));
  EXPECT_TRUE(c.comm.adaptive.enabled);
  EXPECT_EQ(c.comm.adaptive.alpha, 0.8);
  EXPECT_EQ(c.comm.adaptive.budget, "time");
  EXPECT_EQ(c.comm.adaptive.overlap, 0.5);
  EXPECT_EQ(c.comm.adaptive.linkMbps, 25.0);
  EXPECT_EQ(c.comm.adaptive.warmupSteps, 7);
  EXPECT_EQ(c.comm.adaptive.everySteps, 9);
  EXPECT_EQ(c.comm.adaptive.window, 4);
  EXPECT_EQ(c.comm.adaptive.buckets, 500);
  EXPECT_EQ(c.comm.adaptive.candidates,
            (std::vector<std::string>{"qsgd:bits=3", "powersgd:rank=2"}));
  EXPECT_EQ(c.comm.adaptive.families, (std::vector<std::string>{"qsgd", "topk"}));
  EXPECT_EQ(c.checkpoint.everySteps, 20);
  EXPECT_FALSE(c.checkpoint.everyEpoch);
  EXPECT_EQ(c.checkpoint.keep, 1);
  EXPECT_EQ(c.log.runsDir, "/tmp/runs");
  EXPECT_EQ(c.log.everySteps, 5);

  // Every key toYaml writes (the whole schema) differs from its default: the file above covers
  // the schema, and each key reaches its own field.
  std::map<std::string, std::string> full, defaults;
  leaves(YAML::Load(toYaml(c)), "", full);
  leaves(YAML::Load(toYaml(Config{})), "", defaults);
  ASSERT_EQ(full.size(), defaults.size());
  for (const auto& [key, value] : defaults) {
    ASSERT_TRUE(full.count(key)) << key;
    EXPECT_NE(full[key], value) << key << " is not set by the full file";
  }
}

TEST(ConfigTest, DescribeDifferenceNamesTheFirstDifferingKeyWithBothValues) {
  const Config a = parseConfig(kFullYaml, "a.yaml");
  EXPECT_EQ(describeDifference(a, a), "");
  Config b = a;
  b.model.split.cutAfter = {"layer2", "layer3"};
  b.train.lr = 0.5;
  EXPECT_EQ(describeDifference(a, b),
            "model.split.cut_after ([layer1, layer2] vs [layer2, layer3])");
  b.model.split = a.model.split;
  EXPECT_EQ(describeDifference(a, b), "train.lr (0.001 vs 0.5)");
}

TEST(ConfigTest, ToYamlReadsBackToTheSameConfigAndHash) {
  Config c = parseConfig(kFullYaml, "test.yaml");
  // Values that need every digit, or quoting, to survive the trip.
  c.seed = std::numeric_limits<uint64_t>::max();
  c.train.lr = 0.1 + 0.2;
  c.comm.bucketMb = 1.0 / 3.0;
  c.comm.firstBucketMb = 1e-300;
  c.train.weightDecay = 25.0;
  c.data.path = "";
  c.log.runsDir = "null";
  c.comm.codec = "topk:density=0.25";
  c.comm.overrides = {{"~", "none"}, {"a: b", "fp16"}, {"*x #y", "bf16"}};
  c.comm.adaptive.enabled = true;
  c.comm.adaptive.alpha = 0.7;
  c.comm.adaptive.families = {"qsgd", "powersgd"};
  c.comm.adaptive.candidates = {"qsgd:bits=3", "powersgd:rank=2"};
  const std::string text = toYaml(c);
  const Config back = parseConfig(text, "resolved.yaml");
  EXPECT_EQ(back, c) << text;
  EXPECT_EQ(toYaml(back), text);
  EXPECT_EQ(configHash(back), configHash(c));

  EXPECT_EQ(parseConfig(toYaml(Config{}), "resolved.yaml"), Config{});
}

TEST(ConfigTest, HashChangesWhenAnyValueChanges) {
  const Config base;
  EXPECT_EQ(configHash(base), configHash(Config{}));
  std::vector<std::function<void(Config&)>> edits = {
      [](Config& c) { c.train.lr = 0.0500001; },
      [](Config& c) { c.seed = 43; },
      [](Config& c) { c.comm.errorFeedback = false; },
      [](Config& c) { c.comm.codec = "fp16"; },
      [](Config& c) {
        c.comm.overrides.push_back({"fc*", "none"});
      },
      [](Config& c) { c.log.everySteps = 51; },
      [](Config& c) { c.comm.adaptive.families = {"topk"}; },
      [](Config& c) { c.comm.adaptive.alpha = 2; },
  };
  for (size_t i = 0; i < edits.size(); ++i) {
    Config c;
    edits[i](c);
    EXPECT_NE(c, base) << i;
    EXPECT_NE(configHash(c), configHash(base)) << i;
  }
}

// The slurm section says where a job runs, not what it computes: a resubmission with more time or
// another partition must still resume the run's checkpoints.
TEST(Config, BadCdlSettingsNameTheKey) {
  EXPECT_THAT(errorOfYaml("cdl:\n  weight_bits: 9\n"), HasSubstr("cdl.weight_bits"));
  EXPECT_THAT(errorOfYaml("cdl:\n  act_bits: 0\n"), HasSubstr("cdl.act_bits"));
  EXPECT_THAT(errorOfYaml("cdl:\n  kappa: 0\n"), HasSubstr("cdl.kappa"));
  EXPECT_THAT(errorOfYaml("cdl:\n  kappa: -1\n"), HasSubstr("cdl.kappa"));
  EXPECT_THAT(errorOfYaml("cdl:\n  lambda_w: -0.1\n"), HasSubstr("cdl.lambda_w"));
  EXPECT_THAT(errorOfYaml("cdl:\n  lambda_a: -1\n"), HasSubstr("cdl.lambda_a"));
  EXPECT_THAT(errorOfYaml("cdl:\n  window: 0\n"), HasSubstr("cdl.window"));
  EXPECT_THAT(errorOfYaml("cdl:\n  mode: pact\n"), HasSubstr("cdl.mode"));
  EXPECT_NO_THROW(parseConfig("cdl:\n  mode: lsq\n", "test.yaml"));
  EXPECT_NO_THROW(parseConfig("cdl:\n  mode: rcdl\n  lambda_w: 2\n", "test.yaml"));
}

TEST(ConfigTest, HashIgnoresTheSlurmSection) {
  const Config base;
  Config c;
  c.slurm.time = "2-00:00:00";
  c.slurm.partition = "gpu";
  c.slurm.nodes = 4;
  EXPECT_NE(c, base);
  EXPECT_EQ(configHash(c), configHash(base));
  EXPECT_EQ(parseConfig(toYaml(c), "resolved.yaml"), c);
}

TEST_F(ConfigFileTest, UnknownKeyNamesTheDottedKeyAndTheFile) {
  const std::string path = write("typo.yaml", "train:\n  epochs: 3\n  lrr: 0.1\n");
  EXPECT_THAT(errorOf([&] { loadConfig(path); }),
              AllOf(HasSubstr(path + ":3"), HasSubstr("unknown key 'train.lrr'"), HasSubstr("lr")));
  EXPECT_THAT(errorOfYaml("optimiser: sgd\n"), HasSubstr("unknown key 'optimiser'"));
  EXPECT_THAT(errorOfYaml("trian:\n  lr: 0.1\n"),
              AllOf(HasSubstr("unknown key 'trian'"), HasSubstr("train")));
  EXPECT_THAT(errorOfYaml("train:\n  lr:\n    value: 1\n"), HasSubstr("train.lr"));
}

TEST(ConfigTest, WrongTypeNamesTheKeyTheExpectedTypeAndTheValue) {
  EXPECT_THAT(errorOfYaml("train:\n  epochs: five\n"),
              AllOf(HasSubstr("test.yaml:2"), HasSubstr("train.epochs"), HasSubstr("an integer"),
                    HasSubstr("'five'")));
  EXPECT_THAT(errorOfYaml("train:\n  epochs: 1.5\n"),
              AllOf(HasSubstr("train.epochs"), HasSubstr("an integer"), HasSubstr("1.5")));
  EXPECT_THAT(errorOfYaml("train:\n  epochs: \"5\"\n"),
              AllOf(HasSubstr("train.epochs"), HasSubstr("quoted string")));
  EXPECT_THAT(errorOfYaml("train:\n  lr: {value: 1}\n"),
              AllOf(HasSubstr("train.lr"), HasSubstr("a number"), HasSubstr("a map")));
  EXPECT_THAT(errorOfYaml("train:\n  lr:\n"), AllOf(HasSubstr("train.lr"), HasSubstr("null")));
  EXPECT_THAT(errorOfYaml("train:\n  nesterov: yes\n"),
              AllOf(HasSubstr("train.nesterov"), HasSubstr("bool")));
  EXPECT_THAT(errorOfYaml("seed: -1\n"), AllOf(HasSubstr("seed"), HasSubstr("non-negative")));
  EXPECT_THAT(errorOfYaml("name: [a, b]\n"), AllOf(HasSubstr("name"), HasSubstr("a string")));
  EXPECT_THAT(errorOfYaml("train: 5\n"), AllOf(HasSubstr("train"), HasSubstr("map")));
  EXPECT_THAT(errorOfYaml("- a\n- b\n"), HasSubstr("the document must be a map"));

  // Integral floats are integers; integers are numbers.
  const Config c = parseConfig("train:\n  max_steps: 1e4\n  epochs: 2.0\n  lr: 1\n", "test.yaml");
  EXPECT_EQ(c.train.maxSteps, 10000);
  EXPECT_EQ(c.train.epochs, 2);
  EXPECT_EQ(c.train.lr, 1.0);
}

TEST(ConfigTest, OutOfRangeNamesTheKeyAndTheBound) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"train:\n  epochs: 0\n", "train.epochs must be in [1, 1000000]"},
      {"train:\n  batch_size: -4\n", "train.batch_size must be in [1, 1000000]"},
      {"train:\n  max_steps: -1\n", "train.max_steps must be in [0, 1000000000000]"},
      {"train:\n  lr: 0\n", "train.lr must be > 0"},
      {"train:\n  momentum: 1\n", "train.momentum must be in [0, 1)"},
      {"train:\n  momentum: -0.1\n", "train.momentum must be in [0, 1)"},
      {"train:\n  weight_decay: -1e-4\n", "train.weight_decay must be >= 0"},
      {"train:\n  warmup_steps: -1\n", "train.warmup_steps must be in [0, 1000000000000]"},
      {"train:\n  step_every: 0\n", "train.step_every must be in [1, 1000000000000]"},
      {"train:\n  step_gamma: 0\n", "train.step_gamma must be in (0, 1]"},
      {"train:\n  step_gamma: 1.5\n", "train.step_gamma must be in (0, 1]"},
      {"train:\n  threads: -1\n", "train.threads must be in [0, 4096]"},
      {"comm:\n  bucket_mb: 0\n", "comm.bucket_mb must be in (0, 1024]"},
      {"comm:\n  first_bucket_mb: -1\n", "comm.first_bucket_mb must be in (0, 1024]"},
      {"comm:\n  min_compress_numel: -1\n",
       "comm.min_compress_numel must be in [0, 1000000000000]"},
      {"checkpoint:\n  keep: 0\n", "checkpoint.keep must be in [1, 1000000]"},
      {"checkpoint:\n  every_steps: -1\n", "checkpoint.every_steps must be in [0, 1000000000000]"},
      {"log:\n  every_steps: 0\n", "log.every_steps must be in [1, 1000000000000]"},
      {"data:\n  synthetic_train: 0\n", "data.synthetic_train must be in [1, 1000000]"},
      {"data:\n  synthetic_test: 0\n", "data.synthetic_test must be in [1, 1000000]"},
      // Upper bounds keep the arithmetic in range: no step count overflows, no size wraps.
      {"train:\n  epochs: 1000000000000000000\n", "train.epochs must be in [1, 1000000]"},
      {"comm:\n  bucket_mb: 1.0e+15\n", "comm.bucket_mb must be in (0, 1024]"},
      {"model:\n  width: 100000\n", "model.width must be in [1, 1024]"},
      {"train:\n  threads: 100000\n", "train.threads must be in [0, 4096]"},
      {"data:\n  synthetic_train: 10000000000\n", "data.synthetic_train must be in [1, 1000000]"},
  };
  for (const auto& [yaml, message] : cases) {
    EXPECT_THAT(errorOfYaml(yaml), AllOf(HasSubstr("test.yaml:2"), HasSubstr(message))) << yaml;
  }
  // The closed ends are allowed.
  const Config c = parseConfig("train:\n  momentum: 0\n  step_gamma: 1\n", "test.yaml");
  EXPECT_EQ(c.train.momentum, 0.0);
  EXPECT_EQ(c.train.stepGamma, 1.0);
}

TEST(ConfigTest, BadChoiceListsTheAllowedValues) {
  EXPECT_THAT(errorOfYaml("model:\n  name: vgg\n"),
              AllOf(HasSubstr("model.name"), HasSubstr("mlp, cnn, resnet20"), HasSubstr("vgg")));
  EXPECT_THAT(errorOfYaml("data:\n  dataset: mnist\n"),
              AllOf(HasSubstr("data.dataset"), HasSubstr("fashion-mnist, synthetic")));
  EXPECT_THAT(errorOfYaml("train:\n  optimizer: lamb\n"), HasSubstr("sgd, adam"));
  EXPECT_THAT(errorOfYaml("train:\n  schedule: linear\n"), HasSubstr("constant, cosine, step"));
}

TEST(ConfigTest, RunNameMustBeOneFolderName) {
  for (const char* bad : {"\"\"", "a/b", "/abs", ".", ".."}) {
    EXPECT_THAT(errorOfYaml(std::string("name: ") + bad + "\n"), HasSubstr("name")) << bad;
  }
  EXPECT_EQ(parseConfig("name: fmnist.v2\n", "test.yaml").name, "fmnist.v2");
}

TEST(ConfigTest, DuplicateKeyIsAnError) {
  EXPECT_THAT(errorOfYaml("train:\n  lr: 0.1\n  lr: 0.2\n"),
              AllOf(HasSubstr("test.yaml:3"), HasSubstr("train.lr is set twice")));
}

// config_fuzz: a document that holds itself through an alias under an empty key recursed until
// the stack overflowed. Empty keys are refused; self-references under real names end at the first
// key that is not in the schema.
TEST(ConfigTest, EmptyKeysAndSelfReferencingAliasesAreErrors) {
  EXPECT_THAT(errorOfYaml("&a\n ! :\n ! :\n !t :\n ! :\n ! :\n ! : *a\n"),
              AllOf(HasSubstr("test.yaml:2"), HasSubstr("got an empty key")));
  EXPECT_THAT(errorOfYaml("train:\n  \"\": 1\n"), HasSubstr("empty key under train"));
  EXPECT_THAT(errorOfYaml("train: &t\n  train: *t\n"), HasSubstr("unknown key 'train.train'"));
  EXPECT_THAT(errorOfYaml("comm: &c\n  adaptive: *c\n"),
              HasSubstr("unknown key 'comm.adaptive.adaptive'"));
}

TEST_F(ConfigFileTest, SetOverridesApplyInOrderOverTheFileWithTheirTypes) {
  const std::string path = write("base.yaml", "train:\n  lr: 0.5\n  epochs: 9\n");
  const Config c =
      loadConfig(path, {"train.lr=0.1", "train.lr=0.2", "train.epochs=3", "train.nesterov=true",
                        "name='007'", "comm.codec=qsgd:bits=4,bucket=1024", "train = {threads: 4}",
                        "seed=18446744073709551615"});
  EXPECT_EQ(c.train.lr, 0.2);
  EXPECT_EQ(c.train.epochs, 3);
  EXPECT_TRUE(c.train.nesterov);
  EXPECT_EQ(c.name, "007");
  EXPECT_EQ(c.comm.codec, "qsgd:bits=4,bucket=1024");
  EXPECT_EQ(c.train.threads, 4);
  EXPECT_EQ(c.seed, std::numeric_limits<uint64_t>::max());
}

TEST(ConfigTest, MalformedSetNamesTheOverride) {
  EXPECT_THAT(errorOfYaml("", {"train.lr"}),
              AllOf(HasSubstr("--set 'train.lr'"), HasSubstr("key=value")));
  EXPECT_THAT(errorOfYaml("", {"=0.1"}), HasSubstr("--set '=0.1'"));
  EXPECT_THAT(errorOfYaml("", {"train.lrr=0.1"}),
              AllOf(HasSubstr("--set 'train.lrr=0.1'"), HasSubstr("unknown key 'train.lrr'")));
  EXPECT_THAT(errorOfYaml("", {"train.lr=[0.1"}), HasSubstr("--set 'train.lr=[0.1'"));
  EXPECT_THAT(errorOfYaml("", {"train.lr=fast"}),
              AllOf(HasSubstr("--set 'train.lr=fast'"), HasSubstr("a number")));
  EXPECT_THAT(errorOfYaml("", {"train.lr="}), HasSubstr("--set 'train.lr='"));
  EXPECT_THAT(errorOfYaml("", {"train.epochs=0"}),
              AllOf(HasSubstr("--set 'train.epochs=0'"), HasSubstr("in [1, 1000000]")));
}

// comm.adaptive is a section inside comm: nested in YAML, in --set paths and in the written config.
TEST(ConfigTest, AdaptiveRatesAreASubsectionOfComm) {
  const Config c = parseConfig(
      "comm:\n  codec: qsgd\n  adaptive:\n    enabled: true\n    families: [qsgd, topk]\n",
      "test.yaml", {"comm.adaptive.alpha=0.5", "comm.adaptive.candidates=[qsgd:bits=2]"});
  EXPECT_TRUE(c.comm.adaptive.enabled);
  EXPECT_EQ(c.comm.adaptive.families, (std::vector<std::string>{"qsgd", "topk"}));
  EXPECT_EQ(c.comm.adaptive.candidates, (std::vector<std::string>{"qsgd:bits=2"}));
  EXPECT_EQ(c.comm.adaptive.alpha, 0.5);
  const std::string text = toYaml(c);
  EXPECT_THAT(text, HasSubstr("\n  adaptive:\n    enabled: true\n"));
  EXPECT_EQ(parseConfig(text, "resolved.yaml"), c);
  EXPECT_THAT(errorOfYaml("comm:\n  adaptive:\n    alpha: 0\n"),
              HasSubstr("comm.adaptive.alpha must be in (0, 1000000], got 0"));
  EXPECT_THAT(errorOfYaml("comm:\n  adaptive:\n    families: qsgd\n"),
              HasSubstr("comm.adaptive.families must be a list of strings"));
  EXPECT_THAT(errorOfYaml("comm:\n  adaptive:\n    alfa: 1\n"),
              HasSubstr("unknown key 'comm.adaptive.alfa'"));
  EXPECT_THAT(errorOfYaml("comm:\n  adaptiv: {}\n"), HasSubstr("adaptive"));
}

TEST(ConfigTest, OverridesAreAListOfPatternCodecMaps) {
  const std::vector<CodecOverride> want = {{"fc*", "none"}, {"*.bias", "fp16"}};
  EXPECT_EQ(parseConfig("comm:\n  overrides:\n    - pattern: fc*\n      codec: none\n"
                        "    - {pattern: '*.bias', codec: fp16}\n",
                        "test.yaml")
                .comm.overrides,
            want);
  // --set replaces the whole list.
  EXPECT_EQ(parseConfig("comm:\n  overrides: [{pattern: x, codec: bf16}]\n", "test.yaml",
                        {"comm.overrides=[{pattern: 'fc*', codec: none}, "
                         "{pattern: '*.bias', codec: fp16}]"})
                .comm.overrides,
            want);
  EXPECT_TRUE(parseConfig("", "test.yaml", {"comm.overrides=[]"}).comm.overrides.empty());

  EXPECT_THAT(errorOfYaml("comm:\n  overrides:\n    - pattern: fc*\n"),
              AllOf(HasSubstr("comm.overrides[0]"), HasSubstr("pattern and codec")));
  EXPECT_THAT(errorOfYaml("comm:\n  overrides:\n    - {pattern: a, codec: b, bits: 4}\n"),
              HasSubstr("unknown key 'comm.overrides[0].bits'"));
  EXPECT_THAT(errorOfYaml("comm:\n  overrides: [fc*]\n"), HasSubstr("comm.overrides[0]"));
  EXPECT_THAT(errorOfYaml("comm:\n  overrides: {pattern: a, codec: b}\n"),
              AllOf(HasSubstr("comm.overrides"), HasSubstr("list")));
}

TEST(ConfigTest, CodecSpecsAreCheckedWhenTheConfigLoads) {
  // Every spec key goes through the codec layer's parser, line numbers included.
  EXPECT_THAT(errorOfYaml("comm:\n  codec: qsgd:bits=40\n"),
              AllOf(HasSubstr("test.yaml:2"), HasSubstr("comm.codec"), HasSubstr("bits")));
  EXPECT_THAT(errorOfYaml("comm:\n  codec: zip\n"), HasSubstr("unknown codec 'zip'"));
  EXPECT_THAT(errorOfYaml("", {"comm.codec=powersgd:rank=0"}),
              AllOf(HasSubstr("comm.codec"), HasSubstr("rank")));
  EXPECT_THAT(errorOfYaml("comm:\n  overrides: [{pattern: 'fc*', codec: 'topk:density=2'}]\n"),
              AllOf(HasSubstr("comm.overrides[0].codec"), HasSubstr("density")));
  EXPECT_THAT(
      errorOfYaml("comm:\n  adaptive:\n    candidates: [none, 'qsgd:bitz=4']\n"),
      AllOf(HasSubstr("test.yaml:3"), HasSubstr("comm.adaptive.candidates[1]"), HasSubstr("bitz")));
  EXPECT_THAT(errorOfYaml("model:\n  split:\n    activation_codec: fp8\n"),
              AllOf(HasSubstr("model.split.activation_codec"), HasSubstr("fp8")));
  EXPECT_THAT(errorOfYaml("model:\n  split:\n    gradient_codec: cdl\n"),
              AllOf(HasSubstr("model.split.gradient_codec"), HasSubstr("for activations")));
  EXPECT_THAT(errorOfYaml("model:\n  split:\n    gradient_codec: 'qsgd:bits=8,entropy=zstd'\n"),
              HasSubstr("model.split.gradient_codec"));
  // What the codec layer takes loads.
  const Config c = parseConfig(
      "comm:\n  codec: powersgd:rank=2\n  adaptive:\n    candidates: [none, 'qsgd:bits=4']\n"
      "model:\n  split:\n    activation_codec: cdl\n    gradient_codec: fp16\n",
      "test.yaml");
  EXPECT_EQ(c.comm.codec, "powersgd:rank=2");
  EXPECT_EQ(c.model.split.activationCodec, "cdl");
  EXPECT_EQ(c.model.split.gradientCodec, "fp16");
}

TEST(ConfigTest, AdaptiveFamiliesAreCheckedWhenTheConfigLoads) {
  EXPECT_THAT(errorOfYaml("comm:\n  adaptive:\n    families: [qsgd, lowrank]\n"),
              AllOf(HasSubstr("test.yaml:3"), HasSubstr("comm.adaptive.families[1]"),
                    HasSubstr("qsgd, topk, powersgd"), HasSubstr("'lowrank'")));
  EXPECT_EQ(parseConfig("comm:\n  adaptive:\n    families: [topk, powersgd]\n", "test.yaml")
                .comm.adaptive.families,
            (std::vector<std::string>{"topk", "powersgd"}));
}

// A config built in code is checked as a loaded one is: the first bad key is named.
TEST(ConfigTest, CheckConfigChecksAConfigBuiltInCode) {
  checkConfig(Config{});  // the defaults satisfy every rule
  const auto errorOfChecking = [](const std::function<void(Config&)>& change) {
    Config bad;
    change(bad);
    return errorOf([&] { checkConfig(bad); });
  };
  EXPECT_THAT(errorOfChecking([](Config& b) { b.comm.codec = "qsgd:bits=40"; }),
              AllOf(HasSubstr("config: comm.codec"), HasSubstr("bits")));
  EXPECT_THAT(errorOfChecking([](Config& b) { b.model.split.gradientCodec = "auto"; }),
              AllOf(HasSubstr("model.split.gradient_codec"), HasSubstr("for activations")));
  EXPECT_THAT(errorOfChecking([](Config& b) {
                b.comm.overrides = {{"fc*", "topk:density=2"}};
              }),
              HasSubstr("comm.overrides[0].codec"));
  EXPECT_THAT(errorOfChecking([](Config& b) {
                b.comm.overrides = {{"", "fp16"}};
              }),
              HasSubstr("comm.overrides[0].pattern"));
  EXPECT_THAT(errorOfChecking([](Config& b) { b.train.epochs = -3; }),
              AllOf(HasSubstr("config: train.epochs must be"), HasSubstr("got -3")));
  EXPECT_THAT(
      errorOfChecking([](Config& b) { b.model.name = "vgg"; }),
      HasSubstr("model.name must be one of mlp, cnn, resnet20, charlm, torchscript, got 'vgg'"));
  EXPECT_THAT(errorOfChecking([](Config& b) { b.name = "../up"; }), HasSubstr("name"));
}

TEST_F(ConfigFileTest, YamlSyntaxErrorNamesTheFileAndLine) {
  const std::string path = write("broken.yaml", "train:\n  lr: [0.1\n  epochs: 3\n");
  EXPECT_THAT(errorOf([&] { loadConfig(path); }),
              AllOf(HasSubstr(path + ":"), HasSubstr("YAML syntax error")));
  EXPECT_THAT(errorOfYaml("name: a\n  bad: indent\n"), HasSubstr("test.yaml:2:"));
}

// yaml-cpp's LoadAll reads a stray ',' as empty documents without end; the config reader
// names it as a syntax error instead (found by config_fuzz).
TEST(ConfigTest, AStrayFlowEntryIsASyntaxErrorNotAnEndlessRead) {
  EXPECT_THAT(errorOfYaml(","), AllOf(HasSubstr("test.yaml:1:1"), HasSubstr("unexpected ','")));
  EXPECT_THAT(errorOfYaml(", Fashion-MNIST, MLP"), HasSubstr("YAML syntax error"));
  EXPECT_THAT(errorOfYaml("a: 1\n---\nb: 2\n"), HasSubstr("expected one YAML document"));
  EXPECT_EQ(parseConfig("", "test.yaml"), Config{});
  EXPECT_EQ(parseConfig("# only a comment\n", "test.yaml"), Config{});
}

// Strings become folder names, log lines and the run folder's YAML (found by config_fuzz: a
// name with raw bytes wrote a config.yaml that did not read back).
TEST(ConfigTest, StringsMustBeUtf8TextWithoutControlCharacters) {
  EXPECT_THAT(errorOfYaml("name: \"ml\\x01\"\n"), AllOf(HasSubstr("name"), HasSubstr("control")));
  EXPECT_THAT(errorOfYaml("name: ml\xf6\xff\n"),
              AllOf(HasSubstr("test.yaml:1"), HasSubstr("UTF-8")));
  EXPECT_THAT(errorOfYaml("data:\n  path: \"a\\tb\"\n"), HasSubstr("data.path"));
  EXPECT_THAT(errorOfYaml("name: \xc0\xaf\n"), HasSubstr("UTF-8"));      // overlong '/'
  EXPECT_THAT(errorOfYaml("name: \xed\xa0\x80\n"), HasSubstr("UTF-8"));  // a surrogate
  EXPECT_THAT(errorOfYaml("comm:\n  overrides: [{pattern: \"a\\x7f\", codec: none}]\n"),
              HasSubstr("comm.overrides[0].pattern"));
  EXPECT_THAT(errorOfYaml("comm:\n  adaptive:\n    families: [\"q\\x1b\"]\n"),
              HasSubstr("comm.adaptive.families[0]"));
  // What the run folder's YAML could not carry back: a C1 control, U+FFFF (read back as U+FFFD),
  // in a file or a --set (config_fuzz found the second).
  EXPECT_THAT(errorOfYaml("name: \"a\\x8f\"\n"), HasSubstr("control"));
  EXPECT_THAT(errorOfYaml("", {"slurm.output=s\xef\xbf\xbf"}), HasSubstr("slurm.output"));
  EXPECT_THAT(errorOfYaml("name: \xef\xbb\xbfx\n"), HasSubstr("name"));
  EXPECT_EQ(parseConfig("name: m\xc3\xa9lange-\xe2\x82\xac\n", "test.yaml").name,
            "m\xc3\xa9lange-\xe2\x82\xac");
}

TEST_F(ConfigFileTest, MissingOrUnreadableFileNamesThePath) {
  const std::string missing = (dir_ / "nope.yaml").string();
  EXPECT_THAT(errorOf([&] { loadConfig(missing); }),
              AllOf(HasSubstr("cannot open"), HasSubstr(missing)));
  EXPECT_THAT(errorOf([&] { loadConfig(dir_.string()); }), HasSubstr(dir_.string()));
}

TEST(ConfigTest, ATorchScriptFileAloneNamesTheModel) {
  const Config c = parseConfig("model:\n  torchscript: m.pt\n", "test.yaml");
  EXPECT_EQ(c.model.name, "torchscript");
  EXPECT_EQ(c.model.torchscript, "m.pt");
  EXPECT_EQ(parseConfig(toYaml(c), "resolved.yaml"), c);
  // An override that names the file of a config with a built-in model needs the name too.
  EXPECT_EQ(parseConfig("model:\n  name: cnn\n", "test.yaml",
                        {"model.name=torchscript", "model.torchscript=m.pt"})
                .model.name,
            "torchscript");
}

TEST(ConfigTest, LsqTakesNoRateTerm) {
  EXPECT_NO_THROW(checkConfig(parseConfig("cdl:\n  mode: lsq\n", "t.yaml")));
  EXPECT_THAT(errorOf([] { checkConfig(parseConfig("cdl:\n  mode: lsq\n  lambda_w: 2\n", "t")); }),
              HasSubstr("config key cdl.lambda_w: 2, but cdl.mode lsq has no rate term"));
  EXPECT_THAT(
      errorOf([] { checkConfig(parseConfig("cdl:\n  mode: lsq\n  lambda_a: 0.5\n", "t")); }),
      HasSubstr("config key cdl.lambda_a: 0.5, but cdl.mode lsq has no rate term"));
}

TEST(ConfigTest, AKappaScheduleIsNeitherTrainedNorLsq) {
  EXPECT_THAT(
      errorOf([] {
        checkConfig(parseConfig("cdl:\n  mode: cdl\n  kappa_final: 8\n  train_kappa: true\n", "t"));
      }),
      HasSubstr("config key cdl.kappa_final: 8, but cdl.train_kappa is on"));
  EXPECT_THAT(
      errorOf([] { checkConfig(parseConfig("cdl:\n  mode: lsq\n  kappa_final: 8\n", "t")); }),
      HasSubstr("config key cdl.kappa_final: 8, but cdl.mode lsq has no kappa"));
  EXPECT_THAT(errorOf([] { parseConfig("cdl:\n  mode: cdl\n  kappa_final: 30\n", "t"); }),
              HasSubstr("cdl.kappa_final"));
  EXPECT_NO_THROW(checkConfig(parseConfig("cdl:\n  mode: cdl\n  kappa_final: 8\n", "t")));
}

TEST(ConfigTest, TorchScriptKeysGoTogetherAndRefuseWhatTheModuleCannotDo) {
  EXPECT_THAT(
      errorOf([] { checkConfig(parseConfig("model:\n  name: torchscript\n", "test.yaml")); }),
      HasSubstr("model.torchscript: model torchscript needs the module's file"));
  EXPECT_THAT(errorOf([] {
                checkConfig(parseConfig("model:\n  name: mlp\n  torchscript: m.pt\n", "t.yaml"));
              }),
              HasSubstr("model.torchscript: set, but model.name is mlp"));
  EXPECT_THAT(errorOf([] {
                checkConfig(parseConfig("model:\n  torchscript: m.pt\ncdl:\n  mode: cdl\n", "t"));
              }),
              HasSubstr("config key cdl.mode: cdl needs a built-in model"));
  EXPECT_THAT(
      errorOf([] {
        checkConfig(parseConfig("model:\n  torchscript: m.pt\n  split:\n    stages: 2\n", "t"));
      }),
      HasSubstr("model.split.stages: 2 stages need a built-in model"));
  Config built;
  built.model.torchscript = "m.pt";  // a config built in code gets the same check
  EXPECT_THAT(errorOf([&] { checkConfig(built); }), HasSubstr("model.name is cnn"));
}

TEST(ConfigTest, TextGoesWithTheLanguageModelAndImagesWithTheOthers) {
  EXPECT_THAT(errorOf([] { checkConfig(parseConfig("data:\n  dataset: text\n", "t.yaml")); }),
              HasSubstr("model.name: cnn reads images; data.dataset text needs model charlm"));
  EXPECT_THAT(errorOf([] { checkConfig(parseConfig("model:\n  name: charlm\n", "t.yaml")); }),
              HasSubstr("data.dataset: fashion-mnist holds images; model charlm reads"));
  const std::string lm = "data:\n  dataset: text\nmodel:\n  name: charlm\n";
  EXPECT_NO_THROW(checkConfig(parseConfig(lm, "t.yaml")));
  EXPECT_THAT(errorOf([&] { checkConfig(parseConfig(lm, "t.yaml", {"model.heads=3"})); }),
              HasSubstr("model.heads: 3 heads do not divide model.width 16"));
  EXPECT_THAT(errorOf([&] { checkConfig(parseConfig(lm, "t.yaml", {"cdl.mode=rcdl"})); }),
              HasSubstr("cdl.mode: rcdl needs a model with CDL layers"));
  EXPECT_THAT(errorOf([&] { checkConfig(parseConfig(lm, "t.yaml", {"model.split.stages=2"})); }),
              HasSubstr("charlm ties its input and output embeddings"));
}

TEST(ConfigTest, ShippedConfigsValidateAndNameTheirRunFolder) {
  const fs::path configs = fs::path(__FILE__).parent_path() / ".." / ".." / ".." / "configs";
  int count = 0;
  for (const auto& entry : fs::directory_iterator(configs)) {
    if (entry.path().extension() != ".yaml") continue;
    SCOPED_TRACE(entry.path().string());
    Config c;
    ASSERT_NO_THROW(c = loadConfig(entry.path().string()));
    EXPECT_EQ(c.name, entry.path().stem().string());
    EXPECT_EQ(parseConfig(toYaml(c), "resolved.yaml"), c);
    EXPECT_NO_THROW(checkConfig(c));  // what loads passes the check of a built config
    ++count;
  }
  EXPECT_GE(count, 3);
}

}  // namespace
}  // namespace cdl::core
