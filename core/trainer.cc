#include "core/trainer.h"

#include <ATen/Context.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/argmax.h>
#include <ATen/ops/cross_entropy_loss.h>
#include <ATen/ops/empty.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <torch/optim/adam.h>
#include <torch/optim/sgd.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>

#include "comm/codec.h"
#include "comm/reducer.h"
#include "core/checkpoint.h"
#include "core/data.h"
#include "core/models.h"
#include "core/schedule.h"
#include "kernels/error.h"

namespace cdl::core {
namespace {

using Clock = std::chrono::steady_clock;

// Fashion-MNIST's pixel mean and standard deviation (of x / 255 over the train split).
constexpr float kPixelMean = 0.2860f;
constexpr float kPixelStd = 0.3530f;

void makeDirs(const std::string& path) {
  std::string partial;
  size_t pos = 0;
  while (pos != std::string::npos) {
    pos = path.find('/', pos + 1);
    partial = path.substr(0, pos);
    if (partial.empty()) continue;
    if (::mkdir(partial.c_str(), 0755) != 0 && errno != EEXIST) {
      CDL_THROW("cannot create folder ", partial, ": ", std::strerror(errno));
    }
  }
}

bool exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

// Writes text to path through a temporary file and a rename, so readers never see half of it.
void writeFileAtomically(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << text;
    out.flush();
    CDL_CHECK(out.good(), "cannot write ", tmp);
  }
  CDL_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0, "cannot rename ", tmp, " to ", path, ": ",
            std::strerror(errno));
}

void waitFor(const std::shared_ptr<comm::Work>& w) { w->wait(); }

// Images idx[begin..end) of set as a normalized float batch [n, 1, rows, cols] and their labels.
std::pair<at::Tensor, at::Tensor> makeBatch(const ImageSet& set, const std::vector<int64_t>& idx,
                                            size_t begin, size_t end) {
  const int64_t n = static_cast<int64_t>(end - begin), pix = set.rows * set.cols;
  at::Tensor x = at::empty({n, 1, set.rows, set.cols}, at::kFloat);
  at::Tensor y = at::empty({n}, at::kLong);
  float* xp = x.data_ptr<float>();
  int64_t* yp = y.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t k = idx[begin + static_cast<size_t>(i)];
    const uint8_t* src = set.pixels.data() + k * pix;
    for (int64_t j = 0; j < pix; ++j) {
      xp[i * pix + j] = (static_cast<float>(src[j]) * (1.0f / 255.0f) - kPixelMean) / kPixelStd;
    }
    yp[i] = set.labels[static_cast<size_t>(k)];
  }
  return {x, y};
}

// Sums v over the ranks (small vectors of statistics).
std::vector<float> sumOverRanks(comm::Communicator& c, std::vector<float> v) {
  waitFor(c.allreduce(v.data(), static_cast<int64_t>(v.size())));
  return v;
}

// Copies rank 0's bytes of every tensor into every rank's.
void broadcastTensors(comm::Communicator& c, const std::vector<at::Tensor>& tensors) {
  at::NoGradGuard noGrad;
  for (const at::Tensor& t : tensors) {
    CDL_CHECK(t.is_contiguous(), "broadcast of a non-contiguous tensor");
    const size_t bytes = t.numel() * t.element_size();
    auto* p = static_cast<uint8_t*>(t.data_ptr());
    comm::Bytes b(p, p + bytes);
    waitFor(c.broadcast(&b, 0));
    CDL_CHECK(b.size() == bytes, "rank 0 has a tensor of ", b.size(), " bytes where this rank has ",
              bytes, "; every rank must build the same model");
    std::copy(b.begin(), b.end(), p);
  }
}

struct Eval {
  double loss = 0.0, accuracy = 0.0;
};

Eval evaluate(Net& model, const ImageSet& test, comm::Communicator& c) {
  at::NoGradGuard noGrad;
  model.eval();
  const std::vector<int64_t> idx = evalShard(test.count, c.rank(), c.size());
  double lossSum = 0.0, correct = 0.0;
  constexpr size_t kBatch = 1000;
  for (size_t b = 0; b < idx.size(); b += kBatch) {
    auto [x, y] = makeBatch(test, idx, b, std::min(idx.size(), b + kBatch));
    const at::Tensor logits = model.forward(x);
    lossSum += at::cross_entropy_loss(logits, y, {}, at::Reduction::Sum).item<double>();
    correct += at::argmax(logits, 1).eq(y).sum().item<double>();
  }
  model.train();
  const auto total = sumOverRanks(c, {static_cast<float>(lossSum), static_cast<float>(correct),
                                      static_cast<float>(idx.size())});
  return {total[0] / total[2], total[1] / total[2]};
}

std::unique_ptr<torch::optim::Optimizer> makeOptimizer(const Config::Train& t, Net& model) {
  if (t.optimizer == "sgd") {
    return std::make_unique<torch::optim::SGD>(model.parameters(),
                                               torch::optim::SGDOptions(t.lr)
                                                   .momentum(t.momentum)
                                                   .nesterov(t.nesterov && t.momentum > 0)
                                                   .weight_decay(t.weightDecay));
  }
  if (t.optimizer == "adam") {
    return std::make_unique<torch::optim::Adam>(
        model.parameters(), torch::optim::AdamOptions(t.lr).weight_decay(t.weightDecay));
  }
  CDL_THROW("config key train.optimizer: unknown optimizer '", t.optimizer, "'");
}

comm::ReducerOptions reducerOptions(const Config& cfg) {
  comm::ReducerOptions o;
  auto parse = [](const std::string& key, const std::string& spec) {
    try {
      return comm::parseCodecSpec(spec);
    } catch (const Error& e) {
      CDL_THROW("config key ", key, ": ", e.what());
    }
  };
  o.codec = parse("comm.codec", cfg.comm.codec);
  for (size_t i = 0; i < cfg.comm.overrides.size(); ++i) {
    const CodecOverride& ov = cfg.comm.overrides[i];
    o.overrides.emplace_back(ov.pattern,
                             parse("comm.overrides[" + std::to_string(i) + "].codec", ov.codec));
  }
  o.errorFeedback = cfg.comm.errorFeedback;
  o.bucketBytes = std::max<int64_t>(4, static_cast<int64_t>(cfg.comm.bucketMb * (1 << 20)));
  o.firstBucketBytes =
      std::max<int64_t>(4, static_cast<int64_t>(cfg.comm.firstBucketMb * (1 << 20)));
  o.minCompressNumel = cfg.comm.minCompressNumel;
  o.seed = cfg.seed;
  return o;
}

class Progress {
 public:
  Progress(bool bar, int64_t total) : bar_(bar), total_(total) {}
  ~Progress() {
    if (drawn_) std::fprintf(stderr, "\n");
  }
  void update(int64_t step, const std::string& text) {
    if (!bar_) return;
    constexpr int kWidth = 30;
    const int filled = total_ > 0 ? static_cast<int>(kWidth * step / total_) : 0;
    std::fprintf(stderr, "\r[%s%s] %lld/%lld %s", std::string(filled, '#').c_str(),
                 std::string(kWidth - filled, '.').c_str(), static_cast<long long>(step),
                 static_cast<long long>(total_), text.c_str());
    std::fflush(stderr);
    drawn_ = true;
  }

 private:
  bool bar_;
  int64_t total_;
  bool drawn_ = false;
};

}  // namespace

TrainResult train(const Config& cfg, std::shared_ptr<comm::Communicator> commPtr,
                  const TrainOptions& options) {
  CDL_CHECK(commPtr != nullptr, "train: null communicator");
  comm::Communicator& c = *commPtr;
  const int rank = c.rank(), size = c.size();
  const auto start = Clock::now();
  TrainResult result;
  result.runDir = cfg.log.runsDir + "/" + cfg.name;
  const std::string ckptDir = result.runDir + "/checkpoints";
  const uint64_t hash = configHash(cfg);

  // Every rank checks the run folder; a collective then makes them agree before anything is
  // written, so one rank's refusal stops all of them.
  std::vector<int64_t> steps = checkpointSteps(ckptDir, rank);
  const bool occupied = exists(result.runDir + "/metrics.jsonl") || !steps.empty();
  const auto flags = sumOverRanks(c, {occupied ? 1.0f : 0.0f, steps.empty() ? 1.0f : 0.0f});
  if (!options.resume) {
    CDL_CHECK(flags[0] == 0, "the run folder ", result.runDir,
              " already holds a run; pass --resume to continue it, or choose another name "
              "(--set name=...)");
  } else {
    CDL_CHECK(flags[1] == 0, "--resume: no checkpoint of every rank in ", ckptDir, " (",
              static_cast<int>(flags[1]), " of ", size, " ranks have none)");
  }
  makeDirs(ckptDir);
  if (rank == 0) writeFileAtomically(result.runDir + "/config.yaml", toYaml(cfg));

  ImageSet trainSet, testSet;
  if (cfg.data.dataset == "synthetic") {
    trainSet = makeSynthetic(cfg.data.syntheticTrain, cfg.seed * 2 + 1);
    testSet = makeSynthetic(cfg.data.syntheticTest, cfg.seed * 2 + 2);
  } else {
    trainSet = loadFashionMnist(cfg.data.path, "train");
    testSet = loadFashionMnist(cfg.data.path, "test");
  }

  ModelOptions mo;
  mo.imageHeight = trainSet.rows;
  mo.imageWidth = trainSet.cols;
  mo.classes = trainSet.classes;
  mo.hidden = cfg.model.hidden;
  mo.width = cfg.model.width;
  std::shared_ptr<Net> model;
  {
    // Torch's default generator is process-wide: ranks that are threads of one process (tests)
    // take turns, so each draws the whole sequence of the seed.
    static std::mutex initMu;
    std::lock_guard<std::mutex> lock(initMu);
    at::manual_seed(cfg.seed);
    model = makeModel(cfg.model.name, mo);
  }
  std::vector<std::pair<std::string, at::Tensor>> named;
  for (const auto& p : model->named_parameters()) named.emplace_back(p.key(), p.value());
  std::vector<at::Tensor> params, buffers;
  for (const auto& p : named) params.push_back(p.second);
  for (const auto& b : model->named_buffers()) buffers.push_back(b.value());
  auto optimizer = makeOptimizer(cfg.train, *model);

  const int64_t batch = cfg.train.batchSize;
  const int64_t shardLen = trainSet.count / size;
  CDL_CHECK(shardLen >= 1, "the train split has ", trainSet.count, " examples for ", size,
            " ranks");
  const int64_t stepsPerEpoch = (shardLen + batch - 1) / batch;
  int64_t totalSteps = cfg.train.epochs * stepsPerEpoch;
  if (cfg.train.maxSteps > 0) totalSteps = std::min(totalSteps, cfg.train.maxSteps);

  comm::Reducer reducer(commPtr, named, reducerOptions(cfg));

  TrainState state;
  state.worldSize = size;
  state.rank = rank;
  state.configHash = hash;
  if (options.resume) {
    // The newest step every rank has.
    const float mine = static_cast<float>(steps.back());
    std::vector<float> all(static_cast<size_t>(size), 0.0f);
    all[static_cast<size_t>(rank)] = mine;
    all = sumOverRanks(c, all);
    const int64_t common = static_cast<int64_t>(*std::min_element(all.begin(), all.end()));
    CDL_CHECK(std::find(steps.begin(), steps.end(), common) != steps.end(), "--resume: rank ", rank,
              " has no checkpoint of step ", common, " (the newest all ranks share)");
    const std::string path = checkpointPath(ckptDir, common, rank);
    TrainState loaded = loadCheckpoint(path, *model, *optimizer);
    CDL_CHECK(loaded.worldSize == size, "checkpoint ", path, " is from a run with ",
              loaded.worldSize, " ranks; resume it with as many");
    CDL_CHECK(loaded.configHash == hash, "checkpoint ", path,
              " was written with a different config; resume with the run's config.yaml (",
              result.runDir, "/config.yaml)");
    reducer.restoreErrorFeedback(loaded.errorFeedback);
    reducer.setStep(static_cast<uint64_t>(loaded.step));
    if (loaded.rngState.defined()) {
      at::Generator gen = at::detail::getDefaultCPUGenerator();
      std::lock_guard<std::mutex> lock(gen.mutex());
      gen.set_state(loaded.rngState);
    }
    state.step = loaded.step;
    state.epoch = loaded.epoch;
    state.batchInEpoch = loaded.batchInEpoch;
    result.wireBytes = loaded.wireBytes;
    result.fp32WireBytes = loaded.fp32WireBytes;
    spdlog::info("resumed from {} (step {}, epoch {})", path, state.step, state.epoch);
  }
  broadcastTensors(c, params);
  broadcastTensors(c, buffers);

  auto checkpoint = [&] {
    broadcastTensors(c, buffers);
    state.errorFeedback = reducer.errorFeedbackState();
    state.wireBytes = result.wireBytes;
    state.fp32WireBytes = result.fp32WireBytes;
    {
      at::Generator gen = at::detail::getDefaultCPUGenerator();
      std::lock_guard<std::mutex> lock(gen.mutex());
      state.rngState = gen.get_state();
    }
    const std::string path =
        saveCheckpoint(ckptDir, *model, *optimizer, state, cfg.checkpoint.keep);
    spdlog::debug("wrote {}", path);
  };

  std::ofstream metrics;
  if (rank == 0) {
    metrics.open(result.runDir + "/metrics.jsonl", std::ios::app);
    CDL_CHECK(metrics.good(), "cannot open ", result.runDir, "/metrics.jsonl for writing");
    spdlog::info(
        "{}: model {} ({} parameters), {} ranks, batch {} per rank ({} global), {} steps "
        "of {} per epoch, codec {}, seed {}",
        cfg.name, cfg.model.name,
        [&] {
          int64_t n = 0;
          for (const auto& p : params) n += p.numel();
          return n;
        }(),
        size, batch, batch * size, totalSteps, stepsPerEpoch, cfg.comm.codec, cfg.seed);
  }
  auto record = [&](const nlohmann::json& j) {
    if (rank != 0) return;
    metrics << j.dump() << "\n";
    metrics.flush();
  };

  Progress progress(options.progressBar && rank == 0, totalSteps);
  double windowLoss = 0.0, windowCorrect = 0.0, windowCount = 0.0;
  uint64_t windowWire = 0, windowFp32 = 0;
  int64_t windowSteps = 0;
  auto windowStart = Clock::now();
  Eval last;
  bool stopped = false;
  model->train();
  while (state.step < totalSteps && !stopped) {
    const std::vector<int64_t> shard =
        shardIndices(trainSet.count, rank, size, cfg.seed, state.epoch, /*shuffle=*/true);
    for (; state.batchInEpoch < stepsPerEpoch && state.step < totalSteps; ++state.batchInEpoch) {
      const size_t b0 = static_cast<size_t>(state.batchInEpoch * batch);
      auto [x, y] =
          makeBatch(trainSet, shard, b0, std::min(shard.size(), b0 + static_cast<size_t>(batch)));
      const double lr =
          scheduledLr(cfg.train.schedule, cfg.train.lr, state.step, totalSteps,
                      cfg.train.warmupSteps, cfg.train.stepEvery, cfg.train.stepGamma);
      for (auto& group : optimizer->param_groups()) group.options().set_lr(lr);
      optimizer->zero_grad();
      const at::Tensor logits = model->forward(x);
      const at::Tensor loss = at::cross_entropy_loss(logits, y);
      loss.backward();
      reducer.finalize();
      optimizer->step();
      ++state.step;

      const auto& st = reducer.lastStats();
      result.wireBytes += st.wireBytes;
      result.fp32WireBytes += st.fp32Bytes;
      windowWire += st.wireBytes;
      windowFp32 += st.fp32Bytes;
      windowLoss += loss.item<double>() * static_cast<double>(y.size(0));
      windowCorrect += at::argmax(logits, 1).eq(y).sum().item<double>();
      windowCount += static_cast<double>(y.size(0));
      ++windowSteps;
      if (state.step % cfg.log.everySteps == 0 || state.step == totalSteps) {
        const auto sums =
            sumOverRanks(c, {static_cast<float>(windowLoss), static_cast<float>(windowCorrect),
                             static_cast<float>(windowCount)});
        const double seconds = std::chrono::duration<double>(Clock::now() - windowStart).count();
        const double samplesPerSecond = sums[2] / std::max(seconds, 1e-9);
        const double mbPerStep = windowWire / 1e6 / windowSteps;
        const double ratio = windowWire > 0 ? static_cast<double>(windowFp32) / windowWire : 1.0;
        record({{"kind", "step"},
                {"step", state.step},
                {"epoch", state.epoch},
                {"lr", lr},
                {"train_loss", sums[0] / sums[2]},
                {"train_accuracy", sums[1] / sums[2]},
                {"samples_per_s", samplesPerSecond},
                {"wire_mb_per_step", mbPerStep},
                {"compression_ratio", ratio}});
        char text[200];
        std::snprintf(text, sizeof(text),
                      "epoch %lld loss %.4f acc %.3f %.0f samples/s %.3f MB/step wire (x%.1f)",
                      static_cast<long long>(state.epoch), sums[0] / sums[2], sums[1] / sums[2],
                      samplesPerSecond, mbPerStep, ratio);
        if (options.progressBar) {
          progress.update(state.step, text);
        } else if (rank == 0) {
          spdlog::info("step {}/{} {}", state.step, totalSteps, text);
        }
        windowLoss = windowCorrect = windowCount = 0.0;
        windowWire = windowFp32 = 0;
        windowSteps = 0;
        windowStart = Clock::now();
      }
      const bool stopNow = options.stopAfterSteps > 0 && state.step >= options.stopAfterSteps;
      const bool epochEnd = state.batchInEpoch + 1 == stepsPerEpoch || state.step == totalSteps;
      if (epochEnd) break;  // the epoch's evaluation and checkpoint come first
      if (stopNow ||
          (cfg.checkpoint.everySteps > 0 && state.step % cfg.checkpoint.everySteps == 0)) {
        ++state.batchInEpoch;
        checkpoint();
        --state.batchInEpoch;
      }
      if (stopNow) {
        stopped = true;
        break;
      }
    }
    if (stopped) break;
    // The epoch (or the run) has ended: evaluate, then move on to the next epoch.
    broadcastTensors(c, buffers);
    last = evaluate(*model, testSet, c);
    result.epochs = state.epoch + 1;
    record({{"kind", "epoch"},
            {"epoch", state.epoch},
            {"step", state.step},
            {"test_loss", last.loss},
            {"test_accuracy", last.accuracy}});
    if (rank == 0) {
      spdlog::info("epoch {} done at step {}: test loss {:.4f}, test accuracy {:.2f}%", state.epoch,
                   state.step, last.loss, 100.0 * last.accuracy);
    }
    ++state.epoch;
    state.batchInEpoch = 0;
    const bool stopNow = options.stopAfterSteps > 0 && state.step >= options.stopAfterSteps;
    if (cfg.checkpoint.everyEpoch || stopNow || state.step == totalSteps ||
        (cfg.checkpoint.everySteps > 0 && state.step % cfg.checkpoint.everySteps == 0)) {
      checkpoint();
    }
    if (stopNow && state.step < totalSteps) stopped = true;
  }

  result.steps = state.step;
  result.finished = state.step >= totalSteps;
  result.testAccuracy = last.accuracy;
  result.testLoss = last.loss;
  result.wallSeconds = std::chrono::duration<double>(Clock::now() - start).count();
  if (rank == 0 && result.finished) {
    const nlohmann::json summary = {
        {"name", cfg.name},
        {"test_accuracy", result.testAccuracy},
        {"test_loss", result.testLoss},
        {"epochs", result.epochs},
        {"steps", result.steps},
        {"wall_seconds", result.wallSeconds},
        {"wire_bytes", result.wireBytes},
        {"fp32_wire_bytes", result.fp32WireBytes},
        {"compression_ratio", result.wireBytes > 0 ? static_cast<double>(result.fp32WireBytes) /
                                                         static_cast<double>(result.wireBytes)
                                                   : 1.0},
        {"ranks", size},
        {"batch_per_rank", batch},
        {"global_batch", batch * size},
        {"codec", cfg.comm.codec},
        {"seed", cfg.seed},
        {"config_hash", hash}};
    writeFileAtomically(result.runDir + "/summary.json", summary.dump(2) + "\n");
  }
  return result;
}

}  // namespace cdl::core
