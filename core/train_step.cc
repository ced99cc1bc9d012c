#include "core/train_step.h"

#include <ATen/ops/argmax.h>
#include <ATen/ops/cross_entropy_loss.h>
#include <torch/optim/optimizer.h>

#include "comm/reduce/reducer.h"
#include "core/cdl_training.h"
#include "core/models.h"
#include "core/pipeline.h"
#include "core/schedule.h"

namespace cdl::core {

double beginStep(const StepSetup& s, int64_t step) {
  const Config::Train& t = s.train;
  const Replica& r = s.replica;
  const double lr =
      scheduledLr(t.schedule, t.lr, step, s.totalSteps, t.warmupSteps, t.stepEvery, t.stepGamma);
  for (auto& group : r.optimizer.param_groups()) group.options().set_lr(lr);
  r.optimizer.zero_grad();
  if (r.cdl) r.cdl->setStep(step);
  return lr;
}

StepMetrics trainStep(const StepSetup& s, int64_t step, const at::Tensor& x, const at::Tensor& y) {
  const Replica& r = s.replica;
  if (r.pipeline) return r.pipeline->trainStep(s, step, x, y);
  StepMetrics m;
  m.lr = beginStep(s, step);
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
  r.reducer.finalize();
  r.optimizer.step();

  const auto& stats = r.reducer.lastStats();
  m.wireBytes = stats.wireBytes;
  m.fp32Bytes = stats.fp32Bytes;
  m.loss = loss.item<double>();
  m.correct = at::argmax(logits, 1).eq(y).sum().item<double>();
  m.count = y.size(0);
  return m;
}

}  // namespace cdl::core
