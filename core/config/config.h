#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace cdl::core {

// Note [Experiment config]
// An experiment is one YAML file (configs/*.yaml) checked against a fixed schema (kSchema in
// config.cc): every key has a dotted path ("train.lr", "comm.adaptive.alpha"), a type (bool,
// int, float, string, a list of strings, or a list of {pattern, codec} overrides) and a default.
// Loading starts from the defaults, applies the file, then the command line's `--set path=value`
// overrides in order. An unknown key, a value of the wrong type or out of range, or a malformed
// override is a cdl::Error naming the key and the file (or "--set"). The resolved config (every
// key, defaults included) is written to the run folder as YAML and reads back to the same config;
// its hash ties checkpoints to the config.
//
// Every field below has exactly one key in kSchema; toYaml, operator== and the loader all walk
// that table, so a new field is added here (with its default) and there (with its rules).
struct CodecOverride {
  std::string pattern;  // glob over parameter names (fnmatch), e.g. "fc*.weight"
  std::string codec;    // codec spec, e.g. "none" or "qsgd:bits=8"
};

inline bool operator==(const CodecOverride& a, const CodecOverride& b) {
  return a.pattern == b.pattern && a.codec == b.codec;
}
inline bool operator!=(const CodecOverride& a, const CodecOverride& b) { return !(a == b); }

// A value of train.device (Note [Training device]).
struct DeviceSpec {
  enum Kind { kAuto, kCpu, kCuda };
  Kind kind = kAuto;
  int index = -1;  // cuda:N: N; cuda: -1 (the rank's local GPU)
};

// Parses "auto", "cpu", "cuda" or "cuda:N" (N a decimal below 1024); throws cdl::Error naming
// the value otherwise.
DeviceSpec parseDeviceSpec(const std::string& text);

struct Config {
  std::string name = "run";  // the run folder: <log.runs_dir>/<name>
  uint64_t seed = 42;

  struct Data {
    std::string dataset = "fashion-mnist";  // fashion-mnist | synthetic | text
    std::string path = "/usr/share/datasets/fashion-mnist";
    // text (Note [Text data]): the corpus folder and the tokens a model reads per example.
    std::string textPath = "/usr/share/games/fortunes";
    int64_t context = 64;
    int64_t syntheticTrain = 4096;  // synthetic: examples in the train and test splits
    int64_t syntheticTest = 1024;
  } data;

  struct Model {
    std::string name = "cnn";  // mlp | cnn | resnet20 | charlm | torchscript
    // torchscript: the file of a module saved with torch.jit.script(m).save(path) (Note
    // [TorchScript models]); a config that sets only this key names the model torchscript.
    std::string torchscript;
    int64_t hidden = 256;  // mlp: width of the hidden layers
    int64_t width = 16;    // cnn, resnet20: channels of the first stage; charlm: embedding
    int64_t layers = 2;    // charlm: attention blocks
    int64_t heads = 4;     // charlm: attention heads per block (they divide width)
    // A model split into pipeline stages (Note [Pipeline split]): -np = stages * data-parallel
    // degree; every stage holds and trains only its own layers.
    struct Split {
      int64_t stages = 1;
      std::vector<std::string> cutAfter;  // stages - 1 segment names, in model order
      int64_t microBatches = 1;           // each step's batch goes through in this many parts
      // Forward, what crosses a cut: "auto" (a CDL model's activation indices + rANS, fp16
      // otherwise), "cdl" (the indices; CDL models only) or a codec spec ("none", "fp16",
      // "qsgd:bits=8,entropy=rans", ...).
      std::string activationCodec = "auto";
      // Backward, the gradient of that activation: a codec spec.
      std::string gradientCodec = "qsgd:bits=8,bucket=1024,rounding=stochastic,entropy=rans";
    } split;
  } model;

  // Coded Deep Learning (Note [CDL quantizer]): quantized, entropy-constrained weights and
  // activations, trained with loss = cross-entropy + lambdaW * bits per weight + lambdaA * bits per
  // activation element (each the rate of the quantized tensors, weighted by their sizes).
  struct Cdl {
    std::string mode = "none";  // none | cdl | rcdl | lsq (LSQ's quantizer, a baseline)
    int64_t weightBits = 6;
    int64_t actBits = 6;
    int64_t firstLastBits = 8;  // the weights of the first and last layers
    double lambdaW = 0.0;
    double lambdaA = 0.0;
    double kappa = 2.0;  // alpha q^2: how sharply P(i | x) peaks
    // > 0: kappa grows geometrically from `kappa` at the first step to this at the last
    // (Note [Kappa schedule] in core/step/cdl_training.h); 0: kappa stays.
    double kappaFinal = 0.0;
    bool trainKappa = false;
    int64_t window = 5;           // levels in P's window
    int64_t rateWarmupSteps = 0;  // the rate terms ramp up linearly over these first steps
    bool diagnostics = false;     // Note [CDL diagnostics]: two more evaluations per epoch
  } cdl;

  struct Train {
    int64_t epochs = 5;
    int64_t batchSize = 64;         // per rank; the global batch is batchSize * ranks
    int64_t maxSteps = 0;           // > 0: stop after this many steps (short runs)
    std::string optimizer = "sgd";  // sgd | adam
    double lr = 0.05;
    double momentum = 0.9;
    bool nesterov = false;
    double weightDecay = 5e-4;
    std::string schedule = "cosine";  // constant | cosine | step
    int64_t warmupSteps = 0;
    int64_t stepEvery = 1000;  // step schedule: multiply lr by stepGamma every this many steps
    double stepGamma = 0.1;
    int64_t threads = 0;  // intra-op threads per rank; 0: cores / local ranks
    // A step whose gradients hold NaN or infinity on any rank: false, the run fails naming the
    // parameter and step; true, the update is skipped on every rank and counted (as a loss
    // scaler does).
    bool skipNonfinite = false;
    // Where the model trains (Note [Training device]): auto | cpu | cuda | cuda:N.
    std::string device = "auto";
  } train;

  struct Comm {
    std::string codec = "none";  // a scheme spec (comm/reduce/scheme.h): codec or powersgd:rank=R
    bool errorFeedback = true;
    double bucketMb = 25.0;
    double firstBucketMb = 1.0;
    int64_t minCompressNumel = 4096;
    std::vector<CodecOverride> overrides;  // first matching pattern wins over `codec`
    // Layerwise-adaptive rates, chosen the L-GreCo way (Note [Adaptive rates]).
    struct Adaptive {
      bool enabled = false;
      // error: L-GreCo's budget (alpha); time: the least error whose predicted exposed
      // communication stays within (1 - overlap) x the step's compute (Note [Time budget]).
      std::string budget = "error";
      double overlap = 1.0;       // in [0, 1]; 1: fully hidden
      double linkMbps = 0.0;      // time budget: > 0 assumes this link rate instead of measuring
      double alpha = 1.0;         // error budget: alpha times the uniform scheme's total error
      int64_t warmupSteps = 100;  // the first plan follows these steps
      int64_t everySteps = 200;   // then a new plan every this many steps
      int64_t window = 10;        // steps of compensated gradients each plan measures
      int64_t buckets = 10000;    // error discretization of the dynamic program
      // Scheme specs to choose among; empty: the grid of every family in `families`.
      std::vector<std::string> candidates;
      // qsgd | topk | powersgd; empty: the family of comm.codec.
      std::vector<std::string> families;
    } adaptive;
  } comm;

  struct Checkpoint {
    int64_t everySteps = 0;  // > 0: also every this many steps
    bool everyEpoch = true;
    int64_t keep = 3;  // newest checkpoints kept per rank
  } checkpoint;

  struct Log {
    std::string runsDir = "runs";
    int64_t everySteps = 50;  // progress line / metrics record period
  } log;

  // Where cdl-launch --slurm submits the job; its flags win over these. Not part of configHash:
  // a job resubmitted with more time or another partition resumes its checkpoints.
  struct Slurm {
    int64_t nodes = 1;
    int64_t tasksPerNode = 0;  // 0: ranks / nodes
    std::string time = "01:00:00";
    std::string partition;  // empty: the cluster's default
    std::string account;
    std::string jobName;  // empty: the config's name
    std::string output;   // sbatch --output pattern, e.g. runs/%x-%j.out; empty: sbatch's default
  } slurm;
};

// Field-wise equality over every key of the schema (doubles compare exactly).
bool operator==(const Config& a, const Config& b);
inline bool operator!=(const Config& a, const Config& b) { return !(a == b); }

// Loads path, applies the overrides ("train.lr=0.1"; the value is parsed as YAML, so a list or map
// is written in flow style and replaces the whole value) and validates.
Config loadConfig(const std::string& path, const std::vector<std::string>& overrides = {});
// The same from YAML text; `origin` names the source in errors.
Config parseConfig(const std::string& yaml, const std::string& origin,
                   const std::vector<std::string>& overrides = {});
// Checks every key of a config built in code as loading checks it (ranges, choices, specs,
// text); throws cdl::Error "config: <key> ..." naming the first key that is wrong.
void checkConfig(const Config& c);
// Every key of the schema, as YAML that parseConfig reads back to an equal config.
std::string toYaml(const Config& c);
// The first key whose value differs between a and b, as "key (A vs B)" with the values in YAML
// flow style; empty when they are equal.
std::string describeDifference(const Config& a, const Config& b);
// xxhash64 of toYaml(c) with the slurm section and train.device at their defaults (a run may
// resume on another device, Note [Training device]).
uint64_t configHash(const Config& c);

}  // namespace cdl::core
