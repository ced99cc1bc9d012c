#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

#include "core/cdl/cdl_report.h"
#include "core/config/config.h"
#include "core/data/data.h"
#include "core/run/metrics_log.h"
#include "core/step/evaluation.h"
#include "core/step/replica.h"

namespace cdl::core {

// What a training step needs besides its batch. A rate loss (CDL) adds its term's inputs here.
struct StepSetup {
  const Replica& replica;
  const Config::Train& train;  // the learning-rate schedule
  int64_t totalSteps;          // of the whole run (the schedule's length)
};

// Note [One training step]
// Every step runs the same way (trainStep): the scheduled learning rate and zeroed gradients
// (beginStep), the schedule's forward and backward passes, the fault point "backward", the
// reducer's averaged gradients (finalize, then what the schedule still has in flight), the
// non-finite check (skipsNonFinite) and the optimizer's update, timed part by part (Note [Step
// times]). Only the passes differ, and they are the schedule's: the whole model on the batch at
// once (WholeModel), or a split model's micro-batches through its stages (Pipeline, Note
// [Pipeline split]). The schedule also evaluates the test set, joins the stages' CDL reports and
// says which rank logs, so the epoch end is one code path too.
class StepSchedule {
 public:
  virtual ~StepSchedule() = default;

  // Forward and backward of step `step` on the batch (x, y), a CDL model's rate term included
  // (Replica::cdl). Fills m's loss, correct, count and bits; returns whether this rank computed
  // a loss (a pipeline stage before the last does not).
  virtual bool forwardBackward(const StepSetup& s, int64_t step, const at::Tensor& x,
                               const at::Tensor& y, StepMetrics& m) = 0;
  // After the reducer's finalize(): waits for what the passes still have in flight and adds
  // their own statistics to m.
  virtual void finish(StepMetrics&) {}
  // Collective: the loss and accuracy of the whole test set. Leaves the model in train mode.
  virtual Evaluation evaluate(const Replica& r, const ImageSet& test) = 0;
  // Collective: this rank's CDL report as the whole model's.
  virtual CdlReport joinReports(const CdlReport& own) const { return own; }
  // Whether this rank logs the run.
  virtual bool logs(const Replica& r) const = 0;
};

// The schedule of an unsplit model: forward and backward of the whole batch.
class WholeModel final : public StepSchedule {
 public:
  bool forwardBackward(const StepSetup& s, int64_t step, const at::Tensor& x, const at::Tensor& y,
                       StepMetrics& m) override;
  Evaluation evaluate(const Replica& r, const ImageSet& test) override;
  bool logs(const Replica& r) const override;
};

// Collective (through the reducer, and a split model's stages). Step `step` (0-based) of the run
// on the batch (x, y), as Note [One training step] says. Returns the step's metrics: the loss and
// accuracy are of this rank's batch before the update, the bytes those the reducer sent.
StepMetrics trainStep(const StepSetup& s, int64_t step, const at::Tensor& x, const at::Tensor& y);

}  // namespace cdl::core
