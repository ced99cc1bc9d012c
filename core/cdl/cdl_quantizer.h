#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

namespace cdl::core {

// Note [CDL quantizer]
// The probabilistic quantizer of Coded Deep Learning (Yang & Hamidi, 2025). Levels are a_i = i q
// with a trainable step q per tensor: signed i in [-2^(b-1), 2^(b-1) - 1] for weights, unsigned
// i in [0, 2^b - 1] for activations after ReLU. Given x, level i has probability
//   P(i | x) = softmax_i(-alpha (x - a_i)^2) = softmax_i(-kappa (x / q - i)^2),  kappa = alpha q^2,
// taken over a window of W levels centred on round(x / q) (and moved inside the range at its
// edges), never over all 2^b levels. Q_d(x) = sum_i a_i P(i | x) is the soft quantizer, whose
// derivative is dQ_d/dx = 2 alpha Var_P[a]. CDL's forward pass outputs a sample a_i, i ~ P (drawn
// from a counter-based stream keyed by (seed, step, tensor), so runs and resumes reproduce it),
// and its backward pass uses the gradient of Q_d (Q_d + (sample - Q_d).detach()); R-CDL outputs
// Q_d itself; evaluation outputs the nearest level. The rate of a tensor is the entropy, in bits
// per element, of its marginal pmf Pbar(i) = mean_j P(i | x_j), differentiable through P. Under
// data parallelism an activation's pmf is the histogram summed over the ranks, so every rank's
// rate is the global one (the gradient flows through this rank's share); the histograms of a
// forward pass's activations are summed in one allreduce (pendingMass, finishRate).
//
// The rate's gradient reaches x and kappa but not q: through q the rate would be cheapest to cut
// by growing the step until every element sits on level 0, which kills the layer within a few
// dozen steps (seen on the Fashion-MNIST CNN at lambda_w = 0.05); q follows the task loss, as in
// LSQ, and the rate moves the values onto fewer levels. kappa is kept in
// [kKappaMin, kKappaMax] (a large one makes the gradient explode) and q = exp(log_step) above zero
// (a plain q parameter can be pushed through zero by momentum and stays dead there); their
// gradients are scaled by 1 / sqrt(elements * top level index), as LSQ does for q, since they sum
// over every element of the tensor. A weight's q starts at LSQ's 2 mean|w| / sqrt(2^(b-1)); an
// activation's at 2 mean|x| / sqrt(2^b - 1) over the first training batch of every rank.
//
// Note [Step from the sample]
// At small kappa Q_d(x) = q f(x / q) is close to x whatever q is (its slope is 0.86..1 at kappa
// 2), so Q_d's gradient with respect to q is a small ripple: the task loss barely sees q, though
// a coarser q makes every sample noisier. CDL's q therefore takes the gradient of the sample the
// forward pass used, as LSQ takes that of the rounded level: d(i q)/dq = i - u inside the range
// (u = x / q; i follows u straight through) and i outside it, with LSQ's step (gradient scale g / q
// on log q, quantizeLsq). R-CDL, whose forward pass is Q_d, keeps Q_d's. On the Fashion-MNIST
// CNN (2 ranks, 5 epochs, lambda_w 2) this gave 86.98% at 1.04 bits per weight against 87.15% at
// 1.52 with Q_d's, and with 2-bit weights and 4-bit activations at lambda_w 0.5, 88.93% at 0.65
// against 87.67% at 0.84.

constexpr double kKappaMin = 0.05;
constexpr double kKappaMax = 20.0;

// The level indices [lo, hi] of b bits.
struct LevelRange {
  int64_t lo = 0;
  int64_t hi = 0;
  int64_t count() const { return hi - lo + 1; }
};
LevelRange levelRange(int bits, bool isSigned);

// The soft quantization of x at step q (a 1-element tensor) and kappa (1-element) over a window
// of `window` levels (odd; at most range.count() are used).
struct SoftQuantization {
  at::Tensor levels;  // float [..., W]: the level indices of each element's window
  at::Tensor probs;   // [..., W]: P(i | x) over the window
  at::Tensor soft;    // Q_d(x), the shape of x
};
SoftQuantization softQuantize(const at::Tensor& x, const at::Tensor& step, const at::Tensor& kappa,
                              LevelRange range, int window);

// Draws one level per element from s's probabilities: uniform draws of stream `key` (draw j for
// element j in row-major order) through the inverse CDF. Returns the level indices (float, the
// shape of s.soft).
at::Tensor sampleLevels(const SoftQuantization& s, uint64_t key);

// The nearest level index of every element of x at step q, clamped to the range (float).
at::Tensor nearestLevels(const at::Tensor& x, const at::Tensor& step, LevelRange range);

// The summed probability mass of every level over all elements (range.count() entries),
// differentiable through s.probs.
at::Tensor levelMass(const SoftQuantization& s, LevelRange range);

// The entropy in bits of the pmf mass / total (entries >= 0), differentiable through mass.
at::Tensor entropyBits(const at::Tensor& mass, double total);

// What an evaluation pass of a quantizer outputs (Note [CDL diagnostics] in
// core/step/cdl_training.h): the nearest level (what the coded model holds and cdl-model eval
// runs), Q_d (what R-CDL trains through) or one sample (what CDL's forward pass sees).
enum class EvalMode { kNearest, kSoft, kSampled };

// kLsq: LSQ's quantizer (lsqQuantize in core/cdl/cdl_kernel.h), the baseline CDL is measured
// against: nearest levels forward, straight-through backward, q learned as LSQ learns it.
enum class CdlMode { kCdl, kRcdl, kLsq };

// What every quantizer of a model shares.
struct CdlContext {
  CdlMode mode = CdlMode::kCdl;
  uint64_t seed = 0;
  uint64_t step = 0;  // the training step: keys CDL's samples
  // The first example of the forward pass within the step's batch (a pipeline's micro-batch):
  // an activation's samples continue the batch's draws from there, as the unsplit pass draws.
  int64_t exampleOffset = 0;
  // Sums a small vector over the data-parallel ranks, in place (an allreduce); empty: one rank.
  // Called in training forward passes only, by every rank in the same order.
  std::function<void(std::vector<float>&)> sumOverRanks;
};

struct FusedQuantization;  // core/cdl/cdl_kernel.h

struct QuantizerOptions {
  int bits = 6;             // 1..8
  bool isSigned = true;     // weights: signed levels; activations after ReLU: unsigned
  bool activation = false;  // an activation: q starts from data, the pmf is summed over ranks
  double kappa = 2.0;       // alpha q^2, in (0, kKappaMax]
  bool trainKappa = false;  // kappa a parameter (else a buffer)
  int window = 5;           // levels in P's window, >= 1
};

// The quantizer as a module: parameter "log_step" (q = exp(log_step), so it stays positive),
// "kappa" (a parameter when trained, else a buffer) and buffer "initialized" (1 once q has its
// start). The trainer keeps weight decay off these parameters. Training forward passes quantize as
// CDL or R-CDL and record the rate; evaluation quantizes to the nearest level and, while counting,
// adds the levels to a histogram.
class QuantizerImpl : public torch::nn::Module {
 public:
  explicit QuantizerImpl(const QuantizerOptions& options);

  at::Tensor forward(const at::Tensor& x);

  // Joins a model's quantizers: `id` (distinct per quantizer of the model) keys the samples.
  void attach(std::shared_ptr<CdlContext> context, uint64_t id);
  // Sets q from x as a weight's start (LSQ) and marks it initialized.
  void initFromWeight(const at::Tensor& w);

  const QuantizerOptions& options() const { return options_; }
  LevelRange range() const { return range_; }
  // The step q and the clamped kappa in use.
  double stepValue() const;
  double kappaValue() const;
  // Sets an untrained kappa (Note [Kappa schedule] in core/step/cdl_training.h).
  void setKappa(double kappa);

  // The rate (entropy of the marginal pmf, bits per element; a differentiable scalar) of the last
  // training forward pass, and the element count it was over (all ranks' for activations).
  const at::Tensor& rate() const { return rate_; }
  double rateElements() const { return rateElements_; }
  // An activation's rate is over every rank's histogram: with a context that sums over ranks, a
  // training forward pass leaves it pending, its local level masses here (differentiable), and
  // the model's owner sums every pending quantizer's at once (CdlTraining: one allreduce per
  // forward pass, not one per quantizer) and hands back the sums: finishRate(global masses, every
  // rank's element count) sets rate() (the gradient flows through this rank's share).
  const at::Tensor& pendingMass() const { return pendingMass_; }
  void finishRate(const at::Tensor& globalMass, double globalElements);

  // Nearest-level indices of x, shifted to 0..range().count()-1, as bytes (for coding).
  std::vector<uint8_t> symbols(const at::Tensor& x) const;

  // Evaluation histograms: while counting, every eval forward pass adds its nearest levels.
  void setCounting(bool on);
  // What evaluation passes output (kNearest unless set); kSampled draws from a stream of its own,
  // keyed by the context's seed and step.
  void setEvalMode(EvalMode mode) { evalMode_ = mode; }
  EvalMode evalMode() const { return evalMode_; }
  // The step q when an evaluation pass is one pass of nearest levels (kernels::nearestLevelValues,
  // the values of nearestLevels(x, q) * q): evaluating to nearest levels, not counting, without
  // gradients, q at least the smallest step; 0 otherwise.
  float onePassStep() const;
  // The share of x's elements whose sample (the draws training would take at the context's step)
  // is not their nearest level: 0 for a quantizer that trains as the hard one does (LSQ).
  double offNearestShare(const at::Tensor& x) const;
  const std::vector<double>& counts() const { return counts_; }

 private:
  void initFromBatch(const at::Tensor& x);
  // A training pass's quantization, g the gradient scale of q (and a trained kappa).
  FusedQuantization quantizeCdl(const at::Tensor& x, double g) const;
  FusedQuantization quantizeLsq(const at::Tensor& x, double g) const;

  QuantizerOptions options_;
  LevelRange range_;
  at::Tensor step() const;  // exp(log_step)
  at::Tensor logStep_, kappa_, initialized_;
  std::shared_ptr<CdlContext> context_;
  uint64_t id_ = 0;
  at::Tensor rate_, pendingMass_;
  double rateElements_ = 0.0;
  bool counting_ = false;
  EvalMode evalMode_ = EvalMode::kNearest;
  std::vector<double> counts_;
};
TORCH_MODULE(Quantizer);

}  // namespace cdl::core
