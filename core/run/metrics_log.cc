#include "core/run/metrics_log.h"

#include <cmath>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "comm/reduce/adaptive_rates.h"
#include "core/run/checkpoint.h"
#include "core/run/collectives.h"
#include "kernels/base/error.h"

namespace cdl::core {

using Clock = std::chrono::steady_clock;

double compressionRatio(uint64_t fp32Bytes, uint64_t wireBytes) {
  return wireBytes > 0 ? static_cast<double>(fp32Bytes) / static_cast<double>(wireBytes) : 1.0;
}

StepTimes& StepTimes::operator+=(const StepTimes& o) {
  data += o.data;
  compute += o.compute;
  wait += o.wait;
  optimizer += o.optimizer;
  step += o.step;
  encode += o.encode;
  comm += o.comm;
  decode += o.decode;
  return *this;
}

void MetricsWindow::add(const StepMetrics& m) {
  if (m.times.step > 0.0) {
    times += m.times;
    ++timedSteps;
  }
  wireBytes += m.wireBytes;
  fp32Bytes += m.fp32Bytes;
  loss += m.loss * static_cast<double>(m.count);
  correct += m.correct;
  count += static_cast<double>(m.count);
  weightBits = m.weightBits;
  activationBits = m.activationBits;
  cutForwardBytes += static_cast<double>(m.cutForwardBytes);
  cutForwardElements += static_cast<double>(m.cutForwardElements);
  cutBackwardBytes += static_cast<double>(m.cutBackwardBytes);
  cutBackwardElements += static_cast<double>(m.cutBackwardElements);
  microBatches += static_cast<double>(m.microBatches);
  skipped += m.skipped;
  ++steps;
}

// A progress bar on stderr, redrawn in place.
class MetricsLog::Progress {
 public:
  explicit Progress(int64_t total) : total_(total) {}
  ~Progress() {
    if (drawn_) std::fprintf(stderr, "\n");
  }
  void update(int64_t step, const std::string& text) {
    constexpr int kWidth = 30;
    const int filled = total_ > 0 ? static_cast<int>(kWidth * step / total_) : 0;
    std::fprintf(stderr, "\r[%s%s] %lld/%lld %s", std::string(filled, '#').c_str(),
                 std::string(kWidth - filled, '.').c_str(), static_cast<long long>(step),
                 static_cast<long long>(total_), text.c_str());
    std::fflush(stderr);
    drawn_ = true;
  }

 private:
  int64_t total_;
  bool drawn_ = false;
};

std::vector<double> MetricsWindow::sums() const {
  return {loss,
          correct,
          count,
          static_cast<double>(wireBytes),
          static_cast<double>(fp32Bytes),
          static_cast<double>(steps),
          weightBits,
          activationBits,
          cutForwardBytes,
          cutForwardElements,
          cutBackwardBytes,
          cutBackwardElements,
          microBatches,
          static_cast<double>(skipped)};
}

void MetricsWindow::setSums(const std::vector<double>& v) {
  CDL_CHECK(v.size() == 14, "metrics window of ", v.size(), " numbers, expected 14");
  loss = v[0];
  correct = v[1];
  count = v[2];
  wireBytes = static_cast<uint64_t>(v[3]);
  fp32Bytes = static_cast<uint64_t>(v[4]);
  steps = static_cast<int64_t>(v[5]);
  weightBits = v[6];
  activationBits = v[7];
  cutForwardBytes = v[8];
  cutForwardElements = v[9];
  cutBackwardBytes = v[10];
  cutBackwardElements = v[11];
  microBatches = v[12];
  skipped = static_cast<int64_t>(v[13]);
}

namespace {

// Adds the targets that an epoch record of `accuracy` at `seconds` reaches first.
void noteReached(std::vector<std::pair<double, double>>& reached, double accuracy, double seconds) {
  for (double target : kAccuracyTargets) {
    const bool known = std::any_of(reached.begin(), reached.end(),
                                   [&](const auto& r) { return r.first == target; });
    if (!known && accuracy >= target) reached.emplace_back(target, seconds);
  }
}

// The records of a metrics file up to `step`, dropping later ones and any line that does not
// parse (a torn last append); notes the accuracy targets the kept epoch records reached.
std::string recordsUpTo(const std::string& path, int64_t step,
                        std::vector<std::pair<double, double>>& reached) {
  std::ifstream in(path);
  std::string kept, line;
  while (std::getline(in, line)) {
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object() || !j.contains("step") || !j["step"].is_number()) {
      continue;
    }
    if (j["step"].get<int64_t>() > step) continue;
    kept += line + "\n";
    if (j.value("kind", "") == "epoch" && j.contains("test_accuracy") && j.contains("wall_s") &&
        j["test_accuracy"].is_number() && j["wall_s"].is_number()) {
      noteReached(reached, j["test_accuracy"].get<double>(), j["wall_s"].get<double>());
    }
  }
  return kept;
}

}  // namespace

MetricsLog::MetricsLog(comm::Communicator& comm, const std::string& path, bool progressBar,
                       int64_t totalSteps, int64_t resumedStep)
    : comm_(comm), totalSteps_(totalSteps) {
  if (comm.rank() != 0) return;
  if (resumedStep >= 0 && exists(path)) {
    writeFileAtomically(path, recordsUpTo(path, resumedStep, reached_));
  }
  file_ = std::make_unique<AppendFile>(path);
  if (progressBar) progress_ = std::make_unique<Progress>(totalSteps);
}

MetricsLog::~MetricsLog() = default;

void MetricsLog::addStep(const StepMetrics& m) { window_.add(m); }

double MetricsLog::elapsed() const {
  return before_ + std::chrono::duration<double>(Clock::now() - begun_).count();
}

void MetricsLog::saveTo(TrainState& state) const {
  state.metricsWindow = window_.sums();
  state.wallSeconds = elapsed();
}

void MetricsLog::resumeFrom(const TrainState& state) {
  if (!state.metricsWindow.empty()) window_.setSums(state.metricsWindow);
  before_ = state.wallSeconds;
  begun_ = Clock::now();
}

void MetricsLog::writeStep(int64_t step, int64_t epoch, double lr) {
  const MetricsWindow& w = window_;
  std::vector<float> local = {static_cast<float>(w.loss), static_cast<float>(w.correct),
                              static_cast<float>(w.count)};
  if (split_) {
    local.insert(local.end(),
                 {static_cast<float>(w.cutForwardBytes), static_cast<float>(w.cutForwardElements),
                  static_cast<float>(w.cutBackwardBytes), static_cast<float>(w.cutBackwardElements),
                  static_cast<float>(w.microBatches)});
  }
  const std::vector<float> sums = sumOverRanks(comm_, std::move(local));
  const double seconds = std::chrono::duration<double>(Clock::now() - w.start).count();
  const double countPerSecond = sums[2] / std::max(seconds, 1e-9);
  const double samplesPerSecond = tokensPerExample_ > 0
                                      ? countPerSecond / static_cast<double>(tokensPerExample_)
                                      : countPerSecond;
  const double mbPerStep = w.wireBytes / 1e6 / w.steps;
  const double ratio = compressionRatio(w.fp32Bytes, w.wireBytes);
  // The loss and accuracy are float quotients of the float sums, as the records always had.
  const float trainLoss = sums[0] / sums[2], trainAccuracy = sums[1] / sums[2];
  if (file_) {
    nlohmann::json j = {{"kind", "step"},
                        {"step", step},
                        {"epoch", epoch},
                        {"lr", lr},
                        {"train_loss", trainLoss},
                        {"train_accuracy", trainAccuracy},
                        {"samples_per_s", samplesPerSecond},
                        {"wire_mb_per_step", mbPerStep},
                        {"compression_ratio", ratio},
                        {"wall_s", elapsed()}};
    if (cdl_) {
      j["weight_bits"] = w.weightBits;
      j["activation_bits"] = w.activationBits;
    }
    if (w.timedSteps > 0) {
      const double k = 1e3 / static_cast<double>(w.timedSteps);
      const StepTimes& t = w.times;
      j["ms"] = {{"data", t.data * k}, {"compute", t.compute * k},
                 {"wait", t.wait * k}, {"optimizer", t.optimizer * k},
                 {"step", t.step * k}, {"encode", t.encode * k},
                 {"comm", t.comm * k}, {"decode", t.decode * k}};
    }
    if (w.skipped > 0) j["skipped_steps"] = w.skipped;
    if (tokensPerExample_ > 0) {
      j["tokens_per_s"] = countPerSecond;
      j["train_bpc"] = trainLoss / std::log(2.0);
    }
    if (split_) {
      const auto ratio = [](double a, double b) { return b > 0 ? a / b : 0.0; };
      j["cut_forward_bytes"] = ratio(sums[3], sums[7]);
      j["cut_backward_bytes"] = ratio(sums[5], sums[7]);
      j["cut_forward_bits"] = 8.0 * ratio(sums[3], sums[4]);
      j["cut_backward_bits"] = 8.0 * ratio(sums[5], sums[6]);
    }
    file_->append(j.dump() + "\n");
    char text[240];
    std::snprintf(text, sizeof(text),
                  "epoch %lld loss %.4f acc %.3f %.0f samples/s %.3f MB/step wire (x%.1f)%s",
                  static_cast<long long>(epoch), trainLoss, trainAccuracy, samplesPerSecond,
                  mbPerStep, ratio,
                  w.skipped > 0 ? fmt::format(", {} skipped", w.skipped).c_str() : "");
    if (progress_) {
      progress_->update(step, text);
    } else {
      spdlog::info("step {}/{} {}", step, totalSteps_, text);
    }
  }
  window_ = MetricsWindow{};
}

namespace {

nlohmann::json cdlJson(const CdlReport& r) {
  nlohmann::json weights = nlohmann::json::array(), activations = nlohmann::json::array();
  for (const CdlWeightReport& w : r.weights) {
    weights.push_back({{"name", w.name},
                       {"numel", w.numel},
                       {"bits", w.bits},
                       {"step", w.step},
                       {"entropy_bits", w.entropyBits},
                       {"coded_bytes", w.codedBytes},
                       {"kappa", w.kappa},
                       {"off_nearest", w.offNearest}});
  }
  for (const CdlActivationReport& a : r.activations) {
    activations.push_back({{"name", a.name},
                           {"bits", a.bits},
                           {"step", a.step},
                           {"entropy_bits", a.entropyBits},
                           {"kappa", a.kappa}});
  }
  nlohmann::json j = {{"bits_per_weight", r.bitsPerWeight},
                      {"coded_bits_per_weight", r.codedBitsPerWeight},
                      {"model_coded_bytes", r.modelCodedBytes()},
                      {"off_nearest", r.offNearest},
                      {"weights", weights},
                      {"activations", activations}};
  if (r.softAccuracy >= 0) j["test_accuracy_soft"] = r.softAccuracy;
  if (r.sampledAccuracy >= 0) j["test_accuracy_sampled"] = r.sampledAccuracy;
  return j;
}

}  // namespace

void MetricsLog::writeEpoch(int64_t epoch, int64_t step, double testLoss, double testAccuracy,
                            const CdlReport* cdl) {
  if (!file_) return;
  nlohmann::json j = {{"kind", "epoch"},
                      {"epoch", epoch},
                      {"step", step},
                      {"test_loss", testLoss},
                      {"test_accuracy", testAccuracy},
                      {"wall_s", elapsed()}};
  if (tokensPerExample_ > 0) j["test_bpc"] = testLoss / std::log(2.0);
  if (cdl) j["cdl"] = cdlJson(*cdl);
  file_->append(j.dump() + "\n");
  noteReached(reached_, testAccuracy, j["wall_s"].get<double>());
}

std::string summaryJson(const Config& cfg, const TrainResult& r, int ranks) {
  const int64_t batch = cfg.train.batchSize;
  nlohmann::json summary = {
      {"name", cfg.name},
      {"test_accuracy", r.testAccuracy},
      {"test_loss", r.testLoss},
      {"epochs", r.epochs},
      {"steps", r.steps},
      {"wall_seconds", r.wallSeconds},
      {"wire_bytes", r.wireBytes},
      {"fp32_wire_bytes", r.fp32WireBytes},
      {"compression_ratio", compressionRatio(r.fp32WireBytes, r.wireBytes)},
      {"ranks", ranks},
      {"batch_per_rank", batch},
      {"global_batch", batch * (ranks / std::max<int64_t>(1, cfg.model.split.stages))},
      {"codec", cfg.comm.codec},
      {"seed", cfg.seed},
      {"config_hash", configHash(cfg)}};
  nlohmann::json reached = nlohmann::json::object();
  for (const auto& [target, seconds] : r.timeToAccuracy) {
    reached[fmt::format("{:.2f}", target)] = seconds;
  }
  summary["time_to_accuracy"] = reached;
  if (cfg.train.skipNonfinite) summary["skipped_steps"] = r.skippedSteps;
  if (cfg.data.dataset == "text") summary["test_bpc"] = r.testLoss / std::log(2.0);
  if (cfg.model.split.stages > 1) {
    summary["stages"] = cfg.model.split.stages;
    summary["micro_batches"] = cfg.model.split.microBatches;
    summary["activation_wire_bytes"] = r.cutWireBytes;
    summary["activation_fp32_bytes"] = r.cutFp32Bytes;
  }
  if (r.cdl) {
    summary["model_bits_per_weight"] = r.modelBitsPerWeight;
    summary["model_coded_bytes"] = r.modelCodedBytes;
  }
  return summary.dump(2) + "\n";
}

void MetricsLog::writePlan(const comm::PlanReport& plan) {
  if (comm_.rank() != 0) return;
  nlohmann::json layers = nlohmann::json::array();
  std::string table;
  for (const comm::LayerChoice& l : plan.layers) {
    layers.push_back({{"name", l.name},
                      {"scheme", l.scheme},
                      {"error", l.error},
                      {"bytes", l.bytes},
                      {"uniform_error", l.uniformError},
                      {"uniform_bytes", l.uniformBytes}});
    table += fmt::format("\n  {:<24} {:<40} {:>10} B (uniform {:>10} B)  error {:.4g} ({:.4g})",
                         l.name, l.scheme, l.bytes, l.uniformBytes, l.error, l.uniformError);
  }
  if (file_) {
    const nlohmann::json j = {{"kind", "plan"},
                              {"step", plan.step},
                              {"feasible", plan.feasible},
                              {"budget", plan.budget},
                              {"error", plan.error},
                              {"uniform_error", plan.uniformError},
                              {"bytes", plan.bytes},
                              {"uniform_bytes", plan.uniformBytes},
                              {"seconds", plan.seconds},
                              {"actual_bytes", plan.actualBytes},
                              {"budget_kind", plan.budgetKind},
                              {"layers", layers},
                              {"wall_s", elapsed()}};
    nlohmann::json record = j;
    if (plan.budgetKind != "error") {  // times differ from run to run; error plans stay exact
      record["link_bytes_per_s"] = std::isfinite(plan.linkBytesPerSecond)
                                       ? nlohmann::json(plan.linkBytesPerSecond)
                                       : nlohmann::json(nullptr);
      record["compute_s"] = plan.computeSeconds;
      record["hidden_s"] = plan.hiddenSeconds;
      record["predicted_comm_s"] = plan.predictedSeconds;
      record["uniform_predicted_comm_s"] = plan.uniformPredictedSeconds;
      record["actual_step_s"] = plan.actualStepSeconds;
      record["actual_exposed_s"] = plan.actualExposedSeconds;
    }
    file_->append(record.dump() + "\n");
  }
  std::string timing;
  if (plan.budgetKind == "time") {
    timing = fmt::format(
        "; time budget: link {:.1f} MB/s, compute {:.1f} ms per step ({:.1f} ms of communication "
        "hidden), predicted communication {:.1f} ms ({:.1f} ms uniform) of a budget of {:.1f} "
        "ms{}",
        plan.linkBytesPerSecond / 1e6, plan.computeSeconds * 1e3, plan.hiddenSeconds * 1e3,
        plan.predictedSeconds * 1e3, plan.uniformPredictedSeconds * 1e3, plan.budget * 1e3,
        plan.feasible ? "" : " (none fits)");
  } else if (plan.budgetKind != "error") {
    timing = "; budget: " + plan.budgetKind;
  }
  if (plan.budgetKind != "error" && plan.actualStepSeconds > 0) {
    timing += fmt::format("; the steps since the last plan: {:.1f} ms, {:.1f} ms of it waiting",
                          plan.actualStepSeconds * 1e3, plan.actualExposedSeconds * 1e3);
  }
  spdlog::info(
      "step {}: rate plan, {} B per step against {} uniform ({:.2f}x), error {:.4g}{}, {:.3f} "
      "s{}{}",
      plan.step, plan.bytes, plan.uniformBytes,
      plan.bytes > 0 ? double(plan.uniformBytes) / double(plan.bytes) : 0.0, plan.error,
      plan.budgetKind == "time" ? std::string() : fmt::format(" of a budget {:.4g}", plan.budget),
      plan.seconds, timing, table);
}

}  // namespace cdl::core
