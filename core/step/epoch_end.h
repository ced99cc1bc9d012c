#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "comm/transport/communicator.h"
#include "core/cdl/cdl_report.h"
#include "core/config/config.h"
#include "core/data/data.h"
#include "core/run/checkpoint.h"
#include "core/run/metrics_log.h"
#include "core/step/evaluation.h"
#include "core/step/replica.h"

namespace cdl::core {

// Whether a checkpoint is written after `step`: on every checkpoint.every_steps-th step, when
// the run stops (--stop-after) or is done, and at an epoch end with checkpoint.every_epoch.
bool checkpointDue(const Config::Checkpoint& ck, int64_t step, bool epochEnd, bool stopping,
                   bool runDone);

// Whether --stop-after (stopAfterSteps > 0) stops the run once `step` steps are done.
inline bool stopsAfter(int64_t stopAfterSteps, int64_t step) {
  return stopAfterSteps > 0 && step >= stopAfterSteps;
}

// What the end of an epoch needs. A rate planner re-plans here.
struct EpochEndSetup {
  const Replica& replica;
  const ImageSet& testSet;
  MetricsLog& metrics;
  const Config::Checkpoint& checkpoint;
  std::string checkpointDir;
  int64_t totalSteps;
  // TrainOptions::stopAfterSteps, or the step a stop signal ended the run at (Note [Stop
  // signals]); the trainer sets it while the epoch runs.
  const int64_t& stopAfterSteps;
};

struct EpochEndResult {
  Evaluation test;
  bool stop = false;             // --stop-after stops the run before it is done
  std::optional<CdlReport> cdl;  // a CDL model's report (Note [Run hooks])
};

// Collective. Ends epoch state.epoch after its last step: takes rank 0's batch-norm buffers,
// evaluates the test set, writes the epoch record, moves state to the first batch of the next
// epoch and writes a checkpoint when one is due (checkpointDue).
EpochEndResult endEpoch(const EpochEndSetup& e, TrainState& state);

}  // namespace cdl::core
