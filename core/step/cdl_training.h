#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "comm/transport/communicator.h"
#include "core/cdl/cdl_layers.h"
#include "core/cdl/cdl_quantizer.h"
#include "core/cdl/cdl_report.h"
#include "core/config/config.h"
#include "core/models/models.h"
#include "core/step/run_hooks.h"

namespace cdl::core {

// The CDL side of a training run: the model's quantizers joined to one context (their sample
// streams keyed by the run's seed and step, the activation histograms summed over the ranks of
// comm), the rate loss, and the epoch report. A hook of the run (Note [Run hooks]) for the step's
// key and the evaluation's counts and report.
class CdlTraining final : public RunHook {
 public:
  // The model must have been built with CDL on (ModelOptions::cdl). A pipeline stage passes the
  // whole model as idModel: a quantizer's sample stream is then keyed by its place in the whole
  // model, so the stage draws what the unsplit model would.
  CdlTraining(const Config::Cdl& cfg, uint64_t seed, Net& model, comm::Communicator& comm,
              Net* idModel = nullptr);

  // Note [Kappa schedule]
  // A small kappa trains through a smooth Q_d, with gradients for every weight, but its samples
  // are often not the nearest level (a dithered network, not the coded one); a large one samples
  // the nearest level almost always, but Q_d is nearly a staircase and passes gradients only near
  // the midpoints between levels. With cdl.kappa_final, every quantizer's kappa grows
  // geometrically from cdl.kappa at step 0 to cdl.kappa_final at the run's last step,
  //   kappa(t) = kappa_0 (kappa_final / kappa_0)^(t / (T - 1)),
  // soft early and ever closer to the nearest level the model is coded with (the annealing of
  // soft-to-hard quantization). kappa is a function of the step alone, so a resume sets it anew.
  // On the Fashion-MNIST CNN (6 bits, lambda_w 2, 5 epochs) it did not pay: 2 -> 8 gave 87.38% at
  // 1.64 bits per weight, 2 -> 20 85.67% at 2.07, against 87.15% at 1.52 with kappa 2 throughout.

  // The run's step count, for the kappa schedule (before the first step).
  void setTotalSteps(int64_t steps) { totalSteps_ = steps; }
  // The kappa of `step` under the schedule (cdl.kappa without one).
  double kappaAt(int64_t step) const;
  // The step the next forward pass belongs to (keys CDL's samples; sets a scheduled kappa).
  void setStep(int64_t step);
  void beginStep(int64_t step) override { setStep(step); }
  // Counts the activations during the evaluation; then the report, joined over the stages.
  void beforeEvaluation() override { setCounting(true); }
  void afterEvaluation(const StepSchedule& schedule, std::optional<CdlReport>& report) override;
  // The first example of the next forward pass within the step's batch (Note [Pipeline split]).
  void setExampleOffset(int64_t offset);

  struct Rate {
    at::Tensor loss;              // the term to add to the cross-entropy (a differentiable scalar)
    double weightBits = 0.0;      // bits per weight of the last forward pass
    double activationBits = 0.0;  // bits per activation element of the last forward pass
  };
  // The rate term of the last training forward pass at `step`: ramp * (lambda_w * bits per weight
  // + lambda_a * bits per activation element), each a size-weighted mean over the quantized
  // tensors; ramp grows linearly from 0 to 1 over cdl.rate_warmup_steps. A term of weight 0 is
  // left out of the graph: with both weights 0 the loss is a constant 0.
  Rate rate(int64_t step) const;

  // The same in parts, for a model split into stages: the sums of rate * elements over this
  // model's quantizers (differentiable) and their values and element counts...
  struct RateParts {
    at::Tensor weightSum, activationSum;
    double weightBits = 0.0, weightElements = 0.0;  // the values: sum of bits * elements
    double activationBits = 0.0, activationElements = 0.0;
  };
  RateParts rateParts() const;  // first sums the forward pass's activation histograms
  // ...and the term of this model's quantizers when `all` holds the values summed over every
  // stage: its sums divided by all's element counts, so the stages' terms add up to the unsplit
  // model's; the bits reported are all's means.
  Rate rate(int64_t step, const RateParts& own, const RateParts& all) const;

  // Note [CDL diagnostics]
  // What training sees and what the coded model holds differ: CDL's forward pass takes a sample
  // of P(i | x), R-CDL's Q_d, evaluation (and the .cdlm file) the nearest level. At small kappa
  // and few bits a sample is often not the nearest level, so the network trained is not the one
  // evaluated. Every epoch report says, per quantizer, kappa and (weights) the share of samples
  // off the nearest level; with cdl.diagnostics the epoch end also evaluates with Q_d and with one
  // sample in every quantizer (test_accuracy_soft, test_accuracy_sampled in the epoch record's
  // cdl object), at the cost of two more evaluations.
  bool diagnostics() const { return cfg_.diagnostics && cfg_.mode != "lsq"; }
  // What the quantizers' evaluation passes output (EvalMode::kNearest unless set).
  void setEvalMode(EvalMode mode);

  // Evaluation counts the activations' nearest levels while on (setCounting(true) clears them).
  void setCounting(bool on);
  // Collective (sums the activation counts over the ranks): the weights' entropies and coded
  // sizes, the activations' entropies, the coded model size.
  CdlReport report() const;

 private:
  Config::Cdl cfg_;
  Net& model_;
  comm::Communicator& comm_;
  std::shared_ptr<CdlContext> context_;
  int64_t totalSteps_ = 0;
  std::vector<std::pair<std::string, Quantizer>> weightQuantizers_, activationQuantizers_;

  // Sums the pending activation histograms of the last forward pass over the ranks, in one
  // allreduce, and finishes their rates (QuantizerImpl::finishRate).
  void finishActivationRates() const;
};

// The model options' CDL part from a config.
CdlModelOptions cdlModelOptions(const Config::Cdl& cfg);

}  // namespace cdl::core
