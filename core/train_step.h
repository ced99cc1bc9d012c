#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

#include "core/config.h"
#include "core/metrics_log.h"
#include "core/replica.h"

namespace cdl::core {

// What a training step needs besides its batch. A rate loss (CDL) adds its term's inputs here.
struct StepSetup {
  const Replica& replica;
  const Config::Train& train;  // the learning-rate schedule
  int64_t totalSteps;          // of the whole run (the schedule's length)
};

// The start of step `step` (0-based): sets the scheduled learning rate on every parameter group,
// zeroes the gradients and keys a CDL model's samples; returns the learning rate.
double beginStep(const StepSetup& s, int64_t step);

// After the reducer's finalize(): true when the step's update is to be skipped because some rank's
// gradients held NaN or infinity and train.skip_nonfinite is set; without it, throws naming the
// parameter and the step (Note [Non-finite gradients]). `loss` is this rank's (null when the
// rank has none: a pipeline stage before the last).
bool skipsNonFinite(const StepSetup& s, int64_t step, const double* loss);

// Collective (through the reducer). Step `step` (0-based) of the run on the batch (x, y): sets
// the scheduled learning rate on every parameter group, zeroes the gradients, runs forward, the
// cross-entropy loss (plus a CDL model's rate term) and backward, waits for the reducer's
// averaged gradients and steps the optimizer. Returns the step's metrics: the loss and accuracy are
// of this rank's batch before the update, the bytes those the reducer sent. A split model's step
// is its pipeline's (Pipeline::trainStep).
StepMetrics trainStep(const StepSetup& s, int64_t step, const at::Tensor& x, const at::Tensor& y);

}  // namespace cdl::core
