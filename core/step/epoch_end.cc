#include "core/step/epoch_end.h"

#include <spdlog/spdlog.h>

#include "core/step/cdl_training.h"
#include "core/step/run_hooks.h"
#include "core/step/train_step.h"

namespace cdl::core {

bool checkpointDue(const Config::Checkpoint& ck, int64_t step, bool epochEnd, bool stopping,
                   bool runDone) {
  return (epochEnd && ck.everyEpoch) || stopping || runDone ||
         (ck.everySteps > 0 && step % ck.everySteps == 0);
}

EpochEndResult endEpoch(const EpochEndSetup& e, TrainState& state) {
  const Replica& r = e.replica;
  broadcastTensors(r.comm, r.buffers);
  EpochEndResult out;
  for (RunHook* h : r.hooks) h->beforeEvaluation();
  out.test = r.schedule.evaluate(r, e.testSet);
  for (RunHook* h : r.hooks) h->afterEvaluation(r.schedule, out.cdl);
  if (r.cdl != nullptr && out.cdl && r.cdl->diagnostics()) {  // Note [CDL diagnostics]
    r.cdl->setEvalMode(EvalMode::kSoft);
    out.cdl->softAccuracy = r.schedule.evaluate(r, e.testSet).accuracy;
    r.cdl->setEvalMode(EvalMode::kSampled);
    out.cdl->sampledAccuracy = r.schedule.evaluate(r, e.testSet).accuracy;
    r.cdl->setEvalMode(EvalMode::kNearest);
  }
  e.metrics.writeEpoch(state.epoch, state.step, out.test.loss, out.test.accuracy,
                       out.cdl ? &*out.cdl : nullptr);
  if (r.schedule.logs(r)) {
    spdlog::info("epoch {} done at step {}: test loss {:.4f}, test accuracy {:.2f}%", state.epoch,
                 state.step, out.test.loss, 100.0 * out.test.accuracy);
    if (out.cdl) {
      spdlog::info(
          "CDL: {:.3f} bits/weight ({:.3f} coded), model {} bytes coded, {:.1f}% of "
          "weight samples off the nearest level",
          out.cdl->bitsPerWeight, out.cdl->codedBitsPerWeight, out.cdl->modelCodedBytes(),
          100.0 * out.cdl->offNearest);
      if (out.cdl->softAccuracy >= 0) {
        spdlog::info("CDL diagnostics: test accuracy {:.2f}% nearest, {:.2f}% Q_d, {:.2f}% sampled",
                     100.0 * out.test.accuracy, 100.0 * out.cdl->softAccuracy,
                     100.0 * out.cdl->sampledAccuracy);
      }
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
