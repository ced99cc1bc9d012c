#include "core/step/train_step.h"

#include <ATen/ops/argmax.h>
#include <ATen/ops/cross_entropy_loss.h>
#include <torch/optim/optimizer.h>

#include <spdlog/spdlog.h>

#include <string>

#include "comm/reduce/reducer.h"
#include "core/models/models.h"
#include "core/run/files.h"
#include "core/step/cdl_training.h"
#include "core/step/lr_schedule.h"
#include "core/step/run_hooks.h"
#include "kernels/base/clock.h"
#include "kernels/base/error.h"

namespace cdl::core {
namespace {

// The start of step `step` (0-based): sets the scheduled learning rate on every parameter group,
// zeroes the gradients and tells the run's hooks; returns the learning rate.
double beginStep(const StepSetup& s, int64_t step) {
  const Config::Train& t = s.train;
  const Replica& r = s.replica;
  const double lr =
      scheduledLr(t.schedule, t.lr, step, s.totalSteps, t.warmupSteps, t.stepEvery, t.stepGamma);
  for (auto& group : r.optimizer.param_groups()) group.options().set_lr(lr);
  r.optimizer.zero_grad();
  for (RunHook* h : r.hooks) h->beginStep(step);
  return lr;
}

// After the reducer's finalize(): true when the step's update is to be skipped because some rank's
// gradients held NaN or infinity and train.skip_nonfinite is set; without it, throws naming the
// parameter and the step (Note [Non-finite gradients]). `loss` is this rank's (null when the
// rank has none: a pipeline stage before the last).
bool skipsNonFinite(const StepSetup& s, int64_t step, const double* loss) {
  const comm::ReducerStepStats& st = s.replica.reducer.lastStats();
  if (st.nonFiniteRanks == 0) return false;
  if (s.train.skipNonfinite) {
    if (!st.nonFinite.empty()) {
      spdlog::debug("step {}: the gradient of '{}' is not finite; the step is skipped", step,
                    st.nonFinite);
    }
    return true;
  }
  const std::string lossText = loss ? fmt::format(" (the loss was {})", *loss) : "";
  CDL_CHECK(st.nonFinite.empty(), "step ", step, ": the gradient of '", st.nonFinite,
            "' holds NaN or infinity", lossText,
            "; lower train.lr, or set train.skip_nonfinite to skip such steps");
  CDL_THROW("step ", step, ": the gradients of ", st.nonFiniteRanks,
            " other rank(s) hold NaN or infinity (their errors name the parameter)");
}

}  // namespace

bool WholeModel::forwardBackward(const StepSetup& s, int64_t step, const at::Tensor& x,
                                 const at::Tensor& y, StepMetrics& m) {
  const Replica& r = s.replica;
  const at::Tensor logits = r.model.forward(x);
  const at::Tensor loss = at::cross_entropy_loss(logits, y);
  if (r.cdl) {
    const CdlTraining::Rate rate = r.cdl->rate(step);
    (loss + rate.loss).backward();
    m.weightBits = rate.weightBits;
    m.activationBits = rate.activationBits;
  } else {
    loss.backward();
  }
  m.loss = loss.item<double>();
  m.correct = at::argmax(logits, 1).eq(y).sum().item<double>();
  m.count = y.numel();  // examples, or a text set's tokens
  return true;
}

Evaluation WholeModel::evaluate(const Replica& r, const ImageSet& test) {
  return core::evaluate(r.model, test, r.comm);
}

bool WholeModel::logs(const Replica& r) const { return r.comm.rank() == 0; }

StepMetrics trainStep(const StepSetup& s, int64_t step, const at::Tensor& x, const at::Tensor& y) {
  const Replica& r = s.replica;
  StepMetrics m;
  const Clock::time_point t0 = Clock::now();
  m.lr = beginStep(s, step);
  const bool hasLoss = r.schedule.forwardBackward(s, step, x, y, m);
  faultPoint("backward", step);
  m.times.compute = secondsSince(t0);
  const Clock::time_point t1 = Clock::now();
  r.reducer.finalize();
  r.schedule.finish(m);
  m.times.wait = secondsSince(t1);
  m.skipped = skipsNonFinite(s, step, hasLoss ? &m.loss : nullptr) ? 1 : 0;
  const Clock::time_point t2 = Clock::now();
  if (m.skipped == 0) r.optimizer.step();
  m.times.optimizer = secondsSince(t2);
  m.times.step = secondsSince(t0);

  const auto& stats = r.reducer.lastStats();
  m.times.encode = stats.encodeSeconds;
  m.times.comm = stats.commSeconds;
  m.times.decode = stats.decodeSeconds;
  m.wireBytes = stats.wireBytes;
  m.fp32Bytes = stats.fp32Bytes;
  return m;
}

}  // namespace cdl::core
