#pragma once

#include <cstdint>
#include <optional>

#include "core/cdl/cdl_report.h"
#include "core/run/checkpoint.h"
#include "core/run/metrics_log.h"

namespace cdl::comm {
class AdaptiveRates;
class Reducer;
}  // namespace cdl::comm

namespace cdl::core {

class StepSchedule;

// Note [Run hooks]
// The optional parts of a run hook into the loop at fixed points, where the loop calls every hook
// the replica holds (Replica::hooks) and never asks which parts exist: before a step's passes,
// after its update, around the epoch's evaluation, and when a checkpoint is written or restored.
// A CDL model (CdlTraining) keys its samples by the step, counts its activations during the
// evaluation and gives the epoch's report; adaptive rates (AdaptiveRatesHook) re-plan after a
// step and keep their plan and measurement window in checkpoints. A CDL model's rate term is part
// of the loss, not a hook: the step's schedules add it (Replica::cdl).
class RunHook {
 public:
  virtual ~RunHook() = default;

  // Before the passes of step `step` (0-based).
  virtual void beginStep(int64_t) {}
  // Collective: after the update that completed `stepsDone` steps, which took `times`.
  virtual void afterStep(int64_t /*stepsDone*/, const StepTimes& /*times*/, MetricsLog&) {}
  // Around the epoch's evaluation; after it (collective), what the part adds to the epoch's
  // record: a CDL model's report, joined over the stages by the schedule.
  virtual void beforeEvaluation() {}
  virtual void afterEvaluation(const StepSchedule&, std::optional<CdlReport>&) {}
  // Its state into a checkpoint's, and back: before the reducer's scheme state is restored (a
  // plan decides which schemes that state belongs to), and after it.
  virtual void save(TrainState&) const {}
  virtual void restoreBeforeSchemes(const TrainState&) {}
  virtual void restoreAfterSchemes(const TrainState&) {}
};

// Adaptive rates (Note [Adaptive rates]) as a hook: a plan after a step, written to the metrics;
// the plan, the bytes and steps since it and the captured gradients in checkpoints.
class AdaptiveRatesHook final : public RunHook {
 public:
  AdaptiveRatesHook(comm::AdaptiveRates& rates, comm::Reducer& reducer)
      : rates_(rates), reducer_(reducer) {}
  void afterStep(int64_t stepsDone, const StepTimes& times, MetricsLog& metrics) override;
  void save(TrainState& state) const override;
  void restoreBeforeSchemes(const TrainState& loaded) override;
  void restoreAfterSchemes(const TrainState& loaded) override;

 private:
  comm::AdaptiveRates& rates_;
  comm::Reducer& reducer_;
};

}  // namespace cdl::core
