#include "core/epoch_end.h"

#include <ATen/core/grad_mode.h>
#include <ATen/ops/argmax.h>
#include <ATen/ops/cross_entropy_loss.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <vector>

#include "core/batch.h"
#include "core/cdl_training.h"
#include "core/collectives.h"
#include "core/models.h"
#include "core/pipeline.h"

namespace cdl::core {

Evaluation evaluate(Net& model, const ImageSet& test, comm::Communicator& c) {
  at::NoGradGuard noGrad;
  model.eval();
  const std::vector<int64_t> idx = evalShard(test.count, c.rank(), c.size());
  double lossSum = 0.0, correct = 0.0, count = 0.0;  // count: examples, or a text set's tokens
  constexpr size_t kBatch = 1000;
  for (size_t b = 0; b < idx.size(); b += kBatch) {
    auto [x, y] = makeBatch(test, idx, b, std::min(idx.size(), b + kBatch));
    const at::Tensor logits = model.forward(x);
    lossSum += at::cross_entropy_loss(logits, y, {}, at::Reduction::Sum).item<double>();
    correct += at::argmax(logits, 1).eq(y).sum().item<double>();
    count += static_cast<double>(y.numel());
  }
  model.train();
  const auto total = sumOverRanks(
      c, {static_cast<float>(lossSum), static_cast<float>(correct), static_cast<float>(count)});
  return {total[0] / total[2], total[1] / total[2]};
}

bool checkpointDue(const Config::Checkpoint& ck, int64_t step, bool epochEnd, bool stopping,
                   bool runDone) {
  return (epochEnd && ck.everyEpoch) || stopping || runDone ||
         (ck.everySteps > 0 && step % ck.everySteps == 0);
}

EpochEndResult endEpoch(const EpochEndSetup& e, TrainState& state) {
  const Replica& r = e.replica;
  broadcastTensors(r.comm, r.buffers);
  EpochEndResult out;
  if (r.cdl) r.cdl->setCounting(true);
  out.test = r.pipeline ? r.pipeline->evaluate(e.testSet) : evaluate(r.model, e.testSet, r.comm);
  if (r.cdl) {
    r.cdl->setCounting(false);
    out.cdl = r.cdl->report();
    if (r.pipeline) out.cdl = r.pipeline->joinReports(out.cdl);
  }
  e.metrics.writeEpoch(state.epoch, state.step, out.test.loss, out.test.accuracy,
                       r.cdl ? &out.cdl : nullptr);
  if (r.pipeline ? r.pipeline->logs() : r.comm.rank() == 0) {
    spdlog::info("epoch {} done at step {}: test loss {:.4f}, test accuracy {:.2f}%", state.epoch,
                 state.step, out.test.loss, 100.0 * out.test.accuracy);
    if (r.cdl) {
      spdlog::info("CDL: {:.3f} bits/weight ({:.3f} coded), model {} bytes coded",
                   out.cdl.bitsPerWeight, out.cdl.codedBitsPerWeight, out.cdl.modelCodedBytes());
    }
  }
  ++state.epoch;
  state.batchInEpoch = 0;
  const bool stopping = stopsAfter(e.stopAfterSteps, state.step);
  const bool runDone = state.step == e.totalSteps;
  if (checkpointDue(e.checkpoint, state.step, /*epochEnd=*/true, stopping, runDone)) {
    e.metrics.saveTo(state);
    saveReplicaCheckpoint(r, e.checkpointDir, e.checkpoint.keep, state);
  }
  out.stop = stopping && state.step < e.totalSteps;
  return out;
}

}  // namespace cdl::core
