#include "core/train/trainer.h"

#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <spdlog/spdlog.h>
#include <torch/optim/adam.h>
#include <torch/optim/sgd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "comm/reduce/adaptive_rates.h"
#include "comm/reduce/reducer.h"
#include "comm/reduce/scheme.h"
#include "core/cdl/cdl_layers.h"
#include "core/data/batch.h"
#include "core/data/data.h"
#include "core/models/models.h"
#include "core/models/torchscript_model.h"
#include "core/pipeline/pipeline.h"
#include "core/run/checkpoint.h"
#include "core/run/files.h"
#include "core/run/metrics_log.h"
#include "core/run/run_folder.h"
#include "core/run/stop_signals.h"
#include "core/step/cdl_training.h"
#include "core/step/epoch_end.h"
#include "core/step/replica.h"
#include "core/step/run_hooks.h"
#include "core/step/train_step.h"
#include "core/train/cores.h"
#include "core/train/device.h"
#include "kernels/base/clock.h"
#include "kernels/base/error.h"

namespace cdl::core {
namespace {

// The parameters in optimizer groups: one group, or, for a CDL model, a second one of the
// quantizers' parameters (steps, kappas), which take no weight decay.
std::vector<torch::optim::OptimizerParamGroup> parameterGroups(
    Net& model, const torch::optim::OptimizerOptions& defaults, double weightDecay,
    void (*setDecay)(torch::optim::OptimizerOptions&, double)) {
  std::vector<at::Tensor> quantizer;
  for (auto& [name, q] : quantizersOf(model)) {
    for (const at::Tensor& p : q->parameters()) quantizer.push_back(p);
  }
  std::vector<at::Tensor> rest;
  for (const at::Tensor& p : model.parameters()) {
    const bool isQuantizer = std::any_of(quantizer.begin(), quantizer.end(),
                                         [&](const at::Tensor& t) { return t.is_same(p); });
    if (!isQuantizer) rest.push_back(p);
  }
  std::vector<torch::optim::OptimizerParamGroup> groups;
  auto options = defaults.clone();
  setDecay(*options, weightDecay);
  groups.emplace_back(rest, std::move(options));
  if (!quantizer.empty()) {
    auto noDecay = defaults.clone();
    setDecay(*noDecay, 0.0);
    groups.emplace_back(quantizer, std::move(noDecay));
  }
  return groups;
}

std::unique_ptr<torch::optim::Optimizer> makeOptimizer(const Config::Train& t, Net& model) {
  if (t.optimizer == "sgd") {
    const auto defaults = torch::optim::SGDOptions(t.lr)
                              .momentum(t.momentum)
                              .nesterov(t.nesterov && t.momentum > 0)
                              .weight_decay(t.weightDecay);
    auto setDecay = [](torch::optim::OptimizerOptions& o, double d) {
      static_cast<torch::optim::SGDOptions&>(o).weight_decay(d);
    };
    return std::make_unique<torch::optim::SGD>(
        parameterGroups(model, defaults, t.weightDecay, setDecay), defaults);
  }
  if (t.optimizer == "adam") {
    const auto defaults = torch::optim::AdamOptions(t.lr).weight_decay(t.weightDecay);
    auto setDecay = [](torch::optim::OptimizerOptions& o, double d) {
      static_cast<torch::optim::AdamOptions&>(o).weight_decay(d);
    };
    return std::make_unique<torch::optim::Adam>(
        parameterGroups(model, defaults, t.weightDecay, setDecay), defaults);
  }
  CDL_THROW("config key train.optimizer: unknown optimizer '", t.optimizer, "'");
}

comm::ReducerOptions reducerOptions(const Config& cfg) {
  comm::ReducerOptions o;
  o.scheme = comm::parseSchemeSpec(cfg.comm.codec);
  for (const CodecOverride& ov : cfg.comm.overrides) {
    o.overrides.emplace_back(ov.pattern, comm::parseSchemeSpec(ov.codec));
  }
  o.errorFeedback = cfg.comm.errorFeedback;
  o.bucketBytes = std::max<int64_t>(4, static_cast<int64_t>(cfg.comm.bucketMb * (1 << 20)));
  o.firstBucketBytes =
      std::max<int64_t>(4, static_cast<int64_t>(cfg.comm.firstBucketMb * (1 << 20)));
  o.minCompressNumel = cfg.comm.minCompressNumel;
  o.seed = cfg.seed;
  return o;
}

// The adaptive-rate options of the config (Note [Adaptive rates]); errors name the key.
comm::AdaptiveOptions adaptiveOptions(const Config& cfg, const comm::SchemeSpec& uniform) {
  const Config::Comm::Adaptive& a = cfg.comm.adaptive;
  comm::AdaptiveOptions o;
  o.budget = a.budget == "time" ? comm::AdaptiveOptions::Budget::kTime
                                : comm::AdaptiveOptions::Budget::kError;
  o.overlap = a.overlap;
  o.linkBytesPerSecond = a.linkMbps * 1e6 / 8.0;
  o.alpha = a.alpha;
  o.warmupSteps = a.warmupSteps;
  o.everySteps = a.everySteps;
  o.window = a.window;
  o.buckets = static_cast<int>(a.buckets);
  for (const std::string& spec : a.candidates) o.candidates.push_back(comm::parseSchemeSpec(spec));
  o.named = !o.candidates.empty();
  if (o.named) return o;
  std::vector<std::string> families = a.families;
  if (families.empty()) {
    const std::string f = comm::familyOf(uniform);
    CDL_CHECK(f == "qsgd" || f == "topk" || f == "powersgd",
              "config key comm.adaptive.families: ", "empty, and comm.codec '", cfg.comm.codec,
              "' is no family to choose within; name the families (qsgd, topk, powersgd)");
    families = {f};
  }
  o.candidates = comm::candidateGrid(families, uniform, "config key comm.adaptive.families");
  return o;
}

// How long the run is: every rank takes the same number of steps per epoch.
struct RunLength {
  int64_t stepsPerEpoch = 0;
  int64_t totalSteps = 0;
};

RunLength runLength(const Config& cfg, int64_t trainCount, int size) {
  const int64_t shardLen = trainCount / size;
  CDL_CHECK(shardLen >= 1, "the train split has ", trainCount, " examples for ", size, " ranks");
  RunLength len;
  len.stepsPerEpoch = (shardLen + cfg.train.batchSize - 1) / cfg.train.batchSize;
  len.totalSteps = cfg.train.epochs * len.stepsPerEpoch;
  if (cfg.train.maxSteps > 0) len.totalSteps = std::min(len.totalSteps, cfg.train.maxSteps);
  return len;
}

// The steps of one epoch, from state.batchInEpoch up to its last batch.
struct EpochSetup {
  const Config& cfg;
  const ImageSet& trainSet;
  RunLength length;
  StepSetup step;
  MetricsLog& metrics;
  std::string checkpointDir;
  int64_t& stopAfterSteps;  // --stop-after, or the step a stop signal ends the run at
  bool stopOnSignals;
  TrainResult& result;                // stopRanks, stopSignal
  std::vector<StepTimes>* stepTimes;  // null: not kept
  c10::Device device;                 // where the batches go (Note [Training device])
};

// Collective over the job: whether any rank was asked to stop (Note [Stop signals]); if so, the
// count and this rank's signal go into `result` and the log.
bool voteToStop(const Replica& r, TrainResult& result) {
  comm::Communicator& job = r.world != nullptr ? *r.world : r.comm;
  const int mine = stopRequested();
  std::vector<float> votes{mine != 0 ? 1.0f : 0.0f};
  job.allreduce(votes.data(), 1)->wait();
  result.stopRanks = static_cast<int>(votes[0]);
  if (result.stopRanks == 0) return false;
  result.stopSignal = mine;
  if (mine != 0) {
    spdlog::warn("{}: stopping after this step with a checkpoint", stopSignalName(mine));
  } else if (job.rank() == 0) {
    spdlog::warn("{} rank(s) were asked to stop: stopping after this step with a checkpoint",
                 result.stopRanks);
  }
  return true;
}

// Collective. Trains the rest of epoch state.epoch, writing step records and the checkpoints due
// within it. Returns true when --stop-after or a stop signal (Note [Stop signals]) stopped the run
// before the epoch's last step (after a checkpoint); false at the epoch's last step, whose
// evaluation and checkpoint come next.
bool trainEpoch(const EpochSetup& e, TrainState& state) {
  const Config& cfg = e.cfg;
  const comm::Communicator& c = e.step.replica.comm;
  const size_t batch = static_cast<size_t>(cfg.train.batchSize);
  const std::vector<int64_t> shard =
      shardIndices(e.trainSet.count, c.rank(), c.size(), cfg.seed, state.epoch, /*shuffle=*/true);
  const RunLength& len = e.length;
  for (; state.batchInEpoch < len.stepsPerEpoch && state.step < len.totalSteps;
       ++state.batchInEpoch) {
    const size_t b0 = static_cast<size_t>(state.batchInEpoch) * batch;
    const Clock::time_point t0 = Clock::now();
    auto [x, y] =
        toDevice(makeBatch(e.trainSet, shard, b0, std::min(shard.size(), b0 + batch)), e.device);
    const double dataSeconds = secondsSince(t0);
    StepMetrics m = trainStep(e.step, state.step, x, y);
    m.times.data = dataSeconds;
    m.times.step += dataSeconds;
    if (e.stepTimes != nullptr) e.stepTimes->push_back(m.times);
    ++state.step;
    state.wireBytes += m.wireBytes;
    state.fp32WireBytes += m.fp32Bytes;
    state.cutWireBytes += m.cutWireBytes;
    state.cutFp32Bytes += m.cutFp32Bytes;
    state.skippedSteps += m.skipped;
    e.metrics.addStep(m);
    for (RunHook* h : e.step.replica.hooks) h->afterStep(state.step, m.times, e.metrics);
    if (state.step % cfg.log.everySteps == 0 || state.step == len.totalSteps) {
      e.metrics.writeStep(state.step, state.epoch, m.lr);
    }
    if (e.stopOnSignals && voteToStop(e.step.replica, e.result)) e.stopAfterSteps = state.step;
    if (state.batchInEpoch + 1 == len.stepsPerEpoch || state.step == len.totalSteps) return false;
    const bool stopping = stopsAfter(e.stopAfterSteps, state.step);
    if (checkpointDue(cfg.checkpoint, state.step, /*epochEnd=*/false, stopping, false)) {
      e.metrics.saveTo(state);
      ++state.batchInEpoch;  // the checkpoint resumes at the next batch
      saveReplicaCheckpoint(e.step.replica, e.checkpointDir, cfg.checkpoint.keep, state);
      --state.batchInEpoch;
    }
    if (stopping) return true;
  }
  return false;
}

void logStart(const Config& cfg, Net& model, int size, const RunLength& len) {
  int64_t params = 0;
  for (const auto& p : model.parameters()) params += p.numel();
  const int64_t batch = cfg.train.batchSize;
  const int64_t replicas = size / cfg.model.split.stages;
  spdlog::info(
      "{}: model {} ({} parameters), {} ranks, batch {} per replica ({} global), {} steps "
      "of {} per epoch, codec {}, seed {}",
      cfg.name, cfg.model.name, params, size, batch, batch * replicas, len.totalSteps,
      len.stepsPerEpoch, cfg.comm.codec, cfg.seed);
  if (cfg.model.split.stages > 1) {
    std::string cuts;
    for (const std::string& c : cfg.model.split.cutAfter) cuts += (cuts.empty() ? "" : ", ") + c;
    spdlog::info(
        "split: {} stages x {} replicas, cut after {}, {} micro-batches, activations {}, "
        "their gradients {}",
        cfg.model.split.stages, replicas, cuts, cfg.model.split.microBatches,
        cfg.model.split.activationCodec, cfg.model.split.gradientCodec);
  }
}

// Collective over the world: the cut bytes of every rank's state, summed exactly.
std::pair<uint64_t, uint64_t> sumOverJob(comm::Communicator& world, const TrainState& state) {
  Bytes mine(16);
  std::memcpy(mine.data(), &state.cutWireBytes, 8);
  std::memcpy(mine.data() + 8, &state.cutFp32Bytes, 8);
  Bytes all;
  std::vector<size_t> sizes;
  world.allgatherv(mine, &all, &sizes)->wait();
  std::pair<uint64_t, uint64_t> sum{0, 0};
  for (size_t at = 0; at + 16 <= all.size(); at += 16) {
    uint64_t w = 0, f = 0;
    std::memcpy(&w, all.data() + at, 8);
    std::memcpy(&f, all.data() + at + 8, 8);
    sum.first += w;
    sum.second += f;
  }
  return sum;
}

}  // namespace

int setIntraOpThreads(const Config& cfg, comm::Communicator& world) {
  int threads = static_cast<int>(cfg.train.threads);
  std::string why = "train.threads";
  if (threads == 0) threads = defaultThreads(world, &why);
  at::set_num_threads(threads);
  const std::string heap = keepFreedMemoryInTheHeap();  // Note [Training heap]
  if (world.rank() == 0) {
    spdlog::info("{} intra-op threads (rank 0: {}); heap: {}", threads, why, heap);
  }
  return threads;
}

DataSplits loadData(const Config& cfg) {
  if (cfg.data.dataset == "synthetic") {
    return {makeSynthetic(cfg.data.syntheticTrain, cfg.seed * 2 + 1),
            makeSynthetic(cfg.data.syntheticTest, cfg.seed * 2 + 2)};
  }
  if (cfg.data.dataset == "text") {
    return {loadText(cfg.data.textPath, "train", cfg.data.context),
            loadText(cfg.data.textPath, "test", cfg.data.context)};
  }
  return {loadFashionMnist(cfg.data.path, "train"), loadFashionMnist(cfg.data.path, "test")};
}

ModelOptions modelOptions(const Config& cfg, const ImageSet& set) {
  ModelOptions mo;
  mo.imageHeight = set.rows;
  mo.imageWidth = set.cols;
  mo.classes = set.classes;
  mo.hidden = cfg.model.hidden;
  mo.width = cfg.model.width;
  mo.layers = cfg.model.layers;
  mo.heads = cfg.model.heads;
  if (set.tokens) mo.context = set.cols - 1;
  mo.cdl = cdlModelOptions(cfg.cdl);
  return mo;
}

std::shared_ptr<Net> buildModel(const Config& cfg, const ImageSet& set) {
  const ModelOptions mo = modelOptions(cfg, set);
  // Torch's default generator is process-wide: ranks that are threads of one process (tests)
  // take turns, so each draws the whole sequence of the seed.
  static std::mutex initMu;
  std::lock_guard<std::mutex> lock(initMu);
  at::manual_seed(cfg.seed);
  if (cfg.model.name == "torchscript") return loadTorchScriptModel(cfg.model.torchscript, mo);
  return makeModel(cfg.model.name, mo);
}

TrainResult train(const Config& cfg, std::shared_ptr<comm::Communicator> commPtr,
                  const TrainOptions& options) {
  CDL_CHECK(commPtr != nullptr, "train: null communicator");
  CDL_CHECK(cfg.model.split.stages == 1, "config key model.split.stages: ", cfg.model.split.stages,
            " stages need a grid of stages (cdl-train builds it from the config)");
  return train(cfg, unsplitGrid(std::move(commPtr)), options);
}

namespace {

// The run's checks before anything is written: the grid fits the config, every rank holds the
// same config, and every key is valid (so a typo leaves nothing behind). Returns the reducer's
// options.
comm::ReducerOptions checkRun(const Config& cfg, const ProcessGrid& grid) {
  CDL_CHECK(grid.world != nullptr && grid.data != nullptr, "train: null communicator");
  CDL_CHECK(cfg.model.split.stages == grid.stages,
            "config key model.split.stages: ", cfg.model.split.stages,
            " stages, but the ranks were grouped into ", grid.stages);
  checkGridSize(grid.world->size(), grid.stages);
  requireSameConfig(*grid.world, cfg);
  checkConfig(cfg);
  comm::ReducerOptions ro = reducerOptions(cfg);
  if (cfg.comm.adaptive.enabled) adaptiveOptions(cfg, ro.scheme);
  return ro;
}

// What this rank trains with (the parts its Replica refers to), built from the config.
struct RankParts {
  std::shared_ptr<Net> model;  // the whole model, or this rank's stage of it
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  std::unique_ptr<comm::Reducer> reducer;
  std::unique_ptr<comm::AdaptiveRates> rates;
  std::unique_ptr<AdaptiveRatesHook> ratesHook;
  std::unique_ptr<CdlTraining> cdl;
  std::unique_ptr<StepSchedule> schedule;
  std::unique_ptr<Replica> replica;
};

std::unique_ptr<RankParts> buildRank(const Config& cfg, const ProcessGrid& grid,
                                     const std::shared_ptr<Net>& whole,
                                     const comm::ReducerOptions& ro) {
  auto p = std::make_unique<RankParts>();
  comm::Communicator& c = *grid.data;  // the data-parallel group of this rank's stage
  const bool split = grid.stages > 1;
  p->model = whole;
  if (split) {
    const auto bounds = stageSegments(*whole, cfg.model.split);
    const auto [first, last] = bounds[static_cast<size_t>(grid.stage())];
    p->model = makeStageNet(whole, first, last);
  }
  std::vector<std::pair<std::string, at::Tensor>> named;
  for (const auto& q : p->model->named_parameters()) named.emplace_back(q.key(), q.value());
  p->optimizer = makeOptimizer(cfg.train, *p->model);
  p->reducer = std::make_unique<comm::Reducer>(grid.data, named, ro);
  if (cfg.comm.adaptive.enabled) {
    p->rates =
        std::make_unique<comm::AdaptiveRates>(*p->reducer, c, adaptiveOptions(cfg, ro.scheme));
  }
  if (cfg.cdl.mode != "none") {
    p->cdl = std::make_unique<CdlTraining>(cfg.cdl, cfg.seed, *p->model, c, whole.get());
  }
  if (split) {
    p->schedule = std::make_unique<Pipeline>(cfg, grid, whole, *p->model);
  } else {
    p->schedule = std::make_unique<WholeModel>();
  }
  std::vector<RunHook*> hooks;
  if (p->cdl) hooks.push_back(p->cdl.get());
  if (p->rates) {
    p->ratesHook = std::make_unique<AdaptiveRatesHook>(*p->rates, *p->reducer);
    hooks.push_back(p->ratesHook.get());
  }
  p->replica.reset(new Replica{c, *p->model, *p->optimizer, *p->reducer, *p->schedule,
                               p->model->buffers(), p->cdl.get(), std::move(hooks),
                               grid.world.get()});
  return p;
}

// Collective: a resumed run's state from the newest step every rank holds, then rank 0's
// parameters, buffers and optimizer state on every replica, so none drifts apart.
void startReplicas(const Replica& r, const std::string& runDir, const std::vector<int64_t>& steps,
                   bool resume, TrainState& state) {
  comm::Communicator& world = *r.world;
  if (resume) {
    const std::string ckptDir = checkpointFolder(runDir);
    const std::string path =
        checkpointPath(ckptDir, commonResumeStep(world, ckptDir, steps), world.rank());
    restoreReplica(r, path, runDir, state);
    spdlog::info("resumed from {} (step {}, epoch {})", path, state.step, state.epoch);
  }
  broadcastTensors(r.comm, r.model.parameters());
  broadcastTensors(r.comm, r.buffers);
  broadcastTensors(r.comm, optimizerStateTensors(r.optimizer));
}

// The run's result once its loop ended (the last evaluation and the counts of state).
void finishResult(const Config& cfg, const ProcessGrid& grid, const MetricsLog& metrics,
                  const TrainState& state, int64_t totalSteps, TrainResult& result) {
  comm::Communicator& world = *grid.world;
  if (world.rank() == 0 && !grid.data->allreduceChoice().empty()) {
    spdlog::info("fp32 allreduce: {}", grid.data->allreduceChoice());  // Note [Allreduce choice]
  }
  result.steps = state.step;
  result.finished = state.step >= totalSteps;
  result.wallSeconds = metrics.elapsed();
  result.timeToAccuracy = metrics.timeToAccuracy();
  result.wireBytes = state.wireBytes;
  result.fp32WireBytes = state.fp32WireBytes;
  if (grid.stages > 1)
    std::tie(result.cutWireBytes, result.cutFp32Bytes) = sumOverJob(world, state);
  result.skippedSteps = state.skippedSteps;
  if (world.rank() == 0 && state.skippedSteps > 0) {
    spdlog::warn(
        "{} of {} steps were skipped: their gradients held NaN or infinity "
        "(train.skip_nonfinite)",
        state.skippedSteps, state.step);
  }
  if (world.rank() == 0 && result.finished) {
    writeFileAtomically(result.runDir + "/summary.json", summaryJson(cfg, result, world.size()));
  }
}

}  // namespace

TrainResult train(const Config& cfg, const ProcessGrid& grid, const TrainOptions& options) {
  const comm::ReducerOptions ro = checkRun(cfg, grid);
  comm::Communicator& world = *grid.world;
  const c10::Device device = trainingDevice(cfg, world);
  // The data and the model are read before the run folder is touched too: a TorchScript file
  // that does not fit leaves nothing behind.
  const DataSplits data = loadData(cfg);
  const std::shared_ptr<Net> whole = buildModel(cfg, data.train);
  whole->to(device);
  TrainResult result;
  result.runDir = runFolder(cfg);
  const std::string ckptDir = checkpointFolder(result.runDir);
  const std::vector<int64_t> steps = checkpointSteps(ckptDir, world.rank());
  const bool resume = options.resume || (options.restart && restartResumes(world, steps));
  if (!options.restart) checkRunFolder(world, result.runDir, steps, options.resume);
  makeDirs(ckptDir);
  if (world.rank() == 0) writeFileAtomically(result.runDir + "/config.yaml", toYaml(cfg));

  const std::unique_ptr<RankParts> parts = buildRank(cfg, grid, whole, ro);
  const Replica& replica = *parts->replica;
  const RunLength len = runLength(cfg, data.train.count, grid.data->size());
  if (parts->cdl) parts->cdl->setTotalSteps(len.totalSteps);
  TrainState state;
  state.worldSize = world.size();
  state.rank = world.rank();
  state.configHash = configHash(cfg);
  startReplicas(replica, result.runDir, steps, resume, state);

  // A restart that starts afresh keeps no record of the failed attempt.
  MetricsLog metrics(world, result.runDir + "/metrics.jsonl", options.progressBar, len.totalSteps,
                     resume ? state.step : (options.restart ? 0 : -1));
  metrics.resumeFrom(state);
  metrics.setCdl(parts->cdl != nullptr);
  metrics.setSplit(grid.stages > 1);
  metrics.setText(data.train.tokens ? data.train.cols - 1 : 0);
  if (world.rank() == 0) logStart(cfg, *whole, world.size(), len);
  const StepSetup stepSetup{replica, cfg.train, len.totalSteps};
  int64_t stopAfterSteps = options.stopAfterSteps;
  const EpochSetup epoch{cfg,
                         data.train,
                         len,
                         stepSetup,
                         metrics,
                         ckptDir,
                         stopAfterSteps,
                         options.stopOnSignals,
                         result,
                         options.keepStepTimes ? &result.stepTimes : nullptr,
                         device};
  const EpochEndSetup epochEnd{replica, data.test,      metrics,       cfg.checkpoint,
                               ckptDir, len.totalSteps, stopAfterSteps};
  replica.model.train();
  while (state.step < len.totalSteps) {
    if (trainEpoch(epoch, state)) break;
    const EpochEndResult end = endEpoch(epochEnd, state);
    result.testAccuracy = end.test.accuracy;
    result.testLoss = end.test.loss;
    if (end.cdl) {
      result.modelBitsPerWeight = end.cdl->bitsPerWeight;
      result.modelCodedBytes = end.cdl->modelCodedBytes();
    }
    result.epochs = state.epoch;
    if (end.stop) break;
  }
  result.cdl = parts->cdl != nullptr;
  finishResult(cfg, grid, metrics, state, len.totalSteps, result);
  return result;
}

}  // namespace cdl::core
