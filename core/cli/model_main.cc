// cdl-model: coded model files (Note [Coded model file]): export a trained run to a .cdlm file,
// inspect one, evaluate one on its own.
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "comm/transport/communicator.h"
#include "core/config/config.h"
#include "core/model_file/model_codec.h"
#include "core/model_file/model_report.h"
#include "core/pipeline/pipeline.h"
#include "core/run/checkpoint.h"
#include "core/run/files.h"
#include "core/run/run_folder.h"
#include "core/step/epoch_end.h"
#include "core/train/cores.h"
#include "core/train/trainer.h"
#include "kernels/base/error.h"

namespace {

using cdl::core::ModelFile;
using nlohmann::json;

struct ExportArgs {
  std::string source, output;
  cdl::core::ExportOptions options;
};

struct EvalArgs {
  std::string file, data = "/usr/share/datasets/fashion-mnist";
  bool json = false, stream = false;
};

// The run folder and checkpoint that `source` (a run folder or a checkpoint in one) names.
std::pair<std::string, std::string> resolveSource(const std::string& source) {
  const std::string suffix = cdl::core::kCheckpointSuffix;
  const bool isFile = source.size() > suffix.size() &&
                      source.compare(source.size() - suffix.size(), suffix.size(), suffix) == 0;
  if (isFile) {
    CDL_CHECK(cdl::core::exists(source), "checkpoint ", source, " does not exist");
    const size_t slash = source.find_last_of('/');
    const std::string dir = slash == std::string::npos ? "." : source.substr(0, slash);
    return {dir + "/..", source};
  }
  CDL_CHECK(cdl::core::exists(source + "/config.yaml"), source,
            " is neither a run folder (no config.yaml) nor a checkpoint (*", suffix, ")");
  const std::string ckpt = cdl::core::checkpointFolder(source);
  const std::vector<int64_t> steps = cdl::core::checkpointSteps(ckpt, 0);
  CDL_CHECK(!steps.empty(), "run folder ", source, " has no checkpoint of rank 0 in ", ckpt);
  return {source, cdl::core::checkpointPath(ckpt, steps.back(), 0)};
}

int runExport(const ExportArgs& a) {
  const auto [runDir, checkpoint] = resolveSource(a.source);
  const cdl::core::Config cfg = cdl::core::loadConfig(runDir + "/config.yaml");
  CDL_CHECK(cfg.model.name != "torchscript", "run ", runDir, " trained a TorchScript model (",
            cfg.model.torchscript,
            "); coded model files hold the built-in models (mlp, cnn, resnet20)");
  const cdl::core::DataSplits data = cdl::core::loadData(cfg);
  auto net = cdl::core::buildModel(cfg, data.test);
  if (cfg.model.split.stages == 1) {
    cdl::core::loadCheckpointWeights(checkpoint, *net);
  } else {
    // A split run (Note [Pipeline split]): stage s of replica 0 is rank s; each rank's checkpoint
    // of the same step holds its stage's layers.
    const std::string suffix = std::string(".rank0") + cdl::core::kCheckpointSuffix;
    CDL_CHECK(checkpoint.size() > suffix.size() &&
                  checkpoint.compare(checkpoint.size() - suffix.size(), suffix.size(), suffix) == 0,
              checkpoint, " is not a checkpoint of rank 0; a split run exports from rank 0's");
    const std::string stem = checkpoint.substr(0, checkpoint.size() - suffix.size());
    const auto bounds = cdl::core::stageSegments(*net, cfg.model.split);
    for (size_t s = 0; s < bounds.size(); ++s) {
      const std::string path = stem + ".rank" + std::to_string(s) + cdl::core::kCheckpointSuffix;
      CDL_CHECK(cdl::core::exists(path), "stage ", s, " of the split run has no checkpoint ", path);
      cdl::core::loadCheckpointWeights(
          path, *cdl::core::makeStageNet(net, bounds[s].first, bounds[s].second));
    }
  }
  cdl::core::ModelDescription d;
  d.model = cfg.model.name;
  d.options = cdl::core::modelOptions(cfg, data.test);
  d.quantization = d.options.cdl.enabled ? "cdl" : a.options.bits > 0 ? "ptq" : "none";
  d.bits = a.options.bits;
  d.dataset = cfg.data.dataset;
  if (d.dataset == "synthetic") {
    d.syntheticTest = cfg.data.syntheticTest;
    d.syntheticSeed = cfg.seed * 2 + 2;
  }
  ModelFile f = cdl::core::quantizeModel(*net, d, a.options);
  cdl::core::writeModelFile(a.output, f);
  const cdl::core::ModelReport r = cdl::core::reportModel(f);
  if (r.quantizedWeights == 0) {
    spdlog::info("{}: {} bytes from {}, fp32 weights (no --bits: not quantized)", a.output,
                 r.fileBytes, checkpoint);
  } else {
    spdlog::info(
        "{}: {} bytes from {}, {:.3f} bits per quantized weight, {:.1f}x smaller than fp32",
        a.output, r.fileBytes, checkpoint, r.bitsPerWeight, r.ratioToFp32);
  }
  return 0;
}

int runInspect(const std::string& path, bool asJson) {
  const ModelFile f = cdl::core::readModelFile(path);
  const cdl::core::ModelReport r = cdl::core::reportModel(f);
  std::fputs(asJson ? (cdl::core::reportJson(r).dump(2) + "\n").c_str()
                    : cdl::core::reportTable(r, f.meta).c_str(),
             stdout);
  return 0;
}

int runEval(const EvalArgs& a) {
  cdl::core::keepFreedMemoryInTheHeap();  // Note [Training heap]: the same tensors every batch
  const auto start = std::chrono::steady_clock::now();
  const ModelFile f = cdl::core::readModelFile(a.file, !a.stream);
  const cdl::core::ModelDescription d = cdl::core::parseDescription(f.meta);
  auto net = cdl::core::modelFromFile(f, a.stream);
  const cdl::core::ImageSet test = d.dataset == "synthetic"
                                       ? cdl::core::makeSynthetic(d.syntheticTest, d.syntheticSeed)
                                       : cdl::core::loadFashionMnist(a.data, "test");
  CDL_CHECK(test.rows == d.options.imageHeight && test.cols == d.options.imageWidth &&
                test.classes == d.options.classes,
            "the test set's ", test.rows, "x", test.cols, " images of ", test.classes,
            " classes do not fit the model's ", d.options.imageHeight, "x", d.options.imageWidth,
            " of ", d.options.classes);
  auto comm = cdl::comm::makeLocalGroup(1)[0];
  const auto evalStart = std::chrono::steady_clock::now();
  const cdl::core::Evaluation e = cdl::core::evaluate(*net, test, *comm);
  const auto end = std::chrono::steady_clock::now();
  const double seconds = std::chrono::duration<double>(end - start).count();
  const double evalSeconds = std::chrono::duration<double>(end - evalStart).count();
  const uint64_t bytes = f.fileBytes;
  if (a.json) {
    const json j = {{"test_accuracy", e.accuracy}, {"test_loss", e.loss}, {"file_bytes", bytes},
                    {"test_examples", test.count}, {"stream", a.stream},  {"seconds", seconds},
                    {"eval_seconds", evalSeconds}};
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf(
        "%s: test accuracy %.2f%% (loss %.4f) on %lld examples; %llu bytes; %.1f s (%.2f s of "
        "evaluation)%s\n",
        a.file.c_str(), 100.0 * e.accuracy, e.loss, static_cast<long long>(test.count),
        static_cast<unsigned long long>(bytes), seconds, evalSeconds,
        a.stream ? " (linear layers straight from the coded streams)" : "");
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"cdl-model: coded model files (.cdlm): export, inspect, evaluate"};
  app.require_subcommand(1);
  ExportArgs ex;
  CLI::App* exp = app.add_subcommand("export", "Code a trained run's model into a .cdlm file");
  exp->add_option("source", ex.source, "Run folder (its newest checkpoint) or a checkpoint (.ckpt)")
      ->required();
  exp->add_option("-o,--output", ex.output, "The .cdlm file to write")->required();
  exp->add_option("--bits", ex.options.bits,
                  "Post-training quantization at B bits per weight (models trained without CDL; "
                  "without it such a model keeps its fp32 weights)")
      ->check(CLI::Range(1, 8));
  exp->add_option("--first-last-bits", ex.options.firstLastBits,
                  "With --bits: the first and last layers' weights at this many bits instead")
      ->check(CLI::Range(1, 8));
  exp->add_flag("--canonical-order", ex.options.canonical,
                "Store hidden layers as multisets of their units (Note [Canonical order])");
  exp->add_flag("--fp16", ex.options.fp16, "Biases, batchnorm and steps as fp16 (default fp32)");
  std::string inspectPath;
  bool inspectJson = false;
  CLI::App* ins = app.add_subcommand("inspect", "Per-tensor sizes, bits per weight and bounds");
  ins->add_option("file", inspectPath, "A .cdlm file")->required();
  ins->add_flag("--json", inspectJson, "Print JSON instead of a table");
  EvalArgs ev;
  CLI::App* evl = app.add_subcommand("eval", "Test accuracy of the model a .cdlm file holds");
  evl->add_option("file", ev.file, "A .cdlm file")->required();
  evl->add_option("--data", ev.data, "Fashion-MNIST folder (for models trained on it)");
  evl->add_flag("--json", ev.json, "Print JSON");
  evl->add_flag("--stream", ev.stream, "Run linear layers straight from their coded index streams");
  CLI11_PARSE(app, argc, argv);
  spdlog::set_pattern("[%H:%M:%S.%e] [%l] %v");
  try {
    if (*exp) return runExport(ex);
    if (*ins) return runInspect(inspectPath, inspectJson);
    return runEval(ev);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cdl-model: %s\n", e.what());
    return 1;
  }
}
